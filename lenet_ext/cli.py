"""What every lenet_ext command-line tool shares: the --device argument, and the wrapper that turns
every failure into one line on stderr (`error: ...`, exit 1; Ctrl-C: `interrupted`, exit 130)
instead of a traceback. LENET_EXT_DEBUG=1 shows the traceback of an unexpected error."""

import os
import sys
from typing import Callable, Optional, Sequence

from .errors import UserError
from .interrupts import interrupted, sigint_received


class CliError(UserError):
    """A bad combination of arguments found after parsing."""


def parse_device(value: str, impl: str = "ext", flag: str = "--device"):
    """torch.device for cpu, cuda or cuda:N, checked against this machine and build; CliError otherwise."""
    import torch

    import lenet_ext

    text = str(value).strip().lower()
    kind, _, index = text.partition(":")
    if kind not in ("cpu", "cuda") or (kind == "cpu" and index) or (index and not index.isdigit()):
        raise CliError(f"{flag} {value!r}: expected cpu, cuda or cuda:N")
    if kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise CliError(f"{flag} {value}: no CUDA GPU is available here")
    if index and int(index) >= torch.cuda.device_count():
        raise CliError(
            f"{flag} {value}: this machine has {torch.cuda.device_count()} CUDA device(s), 0.."
            f"{torch.cuda.device_count() - 1}"
        )
    if impl == "ext" and "cuda" not in lenet_ext.backends():
        raise CliError(
            f"{flag} {value}: lenet_ext was built without CUDA kernels (rebuild where the CUDA toolkit is found)"
        )
    return torch.device(text)


def positive_int(name: str, value, low: int = 1, high: Optional[int] = None) -> int:
    """value if low <= value <= high, else CliError naming the flag."""
    if value < low or (high is not None and value > high):
        bound = f"in {low}..{high}" if high is not None else f">= {low}"
        raise CliError(f"{name} must be {bound}, got {value}")
    return value


def run(main: Callable[[Optional[Sequence[str]]], int], argv: Optional[Sequence[str]] = None) -> int:
    """Calls main(argv) and maps every way it can fail to an exit status and one line on stderr."""
    try:
        return main(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if not (interrupted(exc) or sigint_received()):
            return _failed(exc)
        print("interrupted", file=sys.stderr)
        return 130


def _failed(exc: Exception) -> int:
    """The exit status and one line on stderr for an exception that main() let through."""
    if isinstance(exc, UserError):
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if isinstance(exc, BrokenPipeError):  # output piped into head and closed
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 1
    if isinstance(exc, MemoryError):
        print("error: out of memory (try a smaller --batch-size or fewer inputs)", file=sys.stderr)
        return 1
    if os.environ.get("LENET_EXT_DEBUG"):
        raise exc
    message = " ".join(str(exc).split()) or "no message"
    print(
        f"error: unexpected {type(exc).__name__}: {message[:300]} (LENET_EXT_DEBUG=1 shows the traceback)",
        file=sys.stderr,
    )
    return 1
