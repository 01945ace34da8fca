"""The live policy book: loaded at start, reloaded on SIGHUP or when the file changes.

A reload validates the whole file first and keeps serving the old book when the
new one is bad, so a typo never takes routing or authentication down.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog

from gateway.core.yamlfile import ConfigFileError
from policies.loader import PolicyBook, load_policy_file

log = structlog.get_logger(__name__)

PRESETS = Path(__file__).resolve().parents[2] / "policies" / "presets" / "default.yaml"


class PolicyStore:
    def __init__(self, path: Path | None) -> None:
        self.path = path or PRESETS
        # At start a bad file is fatal: there is no previous book to fall back to.
        self._book = load_policy_file(self.path)
        self._mtime = self._stat()

    @property
    def book(self) -> PolicyBook:
        return self._book

    def _stat(self) -> float | None:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return None

    def reload(self) -> bool:
        """Swap in the file's current contents if they are valid; True when the book changed."""
        self._mtime = self._stat()
        try:
            book = load_policy_file(self.path)
        except ConfigFileError as exc:
            log.error("policies.reload_rejected", path=str(self.path), error=str(exc))
            return False
        self._book = book
        log.info(
            "policies.reloaded",
            path=str(self.path),
            policies=len(book.policies),
            tenants=len(book.tenants_by_key),
        )
        return True

    async def watch(self, interval_s: float, stop: asyncio.Event) -> None:
        """Reload when the file's modification time changes."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), interval_s)
            except TimeoutError:
                if self._stat() != self._mtime:
                    self.reload()
