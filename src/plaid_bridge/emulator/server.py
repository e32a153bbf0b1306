"""Running the emulator: in a background thread (tests, `plaid-bridge dev`) or in the foreground."""

from __future__ import annotations

import contextlib
import logging
from types import TracebackType

import uvicorn

from plaid_bridge.emulator.app import create_app
from plaid_bridge.emulator.config import EmulatorConfig
from plaid_bridge.serving import BackgroundServer


class EmulatorServer:
    """The emulator served by uvicorn on a background thread.

    `port=0` picks a free port; `url` is known at once. `start()` returns only after the server
    accepts connections. Use as a context manager to stop it reliably. Logging is left as the
    host process configured it, and the access log is off.
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
        self.app = create_app(self.config)
        self._server = BackgroundServer(host, port, access_log=access_log)

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> EmulatorServer:
        """Start serving; returns once connections are accepted (RuntimeError if not)."""
        self._server.serve(self.app, name="plaid-emulator")
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread to end; safe to call more than once."""
        self._server.stop()

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
