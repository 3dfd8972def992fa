"""Helpers for the tests that feed the CLIs hostile input: IDX bytes, a CLI in a fresh process (with
its peak memory), and a folder of bad files beside a good run."""

import gzip
import os
import shutil
import subprocess
import sys
import zlib

import numpy as np
import torch

from lenet_ext import checkpoint, data

HAS_GPU = torch.cuda.is_available()
MEMORY_LIMIT_MB = 1024  # peak RSS of a whole CLI process (torch itself takes about 640 MB of it)


def idx_images(n, fill=0, rng=None):
    header = data.IDX_IMAGES_MAGIC.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (n, 28, 28))
    body = rng.integers(0, 256, n * 784, dtype=np.uint8).tobytes() if rng is not None else bytes([fill]) * (n * 784)
    return header + body


def cli(args, env, timeout=240):
    """(returncode, stdout, stderr) of `python -m args...` in a fresh process."""
    proc = subprocess.run([sys.executable, "-m", *args], env=env, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


# Runs a command in a child and writes that child's peak RSS (KB) to a file. The measurement needs
# this small launcher: a process forked from pytest (a gigabyte of it) would count pytest's pages
# in its own peak, while a child forked from this launcher starts from the launcher's few MB.
LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable] + sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def cli_rss(args, env, tmp_path, timeout=240):
    """(returncode, stdout, stderr, peak RSS in MB of the command's own process)."""
    report = tmp_path / "rss"
    proc = subprocess.run(
        [sys.executable, "-c", LAUNCHER, str(report), "-m", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout, proc.stderr, int(report.read_text()) / 1024


def bad_files(trained_run, d):
    """Bad files of every kind, beside a good run."""
    good = checkpoint.load(os.path.join(trained_run, "best.pt"))
    paths = {"run": trained_run, "best": os.path.join(trained_run, "best.pt"), "dir": str(d)}

    def ckpt(name, **changes):
        state = {**good, **changes}
        checkpoint.save(str(d / name), {k: v for k, v in state.items() if k != "format"})
        return str(d / name)

    model = good["model"]
    paths["nan"] = ckpt("nan.pt", model={**model, "c3.weight": model["c3.weight"] * float("nan")})
    paths["shapes"] = ckpt("shapes.pt", model={**model, "f6.weight": torch.zeros(84, 100)})
    paths["missing"] = ckpt("missing.pt", model={k: v for k, v in model.items() if k != "c1.bias"})
    paths["noconfig"] = ckpt("noconfig.pt", config="nonsense")
    (d / "random.pt").write_bytes(os.urandom(4096))
    paths["random"] = str(d / "random.pt")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > /dev/null",))

    torch.save({"format": checkpoint.FORMAT, "model": Evil()}, d / "evil.pt")
    paths["evil"] = str(d / "evil.pt")
    (d / "afile").write_text("not a folder")
    paths["file"] = str(d / "afile")
    from PIL import Image

    Image.new("L", (1, 1), 255).save(d / "dot.png")
    paths["dot"] = str(d / "dot.png")
    Image.new("L", (13000, 13000), 0).save(d / "huge.png")  # 169 megapixels in ~170 KB
    paths["huge"] = str(d / "huge.png")
    digit = np.zeros((28, 28), np.uint8)
    digit[4:24, 12:16] = 255  # a one
    Image.fromarray(digit).resize((84, 84)).save(d / "one.png")
    paths["one"] = str(d / "one.png")
    (d / "blank-idx3-ubyte").write_bytes(idx_images(3, fill=0))
    paths["blank_idx"] = str(d / "blank-idx3-ubyte")
    # A gzip bomb: a header for 10 digits, then a gigabyte of zeros (1 MB compressed).
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [bomb.compress(idx_images(10))]
    block = bytes(1 << 24)
    for _ in range(64):
        parts.append(bomb.compress(block))
    parts.append(bomb.flush())
    (d / "bomb-idx3-ubyte.gz").write_bytes(b"".join(parts))
    paths["bomb"] = str(d / "bomb-idx3-ubyte.gz")
    # A header claiming ten million digits (7.8 GB) over a few bytes.
    (d / "claims-idx3-ubyte.gz").write_bytes(
        gzip.compress(idx_images(0)[:4] + (10_000_000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\0" * 1000)
    )
    paths["claims"] = str(d / "claims-idx3-ubyte.gz")
    # Run folders with corrupt metrics or summary, and one for the resume probes.
    for name, target, text in (
        ("badmetrics", "metrics.jsonl", '{"epoch": 1}\n{not json\n'),
        ("badsummary", "summary.json", "[1, 2"),
    ):
        shutil.copytree(trained_run, d / name)
        (d / name / target).write_text(text)
        paths[name] = str(d / name)
    return paths


def cli_env(offline_env):
    e = dict(os.environ, **offline_env, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    e.pop("LENET_EXT_DEBUG", None)
    return e
