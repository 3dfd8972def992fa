"""Checkpoints and run files, written atomically (temporary file in the same folder, fsync,
rename), so a crash never leaves a half-written file where a good one was; and the claim on a
run folder that keeps two runs from writing into one folder."""
import csv
import errno
import glob
import io
import json
import math
import os
import pickle
import tempfile
from typing import Any, Dict, List, Optional

import torch

from .errors import UserError

FORMAT = "lenet_ext.checkpoint.v1"

# What a training run writes into its folder, and what its study adds. A folder holding any of
# these already holds a run: a new run refuses it.
TRAIN_FILES = ("last.pt", "best.pt", "summary.json", "metrics.jsonl", "metrics.csv")
STUDY_FILES = ("loss_curves.png", "failures.csv", "failures.png", "per_class_errors.csv", "confusion_matrix.png",
               "tsne.png", "conv1_maps.png", "report.html")
RUN_FILES = TRAIN_FILES + STUDY_FILES
LOCK_FILE = ".lenet_ext.lock"


class CheckpointError(UserError, ValueError):
    """A file that is not a lenet_ext checkpoint, or not a readable one."""


class RunFolderError(UserError, ValueError):
    """A run folder that cannot be used: in use by another run, holding another run, not writable."""


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
    """Loads a checkpoint with torch.load(weights_only=True); CheckpointError unless it is ours.
    A file holding arbitrary Python objects is refused (loading it could run code) and no advice
    to load it unsafely is ever passed on."""
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a folder, expected a checkpoint file (best.pt or last.pt)")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" in str(exc):  # a pickle that names functions or classes to call
            raise CheckpointError(f"{path}: refused: it holds Python objects other than tensors and plain values, "
                                  "which could run code when loaded; lenet_ext checkpoints never do") from None
        raise CheckpointError(f"{path}: not a lenet_ext checkpoint (not a torch checkpoint file, or a corrupt "
                              "one)") from None
    except MemoryError as exc:
        raise CheckpointError(f"{path}: not a lenet_ext checkpoint (out of memory reading it)") from exc
    except Exception as exc:  # truncated zip files, random bytes, other torch files
        raise CheckpointError(f"{path}: not a lenet_ext checkpoint (unreadable: corrupt, truncated or not a torch "
                              f"checkpoint: {type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a lenet_ext checkpoint (expected a dict with format {FORMAT!r}; "
                              "was it written by lenet_ext.train?)")
    return payload


def check_weights(path: str, state: Dict[str, Any], expected: Dict[str, torch.Tensor]) -> None:
    """CheckpointError unless state (a state_dict) holds exactly the expected parameters, with their
    shapes, as finite floating-point tensors."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds no model weights (its 'model' entry is a {type(state).__name__})")
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + \
            ([f"unexpected {', '.join(map(str, extra))}"] if extra else [])
        raise CheckpointError(f"{path}: does not hold this LeNet-5's weights ({'; '.join(parts)})")
    for name, ref in expected.items():
        value = state[name]
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise CheckpointError(f"{path}: {name} is not a floating-point tensor")
        if value.shape != ref.shape:
            raise CheckpointError(f"{path}: {name} has shape {tuple(value.shape)}, expected {tuple(ref.shape)}")
        if not torch.isfinite(value).all():
            raise CheckpointError(f"{path}: {name} holds NaN or infinite values: the weights are unusable")


def model_from_checkpoint(path: str, state: Optional[Dict[str, Any]] = None, device="cpu",
                          impl: Optional[str] = None):
    """(LeNet5 in eval mode with the checkpoint's weights, the checkpoint dict). Every problem with
    the file is a CheckpointError naming it: unreadable, not ours, wrong or missing weights."""
    from .models import IMPLS, LeNet5, model_options
    state = load(path) if state is None else state
    if "model" not in state:
        raise CheckpointError(f"{path}: holds no model weights")
    impl = impl or state.get("impl", "ext")
    if impl not in IMPLS:
        raise CheckpointError(f"{path}: unknown implementation {impl!r} (expected one of {IMPLS})")
    config = state.get("config") if isinstance(state.get("config"), dict) else {}
    try:
        options = model_options(config)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    weights = state["model"]
    classes = weights.get("output.weight").shape[0] if isinstance(weights, dict) and isinstance(
        weights.get("output.weight"), torch.Tensor) and weights["output.weight"].dim() == 2 else 10
    model = LeNet5(impl=impl, num_classes=max(int(classes), 1), **options)
    check_weights(path, weights, model.state_dict())
    model.load_state_dict({k: v.to(torch.float32) for k, v in weights.items()})
    return model.to(device).eval(), state


# ------------------------------------------------------------------------------------------ run folders


class RunFolder:
    """This process's exclusive claim on a run folder, held until release() or the process ends
    (an flock on RUN/.lenet_ext.lock: the kernel drops it when the process dies, so a killed run
    leaves no stale claim behind)."""

    def __init__(self, path: str, fd: int):
        self.path, self._fd = path, fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def claim(run_dir: str, new: bool, flag: str = "--out") -> RunFolder:
    """Claims run_dir for this process. new=True (a new run): creates the folder if needed and
    refuses one that holds any run file. new=False (a resume, or a study): the folder must exist.
    Either way, refuses a folder another process has claimed, and removes the temporary files an
    interrupted save left behind. Raises RunFolderError with a one-line reason."""
    import fcntl
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise RunFolderError(f"{flag} {run_dir}: is a file, expected a folder for the run")
    if new:
        try:
            os.makedirs(run_dir, exist_ok=True)
        except OSError as exc:
            raise RunFolderError(f"{flag} {run_dir}: cannot create the folder ({exc.strerror or exc})") from exc
    elif not os.path.isdir(run_dir):
        raise RunFolderError(f"{flag} {run_dir}: no such run folder")
    lock_path = os.path.join(run_dir, LOCK_FILE)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise RunFolderError(f"{flag} {run_dir}: the folder is not writable ({exc.strerror or exc})") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise RunFolderError(f"{flag} {run_dir}: in use by another lenet_ext process"
                                 f"{f' (pid {holder})' if holder.isdigit() else ''}; wait for it to finish or "
                                 "pick another folder") from None
        raise RunFolderError(f"{flag} {run_dir}: cannot lock the folder ({exc.strerror or exc})") from exc
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    folder = RunFolder(run_dir, fd)
    if new:
        present = [name for name in RUN_FILES if os.path.lexists(os.path.join(run_dir, name))]
        if present:
            folder.release()
            resume = f", or --resume {run_dir}" if "last.pt" in present else ""
            listed = ", ".join(present[:3]) + (f" and {len(present) - 3} more" if len(present) > 3 else "")
            raise RunFolderError(f"{flag} {run_dir}: already holds a run ({listed}): pick another folder{resume}")
    # Temporary files of a save that was killed half-way (the atomic writes' ".NAME.xxxx"): no
    # other process writes here while we hold the claim, so they are stale.
    for name in RUN_FILES:
        for stale in glob.glob(os.path.join(glob.escape(run_dir), f".{name}.*")):
            try:
                os.remove(stale)
            except OSError:
                pass
    return folder


# ------------------------------------------------------------------------------------------ metrics


def plain_json(value):
    """value with every non-finite float replaced by None (JSON has no NaN), recursively."""
    if isinstance(value, dict):
        return {k: plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def to_json(value) -> str:
    return json.dumps(plain_json(value), indent=2, allow_nan=False) + "\n"


def write_csv(path: str, rows: List[Dict[str, Any]], fields: Optional[List[str]] = None) -> None:
    """rows as a CSV file at path, written atomically. fields: the columns (default: every key of
    the rows, in first-seen order; a row without one leaves its cell empty). No columns: an empty file."""
    fields = list(dict.fromkeys(k for row in rows for k in row)) if fields is None else fields
    out = io.StringIO()
    if fields:
        writer = csv.DictWriter(out, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_text(path, out.getvalue())


def write_metrics(run_dir: str, history: List[Dict[str, Any]]) -> None:
    """metrics.jsonl (one JSON object per epoch) and metrics.csv, rewritten from the whole history."""
    rows = plain_json(history)
    atomic_write_text(os.path.join(run_dir, "metrics.jsonl"), "".join(json.dumps(row) + "\n" for row in rows))
    write_csv(os.path.join(run_dir, "metrics.csv"), rows)


METRIC_KEYS = ("epoch", "train_loss", "train_acc", "valid_loss", "valid_acc", "test_loss", "test_acc")


def read_metrics(run_dir: str) -> List[Dict[str, Any]]:
    """The rows of RUN/metrics.jsonl; CheckpointError naming the file and line if it is not what
    train writes (one JSON object per line with the epoch's numbers)."""
    path = os.path.join(run_dir, "metrics.jsonl")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: no such file (the run folder's per-epoch metrics)") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read ({exc})") from exc
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path}: line {number} is not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict) or not all(k in row for k in METRIC_KEYS):
            raise CheckpointError(f"{path}: line {number} is not an epoch's metrics (expected an object with "
                                  f"{', '.join(METRIC_KEYS)})")
        bad = [k for k in METRIC_KEYS if not (row[k] is None or isinstance(row[k], (int, float)))]
        if bad:
            raise CheckpointError(f"{path}: line {number}: {', '.join(bad)} must be numbers")
        rows.append(row)
    return rows


def read_summary(run_dir: str) -> Optional[Dict[str, Any]]:
    """RUN/summary.json as a dict, None if there is none; CheckpointError if it is not valid."""
    path = os.path.join(run_dir, "summary.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            summary = json.load(f)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read ({exc})") from exc
    if not isinstance(summary, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(summary).__name__}")
    return summary
