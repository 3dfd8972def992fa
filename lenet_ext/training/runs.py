"""The run folder: the files a training run and its study write into it, this process's claim on
it (so two runs never write into one folder), and reading its metrics and summary back."""

import errno
import glob
import json
import os
from typing import Any, Dict, List, Optional

from .. import fileio
from ..errors import UserError

# What a training run writes into its folder, and what its study adds. A folder holding any of
# these already holds a run: a new run refuses it.
TRAIN_FILES = ("last.pt", "best.pt", "summary.json", "metrics.jsonl", "metrics.csv")
STUDY_FILES = (
    "loss_curves.png",
    "failures.csv",
    "failures.png",
    "per_class_errors.csv",
    "confusion_matrix.png",
    "tsne.png",
    "conv1_maps.png",
    "robustness.csv",
    "robustness.png",
    "report.html",
)
RUN_FILES = TRAIN_FILES + STUDY_FILES
LOCK_FILE = ".lenet_ext.lock"


class RunFileError(UserError, ValueError):
    """A run folder's metrics.jsonl or summary.json that is missing, unreadable or not what the run
    wrote."""


class RunFolderError(UserError, ValueError):
    """A run folder that cannot be used: in use by another run, holding another run, not writable."""


class RunFolder:
    """This process's exclusive claim on a run folder, held until release() or the process ends
    (an flock on RUN/.lenet_ext.lock: the kernel drops it when the process dies, so a killed run
    leaves no stale claim behind)."""

    def __init__(self, path: str, fd: int):
        self.path = path
        self._fd: Optional[int] = fd

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
            raise RunFolderError(
                f"{flag} {run_dir}: in use by another lenet_ext process"
                f"{f' (pid {holder})' if holder.isdigit() else ''}; wait for it to finish or "
                "pick another folder"
            ) from None
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


def write_metrics(run_dir: str, history: List[Dict[str, Any]]) -> None:
    """metrics.jsonl (one JSON object per epoch) and metrics.csv, rewritten from the whole history."""
    rows = fileio.plain_json(history)
    fileio.atomic_write_text(os.path.join(run_dir, "metrics.jsonl"), "".join(json.dumps(row) + "\n" for row in rows))
    fileio.write_csv(os.path.join(run_dir, "metrics.csv"), rows)


METRIC_KEYS = ("epoch", "train_loss", "train_acc", "valid_loss", "valid_acc", "test_loss", "test_acc")


def read_metrics(run_dir: str) -> List[Dict[str, Any]]:
    """The rows of RUN/metrics.jsonl; RunFileError naming the file and line if it is not what
    train writes (one JSON object per line with the epoch's numbers)."""
    path = os.path.join(run_dir, "metrics.jsonl")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError as exc:
        raise RunFileError(f"{path}: no such file (the run folder's per-epoch metrics)") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFileError(f"{path}: cannot read ({exc})") from exc
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RunFileError(f"{path}: line {number} is not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict) or not all(k in row for k in METRIC_KEYS):
            raise RunFileError(
                f"{path}: line {number} is not an epoch's metrics (expected an object with {', '.join(METRIC_KEYS)})"
            )
        bad = [k for k in METRIC_KEYS if not (row[k] is None or isinstance(row[k], (int, float)))]
        if bad:
            raise RunFileError(f"{path}: line {number}: {', '.join(bad)} must be numbers")
        rows.append(row)
    return rows


def read_summary(run_dir: str) -> Optional[Dict[str, Any]]:
    """RUN/summary.json as a dict, None if there is none; RunFileError if it is not valid."""
    path = os.path.join(run_dir, "summary.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            summary = json.load(f)
    except json.JSONDecodeError as exc:
        raise RunFileError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFileError(f"{path}: cannot read ({exc})") from exc
    if not isinstance(summary, dict):
        raise RunFileError(f"{path}: expected a JSON object, got {type(summary).__name__}")
    return summary


def write_summary(run_dir: str, summary: Dict[str, Any]) -> None:
    """RUN/summary.json, written atomically."""
    fileio.atomic_write_text(os.path.join(run_dir, "summary.json"), fileio.to_json(summary))
