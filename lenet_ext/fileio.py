"""Files written atomically (a temporary file in the same folder, fsync, rename), so a crash never
leaves a half-written file where a good one was; and the JSON and CSV forms of the run files."""

import csv
import io
import json
import math
import os
import tempfile
from typing import Any, Dict, List, Optional


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
