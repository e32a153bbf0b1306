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
import anyio.abc

from plaid_bridge import wakeups
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
    `retry_max_seconds`. `wakeup` may be set (by the webhook intake) to end a wait early; on
    PostgreSQL the worker also LISTENs for the notifications of other processes (`wakeups`).
    Up to `inbox_concurrency` inbox rows (of different Items) are applied at once, and up to
    `sync_concurrency` syncs run at once (default: the `SYNC_CONCURRENCY` setting).
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
        sync_concurrency: int | None = None,
        inbox_concurrency: int = 8,
    ) -> None:
        if lease_seconds <= 0 or batch < 1 or max_attempts < 1 or inbox_concurrency < 1:
            raise ValueError(
                "lease_seconds, batch, max_attempts and inbox_concurrency must be positive"
            )
        self.services = services
        self.worker_id = worker_id
        self.batch = batch
        self.sync_concurrency = sync_concurrency or services.settings.sync_concurrency
        # SQLite has one writer: rows applied side by side would only wait for each other.
        sqlite = services.database.dialect == "sqlite"
        self.inbox_concurrency = 1 if sqlite else inbox_concurrency
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
        self._slot_freed = asyncio.Event()
        self._running_syncs = 0
        self._next_reconcile = 0.0
        self._next_housekeeping = 0.0
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
        """Two loops until `stop` is set: the inbox and the sync pool, side by side, so a long
        sync (minutes under Plaid's rate limits) never holds up webhooks. An inbox pass that
        found work is followed at once by the next; otherwise the loop waits up to
        `poll_interval` or until woken (`wakeup` by the webhook intake or a notification). The
        sync pool starts the next due sync as soon as one of its runs finishes. On stop, the
        rows in progress are finished and the rest of the batch is released; running syncs are
        interrupted at once and their requests handed back to any worker."""
        self._stop = stop
        logger.info("worker.started", extra={"worker_id": self.worker_id})
        try:
            async with anyio.create_task_group() as group:
                if self.services.database.dialect == "postgresql":
                    events = {wakeups.INBOX: self.wakeup, wakeups.SYNC: self._sync_wakeup}
                    group.start_soon(wakeups.listen, self.services.database.engine.url, events)
                await asyncio.gather(
                    self._loop(stop, self._inbox_pass, self.wakeup, "inbox"),
                    self._sync_pool(stop),
                    self._interrupt_syncs_on(stop),
                )
                group.cancel_scope.cancel()
        finally:
            self._stop = None
            await self._forget_heartbeat()
            logger.info("worker.stopped", extra={"worker_id": self.worker_id})

    async def _sync_pool(self, stop: asyncio.Event) -> None:
        """Keep up to `sync_concurrency` syncs running until `stop`, which cancels them (a sync
        may run for minutes under Plaid's rate limits, and another worker can take it over at
        once: nothing of an interrupted update is stored, so it starts again from the stored
        cursor, and its request is handed back)."""
        with anyio.CancelScope() as scope:
            self._sync_pass = scope
            if self._stopping():
                scope.cancel()
            try:
                async with anyio.create_task_group() as runs:
                    while not stop.is_set():
                        self._sync_wakeup.clear()  # before the claim: a wakeup during it counts
                        self._slot_freed.clear()
                        await self._fill_pool(runs)
                        await self._pause(stop, self._sync_wakeup, self._slot_freed)
                    runs.cancel_scope.cancel()
            finally:
                self._sync_pass = None

    async def _fill_pool(self, runs: anyio.abc.TaskGroup) -> None:
        try:
            await self._start_syncs(runs)
        except Exception as error:  # a database outage must not end the loop
            logger.error("worker.pass_failed", extra={"loop": "sync"}, exc_info=error)

    async def _start_syncs(self, runs: anyio.abc.TaskGroup) -> int:
        """Removals and the reconciler (at most every `poll_interval`), then as many due syncs
        as there are free places in the pool, each started at once. Returns how many."""
        if time.monotonic() >= self._next_housekeeping:
            await self._housekeeping()
            self._next_housekeeping = time.monotonic() + self.poll_interval
        free = self.sync_concurrency - self._running_syncs
        if free <= 0:
            return 0
        claims = await sync_queue.claim_due(self.services, self.worker_id, free)
        for claim in claims:
            self._running_syncs += 1
            runs.start_soon(self._run_sync, claim)
        return len(claims)

    async def _run_sync(self, claim: sync_queue.Claim) -> None:
        try:
            await sync_queue.run_claimed(self.services, self.worker_id, claim)
        finally:
            self._running_syncs -= 1
            self._slot_freed.set()

    async def _housekeeping(self) -> int:
        """Due removals at Plaid, and every `reconcile_interval` seconds a sync for connections
        gone stale (missed-webhook recovery). Returns the number of removals tried."""
        removals = await removal.process_due(self.services, limit=self.batch)
        if time.monotonic() >= self._next_reconcile:
            await sync_queue.enqueue_stale(self.services)
            self._next_reconcile = time.monotonic() + self.reconcile_interval
        return removals

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

    async def _pause(self, stop: asyncio.Event, *wakeups: asyncio.Event) -> None:
        waits = {asyncio.ensure_future(event.wait()) for event in (stop, *wakeups)}
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
        """Claim up to `batch` due rows and apply them, up to `inbox_concurrency` at once. A
        claim holds at most one row per Item (`Inbox.claim`), so rows applied side by side are
        of different Items and each Item's rows still go in id order. On stop, the rows in
        progress are finished and those not yet begun are released for any worker at once."""
        claimed = await self._claim()
        begun = 0

        async def lane() -> None:
            nonlocal begun
            while begun < len(claimed) and not self._stopping():
                begun += 1
                await self._process(claimed[begun - 1])

        async with anyio.create_task_group() as group:
            for _ in range(min(self.inbox_concurrency, len(claimed))):
                group.start_soon(lane)
        if begun < len(claimed):
            await self.inbox.release(claimed[begun:])
        return begun

    async def _claim(self) -> list[int]:
        return await self.inbox.claim()

    async def _process(self, event_id: int) -> None:
        await self.inbox.process(event_id)

    # ---- the sync queue -------------------------------------------------------------------

    async def run_sync_queue(self) -> int:
        """One pass over the sync queue: due removals at Plaid, the reconciler when due, and one
        batch of up to `sync_concurrency` due syncs, all run to the end. Returns the number of
        removals and syncs tried. (`run_forever` keeps a steady pool instead.)"""
        removals = await self._housekeeping()
        syncs = await sync_queue.process_due(
            self.services, worker_id=self.worker_id, limit=self.sync_concurrency
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
