"""The loop-thread metrics render exactly as prometheus_client's own metrics would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from logger.producer.metrics import LATENCY_BUCKETS_S, LoopCounter, LoopHistogram, LoopMetrics

# On a bound, between bounds, below the first, above the last, and zero.
OBSERVED_S = (0.0, 0.00005, 0.0001, 0.0003, 0.001, 0.0011, 2.5, 29.9, 30.0, 45.0, 0.0001)


def _samples(registry: CollectorRegistry) -> list[str]:
    """Exposition lines without comments and `_created` samples, which only the library has."""
    return [
        line
        for line in generate_latest(registry).decode().splitlines()
        if not line.startswith("#") and "_created" not in line
    ]


def test_a_loop_histogram_renders_like_the_client_librarys() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    histogram = Histogram("latency_seconds", "doc", buckets=LATENCY_BUCKETS_S, registry=theirs)
    loop_histogram = LoopMetrics(ours).add(
        LoopHistogram("latency_seconds", "doc", LATENCY_BUCKETS_S)
    )
    for value in OBSERVED_S:
        histogram.observe(value)
        loop_histogram.observe(value)
    assert _samples(ours) == _samples(theirs)
    assert 'latency_seconds_bucket{le="0.0001"} 4.0' in _samples(ours)


def test_a_loop_counter_renders_like_the_client_librarys() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    by_code = Counter("calls", "doc", ["code"], registry=theirs)
    plain = Counter("events", "doc", registry=theirs)
    metrics = LoopMetrics(ours)
    loop_by_code = metrics.add(LoopCounter("calls", "doc", "code"))
    loop_plain = metrics.add(LoopCounter("events", "doc"))
    for status in (200, 200, 500, 200, 404):
        by_code.labels(str(status)).inc()
        loop_by_code.inc(status)
        plain.inc()
        loop_plain.inc()
    assert sorted(_samples(ours)) == sorted(_samples(theirs))
    assert 'calls_total{code="200"} 3.0' in _samples(ours)
