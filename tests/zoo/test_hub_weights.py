"""The Hub for real: huggingface_hub over HTTP against the loopback Hub server (tests/hub_server.py).
Push, load by repo id into an empty cache, offline, pinned revisions, errors, integrity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import zoo
from tests.hub_server import HubServer, hub_env
from tests.zoo.weights_fixtures import TINY, hf_llama, logits, tiny
from zoo.checkpoint import CheckpointError
from zoo.cli import main as cli
from zoo.hub import HubError

# huggingface_hub's own upload call trips an httpx2 deprecation (data= for raw bytes): not ours
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")
ALICE = "hf_alice"
TOKENS = torch.randint(0, 128, (1, 11), generator=torch.Generator().manual_seed(0))


@pytest.fixture
def server():  # noqa: ANN201
    with HubServer(tokens={ALICE: "alice", "hf_meta": "codellama"}, lfs_threshold=4096) as srv:
        yield srv


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, server: HubServer, tmp_path: Path):  # noqa: ANN201
    return hub_env(monkeypatch, server, tmp_path / "hub-cache", token=ALICE)


def _same(a, b) -> bool:  # noqa: ANN001
    return all(torch.equal(b.state_dict()[k], v) for k, v in a.state_dict().items())


def test_push_then_load_into_an_empty_cache_then_offline(env, tmp_path: Path) -> None:  # noqa: ANN001
    m = tiny()
    sha = zoo.push(m, "alice/tiny-llama", private=True)
    assert len(sha) == 40
    assert not any(env.cache_dir.iterdir())  # nothing cached yet
    got = zoo.load("alice/tiny-llama")
    assert _same(m, got) and got.spec == m.spec
    snapshot = env.cache_dir / "models--alice--tiny-llama" / "snapshots" / sha
    assert {"zoo.yaml", "config.json", "model.safetensors", "README.md"} <= {p.name for p in snapshot.iterdir()}
    assert "alice/tiny-llama" in (snapshot / "README.md").read_text()  # the card names its repo
    env.set_offline(True)
    assert _same(m, zoo.load("alice/tiny-llama"))
    assert _same(m, zoo.load("alice/tiny-llama", revision=sha))


def test_a_pinned_revision_loads_that_commit(env) -> None:  # noqa: ANN001
    v1, v2 = tiny(seed=1), tiny(seed=2)
    sha1 = zoo.push(v1, "alice/versions")
    sha2 = zoo.push(v2, "alice/versions", commit_message="v2")
    assert sha1 != sha2
    assert _same(v2, zoo.load("alice/versions"))
    assert _same(v1, zoo.load("alice/versions", revision=sha1))
    env.set_offline(True)
    assert _same(v1, zoo.load("alice/versions", revision=sha1))
    with pytest.raises(HubError, match="not in the local cache and HF_HUB_OFFLINE=1"):
        zoo.load("alice/versions", revision="no-such-branch")


def test_a_catalog_name_downloads_its_pinned_repo(env, server: HubServer, tmp_path: Path) -> None:  # noqa: ANN001
    """`zoo.load("codellama-7b")` reads codellama/CodeLlama-7b-hf (a transformers folder) at the
    revision its spec pins; tiny here through overrides."""
    from huggingface_hub import HfApi

    ref = hf_llama(theta=1e6)
    ref.save_pretrained(tmp_path / "hf")
    HfApi(token="hf_meta").create_repo("codellama/CodeLlama-7b-hf")
    HfApi(token="hf_meta").upload_folder(repo_id="codellama/CodeLlama-7b-hf", folder_path=tmp_path / "hf")
    m = zoo.load("codellama-7b", TINY + ["arch.attention.n_heads=4", "arch.max_seq_len=256", "tokenizer.infill=null"],
                 backend="eager")
    assert m.spec.name == "codellama-7b" and m.spec.published.paper  # the catalog's spec, with the repo's weights
    torch.testing.assert_close(logits(m, TOKENS), logits(ref, TOKENS), atol=1e-4, rtol=1e-4)


def test_missing_and_private_repos_give_clear_errors(env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # noqa: ANN001
    m = tiny()
    zoo.push(m, "alice/secret", private=True)
    with pytest.raises(HubError, match="alice/nothing-here: repository not found on http://127.0.0.1"):
        zoo.load("alice/nothing-here")
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubError, match="alice/secret: .* private and no token was sent: pass token="):
        zoo.load("alice/secret", cache_dir=tmp_path / "fresh-cache")
    assert _same(m, zoo.load("alice/secret", token=ALICE, cache_dir=tmp_path / "fresh-cache"))
    with pytest.raises(HubError, match="no revision 'v9'"):
        zoo.load("alice/secret", revision="v9", token=ALICE)
    with pytest.raises(zoo.UnknownModelError, match="did you mean 'codellama-7b'"):
        zoo.load("codellama-7")


def _cached_blobs(env) -> set[str]:  # noqa: ANN001
    return {p.name for p in env.cache_dir.rglob("blobs/*")}


def test_a_corrupted_download_is_named_and_leaves_nothing_in_the_cache(env, server: HubServer) -> None:  # noqa: ANN001
    from huggingface_hub import HfApi

    sha = zoo.push(tiny(), "alice/flaky")
    entry = next(f for f in HfApi().list_repo_tree("alice/flaky", revision=sha) if f.path == "model.safetensors")
    blob = server.blob_path(entry.lfs.sha256)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01  # the server now sends the right size with one wrong bit
    blob.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors: the downloaded bytes do not match the Hub's checksum"):
        zoo.load("alice/flaky")
    assert not (env.cache_dir / "models--alice--flaky" / "snapshots" / sha).exists()
    assert entry.lfs.sha256 not in _cached_blobs(env)
    env.set_offline(True)
    with pytest.raises(HubError, match="not in the local cache"):
        zoo.load("alice/flaky")


def test_a_checksum_mismatch_with_zoo_yaml_is_named(env, tmp_path: Path) -> None:  # noqa: ANN001
    from huggingface_hub import HfApi

    folder = tiny().save(tmp_path / "out")
    shard = folder / "model.safetensors"
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0x01
    shard.write_bytes(bytes(data))
    HfApi().create_repo("alice/tampered")
    HfApi().upload_folder(repo_id="alice/tampered", folder_path=folder)  # bypassing zoo.push's checks
    with pytest.raises(CheckpointError, match="model.safetensors: sha256 mismatch"):
        zoo.load("alice/tampered")
    assert not list((env.cache_dir / "models--alice--tampered").glob("snapshots/*"))


def test_an_interrupted_push_resumes_without_reuploading(env, server: HubServer, tmp_path: Path,  # noqa: ANN001
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from tests import hub_server

    folder = tiny().save(tmp_path / "out", max_shard_size="60KB")
    uploads, real_upload, real_commit = [], hub_server._Handler._lfs_upload, hub_server._Handler._commit

    def count_upload(self, secret):  # noqa: ANN001, ANN202
        uploads.append(secret)
        return real_upload(self, secret)

    def fail_once(self, *a):  # noqa: ANN002, ANN202
        monkeypatch.setattr(hub_server._Handler, "_commit", real_commit)
        raise hub_server.HubError(503, "the Hub is having a bad day")

    monkeypatch.setattr(hub_server._Handler, "_lfs_upload", count_upload)
    monkeypatch.setattr(hub_server._Handler, "_commit", fail_once)
    with pytest.raises(HubError, match="alice/resumable.*HTTP 503"):
        zoo.push(folder, "alice/resumable")
    n_shards = len(list(folder.glob("*.safetensors")))
    assert len(uploads) >= n_shards  # every shard went up before the commit failed
    uploads.clear()
    zoo.push(folder, "alice/resumable")
    assert uploads == []  # the second push only committed: the server had every LFS object
    assert _same(zoo.load(folder), zoo.load("alice/resumable"))


def test_cli_push_and_pull(env, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    m = tiny()
    folder = m.save(tmp_path / "out")
    assert cli(["push", str(folder), "alice/from-cli", "--private"]) == 0
    assert "pushed" in capsys.readouterr().out
    assert cli(["pull", "alice/from-cli"]) == 0
    pulled = Path(capsys.readouterr().out.strip())
    assert (pulled / "zoo.yaml").is_file() and _same(m, zoo.load(pulled))
    assert cli(["pull", "alice/nope"]) == 2
    assert "error: alice/nope: repository not found" in capsys.readouterr().err


def test_a_model_in_a_repo_subfolder(env, tmp_path: Path) -> None:  # noqa: ANN001
    """Repos holding several models (facebook/multi-token-prediction: 7B_200B_1/, 7B_1T_4/ …)
    load by `org/name/subfolder` (or a spec's weights.subfolder)."""
    from huggingface_hub import HfApi

    from tests.zoo.weights_fixtures import write_meta_folder

    ref = hf_llama(n_heads=8, n_kv_heads=2)
    write_meta_folder(ref, tmp_path / "7B_200B_1")
    HfApi().create_repo("alice/multi")
    HfApi().upload_folder(repo_id="alice/multi", folder_path=tmp_path / "7B_200B_1", path_in_repo="7B_200B_1")
    m = zoo.load("alice/multi/7B_200B_1", backend="eager")
    torch.testing.assert_close(logits(m, TOKENS), logits(ref, TOKENS), atol=1e-4, rtol=1e-4)
    with pytest.raises(HubError, match="no folder '7B_1T_4'"):
        zoo.load("alice/multi/7B_1T_4")
