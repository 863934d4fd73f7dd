"""The lazy public API resolves every advertised name, and stays cheap to import."""

import subprocess
import sys

import openrft


def test_every_public_name_resolves():
    for name in openrft.__all__:
        assert getattr(openrft, name) is not None, name


def test_import_openrft_does_not_load_torch():
    code = "import sys, openrft, openrft.graders; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
