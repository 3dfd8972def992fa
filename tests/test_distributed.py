"""Data-parallel training under torchrun (gloo, CPU, 127.0.0.1 only), on the embedded digits.

Tolerance: a 2-process run and a 1-process run with the same global batch and seed differ only
in the order of floating-point additions (each rank sums its half of the batch, DDP adds the
halves), so after two epochs their weights agree to 1e-5 (observed: a few 1e-7)."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from lenet_ext import checkpoint
from lenet_ext.training import runs

WEIGHT_TOL = 1e-5
TRAIN = ["--batch-size", "64", "--lr", "0.01", "--no-plots", "--seed", "11"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("torchrun") is None
        and not os.path.exists(os.path.join(os.path.dirname(sys.executable), "torchrun")),
        reason="torchrun not installed",
    ),
]


def torchrun(*args):
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "lenet_ext.train",
        *args,
    ]


def single(*args):
    return [sys.executable, "-m", "lenet_ext.train", "--threads", "1", *args]


def run(cmd, env, timeout=600):
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture
def env(offline_env):
    e = dict(os.environ, **offline_env, OMP_NUM_THREADS="1", LENET_EXT_DIST_TIMEOUT="30")
    e.pop("WORLD_SIZE", None)
    return e


def max_diff(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_two_processes_match_one(tmp_path, env):
    run(single("--epochs", "2", "--out", str(tmp_path / "one"), *TRAIN), env)
    out = run(torchrun("--epochs", "2", "--out", str(tmp_path / "two"), *TRAIN), env).stdout
    assert "x 2 processes" in out and out.count("epoch   2/2") == 1  # only rank 0 prints
    one = checkpoint.load(str(tmp_path / "one" / "last.pt"))
    two = checkpoint.load(str(tmp_path / "two" / "last.pt"))
    assert max_diff(one["model"], two["model"]) < WEIGHT_TOL
    for a, b in zip(one["history"], two["history"]):  # metrics are all-reduced: the same numbers
        assert abs(a["valid_loss"] - b["valid_loss"]) < 1e-4 and abs(a["test_acc"] - b["test_acc"]) < 2e-3
    # A distributed checkpoint is a plain one: it loads into a single-process model.
    from lenet_ext import LeNet5

    LeNet5().load_state_dict(two["model"])


def _workers(parent_pid):
    """{rank: pid} of the training processes torchrun started."""
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent_pid and b"RANK" in environ:
            found[int(environ[b"RANK"])] = int(pid)
    return found


def wait_for_first_epoch(proc, out):
    """Waits (5 minutes at most) until the torchrun job `proc` has written its first epoch's metrics
    into the run folder `out`; fails with the job's output if it ended first."""
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "metrics.jsonl").exists():
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.1)
    assert (out / "metrics.jsonl").exists(), "the run never finished an epoch"


def test_killed_rank_ends_the_run_and_resume_finishes_it(tmp_path, env):
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        torchrun("--epochs", "4", "--out", str(out), *TRAIN),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_first_epoch(proc, out)
        workers = _workers(proc.pid)
        assert set(workers) == {0, 1}, workers
        os.kill(workers[1], signal.SIGKILL)
        killed_at = time.time()
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and time.time() - killed_at < 120, output[-3000:]
    state = checkpoint.load(str(out / "last.pt"))  # intact, at a completed epoch
    assert 1 <= state["epoch"] < 4 and len(state["history"]) == state["epoch"]

    # Resume it under torchrun, and a copy of it in a single process: both finish the same run.
    shutil.copytree(out, tmp_path / "copy")
    run(torchrun("--resume", str(out), "--no-plots"), env)
    run(single("--resume", str(tmp_path / "copy"), "--no-plots"), env)
    run(single("--epochs", "4", "--out", str(tmp_path / "straight"), *TRAIN), env)
    straight = checkpoint.load(str(tmp_path / "straight" / "last.pt"))
    for folder in (out, tmp_path / "copy"):
        resumed = checkpoint.load(str(folder / "last.pt"))
        assert resumed["epoch"] == 4 and [r["epoch"] for r in runs.read_metrics(str(folder))] == [1, 2, 3, 4]
        assert max_diff(resumed["model"], straight["model"]) < WEIGHT_TOL


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_on_loopback_match_one_process(tmp_path, env):
    """Two torchrun launchers (--nnodes=2, one process each, c10d rendezvous on 127.0.0.1), as two
    machines would run them: the same run as one process."""
    port = free_port()
    node = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=2",
        "--nproc_per_node=1",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}",
        "--rdzv-id=lenet-two-nodes",
        "-m",
        "lenet_ext.train",
        "--epochs",
        "2",
        "--out",
        str(tmp_path / "two"),
        *TRAIN,
    ]
    launchers = [
        subprocess.Popen(node, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)
    ]
    run(single("--epochs", "2", "--out", str(tmp_path / "one"), *TRAIN), env)
    outputs = [p.communicate(timeout=600)[0] for p in launchers]
    assert [p.returncode for p in launchers] == [0, 0], "\n".join(o[-2000:] for o in outputs)
    assert sum("x 2 processes" in o for o in outputs) == 1  # rank 0's launcher prints
    one = checkpoint.load(str(tmp_path / "one" / "last.pt"))
    two = checkpoint.load(str(tmp_path / "two" / "last.pt"))
    assert max_diff(one["model"], two["model"]) < WEIGHT_TOL


def test_killed_worker_is_restarted_and_the_run_resumes(tmp_path, env):
    """torchrun --max-restarts=1: a worker killed mid-run makes torchrun restart both; they resume
    from the run folder's last.pt (TORCHELASTIC_RESTART_COUNT) and finish the run in the same
    folder, as a run that was never interrupted."""
    out = tmp_path / "elastic"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "--max-restarts=1",
        "-m",
        "lenet_ext.train",
        "--epochs",
        "4",
        "--out",
        str(out),
        *TRAIN,
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_first_epoch(proc, out)
        workers = _workers(proc.pid)
        assert set(workers) == {0, 1}, workers
        os.kill(workers[1], signal.SIGKILL)
        output, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output[-3000:]
    assert "resuming" in output
    run(single("--epochs", "4", "--out", str(tmp_path / "straight"), *TRAIN), env)
    resumed = checkpoint.load(str(out / "last.pt"))
    straight = checkpoint.load(str(tmp_path / "straight" / "last.pt"))
    assert resumed["epoch"] == 4 and [r["epoch"] for r in runs.read_metrics(str(out))] == [1, 2, 3, 4]
    assert max_diff(resumed["model"], straight["model"]) < WEIGHT_TOL


def test_sigterm_under_torchrun_stops_every_rank_resumably(tmp_path, env):
    out = tmp_path / "stopped"
    cmd = torchrun("--epochs", "3", "--out", str(out), *TRAIN[:-2], "--batch-size", "16", "--seed", "11")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_first_epoch(proc, out)
        time.sleep(0.5)
        for pid in _workers(proc.pid).values():
            os.kill(pid, signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert output.count("stopped by SIGTERM at step") == 1, output[-3000:]
    state = checkpoint.load(str(out / "last.pt"))
    assert state["epoch"] >= 1 and state["mid_epoch"]["step"] >= 1
    run(torchrun("--resume", str(out), "--no-plots"), env)
    assert checkpoint.load(str(out / "last.pt"))["epoch"] == 3
