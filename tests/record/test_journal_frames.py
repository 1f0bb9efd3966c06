"""The journal's frames and the readers that report damage (``record/journal_frames.py``): checksums,
resynchronisation past damage, torn tails, journals of the earlier version."""

from __future__ import annotations

import os
import struct

import bson
import pytest

from sacred_gpu.record import journal_frames
from sacred_gpu.record.journal import Journal
from sacred_gpu.record.journal_frames import Damage, frame
from tests.support.journals import read_all, records, segment_file


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
