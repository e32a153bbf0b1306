"""The emulator's state file: loaded once at start, written atomically a moment after changes.

A change marks the state dirty; one save follows within `SAVE_DELAY_SECONDS`, however many
changes came meanwhile, and a last one at shutdown. The snapshot is taken and encoded on the
event loop (it holds no transactions, so it stays small whatever the ledgers hold); the write
(temporary file, fsync, `os.replace`, fsync of the directory) runs on a worker thread. A crash
loses at most the changes of the last `SAVE_DELAY_SECONDS`, never the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import anyio.to_thread
import msgspec

from plaid_bridge.emulator.items import generator_fingerprint
from plaid_bridge.emulator.state import EmulatorState

logger = logging.getLogger("plaid_bridge.emulator.persistence")

FORMAT = "plaid-bridge-emulator-state"
VERSION = 1
SAVE_DELAY_SECONDS = 0.5


class StateFileError(Exception):
    """A state file that cannot be loaded; the message names the file and the way out."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(
            f"emulator state {path} cannot be loaded ({problem}); start with --fresh to discard "
            "it, or move it away"
        )


def load(state: EmulatorState, path: Path) -> bool:
    """Restore `state` from `path` if the file exists; returns whether it did.

    Raises StateFileError for a file that is not a state file, another format version, one
    written by code that generates other data, or one whose contents do not replay.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return False
    except OSError as error:
        raise StateFileError(path, error.strerror or str(error)) from None
    try:
        data = json.loads(raw)
    except ValueError as error:
        raise StateFileError(path, f"not JSON: {error}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise StateFileError(path, "not an emulator state file")
    if data.get("version") != VERSION:
        raise StateFileError(
            path, f"format version {data.get('version')!r}, this emulator reads {VERSION}"
        )
    if data.get("generator") != generator_fingerprint():
        raise StateFileError(path, "written by an emulator that generates other data")
    try:
        state.restore(data["state"])
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise StateFileError(path, f"damaged: {type(error).__name__}: {error}") from None
    return True


def encode(state: EmulatorState) -> bytes:
    """The state file's bytes for the state as it is now."""
    document: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "generator": generator_fingerprint(),
        "state": state.snapshot(),
    }
    return msgspec.json.encode(document)


def write_atomically(path: Path, blob: bytes) -> None:
    """Replace `path` with `blob` so that a reader sees the old file or the new one, whole.

    The file is private to its owner (it holds the emulator's webhook signing keys).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(blob)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class StateSaver:
    """Saves one state to one file, a moment after it changes and at shutdown."""

    def __init__(
        self, state: EmulatorState, path: Path, *, delay: float = SAVE_DELAY_SECONDS
    ) -> None:
        self.state = state
        self.path = path
        self._delay = delay
        self._dirty = False
        self._task: asyncio.Task[None] | None = None
        self._now = asyncio.Event()
        state.on_change = self.changed

    def changed(self) -> None:
        """Note a change (on the event loop); a save follows within the delay."""
        self._dirty = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._save_soon())

    async def _save_soon(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._now.wait(), self._delay)
        await self._save()

    async def _save(self) -> None:
        while self._dirty:
            self._dirty = False
            blob = encode(self.state)
            try:
                await anyio.to_thread.run_sync(write_atomically, self.path, blob)
            except OSError as error:
                # The next change or the shutdown tries again; the server keeps answering.
                self._dirty = True
                logger.error(
                    "emulator.state.save_failed",
                    extra={"path": str(self.path), "error": str(error)},
                )
                return

    async def flush(self) -> None:
        """Save now if anything changed, after a save already under way (shutdown)."""
        if self._task is not None and not self._task.done():
            self._now.set()
            await self._task
        self._now.clear()
        await self._save()
