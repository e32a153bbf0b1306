"""The `plaid-bridge` command: serve, dev, emulator, db, dev-token, rotate-keys."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
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


def _serve(args: argparse.Namespace) -> int:
    # --workers is checked with the rest (memory:// limits cannot span several processes).
    workers = {} if args.workers is None else {"web_concurrency": args.workers}
    settings = _settings(**workers)
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=args.host,
        port=args.port,
        workers=settings.web_concurrency,
        proxy_headers=False,  # the app applies FORWARDED_ALLOW_IPS itself (create_app)
        access_log=False,
        log_config=None,
    )
    return 0


def _db_upgrade(_args: argparse.Namespace) -> int:
    from plaid_bridge.ops import migrate

    settings = _settings()
    migrate.upgrade(settings.database_url)
    print(f"database at revision {migrate.head_revision()}")
    return 0


def _emulator(args: argparse.Namespace) -> int:
    from plaid_bridge.emulator import EmulatorConfig, serve

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    config = EmulatorConfig(
        seed=args.seed if args.seed is not None else settings.emulator_seed,
        transactions=(
            args.transactions if args.transactions is not None else settings.emulator_transactions
        ),
        client_id=settings.emulator_client_id,
        secret=settings.emulator_secret.get_secret_value(),
    )
    serve(config, host=args.host, port=args.port)
    return 0


def _dev(args: argparse.Namespace) -> int:
    """Emulator and API together in the foreground; Ctrl-C stops both."""
    from plaid_bridge.emulator import EmulatorConfig, EmulatorServer
    from plaid_bridge.ops import migrate

    settings = _settings()
    if settings.plaid_env != "emulator":
        print("plaid-bridge dev runs with PLAID_ENV=emulator only.", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    migrate.upgrade(settings.database_url)
    emulator_port = int(settings.plaid_host.rsplit(":", 1)[-1])
    config = EmulatorConfig(
        seed=settings.emulator_seed,
        transactions=settings.emulator_transactions,
        client_id=settings.emulator_client_id,
        secret=settings.emulator_secret.get_secret_value(),
    )
    with EmulatorServer(config, host="127.0.0.1", port=emulator_port):
        base = f"http://{args.host}:{args.port}"
        print(
            f"\nplaid-bridge (emulator mode) on {base}\n"
            f"  Plaid emulator:  {settings.plaid_host}\n"
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


def _worker(_args: argparse.Namespace) -> int:
    from plaid_bridge import worker

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(worker.serve(settings))
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

    emulator = add("emulator", _emulator, "run the offline Plaid emulator alone")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=8100)
    emulator.add_argument("--seed", type=int, default=None)
    emulator.add_argument("--transactions", type=int, default=None)

    db = add("db", _db_upgrade, "database maintenance")
    db.add_argument("action", choices=["upgrade"], help="upgrade: apply every migration")

    token = add("dev-token", _dev_token, "print a JWT for local use (refused in production)")
    token.add_argument("--user", required=True)
    token.add_argument("--org", required=True)
    token.add_argument(
        "--role", default="OWNER", choices=["OWNER", "ADMIN", "MANAGER", "MEMBER", "VIEWER"]
    )

    add("worker", _worker, "process webhooks and syncs until SIGTERM (WORKER_MODE=external)")
    add("rotate-keys", _rotate_keys, "re-encrypt every stored access token with the active key")
    add("health-summary", _health_summary, "print the health summary of every org (JSON lines)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
