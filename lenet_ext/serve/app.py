"""The ASGI application: the page, the JSON API, /healthz and /metrics. It is raw ASGI: one
function takes every request, gates it on the concurrency limit, times it into the metrics and
dispatches on a table of paths; Starlette supplies only the Request and Response classes. Every
error, 404 and 405 included, is answered in JSON by that one function; the lifespan starts the
batcher and drains it on shutdown."""

import asyncio
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Optional

from .. import images
from ..errors import UserError
from .batcher import Batcher
from .metrics import Metrics
from .model import Model

MAX_BODY = 2 * 1024 * 1024
DRAIN_LIMIT = 16 * 1024 * 1024  # oversized bodies up to this size are read and dropped before the 413
PAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "web", "serve.html")
DEFAULTS = {"max_batch": 64, "max_wait_ms": 2.0, "max_concurrency": 1024, "read_timeout": 10.0, "decode_threads": 1}


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
    # (measured in docs/performance.md). --workers uses more cores.
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
        result: Any = handler(request)
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

    return app_entry
