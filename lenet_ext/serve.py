"""Draw a digit in the browser and watch LeNet-5 read it; the same as a JSON API for other clients.

    python -m lenet_ext.serve --checkpoint runs/RUN/best.pt [--host 127.0.0.1] [--port 8000]

then open http://127.0.0.1:8000/ (the page is self-contained: no CDN, it works offline). It
binds to 127.0.0.1 unless --host says otherwise; Ctrl-C stops it.

API (every answer is JSON):
  POST /api/predict     body: one image (PNG, JPEG or anything PIL reads), Content-Type: image/*,
                        at most 2 MB. Answers {"digit": 7, "label": "7", "probabilities": [10 floats]};
                        with ?details=1 also "input" (the 28x28 image the model was given, after
                        predict's MNIST preparation, 0..255) and "c1" (the six 28x28 c1 maps, 0..1).
  GET  /api/info        the model: implementation, classes, checkpoint epoch and accuracy.
Errors: {"error": "..."} with 400 (not an image), 404 (no such path), 405 (wrong method), 411 (no
Content-Length), 413 (body over 2 MB), 415 (not image/*), 422 (an image with no digit in it).

The images go through the same code as python -m lenet_ext.predict (decode, then prepare).
"""

import argparse
import http.server
import json
import os
import signal
import socket
import sys
from typing import Any, Dict, Optional
from urllib.parse import parse_qs, urlsplit

import numpy as np
import torch

from . import checkpoint, cli, data, images, predict
from .errors import UserError

MAX_BODY = 2 * 1024 * 1024
DRAIN_LIMIT = 16 * 1024 * 1024  # oversized bodies up to this size are read and dropped before the 413
PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web", "serve.html")


class Model:
    """The checkpoint's model and what answering a request needs."""

    def __init__(self, path: str, device, state: Optional[Dict[str, Any]] = None):
        state = checkpoint.load(path) if state is None else state  # one read: the info is the model's
        self.model, self.classes = predict.load_model(path, device, state)
        self.device = device
        metrics = state.get("metrics") if isinstance(state.get("metrics"), dict) else {}
        acc = metrics.get("test_acc")
        self.info = {
            "checkpoint": os.path.abspath(path),
            "impl": state.get("impl"),
            "epoch": state.get("epoch"),
            "test_acc": acc,
            "classes": self.classes,
            "description": f"{state.get('impl')} kernels, epoch {state.get('epoch')}"
            + (f", test accuracy {100 * acc:.2f}%" if isinstance(acc, float) else ""),
        }

    @torch.inference_mode()
    def answer(self, blob: bytes, details: bool) -> Dict[str, Any]:
        digit = images.prepare(images.decode(blob, "the image"))
        x = data.to_tensor(digit[None]).to(self.device)
        if details:
            acts = self.model.activations(x)
            logits, c1 = acts["logits"], acts["c1"][0]
        else:
            logits, c1 = self.model(x), None
        probs = torch.softmax(logits.double(), 1)[0].cpu()
        if not torch.isfinite(probs).all():
            raise UserError("the model's outputs are not finite")
        best = int(probs.argmax())
        out = {"digit": best, "label": self.classes[best], "probabilities": [round(float(p), 6) for p in probs]}
        if details:
            out["input"] = digit.astype(int).tolist()
            out["c1"] = np.round(c1.float().cpu().numpy(), 3).tolist()
        return out


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "lenet_ext"
    protocol_version = "HTTP/1.1"
    timeout = 15  # seconds a client may take to send its request

    # ------------------------------------------------------------------ responses
    def _send(self, status: int, body: bytes, content_type: str, extra: Optional[Dict[str, str]] = None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: Dict[str, Any], extra: Optional[Dict[str, str]] = None):
        self._send(status, (json.dumps(payload) + "\n").encode(), "application/json", extra)

    def _error(self, status: int, message: str, extra: Optional[Dict[str, str]] = None):
        self._json(status, {"error": message}, extra)

    # ------------------------------------------------------------------ routes
    def do_GET(self):
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            self._send(200, self.server.page, "text/html; charset=utf-8")
        elif path == "/api/info":
            self._json(200, self.server.model.info)
        elif path == "/api/predict":
            self._error(405, "POST an image to /api/predict (Content-Type: image/png or image/jpeg)", {"Allow": "POST"})
        else:
            self._error(404, f"no such path: {path}")

    do_HEAD = do_GET

    def do_POST(self):
        url = urlsplit(self.path)
        if url.path != "/api/predict":
            if url.path in ("/", "/index.html", "/api/info"):
                return self._error(405, f"{url.path} takes GET", {"Allow": "GET"})
            return self._error(404, f"no such path: {url.path}")
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            return self._error(411, "send the image with a Content-Length header")
        try:
            n = int(length)
            if n < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            return self._error(400, f"bad Content-Length: {length!r}")
        if n > MAX_BODY:
            # Read (and drop) a moderately oversized body so that the client, still sending, gets the
            # answer rather than a reset connection; a huge one is not read at all.
            if n <= DRAIN_LIMIT:
                left = n
                while left > 0:
                    block = self.rfile.read(min(left, 1 << 16))
                    if not block:
                        break
                    left -= len(block)
            self.close_connection = True
            return self._error(413, f"the body is {n:,} bytes; at most {MAX_BODY:,} are accepted")
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        body = self.rfile.read(n)
        if len(body) != n:
            self.close_connection = True
            return self._error(400, "the body ended before its Content-Length")
        if not kind.startswith("image/"):
            return self._error(415, f"Content-Type must be image/* (e.g. image/png), got {kind or 'none'!r}")
        details = parse_qs(url.query).get("details", ["0"])[0] not in ("0", "", "false")
        try:
            answer = self.server.model.answer(body, details)
        except images.ImageError as exc:
            status = 422 if "blank" in str(exc) else 400
            return self._error(status, str(exc))
        except UserError as exc:
            return self._error(500, str(exc))
        except Exception as exc:  # a bug: answer, and keep serving
            return self._error(500, f"internal error: {type(exc).__name__}: {exc}")
        self._json(200, answer)

    def _not_allowed(self):
        self._error(405, f"{self.command} is not supported here", {"Allow": "GET, POST"})

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def log_message(self, format, *args):
        if self.server.verbose:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")


class Server(http.server.ThreadingHTTPServer):
    """One thread per connection; the model is shared (inference only, thread-safe)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, model: Model, verbose: bool = False):
        self.model, self.verbose = model, verbose
        with open(PAGE, "rb") as f:
            self.page = f.read()
        host = address[0]
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__(address, Handler)

    def handle_error(self, request, client_address):  # a client that went away: not our problem
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout)):
            return
        if self.verbose:
            super().handle_error(request, client_address)
        else:
            sys.stderr.write(f"error: request from {client_address[0]} failed: {type(exc).__name__}: {exc}\n")


def start(
    checkpoint_path: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    device="cpu",
    verbose: bool = False,
    state: Optional[Dict[str, Any]] = None,
) -> Server:
    """A server bound and ready (serve_forever() runs it); UserError if it cannot bind. state: the
    checkpoint already loaded from checkpoint_path (else it is read)."""
    model = Model(checkpoint_path, device, state)
    try:
        return Server((host, port), model, verbose)
    except OSError as exc:
        import errno

        if exc.errno == errno.EADDRINUSE:
            raise UserError(
                f"--port {port}: address {host}:{port} is already in use (another server?); pick another --port"
            ) from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise UserError(f"--port {port}: not allowed to bind it here (ports below 1024 need privileges)") from None
        raise UserError(f"--host {host} --port {port}: cannot bind ({exc.strerror or exc})") from None


def _main_impl(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lenet_ext.serve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True, help="a best.pt or last.pt from python -m lenet_ext.train")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 exposes it to the network)",
    )
    parser.add_argument("--port", type=int, default=8000, help="port, 0 for any free one (default: 8000)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be in 0..65535, got {args.port}")
    state = checkpoint.load(args.checkpoint)
    device = cli.parse_device(args.device, state.get("impl", "ext"))
    server = start(args.checkpoint, args.host, args.port, device, args.verbose, state)
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {server.model.info['description']} at http://{shown}:{port}/ (Ctrl-C to stop)", flush=True)

    def stop(signum, frame):  # SIGTERM (a service manager, kill) stops it as Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0


def main(argv=None) -> int:
    """The command line: exit status 0, 1 (an `error: ...` line), 2 (bad arguments) or 130 (Ctrl-C)."""
    return cli.run(_main_impl, argv)


if __name__ == "__main__":
    sys.exit(main())
