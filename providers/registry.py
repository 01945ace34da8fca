"""Provider names and where their classes live, imported only when configured.

Importing a vendor module pulls in its engine or SDK, so nothing is imported
until the configuration asks for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.settings import Settings
    from providers.base import Provider
    from providers.config import ProviderConfig

# name → ("module:Class", the Settings attribute holding its configuration)
BUILTIN: dict[str, tuple[str, str]] = {
    "faster-whisper": ("providers.faster_whisper:FasterWhisperTranscriber", "whisper"),
    "piper": ("providers.piper:PiperSynthesizer", "piper"),
    "llama-cpp": ("providers.llama_cpp:LlamaCppAnswerer", "llama"),
}


# provider kind (the providers file's `kind:`) → "module:Class" taking a ProviderConfig
REMOTE: dict[str, str] = {
    "openai": "providers.openai:OpenAIProvider",
    "openai_compatible": "providers.openai_compatible:OpenAICompatibleProvider",
    "deepgram": "providers.deepgram:DeepgramProvider",
    "assemblyai": "providers.assemblyai:AssemblyAIProvider",
    "litellm": "providers.litellm:LiteLLMProvider",
}


def _import(target: str) -> type[Any]:
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def load_class(name: str) -> type[Any]:
    try:
        target, _ = BUILTIN[name]
    except KeyError:
        raise KeyError(f"unknown provider {name!r}; known: {', '.join(sorted(BUILTIN))}") from None
    return _import(target)


def build_remote_providers(configs: list[ProviderConfig]) -> list[Provider]:
    """Construct the adapters the providers file declares; each imports its SDK only now."""
    return [_import(REMOTE[config.kind.value])(config) for config in configs]


def build_local_providers(settings: Settings) -> list[Provider]:
    """Construct (not load) every enabled in-process engine, and each further local Whisper model."""
    providers: list[Provider] = []
    for name, (_, section) in BUILTIN.items():
        engine_settings = getattr(settings, section)
        if engine_settings.enabled:
            providers.append(load_class(name)(engine_settings))
    if settings.whisper.extra_models:
        from providers.faster_whisper import extra_engines

        providers.extend(extra_engines(settings.whisper))
    return providers
