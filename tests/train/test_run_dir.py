"""RunDir in one process: claiming, overwriting, stale temporaries, cleanup, OS errors."""

from __future__ import annotations

import os

import pytest

from flowrl.errors import UserError
from flowrl.train.run_dir import LOCK_NAME, MARKER_NAME, RunDir


def test_lock_file_names_the_holder_and_a_second_claim_fails(tmp_path):
    run = RunDir(tmp_path / "run").acquire()
    assert (tmp_path / "run" / LOCK_NAME).read_text().strip() == str(os.getpid())
    with pytest.raises(UserError, match=f"in use by another flowrl run \\(PID {os.getpid()}\\)"):
        RunDir(tmp_path / "run").acquire(resume=True)
    (tmp_path / "run" / "metrics.jsonl").write_text("")
    run.release()
    RunDir(tmp_path / "run").acquire(resume=True).release()  # free again once released


def test_overwrite_empties_the_folder_and_stale_temporaries_go(tmp_path):
    path = tmp_path / "run"  # as a run from before the marker left it
    (path / "checkpoints").mkdir(parents=True)
    (path / "config.yaml").write_text("name: run\n")
    (path / "checkpoints" / "last.pt").write_bytes(b"old")
    (path / "checkpoints" / ".last.pt.123.tmp").write_bytes(b"half")
    (path / "events.out.tfevents.1").write_bytes(b"old")
    with pytest.raises(UserError, match=r"already holds a run .*--resume.*--overwrite"):
        RunDir(path).acquire()
    run = RunDir(path).acquire(resume=True)
    assert not (path / "checkpoints" / ".last.pt.123.tmp").exists()
    assert (path / "checkpoints" / "last.pt").read_bytes() == b"old"
    run.release()
    run = RunDir(path).acquire(overwrite=True)
    assert run.contents() == [] and (path / MARKER_NAME).is_file()  # now marked as a run's
    run.release()
    assert not path.exists()  # nothing but the lock file and the marker was left: removed


def test_a_new_run_marks_its_folder_which_overwrite_may_then_empty(tmp_path):
    path = tmp_path / "run"
    run = RunDir(path).acquire()
    assert (path / MARKER_NAME).is_file()
    (path / "metrics.jsonl").write_text("{}\n")
    run.release()
    with pytest.raises(UserError, match="already holds a run"):
        RunDir(path).acquire()
    RunDir(path).acquire(overwrite=True).release()
    assert not path.exists()


@pytest.mark.parametrize(
    "files", [["notes.txt"], ["config.yaml"], ["metrics.jsonl"], ["checkpoints/last.pt"]]
)
def test_overwrite_refuses_a_folder_no_run_made(tmp_path, files):
    path = tmp_path / "mine"
    for name in files:
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text("keep me")
    for flags in ({"overwrite": True}, {}):
        with pytest.raises(UserError, match=f"{path} holds files not made by flowrl"):
            RunDir(path).acquire(**flags)
    assert sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()) == files
    assert all((path / name).read_text() == "keep me" for name in files)


def test_out_dir_under_a_file(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match=r"cannot create the run folder .*: Not a directory"):
        RunDir(tmp_path / "file" / "run").acquire()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_out_dir(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(UserError, match="Permission denied"):
            RunDir(tmp_path / "run").acquire()
    finally:
        tmp_path.chmod(0o700)
