"""Word error rate per subset and per model, through the gateway and straight from faster-whisper.

Real recorded speech from the shared speech set (``../shared/speech``): the ``short`` subset (seventeen
recordings, eleven speakers) and the ``long`` one (two joins of five recordings each). Each recording is
sent as published (16 kHz and 44.1 kHz WAV, 48 kHz Ogg/Opus) three ways:

- gateway: ``Transcribe`` on ``audio-gateway serve`` (a subprocess, gRPC over loopback), local only, cache
  bypassed, with ``GATEWAY_WHISPER__MODEL`` set to the model under test and its defaults otherwise;
- direct: ``faster_whisper.WhisperModel.transcribe`` on the file (faster-whisper decodes it itself, through
  16-bit integers), beam 5, the same compute type, English;
- direct, gateway decode: the same call on the float samples the gateway's own decoder makes, so the two
  resampling paths (float in the gateway, 16-bit in faster-whisper) are compared on the same decoder.

WER is scored as the set's README says: Whisper's English normaliser, errors summed over a subset's words.
On the same model the gateway must not be more than 0.5 points worse than direct. On the long subset the
gateway decodes VAD windows (providers/longform.py) where faster-whisper decodes 30 s passes one after the
other, so there it may be better; a lower WER is never a miss.

Run: PYTHONPATH=. python bench/wer.py [--quick] [--model DIR_OR_NAME ...]
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import grpc
import numpy as np

from bench.harness import GatewayProcess, argument_parser, report
from gateway.api.v1 import audio_gateway_pb2 as pb
from gateway.api.v1 import audio_gateway_pb2_grpc as pb_grpc
from gateway.api.v1 import common_pb2 as common
from gateway.settings import WhisperSettings
from providers.faster_whisper import default_model_dir
from tests import speech
from tests.audio_files import recording

GOAL_POINTS = 0.5
SIDES = ("gateway", "direct", "direct, gateway decode")
QUICK_CLIPS = (
    "sphinx_goforward",
    "uberi_one_two_three",
    "fleurs_en_us_000",
    "librivox_sense_sensibility_0870",
)
GATEWAY_SETTINGS = {
    "GATEWAY_PIPER__ENABLED": "false",
    "GATEWAY_LLAMA__ENABLED": "false",
}


@dataclass
class Tally:
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIDES, 0))
    words: int = 0
    clips: int = 0

    def wer(self, side: str) -> float:
        return self.errors[side] / self.words if self.words else 0.0


def clips_by_subset(quick: bool) -> dict[str, list[str]]:
    subsets: dict[str, list[str]] = {}
    for clip_id, entry in speech.manifest().items():
        if quick and clip_id not in QUICK_CLIPS:
            continue
        subsets.setdefault(str(entry["subset"]), []).append(clip_id)
    return subsets


def model_dir(model: str) -> str:
    return model or str(default_model_dir())


class Direct:
    """faster-whisper in this process, called the way its README shows."""

    def __init__(self, model: str) -> None:
        from faster_whisper import WhisperModel

        compute_type = WhisperSettings().compute_type
        self._model = WhisperModel(model_dir(model), device="cpu", compute_type=compute_type)

    def transcribe(self, audio: str | np.ndarray) -> str:
        segments, _ = self._model.transcribe(audio, beam_size=5, language="en")
        return " ".join(s.text.strip() for s in segments)


async def through_gateway(stub: pb_grpc.AudioGatewayStub, data: bytes) -> str:
    request = pb.TranscribeRequest(
        audio=common.Audio(content=data),
        language="en",
        routing=common.RoutingOptions(privacy=common.PRIVACY_LOCAL_ONLY, cache=common.CACHE_MODE_BYPASS),
    )
    reply = await stub.Transcribe(request, timeout=900)
    return reply.text


async def measure(model: str, subsets: dict[str, list[str]], redis_url: str) -> dict[str, Tally]:
    direct = Direct(model)
    tallies = {subset: Tally() for subset in subsets}
    settings = {**GATEWAY_SETTINGS, "GATEWAY_WHISPER__MODEL": model}
    with GatewayProcess(settings, redis_url) as gateway:
        print(f"config: gateway subprocess with {gateway.describe()}", flush=True)
        async with grpc.aio.insecure_channel(gateway.target) as channel:
            stub = pb_grpc.AudioGatewayStub(channel)
            for subset, clip_ids in subsets.items():
                for clip_id in clip_ids:
                    entry = speech.manifest()[clip_id]
                    path = speech.SPEECH_DIR / str(entry["file"])
                    data = path.read_bytes()
                    samples = await recording(data).samples()
                    texts = {
                        "gateway": await through_gateway(stub, data),
                        "direct": await asyncio.to_thread(direct.transcribe, str(path)),
                        "direct, gateway decode": await asyncio.to_thread(direct.transcribe, samples),
                    }
                    tally = tallies[subset]
                    for side, text in texts.items():
                        tally.errors[side] += speech.errors(str(entry["reference"]), text)[0]
                    tally.words += speech.errors(str(entry["reference"]), "")[2]
                    tally.clips += 1
    return tallies


def summarize(model: str, tallies: dict[str, Tally]) -> None:
    name = model or "tiny.en (the default)"
    for subset, tally in tallies.items():
        gateway, direct = tally.wer("gateway"), tally.wer("direct")
        points = (gateway - direct) * 100
        report(
            f"{name} {subset}, gateway minus direct",
            f"{points:+.1f} points",
            f"<= +{GOAL_POINTS:g}",
            points <= GOAL_POINTS,
            f"{tally.clips} recordings, {tally.words} words; gateway {gateway:.1%} "
            f"({tally.errors['gateway']}), direct {direct:.1%} ({tally.errors['direct']}), direct on the "
            f"gateway's float decode {tally.wer('direct, gateway decode'):.1%} "
            f"({tally.errors['direct, gateway decode']})",
        )


def main() -> None:
    parser = argument_parser(__doc__, "four short recordings, one of each format")
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        help="a GATEWAY_WHISPER__MODEL value (a CTranslate2 directory); repeat for several; default tiny.en",
    )
    args = parser.parse_args()
    subsets = clips_by_subset(args.quick)
    for model in args.model or [""]:
        summarize(model, asyncio.run(measure(model, subsets, args.redis_url)))


if __name__ == "__main__":
    main()
