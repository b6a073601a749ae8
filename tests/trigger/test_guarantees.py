"""What the trigger promises: nothing lost across a crash, order per key, failures sorted.

Real broker, real processes: the trigger runs as `infermon trigger`, killed with SIGKILL or
stopped with SIGTERM; the model server is KServe's own (outage), the toy one (statuses) or one
with random latencies (ordering).
"""

from __future__ import annotations

import json
import socket
import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Message

from infermon import events
from tests.fixtures.broker import create_topic, read_all, read_topic
from tests.fixtures.events_on_kafka import as_logged
from tests.fixtures.factories import TopicFactory
from tests.fixtures.jitter_model_server import JitterModelServer
from tests.fixtures.kserve_server import KServeModelServer
from tests.fixtures.processes import free_port
from tests.fixtures.toy_model_server import ToyModelServer
from tests.fixtures.trigger import (
    Input,
    TriggerProcess,
    answered,
    committed_offsets,
    produce_inputs,
)

pytestmark = pytest.mark.slow

FAST_RETRIES = ("--max-retries", "2", "--retry-backoff-s", "0.05")


def request(
    request_id: str,
    key: str,
    instances: object,
    event_type: str = events.KSERVE_REQUEST_TYPE,
    **extensions: str,
) -> Input:
    headers = [
        ("ce_specversion", b"1.0"), ("ce_id", request_id.encode()), ("ce_source", b"/tests"),
        ("ce_type", event_type.encode()), ("content-type", b"application/json"),
    ]  # fmt: skip
    headers += [(f"ce_{name}", value.encode()) for name, value in extensions.items()]
    return Input(key.encode(), json.dumps({"instances": instances}).encode(), headers)


def id_of(record: Input) -> bytes:
    return dict(record.headers)["ce_id"]


def ce_id(message: Message) -> str:
    return dict(message.headers() or [])["ce_id"].decode()


def header(message: Message, name: str) -> bytes | None:
    return dict(message.headers() or []).get(name)


def topics(new_topic: TopicFactory, kafka_bootstrap: str, partitions: int = 1) -> tuple[str, str]:
    """An input topic with its dead-letter topic, and an output topic."""
    input_topic, output_topic = new_topic(partitions), new_topic(partitions)
    create_topic(kafka_bootstrap, f"{input_topic}.dlq")
    return input_topic, output_topic


def read_until_answered(
    bootstrap: str, topic: str, ids: set[str], timeout_s: float
) -> list[Message]:
    deadline = time.monotonic() + timeout_s
    while True:
        messages = read_all(bootstrap, topic, idle_s=0.5)
        if {ce_id(m) for m in messages} >= ids or time.monotonic() > deadline:
            return messages


def test_sigkill_mid_run_then_restart_answers_every_input_repeating_only_ids(
    kafka_bootstrap: str, new_topic: TopicFactory, tmp_path: Path
) -> None:
    records, partitions, group = 6000, 3, "kill-restart"
    input_topic, output_topic = topics(new_topic, kafka_bootstrap, partitions)
    inputs = [request(f"kill-{n}", f"key-{n % 40}", [[n]]) for n in range(records)]
    queued = produce_inputs(kafka_bootstrap, input_topic, inputs)
    # Calls of 0-6 ms, four at a time: the run lasts seconds, so the kill lands mid-run.
    with JitterModelServer(max_delay_ms=6) as model:
        args = (kafka_bootstrap, input_topic, output_topic, model.url, "--model-name", "m",
                "--group", group, "--concurrency", "4", "--log-topic", "")  # fmt: skip
        with TriggerProcess(*args, spool_dir=tmp_path / "first") as first:
            deadline = time.monotonic() + 60
            while (
                sum(committed_offsets(kafka_bootstrap, group, input_topic, partitions).values())
                < records / 10
            ):
                assert time.monotonic() < deadline, f"nothing committed: {first.log_tail()}"
                time.sleep(0.1)
            at_kill = first.metrics()
            first.kill()
        assert answered(at_kill) < records, "killed before the end"

        # Never committed ahead of an answer: every input below a committed offset is answered.
        committed = committed_offsets(kafka_bootstrap, group, input_topic, partitions)
        answered_ids = {ce_id(m) for m in read_all(kafka_bootstrap, output_topic, idle_s=0.5)}
        below_commit = [q for q in queued if q.offset < committed[q.partition]]
        assert all(id_of(q.input).decode() in answered_ids for q in below_commit)

        with TriggerProcess(*args, spool_dir=tmp_path / "second"):
            everything = read_until_answered(
                kafka_bootstrap, output_topic, {f"kill-{n}" for n in range(records)}, 90
            )
    by_id: dict[str, list[Message]] = defaultdict(list)
    for message in everything:
        by_id[ce_id(message)].append(message)
    assert set(by_id) == {f"kill-{n}" for n in range(records)}, "every input answered"
    for request_id, answers in by_id.items():
        n = int(request_id.split("-")[1])
        for answer in answers:  # a repeat is the same answer: same id, key and body
            assert answer.key() == f"key-{n % 40}".encode()
            assert json.loads(answer.value()) == {"predictions": [n]}
    repeats = len(everything) - records
    assert repeats <= records - len(below_commit), "only uncommitted inputs were answered again"


def test_model_server_down_retries_then_dead_letters_and_once_up_answers_new_inputs(
    kafka_bootstrap: str, new_topic: TopicFactory, tmp_path: Path
) -> None:
    input_topic, output_topic = topics(new_topic, kafka_bootstrap)
    log_topic = new_topic()
    port = free_port()  # KServe's server will start here, later
    down = [request(f"down-{n}", f"k{n}", [[n, 1]]) for n in range(10)]
    with TriggerProcess(
        kafka_bootstrap, input_topic, output_topic, f"http://127.0.0.1:{port}",
        "--model-name", "toy", "--log-topic", log_topic, *FAST_RETRIES,
        spool_dir=tmp_path / "spool",
    ) as trigger:  # fmt: skip
        produce_inputs(kafka_bootstrap, input_topic, down)
        metrics = trigger.wait_for_metrics(
            lambda m: m.get('infermon_trigger_dead_lettered_total{reason="unreachable"}') == 10,
            # The first of them waits for the group join too, which the test broker can make
            # take ~25 s on a loaded machine.
            60, "10 dead letters",
        )  # fmt: skip
        assert metrics['infermon_trigger_retried_total{reason="unreachable"}'] == 20
        assert answered(metrics) == 0

        with KServeModelServer(port=port):
            up = [request(f"up-{n}", f"k{n}", [[n, 1]]) for n in range(10)]
            produce_inputs(kafka_bootstrap, input_topic, up)
            answers = read_topic(kafka_bootstrap, output_topic, 10, timeout_s=30)
            metrics = trigger.wait_for_metrics(lambda m: answered(m) == 10, 10, "10 answers")
        assert metrics['infermon_trigger_dead_lettered_total{reason="unreachable"}'] == 10

    assert sorted(ce_id(m) for m in answers) == sorted(f"up-{n}" for n in range(10))
    for answer in answers:
        n = int(ce_id(answer).split("-")[1])
        assert answer.key() == f"k{n}".encode()
        assert json.loads(answer.value()) == {"predictions": [n + 1]}
    dead = read_all(kafka_bootstrap, f"{input_topic}.dlq", idle_s=0.5)
    assert sorted(ce_id(m) for m in dead) == sorted(f"down-{n}" for n in range(10))
    original = {id_of(record): record for record in down}
    for letter in dead:
        sent = original[header(letter, "ce_id") or b""]
        assert (letter.key(), letter.value()) == (sent.key, sent.value), "the input, unchanged"
        assert header(letter, "__connect.errors.exception.class.name") == b"unreachable"
        assert header(letter, "__connect.errors.attempts") == b"3"
        assert header(letter, "__connect.errors.statuscode") == b"502"
        assert header(letter, "__connect.errors.topic") == input_topic.encode()
    logged = [as_logged(m) for m in read_topic(kafka_bootstrap, log_topic, 40, timeout_s=20)]
    statuses = {(e.id.split("-")[0], e.ext("statuscode")) for e in logged if e.ext("statuscode")}
    assert statuses == {("down", "502"), ("up", "200")}, "failed calls are logged too"


def test_answers_keep_each_keys_order_with_concurrency_16(
    kafka_bootstrap: str, new_topic: TopicFactory, tmp_path: Path
) -> None:
    keys, per_key = 32, 40
    input_topic, output_topic = topics(new_topic, kafka_bootstrap, partitions=3)
    # Round-robin over the keys, so that many keys are ready at once.
    inputs = [
        request(f"order-{k}-{seq}", f"key-{k}", [[seq]])
        for seq in range(per_key)
        for k in range(keys)
    ]
    produce_inputs(kafka_bootstrap, input_topic, inputs)
    with JitterModelServer(max_delay_ms=5) as model, TriggerProcess(
        kafka_bootstrap, input_topic, output_topic, model.url,
        "--model-name", "m", "--concurrency", "16", "--log-topic", "",
        spool_dir=tmp_path / "spool",
    ):  # fmt: skip
        answers = read_topic(kafka_bootstrap, output_topic, len(inputs), timeout_s=60)
        stats = httpx.get(f"{model.url}/stats").json()
    assert len(answers) == len(inputs)
    assert stats["most_at_once"] == 16, "the model had 16 calls at once"
    sequences: dict[bytes | None, list[int]] = defaultdict(list)
    for answer in answers:  # read partition by partition: each key's answers in topic order
        sequences[answer.key()].append(json.loads(answer.value())["predictions"][0])
    assert len(sequences) == keys
    for key, sequence in sequences.items():
        assert sequence == list(range(per_key)), f"{key!r} answered out of order"


def test_answers_4xx_dead_letters_5xx_and_invalid_inputs_and_counts_them(
    kafka_bootstrap: str, new_topic: TopicFactory, toy_model_server: ToyModelServer, tmp_path: Path
) -> None:
    input_topic, output_topic = topics(new_topic, kafka_bootstrap)
    inputs = [
        request("ok", "a", [[1, 2]]),
        request("bad-body", "b", "not a list"),
        request("model-fails", "c", [[1]], modelname="fail"),
        Input(b"d", b"\x00 not json", []),
        request("a-response", "e", [[1]], event_type=events.KSERVE_RESPONSE_TYPE),
    ]
    produce_inputs(kafka_bootstrap, input_topic, inputs)
    with TriggerProcess(
        kafka_bootstrap, input_topic, output_topic, toy_model_server.url,
        "--model-name", "m", "--log-topic", "", *FAST_RETRIES, spool_dir=tmp_path / "spool",
    ) as trigger:  # fmt: skip
        metrics = trigger.wait_for_metrics(
            lambda m: m.get("infermon_trigger_in_flight") == 0
            and m.get("infermon_trigger_consumed_total") == 5, 30, "all five handled",
        )  # fmt: skip
    assert answered(metrics, "200") == 1
    assert answered(metrics, "400") == 1, "a 4xx is an answer"
    assert metrics['infermon_trigger_retried_total{reason="status_5xx"}'] == 2
    assert metrics['infermon_trigger_dead_lettered_total{reason="status_5xx"}'] == 1
    assert metrics['infermon_trigger_dead_lettered_total{reason="invalid_input"}'] == 2
    assert metrics["infermon_trigger_latency_seconds_count"] == 2
    assert metrics["infermon_trigger_model_latency_seconds_count"] == 5, "1 + 1 + 3 calls"

    answers = {ce_id(m): m for m in read_topic(kafka_bootstrap, output_topic, 2, 10)}
    assert header(answers["ok"], "ce_statuscode") == b"200"
    assert header(answers["bad-body"], "ce_statuscode") == b"400"
    assert header(answers["bad-body"], "ce_attempts") == b"1", "4xx is not retried"
    dead = read_topic(kafka_bootstrap, f"{input_topic}.dlq", 3, 10)
    stages = sorted(header(m, "__connect.errors.stage") or b"" for m in dead)
    assert stages == [b"decode", b"decode", b"inference"]


def test_model_timeouts_are_retried_then_dead_lettered(
    kafka_bootstrap: str, new_topic: TopicFactory, tmp_path: Path
) -> None:
    input_topic, output_topic = topics(new_topic, kafka_bootstrap)
    with socket.create_server(("127.0.0.1", 0)) as silent, TriggerProcess(
        kafka_bootstrap, input_topic, output_topic,
        f"http://127.0.0.1:{silent.getsockname()[1]}", "--model-name", "m", "--log-topic", "",
        "--timeout", "0.3", "--max-retries", "1", "--retry-backoff-s", "0.05",
        spool_dir=tmp_path / "spool",
    ) as trigger:  # fmt: skip
        produce_inputs(kafka_bootstrap, input_topic, [request("slow", "k", [[1]])])
        metrics = trigger.wait_for_metrics(
            lambda m: m.get('infermon_trigger_dead_lettered_total{reason="timeout"}') == 1,
            30, "a dead letter",
        )  # fmt: skip
    assert metrics['infermon_trigger_retried_total{reason="timeout"}'] == 1
    (letter,) = read_topic(kafka_bootstrap, f"{input_topic}.dlq", 1, 10)
    assert header(letter, "__connect.errors.statuscode") == b"504"
    assert header(letter, "__connect.errors.attempts") == b"2"


def test_sigterm_commits_everything_answered_so_a_restart_repeats_nothing(
    kafka_bootstrap: str, new_topic: TopicFactory, toy_model_server: ToyModelServer, tmp_path: Path
) -> None:
    input_topic, output_topic = topics(new_topic, kafka_bootstrap, partitions=2)
    args = (kafka_bootstrap, input_topic, output_topic, toy_model_server.url,
            "--model-name", "m", "--group", "graceful", "--log-topic", "")  # fmt: skip
    before = [request(f"before-{n}", f"k{n % 7}", [[n]]) for n in range(500)]
    produce_inputs(kafka_bootstrap, input_topic, before)
    with TriggerProcess(*args, spool_dir=tmp_path / "first") as first:
        first.wait_for_metrics(lambda m: answered(m) == 500, 30, "500 answers")
        assert first.terminate() == 0
    committed = committed_offsets(kafka_bootstrap, "graceful", input_topic, 2)
    assert sum(committed.values()) == 500, committed

    after = [request(f"after-{n}", f"k{n % 7}", [[n]]) for n in range(50)]
    produce_inputs(kafka_bootstrap, input_topic, after)
    with TriggerProcess(*args, spool_dir=tmp_path / "second") as second:
        second.wait_for_metrics(lambda m: answered(m) == 50, 30, "50 answers")
        assert second.metrics()["infermon_trigger_consumed_total"] == 50
    everything = read_all(kafka_bootstrap, output_topic, idle_s=0.5)
    assert sorted(ce_id(m) for m in everything) == sorted(
        [f"before-{n}" for n in range(500)] + [f"after-{n}" for n in range(50)]
    )
