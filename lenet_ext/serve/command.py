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
import json
import os
import sys

import torch

from .. import checkpoint, cli
from .app import DEFAULTS
from .model import describe
from .protocol import uvicorn_config
from .server import bind, need_extra, start


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
        server.run()
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
        config = uvicorn_config("lenet_ext.serve.server:app_factory", args.verbose, factory=True, workers=args.workers)
        print(
            f"serving {describe(state)} at http://{shown}:{port}/ with {args.workers} worker processes "
            "(Ctrl-C to stop)",
            flush=True,
        )
        Multiprocess(config, sockets=[sock]).run()
    sock.close()
    print("stopped", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    """The command line: exit status 0, 1 (an `error: ...` line), 2 (bad arguments) or 130 (Ctrl-C)."""
    return cli.run(_main_impl, argv)
