"""The demo page's files: the HTML with its configuration filled in, its script and its style.

The page takes two values from the HTML (meta tags), so the same files work served by the
service (`GET /demo`) or from another origin (a frontend dev server calling the API with CORS):
the API's base URL (empty: the page's own origin) and the origin of the emulator, which serves
Plaid Link's drop-in script and the control route that breaks a connection.
"""

from __future__ import annotations

from functools import cache
from html import escape
from importlib import resources

MEDIA_TYPES = {
    "demo.js": "text/javascript; charset=utf-8",
    "demo.css": "text/css; charset=utf-8",
}
LINK_SCRIPT_PATH = "/link/v2/stable/link-initialize.js"


@cache
def _static(name: str) -> bytes:
    return (resources.files("plaid_bridge.demo") / "static" / name).read_bytes()


def page_html(*, emulator_url: str, api_base: str = "") -> str:
    """The page, configured for an emulator and an API (empty `api_base`: the page's origin)."""
    emulator = emulator_url.rstrip("/")
    return (
        _static("demo.html")
        .decode("utf-8")
        .replace("{{API_BASE}}", escape(api_base.rstrip("/")))
        .replace("{{EMULATOR_URL}}", escape(emulator))
        .replace("{{LINK_SCRIPT}}", escape(emulator + LINK_SCRIPT_PATH))
    )


def asset(name: str) -> tuple[bytes, str] | None:
    """`(body, media type)` of the page's script or style; None for any other name."""
    media_type = MEDIA_TYPES.get(name)
    return None if media_type is None else (_static(name), media_type)
