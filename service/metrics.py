"""Prometheus metrics of the service, on a registry of their own (one per app, so that
tests can build several apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "polingo_requests", "HTTP requests answered", ["path", "status"], registry=r
        )
        self.latency = Histogram(
            "polingo_request_seconds",
            "HTTP request latency",
            ["path"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.items = Counter("polingo_items", "Texts translated", ["source"], registry=r)
        self.memory_hits = Counter(
            "polingo_memory_hits", "Texts answered from translation memory", registry=r
        )
        self.tokens = Counter(
            "polingo_tokens", "Tokens processed by the engine", ["kind"], registry=r
        )
        self.queue_depth = Gauge(
            "polingo_queue_depth", "Texts waiting for or in generation", registry=r
        )
        self.engine_pending = Gauge(
            "polingo_engine_pending", "Sequences the engine holds (queued or running)", registry=r
        )
        self.markup_retries = Counter(
            "polingo_markup_retries",
            "Greedy translations that lost markup and were sampled again",
            registry=r,
        )
        self.markup_repaired = Counter(
            "polingo_markup_repaired",
            "Of those, translations a sampled candidate fixed",
            registry=r,
        )
        self.rejected = Counter(
            "polingo_rejected", "Requests refused because the queue was full", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
