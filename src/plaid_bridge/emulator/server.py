"""Running the emulator: in a background thread (tests, `plaid-bridge dev`) or in the foreground."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from types import TracebackType

import uvicorn

from plaid_bridge.emulator.app import create_app
from plaid_bridge.emulator.config import EmulatorConfig

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


class EmulatorServer:
    """The emulator served by uvicorn on a background thread.

    `port=0` picks a free port; `url` is known once `start()` returns, which happens only after
    the server accepts connections. Use as a context manager to stop it reliably. Logging is
    left as the host process configured it, and the access log is off.
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        access_log: bool = False,
    ) -> None:
        self.config = config or EmulatorConfig()
        self.host = host
        self.app = create_app(self.config)
        self._socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._requested_port = port
        self._server = _Server(
            uvicorn.Config(
                self.app,
                log_config=None,
                access_log=access_log,
                lifespan="on",
                ws="none",
                timeout_graceful_shutdown=2,
            )
        )
        self._thread: threading.Thread | None = None
        self.port = port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> EmulatorServer:
        """Bind, start serving, and return once connections are accepted (RuntimeError if not)."""
        if self._thread is not None:
            raise RuntimeError("emulator server already started")
        self._socket.bind((self.host, self._requested_port))
        self.port = self._socket.getsockname()[1]
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name=f"plaid-emulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while not self._server.ready.wait(0.05):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._server.should_exit = True
                self._thread = None
                self._socket.close()
                raise RuntimeError(f"emulator did not start on {self.url}")
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread to end; safe to call more than once."""
        if self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(_STOP_TIMEOUT_SECONDS)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(_STOP_TIMEOUT_SECONDS)
        self._thread = None
        self._socket.close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def serve(config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 8100) -> None:
    """Run the emulator in the foreground until interrupted (`plaid-bridge emulator`).

    If the process has configured logging already, uvicorn logs through it; otherwise uvicorn
    sets up its own console logging.
    """
    uvicorn_config = uvicorn.Config(
        create_app(config or EmulatorConfig()),
        host=host,
        port=port,
        access_log=False,
        ws="none",
        log_config=None if logging.getLogger().handlers else uvicorn.config.LOGGING_CONFIG,
    )
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the normal way to stop
        uvicorn.Server(uvicorn_config).run()
