"""The real ``huggingface_hub`` client against the local Hub test server (``tests/hub_server.py``)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading

import pytest

try:  # tests/ is on sys.path with pytest's default "prepend" import mode (no tests/__init__.py)
    from hub_server import HubServer, hub_env
except ImportError:  # pragma: no cover - tests/ imported as a package
    from tests.hub_server import HubServer, hub_env

import huggingface_hub
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    constants,
    get_session,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

ALICE, BOB = "hf_alice_token", "hf_bob_token"


@pytest.fixture
def server():
    with HubServer(tokens={ALICE: "alice", BOB: "bob"}) as srv:
        yield srv


@pytest.fixture
def env(monkeypatch, server, tmp_path):
    return hub_env(monkeypatch, server, tmp_path / "hub-cache")


def _make_folder(root, config: dict, weights: bytes):
    (root / "nested").mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(config))
    (root / "weights.bin").write_bytes(weights)
    (root / "nested" / "notes.txt").write_text("hello")
    return root


def _read_tree(folder) -> dict[str, bytes]:
    out = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, folder).replace(os.sep, "/")] = open(path, "rb").read()
    return out


def test_env_points_the_client_at_the_server(env, server, tmp_path):
    assert constants.ENDPOINT == server.endpoint == env.endpoint
    assert huggingface_hub.hf_api.api.endpoint == server.endpoint
    assert HfApi().endpoint == server.endpoint
    assert constants.HF_HUB_CACHE == str(tmp_path.resolve() / "hub-cache")
    assert constants.HF_TOKEN_PATH.startswith(str(tmp_path.resolve()))
    assert not constants.HF_HUB_OFFLINE and constants.HF_HUB_DISABLE_XET
    assert HfApi().whoami(token=ALICE)["name"] == "alice"
    with pytest.raises(HfHubHTTPError):
        HfApi().whoami(token="hf_not_a_token")


def test_upload_folder_and_snapshot_download_roundtrip(env, tmp_path):
    api = HfApi(token=ALICE)
    weights = os.urandom(3 * 1024 * 1024)
    src = _make_folder(tmp_path / "src", {"hidden": 8}, weights)
    url = api.create_repo("alice/tiny")
    assert url.repo_id == "alice/tiny"
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_repo("alice/tiny")
    assert exc.value.response.status_code == 409
    assert api.create_repo("alice/tiny", exist_ok=True).repo_id == "alice/tiny"

    info = api.upload_folder(repo_id="alice/tiny", folder_path=src, commit_message="add model")
    assert len(info.oid) == 40 and info.commit_url.endswith(f"/alice/tiny/commit/{info.oid}")
    model = api.model_info("alice/tiny", files_metadata=True)
    assert model.sha == info.oid and model.private is False
    sizes = {s.rfilename: s.size for s in model.siblings}
    assert sizes == {"config.json": len(json.dumps({"hidden": 8})), "weights.bin": len(weights), "nested/notes.txt": 5}

    cache = tmp_path / "fresh-cache"
    path = snapshot_download("alice/tiny", cache_dir=cache)
    assert path == str(cache.resolve() / "models--alice--tiny" / "snapshots" / info.oid)
    assert _read_tree(path) == _read_tree(src)
    assert json.loads(open(hf_hub_download("alice/tiny", "config.json"), "rb").read()) == {"hidden": 8}


# huggingface_hub's own LFS PUT passes `data=<file>` to httpx2, which warns about it.
@pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")
def test_large_files_go_through_lfs_when_enabled(monkeypatch, tmp_path):
    with HubServer(tokens={ALICE: "alice"}, lfs_threshold=1024 * 1024) as server:
        hub_env(monkeypatch, server, tmp_path / "cache", token=ALICE)  # HF_TOKEN: implicit token
        api = HfApi()
        weights = os.urandom(3 * 1024 * 1024 + 7)
        api.create_repo("alice/lfs")
        api.upload_folder(repo_id="alice/lfs", folder_path=_make_folder(tmp_path / "src", {}, weights))
        files = {f.path: f for f in api.list_repo_tree("alice/lfs", recursive=True) if hasattr(f, "lfs")}
        assert files["weights.bin"].lfs is not None and files["config.json"].lfs is None
        local = hf_hub_download("alice/lfs", "weights.bin")
        assert open(local, "rb").read() == weights
        assert os.path.basename(os.path.realpath(local)) == files["weights.bin"].lfs.sha256  # X-Linked-Etag
        # Re-uploading identical content is a no-op commit (preupload returns the remote oids).
        before = server.commits("alice/lfs")
        api.upload_folder(repo_id="alice/lfs", folder_path=tmp_path / "src")
        assert server.commits("alice/lfs") == before


def test_pinned_revision_downloads_old_content(env, tmp_path):
    api = HfApi(token=ALICE)
    api.create_repo("alice/pinned")
    v1 = api.upload_folder(repo_id="alice/pinned", folder_path=_make_folder(tmp_path / "v1", {"v": 1}, b"one"))
    api.create_tag("alice/pinned", tag="v1.0", revision=v1.oid)
    v2 = api.upload_folder(repo_id="alice/pinned", folder_path=_make_folder(tmp_path / "v2", {"v": 2}, b"two"))
    assert v1.oid != v2.oid

    old = snapshot_download("alice/pinned", revision=v1.oid)
    assert json.loads(open(os.path.join(old, "config.json")).read()) == {"v": 1}
    assert open(hf_hub_download("alice/pinned", "weights.bin", revision="v1.0"), "rb").read() == b"one"
    assert open(hf_hub_download("alice/pinned", "weights.bin", revision=v1.oid[:10]), "rb").read() == b"one"
    new = snapshot_download("alice/pinned")
    assert json.loads(open(os.path.join(new, "config.json")).read()) == {"v": 2}
    refs = api.list_repo_refs("alice/pinned")
    assert [(t.name, t.target_commit) for t in refs.tags] == [("v1.0", v1.oid)]
    assert [(b.name, b.target_commit) for b in refs.branches] == [("main", v2.oid)]
    assert [c.commit_id for c in api.list_repo_commits("alice/pinned")][:2] == [v2.oid, v1.oid]
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("alice/pinned", "config.json", revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        snapshot_download("alice/pinned", revision="no-such-branch")


def test_offline_mode_reuses_the_cache(env, server, tmp_path):
    api = HfApi(token=ALICE)
    api.create_repo("alice/offline")
    api.create_repo("alice/never-downloaded")
    src = _make_folder(tmp_path / "src", {"x": 1}, b"w" * 1000)
    api.upload_folder(repo_id="alice/offline", folder_path=src)
    online = snapshot_download("alice/offline")

    server.stop()  # no server at all from here on
    env.set_offline(True)
    assert huggingface_hub.is_offline_mode() and os.environ["HF_HUB_OFFLINE"] == "1"
    assert snapshot_download("alice/offline") == online
    assert _read_tree(online) == _read_tree(src)
    assert hf_hub_download("alice/offline", "nested/notes.txt") == os.path.join(online, "nested", "notes.txt")
    with pytest.raises(LocalEntryNotFoundError):
        snapshot_download("alice/never-downloaded")
    env.set_offline(False)
    assert not huggingface_hub.is_offline_mode()


def test_missing_repo_and_missing_file(env):
    api = HfApi(token=ALICE)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("alice/does-not-exist")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("alice/does-not-exist", "config.json")
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("alice/does-not-exist")
    api.create_repo("alice/files")
    api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id="alice/files")
    with pytest.raises(RemoteEntryNotFoundError) as exc:
        hf_hub_download("alice/files", "missing.bin")
    assert isinstance(exc.value, EntryNotFoundError) and exc.value.response.status_code == 404
    assert api.file_exists("alice/files", "config.json") and not api.file_exists("alice/files", "missing.bin")
    assert api.repo_exists("alice/files") and not api.repo_exists("alice/nope")


def test_private_repo_requires_the_owner_token(env, monkeypatch, server, tmp_path):
    api = HfApi(token=ALICE)
    api.create_repo("alice/secret", private=True)
    api.upload_file(path_or_fileobj=b"top secret", path_in_repo="weights.bin", repo_id="alice/secret")
    anonymous, bob = HfApi(token=False), HfApi(token=BOB)
    for client in (anonymous, bob):
        with pytest.raises(RepositoryNotFoundError):
            client.model_info("alice/secret")
        with pytest.raises(RepositoryNotFoundError):
            hf_hub_download("alice/secret", "weights.bin", token=client.token)
        with pytest.raises(RepositoryNotFoundError):
            snapshot_download("alice/secret", token=client.token)
    with pytest.raises(HfHubHTTPError) as exc:  # unknown token: 401, not a "repo not found"
        hf_hub_download("alice/secret", "weights.bin", token="hf_wrong")
    assert exc.value.response.status_code == 401 and not isinstance(exc.value, RepositoryNotFoundError)
    with pytest.raises(HfHubHTTPError) as exc:  # bob cannot write to alice's namespace
        bob.create_repo("alice/bobs")
    assert exc.value.response.status_code == 403

    assert api.model_info("alice/secret").private is True
    assert open(hf_hub_download("alice/secret", "weights.bin", token=ALICE), "rb").read() == b"top secret"
    monkeypatch.setenv("HF_TOKEN", ALICE)  # the implicit token works too
    assert open(snapshot_download("alice/secret") + "/weights.bin", "rb").read() == b"top secret"

    server.set_gated("alice/secret", allowed=["bob"])
    api.update_repo_settings("alice/secret", private=False)
    monkeypatch.delenv("HF_TOKEN")
    empty_cache = tmp_path / "empty-cache"
    server.add_token("hf_carol_token", "carol")
    for token, status in ((False, 401), ("hf_carol_token", 403)):  # anonymous / authenticated, not allowed
        with pytest.raises(GatedRepoError) as exc:
            hf_hub_download("alice/secret", "weights.bin", cache_dir=empty_cache, token=token)
        assert exc.value.response.status_code == status
    assert api.model_info("alice/secret").gated == "manual"  # the repo page stays public
    local = hf_hub_download("alice/secret", "weights.bin", cache_dir=empty_cache, token=BOB)
    assert open(local, "rb").read() == b"top secret"


def test_commit_operations_branches_and_delete_repo(env):
    api = HfApi(token=ALICE)
    api.create_repo("alice/ops")
    api.create_commit("alice/ops", [CommitOperationAdd("a/x.txt", b"x"), CommitOperationAdd("a/y.txt", b"y"),
                                    CommitOperationAdd("b.txt", b"b")], commit_message="add")
    api.create_commit("alice/ops", [CommitOperationDelete("a/x.txt")], commit_message="rm")
    assert sorted(api.list_repo_files("alice/ops")) == ["a/y.txt", "b.txt"]
    api.create_branch("alice/ops", branch="dev")
    api.create_commit("alice/ops", [CommitOperationDelete("a/")], commit_message="rm dir", revision="dev")
    assert api.list_repo_files("alice/ops", revision="dev") == ["b.txt"]
    assert sorted(api.list_repo_files("alice/ops")) == ["a/y.txt", "b.txt"]
    with pytest.raises(EntryNotFoundError):
        api.create_commit("alice/ops", [CommitOperationDelete("nope.txt")], commit_message="rm")
    infos = api.get_paths_info("alice/ops", ["a", "b.txt", "missing"])
    assert [(type(i).__name__, i.path) for i in infos] == [("RepoFolder", "a"), ("RepoFile", "b.txt")]
    api.delete_repo("alice/ops")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("alice/ops")


def test_resolve_headers_and_ranges(env, server):
    api = HfApi(token=ALICE)
    api.create_repo("alice/raw")
    sha = api.upload_file(path_or_fileobj=b"0123456789", path_in_repo="d/f.txt", repo_id="alice/raw").oid
    url = f"{server.endpoint}/alice/raw/resolve/main/d/f.txt"
    head = get_session().head(url)
    assert head.status_code == 200 and head.headers["X-Repo-Commit"] == sha
    assert head.headers["Content-Length"] == "10" and head.headers["ETag"].startswith('"')
    assert not [h for h in head.headers if h.lower().startswith("x-xet")]
    part = get_session().get(url, headers={"Range": "bytes=2-4"})
    assert part.status_code == 206 and part.content == b"234"
    assert part.headers["Content-Range"] == "bytes 2-4/10"
    assert get_session().get(url, headers={"Range": "bytes=-3"}).content == b"789"
    assert get_session().get(url, headers={"Range": "bytes=50-"}).status_code == 416
    missing = get_session().head(f"{server.endpoint}/alice/raw/resolve/main/nope")
    assert missing.status_code == 404 and missing.headers["X-Error-Code"] == "EntryNotFound"


def test_explicit_endpoint_without_patching_constants(monkeypatch, server, tmp_path):
    """Passing ``endpoint=``/``cache_dir=`` explicitly also works, as long as nothing else reads the constants."""
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "token"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    api = HfApi(endpoint=server.endpoint, token=ALICE)
    api.create_repo("alice/explicit")
    api.upload_file(path_or_fileobj=b"abc", path_in_repo="f.bin", repo_id="alice/explicit")
    local = hf_hub_download("alice/explicit", "f.bin", endpoint=server.endpoint, cache_dir=tmp_path / "c")
    assert open(local, "rb").read() == b"abc"
    path = snapshot_download("alice/explicit", endpoint=server.endpoint, cache_dir=tmp_path / "c")
    assert os.listdir(path) == ["f.bin"]


def test_server_persists_and_stops_cleanly(tmp_path, monkeypatch):
    root = tmp_path / "root"
    with HubServer(root, tokens={ALICE: "alice"}) as server:
        hub_env(monkeypatch, server, tmp_path / "cache")
        api = HfApi(token=ALICE)
        api.create_repo("alice/keep")
        sha = api.upload_file(path_or_fileobj=b"kept", path_in_repo="k.txt", repo_id="alice/keep").oid
        port = server.port
    with socket.socket() as sock:  # the port is released
        assert sock.connect_ex(("127.0.0.1", port)) != 0
    assert not [t for t in threading.enumerate() if t.name.startswith(f"hub-server-{port}")]
    assert root.is_dir() and server.commits("alice/keep")[-1] == sha
    with HubServer(root) as again:  # a new server on the same root serves the same repos
        hub_env(monkeypatch, again, tmp_path / "cache2")
        assert open(hf_hub_download("alice/keep", "k.txt", revision=sha), "rb").read() == b"kept"


def test_raw_lfs_protocol_with_chunked_upload(env, server):
    """The git-LFS batch/upload/commit sequence at the HTTP level, with a ``Transfer-Encoding: chunked`` body."""
    HfApi(token=ALICE).create_repo("alice/raw-lfs")
    data = os.urandom(300_000)
    oid, auth = hashlib.sha256(data).hexdigest(), {"Authorization": f"Bearer {ALICE}"}
    batch_url = f"{server.endpoint}/alice/raw-lfs.git/info/lfs/objects/batch"
    payload = {"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": len(data)}]}
    assert get_session().post(batch_url, json=payload).status_code == 401  # anonymous
    href = get_session().post(batch_url, json=payload, headers=auth).json()["objects"][0]["actions"]["upload"]["href"]
    assert get_session().put(href, content=b"not the announced content").status_code == 400
    chunks = (data[i : i + 65536] for i in range(0, len(data), 65536))  # a generator: sent chunked
    assert get_session().put(href, content=chunks).status_code == 200
    assert "actions" not in get_session().post(batch_url, json=payload, headers=auth).json()["objects"][0]
    ndjson = "\n".join(json.dumps(line) for line in (
        {"key": "header", "value": {"summary": "add big file"}},
        {"key": "lfsFile", "value": {"path": "big.bin", "algo": "sha256", "oid": oid, "size": len(data)}}))
    commit = get_session().post(f"{server.endpoint}/api/models/alice/raw-lfs/commit/main", content=ndjson,
                                headers={**auth, "Content-Type": "application/x-ndjson"})
    assert commit.status_code == 200 and len(commit.json()["commitOid"]) == 40
    assert open(hf_hub_download("alice/raw-lfs", "big.bin"), "rb").read() == data
    assert not server.errors
