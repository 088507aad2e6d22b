"""``python -m services.gateway``: the REST front door."""

from __future__ import annotations

import uvicorn

from services.gateway.app import create_app
from shared.logs import setup_logging
from shared.settings import GatewaySettings

# Longer than any of our clients keeps an idle connection (shared.clients.http.KEEPALIVE_S).
KEEP_ALIVE_S = 30


def main() -> None:
    settings = GatewaySettings()
    setup_logging("gateway", settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_keep_alive=KEEP_ALIVE_S,
    )


if __name__ == "__main__":
    main()
