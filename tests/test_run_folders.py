"""Run folders are never mixed or overwritten: two runs into one folder, a folder holding any run
file, the claim and its release, and the temporary files an interrupted save leaves."""

import os
import subprocess
import sys

import pytest

from lenet_ext import checkpoint, train
from lenet_ext.training import runs


@pytest.mark.slow
def test_two_runs_into_one_folder_at_once(tmp_path, env):
    out = str(tmp_path / "shared")
    args = ["lenet_ext.train", "--epochs", "2", "--no-plots", "--out", out]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", *args, "--seed", str(seed)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (21, 22)
    ]
    results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 1], results
    loser = next(r for r in results if r[0] == 1)
    assert "in use by another lenet_ext process" in loser[2] or "already holds a run" in loser[2], loser[2]
    winner_seed = (21, 22)[[r[0] for r in results].index(0)]
    summary = runs.read_summary(out)
    assert summary["config"]["seed"] == winner_seed
    assert checkpoint.load(os.path.join(out, "last.pt"))["config"]["seed"] == winner_seed
    assert checkpoint.load(os.path.join(out, "best.pt"))["config"]["seed"] == winner_seed
    assert [r["epoch"] for r in runs.read_metrics(out)] == [1, 2]


@pytest.mark.slow
def test_folder_with_any_run_file_is_refused(tmp_path, offline_env, capsys):
    folder = tmp_path / "finished"
    folder.mkdir()
    (folder / "summary.json").write_text("{}")  # a finished run whose last.pt was deleted
    assert train.main(["--out", str(folder), "--epochs", "1", "--no-plots"]) == 1
    assert "already holds a run (summary.json)" in capsys.readouterr().err
    assert (folder / "summary.json").read_text() == "{}"


def test_claim_is_exclusive_and_released(tmp_path):
    first = runs.claim(str(tmp_path / "run"), new=True)
    with pytest.raises(runs.RunFolderError, match=f"pid {os.getpid()}"):
        runs.claim(str(tmp_path / "run"), new=False)
    first.release()
    runs.claim(str(tmp_path / "run"), new=False).release()


@pytest.mark.slow
def test_stale_temporary_files_are_removed_on_resume(tmp_path, offline_env):
    run = tmp_path / "run"
    assert train.main(["--epochs", "2", "--no-plots", "--out", str(run)]) == 0
    stale = [run / ".last.pt.k1ll3d", run / ".best.pt.x9", run / ".metrics.jsonl.q"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    (run / "notes.txt").write_text("mine")  # a user's own file is left alone
    assert train.main(["--resume", str(run), "--no-plots"]) == 0
    assert not any(p.exists() for p in stale) and (run / "notes.txt").exists()
