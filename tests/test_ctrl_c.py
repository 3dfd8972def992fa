"""Ctrl-C at any moment of a CLI's start-up and first epoch is one line (`interrupted`, exit 130),
never a traceback."""

import subprocess
import sys

import pytest


def _started_torch(pid: int) -> bool:
    """Whether the process has begun importing torch (its libraries are mapped): by then
    lenet_ext's own start-up code, the first thing `python -m lenet_ext.<tool>` runs, has run."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            return "libtorch" in f.read()
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15, 0.3, 0.6, 1.0, 1.5, 2.5])
def test_ctrl_c_during_start_up_is_one_line(tmp_path, env, delay):
    """SIGINT at several moments of start-up, counted from when torch's import begins: in torch's
    import, in lenet_ext's, while the data loads, in the first epoch. (Before that, in the first
    tens of milliseconds, Python itself is starting and answers Ctrl-C its own way.)"""
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "lenet_ext.train", "--epochs", "2", "--no-plots", "--out", str(tmp_path / "run")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while not _started_torch(proc.pid) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert "Traceback" not in err, err
    if proc.returncode != 0:  # else it had finished before the signal came
        assert proc.returncode == 130, (proc.returncode, err)
