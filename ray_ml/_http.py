"""One JSON call over HTTP with a bearer token (the pipeline's smoke test, the monitor's polls)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

__all__ = ["http_json"]


def http_json(
    url: str, token: str | None, body: Any = None, timeout: float = 60.0
) -> tuple[int, Any]:
    """`GET url` (or `POST` of `body` as JSON): the status and the decoded JSON answer.

    Raises:
        OSError: The server cannot be reached (connection refused, timeout).
    """
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
