"""Which hosts a job may make this server call: tool servers and endpoint graders.

A job names URLs the service will POST to (`method.reinforcement.tools[].server_url`,
`type: "endpoint"` graders, also inside a `multi` grader). On a server inside a private
network that is a request forgery risk, so an admin can pin the allowed hosts with
`openrft serve --outbound-host HOST` (repeatable; `*.example.com` matches subdomains).
No list means any host, as OpenAI's hosted service allows public endpoints.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from openrft.service.errors import APIError


def host_allowed(url: str, allowed: Sequence[str]) -> bool:
    """True when `allowed` is empty or the URL's host matches one entry."""
    if not allowed:
        return True
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    for entry in allowed:
        if entry.startswith("*."):
            if host.endswith(entry[1:]) and host != entry[2:]:
                return True
        elif host == entry:
            return True
    return False


def outbound_urls(method: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(param path, url) of every URL a reinforcement method makes the server call."""
    reinforcement = method.get("reinforcement") or {}
    for i, tool in enumerate(reinforcement.get("tools") or []):
        if isinstance(tool, dict) and isinstance(tool.get("server_url"), str):
            yield f"method.reinforcement.tools[{i}].server_url", tool["server_url"]
    grader = reinforcement.get("grader")
    if isinstance(grader, dict):
        yield from grader_urls(grader, "method.reinforcement.grader")


def grader_urls(grader: dict[str, Any], where: str) -> Iterator[tuple[str, str]]:
    """(param path, url) of the endpoint graders in `grader`, sub-graders included."""
    if grader.get("type") == "endpoint" and isinstance(grader.get("url"), str):
        yield f"{where}.url", grader["url"]
    subs = grader.get("graders")
    if isinstance(subs, dict):
        for name, sub in subs.items():
            if isinstance(sub, dict):
                yield from grader_urls(sub, f"{where}.graders.{name}")


def check_outbound(urls: Iterator[tuple[str, str]], allowed: Sequence[str]) -> None:
    """400 naming the first URL whose host this server may not call."""
    for param, url in urls:
        if not host_allowed(url, allowed):
            host = urlsplit(url).hostname or url
            raise APIError(400, f"Invalid value for '{param}': this server may not call "
                                f"host {host!r} (an admin allows hosts with "
                                "`openrft serve --outbound-host`)",
                           param=param, code="invalid_value")
