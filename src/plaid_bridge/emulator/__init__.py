"""The offline Plaid: an HTTP server that `plaid-python` accepts as Plaid, with deterministic data.

`create_app(config)` builds the ASGI app; `EmulatorServer` runs it on a background thread
(tests, `plaid-bridge dev`); `serve` runs it in the foreground (`plaid-bridge emulator`).
"""

from plaid_bridge.emulator.app import create_app
from plaid_bridge.emulator.config import EmulatorConfig
from plaid_bridge.emulator.server import EmulatorServer, serve

__all__ = ["EmulatorConfig", "EmulatorServer", "create_app", "serve"]
