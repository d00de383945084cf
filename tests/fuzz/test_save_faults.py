"""Saving never loses data: a save into a folder of someone's files (or the current directory,
or over a file) is refused and leaves them; a save killed at any point leaves the previous
checkpoint whole and loadable; concurrent saves to one folder both finish (or one gets a
ZooError) and leave one whole version; a load during overwriting saves sees one whole version;
a full disk is a ZooError that keeps the previous checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .builders import digest, hf_folder, load_digest, tiny_model
from .fault_cases import CWD_TARGETS, IMPOSSIBLE_SAVE_TARGETS, USER_FOLDERS
from .isolation import assert_accepted, assert_refused, isolated
from .saves import (
    concurrent_saves_check,
    fill_disk_at,
    killed_save_check,
    loads_during_saves,
    overwrite_under_loaded,
    save_killed_at,
    save_loaded_over_itself,
    snapshot,
    user_workdir,
    write_files,
)
from .strategies import fuzz


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    a, b = tiny_model(seed=21), tiny_model(seed=22)
    return {"a": a, "b": b, "da": digest(a), "db": digest(b)}


@pytest.mark.parametrize("what", list(USER_FOLDERS))
def test_saving_into_a_folder_of_user_files_is_refused_and_keeps_them(models: dict, tmp_path: Path, what: str) -> None:
    target = tmp_path / "mine"
    write_files(target, USER_FOLDERS[what])
    before = snapshot(target)
    out = isolated(lambda: str(models["a"].save(target)))
    assert snapshot(target) == before, f"saving into a folder holding {what} changed or removed its files ({out})"
    assert_refused(out, f"save into a folder holding {what}")


@pytest.mark.parametrize("where", CWD_TARGETS)
def test_saving_to_the_current_directory_never_wipes_it(models: dict, tmp_path: Path, where: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    home = user_workdir(tmp_path)
    monkeypatch.chdir(home / "sub" if where == ".." else home)
    target = str(home) if where == "CWD" else where
    before = snapshot(tmp_path)
    out = isolated(lambda: str(models["a"].save(target)))
    assert snapshot(tmp_path) == before or all(k in snapshot(tmp_path) for k in before), \
        f"m.save({target!r}) removed files of the current directory ({out})"
    assert_refused(out, f"m.save({target!r}) in a folder of user files")


def test_saving_over_a_file_is_refused_and_keeps_it(models: dict, tmp_path: Path) -> None:
    target = tmp_path / "report.pdf"
    target.write_bytes(b"%PDF-1.7 precious")
    out = isolated(lambda: str(models["a"].save(target)))
    assert target.is_file() and target.read_bytes() == b"%PDF-1.7 precious", f"the file was replaced ({out})"
    assert_refused(out, "save over a file")


@pytest.mark.parametrize("target", list(IMPOSSIBLE_SAVE_TARGETS.values()), ids=["NUL", "too long", "under a file"])
def test_a_save_to_an_impossible_path_is_a_zoo_error(models: dict, tmp_path: Path, target: str) -> None:
    (tmp_path / "parent-is-a-file").write_text("x")
    assert_refused(isolated(lambda: str(models["a"].save(tmp_path / target))), f"save to {target[:40]!r}")


def test_saving_over_a_checkpoint_replaces_it(models: dict, tmp_path: Path) -> None:
    target = models["a"].save(tmp_path / "ckpt")
    assert_accepted(isolated(lambda: str(models["b"].save(target))), "save over a zoo checkpoint")
    assert isolated(load_digest, target).value == models["db"]
    hf = hf_folder(models["a"], tmp_path / "hf")
    assert_accepted(isolated(lambda: str(models["b"].save(hf))), "save over a transformers folder zoo wrote")


def test_saving_a_loaded_model_over_its_own_folder(models: dict, tmp_path: Path) -> None:
    target = models["a"].save(tmp_path / "ckpt")
    out = isolated(save_loaded_over_itself, target)
    assert_accepted(out, "load a folder, save the model over it")
    assert out.value == [models["da"], models["da"]]


def test_overwriting_a_folder_leaves_a_model_loaded_from_it_intact(models: dict, tmp_path: Path) -> None:
    target = models["a"].save(tmp_path / "ckpt")
    out = isolated(overwrite_under_loaded, target, models["b"])
    assert_accepted(out, "overwrite the folder a loaded model maps")
    assert out.value == models["da"], "a loaded model changed when its folder was saved over"


# ---------------------------------------------------------------------------------- killed saves


@pytest.fixture(scope="module")
def save_events(models: dict, tmp_path_factory: pytest.TempPathFactory) -> int:
    target = tmp_path_factory.mktemp("count") / "ckpt"
    models["a"].save(target)
    out = isolated(save_killed_at, models["b"], target, None, timeout=60)
    assert out.kind == "ok" and int(out.value) > 100, out
    return int(out.value)


def _kill_and_check(models: dict, root: Path, fraction: float, total: int, fresh: bool) -> None:
    n = max(1, int(fraction * total))
    out = isolated(killed_save_check, models, root, n, fresh, total, timeout=60)
    assert out.kind == "ok", f"a save killed at event {n}/{total} ({'fresh' if fresh else 'over a checkpoint'}): {out}"


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.6, 0.8, 0.9, 0.97, 0.99, 0.999])
def test_a_save_killed_midway_leaves_the_previous_checkpoint(models: dict, save_events: int, tmp_path: Path,
                                                             fraction: float) -> None:
    _kill_and_check(models, tmp_path, fraction, save_events, fresh=False)


@fuzz(6)
@given(fraction=st.floats(0.0, 1.0), fresh=st.booleans())
def test_a_save_killed_anywhere_loses_nothing(models: dict, save_events: int,
                                              tmp_path_factory: pytest.TempPathFactory, fraction: float,
                                              fresh: bool) -> None:
    _kill_and_check(models, tmp_path_factory.mktemp("kill"), fraction, save_events, fresh=fresh)


def test_a_full_disk_is_a_zoo_error_and_keeps_the_previous_checkpoint(models: dict, tmp_path: Path) -> None:
    target = models["a"].save(tmp_path / "ckpt")

    def save_on_a_full_disk() -> str:
        fill_disk_at(20_000)
        return str(models["b"].save(target))

    assert_refused(isolated(save_on_a_full_disk), "a save that runs out of disk")
    after = isolated(load_digest, target)
    assert after.kind == "ok" and after.value == models["da"], f"the previous checkpoint after a full disk: {after}"


# ---------------------------------------------------------------------------------- concurrency


@pytest.mark.parametrize("existing", [False, True], ids=["fresh", "over a checkpoint"])
@pytest.mark.parametrize("stagger", [0.0, 0.003, 0.01])
def test_two_saves_into_one_folder_both_finish_or_one_refuses(models: dict, tmp_path: Path, existing: bool,
                                                              stagger: float) -> None:
    target = tmp_path / "ckpt"
    if existing:
        models["a"].save(target)
    out = isolated(concurrent_saves_check, models, target, 2, stagger, timeout=60)
    assert out.kind == "ok", f"concurrent saves: {out}"


def test_four_saves_into_one_folder(models: dict, tmp_path: Path) -> None:
    target = tmp_path / "ckpt"
    models["a"].save(target)
    out = isolated(concurrent_saves_check, models, target, 4, 0.001, need_one=False, timeout=60)
    assert out.kind == "ok", f"four concurrent saves: {out}"


def test_a_load_during_overwriting_saves_sees_one_whole_version(models: dict, tmp_path: Path) -> None:
    target = models["a"].save(tmp_path / "ckpt")
    out = isolated(loads_during_saves, models, target, 2.0, timeout=60)
    assert out.kind == "ok", f"loads during saves: {out}"
    assert not out.value["failures"], f"loads during saves failed: {out.value['failures'][:5]}"
    assert out.value["a"] + out.value["b"] > 5, out.value
