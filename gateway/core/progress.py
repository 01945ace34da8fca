"""How far a long transcription has got, told by the engine doing it to the caller waiting for it.

An engine that works through a recording piece by piece (the local Whisper engine, window after window)
tells the reporter in force how many seconds of audio it has transcribed; one that answers all at once (a
cloud API) says nothing. The router installs a reporter only for a caller who follows progress
(TranscribeProgress); otherwise there is none and reports cost nothing.

The reporter lives in a context variable, so the pipeline, the cache and the attempt walk between the
router and the engine carry it without knowing of it. Worker threads do not inherit context variables: an
engine reads :func:`reporter` on the event loop and hands it to its worker.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class AudioProgress:
    """``done_s`` of the recording's ``total_s`` seconds are transcribed."""

    done_s: float
    total_s: float


# Safe to call from any thread; never raises.
Reporter = Callable[[AudioProgress], None]

_reporter: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar("progress_reporter", default=None)


def reporter() -> Reporter | None:
    """The current request's reporter, or None when nobody follows its progress."""
    return _reporter.get()


def context_with(report: Reporter) -> contextvars.Context:
    """A copy of the current context in which ``report`` is the reporter (for a task run in it)."""
    context = contextvars.copy_context()
    context.run(_reporter.set, report)
    return context
