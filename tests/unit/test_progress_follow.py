"""routing.progress.followed: reports from worker threads, in order, coalesced, then the call's result."""

from __future__ import annotations

import asyncio
import io
import threading

import pytest
from rich.console import Console

from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.cli import main as cli
from gateway.core import progress
from gateway.core.errors import NoRoute
from gateway.core.progress import AudioProgress
from gateway.routing.progress import followed


async def _collect(call) -> list[object]:
    return [item async for item in followed(call)]


async def test_reports_from_a_worker_thread_arrive_rising_then_the_result():
    async def call() -> str:
        report = progress.reporter()
        assert report is not None

        def work() -> None:
            # Out of order, as a region decoded again after the windows reports an earlier time.
            for done in (2.0, 5.0, 4.0, 9.5, 7.0, 10.0):
                report(AudioProgress(done, 10.0))
                threading.Event().wait(0.01)

        await asyncio.to_thread(work)
        return "the transcript"

    *reports, result = await _collect(call)
    assert result == "the transcript"
    done = [r.done_s for r in reports]
    assert done == sorted(set(done)) and done[-1] == 10.0
    assert 5.0 in done and 4.0 not in done and 7.0 not in done


async def test_a_reader_that_falls_behind_gets_the_latest_not_a_backlog():
    async def call() -> str:
        report = progress.reporter()
        assert report is not None
        for done in range(1, 101):
            report(AudioProgress(float(done), 100.0))
        await asyncio.sleep(0.05)
        return "done"

    *reports, result = await _collect(call)
    assert result == "done"
    assert [r.done_s for r in reports] == [100.0]


async def test_a_report_past_the_total_is_capped_at_it():
    async def call() -> None:
        report = progress.reporter()
        assert report is not None
        report(AudioProgress(12.5, 12.0))
        await asyncio.sleep(0.01)

    first, _ = await _collect(call)
    assert first == AudioProgress(12.0, 12.0)


async def test_outside_a_followed_call_there_is_no_reporter():
    assert progress.reporter() is None

    async def call() -> None:
        assert progress.reporter() is not None

    await _collect(call)
    assert progress.reporter() is None


async def test_the_calls_error_is_raised_to_the_reader():
    async def call() -> None:
        raise NoRoute("no provider can diarize this recording")

    with pytest.raises(NoRoute, match="diarize"):
        await _collect(call)


async def test_a_reader_that_leaves_cancels_the_call():
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def call() -> None:
        report = progress.reporter()
        assert report is not None
        report(AudioProgress(1.0, 60.0))
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    events = followed(call)
    assert await anext(events) == AudioProgress(1.0, 60.0)
    await started.wait()
    await events.aclose()
    assert cancelled.is_set()


# -- the command line's bar -----------------------------------------------------------------------


class _Client:
    def __init__(self, events: list[pb.TranscribeProgressEvent]) -> None:
        self.events = events

    def transcribe_progress(self, path: object, **options: object) -> list[pb.TranscribeProgressEvent]:
        return self.events


def _events(total_s: float, steps: list[float]) -> list[pb.TranscribeProgressEvent]:
    response = pb.TranscribeResponse(text="all of it", duration_s=total_s)
    return [pb.TranscribeProgressEvent(audio_done_s=d, audio_total_s=total_s) for d in steps] + [
        pb.TranscribeProgressEvent(audio_done_s=total_s, audio_total_s=total_s, response=response)
    ]


def test_a_terminal_gets_a_bar_of_the_audio_done(tmp_path):
    path = tmp_path / "talk.wav"
    path.write_bytes(b"")
    screen = io.StringIO()
    err = Console(file=screen, force_terminal=True, width=120, highlight=False)
    ui = cli._Ui(out=Console(file=io.StringIO()), err=err, json=False, progress=True)
    reply = cli._followed_transcription(_Client(_events(90.0, [30.0, 60.0])), path, {}, ui)  # type: ignore[arg-type]
    assert reply.text == "all of it"
    drawn = screen.getvalue()
    assert "━" in drawn  # a bar, not a spinner
    assert "1:30 of 1:30" in drawn and "100%" in drawn


def test_elsewhere_each_rise_of_the_percentage_is_a_line(tmp_path):
    screen = io.StringIO()
    err = Console(file=screen, highlight=False, width=200)
    ui = cli._Ui(out=Console(file=io.StringIO()), err=err, json=False, progress=False)
    events = _events(40.0, [1.0, 1.1, 20.0, 39.99])
    reply = cli._followed_transcription(_Client(events), tmp_path / "x.wav", {}, ui)  # type: ignore[arg-type]
    assert reply.text == "all of it"
    lines = screen.getvalue().splitlines()
    assert [line.split("%")[0] for line in lines] == [
        "transcribed 2",
        "transcribed 50",
        "transcribed 99",
        "transcribed 100",
    ]


def test_a_stream_that_ends_without_a_response_is_an_error(tmp_path):
    ui = cli._Ui(out=Console(file=io.StringIO()), err=Console(file=io.StringIO()), json=False, progress=False)
    client = _Client([pb.TranscribeProgressEvent(audio_done_s=1.0, audio_total_s=2.0)])
    with pytest.raises(cli.CliError, match="without a transcript"):
        cli._followed_transcription(client, tmp_path / "x.wav", {}, ui)  # type: ignore[arg-type]
