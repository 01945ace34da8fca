"""Self-hosted servers that speak OpenAI's API: Speaches, vLLM, LocalAI and the like.

The wire format is OpenAI's, so the code path is :class:`providers.openai.OpenAIProvider`'s; what
differs is what the server is. It runs inside the organisation (``on_prem``, not retaining data, unless
the entry says otherwise), it must be given its ``base_url``, it serves whatever model names it was
started with, and it names its own voices: any voice is passed through unless the entry lists
``voices``.

Live transcription goes through the Realtime protocol (``/v1/realtime?intent=transcription``), which not
every such server speaks: an entry streams only with ``options.realtime: true``. The server is told the
model in the URL as well as in the session; ``options.realtime_sample_rate`` (24000 by default, as OpenAI
requires) and ``options.realtime_vad`` follow what the server was built for, and
``options.realtime_protocol: vllm`` selects vLLM's dialect of the protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from providers.openai import OpenAIProvider

if TYPE_CHECKING:
    from providers.config import ProviderConfig


class OpenAICompatibleProvider(OpenAIProvider):
    known_voices: ClassVar[frozenset[str] | None] = None
    streams_by_default: ClassVar[bool] = False
    # Not every server serves /audio/translations, nor with every model: an entry lists ``translate``
    # among its ``features`` when its server does.
    translates: ClassVar[bool] = False
    realtime_model_in_url: ClassVar[bool] = True

    def __init__(self, config: ProviderConfig) -> None:
        if not config.base_url:
            raise ValueError(
                f"provider {config.name!r} (kind openai_compatible) needs base_url: the server's /v1 URL, "
                "e.g. http://speaches:8000/v1"
            )
        super().__init__(config)
