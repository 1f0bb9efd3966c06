"""``sacred-gpu sync --follow`` (``record/follow.py``): a journal copied in pieces by another process, uploaded as
it arrives, exactly once, the run live in MongoDB meanwhile; the followed folder never written to."""

from __future__ import annotations

import filecmp
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sacred_gpu import cli
from sacred_gpu.read import connect
from sacred_gpu.record import quarantine
from sacred_gpu.record.follow import FollowedJournal, Follower
from sacred_gpu.record.journal import Journal
from sacred_gpu.record.sync import journals
from tests.support.experiments import run_experiment
from tests.support.recording import observer, stored_steps, training, wait_for

STEPS = 200

#: The sync tool: copies a journal folder into another in pieces of 50-900 bytes (records cut anywhere), each file
#: front to back, the last piece of each segment after the first of the next, state.json a third of the way in,
#: the spooled files two thirds in (each written whole under a temporary name, then renamed, as Drive and rsync do),
#: state.json again at the end.
COPIER = r"""
import os, random, shutil, sys, time
source, target, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
os.makedirs(os.path.join(target, "files"), exist_ok=True)
segments = sorted(name for name in os.listdir(source) if name.endswith(".log"))
per_segment = []
for name in segments:
    size, at, pieces = os.path.getsize(os.path.join(source, name)), 0, []
    while at < size:
        step = rng.randint(50, 900)
        pieces.append((name, at, min(at + step, size)))
        at += step
    per_segment.append(pieces)
order, late = [], None
for pieces in per_segment:
    order.append(pieces[0])
    if late:
        order.append(late)
    order.extend(pieces[1:-1])
    late = pieces[-1] if len(pieces) > 1 else None
if late:
    order.append(late)

def copy_whole(relative):
    temporary = os.path.join(target, os.path.dirname(relative), "." + os.path.basename(relative) + ".part")
    shutil.copyfile(os.path.join(source, relative), temporary)
    os.replace(temporary, os.path.join(target, relative))

for index, (name, start, end) in enumerate(order):
    if index == len(order) // 3:
        copy_whole("state.json")
    if index == 2 * len(order) // 3:
        for spooled in os.listdir(os.path.join(source, "files")):
            copy_whole(os.path.join("files", spooled))
    with open(os.path.join(source, name), "rb") as src:
        src.seek(start)
        data = src.read(end - start)
    with open(os.path.join(target, name), "ab") as dst:
        assert dst.tell() == start
        dst.write(data)
    time.sleep(0.01)
copy_whole("state.json")
"""


@pytest.fixture
def recorded(client, spool, tmp_path, monkeypatch):
    """The other machine's journal: a real Sacred run recorded OFFLINE (``loss`` and ``acc`` at 200 steps, a
    resource, an artifact, output), in segments of about 2 KB (so several are sealed)."""
    monkeypatch.setattr("sacred_gpu.record.journal.SEGMENT_BYTES", 2000)
    run_experiment(training(tmp_path, steps=STEPS, pause=0.003), observer(client, offline=True))
    [journal] = journals(spool)
    assert len(journal.segments()) >= 4
    assert client["sacred"].runs.count_documents({}) == 0  # nothing reached MongoDB: it was offline
    return journal


def test_a_copy_arriving_in_pieces_is_uploaded_exactly_once_with_the_run_live_meanwhile(client, db, recorded,
                                                                                        tmp_path):
    drive = tmp_path / "drive"
    copy = drive / recorded.folder.name
    books = tmp_path / "books"
    follower = Follower(drive, books, client=client)
    stop = threading.Event()
    following = threading.Thread(target=follower.run, kwargs={"interval": 0.02, "stop": stop})
    following.start()
    copier = subprocess.Popen([sys.executable, "-c", COPIER, str(recorded.folder), str(copy), "7"])
    board = connect(client=client)
    seen = []  # what the board's read model (what /metrics serves) had of the run while the copy arrived
    try:
        while copier.poll() is None:
            seen += [(run.status, run.metrics.get("loss", (None, None))[1]) for run in board.live_runs()]
            time.sleep(0.02)
        assert copier.returncode == 0
        wait_for(lambda: FollowedJournal(copy, books / copy.name).done, "the journal uploaded to its end", 60)
    finally:
        stop.set()
        following.join(30)
        copier.kill()
    [run] = list(db.runs.find())
    # live meanwhile: RUNNING on the board with its loss part-way
    assert any(status == "RUNNING" and step is not None and step < STEPS - 1 for status, step in seen), seen
    assert run["status"] == "COMPLETED" and run["result"] == 0.5
    for name in ("loss", "acc"):
        assert sorted(stored_steps(db, run["_id"], name)) == list(range(STEPS)), name  # every point, once
    assert board.artifact(run["_id"], "weights.bin") == b"w" * 1000
    assert [Path(path).name for path, _ in run["resources"]] == ["data.csv"]
    assert "finished training" in run["captured_out"]
    # the followed folder is as the copier left it: a byte-for-byte copy, nothing of the follower's in it
    compared = filecmp.dircmp(recorded.folder, copy, ignore=["lock"])
    assert not compared.diff_files and not compared.left_only and not compared.right_only
    assert not compared.subdirs["files"].left_only and not compared.subdirs["files"].right_only
    assert quarantine.entries(books) == []
    follower.step()  # looking again uploads nothing twice
    assert sorted(stored_steps(db, run["_id"], "loss")) == list(range(STEPS))


def test_a_record_cut_short_and_a_segment_arriving_early_are_waited_for(tmp_path, monkeypatch):
    """Reading stops at a record not wholly there, and does not go on to the next segment before the seal of the
    one before: the next write completes them, and every record is read once, in order."""
    monkeypatch.setattr("sacred_gpu.record.journal.SEGMENT_BYTES", 600)
    writer = Journal.create(tmp_path / "remote", {"run_id": 3})
    for index in range(30):
        writer.append({"op": "update_run", "fields": {"i": index, "pad": "x" * 50}})
    writer.mark_end()
    first, second = writer.segments()[:2]
    copy = tmp_path / "drive" / writer.folder.name
    copy.mkdir(parents=True)
    (copy / "state.json").write_bytes((writer.folder / "state.json").read_bytes())
    one = (writer.folder / f"{first:06d}.log").read_bytes()
    (copy / f"{first:06d}.log").write_bytes(one[:len(one) // 2 + 3])  # cut inside a record
    (copy / f"{second:06d}.log").write_bytes((writer.folder / f"{second:06d}.log").read_bytes())  # early
    followed = FollowedJournal(copy, tmp_path / "books" / copy.name)

    def read_on() -> list[int]:
        found = [(rec["fields"]["i"], end) for rec, end in followed.read(followed.acked())]
        if found:
            followed.ack(found[-1][1])
        return [i for i, _ in found]

    partial = read_on()
    assert partial and partial == list(range(len(partial)))  # the whole records before the cut, nothing more
    assert read_on() == []  # the cut record is still on its way
    (copy / f"{first:06d}.log").write_bytes(one)  # the rest of it arrives
    for segment in writer.segments()[2:]:
        (copy / f"{segment:06d}.log").write_bytes((writer.folder / f"{segment:06d}.log").read_bytes())
    assert partial + read_on() == list(range(30))
    assert followed.state()["finished"] and followed.state()["run_id"] == 3  # its end record was read


def test_the_command_follows_until_complete_and_says_so(client, db, recorded, tmp_path, capsys, monkeypatch):
    import shutil

    import sacred_gpu.record.follow as follow_module

    real = follow_module.sync_journal
    monkeypatch.setattr(follow_module, "sync_journal",
                        lambda journal, **kw: real(journal, **{**kw, "client": client, "url": None}))
    drive = tmp_path / "drive"
    shutil.copytree(recorded.folder, drive / recorded.folder.name)
    capsys.readouterr()
    code = cli.main(["sync", str(drive), "--follow", "--until-complete", "--interval", "0.05",
                     "--books", str(tmp_path / "books")])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert f"complete     run 1  {drive / recorded.folder.name}" in printed
    assert sorted(stored_steps(db, 1)) == list(range(STEPS))
    assert cli.main(["sync", "--follow"]) == 2  # which folder?
