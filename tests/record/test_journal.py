"""The write-ahead journal (``record/journal.py``): records read back in order, rollback of failed writes,
a segment per process, locks, segments trimmed as MongoDB acknowledges them."""

from __future__ import annotations

import pytest

from sacred_gpu.record.journal import Journal
from sacred_gpu.record.journal_frames import frame
from tests.support.fault_matrix import FullDisk
from tests.support.journals import read_all, records, segment_file


def test_records_read_back_in_order_with_positions_that_resume(tmp_path):
    journal = Journal.create(tmp_path, {})
    for rec in records(50):
        journal.append(rec)
    entries = list(journal.read(journal.acked()))
    assert [rec["seq"] for rec, _ in entries] == list(range(50))
    resumed = [rec["seq"] for rec, _ in journal.read(entries[19][1])]
    assert resumed == list(range(20, 50))


def test_a_write_that_fails_half_way_is_rolled_back_before_the_next_append(tmp_path):
    journal = Journal.create(tmp_path, {})
    journal.append({"seq": 1})
    with FullDisk(room=17).installed() as disk:  # 17 bytes of the next record land, then ENOSPC
        with pytest.raises(OSError):
            journal.append({"seq": 2, "payload": "z" * 500})
        assert disk.refused == 1 and segment_file(journal).stat().st_size == len(frame({"seq": 1}))
        disk.free()
        journal.append({"seq": 3})
    assert [rec["seq"] for rec in read_all(journal, tail_is_damage=True)] == [1, 3]


def test_each_process_appends_to_a_segment_of_its_own(tmp_path):
    first = Journal.create(tmp_path, {})
    first.append({"seq": 1})
    first.close()
    second = Journal(first.folder)
    second.append({"seq": 2})
    assert len(list(first.folder.glob("*.log"))) == 2
    assert [rec["seq"] for rec in read_all(second)] == [1, 2]


def test_one_holder_of_the_lock_at_a_time_and_it_is_released_on_close(tmp_path):
    journal = Journal.create(tmp_path, {})
    other = Journal(journal.folder)
    assert journal.try_lock() and not other.try_lock()
    journal.unlock()
    assert other.try_lock()


def test_journal_is_trimmed_as_mongodb_acknowledges_it(tmp_path, monkeypatch):
    monkeypatch.setattr("sacred_gpu.record.journal.SEGMENT_BYTES", 2000)
    journal = Journal.create(tmp_path, {"run_id": 1})
    for index in range(100):
        journal.append({"op": "update_run", "fields": {"i": index, "pad": "x" * 100}})
    before = journal.segments()
    assert len(before) > 5
    records = list(journal.read(journal.acked(), max_records=60))
    assert [r["fields"]["i"] for r, _ in records] == list(range(60))
    journal.ack(records[-1][1])
    after = journal.segments()
    assert after == [s for s in before if s >= records[-1][1][0]] and len(after) < len(before) - 2
    assert [r["fields"]["i"] for r, _ in journal.read(journal.acked())] == list(
        range(60, 100))
    with open(journal.folder / f"{journal.segments()[-1]:06d}.bson", "ab") as handle:
        handle.write(b"\x40\x00\x00\x00torn")  # a record cut short by power loss
    assert len(list(journal.read(journal.acked()))) == 40
