"""Prefixed, time-ordered ids (`file-`, `ftjob-`, ...): sorting by id is sorting by creation.

Cursor pagination (`after=<id>`) then needs no extra column: the next page is simply
the ids below (newest first) the cursor. A random tail keeps ids from different
processes distinct.
"""

from __future__ import annotations

import secrets
import threading
import time

_lock = threading.Lock()
_last_ns = 0


def new_id(prefix: str) -> str:
    """`prefix` + 16 hex digits of a strictly increasing clock + 8 random hex digits."""
    global _last_ns
    with _lock:
        _last_ns = max(_last_ns + 1, time.time_ns())
        stamp = _last_ns
    return f"{prefix}{stamp:016x}{secrets.token_hex(4)}"


def now() -> int:
    """Unix seconds, OpenAI's timestamp unit."""
    return int(time.time())
