"""A Whisper model whose encoder takes a batch of windows one at a time.

On the CPU, CTranslate2's encoder holds every attention score of a call at once: windows x heads x
1500 x 1500 floats, 9 MB per head and window. Eight windows of tiny.en (6 heads) are 432 MB on each
worker, and base's 8 heads 576 MB; two workers encoding such batches took the gateway to 1.5 GB. One
window at a time keeps the peak near 50 MB, and is also the fastest: a window's matrices are large
enough that batching them gains nothing, while the larger scores cost memory traffic. Six windows of
tiny.en took 0.94 s one at a time, 1.05 s two at a time and 1.22 s at once (2 threads, AVX-512). The
decoder still takes the whole batch at once, which is where batching pays.
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
    def __init__(self, model: WhisperModel, at_once: int) -> None:
        self._model = model
        self._at_once = at_once

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def encode(self, features: np.ndarray) -> ctranslate2.StorageView:
        if features.ndim == 2 or features.shape[0] <= self._at_once:
            return self._model.encode(features)
        import ctranslate2

        parts = [
            np.asarray(self._model.encode(features[start : start + self._at_once]))
            for start in range(0, features.shape[0], self._at_once)
        ]
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.concatenate(parts)))


def chunked_encoder(model: WhisperModel, at_once: int = ENCODE_AT_ONCE) -> WhisperModel:
    """``model``, except that ``encode`` runs at most ``at_once`` windows per call."""
    return cast("WhisperModel", _ChunkedEncoder(model, at_once))
