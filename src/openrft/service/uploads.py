"""File uploads: stream to a temp file under a size limit, hash, validate, then publish.

Nothing half-written is ever visible: the content lands in a temp file, is checked
(size, UTF-8, JSONL, every fine-tune row), and only then renamed to its final name and
recorded in the database. A failed upload leaves no file and no row.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from openrft.data.dataset import validate_row
from openrft.data.jsonl import parse_jsonl_numbered, require_objects
from openrft.errors import InvalidInput
from openrft.service.errors import APIError

CHUNK_BYTES = 1024 * 1024
PURPOSES = ("fine-tune", "user_data")


# OpenAI's bounds for a file's `expires_after.seconds`: one hour to 30 days.
MIN_EXPIRY_S, MAX_EXPIRY_S = 3600, 30 * 24 * 3600


def expiry_seconds(anchor: str | None, seconds: str | None) -> int | None:
    """Validate `expires_after` ({anchor: "created_at", seconds}); None when not given."""
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise APIError(400, f"expires_after.anchor: must be 'created_at', got {anchor!r}",
                       param="expires_after.anchor", code="invalid_value")
    if seconds is None or not seconds.isdigit() or not (
            MIN_EXPIRY_S <= int(seconds) <= MAX_EXPIRY_S):
        raise APIError(400, f"expires_after.seconds: must be an integer from {MIN_EXPIRY_S} "
                            f"to {MAX_EXPIRY_S}, got {seconds!r}",
                       param="expires_after.seconds", code="invalid_value")
    return int(seconds)


class ReceivedFile:
    """A validated upload waiting in a temp file; `publish` moves it to its final path."""

    def __init__(self, temp_path: Path, size: int, sha256: str, rows: int) -> None:
        self.temp_path = temp_path
        self.size = size
        self.sha256 = sha256
        self.rows = rows

    def publish(self, final_path: Path) -> None:
        os.replace(self.temp_path, final_path)


def receive_upload(stream: BinaryIO, filename: str, purpose: str, files_dir: Path,
                   max_bytes: int) -> ReceivedFile:
    """Copy `stream` to a temp file (<= max_bytes), then validate it for `purpose`."""
    if purpose not in PURPOSES:
        raise APIError(400, f"purpose: must be one of {', '.join(PURPOSES)}, got {purpose!r}",
                       param="purpose", code="invalid_purpose")
    fd, name = tempfile.mkstemp(prefix=".upload-", dir=files_dir)
    temp_path = Path(name)
    try:
        size, sha256 = _copy_limited(stream, fd, max_bytes)
        rows = _validate(temp_path, filename, purpose)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    return ReceivedFile(temp_path, size, sha256, rows)


def _copy_limited(stream: BinaryIO, fd: int, max_bytes: int) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with os.fdopen(fd, "wb") as out:
        while chunk := stream.read(CHUNK_BYTES):
            size += len(chunk)
            if size > max_bytes:
                raise upload_too_large(max_bytes)
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    if size == 0:
        raise APIError(400, "file: the uploaded file is empty", param="file", code="empty_file")
    return size, digest.hexdigest()


def upload_too_large(max_bytes: int) -> APIError:
    return APIError(413, f"file: upload exceeds the limit of {max_bytes} bytes "
                         f"(max_upload_bytes)", param="file", code="file_too_large")


def _validate(path: Path, filename: str, purpose: str) -> int:
    """Rows of a fine-tune JSONL file, each checked; InvalidInput names `filename:line`."""
    if purpose != "fine-tune":
        return 0
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InvalidInput(f"{filename}:{line}", "not valid UTF-8") from None
    numbered = parse_jsonl_numbered(text, filename)
    if not numbered:
        raise InvalidInput(filename, "the file has no rows")
    rows = require_objects(numbered, filename)
    for (line, _), row in zip(numbered, rows, strict=True):
        validate_fine_tune_row(row, f"{filename}:{line}")
    return len(rows)


def validate_fine_tune_row(row: dict, location: str) -> None:
    """A fine-tune row: RFT prompts end with a user turn, SFT rows with an assistant turn.

    The method is not known at upload time, so both shapes are accepted here; job
    creation checks the shape the chosen method needs.
    """
    messages = row.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict) \
            and messages[-1].get("role") == "assistant":
        validate_row({**row, "messages": messages[:-1] or messages}, location)
        return
    validate_row(row, location)
