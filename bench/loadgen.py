"""An open-loop HTTP/1.1 load generator for a fixed offered rate (answers per second).

Open loop: request ``i`` is sent at ``start + i / rate`` whatever the server does, so a
slow server shows up as latency and a lower achieved rate, not as a politely lower
offered rate (the coordinated-omission trap of closed-loop tools such as ``wrk``).
Raw asyncio streams with keep-alive connections keep the client's own CPU small on a
2-core machine shared with the system under test.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    offered_rate: float
    seconds: float
    sent: int = 0
    ok: int = 0
    failed: int = 0
    # Why requests failed: "status 503", "ConnectionResetError", ... -> count.
    failures: dict[str, int] = field(default_factory=dict)
    late_starts: int = 0
    # Requests still unanswered at the step's deadline (overload): cancelled, not counted ok.
    abandoned: int = 0
    # From the first scheduled send to the last response: the achieved rate's denominator.
    elapsed: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    def fail(self, reason: str) -> None:
        self.failed += 1
        self.failures[reason] = self.failures.get(reason, 0) + 1


CLIENT_KEEPALIVE_SECONDS = 4.0


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.last_used = asyncio.get_running_loop().time()

    async def post(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return status


def _request(host: str, port: int, path: str, token: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def offer(
    targets: list[tuple[str, int]],
    token: str,
    question_ids: list[str],
    rate: float,
    seconds: float,
    max_connections: int = 64,
    grace: float = 2.0,
) -> LoadResult:
    """POST answers at ``rate``/s for ``seconds``, round-robin over ``targets`` (several
    ``qa-api`` processes); records each response's latency (send to full response).

    Requests not answered within ``grace`` x ``seconds`` of the start are abandoned, so an
    overloaded system costs a bounded time instead of draining a huge client-side queue.
    """
    loop = asyncio.get_running_loop()
    result = LoadResult(offered_rate=rate, seconds=seconds)
    idle: list[list[_Conn]] = [[] for _ in targets]
    slots = asyncio.Semaphore(max_connections)
    body = json.dumps({"body": "An answer posted at a steady rate by the benchmark."}).encode()
    requests = [
        [_request(host, port, f"/questions/{qid}/answers", token, body) for qid in question_ids]
        for host, port in targets
    ]

    async def one(target: int, request: bytes) -> None:
        async with slots:
            pool = idle[target]
            conn = pool.pop() if pool else None
            if conn is not None and loop.time() - conn.last_used > CLIENT_KEEPALIVE_SECONDS:
                # Like real clients: never reuse a connection the server may be closing
                # (uvicorn drops idle keep-alive connections after 5 s).
                conn.writer.close()
                conn = None
            if conn is None:
                try:
                    conn = _Conn(*await asyncio.open_connection(*targets[target]))
                except OSError as exc:
                    result.fail(type(exc).__name__)
                    return
            began = loop.time()
            try:
                status = await conn.post(request)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                result.fail(type(exc).__name__)
                conn.writer.close()
                return
            result.latencies_ms.append((loop.time() - began) * 1000)
            if status == 201:
                result.ok += 1
            else:
                result.fail(f"status {status}")
            conn.last_used = loop.time()
            pool.append(conn)

    total = int(rate * seconds)
    start = loop.time() + 0.05
    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.005:
            result.late_starts += 1
        target = i % len(targets)
        per_target = requests[target]
        tasks.append(asyncio.create_task(one(target, per_target[i % len(per_target)])))
        result.sent += 1
    remaining = max(0.0, start + grace * seconds - loop.time())
    _, pending = await asyncio.wait(tasks, timeout=remaining) if tasks else (set(), set())
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    result.abandoned = len(pending)
    result.elapsed = loop.time() - start
    for pool in idle:
        for conn in pool:
            conn.writer.close()
    return result
