"""The live dashboard: a static page, served by the gateway, that polls the public JSON API.

The page holds no data and needs no build step; it reads only ``/v1/...`` with the user's optional
bearer token, so these HTML routes stay open even where reads need a token.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

DASHBOARD_DIR = Path(__file__).resolve().parents[1] / "dashboard"
NO_CACHE = {"Cache-Control": "no-cache"}  # a redeployed gateway's page is picked up on reload

router = APIRouter(include_in_schema=False)


@router.get("/")
async def root() -> RedirectResponse:
    # Relative, so the page also works behind a proxy that serves the gateway under a path prefix.
    return RedirectResponse("dashboard/", status_code=307)


@router.get("/dashboard")
async def dashboard_no_slash() -> RedirectResponse:
    return RedirectResponse("dashboard/", status_code=307)


@router.get("/dashboard/")
async def dashboard() -> FileResponse:
    return FileResponse(DASHBOARD_DIR / "index.html", media_type="text/html", headers=NO_CACHE)


def mount_dashboard(app: FastAPI) -> None:
    """Serve the page at ``/dashboard/`` (``/`` redirects there) and its assets under ``/dashboard/static``."""
    app.include_router(router)
    app.mount("/dashboard/static", StaticFiles(directory=DASHBOARD_DIR), name="dashboard-static")
