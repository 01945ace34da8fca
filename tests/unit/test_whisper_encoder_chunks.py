"""A batch's encoder pass window by window: the same output as one pass, in calls of bounded size.

The real tiny.en model: the point is that CTranslate2's own encoder output survives being split and joined."""

from __future__ import annotations

import math

import numpy as np
import pytest
from faster_whisper import WhisperModel

from providers.faster_whisper import default_model_dir
from providers.whisper_encoder import ENCODE_AT_ONCE, chunked_encoder


@pytest.fixture(scope="module")
def model() -> WhisperModel:
    return WhisperModel(str(default_model_dir()), device="cpu", compute_type="int8", cpu_threads=1)


def _features(windows: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.standard_normal((windows, 80, 3000)).astype(np.float32)


def test_a_batch_is_encoded_in_calls_of_at_most_encode_at_once_windows(model, monkeypatch):
    sizes: list[int] = []
    real = model.encode

    def counted(features: np.ndarray):
        sizes.append(1 if features.ndim == 2 else features.shape[0])
        return real(features)

    monkeypatch.setattr(model, "encode", counted)
    out = chunked_encoder(model).encode(_features(5))
    assert np.asarray(out).shape == (5, 1500, 384)
    assert sum(sizes) == 5 and max(sizes) <= ENCODE_AT_ONCE and len(sizes) == math.ceil(5 / ENCODE_AT_ONCE)


def test_chunked_output_matches_one_call_window_for_window(model):
    features = _features(3)
    whole = np.asarray(model.encode(features))
    chunked = np.asarray(chunked_encoder(model).encode(features))
    assert chunked.shape == whole.shape
    np.testing.assert_allclose(chunked, whole, rtol=1e-4, atol=1e-4)
    # Windows stay in order: each row is its own window's encoding, not a neighbour's.
    assert not np.allclose(chunked[0], chunked[2], atol=1e-3)


def test_everything_else_is_the_model_s_own(model):
    wrapped = chunked_encoder(model)
    assert wrapped.feature_extractor is model.feature_extractor
    assert wrapped.model is model.model
    single = _features(1)[0]
    alone = np.asarray(model.encode(single))
    np.testing.assert_allclose(np.asarray(wrapped.encode(single)), alone, atol=1e-5)


def test_frames_trims_every_window_to_its_first_frames(model):
    features = _features(2)
    out = np.asarray(chunked_encoder(model, frames=1000).encode(features))
    # The encoder halves the frame rate: 1,000 mel frames (10 s) become 500 positions, not 1,500.
    assert out.shape == (2, 500, 384)
    alone = np.asarray(model.encode(np.ascontiguousarray(features[1:, :, :1000])))
    np.testing.assert_allclose(out[1:], alone, rtol=1e-4, atol=1e-4)
