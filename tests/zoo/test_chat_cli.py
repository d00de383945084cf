"""`m.chat` on a text model and `zoo chat` driven through a real pseudo-terminal: a tiny random
Llama-2-chat model (its catalog spec's `chat:` section) saved with a SentencePiece tokenizer;
history, /reset, /system, /exit, and Ctrl-C (\\x03) in the middle of a reply, which stops the
reply and returns to the prompt."""

from __future__ import annotations

import io
import os
import pty
import select
import time
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
        "arch.vocab_size=120", "arch.max_seq_len=8192"]


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


def _read_until(fd: int, needle: bytes, timeout: float = 60.0) -> bytes:
    buf = b""
    end = time.monotonic() + timeout
    while needle not in buf:
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {needle!r} in {buf[-600:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                raise AssertionError(f"EOF before {needle!r}: {buf[-600:]!r}")
            buf += chunk
    return buf


def test_zoo_chat_in_a_pseudo_terminal_with_ctrl_c(folder: Path) -> None:
    pid, fd = pty.fork()
    if pid == 0:  # the child: the REPL on the pty
        os.execv(str(PY), [str(PY), "-m", "zoo", "chat", str(folder), "--max-new-tokens", "6000",
                           "--system", "Be brief."])
    try:
        _read_until(fd, b">>> ")
        os.write(fd, b"/system\n")
        _read_until(fd, b"system prompt cleared")
        os.write(fd, b"hello zoo\n")
        _read_until(fd, b"hello zoo\r\n")
        time.sleep(1.0)  # mid-reply: 6000 tokens take far longer than this
        os.write(fd, b"\x03")
        after = _read_until(fd, b"(reply stopped)")
        after += _read_until(fd, b">>> ")
        os.write(fd, b"/reset\n")
        _read_until(fd, b"(conversation reset)")
        os.write(fd, b"/exit\n")
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
        assert b"Traceback" not in after
    finally:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)


def test_zoo_chat_ends_at_eof(folder: Path) -> None:
    import subprocess

    out = subprocess.run([str(PY), "-m", "zoo", "chat", str(folder), "--max-new-tokens", "3"], input="hi\n",
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(">>> ") == 2
    bad = subprocess.run([str(PY), "-m", "zoo", "chat", "tiny-code"], input="", capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "tokenizer: {chat: {template: NAME}}" in bad.stderr
