"""The `plaid-bridge` command: serve, dev, emulator, reset, db, dev-token, rotate-keys,
import-legacy."""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import uvicorn

from plaid_bridge.config import ConfigError, Settings, load_settings
from plaid_bridge.db import Database
from plaid_bridge.logs import configure_logging

APP_FACTORY = "plaid_bridge.app:create_app_from_env"
T = TypeVar("T")


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as error:
        print("plaid-bridge cannot start; the configuration has problems:", file=sys.stderr)
        for problem in error.problems:
            print(f"  - {problem}", file=sys.stderr)
        raise SystemExit(2) from None


def _on_database(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """Run `work` on the configured database, disposed of afterwards whatever happens."""

    async def run() -> T:
        database = Database.from_url(settings.database_url)
        try:
            return await work(database)
        finally:
            await database.dispose()

    return asyncio.run(run())


EMULATOR_STATE_FILE = "emulator-state.json"


def _port_taken(command: str, host: str, port: int, what: str, option: str) -> bool:
    """Print one line and return True when `port` cannot be listened on (no traceback)."""
    probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((host, port))
    except OSError as error:
        reason = "is in use" if error.errno == errno.EADDRINUSE else f"cannot be used ({error})"
        print(
            f"plaid-bridge {command}: port {port} on {host} ({what}) {reason}; stop what uses it "
            f"or choose another with {option} N",
            file=sys.stderr,
        )
        return True
    finally:
        probe.close()
    return False


def _emulator_state_path(settings: Settings, option: str | None) -> Path | None:
    """`--state`: a path, `none` for memory only, or by default the file under the var dir."""
    if option is None:
        return settings.var_dir / EMULATOR_STATE_FILE
    return None if option.lower() == "none" else Path(option)


def _empty_dev_state(settings: Settings, command: str) -> bool:
    """Remove the SQLite database and the emulator's state file (both come back empty).

    Refused (False, with one line) for a database that is not a SQLite file: emptying a server
    database is not something a development command should do.
    """
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite":
        print(
            f"plaid-bridge {command}: --fresh empties only a SQLite database; DATABASE_URL points "
            f"at {url.get_backend_name()}, empty it yourself",
            file=sys.stderr,
        )
        return False
    database = url.database
    files = [settings.var_dir / EMULATOR_STATE_FILE]
    if database and database != ":memory:":
        files += [Path(database + suffix) for suffix in ("", "-wal", "-shm", "-journal")]
    for path in files:
        path.unlink(missing_ok=True)
    return True


def _reset(_args: argparse.Namespace) -> int:
    settings = _settings()
    if not _empty_dev_state(settings, "reset"):
        return 2
    print("development database and emulator state removed; the next start begins empty")
    return 0


def _serve(args: argparse.Namespace) -> int:
    # --workers is checked with the rest (memory:// limits cannot span several processes).
    workers = {} if args.workers is None else {"web_concurrency": args.workers}
    settings = _settings(**workers)
    if _port_taken("serve", args.host, args.port, "the API", "--port"):
        return 2
    configure_logging(settings.log_level, settings.log_format)
    # uvicorn stops gracefully on SIGTERM, then raises it again with the handler it found: this
    # one makes that a clean exit (0), as the worker's, instead of a death by signal.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=args.host,
        port=args.port,
        workers=settings.web_concurrency,
        proxy_headers=False,  # the app applies FORWARDED_ALLOW_IPS itself (create_app)
        # Half the grace for open requests; the embedded worker stops within the other half.
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_seconds / 2)),
        access_log=False,
        log_config=None,
    )
    return 0


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def _db_upgrade(_args: argparse.Namespace) -> int:
    from plaid_bridge.ops import migrate

    settings = _settings()
    migrate.upgrade(settings.database_url)
    print(f"database at revision {migrate.head_revision()}")
    return 0


def _emulator(args: argparse.Namespace) -> int:
    from plaid_bridge.emulator import EmulatorConfig, serve
    from plaid_bridge.emulator.persistence import StateFileError

    settings = _settings()
    if _port_taken("emulator", args.host, args.port, "the Plaid emulator", "--port"):
        return 2
    configure_logging(settings.log_level, settings.log_format)
    config = EmulatorConfig(
        seed=args.seed if args.seed is not None else settings.emulator_seed,
        transactions=(
            args.transactions if args.transactions is not None else settings.emulator_transactions
        ),
        client_id=settings.emulator_client_id,
        secret=settings.emulator_secret.get_secret_value(),
        state_path=_emulator_state_path(settings, args.state),
    )
    try:
        serve(config, host=args.host, port=args.port)
    except StateFileError as error:
        print(f"plaid-bridge emulator: {error}", file=sys.stderr)
        return 2
    return 0


def _dev_environment(args: argparse.Namespace) -> None:
    """What `dev` decides for the API it starts (which reads the environment): console logs
    unless LOG_FORMAT says otherwise, the emulator's port, webhooks to the API's own port."""
    if args.emulator_port is not None:
        os.environ["PLAID_API_HOST"] = f"http://127.0.0.1:{args.emulator_port}"
    defaults = {
        "LOG_FORMAT": "console",
        "PLAID_WEBHOOK_URL": f"http://{args.host}:{args.port}/api/v1/plaid/webhook",
    }
    settings = _settings()
    for name, value in defaults.items():
        if name.lower() not in settings.model_fields_set:
            os.environ[name] = value


def _dev(args: argparse.Namespace) -> int:
    """Emulator and API together in the foreground; Ctrl-C stops both."""
    from plaid_bridge.emulator import EmulatorConfig, EmulatorServer
    from plaid_bridge.emulator.persistence import StateFileError
    from plaid_bridge.ops import migrate

    _dev_environment(args)
    settings = _settings()
    if settings.plaid_env != "emulator":
        print("plaid-bridge dev runs with PLAID_ENV=emulator only.", file=sys.stderr)
        return 2
    emulator_port = int(settings.plaid_host.rsplit(":", 1)[-1])
    if _port_taken("dev", args.host, args.port, "the API", "--port") or _port_taken(
        "dev", "127.0.0.1", emulator_port, "the Plaid emulator", "--emulator-port"
    ):
        return 2
    if args.fresh and not _empty_dev_state(settings, "dev"):
        return 2
    configure_logging(settings.log_level, settings.log_format)
    migrate.upgrade(settings.database_url)
    config = EmulatorConfig(
        seed=settings.emulator_seed,
        transactions=settings.emulator_transactions,
        client_id=settings.emulator_client_id,
        secret=settings.emulator_secret.get_secret_value(),
        state_path=settings.var_dir / EMULATOR_STATE_FILE,
    )
    try:
        emulator = EmulatorServer(config, host="127.0.0.1", port=emulator_port)
    except StateFileError as error:
        print(f"plaid-bridge dev: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # taken between the check and the bind
        print(
            f"plaid-bridge dev: port {emulator_port} on 127.0.0.1 (the Plaid emulator) cannot be "
            f"used ({error.strerror}); choose another with --emulator-port N",
            file=sys.stderr,
        )
        return 2
    with emulator:
        base = f"http://{args.host}:{args.port}"
        print(
            f"\nplaid-bridge (emulator mode) on {base}\n"
            f"  Plaid emulator:  {settings.plaid_host}\n"
            f"  Demo page:       {base}/demo\n"
            f"  API docs:        {base}/docs\n"
            "  Dev token:       .venv/bin/plaid-bridge dev-token --user u1 --org o1 --role OWNER\n"
            "  Stop with Ctrl-C.\n",
            flush=True,
        )
        uvicorn.run(
            APP_FACTORY,
            factory=True,
            host=args.host,
            port=args.port,
            proxy_headers=False,  # the app applies FORWARDED_ALLOW_IPS itself (create_app)
            # Half the grace for open requests; the embedded worker stops within the other half.
            timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_seconds / 2)),
            access_log=False,
            log_config=None,
        )
    return 0


def _dev_token(args: argparse.Namespace) -> int:
    from plaid_bridge.security.auth import issue_dev_token

    settings = _settings()
    try:
        token = issue_dev_token(settings, user=args.user, org=args.org, role=args.role)
    except ValueError as error:
        print(f"plaid-bridge dev-token: {error}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _rotate_keys(_args: argparse.Namespace) -> int:
    from plaid_bridge.connections.tokens import reencrypt_tokens
    from plaid_bridge.security.crypto import TokenCipher

    settings = _settings()
    cipher = TokenCipher.from_settings(settings, settings.var_dir)
    rotated = _on_database(settings, lambda database: reencrypt_tokens(database, cipher))
    print(f"re-encrypted {rotated} access token(s) with key {cipher.keyring.active_kid}")
    return 0


def _import_legacy(args: argparse.Namespace) -> int:
    """Bring the old module's connections over; the report on stdout, exit 1 if a row failed."""
    from sqlalchemy.exc import SQLAlchemyError

    from plaid_bridge.connections.legacy_import import ImportReport, Outcome, import_legacy
    from plaid_bridge.redaction import redact_text
    from plaid_bridge.services import build_services

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)

    async def run() -> ImportReport:
        services = build_services(settings)
        try:
            return await import_legacy(
                services,
                source_url=args.database_url,
                default_org=args.default_org,
                dry_run=args.dry_run,
            )
        finally:
            await services.aclose()

    try:
        report = asyncio.run(run())
    except ValueError as error:
        print(f"plaid-bridge import-legacy: {error}", file=sys.stderr)
        return 2
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()
        print(
            "plaid-bridge import-legacy: cannot read the old plaid_connections table: "
            f"{redact_text(reason[0]) if reason else type(error).__name__}",
            file=sys.stderr,
        )
        return 2
    for line in report.lines():
        print(line)
    return 1 if report.count(Outcome.FAILED) else 0


def _worker(args: argparse.Namespace) -> int:
    from plaid_bridge import worker

    settings = _settings()
    if args.port is not None and _port_taken(
        "worker", args.host, args.port, "the worker's /healthz and /metrics", "--port"
    ):
        return 2
    configure_logging(settings.log_level, settings.log_format)
    http = (args.host, args.port) if args.port is not None else None
    worker.run(settings, http=http)
    return 0


def _health_summary(_args: argparse.Namespace) -> int:
    from plaid_bridge.connections.health import summary_lines

    for line in _on_database(_settings(), summary_lines):
        print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plaid-bridge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_: str) -> Any:
        sub = commands.add_parser(name, help=help_, description=help_)
        sub.set_defaults(handler=handler)
        return sub

    serve = add("serve", _serve, "run the API (uvicorn, proxy headers from FORWARDED_ALLOW_IPS)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers", type=int, default=None, help="API processes (default: WEB_CONCURRENCY or 1)"
    )

    dev = add("dev", _dev, "run the emulator and the API together (what `make run` starts)")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument(
        "--emulator-port",
        type=int,
        default=None,
        help="the emulator's port (default: the port of PLAID_API_HOST, 8100)",
    )
    dev.add_argument(
        "--fresh",
        action="store_true",
        help="start with an empty SQLite database and an empty emulator (as `reset` leaves them)",
    )

    emulator = add("emulator", _emulator, "run the offline Plaid emulator alone")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=8100)
    emulator.add_argument("--seed", type=int, default=None)
    emulator.add_argument("--transactions", type=int, default=None)
    emulator.add_argument(
        "--state",
        default=None,
        metavar="PATH|none",
        help=f"file the emulator keeps its state in (default: VAR_DIR/{EMULATOR_STATE_FILE}); "
        "none keeps it in memory only",
    )

    add(
        "reset",
        _reset,
        "remove the development SQLite database and the emulator state (`dev --fresh` without "
        "starting)",
    )

    db = add("db", _db_upgrade, "database maintenance")
    db.add_argument("action", choices=["upgrade"], help="upgrade: apply every migration")

    token = add("dev-token", _dev_token, "print a JWT for local use (refused in production)")
    token.add_argument("--user", required=True)
    token.add_argument("--org", required=True)
    token.add_argument(
        "--role",
        default="OWNER",
        type=str.upper,  # as the service reads the claim: `admin` is ADMIN
        choices=["OWNER", "ADMIN", "MANAGER", "MEMBER", "VIEWER"],
    )

    worker = add(
        "worker", _worker, "process webhooks and syncs until SIGTERM (WORKER_MODE=external)"
    )
    worker.add_argument("--host", default="127.0.0.1", help="address of --port")
    worker.add_argument(
        "--port",
        type=int,
        default=None,
        help="serve /healthz and /metrics on this port (default: no HTTP)",
    )
    add("rotate-keys", _rotate_keys, "re-encrypt every stored access token with the active key")
    legacy = add(
        "import-legacy",
        _import_legacy,
        "import the old NestJS module's connections (idempotent; tokens re-encrypted)",
    )
    legacy.add_argument(
        "--database-url", required=True, help="the old module's database (read only)"
    )
    legacy.add_argument(
        "--default-org", default=None, help="organisation for rows that have none (else skipped)"
    )
    legacy.add_argument(
        "--dry-run", action="store_true", help="report what would happen; write nothing"
    )
    add("health-summary", _health_summary, "print the health summary of every org (JSON lines)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
