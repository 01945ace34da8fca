"""A Whisper model whose encoder takes a batch of windows one at a time.

On the CPU, CTranslate2's encoder holds every attention score of a call at once: windows x heads x
1500 x 1500 floats, 9 MB per head and window. Eight windows of tiny.en (6 heads) are 432 MB on each
worker, and base's 8 heads 576 MB; two workers encoding such batches took the gateway to 1.5 GB. One
window at a time keeps the peak near 50 MB, and is also the fastest: a window's matrices are large
enough that batching them gains nothing, while the larger scores cost memory traffic. Six windows of
tiny.en took 0.94 s one at a time, 1.05 s two at a time and 1.22 s at once (2 threads, AVX-512). The
decoder still takes the whole batch at once, which is where batching pays.

It may also read fewer than the window's 3,000 mel frames: the audio and some silence after it, instead of
30 s mostly of padding (``batch_encoder_pad_s``). The attention cost falls with the square of the frames.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import numpy as np

if TYPE_CHECKING:
    import ctranslate2
    from faster_whisper import WhisperModel

# Windows encoded per call: the peak scales with it, and the speed does not gain from it.
ENCODE_AT_ONCE = 1


class _ChunkedEncoder:
    def __init__(self, model: WhisperModel, at_once: int, frames: int | None) -> None:
        self._model = model
        self._at_once = at_once
        self._frames = frames

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def encode(self, features: np.ndarray) -> ctranslate2.StorageView:
        if self._frames is not None:
            features = np.ascontiguousarray(features[..., : self._frames])
        if features.ndim == 2 or features.shape[0] <= self._at_once:
            return self._model.encode(features)
        import ctranslate2

        parts = [
            np.asarray(self._model.encode(features[start : start + self._at_once]))
            for start in range(0, features.shape[0], self._at_once)
        ]
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.concatenate(parts)))


def chunked_encoder(
    model: WhisperModel, at_once: int = ENCODE_AT_ONCE, frames: int | None = None
) -> WhisperModel:
    """``model``, except that ``encode`` runs at most ``at_once`` windows per call, and sees only the first
    ``frames`` mel frames of each window when that is given."""
    return cast("WhisperModel", _ChunkedEncoder(model, at_once, frames))
