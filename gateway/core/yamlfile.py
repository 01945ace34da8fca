"""Reading configuration YAML with errors that name the file, the line and the problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError


class ConfigFileError(ValueError):
    pass


def load(path: Path) -> tuple[Any, yaml.Node | None]:
    """The parsed document and its node tree (for line numbers)."""
    try:
        text = path.read_text(encoding="utf-8")
        return yaml.safe_load(text), yaml.compose(text)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigFileError(f"{path}: {exc}") from exc


def item_lines(document: yaml.Node | None, key: str) -> list[int]:
    """1-based line of each item of the top-level list ``key``."""
    if not isinstance(document, yaml.MappingNode):
        return []
    for key_node, value in document.value:
        if getattr(key_node, "value", None) == key and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def where(path: Path, lines: list[int], index: int) -> str:
    return f"{path}:{lines[index] if index < len(lines) else '?'}"


def describe(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in exc.errors())
