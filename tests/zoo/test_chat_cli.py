"""`m.chat` on a text model and `zoo chat` driven through a real pseudo-terminal: a tiny random
Llama-2-chat model (its catalog spec's `chat:` section) saved with a SentencePiece tokenizer;
history, /reset, /system, /exit, and Ctrl-C (\\x03) in the middle of a reply, which stops the
reply and returns to the prompt."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import torch

import zoo
from zoo.chat import render_chat
from zoo.cli.chat import Session, repl
from zoo.compiler.errors import UsageError
from zoo.runtime.tokenizers import SentencePieceTokenizer

ROOT = Path(__file__).parents[2]
PY = ROOT / ".venv" / "bin" / "python"
TINY = ["arch.dim=32", "arch.n_layers=2", "arch.attention.n_heads=4", "arch.ffn.hidden_dim=64",
        "arch.vocab_size=120", "arch.max_seq_len=32768"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.zoo.weights_fixtures import train_tokenizer

    root = tmp_path_factory.mktemp("chat")
    m = zoo.build("llama-2-7b-chat", TINY, init="random", seed=0)
    with torch.no_grad():  # </s> (id 2) made unlikely, so replies run to --max-new-tokens
        m.output.weight[2] = -m.output.weight[3]
        m.output.weight[3] = 0.0
    m.tokenizer = SentencePieceTokenizer.from_file(train_tokenizer(root / "tok", vocab_size=120))
    return m.save(root / "tiny-chat")


@pytest.fixture(scope="module")
def model(folder: Path) -> Any:
    return zoo.load(folder).eval()


def test_chat_on_a_text_model_is_its_template_then_generate(model: Any) -> None:
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello world"}]
    ids = render_chat(model.tokenizer, model.spec.tokenizer, msgs)
    out = model.generate([ids], max_new_tokens=8, stop_tokens=[2])[0]
    assert model.chat(msgs, max_new_tokens=8) == model.tokenizer.decode(ids + out)[len(model.tokenizer.decode(ids)):]
    assert model.chat([msgs, msgs], max_new_tokens=4) == [model.chat(msgs, max_new_tokens=4)] * 2
    with pytest.raises(UsageError, match="roles alternate"):
        model.chat([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])


def test_a_model_without_a_template_names_the_spec_field() -> None:
    m = zoo.load("tiny-code")
    with pytest.raises(UsageError, match=r"tokenizer: \{chat: \{template: NAME\}\}"):
        m.chat([{"role": "user", "content": "hi"}])


def test_session_keeps_history_and_commands(model: Any) -> None:
    s = Session(model, "be brief", max_new_tokens=3)
    out = io.StringIO()
    assert repl(s, io.StringIO("hello\nworld\n"), out) == 0
    assert [m["role"] for m in s.messages()] == ["system", "user", "assistant", "user", "assistant"]
    assert s.command("/reset", out) and s.messages() == [{"role": "system", "content": "be brief"}]
    assert s.command("/system", out) and s.messages() == []
    assert s.command("/nope", out) and "unknown command /nope" in out.getvalue()
    assert not s.command("/exit", out)


def test_zoo_chat_in_a_pseudo_terminal_with_ctrl_c(folder: Path) -> None:
    """/system, a turn, Ctrl-C mid-reply (back at the prompt, no traceback), /reset, /exit (code 0)."""
    import subprocess

    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import pty_driver; "
            f"pty_driver.main({str(PY)!r}, {str(folder)!r})")
    out = subprocess.run([str(PY), "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr


def test_zoo_chat_ends_at_eof(folder: Path) -> None:
    import subprocess

    out = subprocess.run([str(PY), "-m", "zoo", "chat", str(folder), "--max-new-tokens", "3"], input="hi\n",
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(">>> ") == 2
    bad = subprocess.run([str(PY), "-m", "zoo", "chat", "tiny-code"], input="", capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "tokenizer: {chat: {template: NAME}}" in bad.stderr
