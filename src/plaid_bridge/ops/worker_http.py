"""What a standalone worker serves over HTTP when given a port (`plaid-bridge worker --port N`):
its Prometheus metrics, which no API process can report (webhooks applied, sync runs, the Plaid
calls syncs make), and its liveness for orchestrators.

Served by uvicorn on the worker's own event loop, so `/healthz` answers only while that loop
runs; the worker keeps its own signal handling (uvicorn's is left out).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from plaid_bridge.db import Database
from plaid_bridge.ops.metrics import Metrics

__all__ = ["bind", "serve_until", "worker_app"]


def worker_app(
    metrics: Metrics, database: Database, *, alive: Callable[[], str | None]
) -> Starlette:
    """`/healthz` (200 while `alive()` returns None, else 503 with its reason) and `/metrics`."""

    async def healthz(_request: Request) -> Response:
        problem = alive()
        if problem is None:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "stale", "reason": problem}, status_code=503)

    async def render(_request: Request) -> Response:
        await metrics.refresh_from_database(database)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[Route("/healthz", healthz), Route("/metrics", render)],
    )


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound now so that a taken port stops the worker before it starts
    (OSError)."""
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError:
        listener.close()
        raise
    return listener


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the worker's own decide when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_until(app: Starlette, listener: socket.socket, stop: asyncio.Event) -> None:
    """Serve `app` on `listener` until `stop` is set, then close it."""
    server = _Server(uvicorn.Config(app, access_log=False, log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        await stop.wait()
    finally:
        server.should_exit = True
        await task
        listener.close()
