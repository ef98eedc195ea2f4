"""The open-loop load generator against in-process HTTP stubs (no services)."""

from __future__ import annotations

import asyncio

from bench.loadgen import offer


async def _server(status: int, answer: bool) -> tuple[asyncio.Server, int, list[bytes]]:
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                seen.append(head.split(b"\r\n")[0] + b" " + await reader.readexactly(length))
                if answer:
                    writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\n{{}}".encode())
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], seen


async def test_offers_the_requested_number_of_posts_and_counts_201_as_ok() -> None:
    server, port, seen = await _server(201, answer=True)
    async with server:
        result = await offer([("127.0.0.1", port)], "tok", ["q1", "q2"], rate=40, seconds=0.5)
    assert (result.sent, result.ok, result.failed, result.abandoned) == (20, 20, 0, 0)
    assert len(result.latencies_ms) == 20
    assert seen[0].startswith(b"POST /questions/q1/answers HTTP/1.1 ")
    assert seen[1].startswith(b"POST /questions/q2/answers HTTP/1.1 ")


async def test_non_201_answers_are_failures() -> None:
    server, port, _ = await _server(503, answer=True)
    async with server:
        result = await offer([("127.0.0.1", port)], "tok", ["q"], rate=40, seconds=0.25)
    assert result.ok == 0
    assert result.failed == result.sent == 10


async def test_a_server_that_never_answers_costs_bounded_time() -> None:
    server, port, _ = await _server(201, answer=False)
    async with server:
        result = await offer([("127.0.0.1", port)], "tok", ["q"], rate=20, seconds=0.5, grace=2)
    assert result.ok == 0
    assert result.abandoned == result.sent == 10
    # Bounded, not fast: without the grace it would wait forever; the slack keeps a busy
    # machine from failing it (no timed assertions beyond a hang detector).
    assert result.elapsed < 15.0
