"""The committed generated code is exactly what the protos produce."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_matches_protos(tmp_path):
    # protos/grpc holds standard protos shipped for clients (compiled by their own packages), not ours.
    protos = sorted((ROOT / "protos" / "gateway").rglob("*.proto"))
    assert protos
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{ROOT / 'protos'}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            *map(str, protos),
        ],
        check=True,
    )
    generated = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*.py*") if p.is_file()}
    committed_dir = ROOT / "gateway" / "api" / "v1"
    committed = {
        p.relative_to(ROOT): p.read_bytes()
        for p in committed_dir.iterdir()
        if p.name.endswith(("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"))
    }
    assert set(generated) == set(committed), "the generated file set differs: see docs/development.md"
    stale = [str(name) for name, content in generated.items() if committed[name] != content]
    assert not stale, f"generated code is stale, regenerate it: {stale}"
