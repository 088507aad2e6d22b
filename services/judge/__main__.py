"""``python -m services.judge``: the rubric judge HTTP service."""

from __future__ import annotations

import uvicorn

from services.judge.app import create_app
from shared.logs import setup_logging
from shared.settings import JudgeSettings


def main() -> None:
    settings = JudgeSettings()
    setup_logging("judge", settings.log_level)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level)


if __name__ == "__main__":
    main()
