"""`StrictModel`: the base of every pydantic model at a boundary (config files, API
bodies, grader specs, tool servers), defined once. An unknown field is an error naming
it, never silently dropped: a misspelt knob must not run with its default."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
