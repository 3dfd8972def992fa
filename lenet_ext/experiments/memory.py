"""memory: peak memory of evaluating the 10,000 test digits in batches or all at once, each in a
fresh process (memory_probe)."""

import subprocess
import sys

from ..errors import UserError
from .context import Context
from .tables import Result, md_table, write_results

TITLE = "Memory of the evaluation"


def measure(ctx: Context) -> Result:
    rows = []
    for impl in ("ext", "torch"):
        for batch in (100, 1000, 10000):
            proc = subprocess.run(
                [sys.executable, "-m", "lenet_ext.experiments.memory_probe", impl, str(batch), ctx.args.data_dir or ""],
                capture_output=True,
                text=True,
                timeout=600,
            )
            if proc.returncode != 0:
                raise UserError(f"memory probe failed: {proc.stderr.strip().splitlines()[-1:]}")
            n, before, after = proc.stdout.split()
            rows.append(
                {
                    "impl": impl,
                    "batch": batch,
                    "test_images": int(n),
                    "rss_before_mb": float(before),
                    "rss_peak_mb": float(after),
                    "evaluation_mb": float(after) - float(before),
                }
            )
    return Result(rows, ctx.header())


def report(folder: str, result: Result) -> None:
    body = (
        "Peak resident memory added by evaluating the test set (loop.evaluate, CPU, a fresh process each, "
        "after a warm-up on 8 digits; the high-water mark of resident memory minus the resident memory before), "
        "in batches of 100, 1,000 or all at once. ext's fused inference op keeps an image's activations in "
        "a small scratch buffer; the torch layers hold every layer's output for the whole batch.\n\n"
    )
    body += md_table(
        ["impl", "batch", "test images", "resident before (MB)", "added by the evaluation (MB)"],
        [
            [
                r["impl"],
                f"{r['batch']:,}",
                f"{r['test_images']:,}",
                f"{r['rss_before_mb']:.0f}",
                f"{r['evaluation_mb']:.0f}",
            ]
            for r in result.rows
        ],
    )
    write_results(folder, TITLE, result, body)
