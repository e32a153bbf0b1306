"""Client behaviour against a scripted HTTP server: answers the emulator never gives (not JSON,
wrong shape, a body that trickles), refused connections, logging and the SDK's debug switch."""

from __future__ import annotations

import http.client
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anyio
import pytest

from plaid_bridge.plaid import PlaidClient, PlaidError, PlaidErrorClass
from plaid_bridge.plaid.client import QuietConfiguration

pytestmark = pytest.mark.anyio

SECRET = "stub-secret-never-printed"
ACCESS_TOKEN = "access-sandbox-stub-token-never-printed"
ACCOUNTS = (
    b'{"accounts": [{"account_id": "a1", "name": "Checking", "official_name": null,'
    b' "mask": "0000", "type": "depository", "subtype": "checking", "balances":'
    b' {"available": 10.5, "current": 11.25, "limit": null, "iso_currency_code": "USD",'
    b' "unofficial_currency_code": null}}], "item": {"item_id": "i1"}, "request_id": "stub-req"}'
)

# A failure bound, not a speed check: a working timeout ends these calls long before it.
HANG_GUARD_SECONDS = 8

LINK_TOKEN = b'{"link_token": "link-1", "expiration": "2030-01-01T00:00:00Z", "request_id": "r"}'


@dataclass
class Scripted:
    status: int = 200
    body: bytes = ACCOUNTS
    trickle_seconds: float = 0.0  # pause between single bytes of the body


@dataclass
class StubPlaid:
    """A server answering each request with the next scripted answer (the last one repeats)."""

    url: str
    answers: queue.Queue[Scripted] = field(default_factory=queue.Queue)
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    last: Scripted = field(default_factory=Scripted)
    stopping: threading.Event = field(default_factory=threading.Event)

    def script(self, *answers: Scripted) -> None:
        for answer in answers:
            self.answers.put(answer)

    def next_answer(self) -> Scripted:
        try:
            self.last = self.answers.get_nowait()
        except queue.Empty:
            pass
        return self.last


def _handler(stub: list[StubPlaid]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            server = stub[0]
            server.requests.append((self.path, dict(self.headers), body))
            answer = server.next_answer()
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            try:
                if not answer.trickle_seconds:
                    self.wfile.write(answer.body)
                    return
                for index in range(len(answer.body)):
                    if server.stopping.is_set():
                        self.close_connection = True
                        return
                    self.wfile.write(answer.body[index : index + 1])
                    self.wfile.flush()
                    time.sleep(answer.trickle_seconds)
            except OSError:
                self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def stub() -> Iterator[StubPlaid]:
    holder: list[StubPlaid] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(holder))
    server.daemon_threads = True
    holder.append(StubPlaid(url=f"http://127.0.0.1:{server.server_address[1]}"))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield holder[0]
    holder[0].stopping.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def make_client() -> Iterator[Callable[..., PlaidClient]]:
    """Clients with a short budget and backoff, closed after the test."""
    clients: list[PlaidClient] = []

    def make(url: str, *, timeout: float = 2.0, max_retries: int = 2) -> PlaidClient:
        client = PlaidClient(
            host=url,
            client_id="stub-client",
            secret=SECRET,
            timeout=timeout,
            max_retries=max_retries,
            backoff=0.01,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


async def test_a_good_answer_is_parsed_and_credentials_go_in_headers(
    stub: StubPlaid, make_client: Callable[..., PlaidClient]
) -> None:
    client = make_client(stub.url)
    accounts = await client.get_accounts(access_token=ACCESS_TOKEN)
    assert [account.account_id for account in accounts] == ["a1"]
    path, headers, body = stub.requests[0]
    assert path == "/accounts/get"
    assert headers["PLAID-CLIENT-ID"] == "stub-client"
    assert headers["PLAID-SECRET"] == SECRET
    assert headers["Plaid-Version"] == "2020-09-14"
    assert b"access_token" in body


async def test_an_answer_that_is_not_json_is_transient_and_retried(
    stub: StubPlaid, make_client: Callable[..., PlaidClient]
) -> None:
    stub.script(Scripted(body=b"<html>proxy error</html>"))
    client = make_client(stub.url, max_retries=2)
    with pytest.raises(PlaidError) as caught:
        await client.get_accounts(access_token=ACCESS_TOKEN)
    assert caught.value.error_code == "INVALID_RESPONSE"
    assert caught.value.error_class is PlaidErrorClass.PLAID_TRANSIENT
    assert len(stub.requests) == 3


async def test_an_answer_missing_required_fields_is_unexpected_and_not_retried(
    stub: StubPlaid, make_client: Callable[..., PlaidClient]
) -> None:
    stub.script(Scripted(body=b'{"accounts": [{"account_id": "a1"}], "request_id": "rq-9"}'))
    client = make_client(stub.url)
    with pytest.raises(PlaidError) as caught:
        await client.get_accounts(access_token=ACCESS_TOKEN)
    assert caught.value.error_code == "UNEXPECTED_RESPONSE"
    assert caught.value.error_class is PlaidErrorClass.UNEXPECTED
    assert caught.value.request_id == "rq-9"
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None
    assert len(stub.requests) == 1


async def test_a_body_that_trickles_past_the_budget_still_ends_in_time(
    stub: StubPlaid, make_client: Callable[..., PlaidClient]
) -> None:
    stub.script(Scripted(trickle_seconds=0.05))
    client = make_client(stub.url, timeout=0.5, max_retries=0)
    # The whole body would take minutes at this pace: ending at all means the budget held.
    with anyio.fail_after(HANG_GUARD_SECONDS), pytest.raises(PlaidError) as caught:
        await client.get_accounts(access_token=ACCESS_TOKEN)
    assert caught.value.error_code == "TIMEOUT"
    assert caught.value.transient


async def test_a_refused_connection_is_a_transient_network_error(
    make_client: Callable[..., PlaidClient],
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = make_client(f"http://127.0.0.1:{port}", max_retries=1)
    with anyio.fail_after(HANG_GUARD_SECONDS), pytest.raises(PlaidError) as caught:
        await client.get_item(access_token=ACCESS_TOKEN)
    assert caught.value.error_code == "NETWORK_ERROR"
    assert caught.value.error_class is PlaidErrorClass.PLAID_TRANSIENT
    assert caught.value.status is None


async def test_a_request_the_sdk_refuses_is_ours_to_fix_and_never_sent(
    stub: StubPlaid, make_client: Callable[..., PlaidClient]
) -> None:
    client = make_client(stub.url)
    with pytest.raises(PlaidError) as caught:
        await client.sync_transactions(access_token=ACCESS_TOKEN, count=501)
    assert caught.value.error_code == "SDK_VALIDATION_ERROR"
    assert caught.value.error_class is PlaidErrorClass.OURS_TO_FIX
    assert stub.requests == []


async def test_the_sdk_debug_switch_cannot_be_turned_on(
    stub: StubPlaid,
    make_client: Callable[..., PlaidClient],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    client = make_client(stub.url)
    configuration = client._configuration
    configuration.debug = True
    assert configuration.debug is False
    assert QuietConfiguration(host=stub.url).debug is False
    assert http.client.HTTPConnection.debuglevel == 0
    # Even with the SDK loggers lowered to DEBUG by someone else, they stay quiet.
    caplog.set_level(logging.DEBUG, logger="plaid")
    caplog.set_level(logging.DEBUG, logger="plaid.rest")
    caplog.set_level(logging.DEBUG)
    stub.script(Scripted(), Scripted(body=LINK_TOKEN))
    await client.get_accounts(access_token=ACCESS_TOKEN)
    await client.create_link_token(user_id="user-1")
    sdk_records = [r for r in caplog.records if r.name.startswith("plaid.") or r.name == "plaid"]
    assert [r for r in sdk_records if r.levelno < logging.WARNING] == []
    output = capfd.readouterr()
    for text in (caplog.text, output.out, output.err):
        assert SECRET not in text
        assert ACCESS_TOKEN not in text


async def test_each_attempt_is_logged_without_tokens(
    stub: StubPlaid, make_client: Callable[..., PlaidClient], caplog: pytest.LogCaptureFixture
) -> None:
    stub.script(
        Scripted(
            status=500,
            body=b'{"error_type": "API_ERROR", "error_code":'
            b' "INTERNAL_SERVER_ERROR", "request_id": "rq-500"}',
        ),
        Scripted(),
    )
    caplog.set_level(logging.INFO, logger="plaid_bridge.plaid")
    client = make_client(stub.url)
    await client.get_accounts(access_token=ACCESS_TOKEN)
    records = [r for r in caplog.records if r.name == "plaid_bridge.plaid"]
    outcomes = [
        (
            r.__dict__["endpoint"],
            r.__dict__["attempt"],
            r.__dict__["outcome"],
            r.__dict__["plaid_request_id"],
        )
        for r in records
    ]
    assert outcomes == [
        ("/accounts/get", 1, "retry", "rq-500"),
        ("/accounts/get", 2, "ok", "stub-req"),
    ]
    assert all(isinstance(r.__dict__["duration_ms"], float) for r in records)
    assert ACCESS_TOKEN not in caplog.text
    assert SECRET not in caplog.text
