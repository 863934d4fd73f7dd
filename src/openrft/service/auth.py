"""API keys: `sk-orft-<key id>-<secret>`, stored as a sha256 digest, compared in constant time.

The key id is public (it is the row's primary key and appears in logs); only the
digest of the whole key is stored, so a leaked database does not leak usable keys.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy.orm import Session

from openrft.service.errors import APIError
from openrft.service.store import queries

KEY_PREFIX = "sk-orft-"


@dataclass(frozen=True)
class Principal:
    """Who is calling: every object they create or see belongs to this project."""

    project_id: str
    project_name: str
    key_id: str


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_api_key(session: Session, project_name: str) -> str:
    """Make a key for `project_name` (created if new); the plain key is returned only here."""
    project = queries.get_or_create_project(session, project_name)
    key_id = secrets.token_hex(6)
    key = f"{KEY_PREFIX}{key_id}-{secrets.token_urlsafe(32)}"
    queries.add_api_key(session, project, key_id, digest(key))
    return key


def authenticate(session: Session, authorization: str | None) -> Principal:
    """The caller's project from an `Authorization: Bearer <key>` header, else 401."""
    if not authorization or not authorization.lower().startswith("bearer "):
        # OpenAI's wording: clients tell a missing key from a wrong one by this text
        raise APIError(401, "You didn't provide an API key. You need to provide your API key "
                            "in an Authorization header using Bearer auth (i.e. Authorization: "
                            "Bearer YOUR_KEY).", code="missing_api_key")
    key = authorization[len("bearer "):].strip()
    key_id = key[len(KEY_PREFIX):].split("-", 1)[0] if key.startswith(KEY_PREFIX) else ""
    found = queries.find_api_key(session, key_id) if key_id else None
    # Compare digests even for an unknown key id so timing says nothing about which ids exist.
    expected = found[0].secret_sha256 if found else digest("no such key")
    if not hmac.compare_digest(expected, digest(key)) or found is None:
        raise APIError(401, "Incorrect API key provided.", code="invalid_api_key")
    return Principal(project_id=found[1].id, project_name=found[1].name, key_id=key_id)
