"""Zoo downloads from a real HTTP server on loopback, and the default checkpoint of the CLIs.

Mutations tried: skipping the sha256 check in ``_download`` (fails the wrong-hash test), not
reading the cache first in ``_fetch_zoo`` (fails the second-use test), ``default_checkpoint``
returning the alias without probing the server (fails the unreachable test).
"""
from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest

from export import zoo
from export.zoo import ZOO, ZooEntry, default_checkpoint, zoo_path
from runtime.errors import UserError

PAYLOAD = b"not really weights, but bytes with a known sha256 " * 1000


@pytest.fixture()
def server(tmp_path):
    """A loopback HTTP server over a folder; ``requests`` lists the paths it was asked for."""
    root = tmp_path / "served"
    root.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("HRNET_DEPLOY_CACHE", str(folder))
    monkeypatch.delenv(zoo.ZOO_URL_ENV, raising=False)
    return folder


def fake_entry(base_url: str, prefix: str, arch: str = "w32", size: int = 512) -> ZooEntry:
    name = "fake_coco_512x512-00000000"
    return ZooEntry(name=name, alias="fake_512", url=f"{base_url}/{name}.pth", sha256_prefix=prefix, arch=arch,
                    input_size=size, metrics={"AP": 0.0})


def test_download_verifies_and_caches(server, cache, monkeypatch):
    root, base, requests = server
    entry = fake_entry(base, hashlib.sha256(PAYLOAD).hexdigest()[:8])
    (root / entry.filename).write_bytes(PAYLOAD)
    monkeypatch.setitem(ZOO, entry.alias, entry)
    path = zoo_path(entry.alias)
    assert path == cache / entry.filename and path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in cache.iterdir()) == [entry.filename]  # no partial file beside it
    assert zoo_path(entry.alias) == path  # the second use reads the cache
    assert requests == [f"/{entry.filename}"]


def test_download_with_wrong_hash_is_refused_in_one_line(server, cache, monkeypatch):
    root, base, _ = server
    entry = fake_entry(base, "deadbeef")
    (root / entry.filename).write_bytes(PAYLOAD)
    monkeypatch.setitem(ZOO, entry.alias, entry)
    with pytest.raises(UserError) as error:
        zoo_path(entry.alias)
    message = str(error.value)
    assert "\n" not in message and "sha256" in message and "deadbeef" in message and entry.url in message
    assert not cache.exists() or not list(cache.iterdir())


def test_mirror_variable_replaces_the_address(server, cache, monkeypatch):
    root, base, requests = server
    entry = ZOO["w32_512"]
    monkeypatch.setenv(zoo.ZOO_URL_ENV, base + "/mirror/")
    (root / "mirror").mkdir()
    (root / "mirror" / entry.filename).write_bytes(PAYLOAD)  # wrong bytes for the real file
    with pytest.raises(UserError, match="expected it to start with 8ae85183"):
        zoo_path("w32_512")
    assert requests == [f"/mirror/{entry.filename}"]


def test_default_uses_the_zoo_when_its_server_answers(server, cache, monkeypatch):
    _, base, requests = server
    monkeypatch.setenv(zoo.ZOO_URL_ENV, base)
    assert default_checkpoint("w32", 640) == ("w32_640", None)
    assert requests == []  # only a connection was opened; the download happens when weights load


def test_default_uses_a_cached_file_without_the_network(cache, monkeypatch):
    monkeypatch.setenv(zoo.ZOO_URL_ENV, "http://127.0.0.1:9")
    cache.mkdir()
    (cache / ZOO["w48_512"].filename).write_bytes(b"x")
    assert default_checkpoint("w48", 512) == ("w48_512", None)


def test_default_falls_back_to_synthetic_when_unreachable(cache, monkeypatch):
    with socket.socket() as closed:  # a loopback port that nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv(zoo.ZOO_URL_ENV, f"http://127.0.0.1:{port}")
    spec, note = default_checkpoint("w32", 512)
    assert spec == "synthetic:0"
    assert "\n" not in note and "not a trained model" in note and "127.0.0.1 cannot be reached" in note
    assert str(cache / ZOO["w32_512"].filename) in note and "--checkpoint PATH" in note


def test_default_without_a_released_checkpoint():
    spec, note = default_checkpoint("w48", 640)
    assert spec == "synthetic:0" and "no released checkpoint for HigherHRNet-W48 at input 640" in note
