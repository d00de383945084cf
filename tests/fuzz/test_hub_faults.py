"""The Hub client under faults, against the loopback Hub server (tests/hub_server.py) and
misbehaving servers in front of it (servers.FaultServer): refused and silent connections,
error statuses, bodies cut short, garbage, redirect loops, altered bytes, malformed repo ids,
hostile repository contents. Each must end in a ZooError (HubError / CheckpointError) in
bounded time, or load exactly the bytes pushed; never a traceback or a hang."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.hub_server import HubServer, hub_env

from .cli import isolated_cli
from .fault_cases import HUB_FAULTS, MALFORMED_REPO_IDS
from .isolation import assert_accepted, assert_refused, isolated
from .servers import ALICE, FaultServer, hub_load, hub_push, populate_hub

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")
HUB_SECONDS = 30.0
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A Hub server holding the repos of servers.populate_hub."""
    root = tmp_path_factory.mktemp("hub")
    with HubServer(tokens={ALICE: "alice"}, lfs_threshold=4096) as server:
        mp = pytest.MonkeyPatch()
        try:
            hub_env(mp, server, root / "push-cache", token=ALICE)
            digests = populate_hub(server, root)
        finally:
            mp.undo()
        yield {"server": server, **digests}


@pytest.fixture
def env(hub: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    return hub_env(monkeypatch, hub["server"], tmp_path / "cache", token=ALICE)


def test_a_repo_loads(env: Any, hub: dict) -> None:
    out = isolated(hub_load, "alice/tiny", timeout=HUB_SECONDS)
    assert_accepted(out, "zoo.load('alice/tiny')")
    assert out.value == hub["tiny"]


def test_a_user_repo_named_like_a_catalog_model_is_that_repo(env: Any, hub: dict) -> None:
    out = isolated(hub_load, "alice/llama-2-7b", timeout=HUB_SECONDS)
    assert_accepted(out, "zoo.load('alice/llama-2-7b')")
    assert out.value == hub["named"], "zoo.load('alice/llama-2-7b') loaded something else than alice's repo"


def test_a_user_repo_named_like_a_catalog_model_is_not_the_catalog_model_offline(env: Any) -> None:
    env.set_offline(True)
    out = isolated(hub_load, "alice/llama-2-7b", timeout=HUB_SECONDS)
    assert_refused(out, "zoo.load('alice/llama-2-7b') offline, empty cache")
    assert "meta-llama" not in out.message, f"alice/llama-2-7b resolved to the catalog's repo: {out.message}"


@pytest.mark.parametrize("repo_id", MALFORMED_REPO_IDS, ids=repr)
def test_a_malformed_repo_id_is_refused(env: Any, repo_id: str) -> None:
    assert_refused(isolated(hub_load, repo_id, timeout=HUB_SECONDS), f"zoo.load({repo_id!r})")


@pytest.mark.parametrize("repo_id", ["a//b", "a/b/c/d/e", "a/..", "-a/b"], ids=repr)
def test_zoo_pull_refuses_a_malformed_repo_id_with_exit_2(env: Any, repo_id: str) -> None:
    assert_refused(isolated_cli(["pull", repo_id], timeout=HUB_SECONDS), f"zoo pull {repo_id!r}")


def test_missing_private_and_unknown_revisions_are_refused(env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_refused(isolated(hub_load, "alice/nope", timeout=HUB_SECONDS), "a missing repo")
    assert_refused(isolated(hub_load, "alice/tiny", revision="v9", timeout=HUB_SECONDS), "an unknown revision")
    assert_refused(isolated(hub_load, "alice/tiny", revision="0" * 40, timeout=HUB_SECONDS), "an unknown sha")
    monkeypatch.delenv("HF_TOKEN")
    assert_refused(isolated(hub_load, "alice/private", timeout=HUB_SECONDS), "a private repo without a token")
    assert_refused(isolated(hub_load, "alice/private", token="hf_wrong", timeout=HUB_SECONDS), "a wrong token")


def test_hostile_repository_contents_are_refused(env: Any) -> None:
    assert_refused(isolated(hub_load, "alice/bad-tok", timeout=HUB_SECONDS),
                   "a repo whose zoo.yaml names ../../etc/passwd")
    assert_refused(isolated(hub_load, "alice/bad-heads", timeout=HUB_SECONDS), "a repo with num_attention_heads: 0")


def test_offline_without_a_cache_is_refused_and_with_one_loads(env: Any, hub: dict) -> None:
    env.set_offline(True)
    assert_refused(isolated(hub_load, "alice/tiny", timeout=HUB_SECONDS), "offline, empty cache")
    env.set_offline(False)
    assert_accepted(isolated(hub_load, "alice/tiny", timeout=HUB_SECONDS), "online")
    env.set_offline(True)
    out = isolated(hub_load, "alice/tiny", timeout=HUB_SECONDS)
    assert_accepted(out, "offline, from the cache")
    assert out.value == hub["tiny"]


def test_a_damaged_cache_is_refused(env: Any) -> None:
    assert_accepted(isolated(hub_load, "alice/tiny", timeout=HUB_SECONDS), "online")
    blobs = [p for p in env.cache_dir.rglob("blobs/*") if p.stat().st_size > 10000]
    assert blobs
    for b in blobs:
        b.write_bytes(b.read_bytes()[: b.stat().st_size // 2])
    env.set_offline(True)
    assert_refused(isolated(hub_load, "alice/tiny", timeout=HUB_SECONDS), "a cache whose weights blob was truncated")


@pytest.mark.parametrize("mode", HUB_FAULTS)
def test_a_faulty_server_gives_a_typed_error(hub: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                             mode: str) -> None:
    with FaultServer(mode, upstream=hub["server"].endpoint) as fault:
        hub_env(monkeypatch, fault, tmp_path / "cache", token=ALICE)
        assert_refused(isolated(hub_load, "alice/tiny", timeout=HUB_SECONDS), f"zoo.load through a {mode} server")


@pytest.mark.slow  # huggingface_hub retries and resumes: seconds
def test_a_download_cut_short_is_refused_or_loads_the_right_bytes(hub: dict, monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    with FaultServer("cut", upstream=hub["server"].endpoint) as fault:
        hub_env(monkeypatch, fault, tmp_path / "cache", token=ALICE)
        out = isolated(hub_load, "alice/tiny", timeout=HUB_SECONDS)
    assert out.kind == "zoo" or (out.kind == "ok" and out.value == hub["tiny"]), f"a body cut short: {out}"


@pytest.mark.parametrize("mode", ["refused", "status:500", "status:403", "garbage", "cut-api"])
def test_a_push_to_a_faulty_server_gives_a_typed_error(hub: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                       mode: str) -> None:
    with FaultServer(mode, upstream=hub["server"].endpoint) as fault:
        hub_env(monkeypatch, fault, tmp_path / "cache", token=ALICE)
        assert_refused(isolated(hub_push, "alice/pushed", timeout=HUB_SECONDS), f"zoo.push through a {mode} server")


SILENT_SCRIPT = """
import sys, time, zoo
t = time.monotonic()
try:
    {call}
    print("RESULT accepted")
except zoo.ZooError as e:
    print("RESULT zoo", type(e).__name__, str(e).splitlines()[0][:300])
except BaseException as e:
    print("RESULT other", type(e).__name__, str(e).splitlines()[0][:300] if str(e) else "")
print("SECONDS", time.monotonic() - t)
"""


@pytest.mark.slow  # seconds when it passes; up to a minute while it hangs
@pytest.mark.parametrize("call", ["zoo.load('alice/tiny')", "zoo.push(zoo.build('llama-2-7b', ['arch.dim=64', "
                                  "'arch.n_layers=1', 'arch.vocab_size=128']), 'alice/x')"], ids=["load", "push"])
def test_a_server_that_never_answers_times_out(tmp_path: Path, call: str) -> None:
    """The server accepts the connection and never answers: a HubError once the timeouts (set
    short here through their environment variables) run out, not a hang."""
    with FaultServer("silent") as fault:
        env = dict(os.environ, HF_ENDPOINT=fault.endpoint, HF_HOME=str(tmp_path / "home"),
                   HF_HUB_CACHE=str(tmp_path / "cache"), ZOO_CACHE=str(tmp_path / "zoo"), HF_TOKEN=ALICE,
                   HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1", ZOO_HUB_READ_TIMEOUT="2",
                   ZOO_HUB_CONNECT_TIMEOUT="2", HF_HUB_ETAG_TIMEOUT="2", HF_HUB_DOWNLOAD_TIMEOUT="2",
                   PYTHONPATH=str(ROOT))
        t0 = time.monotonic()
        try:
            proc = subprocess.run([sys.executable, "-c", SILENT_SCRIPT.format(call=call)], env=env, cwd=tmp_path,
                                  capture_output=True, text=True, timeout=50)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{call} against a silent server: still waiting after 50 s")
    took = time.monotonic() - t0
    result = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")), proc.stderr[-500:])
    assert result.startswith("RESULT zoo"), f"{call} against a silent server: {result}"
    assert took < 45, f"{call} against a silent server took {took:.0f} s"
