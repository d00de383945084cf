"""Hub faults end in a HubError, in bounded time: a server that accepts and never answers, a
refused connection, an answer cut short, a malformed repo id; a name with `/` is a repo id,
never a catalog model; a snapshot verified in one cache does not vouch for another."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import torch

import zoo
from tests.hub_server import HubServer, hub_env
from zoo.checkpoint import CheckpointError
from zoo.hub import HubError


class RawServer:
    """A TCP server on loopback that, per connection, answers `reply` (or nothing) and keeps
    or closes the socket: for the faults a real Hub server never makes on purpose."""

    def __init__(self, reply: bytes | None, close: bool = True):
        self.reply, self.close = reply, close
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.endpoint = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.reply is not None:
                conn.recv(65536)
                conn.sendall(self.reply)
            if self.close and self.reply is not None:
                conn.close()
            else:
                self.held.append(conn)

    def stop(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


@pytest.fixture
def fast_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    import zoo.hub

    monkeypatch.setattr(zoo.hub, "READ_TIMEOUT", 1.5)
    monkeypatch.setattr(zoo.hub, "CONNECT_TIMEOUT", 1.5)
    huggingface_hub.close_session()  # the next request builds a client with these
    yield
    huggingface_hub.close_session()


def _raw(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, reply: bytes | None, close: bool = True) -> Iterator[None]:
    server = RawServer(reply, close)
    hub_env(monkeypatch, server, tmp_path / "cache")  # type: ignore[arg-type]
    return server  # type: ignore[return-value]


def _fails_fast(name: str, match: str, seconds: float = 20.0) -> None:
    t = time.perf_counter()
    with pytest.raises(HubError, match=match):
        zoo.load(name)
    assert time.perf_counter() - t < seconds


def test_a_server_that_never_answers_times_out(monkeypatch, tmp_path, fast_timeouts) -> None:  # noqa: ANN001
    server = _raw(monkeypatch, tmp_path, None)
    try:
        _fails_fast("alice/silent", "could not be reached|did not answer in time")
    finally:
        server.stop()


def test_a_refused_connection(monkeypatch, tmp_path, fast_timeouts) -> None:  # noqa: ANN001
    server = _raw(monkeypatch, tmp_path, b"")
    server.stop()  # nothing listens on the port any more
    _fails_fast("alice/gone", "could not be reached|did not answer")


def test_an_answer_cut_short(monkeypatch, tmp_path, fast_timeouts) -> None:  # noqa: ANN001
    cut = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"id\": \"al"
    server = _raw(monkeypatch, tmp_path, cut)
    try:
        _fails_fast("alice/cut", "could not be reached|Hub")
    finally:
        server.stop()


@pytest.mark.parametrize("name", ["a//b", "al ice/x", "-x/y", "alice/../x", "org/name/..", "a/b" + "c" * 200])
def test_malformed_repo_ids_are_refused_before_any_request(name: str) -> None:
    with pytest.raises((HubError, CheckpointError), match="not a Hub repo id|subfolder|no such checkpoint"):
        zoo.load(name)


def test_a_name_with_a_slash_is_never_a_catalog_model(monkeypatch, tmp_path) -> None:  # noqa: ANN001
    with HubServer() as server:
        hub_env(monkeypatch, server, tmp_path / "cache")
        with pytest.raises(HubError, match="alice/llama-2-7b: repository not found"):
            zoo.load("alice/llama-2-7b")
        with pytest.raises(HubError, match="alice/tiny-code: repository not found"):
            zoo.load("alice/tiny-code")
    with pytest.raises(zoo.UnknownModelError):
        zoo.spec("alice/llama-2-7b")


def test_a_snapshot_verified_in_one_cache_does_not_vouch_for_another(monkeypatch, tmp_path) -> None:  # noqa: ANN001
    m = zoo.build("llama-2-7b", ["arch.dim=64", "arch.n_layers=1", "arch.attention.n_heads=4",
                                 "arch.ffn.hidden_dim=96", "arch.vocab_size=128"])
    with HubServer(tokens={"hf_alice": "alice"}) as server:
        env = hub_env(monkeypatch, server, tmp_path / "cache-a", token="hf_alice")
        zoo.push(m, "alice/twice")
        zoo.load("alice/twice")  # verified in cache A
        from zoo.hub import download

        folder, _ = download("alice/twice", cache_dir=tmp_path / "cache-b", verify=False)
        env.set_offline(True)
    blob = (folder / "model.safetensors").resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF  # same size, one byte flipped
    blob.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="do not match the Hub's checksum"):
        zoo.load("alice/twice", cache_dir=tmp_path / "cache-b")
    again = zoo.load("alice/twice")  # cache A is untouched, and still trusted
    assert all(torch.equal(again.state_dict()[k], v) for k, v in m.state_dict().items())
