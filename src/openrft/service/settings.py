"""Service settings, validated once at boot (`ServiceSettings.model_validate`).

The data directory holds everything a server needs to restart without loss: the SQLite
store (unless `database_url` points elsewhere), uploaded files and job run directories.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


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
    model_roots: tuple[Path, ...] = Field(
        default=(),
        description="Admin directories whose model directories jobs and chat may name "
        "(relative to the root, or by an absolute path inside it). Catalog models and the "
        "project's ft: models need no root.",
    )
    model_aliases: dict[str, str] = Field(
        default_factory=dict,
        description="Client model name -> served model (e.g. an OpenAI name -> a catalog "
        "name), so existing scripts run unchanged.",
    )

    outbound_hosts: tuple[str, ...] = Field(
        default=(),
        description="Hosts that jobs' tool servers and endpoint graders may be on "
        "('*.example.com' for subdomains); empty: any host.",
    )

    @field_validator("outbound_hosts")
    @classmethod
    def _hosts(cls, hosts: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(h.strip().lower().rstrip(".") for h in hosts)
        for host in cleaned:
            if not host or "/" in host or ":" in host:
                raise ValueError(f"outbound host {host!r}: give a host name, without "
                                 "scheme, port or path")
        return cleaned

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("model_roots")
    @classmethod
    def _existing_roots(cls, roots: tuple[Path, ...]) -> tuple[Path, ...]:
        resolved = tuple(root.expanduser().resolve() for root in roots)
        for root in resolved:
            if not root.is_dir():
                raise ValueError(f"model root {root} is not a directory")
        return resolved

    @model_validator(mode="after")
    def _roots_and_aliases(self) -> ServiceSettings:
        """A root may not hold the data directory (every project's weights) nor sit in it;
        every alias must name a model this server can serve."""
        for root in self.model_roots:
            if self.data_dir.is_relative_to(root) or root.is_relative_to(self.data_dir):
                raise ValueError(f"model root {root} overlaps the data directory "
                                 f"{self.data_dir}: fine-tuned models are served only by "
                                 "their ft: names")
        for alias, target in self.model_aliases.items():
            if not alias or not target or alias.startswith("ft:") or target.startswith("ft:"):
                raise ValueError(f"model alias {alias!r} -> {target!r}: both names must be "
                                 "non-empty and not ft: models (those belong to a project)")
        from openrft.service.model_access import check_aliases

        check_aliases(self)
        return self

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
