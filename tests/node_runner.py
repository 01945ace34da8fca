"""Node scripts under ``tests/node/``, run by the tests that check a contract from Node.

``node`` and ``npm`` are required, not optional: a machine without them fails with the command that
installs them (``.ci/run`` does). ``npm ci`` runs once, and not at all while ``tests/node/node_modules``
was installed from the same lockfile.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

NODE_DIR = Path(__file__).resolve().parent / "node"
# Node starts in ~0.1 s and every call carries a deadline of its own; this bounds a script that hangs anyway.
SCRIPT_TIMEOUT_S = 30.0


def node_binary() -> str:
    """The ``node`` binary, with ``tests/node/node_modules`` installed from the committed lockfile."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail(
            "the Node contract tests need node and npm on PATH: apt-get install nodejs npm (.ci/run does)",
            pytrace=False,
        )
    lockfile = (NODE_DIR / "package-lock.json").read_bytes()
    digest = hashlib.sha256(lockfile).hexdigest()
    # npm ci deletes node_modules first, so the mark survives only a complete install of this lockfile.
    mark = NODE_DIR / "node_modules" / ".lockfile-sha256"
    if not (mark.is_file() and mark.read_text() == digest):
        try:
            subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=NODE_DIR,
                check=True,
                capture_output=True,
                text=True,
                timeout=300,
            )
        except subprocess.CalledProcessError as exc:
            pytest.fail(f"npm ci in {NODE_DIR} failed:\n{exc.stderr[-4000:]}", pytrace=False)
        mark.write_text(digest)
    return node


async def run_node(node: str, script: str, *args: str, timeout_s: float = SCRIPT_TIMEOUT_S) -> dict[str, Any]:
    """Runs ``tests/node/<script>`` and returns the JSON it printed.

    A subprocess of the event loop, never ``subprocess.run``: the gateway serves on this same loop.
    """
    proc = await asyncio.create_subprocess_exec(
        node,
        str(NODE_DIR / script),
        *args,
        cwd=NODE_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"node {script} ran over {timeout_s} s") from None
    assert proc.returncode == 0, f"node {script} exited {proc.returncode}:\n{err.decode()[-4000:]}"
    return json.loads(out)
