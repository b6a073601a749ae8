"""The sink: events cut to `message.max.bytes` (checked against librdkafka), stuck producers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from infermon.events import KafkaRecord
from logger.producer.metrics import SinkMetrics
from logger.producer.sink import ATTRIBUTE_CUT_BYTES, CUT_MARKER, EventSink, cut_to_fit, record_fit
from logger.producer.spool import DiskSpool
from logger.settings import LoggerSettings
from tests.fixtures.broker import create_topic, read_all
from tests.fixtures.factories import TansuFactory
from tests.fixtures.processes import free_port

LIMITS = (1_000, 1_500, 4_000, 100_000, 1_000_000)


@pytest.fixture(scope="module")
def producers() -> Iterator[dict[int, Producer]]:
    """A real producer per message.max.bytes; nothing is sent (no broker), only checked and
    queued by librdkafka, which refuses a record above its limit at once."""
    made = {
        limit: Producer(
            {"bootstrap.servers": "127.0.0.1:9", "message.max.bytes": limit, "log_level": 0}
        )
        for limit in LIMITS
    }
    yield made
    for producer in made.values():
        producer.purge()


def producer_accepts(producer: Producer, record: KafkaRecord) -> bool:
    try:
        producer.produce("events", record.value, record.key, headers=record.headers)
    except KafkaException as error:
        assert error.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
        return False
    finally:
        producer.purge()
    return True


def attribute(record: KafkaRecord, name: str) -> bytes | None:
    return dict(record.headers).get(f"ce_{name}")


def event(value: bytes, key: bytes | None = b"id-1", **extra: bytes) -> KafkaRecord:
    headers = [("ce_id", b"id-1"), ("ce_type", b"org.kubeflow.serving.inference.request")]
    headers += [(f"ce_{name}", text) for name, text in extra.items()]
    return KafkaRecord(key=key, value=value, headers=headers)


def test_a_big_payload_is_cut_to_the_limit_and_marked(producers: dict[int, Producer]) -> None:
    record = event(b"x" * 1_500_000, path=b"/v1/models/m:predict")
    assert not record_fit(record, 1_000_000).fits
    assert not producer_accepts(producers[1_000_000], record)
    cut = cut_to_fit(record, 1_000_000)
    assert cut is not None
    assert producer_accepts(producers[1_000_000], cut)
    assert record_fit(cut, 1_000_000).fits
    assert 999_000 < len(cut.value) < 1_000_000, "the payload keeps what room there is"
    assert attribute(cut, "truncated") == b"true"
    assert attribute(cut, "originalbytes") == str(record_size_of(record)).encode()
    assert attribute(cut, "path") == b"/v1/models/m:predict", "short attributes stay whole"
    assert cut.key == record.key


def record_size_of(record: KafkaRecord) -> int:
    return (
        len(record.value)
        + len(record.key or b"")
        + sum(len(name) + len(value) for name, value in record.headers)
    )


def test_attributes_too_large_are_cut_with_a_marker_and_the_payload_keeps_a_share(
    producers: dict[int, Producer],
) -> None:
    path = ("/v1/models/" + "é" * 800_000).encode()  # two bytes a character
    record = event(b"p" * 10_000, path=path, metadata=b'{"X": ["' + b"m" * 700_000 + b'"]}')
    fit = record_fit(record, 1_000_000)
    assert not fit.fits and fit.payload_room < 0
    cut = cut_to_fit(record, 1_000_000)
    assert cut is not None and producer_accepts(producers[1_000_000], cut)
    cut_path = attribute(cut, "path") or b""
    assert cut_path.endswith(CUT_MARKER.format(len(path)).encode())
    assert cut_path.decode().startswith("/v1/models/éé"), "cut on a character boundary"
    assert len(cut_path) <= ATTRIBUTE_CUT_BYTES + len(CUT_MARKER.format(len(path)))
    assert (attribute(cut, "metadata") or b"").endswith(b"[cut from 700011 bytes]")
    assert cut.value == record.value, "a small payload is kept whole"
    assert attribute(cut, "id") == b"id-1"


def test_a_huge_key_is_cut_the_same_way_for_both_events_of_a_call() -> None:
    request_id = b"r" * 2_000_000
    request = event(b"{}", key=request_id, requestid=request_id)
    response = event(b"{}", key=request_id, requestid=request_id, statuscode=b"200")
    cut_request, cut_response = cut_to_fit(request, 1_000_000), cut_to_fit(response, 1_000_000)
    assert cut_request is not None and cut_response is not None
    assert cut_request.key == cut_response.key, "both events stay on one partition"
    assert attribute(cut_request, "requestid") == attribute(cut_response, "requestid")
    assert (cut_request.key or b"").endswith(b"[cut from 2000000 bytes]")


def test_too_many_attributes_to_fit_even_cut_give_none() -> None:
    crowded = event(b"", **{f"x{number}": b"v" * 50 for number in range(300)})
    assert cut_to_fit(crowded, 1_000) is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    limit=st.sampled_from(LIMITS),
    value_bytes=st.integers(0, 1_200_000),
    key_bytes=st.one_of(st.none(), st.integers(0, 3_000)),
    attribute_bytes=st.lists(st.integers(0, 1_100_000), max_size=6),
    character=st.sampled_from(["a", "é", "€", "😀"]),
)
def test_whatever_its_shape_a_cut_record_is_accepted_by_librdkafka(
    producers: dict[int, Producer],
    limit: int,
    value_bytes: int,
    key_bytes: int | None,
    attribute_bytes: list[int],
    character: str,
) -> None:
    text = character * (max(attribute_bytes, default=0) // len(character.encode()) + 1)
    extra = {f"a{n}": text[:size].encode() for n, size in enumerate(attribute_bytes)}
    key = None if key_bytes is None else b"k" * key_bytes
    record = event(b"v" * value_bytes, key=key, **extra)
    if record_fit(record, limit).fits:
        assert producer_accepts(producers[limit], record), "a record said to fit does"
    cut = cut_to_fit(record, limit)
    assert cut is not None, "a handful of attributes can always be cut to fit"
    assert producer_accepts(producers[limit], cut)
    assert attribute(cut, "truncated") == b"true"
    assert attribute(cut, "originalbytes") == str(record_size_of(record)).encode()
    assert record.value.startswith(cut.value)
    for name, value in cut.headers:
        value.decode()  # still UTF-8: a reader decodes every attribute
        original = dict(record.headers).get(name)
        if original is not None and value != original:
            prefix = value.rsplit(b"...[cut from ", 1)[0]
            assert original.startswith(prefix)


def test_the_limit_is_the_producers_message_max_bytes() -> None:
    assert LoggerSettings().max_record_bytes == 1_000_000
    configured = LoggerSettings(kafka_config={"message.max.bytes": "2000000"})
    assert configured.max_record_bytes == 2_000_000
    for bad in ("abc", "999", "-5", "2000000000"):
        with pytest.raises(ValueError, match=r"message\.max\.bytes must be an integer"):
            LoggerSettings(kafka_config={"message.max.bytes": bad})


@pytest.mark.slow
def test_a_producer_stuck_on_a_broker_that_came_back_empty_is_replaced(
    tansu_factory: TansuFactory, tmp_path: Path
) -> None:
    """An idempotent producer with events in flight when its broker dies waits forever for the
    producer id a broker that comes back empty no longer knows; a new producer delivers them."""
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    broker = tansu_factory(port=port)
    create_topic(bootstrap, "stuck")
    settings = LoggerSettings(
        kafka_bootstrap=bootstrap, topic="stuck", delivery_timeout_ms=2000, spool_dir=str(tmp_path)
    )
    registry = CollectorRegistry()
    metrics = SinkMetrics(registry)

    def delivered() -> float:
        replayed = registry.get_sample_value("infermon_events_replayed_total") or 0
        return metrics.produced.values[None] + replayed

    async def scenario() -> None:
        with DiskSpool(tmp_path, max_bytes=1 << 20) as spool:
            sink = EventSink(settings, metrics, spool)
            running = asyncio.create_task(sink.run())
            for number in range(3):
                sink.send(event(b"before", key=f"before-{number}".encode()))
            await until(lambda: delivered() == 3, 10)
            for number in range(3):
                sink.send(event(b"in flight", key=f"lost-{number}".encode()))
            await asyncio.sleep(0.01)
            broker.stop()
            tansu_factory(port=port)
            create_topic(bootstrap, "stuck")
            await until(lambda: delivered() >= 6 and spool.pending_records == 0, 60)
            await sink.close(5)
            await running

    asyncio.run(scenario())
    keys = {message.key() for message in read_all(bootstrap, "stuck", idle_s=1.0)}
    assert keys == {f"lost-{number}".encode() for number in range(3)}


async def until(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.05)
