"""A Hugging Face Hub-compatible HTTP server for tests (standard library only).

The real ``huggingface_hub`` client (2.x, httpx2-based) talks to it when pointed at its ``endpoint``:
repo creation/deletion, ``create_commit``/``upload_folder`` (inline base64 files and, when
``lfs_threshold`` is set, the legacy git-LFS "basic" transfer), ``repo_info``/``model_info``,
``list_repo_tree``/``get_paths_info``, ``list_repo_refs``/``list_repo_commits``, branches, tags,
``hf_hub_download``/``snapshot_download`` (GET/HEAD ``/resolve`` with Range), ``whoami``.
Xet is never advertised: no ``X-Xet-*`` headers, and the client must run with xet disabled
before the server answers ``uploadMode: "lfs"`` (``hub_env`` does it).

Storage lives under ``root``: ``blobs/<sha256>`` (content addressed, shared) and one JSON file per
repo in ``repos/<type>s/<namespace>/<name>.json`` holding its commits (40-hex sha, parent, message,
full file map ``path -> {sha256, size, oid, lfs, blob}``), its branches (``main`` at the latest
commit) and tags. A new repo starts with an empty "initial commit" (no ``.gitattributes``).

Auth mirrors the Hub: tokens map to users (``tokens={"hf_x": "alice"}`` or ``add_token``); a user
writes to its own namespace and its orgs. A private repo answers 401 (anonymous) or 404 (other
users) with ``X-Error-Code: RepoNotFound``; an unknown token answers 401 "Invalid credentials in
Authorization header"; a gated repo (``set_gated``) blocks ``/resolve`` with ``GatedRepo``. A missing
repo, revision or file answers 404 ``RepoNotFound``/``RevisionNotFound``/``EntryNotFound`` (the last
with ``X-Repo-Commit``). Repo ids are always ``namespace/name``. Pull requests are not supported.

Typical use in a test::

    with HubServer(tokens={"hf_token": "alice"}) as server:
        env = hub_env(monkeypatch, server, tmp_path / "cache", token="hf_token")
        ...  # huggingface_hub calls now hit the server and cache under tmp_path
        env.set_offline(True)  # HF_HUB_OFFLINE for the rest of the test
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import os
import re
import secrets
import shutil
import socket
import socketserver
import tempfile
import threading
import traceback
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

_PLURAL = {"models": "model", "datasets": "dataset", "spaces": "space"}
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_HEX = re.compile(r"[0-9a-f]{7,40}")
_CHUNK = 1 << 20


class HubError(Exception):
    """An error answered the way the Hub does: status, ``X-Error-Code``/``X-Error-Message``, JSON body."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers, self.extra = headers or {}, extra


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _clean_path(path: str) -> str:
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise HubError(400, f"Invalid path in repo: {path!r}")
    return path


class HubServer:
    """In-process, threaded Hub server bound to ``host`` with an OS-chosen port (``port=0``).

    Args:
        root: storage folder; a temporary one (removed by ``stop``) when ``None``.
        tokens: ``{token: username}``; more with ``add_token``.
        lfs_threshold: files of at least this many bytes are answered ``uploadMode: "lfs"`` by
            ``preupload``; ``None`` (default) uploads everything inline (base64 in the commit).
        max_workers: bound on concurrent connections served (keep-alive connections included).
    """

    def __init__(self, root: str | os.PathLike | None = None, *, tokens: dict[str, str] | None = None,
                 host: str = "127.0.0.1", port: int = 0, lfs_threshold: int | None = None,
                 max_workers: int = 32, max_body_bytes: int = 1 << 30):
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="hub-server-") if root is None else root)
        self.host, self.port, self.endpoint = host, port, ""
        self.lfs_threshold, self.max_workers, self.max_body_bytes = lfs_threshold, max_workers, max_body_bytes
        self.tokens: dict[str, str] = dict(tokens or {})
        self.orgs: dict[str, set[str]] = {}
        self.repos: dict[tuple[str, str], dict] = {}
        self.lock = threading.RLock()
        self._pending_lfs: dict[str, tuple[str, int]] = {}  # upload secret -> (sha256, size)
        self.errors: list[str] = []  # tracebacks of requests that failed with a server bug (HTTP 500)
        self.requests: deque[tuple[str, str, int]] = deque(maxlen=10_000)  # (method, path, status) served
        self._httpd: _BoundedHTTPServer | None = None
        self._thread: threading.Thread | None = None
        for sub in ("blobs", "tmp", "repos"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for f in (self.root / "repos").glob("*/*/*.json"):  # reuse an existing root
            repo = json.loads(f.read_text())
            self.repos[(repo["type"], repo["id"])] = repo

    # ----------------------------------------------------------------- lifecycle & test helpers
    def start(self) -> "HubServer":
        if self._httpd is None:
            self._httpd = _BoundedHTTPServer((self.host, self.port), _Handler, self)
            self.port = self._httpd.server_address[1]
            self.endpoint = f"http://{self.host}:{self.port}"
            self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                            name=f"hub-server-{self.port}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open connections, join the threads; remove ``root`` if it was temporary."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=10)
            self._httpd = self._thread = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def add_token(self, token: str, user: str, orgs: tuple[str, ...] | list[str] = ()) -> None:
        """Accept ``token`` as ``user``, who may also write to the namespaces in ``orgs``."""
        with self.lock:
            self.tokens[token] = user
            self.orgs.setdefault(user, set()).update(orgs)

    def set_gated(self, repo_id: str, gated: bool | str = "manual", allowed: tuple | list = (),
                  repo_type: str = "model") -> None:
        """Gate a repo's downloads; ``allowed`` users (and the owners) keep access."""
        with self.lock:
            repo = self.repos[(repo_type, repo_id)]
            repo["gated"] = ("manual" if gated is True else gated) or False
            repo["access"] = sorted(set(repo.get("access", [])) | set(allowed))
            self._save(repo)

    def commits(self, repo_id: str, repo_type: str = "model") -> list[str]:
        """Commit shas of a repo, oldest first (``[-1]`` is the latest one, whatever the branch)."""
        with self.lock:
            return list(self.repos[(repo_type, repo_id)]["commits"])

    # ----------------------------------------------------------------- storage
    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256

    def _store_chunks(self, chunks, expected_sha256: str | None = None, expected_size: int | None = None) -> dict:
        """Stream content into the blob store (checked against the expected oid/size); ``{sha256, size, blob}``."""
        h256, size = hashlib.sha256(), 0
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    h256.update(chunk)
                    size += len(chunk)
                    f.write(chunk)
            sha = h256.hexdigest()
            if (expected_sha256 and sha != expected_sha256) or (expected_size is not None and size != expected_size):
                raise HubError(400, f"Uploaded content does not match oid {expected_sha256} / size {expected_size}")
            os.replace(tmp, self.blob_path(sha))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return {"sha256": sha, "size": size, "blob": str(self.blob_path(sha))}

    def _save(self, repo: dict) -> None:
        path = self.root / "repos" / f"{repo['type']}s" / f"{repo['id']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(repo, indent=1))
        os.replace(tmp, path)

    def _new_commit(self, repo: dict, parent: str | None, files: dict, title: str, message: str, author: str) -> str:
        seed = f"{repo['type']}/{repo['id']}\n{parent}\n{len(repo['commits'])}\n{title}\n{secrets.token_hex(8)}"
        sha = hashlib.sha1((seed + json.dumps(files, sort_keys=True)).encode()).hexdigest()
        repo["commits"][sha] = {"parent": parent, "title": title, "message": message, "author": author,
                                "date": _now(), "files": files}
        return sha

    # ----------------------------------------------------------------- auth & lookups
    def _can_write(self, user: str | None, namespace: str) -> bool:
        return user is not None and (namespace == user or namespace in self.orgs.get(user, ()))

    def _repo(self, rtype: str, repo_id: str, user: str | None, write: bool = False) -> dict:
        repo = self.repos.get((rtype, repo_id))
        namespace = repo_id.split("/")[0]
        if repo is None or (repo["private"] and not self._can_write(user, namespace)):
            if repo is not None and user is None:
                raise HubError(401, "Repository not found", "RepoNotFound")
            raise HubError(404, "Repository not found", "RepoNotFound")
        if write and not self._can_write(user, namespace):
            if user is None:
                raise HubError(401, "You must be authenticated to access this resource")
            raise HubError(403, f"You don't have the rights to write to {rtype}s/{repo_id}")
        return repo

    @staticmethod
    def _resolve(repo: dict, rev: str) -> str:
        """Branch, tag, ``refs/heads/x``, ``refs/tags/x``, full sha or unique sha prefix -> commit sha."""
        for prefix, table in (("refs/heads/", "branches"), ("refs/tags/", "tags"), ("", "branches"), ("", "tags")):
            if rev.startswith(prefix) and rev[len(prefix):] in repo[table]:
                return repo[table][rev[len(prefix):]]
        if _HEX.fullmatch(rev):
            found = [sha for sha in repo["commits"] if sha.startswith(rev)]
            if len(found) == 1:
                return found[0]
        raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")

    def _url(self, repo: dict) -> str:
        return f"{self.endpoint}/{_URL_PREFIX[repo['type']]}{repo['id']}"


def _file_json(path: str, e: dict) -> dict:
    out = {"type": "file", "oid": e["oid"], "size": e["size"], "path": path}
    if e["lfs"]:
        out["lfs"] = {"oid": e["sha256"], "size": e["size"],
                      "pointerSize": len(_lfs_pointer(e["sha256"], e["size"]))}
    return out


def _dir_json(path: str, files: dict) -> dict:
    inner = sorted((p, e["oid"]) for p, e in files.items() if p.startswith(path + "/"))
    return {"type": "directory", "oid": hashlib.sha1(json.dumps(inner).encode()).hexdigest(), "size": 0, "path": path}


class _BoundedHTTPServer(HTTPServer):
    """HTTPServer serving connections from a fixed-size thread pool, closing them all on ``server_close``."""

    allow_reuse_address = True

    def __init__(self, address, handler, hub: HubServer):
        self.hub = hub
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, handler)
        port = self.server_address[1]
        self._pool = ThreadPoolExecutor(hub.max_workers, thread_name_prefix=f"hub-server-{port}-worker")

    def server_bind(self):  # skip HTTPServer's getfqdn(): it can hang without DNS
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request, client_address):
        with self._conns_lock:
            self._conns.add(request)
        self._pool.submit(self._serve, request, client_address)

    def _serve(self, request, client_address):
        try:
            self.finish_request(request, client_address)
        except Exception:
            pass  # client went away, or stop() closed the socket: nothing to report
        finally:
            with self._conns_lock:
                self._conns.discard(request)
            self.shutdown_request(request)

    def server_close(self):
        super().server_close()
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:  # wake up workers blocked on idle keep-alive connections
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._pool.shutdown(wait=True, cancel_futures=True)
        for conn in self._conns:  # connections whose work was cancelled before it started
            conn.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections are closed after this many seconds
    server_version = "hub-test-server"
    server: _BoundedHTTPServer

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms Nagle stalls

    def log_message(self, format, *args):  # quiet: no request log on stderr
        pass

    # ----------------------------------------------------------------- plumbing
    def _dispatch(self) -> None:
        self.hub, self._body_read = self.server.hub, False
        url = urlsplit(self.path)
        self.query = parse_qs(url.query)
        try:
            try:
                self._route(self.command, [unquote(seg) for seg in url.path.split("/")[1:]])
            except (ValueError, KeyError, TypeError) as e:  # malformed payloads
                raise HubError(400, f"Bad request: {e!r}") from e
            except (HubError, ConnectionError, TimeoutError):
                raise
            except Exception as e:  # a server bug: answer 500 and keep it for the test to inspect
                self.hub.errors.append(traceback.format_exc())
                raise HubError(500, f"Internal error in the test server: {e!r}") from e
        except HubError as e:
            headers = {"X-Error-Message": e.message, **e.headers, **({"X-Error-Code": e.code} if e.code else {})}
            self._send(e.status, json.dumps({"error": e.message, **e.extra}).encode(), headers=headers)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    def _send(self, status: int, body: bytes = b"", ctype: str = "application/json", headers: dict | None = None,
              length: int | None = None) -> None:
        has_body = self.headers.get("Content-Length", "0") != "0" or "Transfer-Encoding" in self.headers
        if has_body and not self._body_read:  # unread request body: the connection can't be reused
            self.close_connection = True
        self.hub.requests.append((self.command, self.path, status))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, data, status: int = 200, ctype: str = "application/json") -> None:
        self._send(status, json.dumps(data).encode(), ctype)

    def _iter_body(self):
        """Request body chunks, for ``Content-Length`` and ``Transfer-Encoding: chunked`` requests."""
        self._body_read = True
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline(1024).split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                yield from self._read_exact(size)
                self.rfile.readline(1024)
        else:
            yield from self._read_exact(int(self.headers.get("Content-Length") or 0))

    def _read_exact(self, remaining: int):
        while remaining > 0:
            data = self.rfile.read(min(_CHUNK, remaining))
            if not data:
                raise ConnectionError("client closed the connection mid-body")
            remaining -= len(data)
            yield data

    def _body(self) -> bytes:
        out, total = [], 0
        for chunk in self._iter_body():
            total += len(chunk)
            if total > self.hub.max_body_bytes:
                self.close_connection = True
                raise HubError(413, "Request body too large")
            out.append(chunk)
        return b"".join(out)

    def _json_body(self) -> dict:
        return json.loads(self._body() or b"{}")

    def _user(self) -> str | None:
        auth = self.headers.get("Authorization")
        if not auth:
            return None
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        with self.hub.lock:
            user = self.hub.tokens.get(token)
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return user

    # ----------------------------------------------------------------- routing
    def _route(self, method: str, s: list[str]) -> None:
        if s[:1] == ["api"]:
            if s[1:] == ["whoami-v2"] and method == "GET":
                return self._whoami()
            if s[1:] == ["repos", "create"] and method == "POST":
                return self._create_repo()
            if s[1:] == ["repos", "delete"] and method == "DELETE":
                return self._delete_repo()
            if s[1:] == ["validate-yaml"] and method == "POST":
                self._body()
                return self._json({"errors": [], "warnings": []})
            if len(s) >= 4 and s[1] in _PLURAL:
                return self._repo_api(method, _PLURAL[s[1]], f"{s[2]}/{s[3]}", s[4:])
        if s[:2] == ["_lfs", "upload"] and len(s) == 3 and method == "PUT":
            return self._lfs_upload(s[2])
        if s[:2] == ["_lfs", "verify"] and method == "POST":
            return self._lfs_verify()
        rtype = "model"
        if s and s[0] in ("datasets", "spaces"):
            rtype, s = _PLURAL[s[0]], s[1:]
        if len(s) == 6 and s[1].endswith(".git") and s[2:] == ["info", "lfs", "objects", "batch"]:
            if method == "POST":
                return self._lfs_batch(rtype, f"{s[0]}/{s[1][:-4]}")
        if len(s) >= 5 and s[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve_file(rtype, f"{s[0]}/{s[1]}", s[3], "/".join(s[4:]))
        raise HubError(404, f"Not found: {method} {self.path}")

    def _repo_api(self, method: str, rtype: str, repo_id: str, rest: list[str]) -> None:
        hub, user = self.hub, self._user()
        action, arg = (rest[0] if rest else ""), "/".join(rest[1:])
        write = method in ("POST", "PUT", "DELETE") and action != "paths-info"
        with hub.lock:
            repo = hub._repo(rtype, repo_id, user, write=write)
        if method == "GET" and action in ("", "revision"):
            return self._info(repo, arg or "main")
        if method == "GET" and action == "tree" and rest[1:]:
            return self._tree(repo, rest[1], "/".join(rest[2:]))
        if method == "POST" and action == "paths-info" and arg:
            return self._paths_info(repo, arg)
        if method == "GET" and action == "refs":
            return self._refs(repo)
        if method == "GET" and action == "commits" and arg:
            return self._list_commits(repo, arg)
        if method == "GET" and action == "auth-check":
            return self._json({})
        if method == "POST" and action == "preupload" and arg:
            return self._preupload(repo, arg)
        if method == "POST" and action == "commit" and arg:
            return self._commit(repo, arg, user)
        if action in ("branch", "tag") and arg and method in ("POST", "DELETE"):
            return self._ref_op(repo, action, arg, method)
        if method == "PUT" and action == "settings":
            return self._settings(repo)
        raise HubError(404, f"Not found: {method} {self.path}")

    # ----------------------------------------------------------------- account & repos
    def _whoami(self) -> None:
        user = self._user()
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        orgs = sorted(self.hub.orgs.get(user, ()))
        self._json({"type": "user", "id": user, "name": user, "fullname": user, "email": f"{user}@example.com",
                    "emailVerified": True, "isPro": False, "orgs": [{"type": "org", "name": o} for o in orgs],
                    "auth": {"type": "access_token",
                             "accessToken": {"displayName": "test-token", "role": "write"}}})

    def _create_repo(self) -> None:
        hub, user, body = self.hub, self._user(), self._json_body()
        rtype = body.get("type") or "model"
        name, namespace = body["name"], body.get("organization") or user
        if rtype not in _URL_PREFIX:
            raise HubError(400, f"Invalid repo type: {rtype}")
        if user is None:
            raise HubError(401, "You must be authenticated to create a repo")
        if not hub._can_write(user, namespace):
            raise HubError(403, f"You don't have the rights to create a repo under '{namespace}'")
        repo_id = f"{namespace}/{name}"
        private = body.get("visibility", "private" if body.get("private") else "public") != "public"
        with hub.lock:
            if (rtype, repo_id) in hub.repos:
                repo = hub.repos[(rtype, repo_id)]
                raise HubError(409, f"You already created this {rtype} repo", url=hub._url(repo))
            repo = {"type": rtype, "id": repo_id, "private": private, "gated": False, "access": [],
                    "sdk": body.get("sdk"), "createdAt": _now(), "commits": {}, "branches": {}, "tags": {}}
            repo["branches"]["main"] = hub._new_commit(repo, None, {}, "initial commit", "", user)
            hub.repos[(rtype, repo_id)] = repo
            hub._save(repo)
        self._json({"url": hub._url(repo), "name": repo_id, "id": repo_id})

    def _delete_repo(self) -> None:
        hub, user, body = self.hub, self._user(), self._json_body()
        rtype = body.get("type") or "model"
        repo_id = f"{body.get('organization') or user}/{body['name']}"
        with hub.lock:
            hub._repo(rtype, repo_id, user, write=True)
            del hub.repos[(rtype, repo_id)]
            (hub.root / "repos" / f"{rtype}s" / f"{repo_id}.json").unlink(missing_ok=True)
        self._json({})

    def _settings(self, repo: dict) -> None:
        body = self._json_body()
        with self.hub.lock:
            if "visibility" in body or "private" in body:
                repo["private"] = body.get("visibility", "private" if body.get("private") else "public") != "public"
            if "gated" in body:
                repo["gated"] = body["gated"] or False
            self.hub._save(repo)
        self._json({})

    # ----------------------------------------------------------------- read API
    def _info(self, repo: dict, rev: str) -> None:
        blobs = self.query.get("blobs", ["false"])[0].lower() in ("1", "true")
        with self.hub.lock:
            sha = self.hub._resolve(repo, rev)
            commit = repo["commits"][sha]
        siblings = []
        for path, e in sorted(commit["files"].items()):
            sibling = {"rfilename": path}
            if blobs:
                sibling.update(size=e["size"], blobId=e["oid"])
                if e["lfs"]:
                    lfs = _file_json(path, e)["lfs"]
                    sibling["lfs"] = {"size": lfs["size"], "sha256": lfs["oid"], "pointerSize": lfs["pointerSize"]}
            siblings.append(sibling)
        data = {"_id": hashlib.sha1(repo["id"].encode()).hexdigest()[:24], "id": repo["id"],
                "author": repo["id"].split("/")[0], "sha": sha, "lastModified": commit["date"],
                "createdAt": repo["createdAt"], "private": repo["private"], "gated": repo["gated"],
                "disabled": False, "downloads": 0, "likes": 0, "tags": [], "siblings": siblings,
                "usedStorage": sum(e["size"] for e in commit["files"].values())}
        if repo["type"] == "model":
            data["modelId"] = repo["id"]
        if repo["type"] == "space":
            data["sdk"] = repo.get("sdk")
        self._json(data)

    def _files_at(self, repo: dict, rev: str) -> tuple[str, dict]:
        with self.hub.lock:
            sha = self.hub._resolve(repo, rev)
            return sha, repo["commits"][sha]["files"]

    def _tree(self, repo: dict, rev: str, prefix: str) -> None:
        recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        sha, files = self._files_at(repo, rev)
        base = prefix.strip("/") + "/" if prefix.strip("/") else ""
        under = sorted(p for p in files if p.startswith(base))
        if base and not under:
            raise HubError(404, f"{prefix} does not exist on {rev}", "EntryNotFound", {"X-Repo-Commit": sha})
        dirs, out = set(), []
        for path in under:
            parts = path[len(base):].split("/")
            dirs.update(base + "/".join(parts[:i]) for i in range(1, len(parts) if recursive else min(2, len(parts))))
            if recursive or len(parts) == 1:
                out.append(_file_json(path, files[path]))
        self._json([_dir_json(d, files) for d in sorted(dirs)] + out)

    def _paths_info(self, repo: dict, rev: str) -> None:
        form = parse_qs(self._body().decode())
        _, files = self._files_at(repo, rev)
        out = []
        for path in form.get("paths", []):
            path = path.strip("/")
            if path in files:
                out.append(_file_json(path, files[path]))
            elif any(p.startswith(path + "/") for p in files):
                out.append(_dir_json(path, files))
        self._json(out)

    def _refs(self, repo: dict) -> None:
        with self.hub.lock:
            refs = {kind: [{"name": n, "ref": f"refs/{prefix}/{n}", "targetCommit": sha}
                           for n, sha in sorted(repo[kind].items())]
                    for kind, prefix in (("branches", "heads"), ("tags", "tags"))}
        self._json({**refs, "converts": [], "pullRequests": []})

    def _list_commits(self, repo: dict, rev: str) -> None:
        out = []
        with self.hub.lock:
            sha = self.hub._resolve(repo, rev)
            while sha is not None:
                c = repo["commits"][sha]
                out.append({"id": sha, "authors": [{"user": c["author"]}], "date": c["date"],
                            "title": c["title"], "message": c["message"]})
                sha = c["parent"]
        self._json(out)

    def _resolve_file(self, rtype: str, repo_id: str, rev: str, path: str) -> None:
        hub, user = self.hub, self._user()
        with hub.lock:
            repo = hub._repo(rtype, repo_id, user)
            sha = hub._resolve(repo, rev)
            entry = repo["commits"][sha]["files"].get(path)
            namespace = repo_id.split("/")[0]
            if repo["gated"] and not hub._can_write(user, namespace) and user not in repo["access"]:
                raise HubError(401 if user is None else 403, f"Access to {rtype} {repo_id} is restricted and you are "
                               "not in the authorized list.", "GatedRepo", {"X-Repo-Commit": sha})
        if entry is None:
            raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": sha})
        size, name = entry["size"], path.rsplit("/", 1)[-1]
        headers = {"ETag": f'"{entry["oid"]}"', "X-Repo-Commit": sha, "Accept-Ranges": "bytes",
                   "Content-Disposition": f"inline; filename*=UTF-8''{quote(name)}"}
        if entry["lfs"]:
            headers.update({"X-Linked-Etag": f'"{entry["sha256"]}"', "X-Linked-Size": str(size)})
        start, end, status = 0, size - 1, 200
        if (rng := self.headers.get("Range")) and self.command == "GET":
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if m and m.group(1):
                start, end = int(m.group(1)), min(int(m.group(2) or size - 1), size - 1)
            elif m and m.group(2):
                start = max(size - int(m.group(2)), 0)
            if not m or not (m.group(1) or m.group(2)) or start >= size or start > end:
                raise HubError(416, "Requested range not satisfiable", headers={"Content-Range": f"bytes */{size}"})
            status, headers["Content-Range"] = 206, f"bytes {start}-{end}/{size}"
        length = max(end - start + 1, 0)
        self._send(status, headers=headers, ctype="application/octet-stream", length=length)
        if self.command == "GET" and length:
            with open(entry["blob"], "rb") as f:
                f.seek(start)
                while length > 0 and (chunk := f.read(min(_CHUNK, length))):
                    self.wfile.write(chunk)
                    length -= len(chunk)

    # ----------------------------------------------------------------- write API
    def _preupload(self, repo: dict, rev: str) -> None:
        body, threshold = self._json_body(), self.hub.lfs_threshold
        _, files = self._files_at(repo, rev)
        out = []
        for f in body["files"]:
            mode = "lfs" if threshold is not None and f["size"] >= threshold else "regular"
            existing, oid = files.get(f["path"]), None
            if existing is not None:  # same oid as the client computes: sha256 (lfs) or git sha1 (regular)
                oid = existing["sha256"] if mode == "lfs" else (
                    existing["oid"] if not existing["lfs"] else _git_sha1(Path(existing["blob"]).read_bytes()))
            out.append({"path": f["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        self._json({"files": out, "commitOid": None})

    def _commit(self, repo: dict, rev: str, user: str) -> None:
        hub = self.hub
        if self.query.get("create_pr", ["0"])[0] not in ("0", "false", ""):
            raise HubError(400, "Pull requests are not supported by this test server")
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        header = next((ln["value"] for ln in lines if ln["key"] == "header"), {})
        ops = []  # blobs are written outside the lock; the branch is updated atomically below
        for line in lines:
            key, value = line["key"], line["value"]
            if key == "file":
                content = value["content"]
                data = base64.b64decode(content) if value.get("encoding", "base64") == "base64" else content.encode()
                entry = hub._store_chunks([data])
                ops.append(("add", _clean_path(value["path"]), {**entry, "oid": _git_sha1(data), "lfs": False}))
            elif key == "lfsFile":
                sha, blob = value["oid"], hub.blob_path(value["oid"])
                if not blob.is_file():
                    raise HubError(400, f"LFS object {sha} was not uploaded")
                size = blob.stat().st_size
                ops.append(("add", _clean_path(value["path"]), {"sha256": sha, "size": size, "blob": str(blob),
                                                                "oid": _git_sha1(_lfs_pointer(sha, size)), "lfs": True}))
            elif key in ("deletedFile", "deletedFolder"):
                ops.append((key, value["path"].strip("/"), None))
            elif key != "header":
                raise HubError(400, f"Unsupported commit operation: {key}")
        branch = rev[len("refs/heads/"):] if rev.startswith("refs/heads/") else rev
        with hub.lock:
            if branch not in repo["branches"]:
                raise HubError(404, f"Invalid rev id: {rev} (commits go to a branch)", "RevisionNotFound")
            head = repo["branches"][branch]
            parent = header.get("parentCommit")
            if parent and not head.startswith(parent):
                raise HubError(412, f"A commit has happened since {parent}: {branch} is at {head}")
            files = dict(repo["commits"][head]["files"])
            for kind, path, entry in ops:
                if kind == "add":
                    files[path] = entry
                elif kind == "deletedFile" and files.pop(path, None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                elif kind == "deletedFolder":
                    gone = [p for p in files if p.startswith(path + "/")]
                    if not gone:
                        raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                    for p in gone:
                        del files[p]
            sha = hub._new_commit(repo, head, files, header.get("summary") or "commit", header.get("description")
                                  or "", user)
            repo["branches"][branch] = sha
            hub._save(repo)
        self._json({"success": True, "commitOid": sha, "commitUrl": f"{hub._url(repo)}/commit/{sha}",
                    "hookOutput": "", "pullRequestUrl": None})

    def _ref_op(self, repo: dict, kind: str, name: str, method: str) -> None:
        hub, body = self.hub, (self._json_body() if method == "POST" else {})
        table = "branches" if kind == "branch" else "tags"
        with hub.lock:
            if method == "DELETE":
                if name not in repo[table] or name == "main" and kind == "branch":
                    raise HubError(404, f"Invalid rev id: {name}", "RevisionNotFound")
                del repo[table][name]
            else:
                if kind == "tag":  # POST /tag/{revision} {"tag": name}
                    target, name = hub._resolve(repo, name), body["tag"]
                else:  # POST /branch/{branch} {"startingPoint": revision}
                    target = hub._resolve(repo, body.get("startingPoint") or "main")
                if name in repo[table]:
                    raise HubError(409, f"{kind.capitalize()} {name} already exists")
                repo[table][name] = target
            hub._save(repo)
        self._json({})

    # ----------------------------------------------------------------- git-LFS (basic transfer)
    def _lfs_batch(self, rtype: str, repo_id: str) -> None:
        hub, user, body = self.hub, self._user(), self._json_body()
        with hub.lock:
            hub._repo(rtype, repo_id, user, write=True)
        objects = []
        for obj in body.get("objects", []):
            oid, size = obj["oid"], obj["size"]
            blob = hub.blob_path(oid)
            if blob.is_file() and blob.stat().st_size == size:
                objects.append({"oid": oid, "size": size})  # already stored: no action
                continue
            secret = secrets.token_urlsafe(16)  # plays the part of a pre-signed storage URL
            with hub.lock:
                hub._pending_lfs[secret] = (oid, size)
            objects.append({"oid": oid, "size": size, "authenticated": True,
                            "actions": {"upload": {"href": f"{hub.endpoint}/_lfs/upload/{secret}"},
                                        "verify": {"href": f"{hub.endpoint}/_lfs/verify"}}})
        self._json({"transfer": "basic", "objects": objects}, ctype="application/vnd.git-lfs+json")

    def _lfs_upload(self, secret: str) -> None:
        with self.hub.lock:
            pending = self.hub._pending_lfs.get(secret)
        if pending is None:
            raise HubError(404, "Unknown or expired upload URL")
        self.hub._store_chunks(self._iter_body(), expected_sha256=pending[0], expected_size=pending[1])
        with self.hub.lock:
            self.hub._pending_lfs.pop(secret, None)
        self._send(200)

    def _lfs_verify(self) -> None:
        body = self._json_body()
        blob = self.hub.blob_path(body["oid"])
        if not blob.is_file() or blob.stat().st_size != body["size"]:
            raise HubError(404, f"LFS object {body['oid']} not found")
        self._json({})


def hub_env(monkeypatch, server: HubServer, cache_dir: str | os.PathLike, *, token: str | None = None,
            offline: bool = False, quiet: bool = True) -> "HubEnv":
    """Point ``huggingface_hub`` (and child processes) at ``server`` for one test; undone by ``monkeypatch``.

    ``huggingface_hub.constants`` reads its environment once, at import, so setting env variables
    is not enough in-process: the copied constants are patched too (see ``HubEnv`` for the list).
    Everything lands under ``cache_dir`` (hub cache) and its sibling ``hf_home`` (token file,
    assets, xet cache): nothing touches ``~/.cache``. ``token`` becomes ``HF_TOKEN`` (the implicit
    token); with ``None`` no token is sent unless a call passes ``token=``.
    """
    import huggingface_hub

    # importlib: `huggingface_hub.utils` lazily re-exports names (`utils.tqdm` is the class, not the module)
    constants, hf_api, _http, _cache_manager, _cache_assets, hf_tqdm = (importlib.import_module(m) for m in (
        "huggingface_hub.constants", "huggingface_hub.hf_api", "huggingface_hub.utils._http",
        "huggingface_hub.utils._cache_manager", "huggingface_hub.utils._cache_assets", "huggingface_hub.utils.tqdm"))

    cache_dir = Path(cache_dir).resolve()
    hf_home = cache_dir.parent / "hf_home"
    cache_dir.mkdir(parents=True, exist_ok=True)
    hf_home.mkdir(parents=True, exist_ok=True)
    endpoint = server.endpoint
    env = {"HF_ENDPOINT": endpoint, "HF_HOME": str(hf_home), "HF_HUB_CACHE": str(cache_dir),
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": "1" if offline else "0"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    if token is not None:
        monkeypatch.setenv("HF_TOKEN", token)
    patches = {
        (constants, "ENDPOINT"): endpoint,
        (constants, "HUGGINGFACE_CO_URL_TEMPLATE"): endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        (constants, "HF_HOME"): str(hf_home),
        (constants, "HF_HUB_CACHE"): str(cache_dir),
        (constants, "HUGGINGFACE_HUB_CACHE"): str(cache_dir),
        (constants, "HF_ASSETS_CACHE"): str(hf_home / "assets"),
        (constants, "HF_XET_CACHE"): str(hf_home / "xet"),
        (constants, "HF_TOKEN_PATH"): str(hf_home / "token"),
        (constants, "HF_STORED_TOKENS_PATH"): str(hf_home / "stored_tokens"),
        (constants, "AGENT_HARNESSES_PATH"): str(hf_home / ".agent_harnesses.json"),
        (constants, "HF_HUB_DISABLE_TELEMETRY"): True,  # else build_hf_headers fetches /api/agent-harnesses
        (constants, "HF_HUB_DISABLE_XET"): True,  # the server speaks no xet: use LFS/regular uploads
        (constants, "HF_HUB_OFFLINE"): bool(offline),
        (hf_api.api, "endpoint"): endpoint,  # module-level HfApi behind huggingface_hub.create_repo & co
        (_cache_manager, "HF_HUB_CACHE"): str(cache_dir),  # `from ..constants import` copies
        (_cache_assets, "HF_ASSETS_CACHE"): str(hf_home / "assets"),
        (_http, "_HUB_ORIGINS"): _http._HUB_ORIGINS | {_http._url_origin(endpoint)},
    }
    if quiet:
        patches[(hf_tqdm, "HF_HUB_DISABLE_PROGRESS_BARS")] = True
    for (obj, name), value in patches.items():
        monkeypatch.setattr(obj, name, value)
    huggingface_hub.close_session()  # drop pooled connections to servers of earlier tests
    if hasattr(huggingface_hub, "HfFileSystem"):
        huggingface_hub.HfFileSystem.clear_instance_cache()  # fsspec caches instances with their endpoint
    return HubEnv(monkeypatch, server, cache_dir, hf_home)


class HubEnv:
    """What ``hub_env`` set up: ``endpoint``, ``cache_dir``, ``hf_home``; ``set_offline`` toggles offline mode.

    Patched (all restored by ``monkeypatch``): env ``HF_ENDPOINT``, ``HF_HOME``, ``HF_HUB_CACHE``,
    ``HF_HUB_OFFLINE``, ``HF_HUB_DISABLE_TELEMETRY``, ``HF_HUB_DISABLE_XET``, ``HF_TOKEN``; constants
    ``ENDPOINT``, ``HUGGINGFACE_CO_URL_TEMPLATE`` (hf_hub_url), ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``
    (``is_offline_mode()`` and the httpx event hook read it at call time), token/assets/xet paths,
    telemetry and xet switches; ``huggingface_hub.hf_api.api.endpoint``; module copies in
    ``utils._cache_manager``/``utils._cache_assets``; the Hub-origin set of ``utils._http``.
    """

    def __init__(self, monkeypatch, server: HubServer, cache_dir: Path, hf_home: Path):
        self.monkeypatch, self.server, self.cache_dir, self.hf_home = monkeypatch, server, cache_dir, hf_home
        self.endpoint = server.endpoint

    def set_offline(self, offline: bool = True) -> None:
        """Enable/disable ``HF_HUB_OFFLINE`` for the rest of the test (in-process and for child processes)."""
        from huggingface_hub import constants

        self.monkeypatch.setattr(constants, "HF_HUB_OFFLINE", bool(offline))
        self.monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
