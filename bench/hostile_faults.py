"""bench/hostile.py's families of faults: saves killed midway, concurrent, into someone's
files, on a full disk; the Hub behind misbehaving servers. The checks and the servers come from
tests/fuzz (saves.py, servers.py); this module only says which fault each case injects, and
what it must end in.

Imported by the harness after it has set up the environment (zoo and huggingface_hub read it
at import)."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any, Callable

from hostile_case import Family

import zoo
from tests.fuzz.builders import digest, hf_folder, tiny_model
from tests.fuzz.cli import run_cli
from tests.fuzz.fault_cases import CWD_TARGETS, HUB_FAULTS, IMPOSSIBLE_SAVE_TARGETS, MALFORMED_REPO_IDS, USER_FOLDERS
from tests.fuzz.generators import random_text
from tests.fuzz.isolation import isolated, violate
from tests.fuzz.saves import (
    concurrent_saves_check,
    fill_disk_at,
    killed_save_check,
    load_or_error,
    loads_during_saves,
    overwrite_under_loaded,
    save_killed_at,
    save_loaded_over_itself,
    snapshot,
    user_workdir,
    write_files,
)
from tests.fuzz.servers import ALICE, hub_load, hub_push, point_hub_at
from zoo import ZooError


def save_fixtures() -> dict[str, Any]:
    """Models a and b, their digests, and how many profiled events a save of b makes."""
    a, b = tiny_model(seed=21), tiny_model(seed=22)
    fx = {"a": a, "b": b, "da": digest(a), "db": digest(b)}
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        a.save(Path(d) / "ckpt")
        out = isolated(save_killed_at, b, Path(d) / "ckpt", None, timeout=60)
    fx["events"] = int(out.value) if out.kind == "ok" else 2000
    return fx


def save_family(full: bool, rng: random.Random, fx: dict[str, Any]) -> Family:
    out = Family("saves")
    add = out.add

    def kill(fraction: float, fresh: bool) -> Callable[[Path], Any]:
        return lambda tmp: killed_save_check(fx, tmp, max(1, int(fraction * fx["events"])), fresh)

    steps = 120 if full else 12
    for i in range(steps):
        frac = (i + 0.5) / steps
        add(f"killed at {frac:.3f} of a save over a checkpoint", "check", kill(frac, False), timeout=30,
            named=i % 10 == 0)
    for i in range(40 if full else 5):
        frac = rng.random()
        add(f"killed at {frac:.3f} of a save into a new folder", "check", kill(frac, True), timeout=30)

    def into_user_folder(tmp: Path, files: dict[str, str], how: str) -> Any:
        target = tmp / "mine"
        write_files(target, files)
        before = snapshot(target)
        try:
            if how == "save":
                fx["a"].save(target)
            elif how == "cli-convert":
                res = run_cli(["convert", str(fx["a"].save(tmp / "src")), "--to", "hf", str(target), "--overwrite"])
                if res.code == 2 and "error:" in res.stderr:
                    raise ZooError(res.stderr.strip().splitlines()[-1])
                if res.code != 0:
                    raise RuntimeError(f"zoo convert exited {res.code}: {res.stderr[-300:]}")
            else:
                zoo.convert(str(fx["a"].save(tmp / "src")), target, to=how, overwrite=True)
        finally:
            after = snapshot(target) if target.is_dir() else {}
            lost = [k for k, v in before.items() if after.get(k) != v]
            if lost:
                violate(f"the user's files {lost} were removed or changed")
        return "saved"

    for name, files in USER_FOLDERS.items():
        for how in ("save", "zoo", "hf", "cli-convert"):
            add(f"{how} into a folder holding {name}", "bad", lambda tmp, f=files, h=how: into_user_folder(tmp, f, h),
                named=how == "save")

    def cwd_save(tmp: Path, where: str) -> Any:
        home = user_workdir(tmp)
        os.chdir(home / "sub" if where == ".." else home)
        try:
            fx["a"].save(str(home) if where == "CWD" else where)
        finally:
            if not ((home / "paper.md").is_file() and (home / "sub" / "data.csv").is_file()):
                violate(f"m.save({where!r}) wiped the current directory")
        return "saved"

    for where in CWD_TARGETS:
        add(f"m.save({where!r}) in a folder of user files", "bad", lambda tmp, w=where: cwd_save(tmp, w), named=True)

    def over_file(tmp: Path) -> Any:
        (tmp / "report.pdf").write_bytes(b"%PDF precious")
        try:
            return str(fx["a"].save(tmp / "report.pdf"))
        finally:
            if not ((tmp / "report.pdf").is_file() and (tmp / "report.pdf").read_bytes() == b"%PDF precious"):
                violate("the file was replaced")
    add("save over a file", "bad", over_file, named=True)

    def impossible(tmp: Path, target: str) -> Any:
        (tmp / "parent-is-a-file").write_text("x")
        return str(fx["a"].save(tmp / target))
    for label, target in IMPOSSIBLE_SAVE_TARGETS.items():
        add(f"save to {label}", "bad", lambda tmp, t=target: impossible(tmp, t), named=True)

    def full_disk(tmp: Path, limit: int) -> Any:
        target = fx["a"].save(tmp / "ckpt")
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                fill_disk_at(limit)
                fx["b"].save(target)
            except ZooError:
                code = 3
            except BaseException as e:  # noqa: BLE001
                (tmp / "error.txt").write_text(f"{type(e).__name__}: {e}")
                code = 4
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        after = load_or_error(target)
        if after not in (fx["da"], fx["db"]) or (code != 0 and after != fx["da"]):
            violate(f"after a full disk (exit {code}) the folder loads as {after}")
        if code == 4:
            raise RuntimeError((tmp / "error.txt").read_text()[:300])
        if code == 3:
            raise ZooError("the save ran out of disk: a ZooError")
        return f"exit {code}"

    for limit in (0, 1_000, 10_000, 30_000, 60_000, 100_000, 10_000_000):
        add(f"a full disk after {limit} bytes per file", "check", lambda tmp, n=limit: full_disk(tmp, n),
            named=limit == 10_000)

    def concurrent(tmp: Path, n: int, stagger: float, existing: bool) -> Any:
        if existing:
            fx["a"].save(tmp / "ckpt")
        return concurrent_saves_check(fx, tmp / "ckpt", n, stagger)

    for rep in range(3 if full else 1):
        for stagger in (0.0, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02):
            for existing in (False, True):
                add(f"2 concurrent saves, {stagger * 1000:g} ms apart, {'over a checkpoint' if existing else 'fresh'}"
                    f" #{rep}", "check", lambda tmp, s=stagger, e=existing: concurrent(tmp, 2, s, e), timeout=40,
                    procs=2, named=rep == 0)
    for rep in range(6 if full else 1):
        add(f"4 concurrent saves #{rep}", "check", lambda tmp, r=rep: concurrent(tmp, 4, 0.001 * r, True), timeout=60,
            procs=2)

    def during(tmp: Path) -> Any:
        seen = loads_during_saves(fx, fx["a"].save(tmp / "ckpt"), 2.0)
        if seen["failures"]:
            violate(f"{len(seen['failures'])} failures, first: {seen['failures'][0]}")
        return {k: seen[k] for k in ("a", "b")}
    for rep in range(8 if full else 2):
        add(f"loads during overwriting saves #{rep}", "check", during, timeout=40, procs=2, named=rep == 0)

    def own_folder(tmp: Path) -> Any:
        if save_loaded_over_itself(fx["a"].save(tmp / "ckpt")) != [fx["da"], fx["da"]]:
            violate("saving a loaded model over its own folder changed the weights")
        return "ok"
    add("save a loaded model over its own folder", "check", own_folder, named=True)

    def under_loaded(tmp: Path) -> Any:
        if overwrite_under_loaded(fx["a"].save(tmp / "ckpt"), fx["b"]) != fx["da"]:
            violate("a loaded model changed when its folder was saved over")
        return "ok"
    add("overwrite the folder a loaded model maps", "check", under_loaded, named=True)

    def over_ckpt(tmp: Path, kind: str) -> Any:
        target = fx["a"].save(tmp / "ckpt") if kind == "zoo" else hf_folder(fx["a"], tmp / "ckpt")
        fx["b"].save(target)
        if load_or_error(target) != fx["db"]:
            violate("the saved-over folder does not hold the new weights")
        return "ok"
    add("save over a zoo checkpoint", "good", lambda tmp: over_ckpt(tmp, "zoo"))
    add("save over a transformers folder zoo wrote", "good", lambda tmp: over_ckpt(tmp, "hf"))
    add("save into an empty folder", "good", lambda tmp: ((tmp / "empty").mkdir(), str(fx["a"].save(tmp / "empty"))))
    add("save into a new nested path", "good", lambda tmp: str(fx["a"].save(tmp / "a" / "b" / "c")))
    return out


def hub_family(full: bool, rng: random.Random, srv: dict[str, Any]) -> Family:
    """`srv`: the endpoints the harness's server helper printed (hub, faults by mode) and the
    digests of alice/tiny and alice/llama-2-7b."""
    out = Family("hub", timeout=45.0)
    add = out.add
    hub = srv["hub"]

    def load(tmp: Path, repo: str, endpoint: str = hub, token: str | None = ALICE, offline: bool = False,
             **kw: Any) -> str:
        point_hub_at(tmp, endpoint, token, offline)
        return hub_load(repo, **kw)

    def pull(tmp: Path, repo: str, endpoint: str = hub) -> Any:
        point_hub_at(tmp, endpoint)
        return run_cli(["pull", repo])

    def push(tmp: Path, endpoint: str = hub) -> Any:
        point_hub_at(tmp, endpoint)
        return hub_push(f"alice/pushed-{os.getpid()}")

    for repo in MALFORMED_REPO_IDS:
        add(f"zoo.load({repo!r})"[:80], "bad", lambda tmp, r=repo: load(tmp, r), named=True)
        add(f"zoo pull {repo!r}"[:80], "bad", lambda tmp, r=repo: pull(tmp, r), cli=True)
    for mode in HUB_FAULTS:
        ep = srv["faults"][mode]
        add(f"zoo.load through a {mode} server", "bad", lambda tmp, e=ep: load(tmp, "alice/tiny", e), named=True)
        add(f"zoo pull through a {mode} server", "bad", lambda tmp, e=ep: pull(tmp, "alice/tiny", e), cli=True)
        if mode != "flip":  # it alters downloads only: a push through it is fine
            add(f"zoo.push through a {mode} server", "bad", lambda tmp, e=ep: push(tmp, e))
    silent = srv["faults"]["silent"]
    add("load against a server that never answers", "bad", lambda tmp: load(tmp, "alice/tiny", silent), named=True)
    add("pull against a server that never answers", "bad", lambda tmp: pull(tmp, "alice/tiny", silent), cli=True,
        named=True)
    add("push against a server that never answers", "bad", lambda tmp: push(tmp, silent), named=True)

    def cut(tmp: Path) -> Any:
        if load(tmp, "alice/tiny", srv["faults"]["cut"]) != srv["tiny"]:
            violate("a download cut short loaded other bytes")
        return "loaded the right bytes"
    add("a download cut short (load)", "check", cut, named=True)
    add("a download cut short (pull)", "check", lambda tmp: pull(tmp, "alice/tiny", srv["faults"]["cut"]), cli=True)
    add("a missing repo", "bad", lambda tmp: load(tmp, "alice/nope"))
    add("an unknown revision", "bad", lambda tmp: load(tmp, "alice/tiny", revision="v9"))
    add("an unknown commit sha", "bad", lambda tmp: load(tmp, "alice/tiny", revision="0" * 40))
    add("a private repo without a token", "bad", lambda tmp: load(tmp, "alice/private", token=None))
    add("a private repo with a wrong token", "bad", lambda tmp: load(tmp, "alice/private", token="hf_wrong"))
    add("a gated repo without a token", "bad", lambda tmp: load(tmp, "alice/gated", token=None))
    for repo in ("alice/bad-tok", "alice/bad-heads", "alice/bad-rope", "alice/bad-index"):
        add(f"hostile repository {repo}", "bad", lambda tmp, r=repo: load(tmp, r), named=True)
    add("offline with an empty cache", "bad", lambda tmp: load(tmp, "alice/tiny", offline=True))

    def named_repo(tmp: Path) -> Any:
        if load(tmp, "alice/llama-2-7b") != srv["named"]:
            violate("zoo.load('alice/llama-2-7b') did not load alice's repo")
        return "alice's"
    add("zoo.load('alice/llama-2-7b') is alice's repo, not the catalog model", "check", named_repo, named=True)

    def named_offline(tmp: Path) -> Any:
        try:
            load(tmp, "alice/llama-2-7b", offline=True)
        except ZooError as e:
            if "meta-llama" in str(e):
                violate(f"alice/llama-2-7b resolved to the catalog's repo: {str(e)[:200]}")
            raise
        return "loaded"
    add("zoo.load('alice/llama-2-7b') offline names alice's repo", "bad", named_offline, named=True)

    def offline_after(tmp: Path) -> Any:
        load(tmp, "alice/tiny")
        import huggingface_hub.constants as c

        c.HF_HUB_OFFLINE = True
        os.environ["HF_HUB_OFFLINE"] = "1"
        if digest(zoo.load("alice/tiny")) != srv["tiny"]:
            violate("offline, from the cache: other weights")
        return "ok"
    add("online, then offline from the cache", "check", offline_after)

    def damaged(tmp: Path) -> Any:
        load(tmp, "alice/tiny")
        for b in (tmp / "hf-cache").rglob("blobs/*"):
            if b.stat().st_size > 10000:
                b.write_bytes(b.read_bytes()[: b.stat().st_size // 2])
        import huggingface_hub.constants as c

        c.HF_HUB_OFFLINE = True
        zoo.load("alice/tiny")
        violate("a cache whose weights blob was truncated loaded")
    add("a damaged cache, offline", "check", damaged, named=True)
    add("alice/tiny loads", "good", lambda tmp: load(tmp, "alice/tiny"))
    add("zoo pull alice/tiny", "good", lambda tmp: pull(tmp, "alice/tiny"), cli=True)
    add("zoo.push to alice/", "good", lambda tmp: push(tmp))
    for i in range(80 if full else 5):
        repo = random_text(rng, 12) + rng.choice(["/", "//", "", "/" + random_text(rng, 8)])
        add(f"random repo id #{i}", "any", lambda tmp, r=repo: load(tmp, r))
    return out
