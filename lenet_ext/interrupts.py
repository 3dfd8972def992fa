"""Ctrl-C handling that must be in place before anything heavy imports: under `python -m
lenet_ext.<tool>`, lenet_ext/__init__.py installs it first. Standard library only, so that it
costs nothing and imports nothing of the package."""

import os
import sys

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
        if interrupted(value) or _sigint["received"]:
            print("interrupted", file=sys.stderr, flush=True)
            os._exit(130)  # nothing has started yet that would need cleaning up
        previous(kind, value, tb)

    sys.excepthook = hook


def interrupted(exc) -> bool:
    """Whether exc is a KeyboardInterrupt, or caused by one (Python wraps a KeyboardInterrupt that
    lands in some places, such as a class body's __set_name__, in a RuntimeError)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def sigint_received() -> bool:
    """Whether Ctrl-C arrived since quiet_interrupts_at_startup() (even if something swallowed it)."""
    return _sigint["received"]
