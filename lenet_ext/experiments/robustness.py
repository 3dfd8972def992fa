"""robustness: test accuracy under each family of distortion (rotation, scale, slant, stroke
thickness, shift, elastic, noise, blur, low resolution, polarity) at graded severities, for the
default recipe's model and for one trained without distortions (no shifts, no --augment), and
which digits fail under each, as what."""

import os
from typing import Any, Dict, List

from .. import robustness
from .context import Context
from .tables import Result, md_table, write_results

TITLE = "Robustness: accuracy under distortion"

# The models compared: the default recipe, and the same network trained on the digits as they are.
MODELS = {"default recipe": {}, "no distortions": {"shift": 0, "augment": "none"}}


def measure(ctx: Context) -> Result:
    impl = ctx.args.impl or "ext"
    rows: List[Dict[str, Any]] = []
    per_model: Dict[str, List[Dict[str, Any]]] = {}
    for name, overrides in MODELS.items():
        for seed in range(1, ctx.args.seeds + 1):
            config = ctx.config(impl=impl, seed=seed, **overrides)
            run = ctx.train(f"{name.replace(' ', '-')}-seed{seed}", config)
            test = ctx.dataset(config).test.to(ctx.device)
            measured = robustness.measure(run.model, test, seed=seed)
            if seed == 1:
                per_model[name] = measured
            rows += [{"model": name, "seed": seed, **r} for r in measured]
    return Result(rows, ctx.header(), {"per_model": per_model})


def report(folder: str, result: Result) -> None:
    per_model = result.extra["per_model"]
    body = (
        "Test accuracy (%) of each model (seed 1; every seed's row is in results.csv) on the test digits "
        "distorted by each family at each severity, the same distorted digits for every model "
        "(`lenet_ext.distortions.distort`, seeded). Plot: robustness.png.\n\n"
    )
    body += robustness.table(per_model)
    body += (
        "\n## Which digits fail, and as what\n\nAt each family's strongest severity: errors, the digit "
        "that fails most, and the three commonest confusions (true->predicted: count).\n\n"
    )
    strongest = {}
    for name, rows in per_model.items():
        for r in rows:
            strongest[(r["family"], name)] = r  # the last severity of each family is its strongest
    body += md_table(
        ["family", "severity", "model", "errors", "worst digit", "commonest confusions"],
        [
            [family, f"{r['severity']:g}", name, r["errors"], r["worst_digit"], r["confusions"] or "-"]
            for (family, name), r in strongest.items()
        ],
    )
    write_results(folder, TITLE, result, body)
    robustness.plot(per_model, os.path.join(folder, "robustness.png"), "test accuracy under distortion")
