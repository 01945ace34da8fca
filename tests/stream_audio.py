"""Caller audio in the encodings StreamTranscribe takes, made from s16le mono PCM with PyAV's encoders."""

from __future__ import annotations

import io

import av
import numpy as np


def _frame(pcm: bytes, rate: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(
        np.frombuffer(pcm, dtype="<i2").reshape(1, -1), format="s16", layout="mono"
    )
    frame.sample_rate = rate
    return frame


def to_mulaw(pcm: bytes, rate: int = 8_000) -> bytes:
    codec = av.CodecContext.create("pcm_mulaw", "w")
    codec.sample_rate, codec.layout, codec.format = rate, "mono", "s16"
    packets = [*codec.encode(_frame(pcm, rate)), *codec.encode(None)]
    return b"".join(bytes(p) for p in packets)


def ogg_opus(pcm: bytes, rate: int = 48_000) -> bytes:
    out = io.BytesIO()
    with av.open(out, "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=rate)
        stream.layout = "mono"
        for packet in stream.encode(_frame(pcm, rate)):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()
