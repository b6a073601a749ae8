"""The trigger's model client on the connection pool it shares with the sidecar: reuse, the
idle limit, and which broken calls are sent again, against a scripted HTTP server."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import uvloop

from trigger.model_client import ModelAnswer, ModelClient, ModelUnreachableError

BODY = b'{"instances": [[1, 2]]}'
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

# What the server does with the n-th request it reads (counted from 0 over all connections).
Script = Callable[[int, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class ScriptedServer:
    script: Script
    connections: int = 0
    requests: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                await reader.readexactly(len(BODY))
                number, self.requests = self.requests, self.requests + 1
                await self.script(number, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def answer_ok(_: int, writer: asyncio.StreamWriter) -> None:
    writer.write(OK)


def calls(
    script: Script, count: int, pause_s: float = 0.0, idle_reuse_s: float = 4.0
) -> tuple[ScriptedServer, list[ModelAnswer | Exception]]:
    """`count` calls one after another, `pause_s` apart, to a server following `script`."""

    async def run() -> tuple[ScriptedServer, list[ModelAnswer | Exception]]:
        server = ScriptedServer(script)
        listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        client = ModelClient(f"http://127.0.0.1:{port}", timeout_s=5, idle_reuse_s=idle_reuse_s)
        results: list[ModelAnswer | Exception] = []
        for _ in range(count):
            try:
                results.append(await client.post("/p", BODY, "application/json", "id"))
            except ModelUnreachableError as error:
                results.append(error)
            await asyncio.sleep(pause_s)
        client.close()
        for writer in server.writers:
            writer.close()
        listener.close()
        await listener.wait_closed()
        return server, results

    return uvloop.run(run())


def test_calls_share_one_kept_alive_connection() -> None:
    server, results = calls(answer_ok, 5)
    assert [r.status for r in results if isinstance(r, ModelAnswer)] == [200] * 5
    assert server.connections == 1


def test_a_connection_idle_past_its_reuse_time_is_not_reused() -> None:
    server, results = calls(answer_ok, 2, pause_s=0.3, idle_reuse_s=0.1)
    assert all(isinstance(r, ModelAnswer) for r in results)
    assert server.connections == 2


def test_a_request_the_idle_connection_dropped_unanswered_goes_once_more() -> None:
    async def drop_the_second(number: int, writer: asyncio.StreamWriter) -> None:
        if number == 1:
            writer.close()  # as a server closing an idle connection just as the request came
        else:
            writer.write(OK)

    server, results = calls(drop_the_second, 2)
    assert all(isinstance(r, ModelAnswer) for r in results), results
    assert (server.requests, server.connections) == (3, 2)


def test_a_call_answered_in_part_is_not_sent_again() -> None:
    async def cut_the_second(number: int, writer: asyncio.StreamWriter) -> None:
        if number == 1:
            writer.write(OK[:20])
            await writer.drain()
            writer.close()
        else:
            writer.write(OK)

    server, results = calls(cut_the_second, 2)
    assert isinstance(results[1], ModelUnreachableError)
    assert "closed the connection" in str(results[1])
    assert server.requests == 2


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", "answered 101"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "invalid response"),
    ],
    ids=["101", "malformed"],
)
def test_an_answer_that_is_not_one_fails_the_call(answer: bytes, reason: str) -> None:
    async def say(_: int, writer: asyncio.StreamWriter) -> None:
        writer.write(answer)

    _, (result,) = calls(say, 1)
    assert isinstance(result, ModelUnreachableError)
    assert reason in str(result)


def test_an_informational_answer_is_skipped() -> None:
    async def continue_first(_: int, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)

    _, (result,) = calls(continue_first, 1)
    assert isinstance(result, ModelAnswer)
    assert (result.status, result.content_type, result.body) == (200, "application/json", b"{}")
