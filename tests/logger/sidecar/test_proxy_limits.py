"""Every input bounded: the sidecar refuses what is over a limit with its status, and its
memory stays small while clients flood it (loopback only, bounded in count and time)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from tests.fixtures.events_on_kafka import logged_events
from tests.fixtures.infermon_process import InfermonProcess
from tests.fixtures.raw_http import RawClient, peak_rss_bytes, request
from tests.fixtures.recording_upstream import (  # noqa: F401  (fixtures)
    ReceivedRequest,
    RecordingUpstream,
    Script,
    Sidecar,
    json_answer,
    recording_upstreams_fixture,
    sidecar_fixture,
)

Upstreams = Callable[[Script], RecordingUpstream]
PEAK_RSS_LIMIT_BYTES = 200 * 1024 * 1024
FLOOD_BYTES = 100 * 1024 * 1024


def _assert_small(logger: InfermonProcess) -> None:
    peak = peak_rss_bytes(logger.process.pid)
    assert peak < PEAK_RSS_LIMIT_BYTES, f"the sidecar peaked at {peak / 2**20:.0f} MiB"


def _refused(logger: InfermonProcess, cause: str) -> float:
    return logger.metrics()[f'infermon_proxy_refused_total{{reason="{cause}"}}']


def _flood(client: RawClient, head: bytes, filler: bytes, total_bytes: int) -> threading.Thread:
    """Sends `head`, then `filler` over and over up to `total_bytes`, from a thread; stops
    when the proxy closes the connection."""

    def send() -> None:
        try:
            client.sock.sendall(head)
            block = filler * max(1, 1024 * 1024 // len(filler))
            for _ in range(total_bytes // len(block)):
                client.sock.sendall(block)
        except OSError:
            return

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    return sender


FLOODED_HEADS = {
    "a 100 MB URL": (b"GET /", b"a" * 4096),
    "a 100 MB header": (b"GET / HTTP/1.1\r\nHost: m\r\nX-Big: ", b"b" * 4096),
    "millions of small headers": (b"GET / HTTP/1.1\r\nHost: m\r\n", b"X-A: b\r\n"),
}


@pytest.mark.parametrize(("head", "filler"), FLOODED_HEADS.values(), ids=FLOODED_HEADS.keys())
def test_a_flooded_request_head_is_refused_431_in_bounded_memory(
    recording_upstreams: Upstreams, sidecar: Sidecar, head: bytes, filler: bytes
) -> None:
    upstream = recording_upstreams(json_answer)
    logger, _ = sidecar(upstream)
    with RawClient(logger.port) as client:
        sender = _flood(client, head, filler, FLOOD_BYTES)
        answer = client.answer()
        sender.join(timeout=30)
    assert answer.status == 431
    _assert_small(logger)
    assert upstream.connection_count == 0
    # Small headers reach the count or the size first, depending on how the reads fall.
    assert _refused(logger, "header_too_large") + _refused(logger, "too_many_headers") == 1
    with RawClient(logger.port) as after:
        after.send(request("GET", "/v1/models/m"))
        assert after.answer().status == 200


def test_a_head_over_the_set_size_is_refused_431_and_one_under_it_passes(
    recording_upstreams: Upstreams, sidecar: Sidecar
) -> None:
    upstream = recording_upstreams(json_answer)
    logger, _ = sidecar(upstream, "--max-header-bytes", "8192")
    with RawClient(logger.port) as client:
        client.send(request("GET", "/v1/models/m", f"X-Token: {'t' * 7000}"))
        assert client.answer().status == 200
    with RawClient(logger.port) as client:
        client.send(request("GET", "/v1/models/m", f"X-Token: {'t' * 9000}"))
        answer = client.answer()
        assert client.wait_closed()
    assert answer.status == 431
    assert len(upstream.requests) == 1


def test_more_header_fields_than_the_limit_are_refused_431(
    recording_upstreams: Upstreams, sidecar: Sidecar
) -> None:
    upstream = recording_upstreams(json_answer)
    logger, _ = sidecar(upstream)
    fields = [f"X-Field-{index}: {index}" for index in range(100)]
    with RawClient(logger.port) as client:
        client.send(request("GET", "/v1/models/m", *fields[:99]))  # and Host: 100 in all
        assert client.answer().status == 200
        client.send(request("GET", "/v1/models/m", *fields))
        answer = client.answer()
        assert client.wait_closed()
    assert answer.status == 431
    assert json.loads(answer.body) == {"error": "more than 100 header fields"}
    assert len(upstream.requests) == 1
    assert _refused(logger, "too_many_headers") == 1


def test_trailers_over_the_header_limits_are_refused_and_the_call_cut_short(
    recording_upstreams: Upstreams, sidecar: Sidecar
) -> None:
    upstream = recording_upstreams(json_answer)
    logger, _ = sidecar(upstream)
    trailers = "".join(f"X-T{index}: v\r\n" for index in range(101)).encode()
    with RawClient(logger.port) as client:
        client.send(
            request("POST", "/v1/models/m:predict", "Transfer-Encoding: chunked")
            + b"2\r\n{}\r\n0\r\n"
            + trailers
            + b"\r\n"
        )
        answer = client.answer()
        assert client.wait_closed()
    assert answer.status == 431
    assert upstream.requests == []  # the body never ended upstream: the model never ran it


def _slow_first(delay_s: float) -> Script:
    def script(received: ReceivedRequest) -> bytes:
        if received.path == "/slow":
            time.sleep(delay_s)
        return json_answer(received)

    return script


def test_pipelined_requests_are_read_only_as_their_turn_comes(
    recording_upstreams: Upstreams, sidecar: Sidecar, kafka_bootstrap: str
) -> None:
    """300k pipelined GETs behind a slow call: a few are read ahead, the rest wait unread."""
    upstream = recording_upstreams(_slow_first(1.0))
    logger, topic = sidecar(upstream)
    one = request("GET", "/v1/models/m")
    with RawClient(logger.port, timeout_s=20) as client:
        sender = _flood(client, request("GET", "/slow"), one, len(one) * 300_000)
        answers = client.answers(300_001)
        assert client.wait_closed()
        sender.join(timeout=30)
    _assert_small(logger)
    statuses = [answer.status for answer in answers]
    assert statuses[-1] == 503
    assert json.loads(answers[-1].body) == {"error": "too many pipelined requests"}
    assert statuses[:-1] == [200] * (len(answers) - 1)
    assert [json.loads(a.body)["path"] for a in answers[:2]] == ["/slow", "/v1/models/m"]
    reached = upstream.requests
    assert len(reached) == len(answers) - 1 <= 1 + 16 * 20  # at most 16 ahead per read
    # Only calls that reached the model server are logged, each with its answer.
    assert len(logged_events(kafka_bootstrap, topic, 2 * len(reached))) == 2 * len(reached)
    assert _refused(logger, "pipeline") == 1


def test_pipelined_requests_within_the_limit_are_all_answered_in_order(
    recording_upstreams: Upstreams, sidecar: Sidecar
) -> None:
    upstream = recording_upstreams(_slow_first(0.3))
    logger, _ = sidecar(upstream, "--max-pipelined-requests", "4")
    paths = ["/slow", *(f"/v1/models/m{index}" for index in range(4))]
    with RawClient(logger.port) as client:
        client.send(b"".join(request("GET", path) for path in paths))
        answers = client.answers(5)
        client.send(request("GET", "/after"))  # the connection is still good
        answers += client.answers(1)
    assert [json.loads(a.body)["path"] for a in answers] == [*paths, "/after"]
    assert [r.path for r in upstream.requests] == [*paths, "/after"]


def test_a_connection_cap_answers_503_while_the_admin_port_answers(
    recording_upstreams: Upstreams, sidecar: Sidecar
) -> None:
    upstream = recording_upstreams(json_answer)
    logger, _ = sidecar(upstream, "--max-connections", "1000", "--idle-timeout-s", "2")
    held = [socket.create_connection(("127.0.0.1", logger.port)) for _ in range(1000)]
    try:
        assert _wait_for(lambda: logger.metrics()["infermon_proxy_client_connections"] == 1000)
        over = [RawClient(logger.port) for _ in range(500)]
        assert {client.answer().status for client in over} == {503}
        for client in over:
            client.close()
        assert httpx.get(f"{logger.admin_url}/healthz", timeout=5).status_code == 200
        assert httpx.get(f"{logger.admin_url}/readyz", timeout=5).status_code == 200
        with RawClient(logger.port) as refused:
            refused.send(request("GET", "/v1/models/m"))
            assert refused.answer().status == 503
        _assert_small(logger)
        # The idle ones are closed by the proxy after --idle-timeout-s; then calls go through.
        assert _wait_for(lambda: _peer_closed(held[0]), timeout_s=10)
        assert _wait_for(lambda: logger.metrics()["infermon_proxy_client_connections"] == 0)
        with RawClient(logger.port) as after:
            after.send(request("GET", "/v1/models/m"))
            assert after.answer().status == 200
    finally:
        for sock in held:
            sock.close()
    assert _refused(logger, "connection_limit") == 501
    assert _refused(logger, "idle_timeout") == 1000
    assert upstream.connection_count == 1


def _wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _peer_closed(sock: socket.socket) -> bool:
    sock.settimeout(0)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def test_a_head_sent_too_slowly_is_refused_408(
    recording_upstreams: Upstreams, sidecar: Sidecar
) -> None:
    upstream = recording_upstreams(json_answer)
    logger, _ = sidecar(upstream, "--header-timeout-s", "0.6")
    with RawClient(logger.port) as client:
        started = time.monotonic()
        client.send(b"GET /v1/models/m HTTP/1.1\r\n")
        for _ in range(30):  # a byte now and then does not reset the head's clock
            time.sleep(0.05)
            client.send_ignoring_errors(b"X")
        answer = client.answer()
        waited_s = time.monotonic() - started
    assert answer.status == 408
    assert 0.6 <= waited_s < 2.0, waited_s
    assert upstream.connection_count == 0
    assert _refused(logger, "header_timeout") == 1


def test_stalled_bodies_are_cut_408_and_free_their_upstream_connections(
    recording_upstreams: Upstreams, sidecar: Sidecar, kafka_bootstrap: str
) -> None:
    upstream = recording_upstreams(json_answer)
    logger, topic = sidecar(upstream, "--body-timeout-s", "0.5")
    clients = [RawClient(logger.port) for _ in range(200)]
    try:
        for client in clients:
            client.send(
                b"POST /v1/models/m:predict HTTP/1.1\r\nHost: m\r\nContent-Length: 1000\r\n\r\n{"
            )
        assert _wait_for(lambda: upstream.connection_count == 200)
        started = time.monotonic()
        answers = [client.answer() for client in clients]
        assert time.monotonic() - started < 3.0
        assert {answer.status for answer in answers} == {408}
        assert _wait_for(lambda: upstream.pinned_connections == 0)
    finally:
        for client in clients:
            client.close()
    assert upstream.requests == []  # no model server ran a request it got only part of
    events = logged_events(kafka_bootstrap, topic, 400)
    assert {e.ext("statuscode") for e in events if e.ext("statuscode")} == {"408"}
    assert _refused(logger, "body_timeout") == 200


def test_a_slow_but_steady_body_and_a_slow_model_are_not_timed_out(
    recording_upstreams: Upstreams, sidecar: Sidecar
) -> None:
    upstream = recording_upstreams(_slow_first(1.2))
    logger, _ = sidecar(
        upstream, "--body-timeout-s", "0.5", "--idle-timeout-s", "0.5", "--header-timeout-s", "0.5"
    )
    body = b"x" * 20
    with RawClient(logger.port) as client:
        client.send(b"POST /v1/models/m:predict HTTP/1.1\r\nHost: m\r\nContent-Length: 20\r\n\r\n")
        for index in range(20):  # over 1.2 s, a byte every 60 ms
            time.sleep(0.06)
            client.send(body[index : index + 1])
        assert client.answer().status == 200
        client.send(request("GET", "/slow"))  # the model takes longer than any edge timeout
        assert client.answer().status == 200
    assert [r.body for r in upstream.requests] == [body, b""]
