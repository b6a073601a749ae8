"""Framing never changes on the way through: the sidecar in front of a model server on a raw
socket that records every byte it receives, with a real broker behind the sidecar."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from tests.fixtures.events_on_kafka import LoggedEvent, logged_events
from tests.fixtures.raw_http import RawClient, request
from tests.fixtures.recording_upstream import (  # noqa: F401  (fixtures)
    ReceivedRequest,
    RecordingUpstream,
    Reply,
    Script,
    Sidecar,
    json_answer,
    recording_upstreams_fixture,
    sidecar_fixture,
)

Upstreams = Callable[[Script], RecordingUpstream]


def _paths_answered(answer_body: bytes) -> str:
    return str(json.loads(answer_body)["path"])


def _requests_logged(events: list[LoggedEvent]) -> list[tuple[str | None, str | None]]:
    return sorted((e.ext("method"), e.ext("path")) for e in events if e.type.endswith("request"))


SMUGGLED = b"POST /smuggled HTTP/1.1\r\nHost: model\r\nContent-Length: 2\r\n\r\n{}"


@pytest.mark.parametrize(
    "connection",
    ["keep-alive, content-length", "Content-Length", "keep-alive, transfer-encoding"],
)
def test_a_connection_header_naming_the_framing_does_not_unframe_the_body(
    recording_upstreams: Upstreams,
    sidecar: Sidecar,
    kafka_bootstrap: str,
    connection: str,
) -> None:
    upstream = recording_upstreams(json_answer)
    logger, topic = sidecar(upstream)
    with RawClient(logger.port) as first:
        first.send(
            request("POST", "/v1/models/a:predict", f"Connection: {connection}", body=SMUGGLED)
        )
        answer = first.answer()
    assert answer.status == 200
    assert json.loads(answer.body) == {
        "method": "POST", "path": "/v1/models/a:predict", "body": SMUGGLED.decode(),
    }  # fmt: skip
    with RawClient(logger.port) as second:  # takes the upstream connection the first left
        second.send(request("POST", "/v1/models/b:predict", body=b"{}"))
        assert _paths_answered(second.answer().body) == "/v1/models/b:predict"

    received = upstream.wait_for_requests(2)
    assert [(r.method, r.path, r.body) for r in received] == [
        ("POST", "/v1/models/a:predict", SMUGGLED),
        ("POST", "/v1/models/b:predict", b"{}"),
    ]
    assert upstream.parse_errors == []
    events = logged_events(kafka_bootstrap, topic, 4)
    assert _requests_logged(events) == [
        ("POST", "/v1/models/a:predict"),
        ("POST", "/v1/models/b:predict"),
    ]


def test_a_chunked_body_named_in_connection_stays_chunked_and_whole(
    recording_upstreams: Upstreams, sidecar: Sidecar
) -> None:
    upstream = recording_upstreams(json_answer)
    logger, _ = sidecar(upstream)
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED)
    with RawClient(logger.port) as client:
        client.send(
            request(
                "POST", "/v1/models/a:predict", "Transfer-Encoding: chunked",
                "Connection: transfer-encoding, keep-alive",
            )
            + body
        )  # fmt: skip
        answer = client.answer()
        client.send(request("GET", "/v1/models/b"))
        after = client.answer()
    assert answer.status == 200
    assert json.loads(answer.body)["body"] == SMUGGLED.decode()
    assert _paths_answered(after.body) == "/v1/models/b"
    assert [r.path for r in upstream.wait_for_requests(2)] == [
        "/v1/models/a:predict",
        "/v1/models/b",
    ]


AMBIGUOUS = {
    "content-length and chunked": (
        b"POST /v1/models/m:predict HTTP/1.1\r\nHost: m\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    ),
    "chunked and content-length": (
        b"POST /v1/models/m:predict HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 4\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    ),
    "two differing content-lengths": (
        b"POST /v1/models/m:predict HTTP/1.1\r\nHost: m\r\nContent-Length: 2\r\n"
        b"Content-Length: 30\r\n\r\n{}"
    ),
    "two equal content-lengths": (
        b"POST /v1/models/m:predict HTTP/1.1\r\nHost: m\r\nContent-Length: 2\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    ),
    "a content-length list": (
        b"POST /v1/models/m:predict HTTP/1.1\r\nHost: m\r\nContent-Length: 2, 2\r\n\r\n{}"
    ),
    "a signed content-length": (
        b"POST /v1/models/m:predict HTTP/1.1\r\nHost: m\r\nContent-Length: +2\r\n\r\n{}"
    ),
    "chunked twice": (
        b"POST /v1/models/m:predict HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    ),
    "chunked not last": (
        b"POST /v1/models/m:predict HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked, gzip\r\n"
        b"\r\n2\r\n{}\r\n0\r\n\r\n"
    ),
    "chunked in HTTP/1.0": (
        b"POST /v1/models/m:predict HTTP/1.0\r\nHost: m\r\nTransfer-Encoding: chunked\r\n"
        b"\r\n2\r\n{}\r\n0\r\n\r\n"
    ),
    "a folded header": (
        b"POST /v1/models/m:predict HTTP/1.1\r\nHost: m\r\nX-A: 1\r\n Content-Length: 2\r\n\r\n{}"
    ),
    "a space before the colon": (
        b"POST /v1/models/m:predict HTTP/1.1\r\nHost: m\r\nContent-Length : 2\r\n\r\n{}"
    ),
    "bare line feeds": b"POST /v1/models/m:predict HTTP/1.1\nHost: m\nContent-Length: 2\n\n{}",
}


@pytest.mark.parametrize("raw", AMBIGUOUS.values(), ids=AMBIGUOUS.keys())
def test_ambiguous_framing_is_a_400_before_any_byte_goes_upstream(
    recording_upstreams: Upstreams, sidecar: Sidecar, raw: bytes
) -> None:
    upstream = recording_upstreams(json_answer)
    logger, _ = sidecar(upstream)
    with RawClient(logger.port) as client:
        client.send(raw)
        answer = client.answer()
        assert client.wait_closed()
    assert answer.status == 400
    assert answer.header("connection") == b"close"
    with RawClient(logger.port) as after:  # the proxy itself is unharmed
        after.send(request("GET", "/v1/models/m"))
        assert after.answer().status == 200
    assert [r.path for r in upstream.wait_for_requests(1)] == ["/v1/models/m"]
    assert upstream.received().startswith(b"GET /v1/models/m HTTP/1.1\r\n")
    metrics = logger.metrics()
    assert metrics['infermon_proxy_refused_total{reason="malformed"}'] == 1


@pytest.mark.parametrize("coding", [b"gzip, chunked", b"deflate,chunked"])
def test_a_transfer_coding_other_than_chunked_is_refused_501_before_forwarding(
    recording_upstreams: Upstreams, sidecar: Sidecar, coding: bytes
) -> None:
    upstream = recording_upstreams(json_answer)
    logger, _ = sidecar(upstream)
    with RawClient(logger.port) as client:
        client.send(
            b"POST /v1/models/m:predict HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: %s\r\n\r\n"
            b"2\r\n{}\r\n0\r\n\r\n" % coding
        )
        assert client.answer().status == 501
        assert client.wait_closed()
    assert upstream.connection_count == 0
    assert logger.metrics()['infermon_proxy_refused_total{reason="transfer_coding"}'] == 1


def _close_on_predict(received: ReceivedRequest) -> bytes:
    return Reply.CLOSE if received.path.endswith(":predict") else json_answer(received)


def test_a_post_the_model_server_drops_unanswered_is_not_sent_again(
    recording_upstreams: Upstreams, sidecar: Sidecar, kafka_bootstrap: str
) -> None:
    upstream = recording_upstreams(_close_on_predict)
    logger, topic = sidecar(upstream)
    with RawClient(logger.port) as client:
        client.send(request("GET", "/v1/models/m"))  # leaves a kept-alive upstream connection
        assert client.answer().status == 200
        client.send(request("POST", "/v1/models/m:predict", body=b'{"instances": [[1]]}'))
        answer = client.answer()
    assert answer.status == 502
    assert "closed the connection" in json.loads(answer.body)["error"]
    events = logged_events(kafka_bootstrap, topic, 4)
    assert sorted(e.ext("statuscode") for e in events if e.ext("statuscode")) == ["200", "502"]
    assert [r.method for r in upstream.requests] == ["GET", "POST"]  # the model ran it once


def test_a_post_on_a_fresh_connection_dropped_unanswered_is_not_sent_again(
    recording_upstreams: Upstreams, sidecar: Sidecar
) -> None:
    upstream = recording_upstreams(_close_on_predict)
    logger, _ = sidecar(upstream)
    with RawClient(logger.port) as client:
        client.send(request("POST", "/v1/models/m:predict", body=b"{}"))
        assert client.answer().status == 502
    assert [r.method for r in upstream.requests] == ["POST"]


ODD_ANSWERS = {
    "101 switching protocols": (
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
    ),
    "102 processing": (
        b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    ),
    "204 with a content-length": b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello",
    "204 chunked": (
        b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    ),
    "304 chunked": (
        b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    ),
    "gzip coding": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello",
    "gzip then chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    ),
    "length and chunked": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
    ),
}


@pytest.mark.parametrize("odd", ODD_ANSWERS.values(), ids=ODD_ANSWERS.keys())
def test_an_odd_answer_is_a_502_for_its_call_and_the_next_call_works(
    recording_upstreams: Upstreams,
    sidecar: Sidecar,
    kafka_bootstrap: str,
    odd: bytes,
) -> None:
    def script(received: ReceivedRequest) -> bytes:
        return odd if received.path == "/odd" else json_answer(received)

    upstream = recording_upstreams(script)
    logger, topic = sidecar(upstream)
    with RawClient(logger.port) as client:
        client.send(request("GET", "/warm"))  # the odd answer comes on a reused connection
        assert client.answer().status == 200
        client.send(request("POST", "/odd", body=b"{}"))
        odd_answer = client.answer()
        client.send(request("POST", "/v1/models/m:predict", body=b"{}"))
        next_answer = client.answer()
    assert odd_answer.status == 502
    assert "model server" in json.loads(odd_answer.body)["error"]
    assert next_answer.status == 200
    assert _paths_answered(next_answer.body) == "/v1/models/m:predict"
    events = logged_events(kafka_bootstrap, topic, 6)
    statuses = {e.ext("path"): e.ext("statuscode") for e in events if e.ext("statuscode")}
    assert statuses == {"/warm": "200", "/odd": "502", "/v1/models/m:predict": "200"}


BODY_AFTER_A_BODILESS_ANSWER = {
    "204": (
        b"POST",
        b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nstolen",
    ),
    "304": (b"GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nhello"),
    "HEAD": (b"HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
}


@pytest.mark.parametrize(
    ("method", "answer"), BODY_AFTER_A_BODILESS_ANSWER.values(), ids=BODY_AFTER_A_BODILESS_ANSWER
)
def test_bytes_after_a_bodiless_answer_never_reach_the_next_call(
    recording_upstreams: Upstreams,
    sidecar: Sidecar,
    method: bytes,
    answer: bytes,
) -> None:
    def script(received: ReceivedRequest) -> bytes:
        return answer if received.path == "/bodiless" else json_answer(received)

    upstream = recording_upstreams(script)
    logger, _ = sidecar(upstream)
    with RawClient(logger.port) as client:
        client.send(request(method.decode(), "/bodiless"))
        first = client.head_answer() if method == b"HEAD" else client.answer()
        for index in range(3):
            client.send(request("POST", f"/v1/models/m{index}:predict", body=b"{}"))
            following = client.answer()
            assert following.status == 200
            assert _paths_answered(following.body) == f"/v1/models/m{index}:predict"
    assert first.status == int(answer.split(b" ")[1])
    assert first.body == b""


@pytest.mark.parametrize(
    "upgrade",
    [
        request("GET", "/ws", "Connection: Upgrade", "Upgrade: websocket"),
        request("POST", "/v1/models/m:predict", "Connection: upgrade", "Upgrade: h2c", body=b"{}"),
        b"CONNECT model:443 HTTP/1.1\r\nHost: model:443\r\n\r\n",
    ],
    ids=["websocket", "h2c with a body", "connect"],
)
def test_an_upgrade_is_refused_501_before_any_byte_goes_upstream(
    recording_upstreams: Upstreams, sidecar: Sidecar, upgrade: bytes
) -> None:
    upstream = recording_upstreams(json_answer)
    logger, _ = sidecar(upstream)
    with RawClient(logger.port) as client:
        client.send(upgrade)
        assert client.answer().status == 501
        assert client.wait_closed()
    assert upstream.connection_count == 0
    assert upstream.received() == b""
    assert logger.metrics()['infermon_proxy_refused_total{reason="upgrade"}'] == 1


def test_an_upgrade_pipelined_behind_a_call_is_refused_after_that_calls_answer(
    recording_upstreams: Upstreams, sidecar: Sidecar
) -> None:
    upstream = recording_upstreams(json_answer)
    logger, _ = sidecar(upstream)
    with RawClient(logger.port) as client:
        client.send(
            request("POST", "/v1/models/m:predict", body=b"{}")
            + request("GET", "/ws", "Connection: Upgrade", "Upgrade: websocket")
        )
        answers = client.answers(2)
        assert client.wait_closed()
    assert [a.status for a in answers] == [200, 501]
    assert [r.path for r in upstream.requests] == ["/v1/models/m:predict"]


def test_a_malformed_chunk_cuts_the_call_short_upstream_and_is_logged(
    recording_upstreams: Upstreams, sidecar: Sidecar, kafka_bootstrap: str
) -> None:
    upstream = recording_upstreams(json_answer)
    logger, topic = sidecar(upstream)
    with RawClient(logger.port) as client:
        client.send(request("POST", "/v1/models/m:predict", "Transfer-Encoding: chunked"))
        client.send(b"2\r\n{}\r\n")
        assert _wait_for_bytes(upstream, b"2\r\n{}\r\n")  # the call was on its way
        client.send(b"zz\r\n")
        answer = client.answer()
        assert client.wait_closed()
    assert answer.status == 400
    assert upstream.requests == []  # the body never ended upstream: the model never ran it
    assert _wait_until(lambda: upstream.pinned_connections == 0)
    events = logged_events(kafka_bootstrap, topic, 2)
    assert {e.ext("statuscode") for e in events} == {None, "400"}


def _wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _wait_for_bytes(upstream: RecordingUpstream, expected: bytes) -> bool:
    return _wait_until(lambda: expected in upstream.received())


def test_a_pooled_connection_idle_past_its_reuse_time_is_not_reused(
    recording_upstreams: Upstreams, sidecar: Sidecar
) -> None:
    # A server closing an idle connection just as a request is written on it would leave that
    # request unanswered, and it cannot be sent again: so old connections are retired first.
    upstream = recording_upstreams()
    logger, _ = sidecar(upstream, "--upstream-idle-reuse-s", "0.3")
    with RawClient(logger.port) as client:
        for _ in range(2):
            client.send(request("GET", "/v1/models/m"))
            assert client.answer().status == 200
        time.sleep(0.6)  # the idle time itself is what is under test
        client.send(request("GET", "/v1/models/m"))
        assert client.answer().status == 200
    assert [r.connection for r in upstream.requests] == [0, 0, 1]
