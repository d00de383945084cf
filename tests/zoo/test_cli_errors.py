"""The command line never shows a traceback for a user's mistake: `error: …` on stderr, exit 2
(argparse's own usage errors exit 2 too); a bug is one line and exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoo.cli import main

CASES = {
    "unknown model": (["show", "llama-9"], "unknown model 'llama-9'"),
    "unknown kind in an override": (["show", "llama-2-7b", "arch.ffn.kind=swigl"], "did you mean 'swiglu'"),
    "boolean layer count": (["show", "llama-2-7b", "arch.n_layers=true"], "expected an integer, got a boolean"),
    "huge layer count": (["show", "llama-2-7b", "arch.n_layers=100000"], "less than or equal to 1024"),
    "infinite eps": (["compile", "llama-2-7b", "arch.norm.eps=.inf"], "finite number"),
    "override without =": (["show", "llama-2-7b", "arch.n_layers"], "KEY.PATH=VALUE"),
    "unknown backend": (["compile", "tiny-code", "--backend", "fast", "--explain"], None),
    "dtype": (["generate", "tiny-code", "x", "--dtype", "float7"], "unknown dtype 'float7'"),
    "device": (["generate", "tiny-code", "x", "--device", "nonsense"], "unknown device 'nonsense'"),
    "cuda on a cpu build": (["generate", "tiny-code", "x", "--device", "cuda"], "no CUDA device"),
    "top-p": (["generate", "tiny-code", "x", "--top-p", "2"], "--top-p must be in (0, 1]"),
    "negative temperature": (["generate", "tiny-code", "x", "--temperature", "-1"], "--temperature must be a finite number >= 0"),
    "nan temperature": (["generate", "tiny-code", "x", "--temperature", "nan"], "--temperature must be a finite number"),
    "negative top-k": (["generate", "tiny-code", "x", "--top-k", "-3", "--temperature", "1"], "--top-k must be >= 1"),
    "no new tokens": (["generate", "tiny-code", "x", "--max-new-tokens", "0"], "--max-new-tokens must be >= 1"),
    "past the context": (["generate", "tiny-code", "x", "--max-new-tokens", "5000"], "past tiny-code's context of 1024 tokens"),
    "image on a text model": (["generate", "tiny-code", "x", "--image", "a.png"], "has no vision encoder"),
    "infilling on a model without it": (["generate", "tiny-code", "x", "--suffix", "y"], "not trained for infilling"),
    "malformed repo id": (["pull", "a//b"], "is not a Hub repo id"),
    "missing folder": (["generate", "./no/such/folder", "x"], "no such checkpoint folder"),
    "convert to an unknown layout": (["convert", "tiny-code", "/tmp/zoo-never", "--to", "onnx"], None),
    "a spec file that is not YAML": (["show", "{spec}"], "not valid YAML"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_user_errors_are_one_line_and_exit_2(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv, message = CASES[case]
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    argv = [a.replace("{spec}", str(bad)) for a in argv]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse: usage errors exit 2 with its own message
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and "error" in err
    if message:
        assert message in err, err


def test_an_unexpected_failure_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib

    cli = importlib.import_module("zoo.cli.main")
    monkeypatch.setattr(cli, "cmd_list", lambda args: 1 / 0)
    assert main(["list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unexpected ZeroDivisionError") and "ZOO_DEBUG=1" in err and "Traceback" not in err
