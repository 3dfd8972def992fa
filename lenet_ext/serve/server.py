"""A bound server and how one starts: the listening socket, uvicorn run in this thread with graceful
stops on SIGINT and SIGTERM, and the application factory of each --workers process."""

import json
import os
import signal
import socket
import threading
from typing import Any, Dict, Optional

import torch

from ..errors import UserError
from .app import create_app
from .model import Model
from .protocol import uvicorn_config


class Server:
    """A bound server: run() serves in this thread until stop() (from another thread) or, in the
    main thread, SIGINT or SIGTERM, each a graceful stop; address is the (host, port) it listens
    on; close() closes its socket."""

    def __init__(self, app, sock: socket.socket, verbose: bool = False):
        import uvicorn

        self.socket, self.app = sock, app
        self.address = sock.getsockname()[:2]
        self.server = uvicorn.Server(uvicorn_config(app, verbose))
        self._done = threading.Event()

    def run(self) -> None:
        """Serves until stop(), or SIGINT/SIGTERM when called from the main thread: uvicorn's
        handlers stop it gracefully while it runs, and hand the signal back to the handlers they
        replaced once it has stopped; these only ask it to stop, so the process exits normally."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, self._stop_signal)
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self._done.set()

    def _stop_signal(self, signum, frame) -> None:
        self.server.should_exit = True

    def stop(self, timeout: float = 10.0) -> None:
        """Asks run() to stop (requests in flight are answered) and waits up to timeout seconds."""
        self.server.should_exit = True
        self._done.wait(timeout)

    def close(self) -> None:
        self.socket.close()


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; UserError with the flag to change if it cannot bind."""
    import errno

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UserError(
                f"--port {port}: address {host}:{port} is already in use (another server?); pick another --port"
            ) from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise UserError(f"--port {port}: not allowed to bind it here (ports below 1024 need privileges)") from None
        raise UserError(f"--host {host} --port {port}: cannot bind ({exc.strerror or exc})") from None
    sock.set_inheritable(True)
    return sock


def need_extra() -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise UserError(
            'serve needs uvicorn and Starlette: pip install -e ".[serve]" (or pip install '
            "'uvicorn[standard]' starlette)"
        ) from None


def start(
    checkpoint_path: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    device="cpu",
    verbose: bool = False,
    state: Optional[Dict[str, Any]] = None,
    settings: Optional[Dict[str, Any]] = None,
) -> Server:
    """A server bound and ready (its run() serves); UserError if it cannot bind. state: the
    checkpoint already loaded from checkpoint_path (else it is read)."""
    need_extra()
    model = Model(checkpoint_path, device, state)
    return Server(create_app(model, settings, verbose), bind(host, port), verbose)


def app_factory():
    """The application of one worker process under --workers N (uvicorn's multiprocess mode
    imports it by name): its settings come from LENET_EXT_SERVE (JSON, written by main)."""
    conf = json.loads(os.environ["LENET_EXT_SERVE"])
    torch.set_num_threads(conf["threads"])
    model = Model(conf["checkpoint"], torch.device(conf["device"]))
    return create_app(model, conf["settings"], conf["verbose"])
