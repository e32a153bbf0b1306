"""Who is calling: the authenticated principal of one request, with what the audit log records."""

from __future__ import annotations

from dataclasses import dataclass

from plaid_bridge.security.auth import Principal


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated caller of one request, with what the audit log records about it."""

    principal: Principal
    request_id: str | None
    ip: str | None

    @property
    def org_id(self) -> str:
        return self.principal.org_id

    @property
    def user_id(self) -> str:
        return self.principal.user_id
