"""Hostile but realistic use: every CLI fed bad input answers with one line and never a traceback;
run folders are never mixed or overwritten; a resume trains on the data its run trained on;
decoding is bounded in memory; the IDX reader and the image preparation hold up under random
input (hypothesis). Everything runs on the embedded digits, offline."""

import gzip
import io
import os
import shutil
import subprocess
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from lenet_ext import checkpoint, data, images, train
from lenet_ext.training import runs

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

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


@pytest.fixture(scope="module")
def env(offline_env):
    e = dict(os.environ, **offline_env, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    e.pop("LENET_EXT_DEBUG", None)
    return e


@pytest.fixture(scope="module")
def files(trained_run, tmp_path_factory):
    """Bad files of every kind, beside a good run."""
    d = tmp_path_factory.mktemp("bad")
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


def bad_invocations(p):
    train_ = ["lenet_ext.train", "--no-plots"]
    cases = [
        # (args, allowed exit codes, words that stderr must hold)
        (train_ + ["--valid-size", "999999", "--out", p["dir"] + "/v"], {1}, "--valid-size 999999 does not fit"),
        (train_ + ["--valid-size", "-1"], {2}, "--valid-size must be >= 0"),
        (train_ + ["--resume", p["best"]], {1}, "best-validation checkpoint"),
        (train_ + ["--resume", p["run"], "--epochs", "5"], {2}, "--epochs cannot be given with it"),
        (train_ + ["--resume", p["run"], "--out", p["dir"]], {2}, "--out cannot be given"),
        (train_ + ["--resume", p["dir"] + "/nowhere"], {1}, "no such checkpoint"),
        (train_ + ["--resume", p["random"]], {1}, "not a lenet_ext checkpoint"),
        (train_ + ["--resume", p["evil"]], {1}, "refused"),
        (train_ + ["--out", p["file"]], {1}, "is a file"),
        (train_ + ["--out", "/proc/lenet_ext-probe/run"], {1}, "cannot create the folder"),
        (train_ + ["--out", p["run"]], {1}, "already holds a run"),
        (train_ + ["--tsne-samples", "1"], {2}, "--tsne-samples must be >= 10"),
        (train_ + ["--device", "gpu"], {1}, "expected cpu, cuda or cuda:N"),
        (train_ + ["--data-dir", p["dir"] + "/nowhere"], {1}, "no such folder"),
        (train_ + ["--data-dir", p["file"]], {1}, "is a file"),
        (train_ + ["--data-dir", p["dir"]], {1}, "does not hold the four IDX files"),
        (train_ + ["--lr", "nan"], {2}, "--lr must be a positive number"),
        (train_ + ["--target-acc", "1.5"], {2}, "--target-acc must be in (0, 1]"),
        (train_ + ["--dry-run", "--epochs", "3"], {2}, "--epochs cannot be given"),
        (train_ + ["--threads", "0"], {2}, "--threads must be in"),
        (train_ + ["--epochs", "1e3"], {2}, "invalid int value"),
        (["lenet_ext.analyze", p["dir"] + "/nowhere"], {2}, "no such run folder"),
        (["lenet_ext.analyze", p["file"]], {2}, "is a file"),
        (["lenet_ext.analyze", p["badmetrics"]], {1}, "line 1 is not an epoch's metrics"),
        (["lenet_ext.analyze", p["badsummary"]], {1}, "summary.json: not valid JSON"),
        (["lenet_ext.analyze", p["run"], "--device", "tpu"], {1}, "expected cpu, cuda or cuda:N"),
        (["lenet_ext.analyze", p["run"], "--tsne-samples", "3"], {2}, "--tsne-samples must be >= 10"),
        (["lenet_ext.analyze", p["run"], "--checkpoint", "../x.pt"], {2}, "names a file in the run folder"),
        (["lenet_ext.analyze", p["run"], "--checkpoint", "missing.pt"], {1}, "no such checkpoint"),
        (["lenet_ext.predict", "--checkpoint", p["shapes"], p["one"]], {1}, "has shape (84, 100)"),
        (["lenet_ext.predict", "--checkpoint", p["missing"], p["one"]], {1}, "missing c1.bias"),
        (["lenet_ext.predict", "--checkpoint", p["nan"], p["one"]], {1}, "NaN"),
        (["lenet_ext.predict", "--checkpoint", p["random"], p["one"]], {1}, "not a lenet_ext checkpoint"),
        (["lenet_ext.predict", "--checkpoint", p["evil"], p["one"]], {1}, "refused"),
        (["lenet_ext.predict", "--checkpoint", p["dir"], p["one"]], {1}, "is a folder"),
        (["lenet_ext.predict", "--checkpoint", p["best"], p["one"], "--device", "cuda:7x"], {1}, "expected cpu"),
        (["lenet_ext.predict", "--checkpoint", p["best"], p["dot"]], {1}, "too small to hold a digit"),
        (["lenet_ext.predict", "--checkpoint", p["best"], p["huge"]], {1}, "megapixels"),
        (["lenet_ext.predict", "--checkpoint", p["best"], p["dir"]], {1}, "is a folder"),
        (["lenet_ext.predict", "--checkpoint", p["best"], "--idx", p["bomb"], "--index", "0"], {1}, "more than the"),
        (
            ["lenet_ext.predict", "--checkpoint", p["best"], "--idx", p["claims"], "--index", "0"],
            {1},
            "its header claims 10,000,000",
        ),
        (["lenet_ext.predict", "--checkpoint", p["best"], "--idx", p["blank_idx"], "--index", "1"], {1}, "blank"),
        (
            ["lenet_ext.predict", "--checkpoint", p["best"], "--idx", p["blank_idx"], "--index", "7"],
            {1},
            "out of range",
        ),
        (["lenet_ext.predict", "--checkpoint", p["best"]], {2}, "give image files"),
        (["lenet_ext.demo", "--batch-size", "0"], {2}, "--batch-size must be in 1..65536"),
        (["lenet_ext.demo", "--batch-size", str(10**9)], {2}, "--batch-size must be in"),
        (["lenet_ext.demo", "--repeats", "-1"], {2}, "--repeats must be in"),
        (["lenet_ext.demo", "--batch-size", "many"], {2}, "invalid int value"),
        (["lenet_ext.demo", "--device", "xpu"], {1}, "expected cpu, cuda or cuda:N"),
        (["lenet_ext.data", "--data-dir", p["dir"] + "/nowhere"], {1}, "no such folder"),
        (["lenet_ext.serve", "--checkpoint", p["dir"] + "/nowhere.pt"], {1}, "no such checkpoint"),
        (["lenet_ext.serve", "--checkpoint", p["evil"]], {1}, "refused"),
        (["lenet_ext.serve", "--checkpoint", p["nan"]], {1}, "NaN"),
        (["lenet_ext.serve", "--checkpoint", p["best"], "--port", "70000"], {2}, "--port must be in 0..65535"),
        (["lenet_ext.serve", "--checkpoint", p["best"], "--host", "999.1.1.1", "--port", "0"], {1}, "cannot bind"),
        (["lenet_ext.serve", "--checkpoint", p["best"], "--device", "gpu"], {1}, "expected cpu, cuda or cuda:N"),
        (
            ["lenet_ext.export", "--checkpoint", p["random"], "--format", "pt2", "--out", p["dir"] + "/x.pt2"],
            {1},
            "not a lenet_ext checkpoint",
        ),
        (
            ["lenet_ext.export", "--checkpoint", p["shapes"], "--format", "pt2", "--out", p["dir"] + "/x.pt2"],
            {1},
            "has shape",
        ),
        (
            ["lenet_ext.export", "--checkpoint", p["best"], "--format", "pt2", "--out", p["dir"] + "/no/x.pt2"],
            {1},
            "no such folder",
        ),
        (["lenet_ext.export", "--checkpoint", p["best"], "--format", "keras", "--out", "x"], {2}, "invalid choice"),
        (["lenet_ext.export", "--checkpoint", p["best"], "--format", "onnx", "--out", p["dir"]], {2}, "is a folder"),
        (["lenet_ext.experiments", "everything", "--out", p["dir"]], {2}, "invalid choice"),
        (["lenet_ext.experiments", "seeds", "--out", p["dir"], "--seeds", "0"], {2}, "--seeds must be in 1..100"),
        (["lenet_ext.experiments", "seeds", "--out", p["file"]], {1}, "is a file"),
        (
            ["lenet_ext.experiments", "flatten", "--out", p["dir"] + "/exp", "--data-dir", p["dir"] + "/nowhere"],
            {1},
            "no such folder",
        ),
    ]
    if not HAS_GPU:
        cases += [
            (train_ + ["--device", "cuda"], {1}, "no CUDA GPU"),
            (train_ + ["--cuda-graph", "on", "--device", "cpu"], {1}, "needs a CUDA device"),
            (["lenet_ext.demo", "--device", "cuda"], {1}, "no CUDA GPU"),
        ]
    return cases


@pytest.mark.slow
def test_bad_invocations_answer_in_one_line(files, env):
    cases = bad_invocations(files)
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda case: cli(case[0], env), cases))
    failures = []
    for (args, codes, words), (code, out, err) in zip(cases, results):
        last = err.strip().splitlines()[-1] if err.strip() else ""
        problems = []
        if "Traceback" in err or "Traceback" in out:
            problems.append("traceback")
        if code not in codes:
            problems.append(f"exit {code}, expected {codes}")
        if words not in err:
            problems.append(f"stderr lacks {words!r}")
        if code == 1 and not last.startswith("error:"):
            problems.append("last line is not 'error: ...'")
        if "weights_only" in err:
            problems.append("passes on torch's weights_only advice")
        if problems:
            failures.append(f"{' '.join(args[:1] + [a[-40:] for a in args[1:]])}: {', '.join(problems)}\n{err[-800:]}")
    assert not failures, "\n\n".join(failures)


@pytest.mark.slow
def test_good_files_are_predicted_beside_bad_ones(files, env):
    code, out, err = cli(
        ["lenet_ext.predict", "--checkpoint", files["best"], files["huge"], files["one"], files["dot"]], env
    )
    assert code == 1 and "Traceback" not in err
    assert out.startswith(files["one"] + ": ") and len(out.splitlines()) == 1
    assert err.count("error:") == 2


# ------------------------------------------------------------------------------------------ memory


@pytest.mark.slow
@pytest.mark.parametrize("what", ["huge image", "idx bomb", "idx bomb via data"])
def test_memory_stays_bounded(files, env, what, tmp_path):
    args = {
        "huge image": ["lenet_ext.predict", "--checkpoint", files["best"], files["huge"]],
        "idx bomb": ["lenet_ext.predict", "--checkpoint", files["best"], "--idx", files["bomb"], "--index", "0"],
        "idx bomb via data": ["lenet_ext.data", "--data-dir", None],
    }[what]
    if what == "idx bomb via data":
        folder = os.path.join(files["dir"], "bombdir")
        os.makedirs(folder, exist_ok=True)
        for stem in data.FILES.values():
            shutil.copy(
                files["bomb"] if stem.endswith("idx3-ubyte") else files["blank_idx"], os.path.join(folder, stem + ".gz")
            )
        args[-1] = folder
    code, out, err, rss = cli_rss(args, env, tmp_path)
    assert code == 1 and "Traceback" not in err and err.startswith("error:"), err
    assert 100 < rss < MEMORY_LIMIT_MB, f"peak RSS {rss:.0f} MB"


# ------------------------------------------------------------------------------------------ run folders


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


# ------------------------------------------------------------------------------------------ resume and data


def fake_data(folder, seed, n_train=600, n_test=200):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28)),
        "train_labels": np.arange(n_train) % 10,
        "test_images": rng.integers(0, 256, (n_test, 28, 28)),
        "test_labels": np.arange(n_test) % 10,
    }
    for key, stem in data.FILES.items():
        arr = arrays[key].astype(np.uint8)
        magic = data.IDX_IMAGES_MAGIC if key.endswith("images") else data.IDX_LABELS_MAGIC
        header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
        with open(os.path.join(folder, stem), "wb") as f:
            f.write(header + arr.tobytes())


def interrupted_run(interrupt_at_epoch, args):
    """A run stopped by Ctrl-C in its second epoch."""
    with interrupt_at_epoch(2):
        assert train.main(args + ["--no-plots"]) == 130


@pytest.mark.slow
def test_resume_keeps_the_embedded_data_when_a_cache_appears(tmp_path, offline_env, interrupt_at_epoch, capsys):
    run = str(tmp_path / "run")
    interrupted_run(interrupt_at_epoch, ["--epochs", "3", "--out", run])
    fake_data(os.path.join(offline_env["LENET_EXT_DATA"], "mnist"), seed=0)  # an MNIST cache appears
    try:
        assert train.main(["--resume", run, "--no-plots"]) == 0
        assert "embedded" in capsys.readouterr().out
        assert runs.read_summary(run)["data"]["source"] == "embedded"
        assert [r["epoch"] for r in runs.read_metrics(run)] == [1, 2, 3]
    finally:
        shutil.rmtree(os.path.join(offline_env["LENET_EXT_DATA"], "mnist"))


@pytest.mark.slow
def test_resume_data_dir_same_data_elsewhere_or_other_data(tmp_path, offline_env, interrupt_at_epoch, capsys):
    fake_data(tmp_path / "a", seed=1)
    run = str(tmp_path / "run")
    interrupted_run(
        interrupt_at_epoch, ["--epochs", "3", "--out", run, "--data-dir", str(tmp_path / "a"), "--valid-size", "100"]
    )
    fake_data(tmp_path / "other", seed=2)
    assert train.main(["--resume", run, "--no-plots", "--data-dir", str(tmp_path / "other")]) == 1
    assert "is not the data the run trained on" in capsys.readouterr().err
    shutil.move(str(tmp_path / "a"), str(tmp_path / "moved"))
    assert train.main(["--resume", run, "--no-plots"]) == 1  # the data is gone from where it was
    assert "no such folder" in capsys.readouterr().err
    assert train.main(["--resume", run, "--no-plots", "--data-dir", str(tmp_path / "moved")]) == 0
    assert checkpoint.load(os.path.join(run, "last.pt"))["epoch"] == 3


@pytest.mark.slow
def test_valid_size_is_honoured_on_the_embedded_digits(tmp_path, offline_env):
    ds = data.load(valid_size=1000, seed=0, log=lambda m: None)
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (3000, 1000, 1000) and ds.source == "embedded"
    with pytest.raises(data.DataError, match="must be in 0..3,999"):
        data.load(valid_size=4000, log=lambda m: None)


def test_empty_sets_are_errors_not_zero_accuracy(tmp_path):
    folder = tmp_path / "empty-test"
    fake_data(folder, seed=3, n_test=0)
    with pytest.raises(data.DataError, match="holds no images"):
        data.load(data_dir=str(folder))


@pytest.mark.slow
def test_no_validation_set_reports_none(tmp_path, offline_env):
    run = tmp_path / "run"
    assert train.main(["--epochs", "1", "--no-plots", "--valid-size", "0", "--out", str(run)]) == 0
    row = runs.read_metrics(str(run))[0]
    assert row["valid_loss"] is None and row["valid_acc"] is None and row["test_acc"] > 0.1


# ------------------------------------------------------------------------------------------ images


@pytest.fixture(scope="module")
def a_digit(offline_env):
    ds = data.load(log=lambda m: None)
    i = int((ds.test.labels == 7).nonzero()[0])
    return ((ds.test.images[i, 0].numpy() * data.STD + data.MEAN).clip(0, 1) * 255).round().astype(np.uint8)


def correlation(a, b):
    return np.corrcoef(a.astype(float).ravel(), b.astype(float).ravel())[0, 1]


def encode(im, fmt="PNG"):
    buffer = io.BytesIO()
    im.save(buffer, format=fmt)
    return buffer.getvalue()


def opaque_reference(digit, size=(112, 112)):
    """The preparation of the same digit as a plain white-on-black grayscale image."""
    from PIL import Image

    return images.prepare(np.asarray(Image.fromarray(digit).resize(size, Image.BILINEAR)))


@pytest.mark.parametrize("ink", [255, 0], ids=["white-ink", "black-ink"])
def test_digit_on_transparent_background(a_digit, ink):
    from PIL import Image

    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., :3] = ink
    rgba[..., 3] = a_digit  # the digit is where the image is opaque
    big = Image.fromarray(rgba, "RGBA").resize((112, 112), Image.BILINEAR)
    prepared = images.prepare(images.decode(encode(big)))
    assert correlation(prepared, opaque_reference(a_digit)) > 0.99
    assert correlation(prepared, a_digit) > 0.5


def test_float_image_in_0_1(a_digit):
    from PIL import Image

    im = Image.fromarray((a_digit / 255.0).astype(np.float32), "F").resize((112, 112), Image.BILINEAR)
    prepared = images.prepare(images.decode(encode(im, "TIFF")))
    assert correlation(prepared, opaque_reference(a_digit)) > 0.99
    assert np.array_equal(images.prepare(a_digit / 255.0), images.prepare(a_digit))  # a float array too


def test_sixteen_bit_image(a_digit):
    from PIL import Image

    im = Image.frombytes("I;16", (28, 28), (a_digit.astype("<u2") * 257).tobytes())
    assert np.array_equal(images.prepare(images.decode(encode(im))), images.prepare(a_digit))


def test_one_pixel_image_message():
    with pytest.raises(images.ImageError, match="1 x 1 pixels: too small"):
        images.prepare(np.zeros((1, 1)))


MODES = [
    "1",
    "L",
    "P",
    "RGB",
    "RGBA",
    "CMYK",
    "YCbCr",
    "LAB",
    "HSV",
    "I",
    "F",
    "LA",
    "PA",
    "RGBX",
    "RGBa",
    "La",
    "I;16",
    "I;16B",
    "I;16L",
    "I;16N",
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mode=st.sampled_from(MODES),
    w=st.integers(1, 70),
    h=st.integers(1, 70),
    seed=st.integers(0, 2**16),
    fmt=st.sampled_from(["PNG", "TIFF", "BMP", "GIF", "JPEG", "WEBP"]),
)
def test_every_mode_and_format_decodes_or_fails_cleanly(mode, w, h, seed, fmt):
    from PIL import Image

    rng = np.random.default_rng(seed)
    im = Image.frombytes(mode, (w, h), rng.integers(0, 256, w * h * 8, dtype=np.uint8).tobytes())
    try:
        blob = encode(im, fmt)
    except (OSError, ValueError, KeyError, TypeError):
        blob = None  # PIL cannot write this mode in this format: use the image as decode's caller would
    try:
        pixels = images.decode(blob) if blob is not None else None
        if pixels is not None:
            assert pixels.ndim == 2 and np.isfinite(pixels).all() and pixels.min() >= 0 and pixels.max() <= 255
            out = images.prepare(pixels)
            assert out.shape == (28, 28) and out.dtype == np.uint8
    except images.ImageError:
        pass


@settings(max_examples=80, deadline=None)
@given(blob=st.binary(max_size=2000))
def test_random_bytes_are_not_an_image(blob):
    with pytest.raises(images.ImageError):
        images.decode(blob)


@settings(max_examples=80, deadline=None)
@given(
    h=st.integers(1, 80),
    w=st.integers(1, 80),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from(["uint8", "uint16", "int32", "float32", "float64", "bool"]),
    scale=st.sampled_from([1.0, 1e-3, 255.0, 1e6, -1.0]),
)
def test_prepare_takes_any_array(h, w, seed, dtype, scale):
    rng = np.random.default_rng(seed)
    values = rng.random((h, w)) * scale
    if dtype == "bool":
        arr = values > 0.5 * scale
    elif dtype.startswith(("uint", "int")):
        arr = np.clip(values, np.iinfo(dtype).min, np.iinfo(dtype).max).astype(dtype)
    else:
        arr = values.astype(dtype)
    try:
        out = images.prepare(arr)
    except images.ImageError:
        return
    assert out.shape == (28, 28) and out.dtype == np.uint8 and out.max() > 0


@pytest.mark.parametrize("value, dtype", [(300.0, np.float64), (-5.0, np.float32), (1000, np.int32), (0.5, np.float64)])
def test_constant_image_is_blank(value, dtype):
    """A constant array, inside 0..255 or out of it, holds no digit: the one-line ImageError."""
    with pytest.raises(images.ImageError, match="blank"):
        images.prepare(np.full((28, 28), value, dtype=dtype))


# ------------------------------------------------------------------------------------------ IDX files


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=4000), gz=st.booleans(), kind=st.sampled_from(["images", "labels"]))
def test_idx_reader_on_random_bytes(tmp_path, blob, gz, kind):
    path = tmp_path / "f"
    path.write_bytes(gzip.compress(blob) if gz else blob)
    try:
        array = data.read_idx(str(path), kind)
    except data.DataError:
        return
    assert array.dtype == np.uint8


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(0, 5),
    cut=st.integers(0, 6000),
    gz=st.booleans(),
    extra=st.binary(max_size=3),
    dims=st.lists(st.integers(0, 2**32 - 1), min_size=3, max_size=3),
    use_dims=st.booleans(),
)
def test_idx_reader_on_truncations_and_extreme_headers(tmp_path, n, cut, gz, extra, dims, use_dims):
    good = idx_images(n, rng=np.random.default_rng(n))
    blob = good[:cut] + extra if cut < len(good) else good + extra
    if use_dims:
        blob = blob[:4] + b"".join(d.to_bytes(4, "big") for d in dims) + blob[16:]
    path = tmp_path / "f"
    path.write_bytes(gzip.compress(blob) if gz else blob)
    try:
        array = data.read_idx(str(path), "images")
    except data.DataError:
        assert blob != good
        return
    assert blob == good and array.shape == (n, 28, 28)
    assert np.array_equal(array.reshape(-1), np.frombuffer(good[16:], np.uint8))


# ------------------------------------------------------------------------------------------ Ctrl-C


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
        assert "interrupted" in err.strip().splitlines()[-1], err
