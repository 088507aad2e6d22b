"""``python -m services.judge``: the rubric judge HTTP service."""

from __future__ import annotations

from services.judge.app import create_app
from shared.logs import setup_logging
from shared.serving import serve
from shared.settings import JudgeSettings


def main() -> None:
    settings = JudgeSettings()
    setup_logging("judge", settings.log_level)
    serve(create_app(settings), settings.host, settings.port, settings.log_level)


if __name__ == "__main__":
    main()
