"""The command line against a real in-process gateway serving fake providers."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
import structlog

from gateway.cli import main as cli
from gateway.client import AsyncGatewayClient, GatewayClient
from gateway.core.errors import ProviderUnavailable
from gateway.grpc.server import GatewayServer
from gateway.settings import Settings
from providers.testing import (
    FAKE_ANSWER,
    FAKE_TRANSCRIPT,
    FakeAnswerer,
    FakeStreamingTranscriber,
    FakeSynthesizer,
    FakeTranscriber,
    sine_pcm16,
    tone_words_pcm,
)

T = TypeVar("T")


@dataclass
class Gateway:
    port: int
    stt: FakeTranscriber
    tts: FakeSynthesizer
    llm: FakeAnswerer
    logs: list[dict[str, Any]]  # the server's structlog events, kept off the captured stdout

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


class _LoopThread:
    """An event loop on its own thread, so a sync caller can drive an asyncio server."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="gateway-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    settings = Settings()
    settings.server.host = "127.0.0.1"
    settings.server.port = 0
    stt, tts, llm = FakeTranscriber(), FakeSynthesizer(), FakeAnswerer()
    runner = _LoopThread()

    async def start() -> GatewayServer:
        # Built on the server's loop: grpc.aio binds to the loop it is created on.
        server = GatewayServer(settings, providers=[stt, tts, llm])
        await server.start()
        await server.wait_ready(timeout_s=10)
        return server

    with structlog.testing.capture_logs() as logs:
        server = runner.run(start())
        try:
            yield Gateway(server.port, stt, tts, llm, logs)
        finally:
            runner.run(server.stop(grace_s=1))
            runner.close()


@pytest.fixture(autouse=True)
def _reset_fakes(gateway: Gateway) -> None:
    for fake in (gateway.stt, gateway.tts, gateway.llm):
        fake.fail_with = None
        fake.delay_s = 0.0
        fake.calls = 0


@pytest.fixture
def wav_file(tmp_path: Path) -> Path:
    path = tmp_path / "clip.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes(sine_pcm16(1.5).tobytes())
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(gateway: Gateway, *args: str) -> int:
    command, *rest = args
    return cli.main([command, "--target", gateway.target, "--timeout", "10", *rest])


# -- transcribe ----------------------------------------------------------------------


def test_transcribe_prints_transcript_and_route(gateway, wav_file, capsys):
    assert run(gateway, "transcribe", str(wav_file)) == 0
    out, err = capsys.readouterr()
    assert FAKE_TRANSCRIPT in out
    for label in ("provider", "model", "locality", "cost_usd", "latency_ms", "request_id"):
        assert label in out
    assert "fake-stt" in out and "local" in out
    assert "clip.wav" in out and "1.5 s" in out
    assert err == ""
    assert gateway.stt.calls == 1


def test_transcribe_json(gateway, wav_file, capsys):
    assert run(gateway, "transcribe", str(wav_file), "--json", "--words", "--language", "en") == 0
    out, err = capsys.readouterr()
    reply = json.loads(out)
    assert reply["text"] == FAKE_TRANSCRIPT
    assert reply["language"] == "en"
    assert reply["duration_s"] == pytest.approx(1.5)
    assert [w["text"].strip() for w in reply["words"]] == FAKE_TRANSCRIPT.split()
    route = reply["route"]
    assert route["provider"] == "fake-stt"
    assert route["locality"] == "LOCALITY_LOCAL"
    assert len(route["request_id"]) >= 16
    assert err == ""


def test_transcribe_words_table(gateway, wav_file, capsys):
    assert run(gateway, "transcribe", str(wav_file), "--words") == 0
    out = capsys.readouterr().out
    assert "start" in out and "conf" in out and "lazy" in out


@pytest.mark.parametrize("fmt", ["srt", "vtt", "text"])
def test_transcribe_format_prints_only_the_document(gateway, wav_file, capsys, fmt):
    assert run(gateway, "transcribe", str(wav_file), "--words", "--format", fmt) == 0
    out, err = capsys.readouterr()
    assert err == ""
    if fmt == "text":
        assert out == FAKE_TRANSCRIPT + "\n"
        return
    header, times = ("1\n", ",") if fmt == "srt" else ("WEBVTT\n\n", ".")
    assert out.startswith(header)
    assert f"00:00:00{times}000 --> " in out
    assert "provider" not in out and "fake-stt" not in out
    shown = [line for line in out.splitlines() if line and "-->" not in line and not line.isdigit()]
    assert " ".join(shown[1:] if fmt == "vtt" else shown).split() == FAKE_TRANSCRIPT.split()


def test_transcribe_format_json_is_the_response(gateway, wav_file, capsys):
    assert run(gateway, "transcribe", str(wav_file), "--format", "json") == 0
    reply = json.loads(capsys.readouterr().out)
    assert reply["text"] == FAKE_TRANSCRIPT and reply["formatted"] == ""


def test_transcribe_sends_options_and_routing(gateway, wav_file, capsys):
    code = run(
        gateway, "transcribe", str(wav_file), "--prompt", "Fox, Dog", "--privacy", "local_only",
        "--provider", "fake-stt", "--json",
    )  # fmt: skip
    assert code == 0
    assert gateway.stt.last_options is not None and gateway.stt.last_options.prompt == "Fox, Dog"


def test_translate_asks_for_a_provider_that_translates(gateway, wav_file, capsys):
    assert run(gateway, "transcribe", str(wav_file), "--translate") == 2
    _, err = capsys.readouterr()
    assert err.startswith("error: FAILED_PRECONDITION: no provider can transcribe")
    assert "fake-stt: lacks feature(s) translate" in err
    assert gateway.stt.calls == 0


def test_pin_to_an_unknown_provider_names_the_configured_ones(gateway, wav_file, capsys):
    assert run(gateway, "transcribe", str(wav_file), "--provider", "openai") == 2
    _, err = capsys.readouterr()
    assert err.startswith("error: FAILED_PRECONDITION:")
    assert "no provider named 'openai' is configured; providers that can transcribe: fake-stt" in err
    assert gateway.stt.calls == 0


def test_pin_to_a_configured_provider_that_cannot_serve_keeps_the_per_provider_reasons(
    gateway, wav_file, capsys
):
    assert run(gateway, "transcribe", str(wav_file), "--provider", "fake-tts") == 2
    _, err = capsys.readouterr()
    assert err.startswith("error: FAILED_PRECONDITION: no provider can transcribe")
    assert "fake-stt: request pinned provider 'fake-tts'" in err


def test_progress_on_a_terminal_leaves_stdout_clean(gateway, wav_file, capsys, monkeypatch):
    monkeypatch.setattr(cli, "_stderr_is_tty", lambda: True)
    gateway.stt.delay_s = 0.2
    assert run(gateway, "transcribe", str(wav_file)) == 0
    out = capsys.readouterr().out
    assert FAKE_TRANSCRIPT in out
    assert "Transcribing" not in out


# -- synthesize ----------------------------------------------------------------------


def test_synthesize_writes_a_wav(gateway, tmp_path, capsys):
    out_path = tmp_path / "hello.wav"
    assert run(gateway, "synthesize", "Hello there.", "-o", str(out_path)) == 0
    with wave.open(str(out_path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16_000)
        assert w.getnframes() == 8_000
    out = capsys.readouterr().out
    assert str(out_path) in out and "fake-tts" in out and "0.5 s" in out
    assert gateway.tts.last_text == "Hello there."


def test_synthesize_stream_writes_an_ogg_opus_file_chunk_by_chunk(gateway, tmp_path, capsys):
    import av

    out_path = tmp_path / "out.ogg"
    text = "Hello there. How are you today? Fine."
    code = run(gateway, "synthesize", text, "--stream", "-o", str(out_path), "--format", "opus")
    assert code == 0
    with av.open(str(out_path)) as container:
        assert container.format.name == "ogg"
        samples = sum(frame.samples for frame in container.decode(audio=0))
    # The fake speaks each of the three sentences as a 0.5 s tone.
    assert samples / 48_000 == pytest.approx(1.5, abs=0.03)
    out = capsys.readouterr().out
    assert str(out_path) in out and "4 chunks" in out and "audio/ogg;codecs=opus" in out


def test_synthesize_stream_json_reports_chunks_and_route(gateway, tmp_path, capsys):
    out_path = tmp_path / "out.mp3"
    code = run(
        gateway, "synthesize", "One. Two.", "--stream", "-o", str(out_path), "--format", "mp3", "--json"
    )
    assert code == 0
    body = json.loads(capsys.readouterr().out)
    assert body["chunks"] == 3 and body["bytes"] == out_path.stat().st_size > 0
    assert body["route"]["provider"] == "fake-tts" and body["characters"] == len("One.Two.")
    assert body["first_audio_s"] > 0


def test_synthesize_json_omits_audio_and_names_the_output(gateway, tmp_path, capsys):
    out_path = tmp_path / "hello.pcm"
    code = run(
        gateway,
        "synthesize",
        "Hi.",
        "-o",
        str(out_path),
        "--format",
        "pcm16",
        "--sample-rate",
        "8000",
        "--json",
    )
    assert code == 0
    reply = json.loads(capsys.readouterr().out)
    assert "audio" not in reply
    assert reply["output"] == str(out_path)
    assert reply["mime_type"] == "audio/L16;rate=8000"
    assert reply["sample_rate"] == 8000
    assert reply["route"]["provider"] == "fake-tts"
    assert out_path.stat().st_size == pytest.approx(8000, abs=64)  # 0.5 s of 16-bit samples at 8 kHz


def test_synthesize_reads_stdin(gateway, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("From a pipe.\n"))
    out_path = tmp_path / "piped.wav"
    assert run(gateway, "synthesize", "-", "-o", str(out_path)) == 0
    assert gateway.tts.last_text == "From a pipe."  # the gateway trims the text
    assert out_path.stat().st_size > 44


def test_synthesize_unknown_voice_is_invalid_argument(gateway, tmp_path, capsys):
    out_path = tmp_path / "never.wav"
    assert run(gateway, "synthesize", "Hi.", "-o", str(out_path), "--voice", "nobody") == 2
    _, err = capsys.readouterr()
    assert "error: INVALID_ARGUMENT:" in err and "fake-voice" in err
    assert not out_path.exists()


# -- understand ------------------------------------------------------------------------


def test_understand(gateway, wav_file, capsys):
    assert run(gateway, "understand", str(wav_file), "-q", "What is it about?") == 0
    out = capsys.readouterr().out
    assert FAKE_ANSWER in out
    assert "fake-llm" in out
    assert gateway.llm.last_question == "What is it about?"
    assert gateway.llm.last_transcript == FAKE_TRANSCRIPT


def test_understand_json(gateway, wav_file, capsys):
    assert run(gateway, "understand", str(wav_file), "-q", "Who?", "--json") == 0
    reply = json.loads(capsys.readouterr().out)
    assert reply["answer"] == FAKE_ANSWER
    assert reply["transcript"] == FAKE_TRANSCRIPT
    assert [a["provider"] for a in reply["route"]["attempts"]] == ["fake-stt", "fake-llm"]


# -- health ------------------------------------------------------------------------------


def test_health_serving(gateway, capsys):
    assert run(gateway, "health") == 0
    assert "SERVING" in capsys.readouterr().out


def test_health_of_one_operation_with_wait(gateway, capsys):
    assert run(gateway, "health", "--service", "gateway.api.v1.AudioGateway/Synthesize", "--wait", "5") == 0
    assert run(gateway, "health", "--json") == 0
    lines = capsys.readouterr().out
    assert json.loads(lines[lines.index("{") :]) == {"service": "", "status": "SERVING"}


def test_health_of_an_unknown_service_exits_1(gateway, capsys):
    assert run(gateway, "health", "--service", "no.such.Service") == 1
    assert "SERVICE_UNKNOWN" in capsys.readouterr().out


def test_health_wait_gives_up_on_an_unreachable_server(capsys):
    target = f"127.0.0.1:{_free_port()}"
    assert cli.main(["health", "--target", target, "--wait", "0.5"]) == 1
    _, err = capsys.readouterr()
    assert "not SERVING within 0.5 s" in err and "UNAVAILABLE" in err


# -- errors ------------------------------------------------------------------------------


def test_non_audio_input_is_invalid_argument(gateway, tmp_path, capsys):
    document = tmp_path / "notes.txt"
    document.write_text("These are meeting notes, not a recording.\n" * 20)
    assert run(gateway, "transcribe", str(document)) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: INVALID_ARGUMENT:")
    assert "not decodable audio" in err
    assert "Traceback" not in err
    assert gateway.stt.calls == 0


def test_missing_input_file(gateway, tmp_path, capsys):
    missing = tmp_path / "nowhere.wav"
    for command in (["transcribe", str(missing)], ["understand", str(missing), "-q", "Why?"]):
        assert run(gateway, *command) == 2
        _, err = capsys.readouterr()
        assert err.strip() == f"error: input file not found: {missing}"


def test_unreachable_target_asks_whether_the_gateway_runs_there(tmp_path, wav_file, capsys):
    target = f"127.0.0.1:{_free_port()}"
    assert cli.main(["transcribe", str(wav_file), "--target", target, "--timeout", "5"]) == 2
    _, err = capsys.readouterr()
    hint = f"error: cannot reach the gateway: is `audio-gateway serve` running at {target}? (UNAVAILABLE)"
    assert err.strip() == hint
    assert cli.main(["health", "--target", target, "--timeout", "5"]) == 2
    assert capsys.readouterr().err.strip() == hint


def test_a_target_without_a_port_means_the_gateways_port(gateway, wav_file, capsys, monkeypatch):
    assert cli.main(["health", "--target", "127.0.0.1", "--timeout", "5"]) == 2
    # gRPC alone would have dialled 443.
    assert "running at 127.0.0.1:50051?" in capsys.readouterr().err
    monkeypatch.setattr("gateway.client.DEFAULT_PORT", gateway.port)
    assert cli.main(["transcribe", str(wav_file), "--target", "127.0.0.1", "--timeout", "10"]) == 0
    assert FAKE_TRANSCRIPT in capsys.readouterr().out


@pytest.mark.parametrize(
    ("target", "dialled"),
    [
        ("localhost", "localhost:50051"),
        ("[::1]", "[::1]:50051"),
        ("gw.example:7000", "gw.example:7000"),
        ("[::1]:7000", "[::1]:7000"),
        ("dns:///gw.example:7000", "dns:///gw.example:7000"),
        ("unix:/run/gateway.sock", "unix:/run/gateway.sock"),
    ],
)
def test_with_default_port(target, dialled):
    from gateway.client import with_default_port

    assert with_default_port(target) == dialled


def test_provider_failure_is_unavailable(gateway, wav_file, capsys):
    gateway.stt.fail_with = ProviderUnavailable("fake-stt", "the engine fell over")
    assert run(gateway, "transcribe", str(wav_file)) == 2
    _, err = capsys.readouterr()
    assert err.startswith("error: UNAVAILABLE:")
    assert "the engine fell over" in err


def test_timeout_bounds_the_call(gateway, wav_file, capsys):
    gateway.stt.delay_s = 3.0
    started = time.monotonic()
    assert cli.main(["transcribe", str(wav_file), "--target", gateway.target, "--timeout", "0.5"]) == 2
    assert time.monotonic() - started < 2.5
    _, err = capsys.readouterr()
    # The client's deadline and the gateway's own give the same status, whichever fires first.
    assert err.startswith("error: DEADLINE_EXCEEDED:")


def test_version(capsys):
    from importlib.metadata import version

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"audio-gateway {version('audio-gateway')}"


@pytest.mark.parametrize("command", ["transcribe", "synthesize", "understand", "listen", "explain"])
def test_routing_options_are_in_the_help_of_every_routed_command(command, capsys):
    assert cli.main([command, "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--privacy", "--provider", "--policy", "--target", "--timeout"):
        assert option in text


def test_report_takes_no_routing_options(capsys):
    assert cli.main(["report", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--target" in text
    assert not any(option in text for option in ("--privacy", "--provider", "--policy"))
    assert cli.main(["report", "--provider", "fake-stt"]) == 2
    assert "unrecognized arguments: --provider" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys):
    assert cli.main([]) == 2
    assert cli.main(["synthesize", "Hi."]) == 2  # -o is required
    assert cli.main(["synthesize", "Hi.", "-o", "x.wav", "--format", "mp3"]) == 2
    assert "usage:" in capsys.readouterr().err
    assert cli.main(["--help"]) == 0


# -- serve and the client library -----------------------------------------------------------


def test_serve_applies_host_and_port(monkeypatch):
    seen: list[Settings] = []
    doors_seen: list[int] = []

    async def fake_serve(settings: Settings, doors: Sequence[object] = ()) -> None:
        seen.append(settings)
        doors_seen.append(len(doors))

    monkeypatch.setattr("gateway.grpc.server.serve", fake_serve)
    monkeypatch.setattr("gateway.telemetry.logs.configure", lambda _settings: None)
    assert cli.main(["serve", "--host", "127.0.0.1", "--port", "50999"]) == 0
    assert (seen[0].server.host, seen[0].server.port) == ("127.0.0.1", 50999)
    # The HTTP API is served beside gRPC unless GATEWAY_HTTP__ENABLED=false.
    assert doors_seen == [1]
    monkeypatch.setenv("GATEWAY_HTTP__ENABLED", "false")
    assert cli.main(["serve"]) == 0
    assert doors_seen == [1, 0]


def test_client_sends_the_api_key_but_never_shows_it(gateway, wav_file):
    with GatewayClient(
        gateway.target, api_key="s3cret-key", metadata=[("x-request-id", "cli-test-1")]
    ) as client:
        assert "s3cret" not in repr(client)
        assert ("authorization", "Bearer s3cret-key") in client._metadata
        reply = client.transcribe(wav_file)
    assert reply.route.request_id == "cli-test-1"
    assert reply.text == FAKE_TRANSCRIPT
    assert gateway.logs and "s3cret" not in repr(gateway.logs)


async def test_async_client(gateway, wav_file):
    async with AsyncGatewayClient(gateway.target, timeout_s=10) as client:
        await client.wait_until_serving(5)
        assert await client.health("gateway.api.v1.AudioGateway/Understand") == "SERVING"
        transcript = await client.transcribe(wav_file.read_bytes(), mime_type="audio/wav")
        speech = await client.synthesize("Hello.", format="pcm16")
        answer = await client.understand(str(wav_file), "What?")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.transcribe(b"definitely not audio")
    assert transcript.text == FAKE_TRANSCRIPT
    assert speech.mime_type == "audio/L16;rate=16000" and len(speech.audio) == 16_000
    assert answer.answer == FAKE_ANSWER
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_hash_key_reads_stdin_and_prints_the_tenant_hash(monkeypatch, capsys):
    import io

    from policies.loader import hash_key

    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-key\n"))
    assert cli.main(["hash-key"]) == 0
    out, _ = capsys.readouterr()
    assert out.strip() == hash_key("s3cret-key") and "s3cret-key" not in out
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert cli.main(["hash-key"]) == 2


def test_explain_prints_the_ranking_and_json(gateway, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert cli.main(["explain", "transcribe", "--seconds", "12", "--target", gateway.target]) == 0
    out, _ = capsys.readouterr()
    assert "policy default" in out and "fake-stt" in out and "does not transcribe" in out
    assert (
        cli.main(["explain", "synthesize", "--text", "Hello there", "--json", "--target", gateway.target])
        == 0
    )
    reply = json.loads(capsys.readouterr().out)
    assert reply["characters"] == 11
    ranked = [c for c in reply["candidates"] if c.get("eligible")]
    assert [c["provider"] for c in ranked] == ["fake-tts"] and ranked[0]["rank"] == 1


@pytest.mark.parametrize(
    ("variable", "text", "message"),
    [
        (
            "GATEWAY_POLICIES_FILE",
            "policies:\n  - name: a\n    privacy: nowhere\n",
            "policies.yaml:2: privacy",
        ),
        (
            "GATEWAY_PROVIDERS_FILE",
            "providers:\n  - {name: x, kind: openai, operation: transcribe, model: whisper-9}\n",
            "no 'openai/whisper-9'",
        ),
    ],
)
def test_serve_refuses_bad_configuration_with_the_file_and_problem(
    tmp_path, monkeypatch, capsys, variable, text, message
):
    path = tmp_path / ("policies.yaml" if "POLICIES" in variable else "providers.yaml")
    path.write_text(text)
    monkeypatch.setenv(variable, str(path))
    monkeypatch.setenv("GATEWAY_REDIS__URL", "none")
    monkeypatch.setenv("GATEWAY_WHISPER__ENABLED", "false")
    monkeypatch.setenv("GATEWAY_PIPER__ENABLED", "false")
    monkeypatch.setenv("GATEWAY_LLAMA__ENABLED", "false")
    try:
        assert cli.main(["serve", "--port", "0", "--host", "127.0.0.1"]) == 2
    finally:
        # serve pointed logging at this test's captured stderr; later tests must not write there.
        structlog.reset_defaults()
    _, err = capsys.readouterr()
    assert err.startswith("error: invalid configuration:") and message in err


def test_serve_with_a_busy_metrics_port_says_which_setting_to_change(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {
            **os.environ,
            "GATEWAY_SERVER__HOST": "127.0.0.1",
            "GATEWAY_SERVER__PORT": "0",
            "GATEWAY_METRICS__HOST": "127.0.0.1",
            "GATEWAY_METRICS__PORT": str(port),
            "GATEWAY_WHISPER__ENABLED": "false",
            "GATEWAY_PIPER__ENABLED": "false",
            "GATEWAY_LLAMA__ENABLED": "false",
            "GATEWAY_LEDGER__SPOOL_DIR": str(tmp_path / "spool"),
            "GATEWAY_REDIS__URL": "none",
        }
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli.main", "serve"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: cannot serve metrics on 127.0.0.1:{port}: Address already in use; set "
        "GATEWAY_METRICS__PORT to a free port (0 picks one) or GATEWAY_METRICS__ENABLED=false"
    ]
    everything = done.stdout + done.stderr
    assert "Traceback" not in everything and "Event loop is closed" not in everything
    assert "server.listening" not in everything  # it never claimed a port it then gave up


# -- listen --------------------------------------------------------------------------


@dataclass
class StreamGateway:
    port: int
    first: FakeStreamingTranscriber
    second: FakeStreamingTranscriber

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


LISTEN_WORDS = ["alpha", "bravo", "charlie", "delta", "echo"]


@pytest.fixture(scope="module")
def stream_gateway() -> Iterator[StreamGateway]:
    """A gateway whose only streaming providers are two tone-word fakes: ``first`` is tried first."""
    from tests.conftest import local_settings

    # Its own metrics port: the other gateway of this module may be running at the same time.
    settings = local_settings()
    first, second = FakeStreamingTranscriber(name="first"), FakeStreamingTranscriber(name="second")
    runner = _LoopThread()

    async def start() -> GatewayServer:
        server = GatewayServer(settings, providers=[first, second])
        await server.start()
        await server.wait_ready(timeout_s=10)
        return server

    with structlog.testing.capture_logs():
        server = runner.run(start())
        try:
            yield StreamGateway(server.port, first, second)
        finally:
            runner.run(server.stop(grace_s=1))
            runner.close()


@pytest.fixture(autouse=True)
def _reset_stream_fakes(request: pytest.FixtureRequest) -> None:
    if "stream_gateway" in request.fixturenames:
        gw: StreamGateway = request.getfixturevalue("stream_gateway")
        for fake in (gw.first, gw.second):
            fake.fail_after_s = None
            fake.streams.clear()


def _tone_words_file(path: Path, rate: int = 16_000, kind: str = "wav") -> Path:
    """LISTEN_WORDS as tone words in two utterances, written as ``kind`` at ``rate``."""
    import numpy as np

    from tests.audio_files import encode

    pcm = tone_words_pcm(LISTEN_WORDS, rate, pause_after=(2,))
    path.write_bytes(encode(np.frombuffer(pcm, dtype="<i2"), rate, kind, codec_rate=rate))
    return path


def _listen(gw: StreamGateway, *args: str) -> int:
    return cli.main(["listen", "--target", gw.target, "--timeout", "20", *args])


def test_listen_prints_finals_line_by_line_and_the_route(stream_gateway, tmp_path, capsys):
    clip = _tone_words_file(tmp_path / "words.wav")
    assert _listen(stream_gateway, str(clip)) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    # One line per final result, in order, and no interim results on a pipe.
    assert "alpha bravo charlie" in lines and "delta echo" in lines
    assert lines.index("alpha bravo charlie") < lines.index("delta echo")
    assert not any(line in ("alpha", "alpha bravo", "delta") for line in lines)
    assert "via first (fake-stream-1, local)" in out
    sent_s = stream_gateway.first.streams[0].received_s
    assert f"{sent_s:.2f} s of audio" in out
    assert "billed" in out and "cost_usd" in out and "request_id" in out
    assert err == ""


def test_listen_decodes_any_container_to_16_khz(stream_gateway, tmp_path, capsys):
    # Stereo-free Ogg/Opus at 48 kHz: decoded and resampled client-side before it is streamed.
    clip = _tone_words_file(tmp_path / "words.ogg", rate=48_000, kind="ogg")
    assert _listen(stream_gateway, str(clip), "--chunk-ms", "40") == 0
    out = capsys.readouterr().out
    assert "alpha bravo charlie" in out.splitlines() and "delta echo" in out.splitlines()
    stream = stream_gateway.first.streams[0]
    assert stream.config.sample_rate == 16_000
    # Opus adds a few ms of priming; the seconds sent are the file's, give or take that.
    assert stream.received_s == pytest.approx(
        len(tone_words_pcm(LISTEN_WORDS, pause_after=(2,))) / 32_000, abs=0.1
    )


def test_listen_realtime_paces_the_audio(stream_gateway, tmp_path, capsys):
    clip = tmp_path / "short.wav"
    pcm = tone_words_pcm(["golf", "hotel"], 16_000)
    with wave.open(str(clip), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes(pcm)
    audio_s = len(pcm) / 32_000
    started = time.monotonic()
    assert _listen(stream_gateway, str(clip), "--realtime") == 0
    paced = time.monotonic() - started
    started = time.monotonic()
    assert _listen(stream_gateway, str(clip)) == 0
    fast = time.monotonic() - started
    # The last 100 ms chunk leaves at audio_s - 0.1; as fast as possible is far quicker than real time.
    assert paced >= audio_s - 0.15
    assert fast < audio_s / 2
    assert capsys.readouterr().out.count("golf hotel") == 2


def test_listen_on_a_terminal_updates_interim_results_in_place(stream_gateway, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "100")
    clip = _tone_words_file(tmp_path / "words.wav")
    assert _listen(stream_gateway, str(clip)) == 0
    out = capsys.readouterr().out
    # Interim hypotheses were drawn and erased (cursor up / erase line), the finals stayed.
    assert "\x1b[2K" in out
    assert "alpha bravo" in out and "delta echo" in out


def test_listen_shows_a_failover_and_both_attempts(stream_gateway, tmp_path, capsys):
    stream_gateway.first.fail_after_s = 2.0
    clip = _tone_words_file(tmp_path / "words.wav")
    assert _listen(stream_gateway, str(clip)) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "switched to second (fake-stream-1, local)" in out
    assert "alpha bravo charlie" in lines and "delta echo" in lines
    assert "first transcribe: unavailable, second transcribe: ok" in out


def test_listen_json_prints_one_response_per_line(stream_gateway, tmp_path, capsys):
    clip = _tone_words_file(tmp_path / "words.wav")
    assert _listen(stream_gateway, str(clip), "--json", "--words") == 0
    out, err = capsys.readouterr()
    responses = [json.loads(line) for line in out.splitlines()]
    assert responses[0]["route"]["provider"] == "first"
    finals = [r["result"] for r in responses if r.get("result", {}).get("is_final")]
    assert [f["alternatives"][0]["text"] for f in finals] == ["alpha bravo charlie", "delta echo"]
    assert [w["text"] for w in finals[0]["alternatives"][0]["words"]] == ["alpha", "bravo", "charlie"]
    assert any(r.get("result", {}).get("is_final") is False for r in responses)
    last = responses[-1]
    assert last["route_info"]["provider"] == "first"
    assert last["billed_seconds"] == pytest.approx(stream_gateway.first.streams[0].received_s)
    assert err == ""


def test_listen_errors(stream_gateway, gateway, tmp_path, capsys):
    missing = tmp_path / "nowhere.wav"
    assert _listen(stream_gateway, str(missing)) == 2
    assert capsys.readouterr().err.strip() == f"error: input file not found: {missing}"

    notes = tmp_path / "notes.txt"
    notes.write_text("These are meeting notes, not a recording.\n" * 20)
    assert _listen(stream_gateway, str(notes)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot decode {notes}:") and "Traceback" not in err
    assert stream_gateway.first.streams == []

    # The other gateway has no provider that streams.
    clip = _tone_words_file(tmp_path / "words.wav")
    assert cli.main(["listen", str(clip), "--target", gateway.target, "--timeout", "10"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: FAILED_PRECONDITION:") and "streaming" in err

    assert cli.main(["listen", str(clip), "--target", f"127.0.0.1:{_free_port()}", "--timeout", "5"]) == 2
    assert "is `audio-gateway serve` running at 127.0.0.1:" in capsys.readouterr().err

    assert _listen(stream_gateway, str(clip), "--chunk-ms", "0") == 2
    assert "--chunk-ms" in capsys.readouterr().err


def test_listen_ended_by_a_limit_shows_what_was_heard_and_the_route(tmp_path, capsys):
    from tests.conftest import local_settings

    settings = local_settings()
    settings.streams.max_duration_s = 2.0
    fake = FakeStreamingTranscriber(name="short")
    runner = _LoopThread()

    async def start() -> GatewayServer:
        server = GatewayServer(settings, providers=[fake])
        await server.start()
        await server.wait_ready(timeout_s=10)
        return server

    clip = _tone_words_file(tmp_path / "words.wav")
    with structlog.testing.capture_logs():
        server = runner.run(start())
        try:
            code = cli.main(["listen", str(clip), "--target", f"127.0.0.1:{server.port}", "--timeout", "20"])
        finally:
            runner.run(server.stop(grace_s=1))
            runner.close()
    assert code == 2
    out, err = capsys.readouterr()
    assert err.startswith("error: RESOURCE_EXHAUSTED:") and "2 s of audio" in err
    # The first utterance ended before the limit and the second never began: its final is all there is.
    assert "alpha bravo charlie" in out.splitlines() and "delta" not in out
    assert "2.00 s of audio" in out and "short" in out
