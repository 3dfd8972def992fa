"""The distortions (lenet_ext/distortions.py): the training augmentation and the robustness study's
families. Seeded and repeatable; each family at severity 0 is the identity; shapes, dtypes and the
background are kept; bad parameters are one-line errors; training with them resumes bit for bit."""

import math

import pytest
import torch

from lenet_ext import checkpoint, data, train
from lenet_ext.distortions import FAMILIES, Augment, DistortionError, distort
from lenet_ext.training.config import TrainConfig


@pytest.fixture(scope="module")
def digits(offline_env):
    return data.load(log=lambda m: None).test.images[:32]


def test_each_family_at_severity_zero_is_the_identity(digits):
    for family, (_, severities) in FAMILIES.items():
        assert torch.equal(distort(digits, family, severities[0], seed=3), digits), family


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_families_keep_shape_dtype_background_and_repeat(digits, dtype):
    x = digits.to(dtype)
    bg = float(x.amin())
    for family, (_, severities) in FAMILIES.items():
        for severity in severities[1:]:
            y = distort(x, family, severity, seed=5)
            assert y.shape == x.shape and y.dtype == dtype and y.device == x.device, (family, severity)
            assert torch.isfinite(y).all(), (family, severity)
            assert torch.equal(y, distort(x, family, severity, seed=5)), (family, severity)  # seeded
            if family not in ("polarity", "noise"):
                # The background stays the background: each image still holds it, as its smallest
                # value, over a good part of its area (less where a digit is enlarged or thickened).
                share = (y - bg).abs().le(0.02).flatten(1).float().mean(1)  # within 0.6% of the ink range
                assert float(share.min()) > 0.15, (family, severity, float(share.min()))
                assert torch.allclose(y.amin(dim=(1, 2, 3)), torch.full((len(y),), bg, dtype=dtype), atol=1e-5)
            if family not in ("noise", "polarity"):
                assert float(y.amin()) >= bg - 1e-5 and float(y.amax()) <= float(x.amax()) + 1e-5, (family, severity)
            assert not torch.equal(y, x), (family, severity)  # it does something


def test_seeds_differ_and_directions_vary(digits):
    a, b = distort(digits, "rotation", 20, seed=1), distort(digits, "rotation", 20, seed=2)
    assert not torch.equal(a, b)
    turned_left = distort(digits[:1].expand(64, -1, -1, -1).contiguous(), "rotation", 20, seed=1)
    assert len({tuple(t.flatten()[:400].tolist()) for t in turned_left}) == 2  # +20 and -20, both drawn


def test_rotation_is_a_rotation():
    """A bright dot right of the centre turned by 90 degrees lands below or above it."""
    x = torch.full((1, 1, 28, 28), -0.5)
    x[0, 0, 13:15, 20:22] = 2.0
    y = distort(x, "rotation", 90, seed=0)
    rows, cols = torch.nonzero(y[0, 0] > 1.0, as_tuple=True)
    assert abs(float(cols.float().mean()) - 13.5) < 1.5 and abs(float(rows.float().mean()) - 13.5) > 5


def test_polarity_swaps_ink_and_background(digits):
    y = distort(digits, "polarity", 1.0)
    lo, hi = digits.amin(dim=(1, 2, 3), keepdim=True), digits.amax(dim=(1, 2, 3), keepdim=True)
    assert torch.allclose(y, lo + hi - digits)


@pytest.mark.parametrize(
    "family,severity,words",
    [
        ("twirl", 1, "family must be one of"),
        ("rotation", float("nan"), "finite number"),
        ("scale", 0.5, "scale: severity must be >= 1"),
        ("thickness", 1.5, "whole number of pixels"),
        ("low-resolution", 40, "side in 2..28"),
        ("polarity", 2, "fraction in 0..1"),
        ("noise", -1, "noise: severity must be >= 0"),
    ],
)
def test_bad_parameters_are_one_line_errors(digits, family, severity, words):
    with pytest.raises(DistortionError, match=words) as info:
        distort(digits, family, severity)
    assert "\n" not in str(info.value)


def test_bad_images_are_refused():
    with pytest.raises(DistortionError, match="images must be a float"):
        distort(torch.zeros(2, 28, 28), "rotation", 10)


def test_augment_is_seeded_and_applies_draws(digits):
    aug = Augment(affine=True, elastic=True, rotate=12, zoom=0.12, shear=10, alpha=8, sigma=4, thickness=0.5)
    draws = torch.rand(len(digits), Augment.DRAWS, generator=torch.Generator().manual_seed(1))

    def fields():
        return aug.fields(len(digits), torch.Generator().manual_seed(7), digits.dtype, digits.device)

    maps = aug.maps(draws)
    a, b = aug(digits, draws, maps, fields()), aug(digits, draws, maps, fields())
    assert torch.equal(a, b) and a.shape == digits.shape and a.dtype == digits.dtype
    assert not torch.equal(a, digits)
    # Draws of 0.5 mean no rotation, scale 1 and no slant; no thickness draw, no field: identity.
    plain = Augment(affine=True, rotate=12, zoom=0.12, shear=10)
    half = torch.full((len(digits), Augment.DRAWS), 0.5)
    assert torch.allclose(plain(digits, half, plain.maps(half)), digits, atol=1e-5)
    assert Augment().active is False and torch.equal(Augment()(digits, half, plain.maps(half)), digits)


def test_elastic_field_is_smooth_and_scaled():
    aug = Augment(elastic=True, alpha=8.0, sigma=4.0)
    f = aug.fields(256, torch.Generator().manual_seed(0), torch.float32, "cpu") * (28 / 2)  # pixels
    assert f.shape == (256, 28, 28, 2)
    neighbour = (f[:, 1:] - f[:, :-1]).abs().mean() / f.abs().mean()
    assert neighbour < 0.25  # smooth: neighbours move together
    assert 0.1 < float(f.abs().mean()) < 8.0


@pytest.mark.parametrize(
    "args,words",
    [
        (["--augment", "twirl"], "--augment must be none or a comma-separated list"),
        (["--augment", "affine,affine"], "--augment must be none"),
        (["--augment", "affine", "--rotate", "400"], "--rotate must be degrees in 0..90"),
        (["--augment", "elastic", "--elastic-sigma", "0"], "--elastic-sigma must be pixels in 0.5..20"),
        (["--thickness", "2"], "--thickness must be a probability in 0..1"),
    ],
)
def test_train_refuses_bad_augment_flags(args, words, capsys):
    with pytest.raises(SystemExit) as exc:
        train.main(args)
    assert exc.value.code == 2 and words in capsys.readouterr().err


def test_config_records_the_augment_and_old_checkpoints_read_as_none():
    config = TrainConfig(augment="affine,elastic", rotate=8.0).validate()
    assert config.to_dict()["augment"] == "affine,elastic" and config.to_dict()["rotate"] == 8.0
    old = {k: v for k, v in TrainConfig().to_dict().items() if k not in ("augment", "rotate", "elastic_alpha")}
    assert TrainConfig.from_saved(old).augment == "none"


@pytest.mark.slow
def test_training_with_distortions_resumes_mid_epoch_bit_for_bit(tmp_path, offline_env, monkeypatch):
    """Stopped mid-epoch (as SIGTERM stops it) and resumed, a run with every distortion ends with
    the same weights and metrics as one never stopped; another seed ends elsewhere."""
    from lenet_ext.training import loop

    args = ["--epochs", "2", "--batch-size", "32", "--no-plots", "--threads", "1"]
    args += ["--augment", "affine,elastic,thickness"]
    assert train.main([*args, "--out", str(tmp_path / "straight")]) == 0
    real, calls = loop.Run.train_step, {"n": 0}

    def step_then_stop(self, x, y, share):
        real(self, x, y, share)
        calls["n"] += 1
        if calls["n"] == 150:  # epoch 2 (110 steps an epoch), step 40
            self.stop.set()

    with monkeypatch.context() as m:
        m.setattr(loop.Run, "train_step", step_then_stop)
        assert train.main([*args, "--out", str(tmp_path / "stopped")]) == 143
    mid = checkpoint.load(str(tmp_path / "stopped" / "last.pt"))["mid_epoch"]
    assert mid["step"] == 40
    assert train.main(["--resume", str(tmp_path / "stopped")]) == 0
    assert train.main([*args, "--seed", "2", "--out", str(tmp_path / "other")]) == 0
    a, b, c = (checkpoint.load(str(tmp_path / d / "last.pt")) for d in ("straight", "stopped", "other"))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]
    assert not all(torch.equal(a["model"][k], c["model"][k]) for k in a["model"])
    assert a["config"]["augment"] == "affine,elastic,thickness"
    assert all(math.isfinite(r["train_loss"]) for r in a["history"])
