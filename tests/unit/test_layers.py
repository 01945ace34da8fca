"""The one-way dependency rule of docs/architecture.md, checked on every import.

Every import counts: module level, inside functions, and under TYPE_CHECKING, because a type-level
cycle is still a cycle a reader has to untangle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "providers", "policies")

# Lower numbers sit lower. A module may import its own unit, or any unit with a lower rank.
RANKS: dict[str, int] = {
    "gateway.core": 0,
    "gateway.settings": 0,
    "gateway.api": 0,
    "providers": 1,
    "policies": 1,
    "gateway.health": 2,
    "gateway.money": 2,
    "gateway.telemetry": 2,
    "gateway.cache": 3,
    "gateway.ledger": 3,
    "gateway.routing": 4,
    # The composition root, then the doors that serve it, then the command line over them all.
    "gateway.app": 5,
    "gateway.embedded_store": 5,
    "gateway.grpc": 6,
    "gateway.http": 6,
    "gateway.client": 6,
    "gateway.cli": 7,
}
# Generated protobuf code is the wire contract: only the doors speak it.
DOORS_ONLY = {"gateway.api"}


def unit_of(module: str) -> str:
    """The layer unit a dotted module name belongs to (longest matching prefix)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in RANKS:
            return prefix
    if module == "gateway":
        return "gateway.app"
    raise KeyError(module)


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str) -> list[tuple[int, str]]:
    tree = ast.parse(source)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from gateway import audio` imports the submodule gateway.audio.
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name.split(".")[0] in PACKAGES]


def our_modules() -> list[Path]:
    return sorted(
        p
        for package in PACKAGES
        for p in (ROOT / package).rglob("*.py")
        if "api" not in p.relative_to(ROOT).parts[1:2]
    )


def violations(importer: str, label: str, source: str) -> list[str]:
    own = unit_of(importer)
    found = []
    for line, target in imports_of(source):
        try:
            unit = unit_of(target)
        except KeyError:
            continue  # `from gateway import x` where x is a name, judged by its own entry
        if unit == own:
            continue
        if unit in DOORS_ONLY and RANKS[own] < RANKS["gateway.grpc"]:
            found.append(f"{label}:{line}: {own} imports {target} (generated code)")
        elif RANKS[unit] >= RANKS[own] and unit not in DOORS_ONLY:
            found.append(
                f"{label}:{line}: {own} (rank {RANKS[own]}) imports {target} ({unit}, rank {RANKS[unit]})"
            )
    return found


def test_every_module_belongs_to_a_layer() -> None:
    unplaced = []
    for path in our_modules():
        try:
            unit_of(module_name(path))
        except KeyError:
            unplaced.append(str(path.relative_to(ROOT)))
    assert not unplaced, f"modules outside every layer of docs/architecture.md: {unplaced}"


def test_no_module_imports_upward() -> None:
    found = [
        v
        for path in our_modules()
        for v in violations(module_name(path), str(path.relative_to(ROOT)), path.read_text(encoding="utf-8"))
    ]
    assert not found, "upward imports:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from gateway.routing.router import Router\n", True),
        ("if TYPE_CHECKING:\n    from gateway.settings import WhisperSettings\n", False),
        ("def f():\n    from gateway.cache import results\n", True),
        ("from gateway.core import errors\n", False),
    ],
)
def test_the_checker_sees_upward_imports(source: str, expected: bool) -> None:
    # As if a provider module held this source: only imports above rank 1 are upward.
    assert bool(violations("providers.probe", "probe.py", source)) is expected
