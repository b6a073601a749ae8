"""How the trigger's consumer and answer producer are configured, and why."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError

from trigger.settings import TriggerSettings

# Short, so that a crash repeats little: about this much of answered work at most.
AUTO_COMMIT_INTERVAL_MS = 1000
# Batches of 20 ms rather than librdkafka's 5: at ~3,000 answers/s this cut the trigger's CPU
# per answer by a tenth and the broker's by half (bench/trigger_throughput.py), for +15 ms.
ANSWER_LINGER_MS = 20

ErrorCallback = Callable[[KafkaError], None]


def consumer_config(settings: TriggerSettings, on_error: ErrorCallback) -> dict[str, Any]:
    """At least once: offsets are stored by hand once answered, and auto-committed."""
    return settings.kafka_client_config(
        **{
            "group.id": settings.group,
            "enable.auto.offset.store": False,
            "enable.auto.commit": True,
            "auto.commit.interval.ms": AUTO_COMMIT_INTERVAL_MS,
            # A new group starts at the beginning: requests sent before it joined count.
            "auto.offset.reset": "earliest",
            "session.timeout.ms": settings.session_timeout_ms,
            "error_cb": on_error,
        }
    )


def producer_config(settings: TriggerSettings, on_error: ErrorCallback) -> dict[str, Any]:
    """Idempotent, so retries inside librdkafka neither repeat nor reorder a key's answers."""
    return settings.kafka_client_config(
        **{
            "enable.idempotence": True,
            "linger.ms": ANSWER_LINGER_MS,
            # A key lands on the partition a JVM producer would choose: librdkafka's default
            # is consistent_random, Java's default partitioner behaves like murmur2_random.
            "partitioner": "murmur2_random",
            "error_cb": on_error,
        }
    )
