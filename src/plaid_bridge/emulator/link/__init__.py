"""Plaid Link in the emulator: the drop-in `link-initialize.js`, the Link pages and sessions."""
