"""The service's Prometheus metrics (``GET /metrics``), in a registry of their own (not the process-global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Latency buckets from 5 ms (one small image alone) to 10 s (a long queue on a slow CPU).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Requests by endpoint and status, errors by kind, batch sizes, latencies and the queue."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, max_batch_size: int) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("ssdlite_requests", "HTTP requests answered", ["endpoint", "status"], registry=self.registry)
        self.errors = Counter("ssdlite_errors", "Detection requests refused or failed, by kind", ["kind"], registry=self.registry)
        # Buckets at every batch size up to the largest one allowed: the histogram is the batch-size distribution.
        self.batch_size = Histogram(
            "ssdlite_batch_size", "Requests per model call", buckets=tuple(range(1, max_batch_size + 1)), registry=self.registry
        )
        self.inference = Histogram("ssdlite_inference_seconds", "Duration of one model call", buckets=LATENCY_BUCKETS, registry=self.registry)
        self.latency = Histogram(
            "ssdlite_request_latency_seconds", "Detection request latency, from the request to the answer", buckets=LATENCY_BUCKETS, registry=self.registry
        )
        self.queue = Gauge("ssdlite_queue_requests", "Detection requests in the service (decoding, waiting or running)", registry=self.registry)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.inference.observe(seconds)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
