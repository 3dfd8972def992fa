"""Resuming a run: the last.pt to continue from, checked, and the data it trained on, found again
and checked against the checkpoint's record of it."""

import os
from typing import Any, Dict, Optional, Tuple

import torch

from .. import checkpoint, data
from .config import TrainConfig


def resume_path(value: str) -> str:
    """--resume RUN_DIR or --resume FILE: the last.pt it names."""
    return os.path.join(value, "last.pt") if os.path.isdir(value) else value


def load_resume_state(path: str) -> Dict[str, Any]:
    """The checkpoint to resume from, checked: a last.pt with everything a run needs to go on. Its
    "config" entry is returned as a TrainConfig."""
    state = checkpoint.load(path)
    if "optimizer" not in state or "generator" not in state:
        kind = "a best-validation checkpoint" if os.path.basename(path) == "best.pt" else "not a last.pt"
        raise checkpoint.CheckpointError(
            f"{path}: {kind}: it holds no optimizer and random-generator state to "
            f"resume from; give the run folder or its last.pt"
        )
    kinds: Tuple[Tuple[str, type], ...] = (
        ("config", dict),
        ("epoch", int),
        ("history", list),
        ("best", dict),
        ("data", dict),
        ("scheduler", dict),
        ("optimizer", dict),
    )
    for key, expected in kinds:
        if not isinstance(state.get(key), expected):
            raise checkpoint.CheckpointError(
                f"{path}: its {key!r} entry is missing or not a {expected.__name__}: "
                "not a last.pt written by lenet_ext.train"
            )
    mid = state.get("mid_epoch")
    if mid is not None and not (
        isinstance(mid, dict)
        and isinstance(mid.get("step"), int)
        and mid["step"] >= 1
        and isinstance(mid.get("seen"), int)
        and isinstance(mid.get("totals"), torch.Tensor)
        and mid["totals"].numel() == 2
    ):
        raise checkpoint.CheckpointError(f"{path}: its 'mid_epoch' entry is not where a stopped epoch stands")
    try:
        config = TrainConfig.from_saved(state["config"])
    except ValueError as exc:
        raise checkpoint.CheckpointError(f"{path}: {exc}") from None
    state["config"] = config
    if not 0 <= state["epoch"] <= config.epochs or len(state["history"]) != state["epoch"]:
        raise checkpoint.CheckpointError(
            f"{path}: inconsistent: epoch {state['epoch']} of {config.epochs} with "
            f"{len(state['history'])} epochs of history"
        )
    return state


def run_data(config: Dict[str, Any], saved: Dict, data_dir: Optional[str] = None, log=print) -> data.MNIST:
    """The data a run trained on (config: its settings, a checkpoint's "config" dict; saved: the
    "data" entry of its checkpoint), from the same source, or from data_dir, which may hold the
    same data in a new place; checked against the run's dataset, sizes and content fingerprint
    (DataError naming what differs)."""
    source = saved.get("source")
    folder = os.path.abspath(data_dir) if data_dir is not None else config.get("data_dir")
    if data_dir is not None:
        source = "data-dir"
    if source == "download":
        source = "cache"
    if source not in data.SOURCES:
        raise data.DataError(f"the run's data source {source!r} is unknown (expected one of {', '.join(data.SOURCES)})")
    dataset = data.load(config["dataset"], folder, config.get("valid_size"), config["seed"], log=log, source=source)
    now = {
        "dataset": dataset.dataset,
        "train": len(dataset.train),
        "valid": len(dataset.valid),
        "test": len(dataset.test),
    }
    differs = [f"{k} {saved.get(k)} -> {v}" for k, v in now.items() if saved.get(k) is not None and saved[k] != v]
    if saved.get("fingerprint") and saved["fingerprint"] != dataset.fingerprint:
        differs.append(f"content {saved['fingerprint'][:12]} -> {dataset.fingerprint[:12]}")
    if differs:
        raise data.DataError(
            f"the data found now ({dataset.describe()}) is not the data the run trained on "
            f"({saved.get('dataset')} from {saved.get('source')}: {saved.get('location')}): "
            f"{'; '.join(differs)}"
        )
    return dataset
