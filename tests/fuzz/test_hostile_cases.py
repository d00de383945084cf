"""The hostile inputs issue "Hostile input and faults" found, one named regression case each
(and the ones the fuzzing around them found): every one ends in a ZooError (or, for the CLI,
`error:` and exit code 2) within seconds and bounded memory; where the input is valid or merely
unusual, it is handled without a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .builders import (
    TINY,
    checkpoint_folders,
    compile_catalog,
    compile_file,
    compile_text,
    copy_folder,
    digest,
    load_digest,
    nan_model,
    tiny_model,
)
from .checkpoint_cases import CHECKPOINT_MUTATIONS
from .cli import isolated_cli
from .editors import move_weights_outside, point_tokenizer_outside, write_pickle_payload
from .isolation import assert_accepted, assert_handled, assert_refused, isolated
from .probes import load_warnings, load_watched
from .spec_cases import (
    HOSTILE_OVERRIDES,
    HOSTILE_SPEC_TEXTS,
    TEN_MB_SPEC,
    extends_chain,
    extends_cycle,
    sparse_spec_file,
    write_spec_file,
)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    m = tiny_model(seed=11)
    return {"model": m, "digest": digest(m), **checkpoint_folders(m, tmp_path_factory.mktemp("hostile"))}


def case_dir(tmp_path: Path, src: Path) -> Path:
    return copy_folder(src, tmp_path / "case")


# ---------------------------------------------------------------------------------- spec files


@pytest.mark.parametrize("what", list(HOSTILE_SPEC_TEXTS))
def test_a_hostile_spec_file_is_refused(tmp_path: Path, what: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_spec_file(tmp_path / "hostile.yaml", HOSTILE_SPEC_TEXTS[what])
    assert_refused(isolated(compile_file, path), f"spec file with {what}")
    assert not (tmp_path / "pwned-spec").exists()


@pytest.mark.parametrize("what", ["NUL bytes", "billion laughs", "400-deep nested mappings", "extends /dev/zero",
                                  "a 5000-digit int"])
def test_the_cli_refuses_a_hostile_spec_file_with_exit_2(tmp_path: Path, what: str) -> None:
    path = write_spec_file(tmp_path / "hostile.yaml", HOSTILE_SPEC_TEXTS[what])
    assert_refused(isolated_cli(["compile", str(path)]), f"zoo compile with {what}")


@pytest.mark.parametrize("what", ["NUL bytes", "billion laughs", "400-deep flow sequences", "a 5000-digit int",
                                  "a python/object tag", "duplicate keys"])
def test_a_hostile_spec_text_is_refused(what: str) -> None:
    text = HOSTILE_SPEC_TEXTS[what]
    assert_refused(isolated(compile_text, text if isinstance(text, str) else text.decode("latin-1")),
                   f"spec_from_text with {what}")


def test_a_10_mb_spec_is_handled_in_bounded_time() -> None:
    assert_handled(isolated(compile_text, TEN_MB_SPEC), "a 10 MB spec")


def test_a_2_gb_sparse_spec_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = sparse_spec_file(tmp_path / "huge.yaml")
    assert_refused(isolated(compile_file, path, mem=1 << 30), "a 2 GB spec file")


def test_a_fifo_as_a_spec_file_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    assert_refused(isolated(compile_file, fifo), "a FIFO as the spec file")
    assert_refused(isolated(compile_text, f"extends: {fifo}\nname: x\n"), "extends: a FIFO")


def test_an_extends_cycle_and_a_2000_file_chain(tmp_path: Path) -> None:
    assert_refused(isolated(compile_file, extends_cycle(tmp_path)), "an extends cycle")
    chain = tmp_path / "chain"
    chain.mkdir()
    assert_handled(isolated(compile_file, extends_chain(chain, 2000)), "an extends chain 2000 files long")
    assert_accepted(isolated(compile_file, chain / "s20.yaml"), "an extends chain 20 files long")


@pytest.mark.parametrize("what", list(HOSTILE_OVERRIDES))
def test_a_hostile_override_is_refused(what: str) -> None:
    assert_refused(isolated(compile_catalog, "llama-2-7b", TINY + [HOSTILE_OVERRIDES[what]]), f"override {what}")


def test_zoo_show_llama_2_7b_with_100000_layers_is_bounded() -> None:
    assert_handled(isolated_cli(["show", "llama-2-7b", "arch.n_layers=100000"]), "zoo show llama-2-7b n_layers=100000")
    assert_handled(isolated_cli(["show", "llama-2-7b", "arch.n_layers=100000", "--resolved"]), "… --resolved")
    assert_refused(isolated_cli(["show", "llama-2-7b", "arch.n_layers=1000000000000"]), "n_layers=10**12")


# ---------------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("what", list(CHECKPOINT_MUTATIONS))
def test_a_hostile_checkpoint_is_refused(ckpt: dict, tmp_path: Path, what: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    kind, mutate = CHECKPOINT_MUTATIONS[what]
    folder = case_dir(tmp_path, ckpt[kind])
    mutate(folder)
    monkeypatch.chdir(tmp_path)
    assert_refused(isolated(load_digest, folder), f"{kind} folder with {what}")
    assert not (tmp_path / "pwned").exists()


def test_the_checkpoint_fixtures_load(ckpt: dict) -> None:
    for kind in ("zoo", "hf", "sharded", "mixtral", "meta", "tiny-code"):
        assert_accepted(isolated(load_digest, ckpt[kind]), f"the {kind} folder")


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_a_tokenizer_outside_the_folder_is_refused_and_not_read(ckpt: dict, tmp_path: Path, how: str) -> None:
    secret = tmp_path / "secret"
    folder = case_dir(tmp_path, ckpt["tiny-code"])
    point_tokenizer_outside(folder, secret, how)
    out = isolated(load_watched, folder, secret)
    assert out.kind == "ok", f"tokenizer {how}: {out}"
    assert out.value["result"].startswith("zoo"), f"tokenizer {how} outside the folder was accepted"
    assert not out.value["opened"], f"tokenizer {how}: read {out.value['opened']}"


def test_a_weights_file_symlinked_outside_the_folder_is_refused(ckpt: dict, tmp_path: Path) -> None:
    folder = case_dir(tmp_path, ckpt["hf"])
    move_weights_outside(folder, tmp_path / "elsewhere")
    assert_refused(isolated(load_digest, folder), "model.safetensors symlinked outside the folder")


def test_nan_and_inf_weights_are_warned_about_or_refused(ckpt: dict, tmp_path: Path) -> None:
    m = nan_model()
    out = isolated(lambda: load_warnings(m.save(tmp_path / "nan")))
    assert out.kind == "zoo" or (out.kind == "ok" and out.value) or any("UserWarning" in w for w in out.warnings), \
        f"NaN/inf weights saved and loaded without a warning or an error: {out}"


def test_a_pickle_payload_in_a_pth_is_never_executed(ckpt: dict, tmp_path: Path) -> None:
    folder = case_dir(tmp_path, ckpt["meta"])
    write_pickle_payload(folder / "consolidated.00.pth", tmp_path / "pwned", bare=False)
    assert_refused(isolated(load_digest, folder), "a .pth holding a pickle payload")
    write_pickle_payload(folder / "consolidated.00.pth", tmp_path / "pwned", bare=True)
    assert_refused(isolated(load_digest, folder), "a .pth that is a bare pickle payload")
    assert not (tmp_path / "pwned").exists(), "a pickle payload was executed"


# ---------------------------------------------------------------------------------- names, the Hub, generation


@pytest.mark.parametrize("name", ["a//b", "../../etc", "/etc/passwd", "~nobody/x", "~no-such-user/x", "a/b/c/d/e", "",
                                  " ", "\x00", "llama-2-7b/../../x", "-a/b"], ids=repr)
def test_a_malformed_name_is_refused_offline(name: str) -> None:
    assert_refused(isolated(load_offline, name), f"zoo.load({name!r})")


def load_offline(name: str) -> str:
    """zoo.load with the Hub off (HF_HUB_OFFLINE, and an endpoint nothing listens on)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
    if "huggingface_hub.constants" in sys.modules:
        c = sys.modules["huggingface_hub.constants"]
        c.HF_HUB_OFFLINE, c.ENDPOINT = True, "http://127.0.0.1:9"
    return load_digest(name)


def test_a_user_repo_named_like_a_catalog_model_is_not_the_catalog_model() -> None:
    # nothing cached, offline: the error must name alice's repo, not the catalog's meta-llama one
    out = isolated(load_offline, "alice/llama-2-7b")
    assert_refused(out, "zoo.load('alice/llama-2-7b') offline")
    assert "meta-llama" not in out.message and "alice/llama-2-7b" in out.message, out.message


def _code() -> Any:
    import zoo

    return zoo.load("tiny-code")


@pytest.mark.parametrize("kw", [{"max_new_tokens": -1}, {"temperature": float("nan")}, {"temperature": -1.0},
                                {"top_p": 2.0}, {"top_k": -1}, {"max_new_tokens": 100000}], ids=repr)
def test_bad_generation_arguments_are_refused(kw: dict) -> None:
    assert_refused(isolated(lambda: _code().generate_text("x", **kw)), f"generate_text('x', **{kw!r})")


@pytest.mark.parametrize("flags", [["--dtype", "float7"], ["--device", "nonsense"], ["--top-p", "2"],
                                   ["--temperature", "-1"], ["--max-new-tokens", "-1"]], ids=" ".join)
def test_bad_generation_flags_are_refused_by_the_cli(flags: list[str]) -> None:
    assert_refused(isolated_cli(["generate", "tiny-code", "x", *flags]), "zoo generate tiny-code x " + " ".join(flags))


@pytest.mark.parametrize("argv", [["generate", "tiny-code", "x", "--dtype", "float7"],
                                  ["generate", "tiny-code", "x", "--device", "nonsense"]], ids=" ".join)
def test_the_zoo_executable_says_error_and_exits_2(argv: list[str], tmp_path: Path) -> None:
    """The real `zoo` entry point, in its own process: no traceback, `error:`, exit code 2."""
    exe = Path(sys.executable).parent / "zoo"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "zoo.cli"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), ZOO_CACHE=str(tmp_path / "zoo"))
    proc = subprocess.run(cmd + argv, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.returncode == 2 and "error:" in proc.stderr, (proc.returncode, proc.stderr[-2000:])
