"""The dashboard: a static HTML shell at `/` whose JS calls the API with the user's key.

The page needs no key to load; its data calls send `Authorization: Bearer <key>` with
the key the user typed (kept in the browser's localStorage) or passed as `?key=`.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from openrft.service.errors import not_found

router = APIRouter(tags=["dashboard"], include_in_schema=False)

_ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}


def _read(name: str) -> str:
    return resources.files("openrft.service.dashboard").joinpath(name).read_text("utf-8")


@router.get("/", response_class=HTMLResponse)
def dashboard_page() -> HTMLResponse:
    return HTMLResponse(_read("index.html"))


@router.get("/dashboard/{asset}")
def dashboard_asset(asset: str) -> Response:
    if asset not in _ASSETS:
        raise not_found("asset", asset)
    return Response(_read(asset), media_type=_ASSETS[asset])
