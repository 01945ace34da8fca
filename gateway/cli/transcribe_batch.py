"""Transcribing several files from one command: the plan, a bounded number of calls at once, and outcomes.

A file that is missing, unreadable or refused by the gateway fails on its own; the others still run.
Outcomes come back in the order the files were given, each as soon as it and those before it are done.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from gateway.api.v1 import audio_gateway_pb2

# The file each --format document is written to under -o DIR: NAME.<extension>.
EXTENSIONS = {"json": "json", "text": "txt", "srt": "srt", "vtt": "vtt"}

Reply = audio_gateway_pb2.TranscribeResponse


class BatchError(Exception):
    """The command line asks for something no file could be given: nothing is sent."""


@dataclass(frozen=True)
class Item:
    path: Path
    output: Path | None  # where its document goes under -o DIR; None: standard output
    problem: str = ""  # why it cannot be sent at all (missing, not a file)


@dataclass
class Outcome:
    item: Item
    reply: Reply | None = None
    error: str = ""


@dataclass
class Batch:
    items: tuple[Item, ...]
    output_dir: Path | None
    failed: int = field(default=0)

    @classmethod
    def plan(cls, files: Sequence[Path], response_format: str | None, output_dir: Path | None) -> Batch:
        """Check the files and where their documents go. Raises BatchError for a wrong command line."""
        if output_dir is not None:
            output_dir = output_dir.expanduser()
            if response_format is None:
                raise BatchError("-o DIR writes one document per file: choose which with --format")
            if not output_dir.is_dir():
                raise BatchError(f"cannot write to {output_dir}: it is not a directory")
        items: list[Item] = []
        destinations: dict[Path, Path] = {}
        for given in files:
            path = given.expanduser()
            output = None
            if output_dir is not None and response_format is not None:
                output = output_dir / f"{path.stem}.{EXTENSIONS[response_format]}"
                if output in destinations:
                    raise BatchError(
                        f"{destinations[output]} and {path} would both be written to {output}: "
                        "transcribe them in separate commands or rename one"
                    )
                destinations[output] = path
            items.append(Item(path, output, _problem(path)))
        return cls(tuple(items), output_dir)

    def run(
        self,
        call: Callable[[Path], Reply],
        *,
        jobs: int,
        describe_error: Callable[[grpc.RpcError], str],
    ) -> Iterator[Outcome]:
        """Call ``call`` for every sendable file, at most ``jobs`` at once, yielding outcomes in order."""

        def attempt(item: Item) -> Outcome:
            try:
                return Outcome(item, reply=call(item.path))
            except grpc.RpcError as exc:
                return Outcome(item, error=describe_error(exc))
            except OSError as exc:  # the file vanished or became unreadable after the plan
                return Outcome(item, error=f"cannot read {item.path}: {exc.strerror or exc}")

        pool = ThreadPoolExecutor(max_workers=max(1, min(jobs, len(self.items))))
        try:
            pending: list[Future[Outcome] | Outcome] = [
                Outcome(item, error=item.problem) if item.problem else pool.submit(attempt, item)
                for item in self.items
            ]
            for entry in pending:
                outcome = entry if isinstance(entry, Outcome) else entry.result()
                if outcome.reply is None:
                    self.failed += 1
                yield outcome
        finally:
            # Interrupted: calls not yet started are dropped; those in flight end by their deadline.
            pool.shutdown(wait=False, cancel_futures=True)

    def fail(self, outcome: Outcome, error: str) -> None:
        """A file whose reply came but could not be delivered (its document could not be written)."""
        outcome.reply, outcome.error = None, error
        self.failed += 1


def _problem(path: Path) -> str:
    if not path.exists():
        return f"input file not found: {path}"
    if not path.is_file():
        return f"input is not a file: {path}"
    return ""
