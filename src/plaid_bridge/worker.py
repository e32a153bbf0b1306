"""The worker: two loops, one over the webhook inbox (`webhooks/inbox.py`) and one over the sync
queue (`sync/queue.py`, and the removals at Plaid still owed, `connections/removal.py`), and
`serve` for `plaid-bridge worker`.

Runs embedded in the API process (`WORKER_MODE=embedded`) or standalone; any number may run
against one database: every queue hands work out under leases. Stopping (`stop_within`) takes at
most a grace period: running syncs are interrupted and handed back at once, the webhook in
progress is finished, and whatever is still running when the grace ends is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import anyio

from plaid_bridge.config import Settings
from plaid_bridge.connections import removal
from plaid_bridge.ops import heartbeats, worker_http
from plaid_bridge.services import Services, build_services
from plaid_bridge.sync import queue as sync_queue
from plaid_bridge.webhooks.inbox import Inbox

__all__ = ["CLOSE_SECONDS", "Worker", "default_worker_id", "run", "serve", "stop_within"]

logger = logging.getLogger("plaid_bridge.worker")

CLOSE_SECONDS = 5.0
"""After the work has stopped, the most that closing connections and ending leftover tasks may
take before the process exits anyway."""


def default_worker_id(role: str = "worker") -> str:
    """A worker id unique among live processes: host, pid and role."""
    return f"{socket.gethostname()}:{os.getpid()}:{role}"


class Worker:
    """Applies inbox rows and runs due syncs; the inbox's guarantees are `webhooks.inbox`'s.

    `lease_seconds` bounds how long a crashed worker's inbox rows wait before another worker
    takes them; a row failing `max_attempts` times (or abandoned by that many crashed claims)
    becomes FAILED, retried before that with a backoff from `retry_base_seconds` doubling up to
    `retry_max_seconds`. `wakeup` may be set (by the webhook intake) to end a wait early.
    """

    def __init__(
        self,
        services: Services,
        *,
        worker_id: str,
        lease_seconds: float = 60.0,
        batch: int = 50,
        poll_interval: float = 1.0,
        max_attempts: int = 8,
        retry_base_seconds: float = 5.0,
        retry_max_seconds: float = 3600.0,
        reconcile_interval: float = 300.0,
        role: str = "worker",
    ) -> None:
        if lease_seconds <= 0 or batch < 1 or max_attempts < 1:
            raise ValueError("lease_seconds, batch and max_attempts must be positive")
        self.services = services
        self.worker_id = worker_id
        self.batch = batch
        self.poll_interval = poll_interval
        self.reconcile_interval = reconcile_interval
        self.inbox = Inbox(
            services.database,
            services.metrics,
            worker_id=worker_id,
            lease=timedelta(seconds=lease_seconds),
            batch=batch,
            max_attempts=max_attempts,
            retry_base_seconds=retry_base_seconds,
            retry_max_seconds=retry_max_seconds,
        )
        self.wakeup = asyncio.Event()
        self._sync_wakeup = asyncio.Event()
        self._stop: asyncio.Event | None = None
        self._sync_pass: anyio.CancelScope | None = None
        self._next_reconcile = 0.0
        self.lease_seconds = lease_seconds
        self.role = role
        # When the inbox loop last finished a pass (monotonic): the worker's sign of life, kept
        # in the database too (`ops/heartbeats.py`) at most every `heartbeat_interval` seconds.
        self.last_inbox_pass: float | None = None
        self.heartbeat_interval = min(lease_seconds / 4, 15.0)
        self._last_beat: float | None = None

    def stale_reason(self) -> str | None:
        """None while the inbox loop finishes passes; else why the worker is not alive. A loop
        stuck for longer than a lease has lost its claims to the other workers anyway."""
        if self.last_inbox_pass is None:
            return "the worker has not finished a pass yet"
        silent = time.monotonic() - self.last_inbox_pass
        if silent > self.lease_seconds:
            return f"the inbox loop has not finished a pass for {silent:.0f} s"
        return None

    # ---- the loop -------------------------------------------------------------------------

    async def run_once(self) -> int:
        """One pass: every due inbox row (up to `batch`), then the sync queue. Returns the number
        of inbox rows handled (applied, ignored or failed)."""
        handled = await self.process_inbox()
        await self.run_sync_queue()
        return handled

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Two loops until `stop` is set: the inbox and the sync queue, side by side, so a long
        sync (minutes under Plaid's rate limits) never holds up webhooks. A pass that found work
        is followed at once by the next; otherwise a loop waits up to `poll_interval` or until
        woken (`wakeup` by the webhook intake; the sync loop by inbox rows that were applied).
        On stop, the row in progress is finished and the rest of the batch is released; running
        syncs are interrupted at once and their requests handed back to any worker."""
        self._stop = stop
        logger.info("worker.started", extra={"worker_id": self.worker_id})
        try:
            await asyncio.gather(
                self._loop(stop, self._inbox_pass, self.wakeup, "inbox"),
                self._loop(stop, self._interruptible_sync_pass, self._sync_wakeup, "sync"),
                self._interrupt_syncs_on(stop),
            )
        finally:
            self._stop = None
            await self._forget_heartbeat()
            logger.info("worker.stopped", extra={"worker_id": self.worker_id})

    async def _interruptible_sync_pass(self) -> int:
        """One sync-loop pass that `stop` cancels: a sync may run for minutes under Plaid's rate
        limits, and another worker can take it over at once (nothing of an interrupted update is
        stored, so it starts again from the stored cursor)."""
        with anyio.CancelScope() as scope:
            self._sync_pass = scope
            if self._stopping():
                scope.cancel()
            try:
                return await self.run_sync_queue()
            finally:
                self._sync_pass = None
        return 0  # interrupted: the claimed requests were handed back

    async def _interrupt_syncs_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        if self._sync_pass is not None:
            self._sync_pass.cancel()

    async def _inbox_pass(self) -> int:
        handled = await self.process_inbox()
        self.last_inbox_pass = now = time.monotonic()
        if self._last_beat is None or now - self._last_beat >= self.heartbeat_interval:
            await heartbeats.beat(self.services.database, worker_id=self.worker_id, role=self.role)
            self._last_beat = now
        if handled:
            self._sync_wakeup.set()  # applied webhooks may have queued syncs
        return handled

    async def _forget_heartbeat(self) -> None:
        """A worker that stops says so, so that readiness does not count it until it ages."""
        if self._last_beat is None:
            return
        try:
            with anyio.CancelScope(shield=True):
                await heartbeats.forget(self.services.database, self.worker_id)
        except Exception as error:  # the row then ages out; stopping must not fail on it
            logger.warning("worker.heartbeat_not_removed", extra={"error": type(error).__name__})
        self._last_beat = None

    async def _loop(
        self,
        stop: asyncio.Event,
        one_pass: Callable[[], Awaitable[int]],
        wakeup: asyncio.Event,
        name: str,
    ) -> None:
        while not stop.is_set():
            wakeup.clear()  # before the pass: a wakeup during it is not lost
            try:
                busy = await one_pass() > 0
            except Exception as error:  # a database outage must not end the loop
                logger.error("worker.pass_failed", extra={"loop": name}, exc_info=error)
                busy = False
            if not busy:
                await self._pause(stop, wakeup)

    async def _pause(self, stop: asyncio.Event, wakeup: asyncio.Event) -> None:
        waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wakeup.wait())}
        try:
            await asyncio.wait(
                waits, timeout=self.poll_interval, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiting in waits:
                waiting.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    def _stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    # ---- the inbox ------------------------------------------------------------------------

    async def process_inbox(self) -> int:
        """Claim up to `batch` due rows and apply them one by one, in id order; on stop, the
        rows not yet begun are released for any worker at once."""
        claimed = await self._claim()
        for position, event_id in enumerate(claimed):
            if self._stopping():
                await self.inbox.release(claimed[position:])
                return position
            await self._process(event_id)
        return len(claimed)

    async def _claim(self) -> list[int]:
        return await self.inbox.claim()

    async def _process(self, event_id: int) -> None:
        await self.inbox.process(event_id)

    # ---- the sync queue -------------------------------------------------------------------

    async def run_sync_queue(self) -> int:
        """Due removals at Plaid, due syncs, and every `reconcile_interval` seconds a sync for
        connections gone stale (missed-webhook recovery). Returns the number of removals and
        syncs tried."""
        removals = await removal.process_due(self.services, limit=self.batch)
        if time.monotonic() >= self._next_reconcile:
            await sync_queue.enqueue_stale(self.services)
            self._next_reconcile = time.monotonic() + self.reconcile_interval
        syncs = await sync_queue.process_due(
            self.services, worker_id=self.worker_id, limit=self.batch
        )
        return removals + syncs


async def stop_within(task: asyncio.Task[None], stop: asyncio.Event, grace: float) -> None:
    """Stop a worker running as `task` (its `run_forever(stop)`), within `grace` seconds: set
    `stop`, wait for it, and past the grace cancel what is left (a cancelled webhook row or sync
    stores nothing; its lease runs out). Returns within about `grace` seconds in any case."""
    stop.set()
    done, _ = await asyncio.wait({task}, timeout=grace)
    if not done:
        logger.warning("worker.stop_overdue", extra={"grace_seconds": grace})
        task.cancel()
        # Cancelled work closes its sessions shielded; a database that hangs is not waited for.
        done, _ = await asyncio.wait({task}, timeout=1.0)
    if done:
        with contextlib.suppress(asyncio.CancelledError):
            task.result()


async def serve(settings: Settings, *, http: tuple[str, int] | None = None) -> None:
    """`plaid-bridge worker`: run until SIGTERM or SIGINT, then stop within
    `shutdown_grace_seconds` (`stop_within`). With `http` (host, port), also serve `/healthz`
    and `/metrics` there (`ops/worker_http.py`); a port that cannot be bound raises OSError
    before any work starts."""
    listener = worker_http.bind(*http) if http is not None else None
    services = build_services(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    worker = Worker(
        services, worker_id=default_worker_id(), lease_seconds=settings.worker_lease_seconds
    )
    task = asyncio.create_task(worker.run_forever(stop))
    stopping = asyncio.ensure_future(stop.wait())
    tasks = []
    if listener is not None:
        app = worker_http.worker_app(services.metrics, services.database, alive=worker.stale_reason)
        tasks.append(asyncio.create_task(worker_http.serve_until(app, listener, stop)))
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        await stop_within(task, stop, settings.shutdown_grace_seconds)
    finally:
        stopping.cancel()
        stop.set()
        await asyncio.gather(*tasks)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        closing = asyncio.ensure_future(services.aclose())
        done, _ = await asyncio.wait({closing}, timeout=CLOSE_SECONDS)
        if done:
            closing.result()
        else:  # left to `run`, which ends the loop anyway
            logger.warning("worker.close_overdue", extra={"close_seconds": CLOSE_SECONDS})


def run(settings: Settings, *, http: tuple[str, int] | None = None) -> None:
    """`serve` in an event loop of its own that ends within `CLOSE_SECONDS` of `serve`: tasks a
    library leaves behind are cancelled and waited for that long, no longer (`asyncio.run` would
    wait for them without end, and a process that never exits after SIGTERM gets killed)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(serve(settings, http=http))
    finally:
        try:
            _end_leftover_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            with contextlib.suppress(TimeoutError):
                closing = loop.shutdown_default_executor()
                loop.run_until_complete(asyncio.wait_for(closing, CLOSE_SECONDS))
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _end_leftover_tasks(loop: asyncio.AbstractEventLoop) -> None:
    leftovers = asyncio.all_tasks(loop)
    if not leftovers:
        return
    for leftover in leftovers:
        leftover.cancel()
    _, pending = loop.run_until_complete(asyncio.wait(leftovers, timeout=CLOSE_SECONDS))
    if pending:
        names = sorted(repr(task.get_coro()) for task in pending)
        logger.warning("worker.tasks_left_running", extra={"tasks": names})
