"""The server's counters and histograms, written as Prometheus text for GET /metrics."""

from typing import Dict, Tuple

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


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
