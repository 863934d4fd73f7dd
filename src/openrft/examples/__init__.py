"""Worked examples built on the public API."""
