"""``python -m services.gateway``: the REST front door."""

from __future__ import annotations

from services.gateway.app import create_app
from shared.logs import setup_logging
from shared.serving import serve
from shared.settings import GatewaySettings


def main() -> None:
    settings = GatewaySettings()
    setup_logging("gateway", settings.log_level)
    serve(create_app(settings), settings.host, settings.port, settings.log_level)


if __name__ == "__main__":
    main()
