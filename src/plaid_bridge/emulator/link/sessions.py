"""Link sessions: the steps the emulator's Link pages take, decided here as Plaid's Link decides.

A session starts from a link token made by /link/token/create. In new mode the user chooses an
institution and logs in with Sandbox credentials; success creates the Item the way
/sandbox/public_token/create does and, at the end, issues its public token. In update mode (a
link token made with an access token) the user logs in to the token's Item, which repairs it.
Every step re-checks the link token, so one that expires mid-flow ends the session with
INVALID_LINK_TOKEN as Plaid's does.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from plaid_bridge.emulator.errors import CATALOGUE, PlaidAPIError
from plaid_bridge.emulator.institutions import INSTITUTIONS, Institution
from plaid_bridge.emulator.items import Item
from plaid_bridge.emulator.state import EmulatorState, LinkSession, LinkToken

SANDBOX_USERNAME = "user_good"
SANDBOX_PASSWORD = "pass_good"
# A Sandbox password `error_<CODE>` fails the login with that code, for the error types a login
# can meet; any other password is simply wrong.
ERROR_PASSWORD_PREFIX = "error_"
_LOGIN_ERROR_TYPES = frozenset({"ITEM_ERROR", "INSTITUTION_ERROR"})
# Errors after which Link keeps the credentials pane open for another try.
RETRYABLE_LOGIN_ERRORS = frozenset({"INVALID_CREDENTIALS"})

# The `status` of onExit's metadata: where the user was when they left.
ExitStatus = Literal[
    "requires_credentials",
    "requires_account_selection",
    "institution_not_found",
    "institution_not_supported",
]
EXIT_STATUSES: frozenset[str] = frozenset(get_args(ExitStatus))


def link_session_id() -> str:
    """A Plaid-like link session id (a UUID)."""
    return str(uuid.uuid4())


def live_token(state: EmulatorState, link_token: str) -> LinkToken:
    """The link token if the emulator issued it and it has not expired; INVALID_LINK_TOKEN else."""
    token = state.link_tokens.get(link_token)
    if token is None or token.expiration < datetime.now(UTC):
        raise PlaidAPIError("INVALID_LINK_TOKEN")
    return token


def update_item(state: EmulatorState, token: LinkToken) -> Item:
    """The live Item an update-mode token was made for; ITEM_NOT_FOUND once it is removed."""
    assert token.item_id is not None, "not an update-mode link token"
    item = state.items.get(token.item_id)
    if item is None or item.removed:
        raise PlaidAPIError("ITEM_NOT_FOUND")
    return item


async def create_linked_item(
    state: EmulatorState, token: LinkToken, institution: Institution
) -> Item:
    """A new Item at `institution` with the link token's products and webhook, created as
    /sandbox/public_token/create creates one."""
    return await state.create_item(institution, token.products, token.webhook)


def repair_linked_item(state: EmulatorState, token: LinkToken, item: Item) -> None:
    """What a successful login in update mode does to the Item: its login error is cleared (no
    LOGIN_REPAIRED webhook, as Plaid sends none when the repair happens in your own Link), and a
    webhook given to the link token becomes the Item's."""
    state.clear_login_error(item)
    if token.webhook:
        item.webhook = token.webhook


def start(state: EmulatorState, link_token: str, session_id: str) -> LinkSession:
    """Open a session for a live link token (INVALID_LINK_TOKEN otherwise; ITEM_NOT_FOUND for an
    update-mode token whose Item is gone)."""
    token = live_token(state, link_token)
    session = LinkSession(
        link_session_id=session_id,
        link_token=token.token,
        mode="new" if token.item_id is None else "update",
        started_at=datetime.now(UTC),
    )
    if token.item_id is not None:
        item = update_item(state, token)
        session.item_id = item.item_id
        session.institution_id = item.institution.institution_id
    state.link_sessions[session.link_session_id] = session
    return session


def open_session(state: EmulatorState, link_session_id: str) -> tuple[LinkSession, LinkToken]:
    """A session still in progress and its (still live) link token."""
    session = state.link_sessions.get(link_session_id)
    if session is None or session.outcome is not None:
        raise PlaidAPIError("INVALID_LINK_TOKEN", "the Link session is unknown or has ended")
    try:
        token = live_token(state, session.link_token)
    except PlaidAPIError as error:
        session.error_code = error.code
        raise
    return session, token


def login_error(username: str, password: str) -> str | None:
    """The error Sandbox credentials lead to, or None for `user_good` / `pass_good`."""
    if not secrets.compare_digest(username.encode(), SANDBOX_USERNAME.encode()):
        return "INVALID_CREDENTIALS"
    if secrets.compare_digest(password.encode(), SANDBOX_PASSWORD.encode()):
        return None
    code = password.removeprefix(ERROR_PASSWORD_PREFIX)
    if password.startswith(ERROR_PASSWORD_PREFIX):
        kind = CATALOGUE.get(code)
        if kind is not None and kind.error_type in _LOGIN_ERROR_TYPES:
            return code
    return "INVALID_CREDENTIALS"


async def submit_credentials(
    state: EmulatorState,
    session: LinkSession,
    token: LinkToken,
    *,
    institution_id: str | None,
    username: str,
    password: str,
) -> Item:
    """Log in: a new Item (new mode) or the repaired Item (update mode). A failed login raises
    the Plaid error it stands for and is remembered as the session's last error."""
    if session.mode == "new":
        institution = INSTITUTIONS.get(institution_id or "")
        if institution is None:
            raise PlaidAPIError("INVALID_INSTITUTION")
        session.institution_id = institution.institution_id
    code = login_error(username, password)
    if code is not None:
        session.error_code = code
        raise PlaidAPIError(code)
    session.error_code = None
    if session.mode == "update":
        item = update_item(state, token)
        repair_linked_item(state, token, item)
        return item
    if session.item_id is not None:  # logged in already (e.g. came back from account selection)
        return state.items[session.item_id]
    item = await create_linked_item(state, token, INSTITUTIONS[session.institution_id or ""])
    session.item_id = item.item_id
    return item


def finish(
    state: EmulatorState, session: LinkSession, token: LinkToken, account_ids: list[str] | None
) -> dict[str, Any]:
    """End the session in success: the public token and onSuccess's metadata, with the accounts
    the user shared (all of them unless the token asks for account selection)."""
    if session.item_id is None:
        raise PlaidAPIError("INVALID_FIELD", "link_session_id: log in before finishing")
    item = update_item(state, token) if session.mode == "update" else state.items[session.item_id]
    if token.account_selection_enabled and account_ids is not None:
        known = {account["account_id"] for account in item.accounts}
        if not account_ids or not set(account_ids) <= known:
            raise PlaidAPIError("INVALID_ACCOUNT_ID")
        shared = [a for a in item.accounts if a["account_id"] in account_ids]
    elif token.account_selection_enabled:
        raise PlaidAPIError("MISSING_FIELDS", "the following required fields are missing: accounts")
    else:
        shared = list(item.accounts)
    session.public_token = state.issue_public_token(item)
    session.account_ids = [account["account_id"] for account in shared]
    session.outcome = "success"
    session.finished_at = datetime.now(UTC)
    return {
        "public_token": session.public_token,
        "metadata": success_metadata(session, item, shared),
    }


def success_metadata(
    session: LinkSession, item: Item, accounts: list[dict[str, Any]]
) -> dict[str, Any]:
    """onSuccess's metadata (Plaid's LinkSessionSuccessMetadata)."""
    return {
        "institution": {
            "name": item.institution.name,
            "institution_id": item.institution.institution_id,
        },
        "accounts": [
            {
                "id": account["account_id"],
                "name": account["name"],
                "mask": account["mask"],
                "type": account["type"],
                "subtype": account["subtype"],
                "verification_status": None,
            }
            for account in accounts
        ],
        "link_session_id": session.link_session_id,
        "transfer_status": None,
    }


def record_exit(session: LinkSession, status: str) -> None:
    """The user left Link at `status` (one of Plaid's exit statuses)."""
    if status not in EXIT_STATUSES:
        raise PlaidAPIError("INVALID_FIELD", f"status: {status!r} is not an exit status")
    session.outcome = "exit"
    session.exit_status = status
    session.finished_at = datetime.now(UTC)
