"""python -m lenet_ext.experiments in its tiny mode: each experiment on the embedded digits, one
epoch, one seed, with its results files checked (CI runs exactly this)."""

import csv

import pytest

from lenet_ext import experiments
from lenet_ext.distortions import FAMILIES
from lenet_ext.training import loop

pytestmark = pytest.mark.slow  # runs every experiment

PNG = b"\x89PNG\r\n\x1a\n"
PLOTS = {
    "seeds": ["errors_per_digit.png"],
    "no-bias": ["curves.png", "logit_spread.png"],
    "flatten": ["curves.png"],
    "valid-size": ["valid_size.png"],
    "tsne": ["tsne_grid.png"],
    "memory": [],
    "robustness": ["robustness.png"],
    "recipes": [],
}


@pytest.mark.parametrize("name", experiments.EXPERIMENTS)
def test_tiny_mode(name, tmp_path, offline_env):
    args = [name, "--epochs", "1", "--seeds", "1", "--out", str(tmp_path), "--tsne-samples", "200"]
    assert experiments.main(args) == 0
    folder = tmp_path / name
    rows = list(csv.DictReader(open(folder / "results.csv")))
    assert rows
    md = (folder / "results.md").read_text()
    assert md.startswith("# ") and "python -m lenet_ext.experiments" in md and "| " in md
    for plot in PLOTS[name]:
        assert (folder / plot).read_bytes()[:8] == PNG, plot
    if name == "seeds":
        assert {r["impl"] for r in rows} == {"ext", "torch"}
        for r in rows:
            assert int(r["test_errors"]) == sum(int(r[f"errors_{c}"]) for c in range(10))
    if name == "flatten":
        assert "largest difference" in md and "identical, epoch for epoch" in md
        assert rows[0]["variant"] == "conv" and rows[1]["variant"] == "linear"
        assert rows[0]["train_loss_final"] == rows[1]["train_loss_final"]
    if name == "valid-size":
        assert {int(r["valid_size"]) for r in rows} == {500, 1000} and "Skipped" in md  # 5,000+ do not fit
    if name == "recipes":
        from lenet_ext.experiments.recipes import CANDIDATES

        assert [r["recipe"] for r in rows] == list(CANDIDATES)
        assert "**Chosen: " in md and all(0 <= float(r["valid_acc"]) <= 1 for r in rows)
        assert sum(r["finalist"] == "True" for r in rows) == 3  # each finalist has its score under distortion
        assert all(0 <= float(r["valid_robust_acc"]) <= 1 for r in rows if r["finalist"] == "True")
    if name == "robustness":
        assert {r["model"] for r in rows} == {"default recipe", "no distortions"}
        assert {r["family"] for r in rows} == set(FAMILIES)
        for r in rows:
            assert 0 <= float(r["accuracy"]) <= 1
        identity = [r for r in rows if float(r["severity"]) == FAMILIES[r["family"]][1][0]]
        assert len({(r["model"], r["accuracy"]) for r in identity}) == 2  # severity 0: the clean accuracy
        assert "Which digits fail" in md
    if name == "tsne":
        assert {r["method"] for r in rows} >= {"t-SNE", "PCA"}
        assert all(0 <= float(r["trustworthiness"]) <= 1 for r in rows)
    # Run again: every training run is reused, nothing retrained (no epoch runs, no checkpoint moves).
    if name in ("flatten",):
        saved = {p: p.read_bytes() for p in (folder / "runs").glob("*/last.pt")}
        assert len(saved) >= 2  # the conv and linear variants, and the learning-rate variants
        results = (folder / "results.csv").read_text()
        with pytest.MonkeyPatch.context() as m:
            m.setattr(loop.Run, "train_epoch", lambda self: pytest.fail("an epoch was trained again"))
            assert experiments.main(args) == 0
        assert {p: p.read_bytes() for p in (folder / "runs").glob("*/last.pt")} == saved
        assert (folder / "results.csv").read_text() == results  # the same runs' figures


def test_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        experiments.main(["nonsense", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        experiments.main(["seeds", "--out", str(tmp_path), "--seeds", "0"])
