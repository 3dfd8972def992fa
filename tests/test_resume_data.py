"""A resumed run trains on the data its run trained on (the embedded digits, --data-dir elsewhere,
or other data refused), and the validation and test splits are what was asked."""

import os
import shutil

import numpy as np
import pytest

from lenet_ext import checkpoint, data, train
from lenet_ext.training import runs


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
