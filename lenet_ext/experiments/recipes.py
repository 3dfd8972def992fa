"""recipes: the search for the default recipe. Each candidate (distortions, their strengths,
epochs, batch size, peak learning rate) trains once per seed and is scored on the validation split
only (its final validation accuracy); the test accuracy is reported beside it, never used to choose.
The candidates keep the training time within twice that of the shifts-only recipe of 20 epochs."""

import statistics
from typing import Any, Dict, List

from .context import Context
from .tables import Result, md_table, pm, write_results

TITLE = "Recipe search: distortions, epochs, batch size, learning rate"

AFFINE = {"augment": "affine", "rotate": 12.0, "zoom": 0.12, "shear": 10.0}
ELASTIC = {**AFFINE, "augment": "affine,elastic", "elastic_alpha": 8.0, "elastic_sigma": 4.0}

# name -> the settings it changes from the shifts-only recipe (20 epochs of batch 64, lr 0.01, shifts of 2).
CANDIDATES: Dict[str, Dict[str, Any]] = {
    "shifts (20 ep)": {"augment": "none"},
    "shifts (30 ep)": {"augment": "none", "epochs": 30},
    "affine (20 ep)": {**AFFINE},
    "affine (30 ep)": {**AFFINE, "epochs": 30},
    "affine mild (30 ep)": {**AFFINE, "rotate": 8.0, "zoom": 0.08, "shear": 8.0, "epochs": 30},
    "affine strong (30 ep)": {**AFFINE, "rotate": 15.0, "zoom": 0.15, "shear": 15.0, "epochs": 30},
    "affine+elastic (20 ep)": {**ELASTIC},
    "affine+elastic (30 ep)": {**ELASTIC, "epochs": 30},
    "affine+elastic a=12 (30 ep)": {**ELASTIC, "elastic_alpha": 12.0, "epochs": 30},
    "affine+elastic, lr 0.015 (30 ep)": {**ELASTIC, "lr": 0.015, "epochs": 30},
    "affine+elastic, batch 128 lr 0.02 (30 ep)": {**ELASTIC, "batch_size": 128, "lr": 0.02, "epochs": 30},
    "affine+elastic+thickness (30 ep)": {
        **ELASTIC,
        "augment": "affine,elastic,thickness",
        "thickness": 0.2,
        "epochs": 30,
    },
}


def measure(ctx: Context) -> Result:
    impl = ctx.args.impl or "ext"
    rows: List[Dict[str, Any]] = []
    for name, settings in CANDIDATES.items():
        settings = dict(settings)
        if ctx.args.epochs is not None:
            settings.pop("epochs", None)  # --epochs (the tiny mode) wins
        for seed in range(1, ctx.args.seeds + 1):
            base = {"shift": 2, "augment": "none", "epochs": ctx.args.epochs or 20, "batch_size": 64, "lr": 0.01}
            config = ctx.config(impl=impl, seed=seed, **{**base, **settings})
            slug = "".join(c if c.isalnum() else "-" for c in name).strip("-")
            run = ctx.train(f"{slug}-seed{seed}", config)
            last = run.history[-1]
            rows.append(
                {
                    "recipe": name,
                    "seed": seed,
                    **{k: getattr(config, k) for k in ("epochs", "batch_size", "lr", "shift", "augment")},
                    "valid_acc": last["valid_acc"],
                    "test_acc": last["test_acc"],
                    "train_seconds": sum(r["epoch_s"] for r in run.history),
                }
            )
    return Result(rows, ctx.header())


def report(folder: str, result: Result) -> None:
    rows = result.rows
    names = list(dict.fromkeys(r["recipe"] for r in rows))
    score = {n: statistics.fmean(r["valid_acc"] for r in rows if r["recipe"] == n) for n in names}
    ranked = sorted(names, key=lambda n: -score[n])
    base = [r["train_seconds"] for r in rows if r["recipe"] == names[0]]
    body = (
        "Each candidate trained on the training split and scored by its final validation accuracy "
        "(mean over seeds); the table is in that order. The test accuracy is shown, not used. Training "
        f"time against the first candidate's (the shifts-only recipe of 20 epochs).\n\n**Chosen by validation: "
        f"{ranked[0]}.**\n\n"
    )
    seconds = {n: statistics.fmean(r["train_seconds"] for r in rows if r["recipe"] == n) for n in names}
    body += md_table(
        ["recipe", "seeds", "validation accuracy (%)", "test accuracy (%)", "training time (s)", "time / shifts-only"],
        [
            [
                n,
                sum(r["recipe"] == n for r in rows),
                pm([r["valid_acc"] for r in rows if r["recipe"] == n], 100),
                pm([r["test_acc"] for r in rows if r["recipe"] == n], 100),
                f"{seconds[n]:.0f}",
                f"{seconds[n] / statistics.fmean(base):.2f}",
            ]
            for n in ranked
        ],
    )
    write_results(folder, TITLE, result, body)
