"""`infermon monitor` end to end: real broker, real logger and ingest, SQLite and PostgreSQL."""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

import httpx
from confluent_kafka import Producer
from sqlalchemy.engine import make_url

from infermon import events
from monitor.store.store import Store
from tests.fixtures.broker import read_topic
from tests.fixtures.factories import TopicFactory
from tests.fixtures.infermon_process import InfermonProcess
from tests.fixtures.toy_model_server import ToyModelServer
from tests.monitor.consumer_helpers import start_monitor, wait_for_stats

TIME = b"2026-11-29T07:01:02.123456789Z"


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, list, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, headers, value in records:
        producer.produce(topic, value, key, headers=headers)
    assert producer.flush(30) == 0


def kafka_sink_record(
    event_type: str, event_id: str, data: object, **extensions: str
) -> tuple[None, list[tuple[str, bytes]], bytes]:
    """What a Knative KafkaSink writes for a KServe agent event: binary mode, no key."""
    headers = [
        ("ce_specversion", b"1.0"), ("ce_id", event_id.encode()),
        ("ce_source", b"http://localhost:9081/"), ("ce_type", event_type.encode()),
        ("ce_time", TIME), ("content-type", b"application/json"),
        ("ce_inferenceservicename", b"frames"), ("ce_namespace", b"default"),
        ("ce_component", b"predictor"), ("ce_endpoint", b""), ("ce_metadata", b"{}"),
    ]  # fmt: skip
    headers += [(f"ce_{name}", value.encode()) for name, value in extensions.items()]
    return None, headers, json.dumps(data).encode()


def seldon_record(event_type: str, request_id: str, data: object) -> tuple:
    """Seldon's request logger: a new id per event, the call in `requestid`."""
    headers = [
        ("ce_specversion", b"1.0"), ("ce_id", str(uuid.uuid4()).encode()),
        ("ce_source", b"seldon"), ("ce_type", event_type.encode()), ("ce_time", TIME),
        ("ce_requestid", request_id.encode()), ("ce_modelid", b"seldon-model"),
        ("content-type", b"application/json"),
    ]  # fmt: skip
    return None, headers, json.dumps(data).encode()


def start_logger(bootstrap: str, topic: str, model_url: str, tmp_path) -> InfermonProcess:  # type: ignore[no-untyped-def]
    return InfermonProcess(
        "logger",
        ["--model-url", model_url, "--kafka-bootstrap", bootstrap, "--topic", topic],
        spool_dir=tmp_path / "spool",
    )


def test_events_from_every_source_become_inferences_and_instances(
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    toy_model_server: ToyModelServer,
    database_url: str,
    store: Store,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    topic = new_topic()
    with start_logger(kafka_bootstrap, topic, toy_model_server.url, tmp_path) as logger:
        httpx.post(f"{logger.url}/v1/models/iris:predict", json={"instances": [[1, 2], [3, 4]]},
                   headers={"X-Request-Id": "v1-list"})  # fmt: skip
        httpx.post(f"{logger.url}/v1/models/dicts:predict",
                   json={"instances": [{"age": 40, "income": 2.5}]},
                   headers={"X-Request-Id": "v1-dict"})  # fmt: skip
        v2 = {"inputs": [
            {"name": "a", "shape": [2, 2, 3], "datatype": "FP32", "data": list(range(12))},
            {"name": "b", "shape": [2], "datatype": "INT64", "data": [7, 8]},
        ]}  # fmt: skip
        httpx.post(f"{logger.url}/v2/models/tensors/infer", json=v2,
                   headers={"X-Request-Id": "v2-multi"})  # fmt: skip
        assert len(read_topic(kafka_bootstrap, topic, 6, timeout_s=20)) == 6
    frames = {"dataframe_split": {"columns": ["x", "y"], "data": [[1, 10], [2, 20]]}}
    produce(kafka_bootstrap, topic, [
        kafka_sink_record(events.KSERVE_RESPONSE_TYPE, "df-1", {"predictions": [11, 22]}),
        kafka_sink_record(events.KSERVE_REQUEST_TYPE, "df-1", frames),
        seldon_record(events.SELDON_REQUEST_TYPE, "seldon-1", {"instances": [[5, 6]]}),
        seldon_record(events.SELDON_RESPONSE_TYPE, "seldon-1", {"predictions": [11]}),
    ])  # fmt: skip

    monitor = start_monitor(kafka_bootstrap, topic, database_url)
    try:
        stats = wait_for_stats(store, lambda s: s["events"] >= 10)
    finally:
        monitor.stop()
    assert stats["events"] == 10
    assert stats["inferences"] == 5
    assert stats["instances"] == 2 + 1 + 2 + 2 + 1
    assert stats["dead_letters"] == 0

    iris = store.latest_instances("iris").sort_values("row_index")
    assert iris[["f0", "f1"]].values.tolist() == [[1, 2], [3, 4]]
    assert iris["prediction"].tolist() == [3.0, 7.0]
    dicts = store.latest_instances("dicts")
    assert dicts[["age", "income"]].values.tolist() == [[40, 2.5]]
    tensors = store.latest_instances("tensors").sort_values("row_index")
    assert tensors["a[0,0]"].tolist() == [0, 6]
    assert tensors["a[1,2]"].tolist() == [5, 11]
    assert tensors["b"].tolist() == [7, 8]
    assert tensors["prediction.sum"].tolist() == [15.0, 51.0]  # the toy server sums input a
    frames_rows = store.latest_instances("frames").sort_values("row_index")
    assert frames_rows[["x", "y"]].values.tolist() == [[1, 10], [2, 20]]
    assert frames_rows["prediction"].tolist() == [11, 22]
    seldon = store.latest_instances("seldon-model")
    assert seldon[["f0", "f1"]].values.tolist() == [[5, 6]]
    assert seldon["prediction"].tolist() == [11]
    by_id = {row.request_id: row for row in store.latest_inferences(limit=10)}
    assert by_id["v1-list"].status_code == 200
    assert by_id["v1-list"].protocol == "v1"
    assert by_id["df-1"].status_code == 200  # KServe logs only 200 responses
    assert not by_id["seldon-1"].orphaned


def test_poison_records_go_to_the_dead_letter_topic_and_good_ones_behind_them_are_stored(
    kafka_bootstrap: str, new_topic: TopicFactory, database_url: str, store: Store
) -> None:
    topic = new_topic()
    dead_letter_topic = f"{topic}.dlq"  # created by the monitor's first write to it
    good_request = kafka_sink_record(events.KSERVE_REQUEST_TYPE, "good-1", {"instances": [[1]]})
    missing_id = (b"k1", [h for h in good_request[1] if h[0] != "ce_id"], good_request[2])
    not_json = (b"k2", [("content-type", b"application/cloudevents+json")], b"{not json")
    avro = (b"k3", [("content-type", b"application/cloudevents+avro")], b"\x00\x01")
    oversized = kafka_sink_record(events.KSERVE_REQUEST_TYPE, "big", {"x": "y" * 5000})
    produce(kafka_bootstrap, topic, [missing_id, not_json, avro, oversized, good_request])

    monitor = start_monitor(kafka_bootstrap, topic, database_url, "--max-event-bytes", "4000")
    try:
        stats = wait_for_stats(store, lambda s: s["events"] >= 1 and s["dead_letters"] >= 4)
    finally:
        monitor.stop()
    assert (stats["events"], stats["dead_letters"]) == (1, 4)
    letters = read_topic(kafka_bootstrap, dead_letter_topic, 4, timeout_s=20)
    by_offset = {int(dict(m.headers())["__connect.errors.offset"]): m for m in letters}
    assert sorted(by_offset) == [0, 1, 2, 3], "the four poison records, the good one not"
    assert [by_offset[n].key() for n in range(3)] == [b"k1", b"k2", b"k3"]
    first = dict(by_offset[0].headers())
    assert first["__connect.errors.topic"] == topic.encode()
    assert first["__connect.errors.exception.class.name"] == b"InvalidEventError"
    assert b"id" in first["__connect.errors.exception.message"]
    assert first["ce_source"] == b"http://localhost:9081/", "the original headers are kept"
    assert by_offset[1].value() == b"{not json"
    assert b"JSON" in dict(by_offset[1].headers())["__connect.errors.exception.message"]
    assert b"avro" in dict(by_offset[2].headers())["__connect.errors.exception.message"]
    assert dict(by_offset[3].headers())["__connect.errors.stage"] == b"size"


def _store_calls_around(
    bootstrap: str, topic: str, database_url: str, store: Store, calls: int, odd_id: str
) -> dict[str, Any]:
    """`calls` whole calls with one more request, `odd_id`, in their middle, through a monitor;
    the store's stats once every event is stored or dead-lettered."""
    good = [
        kafka_sink_record(kind, f"call-{n}", body)
        for n in range(calls)
        for kind, body in (
            (events.KSERVE_REQUEST_TYPE, {"instances": [[n, 1]]}),
            (events.KSERVE_RESPONSE_TYPE, {"predictions": [n]}),
        )
    ]
    odd = kafka_sink_record(events.KSERVE_REQUEST_TYPE, odd_id, {"instances": [[1, 1]]})
    produce(bootstrap, topic, [*good[:calls], odd, *good[calls:]])
    monitor = start_monitor(bootstrap, topic, database_url)
    try:
        stats = wait_for_stats(store, lambda s: s["events"] + s["dead_letters"] > 2 * calls)
        assert monitor.running(), "the monitor goes on"
    finally:
        monitor.stop()
    return stats


def test_an_event_the_database_refuses_for_good_is_dead_lettered_and_the_rest_stored(
    kafka_bootstrap: str, new_topic: TopicFactory, database_url: str, store: Store
) -> None:
    """A valid CloudEvent with a 10 KB id: PostgreSQL refuses its index row (limit ~2.7 KB,
    after compression, hence random text) however often it is tried, so it must not hold up
    the batch; SQLite takes it."""
    topic = new_topic()
    huge_id = random.Random(3).randbytes(5000).hex()
    stats = _store_calls_around(kafka_bootstrap, topic, database_url, store, 20, huge_id)
    if make_url(database_url).get_backend_name() == "sqlite":
        assert (stats["events"], stats["dead_letters"]) == (41, 0)
        return
    assert (stats["events"], stats["inferences"], stats["dead_letters"]) == (40, 20, 1)
    [letter] = read_topic(kafka_bootstrap, f"{topic}.dlq", 1, timeout_s=20)
    headers = dict(letter.headers())
    assert headers["__connect.errors.stage"] == b"store"
    assert headers["__connect.errors.offset"] == b"20"
    assert headers["ce_id"] == huge_id.encode(), "the original record"


_REFUSE_POISON = {
    "sqlite": [
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON events WHEN NEW.event_id = 'poison'"
        " BEGIN SELECT RAISE(ABORT, 'poison refused'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN RAISE EXCEPTION 'poison refused'; END $$",
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON events FOR EACH ROW"
        " WHEN (NEW.event_id = 'poison') EXECUTE FUNCTION refuse_poison()",
    ],
}


def test_an_event_a_trigger_refuses_is_dead_lettered_on_either_database(
    kafka_bootstrap: str, new_topic: TopicFactory, database_url: str, store: Store
) -> None:
    """The test above cannot make SQLite refuse anything; a trigger can, on both databases:
    the batch is written again event by event, the refused one dead-lettered with the
    database's reason and every other one stored."""
    with store.engine.begin() as connection:
        for statement in _REFUSE_POISON[store.engine.dialect.name]:
            connection.exec_driver_sql(statement)
    topic = new_topic()
    stats = _store_calls_around(kafka_bootstrap, topic, database_url, store, 10, "poison")
    assert (stats["events"], stats["inferences"], stats["instances"]) == (20, 10, 10)
    assert stats["dead_letters"] == 1
    [letter] = read_topic(kafka_bootstrap, f"{topic}.dlq", 1, timeout_s=20)
    headers = dict(letter.headers())
    assert (headers["ce_id"], headers["__connect.errors.stage"]) == (b"poison", b"store")
    assert b"poison refused" in headers["__connect.errors.exception.message"]
