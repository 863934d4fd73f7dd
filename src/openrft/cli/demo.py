"""`openrft demo` commands (registered on the shared app)."""

from openrft.cli import app  # noqa: F401
