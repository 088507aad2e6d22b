"""OpenAPI documentation of the problem-details answers the routes give."""

from __future__ import annotations

from typing import Any

Responses = dict[int | str, dict[str, Any]]


def problems(**by_status: str) -> Responses:
    """``problems(_404="No such run")`` documents a 404 with a problem+json body."""
    return {
        int(status.lstrip("_")): {"description": text, "content": {"application/problem+json": {}}}
        for status, text in by_status.items()
    }


NOT_FOUND = problems(_404="No such run")
CONFLICT = problems(_409="The run's status does not allow it")
UNAUTHORIZED = problems(_401="A bearer token is needed, or the one given is unknown or revoked")
BAD_QUERY = problems(_422="A bad path or query parameter")
