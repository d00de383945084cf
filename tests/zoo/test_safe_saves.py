"""Saves never lose data: only a checkpoint folder is replaced (never a user's files, never the
current directory), the swap leaves no moment without a checkpoint, concurrent saves to one
folder both finish whole, a load during overwriting saves sees one version, and a save killed
at any moment leaves the previous checkpoint loadable."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import zoo
from zoo.checkpoint import CheckpointError
from zoo.checkpoint.atomic import replace_problem
from zoo.formats.export import export_hf

ROOT = Path(__file__).resolve().parents[2]
TINY = ["arch.dim=64", "arch.n_layers=2", "arch.attention.n_heads=4", "arch.ffn.hidden_dim=96", "arch.vocab_size=128"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def tiny(seed: int = 0):  # type: ignore[no-untyped-def]
    return zoo.build("llama-2-7b", TINY, seed=seed)


def same(a, b) -> bool:  # type: ignore[no-untyped-def]
    sb = b.state_dict()
    return all(torch.equal(v, sb[k]) for k, v in a.state_dict().items())


def test_a_folder_with_other_files_is_never_replaced(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    (work / "data").mkdir()
    (work / "data" / "corpus.bin").write_bytes(b"\0" * 10)
    with pytest.raises(CheckpointError, match=r"not part of a checkpoint \(data/corpus.bin, notes.txt\)"):
        tiny().save(work)
    with pytest.raises(CheckpointError, match="notes.txt"):
        export_hf(tiny(), work)
    assert (work / "notes.txt").read_text() == "mine" and (work / "data" / "corpus.bin").is_file()


def test_a_checkpoint_with_an_extra_file_is_not_replaced(tmp_path: Path) -> None:
    folder = tiny().save(tmp_path / "ckpt")
    (folder / "eval-results.json").write_text("{}")
    with pytest.raises(CheckpointError, match="eval-results.json"):
        tiny(1).save(folder)
    assert same(zoo.load(folder), tiny())


def test_the_current_directory_is_never_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tiny().save(tmp_path / "ckpt")
    monkeypatch.chdir(folder)
    with pytest.raises(CheckpointError, match="is the current directory"):
        tiny(1).save(".")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.txt").write_text("x")
    with pytest.raises(CheckpointError, match="current directory"):
        tiny(1).save(".")
    assert (tmp_path / "mine.txt").is_file() and same(zoo.load(folder), tiny())


def test_checkpoints_of_each_layout_are_replaced(tmp_path: Path) -> None:
    zoo_folder = tiny().save(tmp_path / "zoo")
    hf_folder = export_hf(tiny(), tmp_path / "hf")
    for folder in (zoo_folder, hf_folder):
        assert replace_problem(folder) is None
    tiny(1).save(zoo_folder)
    export_hf(tiny(1), hf_folder)
    assert same(zoo.load(zoo_folder), tiny(1)) and same(zoo.load(hf_folder), tiny(1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "zoo"]  # nothing left beside them


def test_the_cli_convert_overwrite_keeps_user_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from zoo.cli import main

    src = tiny().save(tmp_path / "src")
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "thesis.tex").write_text("years of work")
    assert main(["convert", str(src), str(dst), "--to", "hf", "--overwrite"]) == 2
    assert "thesis.tex" in capsys.readouterr().err and (dst / "thesis.tex").read_text() == "years of work"


SAVER = """
import sys, zoo
dst, seed, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
m = zoo.build("llama-2-7b", {tiny}, seed=seed)
for _ in range(n):
    m.save(dst, max_shard_size="40KB", progress=False)
print("done", flush=True)
"""


def _saver(dst: Path, seed: int, n: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SAVER.format(tiny=TINY), str(dst), str(seed), str(n)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_concurrent_saves_to_one_folder_both_finish(tmp_path: Path) -> None:
    dst = tmp_path / "ckpt"
    procs = [_saver(dst, seed, 6) for seed in (0, 1)]
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0 and "done" in out, err[-2000:]
    back = zoo.load(dst, verify=True)
    assert same(back, tiny(0)) or same(back, tiny(1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_loads_during_overwriting_saves_see_one_version(tmp_path: Path) -> None:
    dst = tmp_path / "ckpt"
    a, b = tiny(0), tiny(1)
    a.save(dst, max_shard_size="40KB")
    writers = [_saver(dst, seed, 15) for seed in (1, 0)]
    loads = 0
    try:
        while any(w.poll() is None for w in writers):
            m = zoo.load(dst)
            assert same(m, a) or same(m, b), "a load mixed two versions"
            loads += 1
    finally:
        for w in writers:
            w.communicate(timeout=240)
    assert loads >= 5 and all(w.returncode == 0 for w in writers)


KILLED = """
import os, sys, zoo
dst, seed = sys.argv[1], int(sys.argv[2])
m = zoo.build("llama-2-7b", {tiny}, seed=seed)
print("ready", flush=True)
while True:
    m.save(dst, max_shard_size="40KB", progress=False)
"""


@pytest.mark.parametrize("trial", range(6))
def test_a_save_killed_at_any_moment_keeps_a_whole_checkpoint(tmp_path: Path, trial: int) -> None:
    dst = tmp_path / "ckpt"
    tiny(0).save(dst, max_shard_size="40KB")
    proc = subprocess.Popen([sys.executable, "-c", KILLED.format(tiny=TINY), str(dst), "1"], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(random.Random(trial).uniform(0.0, 1.0))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    back = zoo.load(dst, verify=True)  # whole, whichever version
    assert same(back, tiny(0)) or same(back, tiny(1))
    tiny(2).save(dst)  # the next save sweeps what the killed one left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_checkpoint_like_names_without_weights_are_a_users_files(tmp_path: Path) -> None:
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "README.md").write_text("# my project")
    (mine / "config.json").write_text('{"editor": "vim"}')
    with pytest.raises(CheckpointError, match="not part of a checkpoint"):
        tiny().save(mine)
    assert (mine / "config.json").read_text() == '{"editor": "vim"}'


@pytest.mark.parametrize("where", ["a\x00b", "n" * 300, "file/below"])
def test_impossible_targets_are_checkpoint_errors(tmp_path: Path, where: str) -> None:
    (tmp_path / "file").write_text("a file, not a folder")
    with pytest.raises(CheckpointError, match="cannot save to"):
        tiny().save(tmp_path / where)


FULL_DISK = """
import resource, signal, sys, zoo
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
m = zoo.build("llama-2-7b", {tiny}, seed=1)
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
try:
    m.save(sys.argv[1], progress=False)
except zoo.ZooError as e:
    print("refused:", e)
"""


def test_a_full_disk_is_a_checkpoint_error_and_keeps_the_old_checkpoint(tmp_path: Path) -> None:
    dst = tmp_path / "ckpt"
    tiny(0).save(dst)
    run = subprocess.run([sys.executable, "-c", FULL_DISK.format(tiny=TINY), str(dst)], env=ENV, capture_output=True,
                         text=True, timeout=120)
    assert "refused: could not write" in run.stdout, run.stdout + run.stderr[-2000:]
    assert same(zoo.load(dst, verify=True), tiny(0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
