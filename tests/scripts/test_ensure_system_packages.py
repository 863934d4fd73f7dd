"""scripts/ensure_system_packages.sh: what it does when packages are there, missing and
installable (root or passwordless sudo), or missing and not installable.

The script runs with PATH holding only a scratch bin directory, so the real bwrap,
chromium, apt-get and sudo are invisible; fake apt-get/sudo record their arguments and
"install" a package by creating what the script probes for. The unprivileged cases run
as `nobody` through setpriv when the suite runs as root (as in CI).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ensure_system_packages.sh"
ALL = ("bubblewrap", "chromium", "wordnet-base")
NOBODY = 65534

FAKE_APT_GET = """#!/bin/bash
echo "apt-get $*" >> {log}
[ "$1" = install ] || exit 0
for package in "$@"; do
  case "$package" in
    bubblewrap) printf '#!/bin/bash\\n' > {bin}/bwrap; /bin/chmod 755 {bin}/bwrap ;;
    chromium) printf '#!/bin/bash\\n' > {bin}/chromium; /bin/chmod 755 {bin}/chromium ;;
    wordnet-base) : > {wordnet} ;;
  esac
done
"""
FAKE_SUDO = """#!/bin/bash
[ "$1" = -n ] && shift
echo "sudo $*" >> {log}
"$@"  # (not exec: `sudo -n true` runs bash's builtin)
"""
SUDO_WANTS_PASSWORD = """#!/bin/bash
echo "sudo: a password is required" >&2
exit 1
"""


class Machine:
    """A scratch directory standing in for the machine: bin/, a wordnet file, a log."""

    def __init__(self, root: Path) -> None:
        self.root, self.bin, self.log = root, root / "bin", root / "calls.log"
        self.wordnet = root / "wordnet" / "data.noun"
        for directory in (self.bin, self.wordnet.parent):
            directory.mkdir()
        self.log.touch()

    def has(self, *packages: str) -> None:
        for package in packages:
            if package == "wordnet-base":
                self.wordnet.touch()
            else:
                name = "bwrap" if package == "bubblewrap" else package
                self.fake(name, "#!/bin/bash\n")

    def fake(self, name: str, text: str) -> None:
        path = self.bin / name
        path.write_text(text.format(log=self.log, bin=self.bin, wordnet=self.wordnet))
        path.chmod(0o755)

    def run(self, *, as_root: bool) -> subprocess.CompletedProcess[str]:
        for path in (self.root, *self.root.rglob("*")):  # nobody writes the log and bin/
            path.chmod(path.stat().st_mode | stat.S_IRWXU | stat.S_IRWXG | stat.S_IRWXO)
        command = ["/bin/bash", str(self.root / SCRIPT.name)]
        if not as_root and os.geteuid() == 0:
            setpriv = shutil.which("setpriv") or "setpriv"
            command = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                       *command]
        env = {"PATH": str(self.bin), "OPENRFT_WORDNET_FILE": str(self.wordnet)}
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines()


@pytest.fixture
def machine() -> Iterator[Machine]:
    # Not under tmp_path: pytest makes that 0700 and root's, so `nobody` could not enter it.
    root = Path(tempfile.mkdtemp(prefix="openrft-syspkg-"))
    try:
        shutil.copy(SCRIPT, root / SCRIPT.name)
        yield Machine(root)
    finally:
        shutil.rmtree(root)


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the root branch needs a root test run (CI runs as root)")


def test_nothing_missing_does_nothing(machine: Machine) -> None:
    needs_root()
    machine.has(*ALL)
    machine.fake("apt-get", FAKE_APT_GET)
    done = machine.run(as_root=True)
    assert done.returncode == 0, done.stderr
    assert machine.calls() == [] and done.stderr == ""


def test_root_installs_only_the_missing_packages(machine: Machine) -> None:
    needs_root()
    machine.has("chromium")
    machine.fake("apt-get", FAKE_APT_GET)
    done = machine.run(as_root=True)
    assert done.returncode == 0, done.stderr
    assert machine.calls() == [
        "apt-get update -qq",
        "apt-get install -y -qq --no-install-recommends bubblewrap wordnet-base",
    ]
    assert (machine.bin / "bwrap").exists() and machine.wordnet.exists()


def test_user_with_passwordless_sudo_installs_through_it(machine: Machine) -> None:
    machine.fake("apt-get", FAKE_APT_GET)
    machine.fake("sudo", FAKE_SUDO)
    done = machine.run(as_root=False)
    assert done.returncode == 0, done.stderr
    install = "apt-get install -y -qq --no-install-recommends bubblewrap chromium wordnet-base"
    assert machine.calls() == [
        "sudo true", "sudo apt-get update -qq", "apt-get update -qq", f"sudo {install}", install,
    ]


@pytest.mark.parametrize("sudo", [SUDO_WANTS_PASSWORD, None], ids=["password", "no-sudo"])
def test_user_who_cannot_install_gets_one_line_with_the_command(machine: Machine,
                                                                sudo: str | None) -> None:
    machine.has("bubblewrap")
    machine.fake("apt-get", FAKE_APT_GET)
    if sudo:
        machine.fake("sudo", sudo)
    done = machine.run(as_root=False)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "openrft: missing system packages (chromium wordnet-base); run: sudo apt-get update "
        "&& sudo apt-get install -y --no-install-recommends chromium wordnet-base"
    ]
    assert machine.calls() == []  # apt-get never ran


def test_no_apt_get_names_the_packages(machine: Machine) -> None:
    done = machine.run(as_root=True)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("openrft: missing system packages (bubblewrap chromium wordnet-base)"
                           " and no apt-get here")


def test_an_install_that_leaves_a_package_missing_fails(machine: Machine) -> None:
    needs_root()
    machine.fake("apt-get", "#!/bin/bash\nexit 0\n")  # "succeeds" without installing anything
    done = machine.run(as_root=True)
    assert done.returncode == 1
    assert "is still missing" in done.stderr.splitlines()[-1]
