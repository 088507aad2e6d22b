"""How an HTTP service of ours is served: the same uvicorn settings for each."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from shared.clients.http import KEEPALIVE_S

SERVER_KEEP_ALIVE_S = 30
"""Longer than any of our clients keeps an idle connection, so a client never sends on a socket the
server is closing (the client drops it first)."""
assert SERVER_KEEP_ALIVE_S > KEEPALIVE_S


def serve(app: FastAPI, host: str, port: int, log_level: str) -> None:
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_keep_alive=SERVER_KEEP_ALIVE_S)
