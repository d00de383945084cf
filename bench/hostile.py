"""Hostile input and faults: how zoo answers them, counted per family (issue "Hostile input and
faults").

    .venv/bin/python bench/hostile.py              # hundreds of cases per family (a few minutes)
    .venv/bin/python bench/hostile.py --quick      # a few dozen per family
    .venv/bin/python bench/hostile.py --details    # and one line per failing case
    .venv/bin/python bench/hostile.py --family checkpoints --family hub --json out.json

Every case is one of:

- `bad`: an input known to be invalid (generated from known-bad mutations of valid specs,
  checkpoints, arguments, names): it must be refused with a `zoo.ZooError` (on the CLI: exit
  code 2 and `error: ...` on stderr, no traceback);
- `good`: a valid control: it must be accepted;
- `check`: a fault (a save killed midway, concurrent saves, a full disk, a server that cuts a
  download short): the case checks the contract afterwards (the previous checkpoint still loads,
  both savers finished or one got a ZooError ...), and a ZooError is an acceptable answer;
- `any`: an input of unknown validity (random corruption): accepted or a ZooError, nothing else.

Each runs in a forked child (tests/fuzz/isolation.py `isolated`) under a wall-clock limit and
an address-space limit (RLIMIT_AS); a case that hangs, blows up or kills the interpreter is
counted and the run goes on. Outcomes, the issue's columns:

    typed zoo error          a bad input refused (or a fault answered) with a ZooError
    accepted although wrong  a bad input accepted, or a fault that broke the contract silently
                             (data lost, a mix of two versions, a wrong result)
    traceback                any exception that is not a ZooError (for the CLI: a traceback,
                             or an exit code other than 0 and 2)
    hang / blow-up           over the time limit, over the memory limit, or the interpreter died
    ok                       a valid control accepted, a fault survived with the contract kept
    valid refused            a valid control refused with a ZooError

The families (bench/hostile_inputs.py, bench/hostile_faults.py) are built from the tables,
builders and checks of tests/fuzz, so they need its test dependencies (hypothesis,
transformers' tokenizers …). The Hub family runs against the loopback Hub server of
tests/hub_server.py and misbehaving servers in front of it, in a helper process; its timeouts
are shortened through ZOO_HUB_READ_TIMEOUT / ZOO_HUB_CONNECT_TIMEOUT / HF_HUB_ETAG_TIMEOUT /
HF_HUB_DOWNLOAD_TIMEOUT (5 s unless set).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hostile_case import FAMILIES, Case

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["zoo", "wrong", "traceback", "hang", "ok", "refused-valid"]
HEADERS = ["typed zoo error", "accepted although wrong", "traceback", "hang / blow-up", "ok", "valid refused"]
HUB_TIMEOUT_ENV = ("ZOO_HUB_READ_TIMEOUT", "ZOO_HUB_CONNECT_TIMEOUT", "HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT")

# zoo, huggingface_hub and the families read the environment at import: every import of them
# below waits until main (or serve) has set it up.
sys.path.insert(0, str(ROOT))


@dataclass
class Result:
    family: str
    name: str
    expect: str
    column: str
    outcome: str
    detail: str
    seconds: float
    warnings: list[str] = field(default_factory=list)


# ====================================================================================== the Hub servers
def serve(workdir: Path) -> None:
    """The helper process: a Hub server holding the repos the Hub cases read, and one
    misbehaving server per fault mode in front of it. Prints their endpoints (one JSON line),
    then serves until its stdin closes."""
    os.environ.update(HF_HOME=str(workdir / "server-home"), ZOO_CACHE=str(workdir / "server-zoo"),
                      HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_XET="1")
    import warnings

    warnings.filterwarnings("ignore")
    from tests.fuzz.fault_cases import HUB_FAULTS
    from tests.fuzz.servers import ALICE, FaultServer, PermanentPatch, populate_hub
    from tests.hub_server import HubServer, hub_env

    server = HubServer(tokens={ALICE: "alice"}, lfs_threshold=4096).start()
    hub_env(PermanentPatch(), server, workdir / "server-cache", token=ALICE)
    digests = populate_hub(server, workdir / "server-repos")
    faults = {mode: FaultServer(mode, upstream=server.endpoint) for mode in [*HUB_FAULTS, "cut", "silent"]}
    print(json.dumps({"hub": server.endpoint, "faults": {m: f.endpoint for m, f in faults.items()}, **digests}),
          flush=True)
    sys.stdin.read()
    for f in faults.values():
        f.close()
    server.stop()


def start_servers(workdir: Path) -> tuple[subprocess.Popen, dict[str, Any]]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(workdir)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"the Hub server helper did not start:\n{proc.stderr.read()[-3000:]}")
    return proc, json.loads(line)


# ====================================================================================== running
def classify(case: Case, out: Any, tail: str = "") -> Result:
    """A case's Outcome in the issue's columns, by what the case expected."""
    from tests.fuzz.cli import cli_outcome

    if case.cli:
        out = cli_outcome(out)
    kind = out.kind
    detail = out.head
    if kind == "other" and out.exc_type.endswith("ContractViolation"):
        column, outcome = "wrong", "contract broken"
    elif kind == "other":
        column, outcome = "traceback", out.exc_type or "traceback"
        if not detail and out.tb:
            detail = out.tb.strip().splitlines()[-1][:300]
    elif kind in ("timeout", "memory", "crash"):
        column = "hang"
        outcome = {"timeout": f"hang (> {case.timeout:g} s)", "memory": "blow-up (memory)", "crash": "crash"}[kind]
        last = [ln for ln in tail.splitlines() if ln.strip()][-1:]
        if last:
            detail += f" | output: {last[0][:200]}"
    elif kind == "zoo":
        column, outcome = ("refused-valid", "refused although valid") if case.expect == "good" else ("zoo", "zoo error")
        detail = f"{out.exc_type.rsplit('.', 1)[-1]}: {detail}"
    else:  # ok
        column, outcome = ("wrong", "accepted") if case.expect == "bad" else ("ok", "ok")
        detail = str(out.value)[:200].replace("\n", " ")
    return Result(case.family, case.name, case.expect, column, outcome, detail, round(out.seconds, 3),
                  [w for w in out.warnings if "Warning" in w][:3])


def run_one(case: Case, workdir: Path, mem: int) -> Result:
    from tests.fuzz.isolation import Outcome, isolated

    tmp = Path(tempfile.mkdtemp(prefix="case-", dir=workdir))

    def body() -> Any:
        out = os.open(tmp / "output.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(out, 1)  # the case's own prints and logs: kept for the details, not the screen
        os.dup2(out, 2)
        os.chdir(tmp)
        return case.fn(tmp)

    t0 = time.monotonic()
    try:
        out = isolated(body, timeout=case.timeout, mem=mem)
    except Exception as e:  # noqa: BLE001 - the harness itself failed on this case
        out = Outcome("crash", type(e).__name__, f"harness: {e}")
    out.seconds = out.seconds or time.monotonic() - t0
    try:
        tail = (tmp / "output.txt").read_text(errors="replace")[-2000:]
    except OSError:
        tail = ""
    shutil.rmtree(tmp, ignore_errors=True)
    return classify(case, out, tail)


def run_cases(cases: list[Case], jobs: int, workdir: Path, mem: int, progress: bool) -> list[Result]:
    """Run `cases` in `jobs` worker processes (forked from here, so every fixture is shared);
    cases that run several processes themselves run one at a time at the end."""
    results: dict[int, Result] = {}
    solo = [i for i, c in enumerate(cases) if c.procs > 1]
    shared = [i for i, c in enumerate(cases) if c.procs == 1]
    plan = [(shared[k::jobs]) for k in range(jobs)] + ([solo] if solo else [])
    phases = [list(range(jobs)), [jobs]] if solo else [list(range(jobs))]
    t0 = time.monotonic()
    for phase in phases:
        workers = {}
        for k in phase:
            path = workdir / f"results-{k}.jsonl"
            pid = os.fork()
            if pid == 0:  # a worker: only forks cases and writes their results
                code = 0
                try:
                    with open(path, "w") as fh:
                        for i in plan[k]:
                            r = run_one(cases[i], workdir, mem)
                            fh.write(json.dumps({"i": i, **r.__dict__}) + "\n")
                            fh.flush()
                except BaseException:  # noqa: BLE001
                    traceback.print_exc()
                    code = 1
                finally:
                    os._exit(code)
            workers[pid] = (k, path)
        alive = set(workers)
        last = 0.0
        while alive:
            for pid in list(alive):
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    alive.discard(pid)
            if progress and time.monotonic() - last > 5:
                n = sum(1 for _, p in workers.values() if p.exists() for _ in open(p))
                total = sum(len(plan[k]) for k in phase)
                print(f"  … {n}/{total} cases of this phase, {time.monotonic() - t0:.0f} s", file=sys.stderr)
                last = time.monotonic()
            time.sleep(0.2)
        for k, path in workers.values():
            if path.exists():
                for line in open(path):
                    d = json.loads(line)
                    i = d.pop("i")
                    results[i] = Result(**d)
            for i in plan[k]:
                if i not in results:
                    c = cases[i]
                    results[i] = Result(c.family, c.name, c.expect, "hang", "harness worker died", "", 0.0)
    return [results[i] for i in range(len(cases))]


def table(results: list[Result], families: list[str]) -> str:
    rows = ["| family | cases | " + " | ".join(HEADERS) + " |", "|---" * (len(HEADERS) + 2) + "|"]
    for key in families:
        rs = [r for r in results if r.family == FAMILIES[key]]
        counts = [sum(r.column == c for r in rs) for c in COLUMNS]
        rows.append(f"| {FAMILIES[key]} | {len(rs)} | " + " | ".join(map(str, counts)) + " |")
    counts = [sum(r.column == c for r in results) for c in COLUMNS]
    rows.append(f"| all | {len(results)} | " + " | ".join(map(str, counts)) + " |")
    return "\n".join(rows)


def details(results: list[Result]) -> str:
    bad = [r for r in results if r.column in ("wrong", "traceback", "hang", "refused-valid")]
    order = {"hang": 0, "wrong": 1, "traceback": 2, "refused-valid": 3}
    lines = [f"{len(bad)} failing cases (family | case | outcome | detail):"]
    for r in sorted(bad, key=lambda r: (list(FAMILIES.values()).index(r.family), order[r.column], r.name)):
        lines.append(f"  {r.family} | {r.name} | {r.outcome} | {r.detail[:240]}")
    return "\n".join(lines)


def select_quick(cases: list[Case], rng: random.Random, n: int = 40) -> list[Case]:
    named = [c for c in cases if c.named]
    other = [c for c in cases if not c.named]
    pick = rng.sample(named, min(len(named), n * 2 // 3))
    pick += rng.sample(other, min(len(other), n - len(pick)))
    return [c for c in cases if any(c is p for p in pick)]


def build_family(key: str, full: bool, rng: random.Random, fixtures: Path, srv: dict[str, Any]) -> list[Case]:
    """One family's cases (and the fixtures they share, built here in the parent)."""
    import hostile_faults as F
    import hostile_inputs as I

    if key == "specs":
        return I.spec_family(full, rng)
    if key == "checkpoints":
        return I.checkpoint_family(full, rng, I.checkpoint_fixtures(fixtures / "ckpt"))
    if key == "saves":
        return F.save_family(full, rng, F.save_fixtures())
    if key == "hub":
        return F.hub_family(full, rng, srv)
    return I.generation_family(full, rng, I.generation_fixtures(fixtures / "gen"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few dozen cases per family")
    ap.add_argument("--details", action="store_true", help="list every failing case")
    ap.add_argument("--family", action="append", choices=list(FAMILIES), help="run only these families")
    ap.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    ap.add_argument("--mem", type=float, default=3.0, help="GiB of address space a case may add (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write every case's result here")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(Path(args.serve))
        return 0
    families = args.family or list(FAMILIES)
    workdir = Path(tempfile.mkdtemp(prefix="zoo-hostile-", dir="/tmp"))
    os.environ.update(HF_HOME=str(workdir / "hf-home"), HF_HUB_CACHE=str(workdir / "hf-cache"),
                      ZOO_CACHE=str(workdir / "zoo-cache"), HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_XET="1",
                      TOKENIZERS_PARALLELISM="false", HF_HUB_DISABLE_PROGRESS_BARS="1", TQDM_DISABLE="1")
    for key in HUB_TIMEOUT_ENV:
        os.environ.setdefault(key, "5")
    server_proc = None
    try:
        srv: dict[str, Any] = {}
        if "hub" in families:
            server_proc, srv = start_servers(workdir)
            os.environ["HF_ENDPOINT"] = srv["hub"]
        else:
            os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"  # nothing listens: no case reaches a real Hub
        import torch

        torch.set_num_threads(1)
        import warnings

        warnings.filterwarnings("ignore")
        from tests.fuzz.isolation import CASE_SECONDS
        from tests.fuzz.servers import ALICE, PermanentPatch

        if "hub" in families:
            from tests.hub_server import hub_env

            hub_env(PermanentPatch(), SimpleNamespace(endpoint=srv["hub"]), workdir / "hf-cache", token=ALICE)
        rng = random.Random(args.seed)
        t0 = time.monotonic()
        cases: list[Case] = []
        fixtures = workdir / "fixtures"
        fixtures.mkdir()
        for key in families:
            fam = build_family(key, not args.quick, rng, fixtures, srv)
            cases += select_quick(fam, rng) if args.quick else fam
        print(f"{len(cases)} cases ({', '.join(families)}), set up in {time.monotonic() - t0:.0f} s; "
              f"{args.jobs} at a time, {CASE_SECONDS:g} s / {args.mem:g} GiB per case unless stated", file=sys.stderr)
        t1 = time.monotonic()
        results = run_cases(cases, args.jobs, workdir, int(args.mem * 2**30), progress=True)
        took = time.monotonic() - t1
        cmd = "python bench/hostile.py" + (" --quick" if args.quick else "") + "".join(
            f" --family {f}" for f in args.family or [])
        print(f"\n`{cmd}`: {len(results)} cases in {took:.0f} s (seed {args.seed})\n")
        print(table(results, families))
        if args.details:
            print()
            print(details(results))
        if args.json:
            Path(args.json).write_text(json.dumps([r.__dict__ for r in results], indent=1))
        return 0
    finally:
        if server_proc is not None:
            with contextlib.suppress(Exception):
                server_proc.stdin.close()
                server_proc.wait(timeout=10)
            if server_proc.poll() is None:
                server_proc.kill()
        if args.keep:
            print(f"work folder kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
