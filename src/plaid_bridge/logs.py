"""Logging: JSON lines (or console) with the request context, passed through the redaction rule."""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

from plaid_bridge.redaction import redact, redact_text

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
org_id_var: ContextVar[str | None] = ContextVar("org_id", default=None)
item_id_var: ContextVar[str | None] = ContextVar("item_id", default=None)
# The client's address as the app believes it (the peer, or a trusted proxy's X-Forwarded-For).
client_ip_var: ContextVar[str | None] = ContextVar("client_ip", default=None)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id_for(incoming: str | None) -> str:
    """The id a request is known by: a sane incoming `X-Request-ID`, else a new one."""
    if incoming and _REQUEST_ID.match(incoming):
        return incoming
    return uuid.uuid4().hex


_CONTEXT = {
    "request_id": request_id_var,
    "client_ip": client_ip_var,
    "org_id": org_id_var,
    "item_id": item_id_var,
}
# Record attributes that are logging's own (and uvicorn's ANSI-coloured copy of the message).
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class ContextFilter(logging.Filter):
    """Adds the request context to every record and masks secrets in message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _CONTEXT.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        record.msg = redact_text(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD and key not in _CONTEXT:
                setattr(record, key, redact({key: value})[key])
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and value is not None:
                entry[key] = value
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{key}={value}"
            for key, value in record.__dict__.items()
            if key not in _STANDARD and value is not None
        )
        line = f"{record.levelname:<7} {record.name}: {record.getMessage()} {extras}".rstrip()
        return f"{line}\n{record.exc_text}" if record.exc_text else line


def configure_logging(
    level: str = "INFO", fmt: str = "json", stream: IO[str] | None = None
) -> None:
    """Route all logging through one redacting handler (stderr by default).

    The Plaid SDK and HTTP libraries never log below WARNING: their debug output carries secrets.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("plaid", "urllib3", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
