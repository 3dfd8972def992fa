"""What every lenet_ext command-line tool shares: the --device argument, and the wrapper that turns
every failure into one line on stderr (`error: ...`, exit 1; Ctrl-C: `interrupted`, exit 130)
instead of a traceback. LENET_EXT_DEBUG=1 shows the traceback of an unexpected error."""

import os
import sys
from typing import Callable, Optional, Sequence

from .errors import UserError


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
        if not (_interrupted(exc) or _sigint["received"]):
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


_sigint = {"received": False}


def quiet_interrupts_at_startup() -> None:
    """Under `python -m lenet_ext.<tool>`, Ctrl-C before a tool's main() (while torch imports, say)
    prints `interrupted` instead of a traceback. Ctrl-C is also remembered: a library that catches
    the KeyboardInterrupt half-way through its import fails later in some other way, and that
    failure is then reported as the interruption it is."""
    import signal

    def on_sigint(signum, frame):
        _sigint["received"] = True
        raise KeyboardInterrupt

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when Ctrl-C is ignored
        signal.signal(signal.SIGINT, on_sigint)

    def hook(kind, value, tb, previous=sys.excepthook):
        if _interrupted(value) or _sigint["received"]:
            print("interrupted", file=sys.stderr, flush=True)
            os._exit(130)  # nothing has started yet that would need cleaning up
        previous(kind, value, tb)

    sys.excepthook = hook


def _interrupted(exc) -> bool:
    """Whether exc is a KeyboardInterrupt, or caused by one (Python wraps a KeyboardInterrupt that
    lands in some places, such as a class body's __set_name__, in a RuntimeError)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False
