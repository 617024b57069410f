"""API types: pydantic models of spec and status, the single source of truth.

Imports nothing else of this package (checked by import-linter).
"""
