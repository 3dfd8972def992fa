"""Load test of python -m lenet_ext.serve: a server started in its own process, and closed-loop
clients in this one (asyncio, raw HTTP/1.1 over keep-alive connections, each client sending its
next request when the last is answered), real MNIST test digits as PNG bodies (28 x 28; from
--data-dir, else the embedded digits), or with --bodies drawn 200 x 200 pen strokes (a heavier
decode and preparation: a photo-sized upload).

    python -m benchmarks.serve_load --checkpoint runs/RUN/best.pt --data-dir DIR
    python -m benchmarks.serve_load --checkpoint runs/RUN/best.pt --clients 1,16,64,256 --seconds 10

Prints one table: per number of clients, the requests answered, errors (anything but 200; a 503
counts as an error below 256 clients), predictions per second, latency p50/p99/max and the mean
batch size the server ran (from its /metrics). Then two checks: a client's request during
--stalled uploads that send half a body and stall (its latency), and SIGTERM with 16 clients
busy (the exit status, and whether any reply was cut). Without --checkpoint a model is trained
for one epoch on the embedded digits first (its accuracy does not matter here).
"""

import argparse
import asyncio
import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import time


def digit_png(seed: int) -> bytes:
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    im = Image.new("L", (200, 200), 255)
    d = ImageDraw.Draw(im)
    points = [(int(x), int(y)) for x, y in rng.integers(40, 160, size=(5, 2))]
    d.line(points, fill=0, width=16, joint="curve")
    out = io.BytesIO()
    im.save(out, "PNG")
    return out.getvalue()


def mnist_pngs(data_dir, n: int = 64):
    """The first n MNIST test digits (the embedded digits' last n without data_dir) as PNG files."""
    from PIL import Image

    from lenet_ext import data

    digits = data.load_folder(data_dir)[2][:n] if data_dir else data._embedded()[0][-n:]
    out = []
    for digit in digits:
        buf = io.BytesIO()
        Image.fromarray(digit).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def request_bytes(body: bytes) -> bytes:
    return (
        b"POST /api/predict HTTP/1.1\r\nHost: bench\r\nContent-Type: image/png\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


async def read_response(reader: asyncio.StreamReader):
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    match = re.search(rb"(?i)content-length: *(\d+)", head)
    body = await reader.readexactly(int(match.group(1))) if match else b""
    return status, head, body


async def client(host, port, payloads, stop_at, latencies, statuses):
    reader, writer = await asyncio.open_connection(host, port)
    i = 0
    try:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            writer.write(payloads[i % len(payloads)])
            i += 1
            try:
                status, head, _ = await read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                statuses.append(-1)
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            latencies.append(time.perf_counter() - t0)
            statuses.append(status)
            if b"connection: close" in head.lower():
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
    finally:
        writer.close()


async def get(host, port, path):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
    status, _, body = await read_response(reader)
    writer.close()
    return status, body.decode()


def batch_totals(metrics: str):
    total = re.search(r"lenet_ext_batch_size_sum (\d+)", metrics)
    count = re.search(r"lenet_ext_batch_size_count (\d+)", metrics)
    return int(total.group(1)), int(count.group(1))


async def load(host, port, clients, seconds, payloads):
    latencies, statuses = [], []
    before = batch_totals((await get(host, port, "/metrics"))[1])
    stop_at = time.perf_counter() + seconds
    t0 = time.perf_counter()
    await asyncio.gather(*(client(host, port, payloads, stop_at, latencies, statuses) for _ in range(clients)))
    elapsed = time.perf_counter() - t0
    after = batch_totals((await get(host, port, "/metrics"))[1])
    ok = sum(1 for s in statuses if s == 200)
    busy = sum(1 for s in statuses if s == 503)
    errors = len(statuses) - ok - (busy if clients >= 256 else 0)
    lat = sorted(latencies) or [float("nan")]
    batches = after[1] - before[1]
    return {
        "clients": clients,
        "requests": len(statuses),
        "ok": ok,
        "errors": errors,
        "503": busy,
        "per_s": ok / elapsed,
        "p50_ms": 1e3 * lat[len(lat) // 2],
        "p99_ms": 1e3 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
        "max_ms": 1e3 * lat[-1],
        "mean_batch": (after[0] - before[0]) / batches if batches else float("nan"),
    }


async def stalled(host, port, n, payload):
    """n connections that send their headers and half their body, then stall; meanwhile one
    ordinary request: its latency."""
    body = payload.split(b"\r\n\r\n", 1)[1]
    conns = []
    for _ in range(n):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(payload[: len(payload) - len(body) // 2])
        conns.append(writer)
    await asyncio.sleep(0.5)
    reader, writer = await asyncio.open_connection(host, port)
    t0 = time.perf_counter()
    writer.write(payload)
    status, _, _ = await read_response(reader)
    latency = time.perf_counter() - t0
    writer.close()
    for w in conns:
        w.close()
    return status, latency


async def sigterm(proc, host, port, payloads, clients=16):
    """SIGTERM while `clients` clients are busy: every reply must be whole (a 200, or a refused
    connection after the server closed its socket), and the server must exit 0 within 5 s."""
    cut = 0
    done = 0

    async def one():
        nonlocal cut, done
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while True:
                writer.write(payloads[done % len(payloads)])
                try:
                    status, _, body = await read_response(reader)
                except asyncio.IncompleteReadError as exc:
                    cut += bool(exc.partial)  # a reply that started and did not finish
                    return
                except ConnectionError:
                    return
                if status != 200:
                    return
                done += 1
        finally:
            writer.close()

    tasks = [asyncio.create_task(one()) for _ in range(clients)]
    await asyncio.sleep(1.0)
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    await asyncio.gather(*tasks, return_exceptions=True)
    code = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 10)
    return code, time.perf_counter() - t0, cut, done


def start_server(checkpoint, extra):
    proc = subprocess.Popen(
        [sys.executable, "-m", "lenet_ext.serve", "--checkpoint", checkpoint, "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    if "http://" not in line:
        raise SystemExit(f"error: the server did not start: {line}{proc.stderr.read()}")
    url = line.split("at ")[1].split()[0].rstrip("/")
    host, port = url.split("//")[1].rsplit(":", 1)
    return proc, host, int(port)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--checkpoint", default=None, help="a best.pt (default: train one epoch on the embedded digits)"
    )
    parser.add_argument("--clients", default="1,16,64,256", help="client counts (default: 1,16,64,256)")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per client count (default: 8)")
    parser.add_argument("--stalled", type=int, default=500, help="stalled uploads in the stall check (default: 500)")
    parser.add_argument(
        "--bodies", choices=("mnist", "drawn"), default="mnist", help="MNIST test digits (default) or drawn 200 x 200"
    )
    parser.add_argument("--data-dir", default=None, help="MNIST IDX folder for the bodies (default: embedded digits)")
    parser.add_argument("--server-args", default="", help="extra arguments for the server, e.g. '--workers 2'")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint
        if checkpoint is None:
            from lenet_ext import train

            run = os.path.join(tmp, "run")
            if train.main(["--epochs", "1", "--no-plots", "--out", run]) != 0:
                raise SystemExit("error: could not train the model to serve")
            checkpoint = os.path.join(run, "best.pt")
        bodies = mnist_pngs(args.data_dir) if args.bodies == "mnist" else [digit_png(i) for i in range(32)]
        payloads = [request_bytes(body) for body in bodies]
        proc, host, port = start_server(checkpoint, args.server_args.split())
        try:
            rows = [asyncio.run(load(host, port, int(c), args.seconds, payloads)) for c in args.clients.split(",")]
            status, latency = asyncio.run(stalled(host, port, args.stalled, payloads[0]))
        finally:
            proc.terminate()
            proc.wait(10)
        proc, host, port = start_server(checkpoint, args.server_args.split())
        code, seconds, cut, done = asyncio.run(sigterm(proc, host, port, payloads))
    print(
        f"server: python -m lenet_ext.serve {args.server_args}; {os.cpu_count()} cores; clients closed-loop over "
        f"keep-alive connections in one asyncio process on the same machine; {args.seconds:g} s per row; "
        f"bodies: {'MNIST test digits (28 x 28 PNG)' if args.bodies == 'mnist' else 'drawn 200 x 200 PNG'}"
    )
    print()
    print("| clients | requests | errors | 503 | predictions/s | p50 ms | p99 ms | max ms | mean batch |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['clients']} | {r['requests']:,} | {r['errors']} | {r['503']} | {r['per_s']:,.0f} | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} | {r['mean_batch']:.1f} |"
        )
    print()
    print(f"- {args.stalled} stalled uploads: another client's request answered {status} in {1e3 * latency:.0f} ms")
    print(f"- SIGTERM with 16 busy clients: exit status {code} after {seconds:.2f} s; {done} replies whole, {cut} cut")


if __name__ == "__main__":
    sys.exit(main())
