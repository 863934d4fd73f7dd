"""One error hierarchy for the whole project.

Library code raises these; the CLI turns them into one line and exit code 2, the HTTP
service into OpenAI's error JSON. `InvalidInput` always says *where* (file:line, field
path, HTTP parameter) and *what*, so a user can fix the input without reading a traceback.
"""

from __future__ import annotations


class OpenRFTError(Exception):
    """Base of every error OpenRFT raises on purpose."""


class InvalidInput(OpenRFTError, ValueError):
    """Bad user input: a malformed row, a wrong field, an invalid grader or config."""

    def __init__(self, location: str, message: str) -> None:
        self.location = location
        self.message = message
        super().__init__(f"{location}: {message}" if location else message)


class NotFound(OpenRFTError, LookupError):
    """A named thing (model, file, job, checkpoint) does not exist."""

    def __init__(self, kind: str, name: str, hint: str = "") -> None:
        self.kind = kind
        self.name = name
        super().__init__(f"{kind} not found: {name}" + (f" ({hint})" if hint else ""))


class GraderUnavailable(OpenRFTError):
    """A grader cannot run on this machine at all (the python grader without bubblewrap).

    Failures to score one sample are never raised: they are `ErrorFlag`s in
    `GradeResult.errors` with score 0 (graders/base.py)."""


class TrainingHealthError(OpenRFTError):
    """Training stopped because it cannot learn: a preflight that found no signal, or a
    monitor finding whose configured action is `fail` (docs/training_health.md)."""
