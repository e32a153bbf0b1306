"""Which requests are calls to the API that a browser (or Operate's web client) may make."""

from __future__ import annotations

from plaid_bridge.config import API_PREFIX

# Plaid posts webhooks server to server; a browser has no business there, and the old module's
# URL is kept for operators who registered it.
WEBHOOK_PATHS = frozenset({f"{API_PREFIX}/webhook", "/api/v1/integrations/plaid/webhook"})


def serves_browsers(path: str) -> bool:
    """True for the API's routes under `API_PREFIX`, except the webhook."""
    return path.startswith(f"{API_PREFIX}/") and path.rstrip("/") not in WEBHOOK_PATHS
