"""The demo page (emulator mode only): the whole connect flow in a browser, through the
documented API, as a reference for frontend developers."""
