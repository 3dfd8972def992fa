"""The study of a training run, from its checkpoint and data, written into the run folder:

  loss_curves.png       train, valid and test loss and accuracy per epoch
  failures.csv          every misclassified test digit: index, true label, predicted label, confidence
  failures.png          a grid of those digits, true -> predicted
  per_class_errors.csv  errors per true class (which digits fail most)
  confusion_matrix.png  true x predicted counts
  tsne.png              t-SNE of the 84-unit F6 activations of test images, failures marked
  conv1_maps.png        the six c1 feature maps of chosen digits beside the input, and the c1 filters
  robustness.csv/.png   test accuracy under ten families of distortion at graded severities, with the
                        commonest confusions there (robustness.py)
  report.html           one self-contained page with all of the above

Used by `python -m lenet_ext.analyze RUN_DIR` and at the end of `python -m lenet_ext.train`; the
figures are drawn by plots.py.
"""

import base64
import html
import json
import os
import string
import sys
import time
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from . import checkpoint, cli, data, fileio, robustness
from .distortions import FAMILIES
from .models import LeNet5
from .plots import pixels, plot_confusion, plot_conv1, plot_failures, plot_loss_curves, plot_tsne
from .training import runs
from .training.config import MIN_TSNE_SAMPLES
from .training.resume import run_data

FILES = runs.STUDY_FILES


@torch.inference_mode()
def predict(model: LeNet5, images: torch.Tensor, batch_size: int = 1000):
    """(probabilities (N, 10), F6 features (N, 84)) in batches."""
    model.eval()
    probs, feats = [], []
    for start in range(0, len(images), batch_size):
        acts = model.activations(images[start : start + batch_size])
        probs.append(torch.softmax(acts["logits"], 1).cpu())
        feats.append(acts["f6"].cpu())
    return torch.cat(probs), torch.cat(feats)


def _choose_conv1_digits(true: np.ndarray, pred: np.ndarray, wanted=(8, 9)) -> List[int]:
    """Test positions of one 8 and one 9, misclassified ones first."""
    chosen = []
    for digit in wanted:
        failed = np.flatnonzero((true == digit) & (pred != digit))
        anyone = np.flatnonzero(true == digit)
        pool = failed if len(failed) else anyone
        if len(pool):
            chosen.append(int(pool[0]))
    return chosen or [0]


def _img(path: str) -> str:
    with open(path, "rb") as f:
        return "data:image/png;base64," + base64.b64encode(f.read()).decode()


CELL_THUMBNAILS = 60  # digits listed per confusion-matrix cell (every one for the off-diagonal cells)
WEB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web")
REPORT_JS = os.path.join(WEB, "report.js")


def _template(name: str) -> string.Template:
    """A page template of lenet_ext/web ($name placeholders)."""
    with open(os.path.join(WEB, name), encoding="utf-8") as f:
        return string.Template(f.read())


def _report_data(report: Dict, classes) -> Dict:
    """What report.js needs: the thumbnailed digits (every failure, the t-SNE sample, the first
    CELL_THUMBNAILS of each confusion-matrix cell) as one base64 block, and where each is used."""
    true, pred, conf, index = report["true"], report["pred"], report["conf"], report["index"]
    failed = np.flatnonzero(true != pred)
    cells = {}
    for t in range(len(classes)):
        for p in range(len(classes)):
            members = np.flatnonzero((true == t) & (pred == p))
            cells[f"{t},{p}"] = members if t != p else members[:CELL_THUMBNAILS]
    positions = np.unique(np.concatenate([failed, report["sample"]] + list(cells.values())).astype(np.int64))
    slot = {int(v): i for i, v in enumerate(positions)}
    pixels = (np.clip(report["images"][positions], 0, 1) * 255).round().astype(np.uint8)
    return {
        "classes": list(classes),
        "items": {
            "true": true[positions].tolist(),
            "pred": pred[positions].tolist(),
            "conf": [round(float(c), 4) for c in conf[positions]],
            "index": index[positions].tolist(),
        },
        "pixels": base64.b64encode(pixels.tobytes()).decode(),
        "tsne": [
            [round(float(x), 3), round(float(y), 3), slot[int(i)]] for (x, y), i in zip(report["xy"], report["sample"])
        ],
        "failures": [slot[int(i)] for i in failed],
        "matrix": report["matrix"].tolist(),
        "cells": {k: [slot[int(i)] for i in v] for k, v in cells.items() if len(v)},
    }


def write_report(
    run_dir: str, summary: Dict, per_class: List[Dict], failures: List[Dict], classes, report: Optional[Dict] = None
) -> None:
    """report.html: one self-contained page (no network): the summary, the interactive t-SNE,
    confusion matrix and failures (when `report` holds their data), and the static figures."""
    esc = html.escape
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in summary.items())
    pc = "".join(
        f"<tr><td>{esc(classes[r['class']])}</td><td>{r['count']}</td><td>{r['errors']}</td>"
        f"<td>{100 * r['error_rate']:.2f}%</td></tr>"
        for r in per_class
    )
    figures = [
        ("Loss and accuracy", "loss_curves.png"),
        ("Misclassified test digits", "failures.png"),
        ("Confusion matrix", "confusion_matrix.png"),
        ("t-SNE of the F6 layer", "tsne.png"),
        ("First conv layer: feature maps and filters", "conv1_maps.png"),
        ("Test accuracy under distortion (robustness.csv: every severity, the commonest confusions)", "robustness.png"),
    ]
    figs = "".join(f"<h3>{esc(t)}</h3><img src='{_img(os.path.join(run_dir, f))}' alt='{esc(t)}'>" for t, f in figures)
    interactive = ""
    if report is not None:
        payload = json.dumps(_report_data(report, classes)).replace("</", "<\\/")
        with open(REPORT_JS, encoding="utf-8") as f:
            script = f.read()
        interactive = "\n" + _template("report_interactive.html").substitute(
            samples=f"{len(report['sample']):,}", failures=len(failures), payload=payload, script=script
        ).rstrip("\n")
    page = _template("report.html").substitute(
        title=esc(os.path.basename(os.path.abspath(run_dir))),
        heading=esc(os.path.abspath(run_dir)),
        summary_rows=rows,
        interactive=interactive,
        class_rows=pc,
        figures=figs,
    )
    fileio.atomic_write_text(os.path.join(run_dir, "report.html"), page)


def analyze(
    run_dir: str,
    checkpoint_name: str = "best.pt",
    device=None,
    tsne_samples: Optional[int] = None,
    data_dir: Optional[str] = None,
    log=print,
    dataset: Optional[data.MNIST] = None,
    claim_folder: bool = True,
) -> Dict[str, str]:
    """Writes the study of the run in run_dir (see the module doc); returns {file name: path}.
    The data is the run's own (same source, checked by its fingerprint) unless `dataset` is given
    (train passes the one it trained on). claim_folder: hold the run folder while writing, so a
    training run cannot write into it at the same time (train, which holds it, passes False)."""
    folder = runs.claim(run_dir, new=False, flag="run folder") if claim_folder else None
    try:
        return _analyze(run_dir, checkpoint_name, device, tsne_samples, data_dir, log, dataset)
    finally:
        if folder is not None:
            folder.release()


def _analyze(run_dir, checkpoint_name, device, tsne_samples, data_dir, log, dataset) -> Dict[str, str]:
    start = time.perf_counter()
    path = os.path.join(run_dir, checkpoint_name)
    model, state = checkpoint.model_from_checkpoint(path, device=device or "cpu")
    config = state.get("config")
    if not isinstance(config, dict) or not all(k in config for k in ("dataset", "seed")):
        raise checkpoint.CheckpointError(f"{path}: holds no run settings (was it written by lenet_ext.train?)")
    device = torch.device(device or "cpu")
    history = runs.read_metrics(run_dir)
    run_summary = runs.read_summary(run_dir)
    if dataset is None:
        saved = state.get("data") if isinstance(state.get("data"), dict) else {}
        dataset = run_data(config, saved, data_dir, log=log)
    test = dataset.test
    classes = dataset.classes
    probs, feats = predict(model, test.images.to(device))
    true = test.labels.cpu().numpy()
    pred = probs.argmax(1).numpy()
    conf = probs.max(1).values.numpy()
    failed = np.flatnonzero(pred != true)
    paths = {name: os.path.join(run_dir, name) for name in FILES}

    plot_loss_curves(history, paths["loss_curves.png"])

    test_index = test.index.cpu()
    failures: List[Dict[str, Any]] = [
        {
            "index": int(test_index[i]),
            "true": int(true[i]),
            "predicted": int(pred[i]),
            "confidence": float(conf[i]),
            "p_true": float(probs[i, true[i]]),
        }
        for i in failed
    ]
    failures.sort(key=lambda r: -r["confidence"])
    fileio.write_csv(paths["failures.csv"], failures, ["index", "true", "predicted", "confidence", "p_true"])
    position = {int(v): i for i, v in enumerate(test_index.tolist())}
    order = [position[r["index"]] for r in failures]
    test_images = test.images.cpu()
    plot_failures(
        pixels(test_images[order]) if order else np.zeros((0, 28, 28)),
        true[order],
        pred[order],
        conf[order],
        classes,
        paths["failures.png"],
    )

    n_classes = len(classes)
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (true, pred), 1)
    plot_confusion(matrix, classes, paths["confusion_matrix.png"])
    per_class = [
        {
            "class": c,
            "count": int(matrix[c].sum()),
            "errors": int(matrix[c].sum() - matrix[c, c]),
            "error_rate": float((matrix[c].sum() - matrix[c, c]) / max(matrix[c].sum(), 1)),
        }
        for c in range(n_classes)
    ]
    fileio.write_csv(paths["per_class_errors.csv"], per_class, ["class", "count", "errors", "error_rate"])

    n_tsne = min(tsne_samples or config.get("tsne_samples", 2000), len(test))
    rng = np.random.default_rng(config["seed"])
    # Every failure if they fit in half the sample (else a random half's worth), the rest at random.
    shown_failed = rng.permutation(failed)[: n_tsne // 2]
    others = rng.permutation(np.setdiff1d(np.arange(len(test)), failed))[: n_tsne - len(shown_failed)]
    sample = np.sort(np.concatenate([shown_failed, others])).astype(np.int64)
    xy = plot_tsne(
        feats[sample].numpy(),
        true[sample],
        np.isin(sample, failed),
        classes,
        config["seed"],
        paths["tsne.png"],
        total_failed=len(failed),
    )

    chosen = _choose_conv1_digits(true, pred)
    titles = [f"test #{int(test_index[i])}: {classes[true[i]]}→{classes[pred[i]]}" for i in chosen]
    plot_conv1(model, test_images[chosen].to(device), titles, paths["conv1_maps.png"])

    under = robustness.measure(model, test.to(device), seed=int(config["seed"]))
    fileio.write_csv(paths["robustness.csv"], under)
    robustness.plot({"this run": under}, paths["robustness.png"], "test accuracy under distortion")

    accuracy = 1 - len(failed) / len(test)
    summary = {
        "run": os.path.abspath(run_dir),
        "checkpoint": f"{checkpoint_name} (epoch {state.get('epoch')})",
        "dataset": dataset.describe(),
        "impl": state.get("impl"),
        "test accuracy": f"{100 * accuracy:.2f}%",
        "test errors": f"{len(failed)} of {len(test)}",
        "most errors": ", ".join(
            f"{classes[r['class']]}: {r['errors']}" for r in sorted(per_class, key=lambda r: -r["errors"])[:3]
        ),
        "under distortion (strongest severity)": ", ".join(
            f"{r['family']} {r['severity']:g}: {100 * r['accuracy']:.1f}%"
            for r in under
            if r["severity"] == FAMILIES[r["family"]][1][-1]
        ),
    }
    if run_summary is not None:
        s = run_summary
        seconds = s.get("train_seconds")
        summary.update(
            {
                "epochs": s.get("epochs_done"),
                "device": s.get("device"),
                "training time": f"{seconds:.0f} s" if isinstance(seconds, (int, float)) else "-",
                "settings": ", ".join(f"{k}={v}" for k, v in (s.get("config") or {}).items())
                if isinstance(s.get("config"), dict)
                else "-",
                "versions": ", ".join(f"{k} {v}" for k, v in (s.get("versions") or {}).items())
                if isinstance(s.get("versions"), dict)
                else "-",
            }
        )
    report = {
        "images": pixels(test_images),
        "true": true,
        "pred": pred,
        "conf": conf,
        "sample": sample,
        "xy": xy,
        "index": test_index.numpy(),
        "matrix": matrix,
    }
    write_report(run_dir, summary, per_class, failures, classes, report)
    log(
        f"study written to {run_dir} in {time.perf_counter() - start:.0f} s: test accuracy {100 * accuracy:.2f}% "
        f"({len(failed)} errors); open {os.path.join(run_dir, 'report.html')}"
    )
    return paths


def _main_impl(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m lenet_ext.analyze", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", help="a run folder written by python -m lenet_ext.train")
    parser.add_argument("--checkpoint", default="best.pt", help="checkpoint in the run folder (default: best.pt)")
    parser.add_argument(
        "--tsne-samples", type=int, default=None, help="test images in the t-SNE (default: the run's setting, 2000)"
    )
    parser.add_argument("--data-dir", default=None, help="where the data is now, if not where training found it")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N, for the forward passes (default: cpu)")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.run_dir):
        parser.error(
            f"{args.run_dir}: no such run folder"
            if not os.path.exists(args.run_dir)
            else f"{args.run_dir}: is a file, expected a run folder"
        )
    if args.tsne_samples is not None and args.tsne_samples < MIN_TSNE_SAMPLES:
        parser.error(f"--tsne-samples must be >= {MIN_TSNE_SAMPLES}, got {args.tsne_samples}")
    if os.path.basename(args.checkpoint) != args.checkpoint:
        parser.error(f"--checkpoint names a file in the run folder (best.pt or last.pt), got {args.checkpoint}")
    state = checkpoint.load(os.path.join(args.run_dir, args.checkpoint))
    device = cli.parse_device(args.device, state.get("impl", "ext"))
    analyze(args.run_dir, args.checkpoint, device, args.tsne_samples, args.data_dir)
    return 0


def main(argv=None) -> int:
    """The command line: exit status 0, 1 (an `error: ...` line), 2 (bad arguments) or 130 (Ctrl-C)."""
    return cli.run(_main_impl, argv)


if __name__ == "__main__":
    sys.exit(main())
