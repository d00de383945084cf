"""MM-MT-Bench (Pixtral's multimodal multi-turn benchmark): a vision chat model answers every user
turn of conversations about images, and an LLM judge behind any OpenAI-compatible endpoint rates
each answer 1-10 against the reference answer (mistralai/mistral-evals, `eval/mm_mt_bench.py`).

    rows = load("./mm_mt_bench/")                      # a folder: *.jsonl / *.json rows + images
    summary = evaluate(model, rows, "runs/mmmt/", judge=Judge("http://127.0.0.1:8001/v1", "gpt-4o"))

As in the reference:
  * turn k is generated from the conversation up to its k-th user message, the earlier assistant
    turns being the REFERENCE answers (not the model's own);
  * the judge gets the reference's system prompt and a user message replaying the conversation
    (`### User:` / `### Reference answer:` for every turn, then `### Assistant's answer:`);
  * the rating is the first `[[N]]` in the verdict; a verdict without one is asked again (up to
    `retries` times) and then recorded `rating: null, unparsed: true` (excluded from averages);
  * `micro_average` is the mean over turns, `category_averages` the mean per category and
    `macro_average` the mean of the category averages (the reference's aggregate_judge_outputs);
    `turn_averages` (by turn index) is reported too.

Data rows: `conversation` (a list of `{"role", "content"}` messages alternating user/assistant, a
`{"messages": [...]}` object, or either as a JSON string, as on the Hub), `images` (file names
relative to the data folder, or `image` for one), `category`, optional `id`. Content is a string or
a list of `{"type": "text", "text"}` / `{"type": "image"}` chunks; the image chunks take the row's
images in order. Paths escaping the data folder are refused.

Results: `results.jsonl` in the output folder, one line per turn (answer, judge verdict, rating),
appended as each turn is judged: a rerun skips the turns that are there. `answers.jsonl` keeps the
model's answers so a failed judge does not cost the generation. `summary.json` holds the averages.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ..runtime.errors import UsageError, ZooError

SYSTEM_PROMPT = (
    "Please act as an impartial judge and evaluate the quality of the response provided by an AI assistant "
    "to the most recent question given the previous conversation as context. Your evaluation should consider "
    "correctness and helpfulness. You will be given a reference answer and the assistant's answer. Begin your "
    "evaluation by comparing the assistant's answer with the reference answer. Identify and correct any "
    "mistakes. Be as objective as possible. After providing your explanation, you must rate the response on a "
    "scale of 1 to 10 by strictly following this format: \"[[rating]]\", for example: \"Rating: [[5]]\".\n\n")
RATING_RE = re.compile(r"\[\[(\d+\.?\d*)\]\]")
JUDGE_TEMPERATURE = 0.0
JUDGE_MAX_TOKENS = 2048


class DataError(UsageError):
    """An MM-MT-Bench data folder or row that cannot be read."""


class JudgeError(ZooError):
    """The judge endpoint cannot be reached or answered something that is not a chat completion."""


# ------------------------------------------------------------------------------------------ data
def _rows_in(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    files = sorted([*folder.glob("*.jsonl"), *folder.glob("*.json")])
    if not files:
        raise DataError(f"{folder}: no .jsonl or .json file of MM-MT-Bench rows")
    out = []
    for f in files:
        text = f.read_text(encoding="utf-8")
        try:
            if f.suffix == ".jsonl":
                rows = [json.loads(line) for line in text.splitlines() if line.strip()]
            else:
                data = json.loads(text)
                rows = data if isinstance(data, list) else data.get("rows", [data])
        except json.JSONDecodeError as e:
            raise DataError(f"{f}: not JSON ({e})") from None
        out += [(f, r) for r in rows]
    return out


def _inside(folder: Path, name: Any, where: str) -> Path:
    if not isinstance(name, str) or not name:
        raise DataError(f"{where}: an image must be a file name, got {name!r}")
    p = Path(name)
    root = folder.resolve()
    full = (root / p).resolve()
    if p.is_absolute() or (full != root and root not in full.parents):
        raise DataError(f"{where}: image {name!r} is outside the data folder {folder}")
    if not full.is_file():
        raise DataError(f"{where}: image {name!r} not found in {folder}")
    return full


def _messages(raw: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: `conversation` is not JSON ({e})") from None
    if isinstance(raw, dict):
        raw = raw.get("messages")
    if not isinstance(raw, list) or not raw or len(raw) % 2:
        raise DataError(f"{where}: `conversation` must be user/assistant messages in pairs")
    for i, m in enumerate(raw):
        want = "user" if i % 2 == 0 else "assistant"
        if not isinstance(m, dict) or m.get("role") != want:
            raise DataError(f"{where}: message {i} must have role {want!r}")
        if want == "assistant" and not isinstance(m.get("content"), str):
            raise DataError(f"{where}: reference answer {i} must be a string")
        if not isinstance(m.get("content"), (str, list)):
            raise DataError(f"{where}: message {i} has no text or chunk list")
    return raw


def load(folder: str | Path) -> list[dict[str, Any]]:
    """The conversations of a local MM-MT-Bench folder: rows `{"id", "category", "messages"}` whose
    image chunks carry `"image": <absolute path>`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder (MM-MT-Bench data: rows in *.jsonl/*.json plus image files)")
    out, seen = [], set()
    for n, (f, row) in enumerate(_rows_in(folder)):
        where = f"{f.name} row {n}"
        if not isinstance(row, dict) or "conversation" not in row:
            raise DataError(f"{where}: no `conversation`")
        msgs = json.loads(json.dumps(_messages(row["conversation"], where)))  # a private copy
        names = row.get("images", [row["image"]] if "image" in row else [])
        if not isinstance(names, list):
            raise DataError(f"{where}: `images` must be a list of file names")
        paths = [_inside(folder, name, where) for name in names]
        chunks = [c for m in msgs if isinstance(m["content"], list) for c in m["content"]]
        slots = [c for c in chunks if isinstance(c, dict) and c.get("type") in ("image", "image_url")]
        if len(slots) != len(paths):
            raise DataError(f"{where}: {len(slots)} image chunks but {len(paths)} images")
        for c, p in zip(slots, paths):
            c.clear()
            c.update(type="image", image=str(p))
        for c in chunks:
            if not isinstance(c, dict) or c.get("type") not in ("image", "text"):
                raise DataError(f"{where}: a chunk must be {{'type': 'text'|'image', ...}}, got {c!r}")
        cid = str(row.get("id", n))
        if cid in seen:
            raise DataError(f"{where}: id {cid!r} appears twice")
        seen.add(cid)
        out.append({"id": cid, "category": str(row.get("category") or "default"), "messages": msgs})
    return out


def turns(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One item per user turn: `messages` up to that user message (earlier assistant messages are
    the reference answers) and its `reference` answer."""
    out = []
    for r in rows:
        for i in range(0, len(r["messages"]), 2):
            out.append({"id": r["id"], "turn": i // 2, "category": r["category"],
                        "messages": r["messages"][:i + 1], "reference": r["messages"][i + 1]["content"]})
    return out


# ----------------------------------------------------------------------------------------- judge
def _image_part(path: str) -> dict[str, Any]:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    kind = "png" if path.lower().endswith(".png") else "jpeg"
    return {"type": "image_url", "image_url": {"url": f"data:image/{kind};base64,{data}"}}


def judge_prompt(turn: dict[str, Any], answer: str, images: bool = False) -> list[dict[str, Any]]:
    """The judge's user content: the conversation replayed with the reference answers, then the
    assistant's answer to the last question (text chunks merged; image chunks as data URLs when
    `images`, else left out)."""
    prompt: list[dict[str, Any]] = [{"type": "text", "text": "<|The Start of Conversation with User|>\n\n"}]

    def add(part: str | dict[str, Any]) -> None:
        if isinstance(part, dict):
            if images:
                prompt.append(part)
            return
        if prompt[-1]["type"] == "text":
            prompt[-1]["text"] += part
        else:
            prompt.append({"type": "text", "text": part})

    users = turn["messages"][0::2]
    refs = [m["content"] for m in turn["messages"][1::2]] + [turn["reference"]]
    for q, a in zip(users, refs):
        add("### User:\n")
        content = q["content"]
        for c in ([{"type": "text", "text": content}] if isinstance(content, str) else content):
            add(c["text"] if c["type"] == "text" else _image_part(c["image"]))
        add(f"\n\n### Reference answer:\n{a}\n\n")
    add(f"\n\n### Assistant's answer:\n{answer}\n\n")
    add("<|The End of Conversation with User|>\n\n\n")
    return prompt


def rating(verdict: str) -> float | None:
    """The first `[[N]]` in a verdict, or None when there is none."""
    m = RATING_RE.search(verdict or "")
    return float(m.group(1)) if m else None


class Judge:
    """An OpenAI-compatible chat endpoint (`base_url` ending in /v1) asked for verdicts."""

    def __init__(self, base_url: str, model: str = "gpt-4o-2024-05-13", api_key: str | None = None,
                 timeout: float = 300.0, retries: int = 3, images: bool = False) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.timeout, self.retries, self.images = model, timeout, retries, images
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "EMPTY")

    def complete(self, content: list[dict[str, Any]]) -> str:
        import httpx

        body = {"model": self.model, "temperature": JUDGE_TEMPERATURE, "max_tokens": JUDGE_MAX_TOKENS,
                "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": content}]}
        last: Exception | None = None
        for attempt in range(self.retries):
            try:
                r = httpx.post(self.url, json=body, timeout=self.timeout,
                               headers={"Authorization": f"Bearer {self.api_key}"})
                r.raise_for_status()
                text = r.json()["choices"][0]["message"]["content"]
                return text if isinstance(text, str) else ""
            except httpx.HTTPError as e:
                last = e
            except (ValueError, KeyError, IndexError, TypeError) as e:
                raise JudgeError(f"judge {self.url} answered something that is not a chat completion: {e}") from None
            if attempt + 1 < self.retries:
                time.sleep(min(2 ** attempt, 8) * 0.5)
        raise JudgeError(f"judge {self.url} unreachable after {self.retries} tries: {last} "
                         f"(start an OpenAI-compatible server there, or pass --judge URL)")

    def __call__(self, turn: dict[str, Any], answer: str) -> dict[str, Any]:
        content = judge_prompt(turn, answer, self.images)
        verdict = ""
        for _ in range(self.retries):
            verdict = self.complete(content)
            r = rating(verdict)
            if r is not None:
                return {"judgement": verdict, "rating": r, "unparsed": False}
        return {"judgement": verdict, "rating": None, "unparsed": True}


# ------------------------------------------------------------------------------------ the run
def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file; a torn last line (a kill mid-write) is cut off."""
    rows: list[dict[str, Any]] = []
    if not path.exists():
        return rows
    good = 0
    with path.open("rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break
            try:
                rows.append(json.loads(raw))
            except ValueError:
                break
            good += len(raw)
    if good != path.stat().st_size:
        with path.open("r+b") as f:
            f.truncate(good)
    return rows


def _append(path: Path, row: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()


def _mean(xs: Iterable[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return sum(vals) / len(vals) if vals else None


def aggregate(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """micro (over turns), macro (over category averages), per category and per turn; unparsed
    ratings are left out of every mean and counted."""
    by_cat: dict[str, list[float | None]] = defaultdict(list)
    by_turn: dict[str, list[float | None]] = defaultdict(list)
    for r in results:
        by_cat[r["category"]].append(r["rating"])
        by_turn[str(r["turn"])].append(r["rating"])
    cats = {k: _mean(v) for k, v in sorted(by_cat.items())}
    return {"micro_average": _mean(r["rating"] for r in results), "macro_average": _mean(cats.values()),
            "category_averages": cats, "turn_averages": {k: _mean(v) for k, v in sorted(by_turn.items())},
            "turns": len(results), "unparsed": sum(1 for r in results if r["rating"] is None)}


def _key(t: dict[str, Any]) -> tuple[str, int]:
    return (str(t["id"]), int(t["turn"]))


def evaluate(answer: Callable[[list[dict[str, Any]]], str] | Any, rows: Sequence[dict[str, Any]],
             out: str | Path, judge: Callable[[dict[str, Any], str], dict[str, Any]], *,
             max_new_tokens: int = 1024, progress: bool = True, model_name: str | None = None) -> dict[str, Any]:
    """Answer every turn (a model with `.chat`, or a function of the messages), judge it, write
    results.jsonl / summary.json under `out` and return the summary. Resumable."""
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not callable(answer) or hasattr(answer, "chat"):
        model = answer

        def answer(messages: list[dict[str, Any]]) -> str:  # noqa: F811
            return str(model.chat(messages, max_new_tokens=max_new_tokens, temperature=0.0))
    items = turns(rows)
    answers_file, results_file = out / "answers.jsonl", out / "results.jsonl"
    answers = {_key(a): a["answer"] for a in _read_jsonl(answers_file)}
    results = {_key(r): r for r in _read_jsonl(results_file)}
    todo = [t for t in items if _key(t) not in results]
    for t in tqdm(todo, desc="MM-MT-Bench", disable=not progress):
        k = _key(t)
        if k not in answers:
            answers[k] = answer(t["messages"])
            _append(answers_file, {"id": t["id"], "turn": t["turn"], "answer": answers[k]})
        verdict = judge(t, answers[k])
        results[k] = {"id": t["id"], "turn": t["turn"], "category": t["category"], "answer": answers[k],
                      "reference": t["reference"], **verdict}
        _append(results_file, results[k])
    ordered = [results[_key(t)] for t in items]
    summary = {"benchmark": "mm-mt-bench", "model": model_name, "judge": getattr(judge, "model", None),
               **aggregate(ordered)}
    tmp = out / ".summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out / "summary.json")
    return summary
