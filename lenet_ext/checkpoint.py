"""Checkpoints and run files, written atomically (temporary file in the same folder, fsync,
rename), so a crash never leaves a half-written file where a good one was."""
import csv
import io
import json
import os
import tempfile
from typing import Any, Dict, List

import torch

FORMAT = "lenet_ext.checkpoint.v1"


class CheckpointError(ValueError):
    """A file that is not a lenet_ext checkpoint, or not a readable one."""


def file_mode() -> int:
    """The permissions a plainly created file gets here (0666 less the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: str, data: bytes) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=folder)
    try:
        os.chmod(tmp, file_mode())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def save(path: str, payload: Dict[str, Any]) -> None:
    """Saves a checkpoint dict (tensors, numbers, strings, lists, dicts) atomically."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **payload}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load(path: str, map_location="cpu") -> Dict[str, Any]:
    """Loads a checkpoint with torch.load(weights_only=True); CheckpointError unless it is ours."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle errors, truncated zip files, non-torch files
        raise CheckpointError(f"{path}: not a readable lenet_ext checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a lenet_ext checkpoint (expected a dict with format {FORMAT!r}; "
                              "was it written by lenet_ext.train?)")
    return payload


def write_metrics(run_dir: str, history: List[Dict[str, Any]]) -> None:
    """metrics.jsonl (one JSON object per epoch) and metrics.csv, rewritten from the whole history."""
    atomic_write_text(os.path.join(run_dir, "metrics.jsonl"), "".join(json.dumps(row) + "\n" for row in history))
    out = io.StringIO()
    if history:
        writer = csv.DictWriter(out, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    atomic_write_text(os.path.join(run_dir, "metrics.csv"), out.getvalue())


def read_metrics(run_dir: str) -> List[Dict[str, Any]]:
    path = os.path.join(run_dir, "metrics.jsonl")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
