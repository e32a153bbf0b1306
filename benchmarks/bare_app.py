"""The baseline of `webhook_ingest`: a bare FastAPI endpoint answering 200, served by uvicorn
with the settings `plaid-bridge serve` uses (one process). `python -m benchmarks.bare_app PORT`."""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.post("/api/v1/plaid/webhook")
async def receive() -> dict[str, bool]:
    return {"received": True}


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        proxy_headers=False,
        access_log=False,
        log_config=None,
    )
