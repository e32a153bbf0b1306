"""FastAPI wiring only: the app's services, the caller's identity (bearer or cookie, see
`security/credentials.py`) and role, one transaction per request, and the per-user rate limit.
Routers use it; services and the worker never do."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from plaid_bridge.errors import Forbidden, RateLimited, Unauthorized
from plaid_bridge.logs import org_id_var, request_id_var
from plaid_bridge.security.auth import AuthError, Role
from plaid_bridge.security.caller import Caller
from plaid_bridge.security.credentials import (
    SAFE_METHODS,
    CredentialSource,
    CsrfError,
    check_double_submit,
    read_credentials,
)
from plaid_bridge.services import Services

logger = logging.getLogger("plaid_bridge.auth")


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_services(request: Request) -> Services:
    """The app's services. A coroutine, as is every dependency here: FastAPI runs a plain `def`
    dependency on the thread pool, a hop there and back for nothing on every request. The
    dependencies below read the services from the request themselves: each sub-dependency is
    one more node FastAPI solves on every request."""
    return _services(request)


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the route returns, rolled back if it raises."""
    async with _services(request).database.transaction() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
"""The request's transaction. Function-scoped: it commits when the route function returns and
before the response is sent, so a client never reads a 2xx for work that is not durable, and a
commit that fails becomes the error answer (503 DATABASE_UNAVAILABLE when the database is gone)."""


async def _authenticated(request: Request) -> Caller:
    """The caller the request's token names (`Authorization: Bearer`, else the configured
    cookie, whose unsafe requests must pass the double-submit CSRF check). FastAPI resolves it
    once per request, however many dependencies (the route's role, the per-user rate limit) ask
    for it."""
    services = _services(request)
    cookie_name = services.settings.auth_cookie_name
    try:
        credentials = read_credentials(request.headers, request.cookies, cookie_name=cookie_name)
    except AuthError as error:
        raise _unauthorized(error) from None
    try:
        principal = services.verifier.verify(credentials.token)
    except AuthError as error:
        from_cookie = credentials.source is CredentialSource.COOKIE
        raise _unauthorized(error, cookie=cookie_name if from_cookie else None) from None
    if credentials.source is CredentialSource.COOKIE and request.method not in SAFE_METHODS:
        try:
            check_double_submit(request.headers, request.cookies)
        except CsrfError as error:
            logger.info("auth.csrf_refused")
            raise Forbidden(error.reason, code="CSRF_FAILED") from None
    org_id_var.set(principal.org_id)
    client = request.client.host if request.client else None
    return Caller(principal=principal, request_id=request_id_var.get(), ip=client)


def _unauthorized(error: AuthError, *, cookie: str | None = None) -> Unauthorized:
    """The 401 saying which check failed, with its RFC 6750 challenge."""
    logger.info("auth.refused", extra={"failure": error.failure.value})
    message = error.reason
    if cookie is not None:
        message += f" The token came from the {cookie} cookie."
    return Unauthorized(message, headers={"WWW-Authenticate": error.challenge})


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


async def _check_caller(request: Request, caller: Authenticated) -> None:
    services = _services(request)
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
