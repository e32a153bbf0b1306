"""How one emulator instance behaves; everything it generates follows from these values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

MAX_TRANSACTIONS = 100_000


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """Settings of one emulator.

    `transactions` is the history size of every new Item; `not_ready_syncs` is how many first
    `/transactions/sync` calls of a new Item answer NOT_READY; `environment` goes into webhook
    bodies. `today` pins the emulated date (default: the UTC date when the app is built), so two
    emulators with the same seed and day produce the same data (their ids and tokens differ:
    each instance salts them). `state_path` is the file the state is kept in across restarts;
    None keeps it in memory only.
    """

    seed: int = 42
    transactions: int = 300
    client_id: str = "emulator-client-id"
    secret: str = "emulator-secret"
    not_ready_syncs: int = 1
    environment: str = "sandbox"
    today: date | None = None
    state_path: Path | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.transactions <= MAX_TRANSACTIONS:
            raise ValueError(f"transactions must be between 0 and {MAX_TRANSACTIONS}")
        if self.not_ready_syncs < 0:
            raise ValueError("not_ready_syncs must not be negative")
        if self.environment not in ("sandbox", "production"):
            raise ValueError("environment must be 'sandbox' or 'production'")
        if not self.client_id or not self.secret:
            raise ValueError("client_id and secret must not be empty")
