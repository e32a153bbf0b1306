"""The SDK's request models, each imported on first use.

`plaid.model` holds over a thousand modules; the few the client builds are loaded when a call
first needs them (on the call's worker thread), never at start-up. `sdk_models.ItemGetRequest`
is `plaid.model.item_get_request.ItemGetRequest`: the SDK names each module after its class.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

_WORD_START = re.compile(r"(?<!^)(?=[A-Z])")


def __getattr__(name: str) -> Any:
    if not name[:1].isupper():
        raise AttributeError(name)
    module = importlib.import_module(f"plaid.model.{_WORD_START.sub('_', name).lower()}")
    model = getattr(module, name)
    globals()[name] = model  # later lookups skip this function
    return model
