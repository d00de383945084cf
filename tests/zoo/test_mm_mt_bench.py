"""MM-MT-Bench (zoo/evals/mm_mt_bench.py) offline: a data folder written by the test (two
conversations, tiny PNGs), a scripted model and a tiny random Pixtral, and a stand-in
OpenAI-compatible judge on a local http.server that records what it was asked. Checks the
reference-history turns, the official judge prompt, `[[rating]]` parsing (a malformed verdict is
recorded unparsed), the micro / macro / per-category averages, resuming, path escapes and an
unreachable judge."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from PIL import Image

from zoo.evals import mm_mt_bench as mm


def _img(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (10, 14, 3), dtype=np.uint8)).save(path)


ROWS = [
    {"id": "c0", "category": "charts", "images": ["a.png"],
     "conversation": json.dumps({"messages": [
         {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is shown?"}]},
         {"role": "assistant", "content": "REF0-0"},
         {"role": "user", "content": "And the colour?"},
         {"role": "assistant", "content": "REF0-1"}]})},
    {"id": "c1", "category": "ocr", "images": ["sub/b.png"],
     "conversation": [{"role": "user", "content": [{"type": "text", "text": "Read it."}, {"type": "image"}]},
                      {"role": "assistant", "content": "REF1-0"}]},
]


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    root = tmp_path / "mm_mt_bench"
    (root / "sub").mkdir(parents=True)
    _img(root / "a.png", 0)
    _img(root / "sub" / "b.png", 1)
    (root / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return root


class _Judge(BaseHTTPRequestHandler):
    requests: list[dict[str, Any]] = []
    verdicts: list[str] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, **body})
        text = type(self).verdicts.pop(0) if type(self).verdicts else "fine. Rating: [[5]]"
        raw = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *a: Any) -> None:
        pass


@pytest.fixture()
def judge() -> Iterator[tuple[str, type[_Judge]]]:
    handler = type("J", (_Judge,), {"requests": [], "verdicts": []})
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1", handler
    server.shutdown()
    server.server_close()


def _scripted(seen: list[list[dict[str, Any]]]) -> Any:
    def answer(messages: list[dict[str, Any]]) -> str:
        seen.append(messages)
        return f"ANS{len(seen)}"
    return answer


def test_turns_use_the_reference_history_and_the_judge_gets_the_official_prompt(data: Path, judge: Any,
                                                                                tmp_path: Path) -> None:
    url, h = judge
    h.verdicts = ["good [[8]]", "Rating: [[6.5]] then [[2]]", "no rating here", "still none", "nope"]
    rows = mm.load(data)
    seen: list[list[dict[str, Any]]] = []
    out = tmp_path / "run"
    s = mm.evaluate(_scripted(seen), rows, out, mm.Judge(url, "judge-x", retries=3), progress=False)
    # turn 2 of c0 sees the REFERENCE answer to turn 1, and the image chunk points at the file
    assert [len(m) for m in seen] == [1, 3, 1]
    assert seen[1][1] == {"role": "assistant", "content": "REF0-0"}
    assert seen[0][0]["content"][0] == {"type": "image", "image": str((data / "a.png").resolve())}
    # the judge's request: model, temperature 0, the official system prompt, the replayed conversation
    first = h.requests[1]
    assert first["path"] == "/v1/chat/completions" and first["model"] == "judge-x" and first["temperature"] == 0.0
    assert first["messages"][0] == {"role": "system", "content": mm.SYSTEM_PROMPT}
    assert mm.SYSTEM_PROMPT.endswith('"Rating: [[5]]".\n\n')
    assert first["messages"][1]["content"] == [{"type": "text", "text": (
        "<|The Start of Conversation with User|>\n\n### User:\nWhat is shown?\n\n### Reference answer:\nREF0-0\n\n"
        "### User:\nAnd the colour?\n\n### Reference answer:\nREF0-1\n\n\n\n### Assistant's answer:\nANS2\n\n"
        "<|The End of Conversation with User|>\n\n\n")}]
    # ratings: first [[N]] wins; the third turn never got one in 3 asks -> unparsed, not a crash
    res = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["rating"] for r in res] == [8.0, 6.5, None]
    assert res[2]["unparsed"] and res[2]["judgement"] == "nope" and len(h.requests) == 5
    assert s["micro_average"] == pytest.approx(7.25)
    assert s["category_averages"] == {"charts": pytest.approx(7.25), "ocr": None}
    assert s["macro_average"] == pytest.approx(7.25) and s["unparsed"] == 1
    assert s["turn_averages"] == {"0": 8.0, "1": 6.5}
    assert json.loads((out / "summary.json").read_text())["micro_average"] == pytest.approx(7.25)


def test_averages_micro_macro_per_category() -> None:
    res = [{"category": "a", "turn": 0, "rating": 10.0}, {"category": "a", "turn": 1, "rating": 8.0},
           {"category": "a", "turn": 0, "rating": 6.0}, {"category": "b", "turn": 0, "rating": 2.0}]
    s = mm.aggregate(res)
    assert s["micro_average"] == pytest.approx(6.5)
    assert s["category_averages"] == {"a": pytest.approx(8.0), "b": 2.0}
    assert s["macro_average"] == pytest.approx(5.0)
    assert mm.rating("Rating: [[5]]") == 5.0 and mm.rating("[[ten]]") is None and mm.rating("[5]") is None


def test_judge_images_are_data_urls(data: Path) -> None:
    t = mm.turns(mm.load(data))[2]
    parts = mm.judge_prompt(t, "x", images=True)
    assert [p["type"] for p in parts] == ["text", "image_url", "text"]
    assert parts[0]["text"].endswith("### User:\nRead it.")
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")


def test_resume_skips_judged_turns_and_keeps_answers(data: Path, judge: Any, tmp_path: Path) -> None:
    url, h = judge
    rows, out = mm.load(data), tmp_path / "run"
    seen: list[Any] = []
    mm.evaluate(_scripted(seen), rows[:1], out, mm.Judge(url), progress=False)
    with (out / "results.jsonl").open("a") as f:
        f.write('{"id": "c1", "tu')  # a torn line from a kill
    s = mm.evaluate(_scripted(seen), rows, out, mm.Judge(url), progress=False)
    assert len(seen) == 3 and len(h.requests) == 3 and s["turns"] == 3 and s["micro_average"] == 5.0
    # a judge that goes away after generation: typed error, the answer is kept for the rerun
    bad = tmp_path / "run2"
    with pytest.raises(mm.JudgeError, match="unreachable"):
        mm.evaluate(_scripted(seen), rows[1:], bad, mm.Judge(_dead_url(), retries=1), progress=False)
    assert json.loads((bad / "answers.jsonl").read_text())["answer"] == "ANS4"
    mm.evaluate(_scripted(seen), rows[1:], bad, mm.Judge(url), progress=False)
    assert len(seen) == 4


def _dead_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/v1"


@pytest.mark.parametrize("name", ["../outside.png", "/etc/passwd", "sub/../../x.png"])
def test_image_paths_escaping_the_folder_are_refused(data: Path, name: str) -> None:
    (data.parent / "outside.png").write_bytes(b"x")
    (data / "eval.jsonl").write_text(json.dumps({**ROWS[1], "images": [name]}) + "\n")
    with pytest.raises(mm.DataError, match="outside the data folder"):
        mm.load(data)


def test_bad_rows_are_typed_errors(data: Path) -> None:
    (data / "eval.jsonl").write_text(json.dumps({**ROWS[1], "images": []}) + "\n")
    with pytest.raises(mm.DataError, match="1 image chunks but 0 images"):
        mm.load(data)
    (data / "eval.jsonl").write_text(json.dumps({"conversation": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(mm.DataError, match="pairs"):
        mm.load(data)
    with pytest.raises(mm.DataError, match="not a folder"):
        mm.load(data / "nope")


def test_a_tiny_pixtral_answers_every_turn(data: Path, judge: Any, tmp_path: Path) -> None:
    """The real model side: zoo's vision chat on a tiny random Pixtral, greedy; each turn's answer
    is what `m.chat` gives for the reference-history messages."""
    from zoo.runtime.tokenizers import TekkenTokenizer

    from tests.runtime.test_pixtral_parity import tiny
    from tests.tekken_files import trained_ranks, write_tekken

    url, h = judge
    m = tiny("sdpa", f"arch.text.vocab_size={1000 + 256 + 50}")
    m.tokenizer = TekkenTokenizer.from_file(write_tekken(tmp_path / "tok" / "tekken.json", trained_ranks(50)))
    rows = mm.load(data)
    s = mm.evaluate(m, rows, tmp_path / "run", mm.Judge(url), max_new_tokens=3, progress=False,
                    model_name="tiny-pixtral")
    res = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    t = mm.turns(rows)
    assert [r["answer"] for r in res] == [m.chat(x["messages"], max_new_tokens=3, temperature=0.0) for x in t]
    assert s["turns"] == 3 and s["model"] == "tiny-pixtral" and s["micro_average"] == 5.0


def test_cli(data: Path, judge: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from zoo.runtime.tokenizers import TekkenTokenizer

    from tests.runtime.test_pixtral_parity import tiny
    from tests.tekken_files import trained_ranks, write_tekken
    from zoo.cli import main as cli

    url, h = judge
    m = tiny("sdpa", f"arch.text.vocab_size={1000 + 256 + 50}")
    m.tokenizer = TekkenTokenizer.from_file(write_tekken(tmp_path / "tok" / "tekken.json", trained_ranks(50)))
    folder = m.save(tmp_path / "tiny-pixtral")
    out = tmp_path / "runs" / "mmmt"
    rc = cli(["eval", "mm-mt-bench", str(folder), "--data", str(data), "--judge", url, "--judge-model", "jm",
                   "--out", str(out), "--max-new-tokens", "2", "--backend", "sdpa"])
    assert rc == 0 and '"micro_average": 5.0' in capsys.readouterr().out
    assert {r["model"] for r in h.requests} == {"jm"} and len(h.requests) == 3
    assert len((out / "results.jsonl").read_text().splitlines()) == 3
    rc = cli(["eval", "mm-mt-bench", str(folder), "--data", str(data), "--judge", _dead_url(),
                   "--out", str(tmp_path / "o2"), "--max-new-tokens", "2"])
    assert rc != 0 and "unreachable" in capsys.readouterr().err
