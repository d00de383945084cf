"""A CLI user's mistakes, as a new user makes them: each ends in `error: …` (and a hint where one
helps) on stderr with exit code 2, names the flag not the Python argument, and never shows a
traceback; in-process through `zoo.cli.main` and through a real `python -m zoo` process.
(tests/zoo/test_cli_errors.py holds the first list of cases; these extend it.)"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo
from tests.hub_server import HubServer, hub_env
from zoo.cli import build_parser, main

TINY_LLAMA = ["arch.dim=64", "arch.n_layers=1", "arch.attention.n_heads=4", "arch.ffn.hidden_dim=96",
              "arch.vocab_size=128"]


@pytest.fixture(scope="module")
def no_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint folder without a tokenizer file."""
    return zoo.build("llama-2-7b", TINY_LLAMA).save(tmp_path_factory.mktemp("bare") / "model")


@pytest.fixture(scope="module")
def existing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dest") / "there"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    return folder


G = ["generate", "tiny-code", "def f("]
CASES: dict[str, tuple[list[str], list[str]]] = {
    # sampling flags, refused before the model loads, named as flags
    "top-k 0": (G + ["--top-k", "0", "--temperature", "1"], ["--top-k must be >= 1", "hint:"]),
    "top-p 0": (G + ["--top-p", "0"], ["--top-p must be in (0, 1]"]),
    "top-p 2": (G + ["--top-p", "2"], ["--top-p must be in (0, 1]"]),
    "infinite temperature": (G + ["--temperature", "inf"], ["--temperature must be a finite number >= 0"]),
    "negative max-new-tokens": (G + ["--max-new-tokens", "-5"], ["--max-new-tokens must be >= 1"]),
    "past the context": (G + ["--max-new-tokens", "5000"],
                         ["past tiny-code's context of 1024 tokens", "hint: ask for at most --max-new-tokens 10"]),
    "cuda on a cpu build": (G + ["--device", "cuda:1"], ["no CUDA device"]),
    "an integer dtype": (G + ["--dtype", "int8"], ["not a weight dtype 'int8'"]),
    "an empty stop string": (G + ["--stop", ""], ["a stop string cannot be empty"]),
    # what the model lacks
    "suffix without infilling": (G + ["--suffix", "x"], ["not trained for infilling", "--suffix",
                                                         "hint: fill in the middle with a Code Llama model"]),
    "stream with suffix": (G + ["--suffix", "x", "--stream"], ["--stream streams plain completions"]),
    "image and suffix": (G + ["--suffix", "x", "--image", "a.png"], ["--suffix (infilling) and --image"]),
    "a folder without a tokenizer": (["generate", "{bare}", "hello"], ["has no tokenizer", "hint: copy the tokenizer"]),
    # argparse's own errors, through the same handler
    "no command": ([], ["the following arguments are required: command"]),
    "unknown command": (["chatter"], ["invalid choice: 'chatter'"]),
    "missing prompt": (["generate", "tiny-code"], ["the following arguments are required: prompt",
                                                    "hint: `zoo generate --help`"]),
    "a word for a number": (G + ["--max-new-tokens", "many"], ["invalid int value: 'many'"]),
    "a word for a seed": (G + ["--seed", "x"], ["invalid int value: 'x'"]),
    "unknown flag": (G + ["--temprature", "1"], ["unrecognized arguments: --temprature"]),
    "convert to an unknown layout": (["convert", "tiny-code", "/tmp/zoo-x", "--to", "onnx"], ["invalid choice"]),
    # paths and names
    "convert onto an existing folder": (["convert", "tiny-code", "{existing}", "--to", "zoo"], ["pass --overwrite"]),
    "schema into a missing folder": (["schema", "-o", "/no/such/dir/schema.json"],
                                     ["No such file or directory: /no/such/dir/schema.json"]),
    "push a missing folder": (["push", "./no/such/folder", "alice/x"], ["no/such/folder"]),
    "list an unknown family": (["list", "--family", "nope"], ["no model of family 'nope'"]),
    "a typo in a catalog name": (["generate", "tiny-cod", "x"], ["unknown model 'tiny-cod'", "did you mean 'tiny-code'"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_user_error_is_an_error_line_and_exit_2(case: str, no_tokenizer: Path, existing: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    argv, expected = CASES[case]
    if case == "cuda on a cpu build" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    argv = [a.replace("{bare}", str(no_tokenizer)).replace("{existing}", str(existing)) for a in argv]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err, err
    for text in expected:
        assert text in err, err
    assert "overwrite=True" not in err and "pass token ids" not in err and "max_new_tokens" not in err
    if case == "convert onto an existing folder":
        assert (existing / "keep.txt").read_text() == "mine"


def test_empty_standard_input_is_an_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(G[:2] + ["-"]) == 2
    assert "error: " in capsys.readouterr().err


def test_ctrl_c_exits_130(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib

    cli = importlib.import_module("zoo.cli.main")

    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_list", interrupted)
    assert main(["list"]) == 130
    err = capsys.readouterr().err
    assert "error: interrupted" in err and "Traceback" not in err


def test_version_and_a_help_text_for_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"zoo {zoo.__version__}"
    missing = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, path + [name])
            elif not action.help and not isinstance(action, argparse._HelpAction):
                missing.append(f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), ["zoo"])
    assert not missing, f"flags without help: {missing}"
    assert main(["generate", "--help"]) == 0
    assert "--stop" in capsys.readouterr().out


def test_stream_stop_stdin_and_seed(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(G + ["--max-new-tokens", "30"]) == 0
    plain = capsys.readouterr().out
    assert main(G + ["--max-new-tokens", "30", "--stream"]) == 0
    assert capsys.readouterr().out == plain
    cut = plain[len("def f("):][8:11]
    assert main(G + ["--max-new-tokens", "30", "--stop", cut]) == 0
    assert capsys.readouterr().out == plain[:plain.index(cut, len("def f("))] + "\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO("def f("))
    assert main(G[:2] + ["-", "--max-new-tokens", "30"]) == 0
    assert capsys.readouterr().out == plain
    sampled = G + ["--temperature", "1.0", "--max-new-tokens", "16"]
    runs = set()
    for _ in range(3):
        assert main(sampled) == 0
        runs.add(capsys.readouterr().out)
    assert len(runs) > 1  # no --seed: a fresh seed each run
    assert main(sampled + ["--seed", "7"]) == 0 and main(sampled + ["--seed", "7"]) == 0
    a, b = capsys.readouterr().out.split("\n", 1)[0], None
    assert main(sampled + ["--seed", "7"]) == 0
    b = capsys.readouterr().out.split("\n", 1)[0]
    assert a == b


def test_a_name_with_a_slash_is_a_hub_repo_not_the_catalog(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    with HubServer() as server:
        hub_env(monkeypatch, server, tmp_path / "cache")
        assert main(["pull", "alice/tiny-code"]) == 2
        assert "error: alice/tiny-code: repository not found" in capsys.readouterr().err
        assert main(["generate", "alice/llama-2-7b", "x"]) == 2
        assert "error: alice/llama-2-7b: repository not found" in capsys.readouterr().err


def _zoo(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ZOO_DEBUG"}
    return subprocess.run([sys.executable, "-m", "zoo", *args], input=stdin, capture_output=True, text=True,
                          timeout=120, env=env, cwd=Path(__file__).resolve().parents[2])


@pytest.mark.parametrize("argv, message", [
    (["generate", "tiny-code", "x", "--top-p", "2"], "--top-p must be in (0, 1]"),
    (["generate", "tiny-code", "x", "--suffix", "y"], "not trained for infilling"),
    (["generate", "tiny-code"], "the following arguments are required: prompt"),
])
def test_a_real_process_shows_no_traceback(argv: list[str], message: str) -> None:
    run = _zoo(*argv)
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("error: ") and message in run.stderr and "Traceback" not in run.stderr


def test_a_real_process_streams_from_stdin() -> None:
    run = _zoo("generate", "tiny-code", "-", "--stream", "--max-new-tokens", "12", stdin="def fib(n):")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("def fib(n):") and len(run.stdout) > len("def fib(n):\n")
