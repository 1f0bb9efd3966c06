"""The journal's frames: checksums, rollback of failed writes, resynchronisation past damage, locks, permissions.
Segments trimmed as MongoDB acknowledges them."""

from __future__ import annotations

import os
import stat
import struct

import bson
import pytest

from sacred_gpu.record import journal_frames
from sacred_gpu.record.journal import Journal
from sacred_gpu.record.journal_frames import Damage, frame
from sacred_gpu.record.sync import journals
from tests.support.fault_matrix import FullDisk


def records(count: int, size: int = 100) -> list[dict]:
    return [{"op": "metric", "seq": i, "payload": "x" * size} for i in range(count)]


def read_all(journal: Journal, **kwargs) -> list:
    return [entry for entry, _ in journal.read(journal.acked(), **kwargs)]


def segment_file(journal: Journal):
    [path] = sorted(journal.folder.glob("*.log"))
    return path


def test_records_read_back_in_order_with_positions_that_resume(tmp_path):
    journal = Journal.create(tmp_path, {})
    for rec in records(50):
        journal.append(rec)
    entries = list(journal.read(journal.acked()))
    assert [rec["seq"] for rec, _ in entries] == list(range(50))
    resumed = [rec["seq"] for rec, _ in journal.read(entries[19][1])]
    assert resumed == list(range(20, 50))


def test_a_flipped_byte_damages_one_record_and_reading_resynchronises_after_it(tmp_path):
    journal = Journal.create(tmp_path, {})
    for rec in records(191):
        journal.append(rec)
    journal.close()
    path = segment_file(journal)
    data = bytearray(path.read_bytes())
    record_size = len(frame(records(1)[0]))
    data[49 * record_size + record_size // 2] ^= 0x40  # in record 50's payload
    path.write_bytes(bytes(data))
    entries = read_all(Journal(journal.folder), tail_is_damage=True)
    damage = [entry for entry in entries if isinstance(entry, Damage)]
    assert [rec["seq"] for rec in entries if isinstance(rec, dict)] == [i for i in range(191) if i != 49]
    assert len(damage) == 1 and damage[0].reason == "checksum mismatch"
    assert damage[0].start == 49 * record_size and len(damage[0].data) == record_size


@pytest.mark.parametrize("cut", [0, 7])
def test_a_journal_truncated_at_60_percent_reports_its_torn_tail_as_damage_once_its_writer_is_gone(tmp_path, cut):
    journal = Journal.create(tmp_path, {})
    for rec in records(100):
        journal.append(rec)
    journal.update_state(finished=True, end=journal.end())  # as the recorder does at the end of a run
    journal.close()
    path = segment_file(journal)
    whole = len(frame(records(1)[0]))
    with open(path, "r+b") as handle:
        handle.truncate(60 * whole + cut)  # at a record's boundary, or inside the 61st record
    reader = Journal(journal.folder)
    assert [rec["seq"] for rec in read_all(reader)] == list(range(60))  # while its writer may be appending
    *intact, damage = read_all(reader, tail_is_damage=True)
    assert [rec["seq"] for rec in intact] == list(range(60)) and isinstance(damage, Damage)
    assert damage.start == 60 * whole and len(damage.data) == cut
    cut_short = f"the journal ends at 000001:{60 * whole + cut}, its run wrote up to 000001:{100 * whole}"
    assert damage.reason == (f"torn; {cut_short}" if cut else cut_short)
    assert list(reader.read((1, 60 * whole), tail_is_damage=True))[-1][1] == (1, 100 * whole)  # read once only


def test_a_torn_record_with_records_behind_it_is_damage_and_they_are_read(tmp_path):
    """What a journal of the earlier version got on a full disk: part of a record, then later records behind it."""
    journal = Journal.create(tmp_path, {})
    journal.append({"seq": 1})
    journal.close()
    torn = frame({"seq": 2, "payload": "y" * 1000})[:300]
    with open(segment_file(journal), "ab") as handle:
        handle.write(torn + frame({"seq": 3}) + frame({"seq": 4}))
    entries = read_all(Journal(journal.folder))
    assert [e["seq"] if isinstance(e, dict) else e.reason for e in entries] == [1, "torn", 3, 4]
    assert entries[1].data == torn


def test_garbage_between_records_is_one_damaged_region(tmp_path):
    journal = Journal.create(tmp_path, {})
    journal.append({"seq": 1})
    journal.close()
    garbage = os.urandom(5000).replace(journal_frames.MAGIC, b"....")
    with open(segment_file(journal), "ab") as handle:
        handle.write(garbage + frame({"seq": 2}))
    entries = read_all(Journal(journal.folder))
    assert [e["seq"] if isinstance(e, dict) else len(e.data) for e in entries] == [1, 5000, 2]


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


def test_journals_of_the_earlier_version_are_read_and_their_damage_set_aside(tmp_path):
    folder = tmp_path / "run-legacy"
    folder.mkdir()
    (folder / "state.json").write_text("{}")
    (folder / "000001.bson").write_bytes(bson.encode({"seq": 1}) + bson.encode({"seq": 2})
                                         + struct.pack("<i", 999) + b"broken")
    journal = Journal(folder)
    *intact, damage = read_all(journal, tail_is_damage=True)
    assert [rec["seq"] for rec in intact] == [1, 2] and isinstance(damage, Damage)
    journal.append({"seq": 3})  # a sync never appends, but a new segment would be framed
    assert [rec["seq"] for rec in read_all(journal) if isinstance(rec, dict)][-1] == 3


def test_one_holder_of_the_lock_at_a_time_and_it_is_released_on_close(tmp_path):
    journal = Journal.create(tmp_path, {})
    other = Journal(journal.folder)
    assert journal.try_lock() and not other.try_lock()
    journal.unlock()
    assert other.try_lock()


def test_folders_and_files_are_private_to_the_user(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "umask", os.umask)  # restored after the test
    os.umask(0o022)
    journal = Journal.create(tmp_path / "spool", {"url": "mongodb://bob@db"})
    journal.append({"seq": 1})
    (tmp_path / "artifact.bin").write_bytes(b"a")
    spooled = journal.spool_file(tmp_path / "artifact.bin")
    journal.ack((1, 0))
    for path in [tmp_path / "spool", journal.folder, journal.files]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for path in [journal.folder / "state.json", segment_file(journal), journal.files / spooled,
                 journal.folder / "acked"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert not list(journal.folder.glob("*.tmp"))


def test_journals_lists_runs_and_not_the_quarantine(tmp_path):
    journal = Journal.create(tmp_path, {})
    (tmp_path / "quarantine" / journal.folder.name).mkdir(parents=True)
    assert [j.folder for j in journals(tmp_path)] == [journal.folder]


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
