"""A lean HTTP/1.1 load generator on raw sockets, to run in its own process: requests are
pre-built bytes, answers are read just far enough to know their status, so the generator costs
far less CPU per request than the server it measures.

`closed_loop`: N keep-alive connections, each sending its next request when the answer to the
last arrived. `open_loop`: requests due at a fixed rate whatever the answers do, each on an idle
connection or a new one; latency counts from when a request was due, so a server falling behind
cannot hide it. Standard library only (and uvloop when present), so a spawned process starts fast.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

TIMED_OUT = 0
"""The status recorded for a request without an answer within the open loop's timeout."""


@dataclass
class Outcome:
    """Per request sent: its index in the given list, status and latency (seconds)."""

    indices: list[int] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        start = head.find(b"content-length:")
        length = 0
        if start >= 0:
            stop = head.find(b"\r\n", start)
            length = int(head[start + 15 : stop if stop >= 0 else len(head)])
        total = end + 4 + length
        if len(self.buffer) < total:
            return
        status = int(self.buffer[9:12])
        del self.buffer[:total]
        waiter.set_result(status)

    def connection_lost(self, _exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))

    async def send(self, request: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def _connect(host: str, port: int) -> _Connection:
    _, connection = await asyncio.get_running_loop().create_connection(_Connection, host, port)
    return connection


async def _closed_loop(
    host: str, port: int, requests: list[bytes], connections: int, seconds: float
) -> Outcome:
    outcome = Outcome()
    pool = [await _connect(host, port) for _ in range(connections)]
    queue = iter(enumerate(requests))
    started = time.perf_counter()
    deadline = started + seconds

    async def client(connection: _Connection) -> None:
        for index, request in queue:
            sent = time.perf_counter()
            status = await connection.send(request)
            now = time.perf_counter()
            outcome.indices.append(index)
            outcome.statuses.append(status)
            outcome.latencies.append(now - sent)
            if now >= deadline:
                return

    await asyncio.gather(*(client(connection) for connection in pool))
    outcome.elapsed = time.perf_counter() - started
    for connection in pool:
        connection.close()
    return outcome


async def _open_loop(
    host: str, port: int, requests: list[bytes], rate: float, seconds: float, patience: float
) -> Outcome:
    outcome = Outcome()
    idle: list[_Connection] = [await _connect(host, port) for _ in range(50)]
    opened = list(idle)
    total = min(len(requests), int(rate * seconds))
    tasks: list[asyncio.Task[None]] = []

    async def one(index: int, due: float) -> None:
        connection = idle.pop() if idle else None
        try:
            if connection is None:
                connection = await _connect(host, port)
                opened.append(connection)
            status = await asyncio.wait_for(connection.send(requests[index]), patience)
        except (TimeoutError, ConnectionError, OSError):
            status = TIMED_OUT
            if connection is not None:
                connection.close()
        else:
            idle.append(connection)
        outcome.indices.append(index)
        outcome.statuses.append(status)
        outcome.latencies.append(time.perf_counter() - due)

    started = time.perf_counter()
    sent = 0
    while sent < total:
        now = time.perf_counter()
        while sent < total and started + sent / rate <= now:
            tasks.append(asyncio.create_task(one(sent, started + sent / rate)))
            sent += 1
        await asyncio.sleep(max(0.0, started + sent / rate - time.perf_counter()))
    await asyncio.gather(*tasks)
    outcome.elapsed = time.perf_counter() - started
    for connection in opened:
        connection.close()
    return outcome


def _run(coroutine: object) -> Outcome:
    try:
        import uvloop

        return uvloop.run(coroutine)  # type: ignore[arg-type]
    except ImportError:
        return asyncio.run(coroutine)  # type: ignore[arg-type]


def closed_loop(
    host: str, port: int, requests: list[bytes], connections: int, seconds: float
) -> Outcome:
    """Send `requests` over `connections` connections, closed loop, for about `seconds`."""
    return _run(_closed_loop(host, port, requests, connections, seconds))


def open_loop(
    host: str, port: int, requests: list[bytes], rate: float, seconds: float, timeout: float
) -> Outcome:
    """Send `requests` at `rate` per second for `seconds` (open loop); an answer later than
    `timeout` counts as `TIMED_OUT`."""
    return _run(_open_loop(host, port, requests, rate, seconds, timeout))
