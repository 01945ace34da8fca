"""The ``audio-gateway`` command: run the gateway, or call one.

::

    audio-gateway serve --port 50051
    audio-gateway transcribe meeting.wav --language en --words
    audio-gateway transcribe meeting.wav --words --format srt > meeting.srt
    audio-gateway transcribe a.wav b.mp3 c.flac --format srt -o subtitles/
    audio-gateway transcribe interview.mp3 --diarize --progress
    audio-gateway synthesize "Hello there." -o hello.wav
    echo "Hello there." | audio-gateway synthesize - -o hello.wav
    audio-gateway understand call.wav -q "What did the caller ask for?"
    audio-gateway listen meeting.mp3 --realtime
    audio-gateway health --wait 60

Client commands call ``--target`` (default ``$GATEWAY_TARGET``, else
localhost:50051) and send ``$GATEWAY_API_KEY``, when set, as a bearer token;
the key is never printed. ``--json`` prints the response as JSON on stdout.

Exit codes: 0 success; 1 the server is not SERVING (``health``); 2 the call
failed, an input file is missing, or the command line is wrong; 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from rich import box
from rich.console import Console
from rich.live import Live
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from gateway.api.v1 import audio_gateway_pb2, common_pb2
from gateway.cli import transcribe_batch
from gateway.client import (
    DEFAULT_PORT,
    DEFAULT_TARGET,
    DEFAULT_TIMEOUT_S,
    REQUEST_ID_HEADER,
    GatewayClient,
    TranscribeArgs,
    with_default_port,
)

if TYPE_CHECKING:
    from gateway.app import DoorFactory
    from gateway.settings import Settings

TARGET_ENV = "GATEWAY_TARGET"
API_KEY_ENV = "GATEWAY_API_KEY"

EXIT_OK = 0
EXIT_NOT_SERVING = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

_PRIVACY = {
    "local_only": common_pb2.PRIVACY_LOCAL_ONLY,
    "on_prem": common_pb2.PRIVACY_ON_PREM,
    "any": common_pb2.PRIVACY_ANY,
}


class CliError(Exception):
    """A failure the user can fix, reported as ``error: <message>`` with exit code 2."""


@dataclass(frozen=True)
class _Ui:
    out: Console
    err: Console
    json: bool
    progress: bool


Handler = Callable[[argparse.Namespace, _Ui], int]


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse has already reported
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_ERROR)
    as_json = bool(getattr(args, "json", False))
    ui = _Ui(
        out=Console(highlight=False),
        err=Console(stderr=True, highlight=False),
        json=as_json,
        progress=not as_json and _stderr_is_tty(),
    )
    handler: Handler = args.handler
    try:
        return handler(args, ui)
    except grpc.RpcError as exc:
        _error(ui, _rpc_message(exc, args))
    except CliError as exc:
        _error(ui, str(exc))
    except KeyboardInterrupt:
        _error(ui, "interrupted")
        return EXIT_INTERRUPTED
    return EXIT_ERROR


# -- command line ---------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audio-gateway",
        description="Transcribe, synthesize and understand speech through the audio gateway.",
        epilog=f"Client commands send ${API_KEY_ENV}, when set, as a bearer token. "
        "Exit codes: 0 ok, 1 not serving (health), 2 error, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="run the gateway server", description="Run the gateway until SIGTERM or SIGINT."
    )
    serve.add_argument("--host", help="address to listen on (default: GATEWAY_SERVER__HOST or [::])")
    serve.add_argument(
        "--port", type=_port, help="port to listen on (default: GATEWAY_SERVER__PORT or 50051)"
    )
    serve.set_defaults(handler=_cmd_serve)

    common = _client_options(routing=True)

    transcribe = commands.add_parser(
        "transcribe",
        parents=[common],
        help="speech to text",
        description="Transcribe one or more audio files. Several files are sent a few at a time (--jobs) "
        "and printed in the order given, each under its name; one file failing does not stop the others, "
        "and the exit code is 2 if any failed. With --format, -o DIR writes one document per file "
        "(DIR/NAME.srt ...); without it, each document follows a '==> FILE <==' line. With --json, "
        'several files print one JSON object per line: {"file", "response"} or {"file", "error"}.',
    )
    transcribe.add_argument(
        "files", type=Path, nargs="+", metavar="FILE", help="audio files (wav, flac, mp3, ogg...)"
    )
    transcribe.add_argument(
        "-o",
        "--output-dir",
        type=Path,
        metavar="DIR",
        help="with --format: write each file's document to DIR, named after the file",
    )
    transcribe.add_argument(
        "--jobs",
        type=_positive_int,
        default=_DEFAULT_JOBS,
        metavar="N",
        help=f"files transcribed at once (default {_DEFAULT_JOBS}, at most {_MAX_JOBS})",
    )
    transcribe.add_argument(
        "--language", default="", help="language of the speech, e.g. en (default: detect)"
    )
    transcribe.add_argument(
        "--translate",
        action="store_true",
        help="English text from speech in any language (needs a multilingual model or OpenAI whisper-1)",
    )
    transcribe.add_argument("--words", action="store_true", help="also return per-word timestamps")
    transcribe.add_argument("--prompt", default="", help="text that biases recognition (names, jargon)")
    transcribe.add_argument(
        "--progress",
        action="store_true",
        help="show how much of the audio is transcribed (on by default when stderr is a terminal; "
        "elsewhere one line on stderr each time the percentage grows)",
    )
    transcribe.add_argument(
        "--diarize",
        action="store_true",
        help="label who speaks when (routed only to providers with the 'diarization' feature: Deepgram, "
        "AssemblyAI)",
    )
    transcribe.add_argument(
        "--format",
        choices=("json", "text", "srt", "vtt"),
        help="print only the transcript as this document on stdout: the response as JSON, plain text, or "
        "SRT or WebVTT subtitles (--words gives the subtitles word timing)",
    )
    transcribe.set_defaults(handler=_cmd_transcribe)

    synthesize = commands.add_parser(
        "synthesize", parents=[common], help="text to speech", description="Speak a text into an audio file."
    )
    synthesize.add_argument("text", metavar="TEXT", help='the text to speak; "-" reads it from stdin')
    synthesize.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT", help="audio file to write"
    )
    synthesize.add_argument("--voice", default="", help="voice name (default: the provider's default)")
    synthesize.add_argument(
        "--format",
        choices=("wav", "pcm16", "mp3", "opus", "flac", "mulaw", "aac"),
        default="wav",
        help="output encoding",
    )
    synthesize.add_argument(
        "--sample-rate",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="output rate in Hz (default: native)",
    )
    synthesize.add_argument(
        "--speed",
        type=_non_negative_float,
        default=0.0,
        metavar="X",
        help="speaking rate multiplier (default 1)",
    )
    synthesize.add_argument(
        "--stream",
        action="store_true",
        help="StreamSynthesize: write each chunk to OUT as it arrives (the first sentence plays sooner)",
    )
    synthesize.set_defaults(handler=_cmd_synthesize)

    understand = commands.add_parser(
        "understand",
        parents=[common],
        help="answer a question about a recording",
        description="Ask a question about an audio file.",
    )
    understand.add_argument("file", type=Path, metavar="FILE", help="audio file (wav, flac, mp3, ogg...)")
    understand.add_argument("-q", "--question", required=True, help="the question to answer")
    understand.add_argument("--language", default="", help="language of the speech (default: detect)")
    understand.set_defaults(handler=_cmd_understand)

    listen = commands.add_parser(
        "listen",
        parents=[common],
        help="live transcription of an audio file, streamed",
        description="Stream an audio file through StreamTranscribe (decoded here to 16 kHz LINEAR16): "
        "interim results update in place, final results print line by line, and the route with the "
        "billed seconds and the cost comes last. With --realtime the deadline (--timeout) counts from "
        "the end of the audio.",
    )
    listen.add_argument("file", type=Path, metavar="FILE", help="audio file (wav, flac, mp3, ogg...)")
    listen.add_argument(
        "--realtime", action="store_true", help="send at real-time pace, as a live source would"
    )
    listen.add_argument(
        "--chunk-ms",
        type=_chunk_ms,
        default=100,
        metavar="MS",
        help=f"audio per message, {_CHUNK_MS_MIN}-{_CHUNK_MS_MAX} ms (default 100)",
    )
    listen.add_argument("--language", default="", help="language of the speech, e.g. en (default: detect)")
    listen.add_argument("--words", action="store_true", help="ask for per-word timestamps")
    listen.set_defaults(handler=_cmd_listen)

    health = commands.add_parser(
        "health",
        parents=[common],
        help="check whether the server is serving",
        description="Exit 0 when the service is SERVING, 1 otherwise, 2 when the server cannot be reached.",
    )
    health.add_argument(
        "--service",
        default="",
        metavar="NAME",
        help='health service name, e.g. "gateway.api.v1.AudioGateway/Transcribe" (default: the whole server)',
    )
    health.add_argument(
        "--wait",
        type=_non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to this long for SERVING (an unreachable server counts as not yet serving)",
    )
    health.set_defaults(handler=_cmd_health)

    explain = commands.add_parser(
        "explain",
        parents=[common],
        help="show how a request would be routed, and why",
        description="Rank every provider for a request without executing it: the rule that excluded each "
        "one, and the estimated cost and latency behind the order of the rest.",
    )
    explain.add_argument("operation", choices=sorted(_OPERATIONS), help="the operation to plan")
    size = explain.add_mutually_exclusive_group()
    size.add_argument("--file", type=Path, metavar="FILE", help="the recording (decoded for its duration)")
    size.add_argument("--seconds", type=_non_negative_float, metavar="S", help="only the audio's duration")
    size.add_argument("--text", metavar="TEXT", help="the text to speak")
    size.add_argument("--chars", type=int, metavar="N", help="only the text's length")
    explain.add_argument("--language", default="", help="language of the speech, e.g. en")
    explain.add_argument("--words", action="store_true", help="the request would want word timestamps")
    explain.add_argument("--voice", default="", help="the voice the request would name")
    explain.add_argument("--diarize", action="store_true", help="the request would want speaker labels")
    explain.add_argument(
        "--objective", choices=sorted(_OBJECTIVES), help="override the policy's objective for this request"
    )
    explain.set_defaults(handler=_cmd_explain)

    report = commands.add_parser(
        "report",
        parents=[_client_options(routing=False)],
        help="what audio cost, what the cache saved, and what all-cloud or all-local would have cost",
        description="Fetch a cost report over UTC days and show it as a table, or export it as CSV, JSON "
        "or a self-contained HTML page with charts.",
    )
    report.add_argument(
        "--tenant", default="", help="only this tenant's traffic (another tenant's needs an admin key)"
    )
    report.add_argument(
        "--since", default="", metavar="YYYY-MM-DD", help="first UTC day (default: 30 days ago)"
    )
    report.add_argument("--until", default="", metavar="YYYY-MM-DD", help="last UTC day (default: today)")
    report.add_argument(
        "--group-by",
        metavar="DIMS",
        help="comma-separated: day, provider, operation, tenant (default: none, one row of totals; "
        "with --html: day,provider)",
    )
    report.add_argument(
        "--csv", metavar="FILE", help='write the report as CSV to FILE ("-": standard output)'
    )
    report.add_argument(
        "--html", type=Path, metavar="FILE", help="write a self-contained HTML page with charts"
    )
    report.set_defaults(handler=_cmd_report)

    hash_key = commands.add_parser(
        "hash-key",
        help="print the key_sha256 of an API key, for a tenant in the policy file",
        description="Reads the API key from standard input (so it stays out of shell history and ps) "
        "and prints its SHA-256, the value a tenant's key_sha256 takes.",
    )
    hash_key.set_defaults(handler=_cmd_hash_key)
    return parser


def _client_options(*, routing: bool) -> argparse.ArgumentParser:
    """The options of client commands; a fresh parser each time, so no command can alter another's."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection and output")
    group.add_argument(
        "--target",
        default=os.environ.get(TARGET_ENV) or DEFAULT_TARGET,
        metavar="HOST[:PORT]",
        help=f"gateway, port {DEFAULT_PORT} if none is given (default: ${TARGET_ENV} or {DEFAULT_TARGET})",
    )
    group.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"deadline of the call (default {DEFAULT_TIMEOUT_S:g})",
    )
    group.add_argument("--json", action="store_true", help="print the response as JSON")
    if not routing:  # a report reads the ledger; nothing is routed
        return common
    options = common.add_argument_group("routing")
    options.add_argument("--privacy", choices=tuple(_PRIVACY), help="where the audio may be processed")
    options.add_argument("--provider", metavar="NAME", help="pin a provider, e.g. faster-whisper")
    options.add_argument("--policy", metavar="NAME", help="named routing policy")
    return common


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("audio-gateway")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


_DEFAULT_JOBS, _MAX_JOBS = 4, 32


def _positive_int(value: str) -> int:
    number = _non_negative_int(value)
    if not 1 <= number <= _MAX_JOBS:
        raise argparse.ArgumentTypeError(f"{value} is not between 1 and {_MAX_JOBS}")
    return number


def _port(value: str) -> int:
    port = _non_negative_int(value)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0-65535)")
    return port


def _non_negative_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return number


_CHUNK_MS_MIN, _CHUNK_MS_MAX = 10, 5_000


def _chunk_ms(value: str) -> int:
    number = _non_negative_int(value)
    if not _CHUNK_MS_MIN <= number <= _CHUNK_MS_MAX:
        raise argparse.ArgumentTypeError(f"{value} is not between {_CHUNK_MS_MIN} and {_CHUNK_MS_MAX} ms")
    return number


def _non_negative_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not number >= 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"{value} is not a non-negative number")
    return number


def _positive_float(value: str) -> float:
    number = _non_negative_float(value)
    if number == 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return number


# -- commands -------------------------------------------------------------------


def _cmd_serve(args: argparse.Namespace, ui: _Ui) -> int:
    # Imported here: the server pulls in the engines, which client commands never need.
    from pydantic import ValidationError

    from gateway.core.yamlfile import ConfigFileError
    from gateway.grpc.server import ListenError, serve
    from gateway.money.pricing import PriceBookError
    from gateway.settings import Settings
    from gateway.telemetry.logs import configure

    try:
        settings = Settings()
    except ValidationError as exc:
        raise CliError(f"invalid configuration in the GATEWAY_* environment:\n{exc}") from None
    _override_listen_address(settings, args.host, args.port)
    configure(settings.log)
    doors: list[DoorFactory] = []
    if settings.http.enabled:
        # Imported only when served: FastAPI adds about a second to the start of a small node.
        from gateway.http.server import http_doors

        doors = http_doors(settings)
    try:
        asyncio.run(serve(settings, doors))
    except (ConfigFileError, PriceBookError) as exc:
        # Already names the file, the line and the problem.
        raise CliError(f"invalid configuration: {exc}") from None
    except RuntimeError as exc:
        # grpc reports a port it cannot bind as a bare RuntimeError.
        if not str(exc).startswith("Failed to bind"):
            raise
        raise CliError(f"cannot listen on {settings.server.host}:{settings.server.port}: {exc}") from None
    except ListenError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot start the server: {exc}") from None
    return EXIT_OK


def _override_listen_address(settings: Settings, host: str | None, port: int | None) -> None:
    if host is not None:
        settings.server.host = host
    if port is not None:
        settings.server.port = port


def _cmd_transcribe(args: argparse.Namespace, ui: _Ui) -> int:
    try:
        batch = transcribe_batch.Batch.plan(args.files, args.format, args.output_dir)
    except transcribe_batch.BatchError as exc:
        raise CliError(str(exc)) from None
    if len(batch.items) == 1 and batch.output_dir is None:
        return _transcribe_one(args, ui, batch.items[0].path)
    # No spinner: each file's result, printed as it comes, shows the progress.
    with _client(args) as client:
        outcomes = batch.run(
            lambda path: _transcribe_call(client, args, path),
            jobs=args.jobs,
            describe_error=lambda exc: _rpc_message(exc, args),
        )
        # Printed in the order given, each as soon as it and those before it are done.
        for outcome in outcomes:
            _print_outcome(args, ui, batch, outcome)
    failed = batch.failed
    if failed:
        _error(ui, f"{failed} of {len(batch.items)} files failed")
        return EXIT_ERROR
    return EXIT_OK


def _transcribe_options(args: argparse.Namespace) -> TranscribeArgs:
    return {
        "language": args.language,
        "word_timestamps": args.words,
        "prompt": args.prompt,
        "response_format": args.format or "json",
        "diarize": args.diarize,
        "translate": args.translate,
        "routing": _routing(args),
    }


def _transcribe_call(
    client: GatewayClient, args: argparse.Namespace, path: Path
) -> audio_gateway_pb2.TranscribeResponse:
    return client.transcribe(path, **_transcribe_options(args))


def _transcribe_one(args: argparse.Namespace, ui: _Ui, path: Path) -> int:
    path = _input_file(path)
    options = _transcribe_options(args)
    with _client(args) as client:
        if ui.progress or args.progress:
            try:
                reply = _followed_transcription(client, path, options, ui)
            except grpc.RpcError as exc:
                if exc.code() is not grpc.StatusCode.UNIMPLEMENTED:
                    raise
                # A gateway from before TranscribeProgress: the same transcript, without progress.
                reply = client.transcribe(path, **options)
        else:
            reply = client.transcribe(path, **options)
    if ui.json or args.format == "json":
        _print_json(reply)
        return EXIT_OK
    if args.format:
        sys.stdout.write(reply.formatted)
        return EXIT_OK
    _print_transcript(ui, path, reply)
    return EXIT_OK


def _print_transcript(ui: _Ui, path: Path, reply: audio_gateway_pb2.TranscribeResponse) -> None:
    details = [path.name, _format_duration(reply.duration_s)]
    if reply.language:
        sure = f" ({reply.language_probability:.0%})" if 0 < reply.language_probability < 1 else ""
        details.append(f"language {reply.language}{sure}")
    _say(ui, Text("  ·  ".join(details), style="dim"))
    if any(segment.speaker for segment in reply.segments):
        ui.out.print(_speakers_table(reply.segments))
    else:
        _say(ui, Text(reply.text or "(no speech recognised)", style="" if reply.text else "italic"))
    if reply.words:
        ui.out.print(_words_table(reply.words))
    ui.out.print(_route_table(reply.route))


def _print_outcome(
    args: argparse.Namespace, ui: _Ui, batch: transcribe_batch.Batch, outcome: transcribe_batch.Outcome
) -> None:
    path, reply = outcome.item.path, outcome.reply
    if reply is None:
        if ui.json:
            _write_json_line({"file": str(path), "error": outcome.error})
        _error(ui, f"{path}: {outcome.error}")
        return
    if ui.json:
        _write_json_line({"file": str(path), "response": _message_dict(reply)})
        return
    if args.format:
        document = _message_json(reply) + "\n" if args.format == "json" else reply.formatted
        if outcome.item.output is None:
            sys.stdout.write(f"==> {path} <==\n{document}")
            if not document.endswith("\n"):
                sys.stdout.write("\n")
            return
        try:
            outcome.item.output.write_text(document, encoding="utf-8")
        except OSError as exc:
            batch.fail(outcome, f"cannot write {outcome.item.output}: {exc.strerror or exc}")
            _error(ui, f"{path}: {outcome.error}")
            return
        ui.err.print(Text.assemble(("wrote ", "dim"), str(outcome.item.output)), soft_wrap=True)
        return
    _print_transcript(ui, path, reply)


def _followed_transcription(
    client: GatewayClient, path: Path, options: TranscribeArgs, ui: _Ui
) -> audio_gateway_pb2.TranscribeResponse:
    """TranscribeProgress, shown as a bar of the audio transcribed on a terminal, else as a line on stderr
    each time the percentage grows."""
    events = client.transcribe_progress(path, **options)
    if not ui.progress:
        return _print_progress(events, ui.err)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[audio]}", style="dim"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=ui.err, transient=True) as bar:
        task = bar.add_task(f"Transcribing {_describe_file(path, ui)}", total=None, audio="")
        for event in events:
            if event.audio_total_s > 0:
                audio = f"{_clock(event.audio_done_s)} of {_clock(event.audio_total_s)}"
                bar.update(task, completed=event.audio_done_s, total=event.audio_total_s, audio=audio)
            if event.HasField("response"):
                return event.response
    raise CliError("the gateway ended the transcription without a transcript")


def _print_progress(
    events: Iterable[audio_gateway_pb2.TranscribeProgressEvent], err: Console
) -> audio_gateway_pb2.TranscribeResponse:
    shown = -1
    for event in events:
        percent = _percent(event.audio_done_s, event.audio_total_s)
        if percent > shown:
            shown = percent
            err.print(
                f"transcribed {percent}% ({event.audio_done_s:.1f} of {event.audio_total_s:.1f} s of audio)"
            )
        if event.HasField("response"):
            return event.response
    raise CliError("the gateway ended the transcription without a transcript")


def _clock(seconds: float) -> str:
    """m:ss (h:mm:ss past an hour), the same width while the bar moves."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _percent(done_s: float, total_s: float) -> int:
    # Floored, so 100 % means done, not nearly done.
    return 100 if total_s <= 0 or done_s >= total_s else int(100 * done_s / total_s)


def _stream_synthesize(args: argparse.Namespace, ui: _Ui, text: str, output: Path) -> int:
    started = time.perf_counter()
    first_audio_s: float | None = None
    last: audio_gateway_pb2.SynthesizeChunk | None = None
    size = 0
    try:
        out = output.open("wb")
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc.strerror or exc}") from None
    with out, _client(args) as client, _progress(ui, f"Streaming {len(text):,} characters"):
        chunks = client.stream_synthesize(
            text,
            voice=args.voice,
            format=args.format,
            sample_rate=args.sample_rate,
            speed=args.speed,
            routing=_routing(args),
        )
        for chunk in chunks:
            if chunk.audio and first_audio_s is None:
                first_audio_s = time.perf_counter() - started
            # Written and flushed as it comes, so a player reading the file can start at once.
            out.write(chunk.audio)
            out.flush()
            size += len(chunk.audio)
            last = chunk
    if last is None:
        raise CliError("the gateway ended the stream without audio")
    if ui.json:
        body = _message_dict(last)
        body.pop("audio", None)
        body.update(output=str(output), bytes=size, chunks=last.sequence + 1, first_audio_s=first_audio_s)
        _write_json(body)
        return EXIT_OK
    summary = Text.assemble(
        ("Wrote ", ""),
        (str(output), "bold"),
        f"  ({_format_duration(last.start_s)}, {last.sample_rate} Hz, {last.mime_type}, "
        f"{_format_size(size)} in {last.sequence + 1} chunks, first audio after "
        f"{(first_audio_s or 0.0) * 1000:.0f} ms, voice {last.voice})",
    )
    _say(ui, summary)
    ui.out.print(_route_table(last.route))
    return EXIT_OK


def _cmd_synthesize(args: argparse.Namespace, ui: _Ui) -> int:
    output: Path = args.output.expanduser()
    if not output.parent.is_dir():
        raise CliError(f"cannot write {output}: directory {output.parent} does not exist")
    text = sys.stdin.read() if args.text == "-" else args.text
    if args.stream:
        return _stream_synthesize(args, ui, text, output)
    with _client(args) as client, _progress(ui, f"Synthesizing {len(text):,} characters"):
        reply = client.synthesize(
            text,
            voice=args.voice,
            format=args.format,
            sample_rate=args.sample_rate,
            speed=args.speed,
            routing=_routing(args),
        )
    try:
        output.write_bytes(reply.audio)
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc.strerror or exc}") from None
    if ui.json:
        body = _message_dict(reply)
        body.pop("audio", None)
        body["output"] = str(output)
        _write_json(body)
        return EXIT_OK
    summary = Text.assemble(
        ("Wrote ", ""),
        (str(output), "bold"),
        f"  ({_format_duration(reply.duration_s)}, {reply.sample_rate} Hz, {reply.mime_type}, "
        f"{_format_size(len(reply.audio))}, voice {reply.voice})",
    )
    _say(ui, summary)
    ui.out.print(_route_table(reply.route))
    return EXIT_OK


def _cmd_understand(args: argparse.Namespace, ui: _Ui) -> int:
    path = _input_file(args.file)
    with _client(args) as client, _progress(ui, f"Listening to {_describe_file(path, ui)}"):
        reply = client.understand(path, args.question, language=args.language, routing=_routing(args))
    if ui.json:
        _print_json(reply)
        return EXIT_OK
    _say(ui, Text.assemble(("Q: ", "bold"), args.question))
    _say(ui, Text.assemble(("A: ", "bold green"), reply.answer))
    if reply.transcript:
        _say(ui, Text.assemble(("transcript: ", "dim"), (reply.transcript, "dim")))
    ui.out.print(_route_table(reply.route))
    return EXIT_OK


LISTEN_RATE = 16_000


def _cmd_listen(args: argparse.Namespace, ui: _Ui) -> int:
    path = _input_file(args.file)
    with _progress(ui, f"Decoding {_describe_file(path, ui)}"):
        pcm = _decode_pcm16(path, LISTEN_RATE)
    audio_s = len(pcm) / 2 / LISTEN_RATE
    config = audio_gateway_pb2.StreamTranscribeConfig(
        encoding=audio_gateway_pb2.STREAM_ENCODING_LINEAR16,
        sample_rate_hertz=LISTEN_RATE,
        language=args.language,
        interim_results=True,
        word_timestamps=args.words,
    )
    routing = _routing(args)
    if routing is not None:
        config.routing.CopyFrom(routing)
    chunks = _pcm_chunks(pcm, LISTEN_RATE * 2 * args.chunk_ms // 1000, args.chunk_ms / 1000, args.realtime)
    # A real-time stream lasts as long as its audio: the deadline is what the caller waits beyond that.
    timeout_s = args.timeout + audio_s if args.realtime else args.timeout
    client = GatewayClient(args.target, timeout_s=timeout_s, api_key=os.environ.get(API_KEY_ENV) or None)
    with client:
        responses = client.stream_transcribe(chunks, config)
        if ui.json:
            # One JSON object per response, as they arrive (a consumer can follow the stream).
            for response in responses:
                sys.stdout.write(json.dumps(_message_dict(response)) + "\n")
                sys.stdout.flush()
            return EXIT_OK
        if not ui.out.is_terminal:
            _say(ui, Text(f"{path.name}  ·  {_format_duration(audio_s)}", style="dim"))
        summary: list[audio_gateway_pb2.StreamTranscribeResponse] = []
        try:
            _render_stream(responses, ui, path.name, audio_s, summary)
        finally:
            # A stream ended by a limit or the budget still sends its route and billed seconds first.
            if summary:
                ui.out.print(_route_table(summary[-1].route_info, billed_seconds=summary[-1].billed_seconds))
    return EXIT_OK


def _render_stream(
    responses: Iterator[audio_gateway_pb2.StreamTranscribeResponse],
    ui: _Ui,
    name: str,
    audio_s: float,
    summary: list[audio_gateway_pb2.StreamTranscribeResponse],
) -> None:
    """Prints finals line by line with the current interim result under them, updated in place.

    The response that carries the stream's RouteInfo is appended to ``summary`` as soon as it arrives.
    """
    interim = Text("")
    # On a pipe or in a file there is no "in place": interim results are left out and finals are lines.
    live = Live(interim, console=ui.out, auto_refresh=False, transient=True) if ui.out.is_terminal else None
    heard = False
    with live if live is not None else _no_context():
        if live is not None:
            live.console.print(Text(f"{name}  ·  {_format_duration(audio_s)}", style="dim"))
        for response in responses:
            console = live.console if live is not None else ui.out
            if response.HasField("route") and response.route.provider:
                route = response.route
                switched = response.event.type == audio_gateway_pb2.SPEECH_EVENT_PROVIDER_CHANGED
                verb = "switched to" if switched else "via"
                console.print(
                    Text(
                        f"{verb} {route.provider} ({route.model}, {_locality_name(route.locality)})",
                        style="yellow" if switched else "dim",
                    ),
                    soft_wrap=not console.is_terminal,
                )
            if response.HasField("result") and response.result.alternatives:
                text = response.result.alternatives[0].text.strip()
                if response.result.is_final:
                    interim = Text("")
                    if text:
                        heard = True
                        console.print(Text(text), soft_wrap=not console.is_terminal)
                else:
                    interim = Text(text, style="dim italic")
                if live is not None:
                    live.update(interim, refresh=True)
            if response.HasField("route_info"):
                summary.append(response)
    if not heard:
        _say(ui, Text("(no speech recognised)", style="italic"))


@contextmanager
def _no_context() -> Iterator[None]:
    yield


def _pcm_chunks(pcm: bytes, size: int, chunk_s: float, realtime: bool) -> Iterator[bytes]:
    size -= size % 2  # whole samples
    start = time.monotonic()
    for index, offset in enumerate(range(0, len(pcm), size)):
        if realtime:
            # Paced against the start, not chunk to chunk, so scheduling delays do not accumulate.
            delay = start + index * chunk_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield pcm[offset : offset + size]


def _decode_pcm16(path: Path, rate: int) -> bytes:
    """The file's first audio stream as s16le mono PCM at ``rate`` (any container FFmpeg reads)."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise CliError(f"cannot decode {path}: it has no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
            parts: list[bytes] = []
            for frame in container.decode(stream):
                parts.extend(bytes(out.planes[0])[: out.samples * 2] for out in resampler.resample(frame))
            parts.extend(bytes(out.planes[0])[: out.samples * 2] for out in resampler.resample(None))
    except av.FFmpegError as exc:
        raise CliError(f"cannot decode {path}: {exc}") from None
    pcm = b"".join(parts)
    if not pcm:
        raise CliError(f"cannot decode {path}: it holds no audio samples")
    return pcm


def _cmd_health(args: argparse.Namespace, ui: _Ui) -> int:
    with _client(args) as client:
        if args.wait:
            try:
                client.wait_until_serving(args.wait, args.service)
                status = "SERVING"
            except TimeoutError as exc:
                status = "NOT_SERVING"
                if not ui.json:
                    ui.err.print(Text(str(exc)), soft_wrap=True)
        else:
            status = client.health(args.service)
    if ui.json:
        _write_json({"service": args.service, "status": status})
    else:
        ui.out.print(Text(status, style="bold green" if status == "SERVING" else "bold red"))
    return EXIT_OK if status == "SERVING" else EXIT_NOT_SERVING


_OPERATIONS = {
    "transcribe": audio_gateway_pb2.OPERATION_TRANSCRIBE,
    "synthesize": audio_gateway_pb2.OPERATION_SYNTHESIZE,
    "understand": audio_gateway_pb2.OPERATION_UNDERSTAND,
}
_OBJECTIVES = {
    "cost": common_pb2.OBJECTIVE_COST,
    "latency": common_pb2.OBJECTIVE_LATENCY,
    "quality": common_pb2.OBJECTIVE_QUALITY,
}


def _cmd_explain(args: argparse.Namespace, ui: _Ui) -> int:
    request = audio_gateway_pb2.ExplainRouteRequest(
        operation=_OPERATIONS[args.operation],
        language=args.language,
        word_timestamps=args.words,
        voice=args.voice,
        diarize=args.diarize,
        routing=_routing(args) or common_pb2.RoutingOptions(),
    )
    if args.objective:
        request.routing.objective = _OBJECTIVES[args.objective]
    if args.file is not None:
        path = _input_file(args.file)
        request.audio.content = path.read_bytes()
    elif args.seconds is not None:
        request.audio_duration_s = args.seconds
    elif args.text is not None:
        request.text = args.text
    elif args.chars is not None:
        request.characters = args.chars
    with _client(args) as client:
        reply = client.explain(request)
    if ui.json:
        _print_json(reply)
        return EXIT_OK
    budget = f"  ·  budget left ${reply.remaining_budget_usd}" if reply.remaining_budget_usd else ""
    _say(
        ui,
        Text(
            f"tenant {reply.tenant}  ·  policy {reply.policy}  ·  "
            f"privacy {common_pb2.Privacy.Name(reply.privacy).removeprefix('PRIVACY_').lower()}  ·  "
            f"objective {common_pb2.Objective.Name(reply.objective).removeprefix('OBJECTIVE_').lower()}  ·  "
            f"up to {reply.max_attempts} attempt(s){budget}",
            style="dim",
        ),
    )
    by_audio = args.operation != "synthesize"
    ui.out.print(_candidates_table(f"{args.operation} candidates", reply.candidates, audio=by_audio))
    if reply.transcription_candidates:
        ui.out.print(_candidates_table("transcription step", reply.transcription_candidates, audio=True))
    return EXIT_OK


def _cmd_report(args: argparse.Namespace, ui: _Ui) -> int:
    from datetime import date

    from rich.measure import Measurement

    from gateway.api.v1 import cost_reports_pb2
    from gateway.cli import report_render

    days: dict[str, str] = {}
    for flag, value in (("--since", args.since), ("--until", args.until)):
        try:
            days[flag] = date.fromisoformat(value).isoformat() if value else ""
        except ValueError:
            raise CliError(f"{flag} takes a day written YYYY-MM-DD, not {value!r}") from None
    group_by = args.group_by if args.group_by is not None else ("day,provider" if args.html else "")
    try:
        dimensions = report_render.parse_group_by(group_by)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    csv_file = None if args.csv in (None, "-") else Path(args.csv).expanduser()
    html_file = None if args.html is None else args.html.expanduser()
    if ui.json and args.csv == "-":
        raise CliError("--json and --csv - both write to standard output; choose one")
    for path in (csv_file, html_file):
        # Checked before the call, so a typo costs no round trip to the server.
        if path is not None and not path.parent.is_dir():
            raise CliError(f"cannot write {path}: directory {path.parent} does not exist")
    request = cost_reports_pb2.GetCostReportRequest(
        tenant=args.tenant, since=days["--since"], until=days["--until"], group_by=dimensions
    )
    with _client(args) as client, _progress(ui, "Building the cost report"):
        reply = client.report(request)
    try:
        # Everything is rendered before anything is written: a bad amount leaves no half-written files.
        renderers = ((csv_file, report_render.report_csv), (html_file, report_render.report_html))
        files = {path: render(reply) for path, render in renderers if path is not None}
        if ui.json:
            sys.stdout.write(report_render.report_json(reply))
        elif args.csv == "-":
            sys.stdout.write(report_render.report_csv(reply))
        else:
            table = report_render.report_table(reply)
            if not ui.out.is_terminal:
                # A pipe or a file gets whole rows, not the 80 columns assumed when there is no terminal.
                natural = Measurement.get(ui.out, ui.out.options.update_width(10_000), table).maximum
                ui.out.width = max(ui.out.width, natural)
            ui.out.print(table)
    except ValueError as exc:
        raise CliError(f"the server sent a malformed report: {exc}") from None
    for path, text in files.items():
        try:
            path.write_text(text, encoding="utf-8", newline="")
        except OSError as exc:
            raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None
        # stderr: standard output may be carrying the CSV or JSON.
        ui.err.print(Text.assemble(("wrote ", "dim"), str(path)), soft_wrap=True)
    return EXIT_OK


def _candidates_table(
    title: str, candidates: Sequence[audio_gateway_pb2.RouteCandidate], *, audio: bool
) -> Table:
    """Every candidate, fitted to the terminal: long text wraps inside its cell, no column is dropped.

    Where a provider runs goes under its name with the model, so 80 columns leave the reason room.
    """
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", caption_justify="left")
    show_breaker = any(c.breaker_state not in ("", "closed") for c in candidates)
    columns = ["#", "provider", "est. cost $", "est. ms"]
    if show_breaker:  # all closed is the usual case: the caption says so once and the width goes to reasons
        columns.append("breaker")
    columns.append("why not")
    # Reasons give way before names do; a name longer than this folds onto a second line.
    widths = {"why not": 12, "provider": min(max((len(c.provider) for c in candidates), default=0), 20)}
    for column in columns:
        numeric = column in ("#", "est. cost $", "est. ms")
        table.add_column(
            column,
            justify="right" if numeric else "left",
            # Numbers stay whole; names and reasons wrap (folding a long name rather than cutting it).
            no_wrap=numeric,
            overflow="fold",
            min_width=widths.get(column),
        )
    for c in candidates:
        name = Text(c.provider)
        where = " · ".join(part for part in (c.model, _locality_name(c.locality)) if part)
        name.append("\n" + where, style="dim")
        row = [
            str(c.rank) if c.eligible else "-",
            name,
            c.estimated_cost_usd if c.eligible else "",
            f"{c.estimated_latency_ms:,.0f}{'*' if c.latency_learned else ''}" if c.eligible else "",
        ]
        if show_breaker:
            row.append(c.breaker_state)
        row.append(Text(c.rejected_reason))
        table.add_row(*row, style="" if c.eligible else "dim")
    notes = [] if show_breaker else ["every circuit breaker is closed"]
    notes.append(_latency_footnote(candidates, audio=audio))
    table.caption = Text("\n".join(notes), style="dim")
    return table


def _latency_footnote(candidates: Sequence[audio_gateway_pb2.RouteCandidate], *, audio: bool) -> str:
    """What the ``*`` after a latency means, and where each learned number came from."""
    learned = [c for c in candidates if c.eligible and c.latency_learned]
    if not learned:
        return "est. ms: as each provider declares (nothing learned from calls yet)"
    unit = "s/audio s" if audio else "ms/char"
    lines = ["* est. ms learned from observed calls; unmarked: as the provider declares"]
    for c in learned:
        if not c.latency_source:  # an older server says only that it was learned
            continue
        calls = f"{c.latency_observations:,} call{'s' if c.latency_observations != 1 else ''}"
        how = (
            f"fitted to {calls} of varied length"
            if c.latency_source == "fit"
            else (f"{calls} of similar length; declared rate")
        )
        lines.append(
            f"  {c.provider}: {c.latency_fixed_ms:,.0f} ms + {c.latency_per_unit:.3g} {unit} ({how})"
        )
    return "\n".join(lines)


def _cmd_hash_key(args: argparse.Namespace, ui: _Ui) -> int:
    from policies.loader import hash_key

    key = sys.stdin.readline().strip()
    if not key:
        raise CliError("no API key on standard input")
    ui.out.print(hash_key(key))
    return EXIT_OK


# -- helpers ----------------------------------------------------------------------


def _client(args: argparse.Namespace) -> GatewayClient:
    return GatewayClient(
        with_default_port(args.target), timeout_s=args.timeout, api_key=os.environ.get(API_KEY_ENV) or None
    )


def _routing(args: argparse.Namespace) -> common_pb2.RoutingOptions | None:
    if not (args.privacy or args.provider or args.policy):
        return None
    return common_pb2.RoutingOptions(
        policy=args.policy or "",
        privacy=_PRIVACY[args.privacy] if args.privacy else common_pb2.PRIVACY_UNSPECIFIED,
        provider=args.provider or "",
    )


def _input_file(path: Path) -> Path:
    path = path.expanduser()
    if not path.exists():
        raise CliError(f"input file not found: {path}")
    if not path.is_file():
        raise CliError(f"input is not a file: {path}")
    return path


def _stderr_is_tty() -> bool:
    return sys.stderr.isatty()


@contextmanager
def _progress(ui: _Ui, description: str) -> Iterator[None]:
    """A transient spinner with the elapsed time on stderr while a call runs (terminals only)."""
    if not ui.progress:
        yield
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=ui.err, transient=True) as progress:
        progress.add_task(description, total=None)
        yield


def _describe_file(path: Path, ui: _Ui) -> str:
    """'name (size, duration)'; the duration is probed only when someone will see it."""
    if not ui.progress:
        return path.name
    parts = [_format_size(path.stat().st_size)]
    duration = _probe_duration_s(path)
    if duration is not None:
        parts.append(_format_duration(duration))
    return f"{path.name} ({', '.join(parts)})"


def _probe_duration_s(path: Path) -> float | None:
    """The duration the container declares, or None; best effort, for display only."""
    try:
        import av

        with av.open(str(path)) as container:
            if container.duration is not None:
                return container.duration / av.time_base
            stream = container.streams.audio[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
    except Exception:
        return None  # not decodable here: the server will say why
    return None


def _format_size(size: int) -> str:
    if size >= 1_000_000:
        return f"{size / 1_000_000:.1f} MB"
    if size >= 1_000:
        return f"{size / 1_000:.1f} kB"
    return f"{size} B"


def _format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    return _clock(round(seconds))


def _locality_name(value: int) -> str:
    return common_pb2.Locality.Name(value).removeprefix("LOCALITY_").lower()


def _route_table(route: common_pb2.RouteInfo, billed_seconds: float | None = None) -> Table:
    table = Table(
        title="route",
        title_justify="left",
        title_style="bold",
        show_header=False,
        box=None,
        pad_edge=False,
        padding=(0, 1),
    )
    table.add_column(style="dim")
    table.add_column()
    rows = [
        ("provider", route.provider),
        ("model", route.model),
        ("locality", _locality_name(route.locality)),
        ("cost_usd", route.cost_usd),
        ("latency_ms", f"{route.latency_ms:.1f}"),
        ("request_id", route.request_id),
    ]
    if billed_seconds is not None:
        rows.insert(4, ("billed", f"{billed_seconds:.2f} s of audio"))
    if route.cache_hit:
        rows.append(("cache_hit", f"yes (saved ${route.saved_usd})"))
    if len(route.attempts) > 1 or any(a.outcome != "ok" for a in route.attempts):
        rows.append(
            ("attempts", ", ".join(f"{a.provider} {a.operation}: {a.outcome}" for a in route.attempts))
        )
    for label, value in rows:
        table.add_row(label, Text(value))
    return table


def _words_table(words: list[audio_gateway_pb2.Word]) -> Table:
    table = Table(box=box.SIMPLE, pad_edge=False)
    table.add_column("start", justify="right")
    table.add_column("end", justify="right")
    table.add_column("word")
    table.add_column("conf", justify="right")
    for word in words:
        table.add_row(
            f"{word.start_s:.2f}", f"{word.end_s:.2f}", Text(word.text.strip()), f"{word.confidence:.2f}"
        )
    return table


def _speakers_table(segments: Sequence[audio_gateway_pb2.Segment]) -> Table:
    table = Table(box=box.SIMPLE, pad_edge=False)
    table.add_column("start", justify="right")
    table.add_column("end", justify="right")
    table.add_column("speaker")
    table.add_column("text")
    for segment in segments:
        table.add_row(
            f"{segment.start_s:.2f}",
            f"{segment.end_s:.2f}",
            Text(segment.speaker),
            Text(segment.text.strip()),
        )
    return table


def _message_dict(message: Message) -> dict[str, object]:
    return json.loads(_message_json(message))


def _message_json(message: Message) -> str:
    return json_format.MessageToJson(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _print_json(message: Message) -> None:
    sys.stdout.write(_message_json(message) + "\n")


def _write_json(body: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(body, indent=2) + "\n")


def _write_json_line(body: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(body) + "\n")
    sys.stdout.flush()


def _rpc_message(exc: grpc.RpcError, args: argparse.Namespace) -> str:
    code, details = _rpc_status(exc)
    if _never_reached_the_server(exc) and hasattr(args, "target"):
        target = with_default_port(args.target)
        return f"cannot reach the gateway: is `audio-gateway serve` running at {target}? ({code})"
    return f"{code}: {details}"


def _never_reached_the_server(exc: grpc.RpcError) -> bool:
    """UNAVAILABLE from the channel itself: the gateway tags every answer it sends with a request id."""
    if not isinstance(exc, grpc.Call) or exc.code() != grpc.StatusCode.UNAVAILABLE:
        return False
    metadata = [*(exc.initial_metadata() or ()), *(exc.trailing_metadata() or ())]
    return all(key != REQUEST_ID_HEADER for key, _ in metadata)


def _rpc_status(exc: grpc.RpcError) -> tuple[str, str]:
    if isinstance(exc, grpc.Call):
        return exc.code().name, exc.details() or ""
    return "UNKNOWN", str(exc)


def _say(ui: _Ui, text: Text) -> None:
    # Word-wrap for a reader at a terminal; never break lines for a pipe or a file.
    ui.out.print(text, soft_wrap=not ui.out.is_terminal)


def _error(ui: _Ui, message: str) -> None:
    ui.err.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)


if __name__ == "__main__":
    sys.exit(main())
