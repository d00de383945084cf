"""BTX's expert-training stage as independent jobs: the paper's embarrassingly parallel step.

    recipe = ExpertRecipe(steps=2000, lr=1e-3)
    train_expert("experts/expert-0", "code.bin", "trained/expert-0", recipe)   # one job: any machine
    train_all("experts", ["code.bin", "c.bin", "prose.bin"], "trained", recipe, procs=3)  # one process each
    train_on_rank("experts", [...], "trained", recipe)   # under torchrun: rank r trains expert r

Each job fine-tunes one branch (`zoo btx branch`) on its own data through the library's Trainer
and writes a training run folder (`step-*` checkpoints, `metrics.jsonl`) atomically: it trains in
a hidden folder beside the target, renamed into place only when the run finished, so a failed or
killed job leaves no half-trained expert for `mix` to pick up (`mix` reads a run folder as its
newest step). No job talks to another: the same seed and data give the same weights whether the
experts train one after another, in N processes, on N machines, or on N torchrun ranks.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..compiler.errors import ZooError

LOG_DIR = "logs"
TAIL_LINES = 20


class ExpertTrainError(ZooError, ValueError):
    """A bad expert-training request: no experts, data not one file per expert, a missing file,
    an existing output, an unsupported --ranks-per-expert."""


class ExpertJobError(ZooError, RuntimeError):
    """Expert jobs that failed: `failures` holds (expert name, exit code, log path, log tail)
    for each, in expert order; the message names the first and says how to rerun it."""

    def __init__(self, message: str, failures: Sequence[tuple[str, int, Path, str]]) -> None:
        super().__init__(message)
        self.failures = list(failures)


@dataclass(frozen=True)
class ExpertRecipe:
    """The training settings shared by every expert (the options of `zoo train`, same defaults)."""

    steps: int
    batch_size: int = 8
    seq_len: int = 256
    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    warmup: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    accum: int = 1
    log_every: int = 10
    checkpoint_every: int = 0
    keep_last: int | None = None
    seed: int = 0
    dtype: str = "uint16"
    sample: str = "random"
    device: str = "cpu"
    backend: str | None = None

    def argv(self) -> list[str]:
        """These settings as `zoo btx train` options (the subprocess's command line)."""
        out: list[str] = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out += [f"--{f.name.replace('_', '-')}", repr(value) if isinstance(value, float) else str(value)]
        return out

    @classmethod
    def from_args(cls, args: Any) -> ExpertRecipe:
        return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def add_recipe_options(parser: Any) -> None:
    """One option per ExpertRecipe field (so the CLI and the subprocess command never drift)."""
    for f in dataclasses.fields(ExpertRecipe):
        flag = f"--{f.name.replace('_', '-')}"
        if f.name == "steps":
            parser.add_argument(flag, type=int, required=True, help="optimizer steps per expert")
            continue
        default = f.default
        kind = {"keep_last": int, "backend": str}.get(f.name, type(default))
        choices = {"dtype": ["uint16", "int32", "uint32", "int64"], "sample": ["random", "sequential"]}.get(f.name)
        parser.add_argument(flag, type=kind, default=default, choices=choices,
                            help=f"as in `zoo train` (default {default})")


# ------------------------------------------------------------------------------ one job
def _run_folder_problem(target: Path) -> str | None:
    """Why `target` may not be replaced by a new run (None: absent, or a training run)."""
    from ..train import checkpoints

    if not target.exists():
        return None
    if not target.is_dir() or not checkpoints(target):
        return f"{target} exists and is not a training run folder"
    return None


def _sweep_dead_jobs(out: Path) -> None:
    """Remove the hidden folders of jobs on this machine that died mid-run (killed: no cleanup ran)."""
    for p in out.parent.glob(f".{out.name}.tmp-*"):
        m = re.match(rf"^\.{re.escape(out.name)}\.tmp-(\d+)-", p.name)
        if m is None:
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(p, ignore_errors=True)
        except OSError:  # alive under another user, or not ours to signal
            pass


def train_expert(expert: str | Path, data: str | Path, out: str | Path, recipe: ExpertRecipe, *,
                 overwrite: bool = False, threads: int | None = None, progress: bool | None = None) -> Path:
    """Fine-tune one branch `expert` (a checkpoint folder or a run: its newest step) on `data`
    and write the run to `out` atomically; returns `out`. `threads` pins torch's CPU threads
    (results are bit-reproducible for the same thread count)."""
    import torch

    from ..api import load
    from ..train import TokenStream, TrainConfig, Trainer
    from .btx import resolve_folder

    out = Path(out).absolute()
    folder = resolve_folder(expert)
    if folder is None:
        raise ExpertTrainError(f"{expert}: not a zoo checkpoint folder or training run (make the experts with "
                               f"`zoo btx branch`)")
    if out.exists() and not overwrite:
        raise ExpertTrainError(f"{out} exists; pass overwrite=True (--overwrite) to retrain this expert")
    if (why := _run_folder_problem(out)) is not None:
        raise ExpertTrainError(f"will not replace it: {why}")
    if threads is not None:
        torch.set_num_threads(threads)
    r = recipe
    torch.manual_seed(r.seed)
    stream = TokenStream.from_file(data, r.seq_len, r.batch_size, dtype=r.dtype, mode=r.sample, seed=r.seed)
    model = load(folder, device=r.device, backend=r.backend)
    config = TrainConfig(steps=r.steps, lr=r.lr, min_lr_ratio=r.min_lr_ratio, warmup_steps=r.warmup,
                         weight_decay=r.weight_decay, grad_clip=r.grad_clip or None, accum_steps=r.accum,
                         checkpoint_every=r.checkpoint_every, keep_last=r.keep_last, log_every=r.log_every,
                         extra={"data": str(Path(data).absolute()), "dtype": r.dtype, "eval_fraction": 0.0,
                                "sample": r.sample, "seed": r.seed, "btx_expert": str(folder)})
    out.parent.mkdir(parents=True, exist_ok=True)
    _sweep_dead_jobs(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    try:
        Trainer(model, stream, config, out=tmp).fit(progress=progress)
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _swap_into_place(tmp: Path, target: Path) -> None:
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / "run")
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


# ------------------------------------------------------------------------------ many jobs
_INDEX = re.compile(r"^(?P<prefix>.+)-(?P<i>\d+)$")


def find_experts(experts: str | Path | Sequence[str | Path], prefix: str = "expert") -> list[Path]:
    """The branches to train: `experts` as a list of folders, or a folder holding PREFIX-0 …
    PREFIX-{N-1} (as `zoo btx branch` writes them), in index order."""
    if isinstance(experts, (str, Path)):
        root = Path(experts)
        if not root.is_dir():
            raise ExpertTrainError(f"{root}: no such folder of experts")
        found = sorted((int(m["i"]), p) for p in root.iterdir()
                       if p.is_dir() and (m := _INDEX.match(p.name)) and m["prefix"] == prefix)
        if not found:
            raise ExpertTrainError(f"{root} holds no {prefix}-N folders (make them with `zoo btx branch`)")
        return [p for _, p in found]
    paths = [Path(p) for p in experts]
    if not paths:
        raise ExpertTrainError("no experts to train")
    return paths


def _plan(experts: Any, data: Sequence[str | Path], out: str | Path, prefix: str, overwrite: bool,
          skip_done: bool, owned: Any = None) -> list[tuple[Path, Path, Path]]:
    """(expert, data, output) per expert still to train; typed errors before any job starts.
    `owned(i)`: whether expert i is this caller's to train (a torchrun rank's): only those
    outputs are checked and planned (another rank may already be writing its own)."""
    paths = find_experts(experts, prefix)
    if len(data) != len(paths):
        raise ExpertTrainError(f"{len(paths)} experts ({', '.join(p.name for p in paths)}) but {len(data)} data "
                               f"files: give one --data file per expert, in expert order")
    jobs = []
    for i, (e, d) in enumerate(zip(paths, data)):
        if not Path(d).is_file():
            raise ExpertTrainError(f"{e.name}: no such token file {d}")
        if owned is not None and not owned(i):
            continue
        target = Path(out).absolute() / e.name
        if target.exists() and skip_done and _run_folder_problem(target) is None:
            continue
        if target.exists() and not overwrite:
            raise ExpertTrainError(f"{target} exists; pass --overwrite to retrain, or --skip-done to train only "
                                   f"the experts without output")
        jobs.append((e, Path(d), target))
    return jobs


def _command(expert: Path, data: Path, target: Path, recipe: ExpertRecipe, threads: int | None,
             overwrite: bool) -> list[str]:
    cmd = ["btx", "train", str(expert), "--data", str(data), "--out", str(target), "--no-progress",
           *recipe.argv()]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    return cmd + (["--overwrite"] if overwrite else [])


def _tail(log: Path, n: int = TAIL_LINES) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    " + s for s in lines[-n:]) or "    (empty log)"


def train_all(experts: str | Path | Sequence[str | Path], data: Sequence[str | Path], out: str | Path,
              recipe: ExpertRecipe, *, procs: int = 1, threads: int | None = None, prefix: str = "expert",
              overwrite: bool = False, skip_done: bool = False, timeout: float | None = None,
              report: Callable[[str], None] | None = print) -> list[Path]:
    """Train every expert in its own OS process (`python -m zoo btx train …`, a fresh
    interpreter: no fork), at most `procs` at once; each writes OUT/<expert name> atomically and
    logs to OUT/logs/<expert name>.log. Jobs are independent: a failure does not stop the
    others; ExpertJobError afterwards names every failed expert with its exit code and log tail.
    `threads` per job defaults to the CPU count / procs; a job running past `timeout` seconds is
    killed and counts as failed. Returns the run folders, in expert order."""
    if procs < 1:
        raise ExpertTrainError(f"--procs must be at least 1, got {procs}")
    jobs = _plan(experts, data, out, prefix, overwrite, skip_done)
    targets = [Path(out).absolute() / e.name for e in find_experts(experts, prefix)]
    if not jobs:
        return targets
    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // min(procs, len(jobs)))
    logs = Path(out).absolute() / LOG_DIR
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    pending = list(jobs)
    running: list[tuple[subprocess.Popen[bytes], Path, Path, list[str], float, Any]] = []
    failures: list[tuple[str, int, Path, str]] = []
    commands: dict[str, list[str]] = {}
    try:
        while pending or running:
            while pending and len(running) < procs:
                e, d, target = pending.pop(0)
                args = _command(e, d, target, recipe, threads, overwrite)
                commands[e.name] = args
                log = logs / f"{e.name}.log"
                fh = open(log, "wb")  # noqa: SIM115 (closed when the job ends, or in finally)
                proc = subprocess.Popen([sys.executable, "-m", "zoo", *args], stdout=fh, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env)
                running.append((proc, e, log, args, time.monotonic(), fh))
                if report:
                    report(f"{e.name}: started (pid {proc.pid}, {threads} thread(s)), log {log}")
            time.sleep(0.05)
            for proc, e, log, _, t0, fh in running:
                if timeout is not None and proc.poll() is None and time.monotonic() - t0 > timeout:
                    proc.kill()  # our own child, by handle
                    proc.wait()
                    fh.write(f"\n[zoo btx train-all: killed after {timeout:g} s (timeout)]\n".encode())
            for job in [j for j in running if j[0].poll() is not None]:
                proc, e, log, args, t0, fh = job
                running.remove(job)
                fh.close()
                rc = proc.returncode
                if rc != 0:
                    failures.append((e.name, rc, log, _tail(log)))
                if report:
                    report(f"{e.name}: {'done' if rc == 0 else f'FAILED (exit code {rc})'} "
                           f"in {time.monotonic() - t0:.1f} s")
    finally:
        for proc, *_, fh in running:  # interrupted: stop our own children, by handle
            proc.terminate()
        for proc, *_, fh in running:
            proc.wait()
            fh.close()
    if failures:
        order = {e.name: i for i, (e, _, _) in enumerate(jobs)}
        failures.sort(key=lambda f: order[f[0]])
        name, rc, log, tail = failures[0]
        ok = [e.name for e, _, _ in jobs if e.name not in {f[0] for f in failures}]
        more = f" (and {', '.join(f[0] for f in failures[1:])})" if len(failures) > 1 else ""
        raise ExpertJobError(
            f"expert job {name} failed with exit code {rc}{more}; its log {log} ends with:\n{tail}\n"
            f"{'finished: ' + ', '.join(ok) + '; ' if ok else ''}rerun the failed one with: "
            f"zoo {' '.join(commands[name])}", failures)
    return targets


def train_on_rank(experts: str | Path | Sequence[str | Path], data: Sequence[str | Path], out: str | Path,
                  recipe: ExpertRecipe, *, ranks_per_expert: int = 1, threads: int | None = None,
                  prefix: str = "expert", overwrite: bool = False, skip_done: bool = False,
                  progress: bool | None = None) -> list[Path]:
    """Under torchrun: rank r trains experts r, r + W, … (W the world size) in this process, with
    no process group and no collective: ranks never wait on each other. Returns what this rank
    wrote. Only one rank per expert is supported (sharding one expert over a rank group is FSDP)."""
    if ranks_per_expert != 1:
        raise ExpertTrainError(f"--ranks-per-expert {ranks_per_expert}: only 1 is supported (one expert per rank); "
                               f"an expert sharded over several ranks is FSDP training, `zoo train --fsdp`")
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise ExpertTrainError("--ranks-per-expert needs torchrun (RANK and WORLD_SIZE are not set); without it "
                               "use --procs")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    # every rank checks every expert and data file, but only its own outputs: another rank may
    # already have written its expert (ranks never wait on each other)
    mine = _plan(experts, data, out, prefix, overwrite, skip_done, owned=lambda i: i % world == rank)
    if recipe.device.startswith("cuda") and ":" not in recipe.device:
        recipe = dataclasses.replace(recipe, device=f"cuda:{os.environ.get('LOCAL_RANK', '0')}")
    done = []
    for e, d, target in mine:
        print(f"rank {rank}/{world}: training {e.name} on {d}", flush=True)
        try:
            done.append(train_expert(e, d, target, recipe, overwrite=overwrite, threads=threads, progress=progress))
        except BaseException:
            print(f"rank {rank}/{world}: expert {e.name} failed", file=sys.stderr, flush=True)
            raise
    return done
