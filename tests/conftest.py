"""Fixtures shared by test directories: the local cluster (tests/fixtures.py)."""

pytest_plugins = ["tests.fixtures"]
