"""Service settings, validated once at boot (`ServiceSettings.model_validate`).

The data directory holds everything a server needs to restart without loss: the SQLite
store (unless `database_url` points elsewhere), uploaded files and job run directories.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ServiceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Field(description="Root of the store, uploaded files and job outputs.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default sqlite:///<data_dir>/openrft.db. "
        "PostgreSQL: postgresql+psycopg://user:pass@host/db.",
    )
    max_upload_bytes: int = Field(
        default=512 * 1024 * 1024, gt=0, description="Largest accepted upload, bytes."
    )
    heartbeat_interval_s: float = Field(default=2.0, gt=0, description="Worker heartbeat period.")
    stale_after_s: float = Field(
        default=15.0, gt=0, description="A running job whose heartbeat is older is re-claimed."
    )
    poll_interval_s: float = Field(default=0.5, gt=0, description="Worker idle poll period.")
    chat_max_tokens: int = Field(default=256, ge=1, description="Default max_tokens for chat.")
    loaded_models: int = Field(default=2, ge=1, description="Models kept in memory for chat.")

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'openrft.db'}"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    def prepare(self) -> None:
        """Create the data directories (boot-time; fails loudly if not writable)."""
        for directory in (self.data_dir, self.files_dir, self.jobs_dir):
            directory.mkdir(parents=True, exist_ok=True)
