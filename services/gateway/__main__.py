"""``python -m services.gateway``: the REST front door."""

from __future__ import annotations

import uvicorn

from services.gateway.app import create_app
from shared.logs import setup_logging
from shared.settings import GatewaySettings


def main() -> None:
    settings = GatewaySettings()
    setup_logging("gateway", settings.log_level)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level)


if __name__ == "__main__":
    main()
