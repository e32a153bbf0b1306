"""An ASGI app served by uvicorn on a background thread: the emulator beside `plaid-bridge dev`,
and whatever a test needs served over real HTTP."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Self

import uvicorn
from starlette.types import ASGIApp

_START_TIMEOUT_SECONDS = 30.0
_STOP_TIMEOUT_SECONDS = 10.0


class _Server(uvicorn.Server):
    """A uvicorn server that signals the starting thread once it accepts connections."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


class BackgroundServer:
    """uvicorn on a background thread, on a socket bound at construction: `url` is known before
    the app is built (an app that must know its own address, such as its webhook URL).

    `port=0` picks a free port. `serve(app)` returns only once connections are accepted. Use as
    a context manager to stop it reliably. Logging is left as the host process configured it.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, access_log: bool = False) -> None:
        self.host = host
        self.access_log = access_log
        self._socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.port: int = self._socket.getsockname()[1]
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def serve(self, app: ASGIApp, *, name: str = "asgi") -> Self:
        """Start serving `app`; returns once connections are accepted (RuntimeError if not)."""
        if self._thread is not None:
            raise RuntimeError(f"already serving on {self.url}")
        server = self._server = _Server(
            uvicorn.Config(
                app,
                log_config=None,
                access_log=self.access_log,
                lifespan="on",
                ws="none",
                proxy_headers=False,  # an app that trusts proxies says so itself
                timeout_graceful_shutdown=2,
            )
        )
        thread = self._thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [self._socket]},
            name=f"{name}-{self.port}",
            daemon=True,
        )
        thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while not server.ready.wait(0.05):
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{name} did not start on {self.url}")
        return self

    def stop(self) -> None:
        """Stop serving, wait for the thread to end and release the socket; safe to repeat."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(_STOP_TIMEOUT_SECONDS)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(_STOP_TIMEOUT_SECONDS)
        self._server = self._thread = None
        self._socket.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
