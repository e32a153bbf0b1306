"""docs/production.md names every setting the service reads."""

from __future__ import annotations

from plaid_bridge.config import Settings
from tests.deploy.stack import DEPLOY

GUIDE = DEPLOY.parent / "production.md"


def test_every_setting_is_in_the_guide() -> None:
    text = GUIDE.read_text()
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in text]
    assert missing == []
