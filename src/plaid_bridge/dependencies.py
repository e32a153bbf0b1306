"""FastAPI wiring only: the app's services, the caller's identity and role, one transaction per
request, and the per-user rate limit. Routers use it; services and the worker never do."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from plaid_bridge.errors import Forbidden, RateLimited, Unauthorized
from plaid_bridge.logs import org_id_var, request_id_var
from plaid_bridge.security.auth import AuthError, Role
from plaid_bridge.security.caller import Caller
from plaid_bridge.services import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_session(services: ServicesDep) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the route returns, rolled back if it raises."""
    async with services.database.transaction() as session:
        yield session


# Function scope: the transaction commits before the response is sent, so a client never reads a
# 2xx for work that is not durable (FastAPI's default scope ends it after the response).
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized()
    return token.strip()


async def _authenticated(request: Request, services: ServicesDep) -> Caller:
    """The caller the bearer token names; FastAPI resolves it once per request, however many
    dependencies (the route's role, the per-user rate limit) ask for it."""
    try:
        principal = services.verifier.verify(_bearer(request))
    except AuthError:
        raise Unauthorized("The bearer token is missing, invalid or expired.") from None
    org_id_var.set(principal.org_id)
    client = request.client.host if request.client else None
    return Caller(principal=principal, request_id=request_id_var.get(), ip=client)


Authenticated = Annotated[Caller, Depends(_authenticated)]


def require(role: Role) -> Callable[[Caller], Awaitable[Caller]]:
    """A dependency that demands at least `role` of the authenticated caller."""

    async def dependency(caller: Authenticated) -> Caller:
        if not caller.principal.role.allows(role):
            raise Forbidden(f"This action needs the {role.name} role or higher.")
        return caller

    return dependency


Viewer = Annotated[Caller, Depends(require(Role.VIEWER))]
Member = Annotated[Caller, Depends(require(Role.MEMBER))]
Admin = Annotated[Caller, Depends(require(Role.ADMIN))]


def check_user_id(caller: Caller, user_id: str | None) -> None:
    """The old frontend sends `userId`; it is accepted only when it is the caller."""
    if user_id is not None and user_id != caller.user_id:
        raise Forbidden("userId does not match the authenticated user.")


async def _check_caller(request: Request, caller: Authenticated, services: ServicesDep) -> None:
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    try:
        await services.user_limits.check(
            org_id=caller.org_id, user_id=caller.user_id, route_path=path
        )
    except RateLimited as refused:
        services.metrics.api_limited(str(refused.details.get("limit", "api")))
        raise


per_user_limit = Depends(_check_caller)
"""The per-user API limits (`ratelimit/api.py`): add to `include_router(...,
dependencies=[per_user_limit])` for authenticated routers. It shares the request's one
authentication with the route's role dependency; the role each route demands is checked by the
route."""
