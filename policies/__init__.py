"""Routing policies: data (pydantic models) interpreted by pure functions."""
