"""Creating a Kafka topic and waiting until every partition is there.

`infermon up` creates its payload topic on the embedded broker before the monitor subscribes:
tansu creates a topic only when a producer first writes to it, and a consumer that subscribed
before that waits for librdkafka's metadata refresh (5 minutes) to be assigned anything.
"""

from __future__ import annotations

import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic


def create_topic(bootstrap: str, name: str, partitions: int = 1, timeout_s: float = 30.0) -> None:
    """Create a topic (one that exists already is fine) and wait until its metadata lists
    every partition."""
    # The AdminClient must outlive its futures: collected early, it sends nothing and the
    # futures fail quietly. Holding it in this frame until result() returns is enough.
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1)],
        operation_timeout=timeout_s,
        request_timeout=timeout_s,
    )
    try:
        futures[name].result(timeout=timeout_s)
    except KafkaException as exc:
        error: KafkaError = exc.args[0]
        if error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise
    _wait_for_partitions(admin, name, partitions, timeout_s)


def _wait_for_partitions(admin: AdminClient, topic: str, partitions: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        metadata = admin.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if (
            metadata is not None
            and metadata.error is None
            and len(metadata.partitions) >= partitions
        ):
            return
        time.sleep(0.1)
    raise TimeoutError(f"topic {topic} has not shown {partitions} partition(s) in {timeout_s} s")
