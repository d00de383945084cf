"""The Hub under faults: misbehaving loopback servers in front of (or instead of) the loopback
Hub server of tests/hub_server.py, the repos the Hub cases read, and pointing a (forked) case's
huggingface_hub at a server."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .builders import digest, hf_folder, tiny_model
from .editors import INDEX, edit_json, edit_zoo_yaml

#: the token of the loopback Hub's user, alice
ALICE = "hf_alice"


class FaultServer:
    """A loopback server that misbehaves the way networks and servers do, in front of (or
    instead of) a Hub server:

    - `silent`: accepts connections (the kernel's backlog) and never answers;
    - `refused`: nothing listens on the port;
    - `status:NNN`: every request answered with HTTP NNN and a JSON error;
    - `garbage`: bytes that are not HTTP, then the connection closes;
    - `redirect`: every request redirected to itself;
    - `cut`: a proxy to `upstream` that sends each file download's headers and half its body,
      then closes the connection;
    - `cut-api`: the same for the JSON API answers;
    - `bad-json`: a proxy whose JSON API answers are not JSON;
    - `flip`: a proxy that serves file bodies with their bytes altered (same length).
    """

    def __init__(self, mode: str, upstream: str | None = None):
        import socket

        self.mode, self.upstream = mode, upstream
        self._httpd: Any = None
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        if mode == "refused":
            self._sock.close()
        elif mode == "silent":
            self._sock.listen(512)
        else:
            self._sock.close()
            self._serve()

    def _serve(self) -> None:
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _handle(self) -> None:
                mode = server.mode
                body = self._body()
                if mode.startswith("status:"):
                    status = int(mode.split(":")[1])
                    payload = json.dumps({"error": f"fault server says {status}"}).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.send_header("X-Error-Message", f"fault server says {status}")
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                if mode == "garbage":
                    self.wfile.write(b"\x00\xffNOT HTTP AT ALL\r\n\r\n" * 3)
                    self.close_connection = True
                    return
                if mode == "redirect":
                    self.send_response(302)
                    self.send_header("Location", server.endpoint + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                up = urlsplit(server.upstream or "")
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read() if self.command != "HEAD" else b""
                is_file = "/resolve/" in self.path
                cut = (mode == "cut" and is_file) or (mode == "cut-api" and not is_file)
                if mode == "bad-json" and not is_file and data:
                    data = b"{this is not json" + data[:10]
                if mode == "flip" and is_file and data:
                    data = bytes(b ^ 0x5A for b in data)
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() in ("content-length", "transfer-encoding", "connection", "date", "server"):
                        continue
                    if k.lower() == "location":
                        v = v.replace(server.upstream or "", server.endpoint)
                    self.send_header(k, v)
                length = resp.getheader("Content-Length")
                self.send_header("Content-Length", length if self.command == "HEAD" and length else str(len(data)))
                if cut and data:
                    self.send_header("Connection", "close")
                self.end_headers()
                if self.command == "HEAD":
                    return
                if cut and data:
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> "FaultServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def fresh_hub_session() -> None:
    """A forked case must not share the parent's pooled HTTP connections."""
    with contextlib.suppress(Exception):
        import huggingface_hub

        huggingface_hub.close_session()


class PermanentPatch:
    """What tests.hub_server.hub_env needs of pytest's MonkeyPatch, applied for good (the
    process it runs in is a throwaway child, or the bench's server helper)."""

    def setenv(self, key: str, value: str) -> None:
        os.environ[key] = value

    def delenv(self, key: str, raising: bool = True) -> None:
        os.environ.pop(key, None)

    def setattr(self, obj: Any, name: str, value: Any) -> None:
        setattr(obj, name, value)


def point_hub_at(tmp: Path, endpoint: str, token: str | None = ALICE, offline: bool = False) -> None:
    """Point huggingface_hub at `endpoint`, with a fresh cache under `tmp`, in this (child) process."""
    from tests.hub_server import hub_env

    hub_env(PermanentPatch(), SimpleNamespace(endpoint=endpoint), tmp / "hf-cache", token=token, offline=offline)
    if token is None:
        os.environ.pop("HF_TOKEN", None)
    fresh_hub_session()


def hub_load(name: str, **kw: Any) -> str:
    """zoo.load(name) on a fresh HTTP session; the weights' digest."""
    import zoo

    fresh_hub_session()
    return digest(zoo.load(name, **kw))


def hub_push(name: str) -> str:
    import zoo

    fresh_hub_session()
    return zoo.push(tiny_model(seed=9), name)


def populate_hub(server: Any, root: Path) -> dict[str, str]:
    """The repos the Hub cases read, pushed to `server` as alice (huggingface_hub already pointed
    at it with alice's token; folders written under `root`): alice/tiny, alice/llama-2-7b (a
    user's repo named like a catalog model), alice/private, alice/gated, and hostile repos
    uploaded as raw files: bad-tok (zoo.yaml names ../../etc/passwd as the tokenizer), bad-heads
    (num_attention_heads 0), bad-rope (a string rope_parameters), bad-index (a shard outside
    the repo). Returns the digests of alice/tiny and alice/llama-2-7b."""
    from huggingface_hub import HfApi

    api = HfApi(token=ALICE)
    tiny, named = tiny_model(seed=7), tiny_model(seed=8)
    tiny.push("alice/tiny")
    named.push("alice/llama-2-7b")
    tiny.push("alice/private", private=True)
    tiny.push("alice/gated")
    server.set_gated("alice/gated")

    def upload(repo: str, folder: Path) -> None:
        api.create_repo(repo, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo)

    bad_tok = tiny.save(root / "bad-tok")
    edit_zoo_yaml(bad_tok, lambda d: d["spec"].__setitem__(
        "tokenizer", {"kind": "bpe", "file": "../../../../../../etc/passwd", "bos_id": 1, "eos_id": 2}))
    upload("alice/bad-tok", bad_tok)
    for repo, key, value in (("alice/bad-heads", "num_attention_heads", 0),
                             ("alice/bad-rope", "rope_parameters", "default")):
        folder = hf_folder(tiny, root / repo.split("/")[1])
        edit_json(folder / "config.json", lambda c, k=key, v=value: c.__setitem__(k, v))
        upload(repo, folder)
    sharded = hf_folder(tiny, root / "bad-index", max_shard_size=60000)
    edit_json(sharded / INDEX, lambda i: i["weight_map"].__setitem__(sorted(i["weight_map"])[0],
                                                                      "../../x.safetensors"))
    upload("alice/bad-index", sharded)
    return {"tiny": digest(tiny), "named": digest(named)}
