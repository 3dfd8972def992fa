"""Draw a digit in the browser and watch LeNet-5 read it; the same as a JSON API for other clients.

    python -m lenet_ext.serve --checkpoint runs/RUN/best.pt [--host 127.0.0.1] [--port 8000]

then open http://127.0.0.1:8000/ (the page is self-contained: no CDN, it works offline). It
binds to 127.0.0.1 unless --host says otherwise; Ctrl-C or SIGTERM stops it gracefully (the
requests in flight are answered, exit status 0). Needs the serve extra: pip install -e ".[serve]"
(uvicorn and Starlette).

API (every answer is JSON):
  POST /api/predict     body: one image (PNG, JPEG or anything PIL reads), Content-Type: image/*,
                        at most 2 MB. Answers {"digit": 7, "label": "7", "probabilities": [10 floats]};
                        with ?details=1 also "input" (the 28x28 image the model was given, after
                        predict's MNIST preparation, 0..255) and "c1" (the six 28x28 c1 maps, 0..1).
  GET  /api/info        the model: implementation, classes, checkpoint epoch and accuracy.
  GET  /healthz         {"status": "ok"} while the server takes requests.
  GET  /metrics         Prometheus text: requests by status, latency, batch sizes, in flight.
Errors: {"error": "..."} with 400 (not an image), 404 (no such path), 405 (wrong method), 408 (the
body took longer than --read-timeout), 411 (no Content-Length), 413 (body over 2 MB), 415 (not
image/*), 422 (an image with no digit in it), 503 (over --max-concurrency requests at once; with
Retry-After).

How it runs: uvicorn's event loop reads requests; each image is decoded and prepared (the same
code as python -m lenet_ext.predict) on a bounded pool of threads, off the event loop; the
prepared digits of concurrent requests are gathered into one batch (waiting at most --max-wait-ms
for more while other requests are still being decoded, at most --max-batch digits) and run
through the model in one fused inference call on one inference thread.
"""

import argparse
import asyncio
import json
import math
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from . import checkpoint, cli, data, images, predict
from .errors import UserError

MAX_BODY = 2 * 1024 * 1024
DRAIN_LIMIT = 16 * 1024 * 1024  # oversized bodies up to this size are read and dropped before the 413
PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web", "serve.html")
DEFAULTS = {"max_batch": 64, "max_wait_ms": 2.0, "max_concurrency": 1024, "read_timeout": 10.0, "decode_threads": 1}
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class Model:
    """The checkpoint's model and what answering a request needs."""

    def __init__(self, path: str, device, state: Optional[Dict[str, Any]] = None):
        state = checkpoint.load(path) if state is None else state  # one read: the info is the model's
        self.model, self.classes = predict.load_model(path, device, state)
        self.device = device
        metrics = state.get("metrics") if isinstance(state.get("metrics"), dict) else {}
        self.info = {
            "checkpoint": os.path.abspath(path),
            "impl": state.get("impl"),
            "epoch": state.get("epoch"),
            "test_acc": metrics.get("test_acc"),
            "classes": self.classes,
            "description": describe(state),
        }

    @staticmethod
    def prepare(blob: bytes) -> np.ndarray:
        """An image file's bytes -> the 28x28 uint8 digit the model reads (ImageError if unusable)."""
        return images.prepare(images.decode(blob, "the image"))

    @torch.inference_mode()
    def answer_batch(self, digits: List[np.ndarray], details: List[bool]) -> List[Dict[str, Any]]:
        """The answers for prepared digits, in one fused inference call (the requests asking for
        details also get their c1 maps, from the layer-by-layer activations)."""
        x = data.to_tensor(np.stack(digits)).to(self.device)
        probs = torch.softmax(self.model(x).double(), 1).cpu()
        maps = {}
        wanted = [i for i, d in enumerate(details) if d]
        if wanted:
            c1 = self.model.activations(x[wanted])["c1"].float().cpu().numpy()
            maps = {i: np.round(c1[k], 3).tolist() for k, i in enumerate(wanted)}
        answers = []
        for i, p in enumerate(probs.tolist()):
            if not all(map(math.isfinite, p)):
                answers.append(UserError("the model's outputs are not finite"))
                continue
            best = max(range(len(p)), key=p.__getitem__)  # the first of equal maxima, as argmax
            out = {"digit": best, "label": self.classes[best], "probabilities": [round(v, 6) for v in p]}
            if details[i]:
                out["input"] = digits[i].astype(int).tolist()
                out["c1"] = maps[i]
            answers.append(out)
        return answers


class Metrics:
    """Counters and histograms for /metrics (Prometheus text format), updated on the event loop."""

    def __init__(self, max_batch: int):
        self.requests: Dict[Tuple[str, int], int] = {}
        self.latency = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.batch_edges = [b for b in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if b < max_batch] + [max_batch]
        self.batches = [0] * len(self.batch_edges)
        self.batch_sum = 0
        self.predictions = 0
        self.in_flight = 0

    def request(self, path: str, status: int, seconds: float) -> None:
        key = (path, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        self.latency[next((i for i, b in enumerate(LATENCY_BUCKETS) if seconds <= b), len(LATENCY_BUCKETS))] += 1
        self.latency_sum += seconds

    def batch(self, size: int) -> None:
        self.batches[next(i for i, b in enumerate(self.batch_edges) if size <= b)] += 1
        self.batch_sum += size
        self.predictions += size

    def text(self) -> str:
        lines = [
            "# HELP lenet_ext_requests_total HTTP requests answered, by path and status.",
            "# TYPE lenet_ext_requests_total counter",
        ]
        for (path, status), n in sorted(self.requests.items()):
            lines.append(f'lenet_ext_requests_total{{path="{path}",status="{status}"}} {n}')
        lines += [
            "# HELP lenet_ext_request_seconds Time from a request's start to its answer.",
            "# TYPE lenet_ext_request_seconds histogram",
        ]
        total = 0
        for bound, n in zip(LATENCY_BUCKETS + (float("inf"),), self.latency):
            total += n
            lines.append(
                f'lenet_ext_request_seconds_bucket{{le="{"+Inf" if bound == float("inf") else bound}"}} {total}'
            )
        lines += [
            f"lenet_ext_request_seconds_sum {self.latency_sum:.6f}",
            f"lenet_ext_request_seconds_count {total}",
            "# HELP lenet_ext_batch_size Digits per fused inference call.",
            "# TYPE lenet_ext_batch_size histogram",
        ]
        total = 0
        for bound, n in zip(self.batch_edges, self.batches):
            total += n
            lines.append(f'lenet_ext_batch_size_bucket{{le="{bound}"}} {total}')
        lines += [
            f'lenet_ext_batch_size_bucket{{le="+Inf"}} {total}',
            f"lenet_ext_batch_size_sum {self.batch_sum}",
            f"lenet_ext_batch_size_count {total}",
            "# HELP lenet_ext_predictions_total Digits classified.",
            "# TYPE lenet_ext_predictions_total counter",
            f"lenet_ext_predictions_total {self.predictions}",
            "# HELP lenet_ext_in_flight Requests being answered now.",
            "# TYPE lenet_ext_in_flight gauge",
            f"lenet_ext_in_flight {self.in_flight}",
        ]
        return "\n".join(lines) + "\n"


class Batcher:
    """Gathers the prepared digits of concurrent requests into one fused inference call. A batch
    starts with the first digit waiting; it takes every digit already queued and, while other
    requests are still being decoded, waits up to max_wait for them, up to max_batch digits."""

    def __init__(self, model: Model, metrics: Metrics, max_batch: int, max_wait_s: float):
        self.model, self.metrics = model, metrics
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self.queue: Optional[asyncio.Queue] = None
        self.decoding = 0  # requests whose image is being decoded: digits that will come soon
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="lenet-inference")
        self.task: Optional[asyncio.Task] = None

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Answers what is queued, then stops."""
        if self.task is not None:
            await self.queue.put(None)
            await self.task
        self.executor.shutdown(wait=True)

    async def submit(self, digit: np.ndarray, details: bool) -> Dict[str, Any]:
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((digit, details, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            first = await self.queue.get()
            if first is None:
                break
            batch = [first]
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.max_batch:
                if not self.queue.empty():
                    item = self.queue.get_nowait()
                elif self.decoding > 0 and loop.time() < deadline:
                    try:
                        item = await asyncio.wait_for(self.queue.get(), deadline - loop.time())
                    except asyncio.TimeoutError:
                        break
                else:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            await self._answer(loop, batch)
        while not self.queue.empty():  # anything queued behind the stop
            item = self.queue.get_nowait()
            if item is not None:
                await self._answer(loop, [item])

    async def _answer(self, loop, batch) -> None:
        digits, details, futures = zip(*batch)
        try:
            answers = await loop.run_in_executor(self.executor, self.model.answer_batch, list(digits), list(details))
        except Exception as exc:  # a bug: every request of the batch gets the error, the server goes on
            answers = [exc] * len(batch)
        self.metrics.batch(len(batch))
        for future, answer in zip(futures, answers):
            if not future.done():
                if isinstance(answer, BaseException):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)


class JsonError(Exception):
    def __init__(self, status: int, message: str, headers: Optional[Dict[str, str]] = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def create_app(model: Model, settings: Optional[Dict[str, Any]] = None, verbose: bool = False):
    """The ASGI application (Starlette) answering the page and the API with `model`."""
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import Response

    settings = {**DEFAULTS, **(settings or {})}
    metrics = Metrics(settings["max_batch"])
    batcher = Batcher(model, metrics, settings["max_batch"], settings["max_wait_ms"] / 1000)
    # Decoding and preparing a digit is Python and NumPy on small arrays, holding the GIL: one
    # thread keeps it off the event loop, more only contend for the GIL and lengthen the tail
    # (p99 at 64 clients: 62-74 ms with 1 thread, 112-172 ms with 3). --workers uses more cores.
    decode_pool = ThreadPoolExecutor(settings["decode_threads"], thread_name_prefix="lenet-decode")
    with open(PAGE, "rb") as f:
        page = f.read()
    state = {"accepting": True}

    def json_response(status: int, payload: Dict[str, Any], headers: Optional[Dict[str, str]] = None) -> Response:
        return Response(
            (json.dumps(payload) + "\n").encode(),
            status,
            headers={"Cache-Control": "no-store", **(headers or {})},
            media_type="application/json",
        )

    async def read_body(request: Request, n: int) -> bytes:
        chunks, got = [], 0
        async for chunk in request.stream():
            chunks.append(chunk)
            got += len(chunk)
            if got > n:
                break
        body = b"".join(chunks)
        if len(body) != n:
            raise JsonError(
                400,
                "the body ended before its Content-Length"
                if len(body) < n
                else "the body is longer than its Content-Length",
                {"Connection": "close"},
            )
        return body

    async def drain(request: Request) -> None:
        async for _ in request.stream():
            pass

    async def predict_route(request: Request) -> Response:
        length = request.headers.get("content-length")
        if length is None:
            raise JsonError(411, "send the image with a Content-Length header", {"Connection": "close"})
        try:
            n = int(length)
            if n < 0:
                raise ValueError
        except ValueError:
            raise JsonError(400, f"bad Content-Length: {length!r}", {"Connection": "close"}) from None
        if n > MAX_BODY:
            # A moderately oversized body is read and dropped first, so that the client, still
            # sending, gets the answer rather than a reset connection; a huge one is not read at all.
            if n <= DRAIN_LIMIT:
                try:
                    await asyncio.wait_for(drain(request), settings["read_timeout"])
                except (asyncio.TimeoutError, ClientDisconnect):
                    pass
            raise JsonError(413, f"the body is {n:,} bytes; at most {MAX_BODY:,} are accepted", {"Connection": "close"})
        try:
            body = await asyncio.wait_for(read_body(request, n), settings["read_timeout"])
        except asyncio.TimeoutError:
            raise JsonError(
                408, f"the body did not arrive within {settings['read_timeout']:g} s", {"Connection": "close"}
            ) from None
        kind = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        if not kind.startswith("image/"):
            raise JsonError(415, f"Content-Type must be image/* (e.g. image/png), got {kind or 'none'!r}")
        details = request.query_params.get("details", "0") not in ("0", "", "false")
        loop = asyncio.get_running_loop()
        batcher.decoding += 1
        try:
            digit = await loop.run_in_executor(decode_pool, model.prepare, body)
        except images.ImageError as exc:
            raise JsonError(422 if "blank" in str(exc) else 400, str(exc)) from None
        finally:
            batcher.decoding -= 1
        try:
            answer = await batcher.submit(digit, details)
        except UserError as exc:
            raise JsonError(500, str(exc)) from None
        return json_response(200, answer)

    def page_response(request: Request) -> Response:
        return Response(page, 200, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"})

    routes = {
        "/": ("GET", page_response),
        "/index.html": ("GET", page_response),
        "/api/info": ("GET", lambda r: json_response(200, model.info)),
        "/healthz": (
            "GET",
            lambda r: json_response(
                200 if state["accepting"] else 503, {"status": "ok" if state["accepting"] else "stopping"}
            ),
        ),
        "/metrics": ("GET", lambda r: Response(metrics.text(), 200, media_type="text/plain; version=0.0.4")),
        "/api/predict": ("POST", predict_route),
    }

    async def dispatch(request: Request) -> Response:
        path, method = request.url.path, request.method
        if path not in routes:
            raise JsonError(404, f"no such path: {path}")
        allowed, handler = routes[path]
        if method not in (allowed, "HEAD" if allowed == "GET" else allowed):
            hint = (
                "POST an image to /api/predict (Content-Type: image/png or image/jpeg)"
                if path == "/api/predict"
                else f"{path} takes {allowed}"
            )
            raise JsonError(405, hint, {"Allow": allowed})
        result = handler(request)
        return await result if asyncio.iscoroutine(result) else result

    async def app_entry(scope, receive, send):
        if scope["type"] == "lifespan":
            return await lifespan(receive, send)
        if scope["type"] != "http":
            return
        start = time.perf_counter()
        request = Request(scope, receive)
        path = scope.get("path", "")
        if metrics.in_flight >= settings["max_concurrency"]:
            response = json_response(
                503,
                {
                    "error": f"busy: {metrics.in_flight} requests in flight (at most "
                    f"{settings['max_concurrency']}); retry shortly"
                },
                {"Retry-After": "1", "Connection": "close"},
            )
            metrics.request(path if path in routes else "other", 503, time.perf_counter() - start)
            return await response(scope, receive, send)
        metrics.in_flight += 1
        try:
            try:
                response = await dispatch(request)
            except JsonError as exc:
                response = json_response(exc.status, {"error": exc.message}, exc.headers)
            except ClientDisconnect:
                return
            except Exception as exc:  # a bug: answer, and keep serving
                response = json_response(500, {"error": f"internal error: {type(exc).__name__}: {exc}"})
            metrics.request(path if path in routes else "other", response.status_code, time.perf_counter() - start)
            if verbose:
                client = scope.get("client") or ("-", 0)
                print(
                    f"{client[0]} {request.method} {path} {response.status_code} "
                    f"{1e3 * (time.perf_counter() - start):.1f} ms",
                    file=sys.stderr,
                    flush=True,
                )
            await response(scope, receive, send)
        finally:
            metrics.in_flight -= 1

    async def lifespan(receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                batcher.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                state["accepting"] = False
                await batcher.stop()
                decode_pool.shutdown(wait=False)
                await send({"type": "lifespan.shutdown.complete"})
                return

    app_entry.metrics = metrics
    return app_entry


try:  # the serve extra: uvicorn's HTTP protocol, httptools' parser where it is installed, else h11's
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpProtocol
except ImportError:
    try:
        from uvicorn.protocols.http.h11_impl import H11Protocol as _HttpProtocol
    except ImportError:
        _HttpProtocol = None

if _HttpProtocol is not None:

    class JsonErrorsProtocol(_HttpProtocol):
        """uvicorn's HTTP protocol with its one non-JSON answer (400 for a request it cannot parse,
        e.g. a Content-Length that is not a number) answered in JSON like every other error."""

        def send_400_response(self, msg: str) -> None:
            body = (json.dumps({"error": f"bad request: {msg}"}) + "\n").encode()
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\nconnection: close\r\n\r\n"
                + body
            )
            self.transport.close()


PROTOCOL = "lenet_ext.serve:JsonErrorsProtocol"


def uvicorn_config(app, verbose: bool, **extra):
    """uvicorn's settings for this server (one process, or each of --workers): the JSON-error
    protocol, the lifespan (the batcher's start and drain), a 5 s graceful shutdown, no access log
    unless verbose."""
    import uvicorn

    return uvicorn.Config(
        app,
        http=PROTOCOL,
        lifespan="on",
        log_level="info" if verbose else "error",
        access_log=False,
        timeout_graceful_shutdown=5,
        timeout_keep_alive=5,
        server_header=False,
        **extra,
    )


class Server:
    """A bound server: serve_forever() runs it (in this thread; SIGINT/SIGTERM stop it gracefully
    when this is the main thread), shutdown() stops it from another thread, server_address is
    the (host, port) it listens on."""

    def __init__(self, app, sock: socket.socket, verbose: bool = False):
        import uvicorn

        self.socket, self.app = sock, app
        self.server_address = sock.getsockname()[:2]
        self.config = uvicorn_config(app, verbose)
        self.server = uvicorn.Server(self.config)
        self._done = threading.Event()

    def serve_forever(self, poll_interval: float = 0.1) -> None:
        """Serves until shutdown(), or SIGINT/SIGTERM when called from the main thread: uvicorn's
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

    def shutdown(self) -> None:
        self.server.should_exit = True
        self._done.wait(10)

    def server_close(self) -> None:
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
    """A server bound and ready (serve_forever() runs it); UserError if it cannot bind. state: the
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
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes sharing the port, each with its own model and batches (default: 1; CPU only)",
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=DEFAULTS["max_batch"],
        help=f"most digits in one inference call (default: {DEFAULTS['max_batch']})",
    )
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=DEFAULTS["max_wait_ms"],
        help="longest a digit waits for others to share its batch, while more are being decoded "
        f"(default: {DEFAULTS['max_wait_ms']:g})",
    )
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=DEFAULTS["max_concurrency"],
        help=f"requests answered at once; more get 503 (default: {DEFAULTS['max_concurrency']})",
    )
    parser.add_argument(
        "--read-timeout",
        type=float,
        default=DEFAULTS["read_timeout"],
        help=f"seconds a client may take to send its body; then 408 (default: {DEFAULTS['read_timeout']:g})",
    )
    parser.add_argument(
        "--decode-threads",
        type=int,
        default=DEFAULTS["decode_threads"],
        help="threads decoding and preparing images in each process (default: 1; they hold the GIL "
        "most of the time, so more help only with large photos; use --workers for more cores)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be in 0..65535, got {args.port}")
    for name, low in (("workers", 1), ("max_batch", 1), ("max_concurrency", 1), ("decode_threads", 1)):
        if getattr(args, name) < low:
            parser.error(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(args, name)}")
    for name in ("max_wait_ms", "read_timeout"):
        value = getattr(args, name)
        if not (value >= 0 and value < float("inf")) or (name == "read_timeout" and value == 0):
            parser.error(
                f"--{name.replace('_', '-')} must be a positive number of {'ms' if 'ms' in name else 's'}, got {value}"
            )
    need_extra()
    state = checkpoint.load(args.checkpoint)
    device = cli.parse_device(args.device, state.get("impl", "ext"))
    if args.workers > 1 and device.type != "cpu":
        raise cli.CliError("--workers > 1 is for the CPU: one GPU serves best from one process, batching its requests")
    settings = {k: getattr(args, k) for k in DEFAULTS}
    if args.workers == 1:
        server = start(args.checkpoint, args.host, args.port, device, args.verbose, state, settings)
        sock = server.socket
    else:
        sock = bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    if args.workers == 1:
        print(f"serving {describe(state)} at http://{shown}:{port}/ (Ctrl-C to stop)", flush=True)
        server.serve_forever()
    else:
        from uvicorn.supervisors import Multiprocess

        os.environ["LENET_EXT_SERVE"] = json.dumps(
            {
                "checkpoint": os.path.abspath(args.checkpoint),
                "device": str(device),
                "settings": settings,
                "verbose": args.verbose,
                "threads": max(1, torch.get_num_threads() // args.workers),
            }
        )
        config = uvicorn_config("lenet_ext.serve:app_factory", args.verbose, factory=True, workers=args.workers)
        print(
            f"serving {describe(state)} at http://{shown}:{port}/ with {args.workers} worker processes "
            "(Ctrl-C to stop)",
            flush=True,
        )
        Multiprocess(config, sockets=[sock]).run()
    sock.close()
    print("stopped", file=sys.stderr)
    return 0


def describe(state: Dict[str, Any]) -> str:
    """One line on a checkpoint's model: implementation, epoch, test accuracy."""
    metrics = state.get("metrics") if isinstance(state.get("metrics"), dict) else {}
    acc = metrics.get("test_acc")
    return f"{state.get('impl')} kernels, epoch {state.get('epoch')}" + (
        f", test accuracy {100 * acc:.2f}%" if isinstance(acc, float) else ""
    )


def main(argv=None) -> int:
    """The command line: exit status 0, 1 (an `error: ...` line), 2 (bad arguments) or 130 (Ctrl-C)."""
    return cli.run(_main_impl, argv)


if __name__ == "__main__":
    sys.exit(main())
