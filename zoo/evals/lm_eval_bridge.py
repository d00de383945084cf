"""zoo as an lm-evaluation-harness model: `--model zoo` (loglikelihood, loglikelihood_rolling,
generate_until), so any lm_eval task runs on any model zoo loads (a folder, a catalog name, a
GGUF file).

    python -m zoo.evals.lm_eval_bridge --model zoo --model_args pretrained=./my-model \\
        --tasks my_local_task --include_path ./tasks/

takes exactly `lm_eval`'s arguments: it registers the model, then runs lm_eval's own command
line. lm_eval (0.4.x) finds models only in its registry and reads no plugin entry points, so a
bare `lm_eval --model zoo` cannot see zoo; from Python, importing this module registers it:

    import lm_eval, zoo.evals.lm_eval_bridge
    lm_eval.simple_evaluate(model="zoo", model_args="pretrained=./my-model", tasks=[...])

`model_args`: `pretrained` (what zoo.load takes), `device`, `dtype` (float32, bfloat16, ...),
`batch_size`, `max_length` (default: the spec's context), `add_bos_token` (default: the spec
says whether a prompt starts with BOS, as zoo's tokenizer_config.json tells transformers).

The requests are tokenized and scored the way lm_eval's `hf` model does (its TemplateLM
boilerplate: trailing spaces of a context move to the continuation, the pair is encoded whole
and split; an empty context is the BOS; rolling windows of `max_length`), so on a folder that
transformers loads too the log-likelihoods equal `--model hf`'s (tests/zoo/test_lm_eval_bridge.py).
"""

from __future__ import annotations

import sys
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..runtime.errors import UsageError

try:
    import lm_eval.models  # noqa: F401  lm_eval's own models first: it loads them only into an empty registry
    from lm_eval.api.model import TemplateLM
    from lm_eval.api.registry import register_model
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
except ImportError as e:  # pragma: no cover - the `eval` extra installs it
    raise ImportError("zoo's lm-eval bridge needs lm-evaluation-harness: pip install 'zoo[eval]' "
                      f"(or pip install lm-eval) ({e})") from None

_DTYPES = {"float32": torch.float32, "float": torch.float32, "bfloat16": torch.bfloat16,
           "float16": torch.float16, "half": torch.float16}


def _flag(value: Any, name: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise UsageError(f"model_args {name}={value!r}: expected true or false")


@register_model("zoo")
class ZooLM(TemplateLM):
    """An lm_eval model over a zoo model (see the module doc)."""

    def __init__(self, pretrained: Any = None, device: str | None = None, dtype: str | None = None, batch_size: Any = 8,
                 max_length: Any = None, add_bos_token: Any = None, max_batch_size: Any = None, **kwargs: Any) -> None:
        super().__init__()
        import zoo

        if device in (None, "auto") or (str(device).startswith("cuda") and not torch.cuda.is_available()):
            device = "cuda" if torch.cuda.is_available() else "cpu"  # as lm_eval's hf model falls back

        if pretrained is None:
            raise UsageError("--model zoo needs model_args pretrained=FOLDER (or a catalog name, or a .gguf file)")
        if kwargs:
            raise UsageError(f"--model zoo: unknown model_args {sorted(kwargs)}; known: pretrained, device, dtype, "
                             f"batch_size, max_length, add_bos_token")
        if isinstance(pretrained, torch.nn.Module):
            model = pretrained
        else:
            model = zoo.load(str(pretrained))
        if dtype not in (None, "auto"):
            if str(dtype) not in _DTYPES:
                raise UsageError(f"model_args dtype={dtype!r}: one of {', '.join(_DTYPES)}")
            model = model.to(_DTYPES[str(dtype)])
        self.model = model.to(device).eval()
        self._device = torch.device(device)
        self.zoo_tokenizer = model._need_tokenizer()
        spec = model.spec.tokenizer
        self.bos_id = spec.bos_id if spec is not None else None
        self.eos_id = spec.eos_id if spec is not None and spec.eos_id is not None else self.zoo_tokenizer.eos_id
        self.add_bos_token = _flag(add_bos_token, "add_bos_token")
        self.batch_size = int(batch_size) if str(batch_size) != "auto" else 8
        self._max_length = int(max_length) if max_length is not None else int(model.spec.arch.max_seq_len)
        if self.batch_size < 1 or self._max_length < 2:
            raise UsageError("model_args batch_size must be >= 1 and max_length >= 2")

    # ------------------------------------------------------------------ what lm_eval asks
    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def eot_token_id(self) -> int:
        return int(self.eos_id)

    @property
    def prefix_token_id(self) -> int:
        return int(self.bos_id) if self.bos_id is not None else self.eot_token_id

    @property
    def tokenizer_name(self) -> str:
        return str(self.model.spec.name)

    def _bos_text(self) -> str | None:
        if self.bos_id is None:
            return None
        piece = getattr(self.zoo_tokenizer, "id_to_piece", None)
        return str(piece(int(self.bos_id))) if piece is not None else None

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, left_truncate_len: int | None = None,
                   **kwargs: Any) -> list[int]:
        """zoo's ids for `string`, with the BOS where transformers' tokenizer would put it
        (lm_eval's `hf` passes no add_special_tokens: the tokenizer's own default, which for a
        zoo folder is the spec's BOS)."""
        add = add_special_tokens if add_special_tokens is not None else self.add_bos_token
        if add is None:
            bos = self._bos_text()
            add = not (bos and string.startswith(bos))
        ids = ([int(self.bos_id)] if add and self.bos_id is not None else []) + list(
            self.zoo_tokenizer.encode(string, bos=False))
        return ids[-left_truncate_len:] if left_truncate_len else ids

    def tok_decode(self, ids: list[int]) -> str:
        return str(self.zoo_tokenizer.decode(list(ids)))

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def _logprobs(self, rows: list[list[int]]) -> list[torch.Tensor]:
        """Per row, the (len, vocab) log-softmax of the model's logits (rows right-padded in one
        batch: a causal model's positions before the padding do not see it)."""
        width = max(len(r) for r in rows)
        batch = torch.zeros(len(rows), width, dtype=torch.long, device=self._device)
        for i, r in enumerate(rows):
            batch[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        logits = self.model(batch).float()
        return [F.log_softmax(logits[i, :len(r)], dim=-1) for i, r in enumerate(rows)]

    def _loglikelihood_tokens(self, requests: list[tuple[tuple[str, str], list[int], list[int]]],
                              disable_tqdm: bool = False, **kwargs: Any) -> list[tuple[float, bool]]:
        order = sorted(range(len(requests)), key=lambda i: -len(requests[i][1] + requests[i][2]))
        out: list[tuple[float, bool] | None] = [None] * len(requests)
        bar = tqdm(total=len(requests), desc="zoo loglikelihood", disable=disable_tqdm)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            rows, conts = [], []
            for i in chunk:
                _, ctx, cont = requests[i]
                if not cont:
                    raise UsageError(f"request {i}: the continuation is empty after tokenization")
                rows.append((ctx + cont)[-(self.max_length + 1):][:-1])
                conts.append(cont)
            for i, row, cont, lp in zip(chunk, rows, conts, self._logprobs(rows)):
                tail = lp[len(row) - len(cont):]
                target = torch.tensor(cont, dtype=torch.long, device=tail.device)
                score = float(tail.gather(1, target[:, None]).sum())
                greedy = bool((tail.argmax(-1) == target).all())
                out[i] = (score, greedy)
                if requests[i][0] is not None:
                    self.cache_hook.add_partial("loglikelihood", requests[i][0], out[i])
            bar.update(len(chunk))
        bar.close()
        return out  # type: ignore[return-value]

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        windows, owners = [], []
        for k, req in enumerate(requests):
            (string,) = req.args
            for ctx, cont in map(make_disjoint_window, get_rolling_token_windows(
                    token_list=self.tok_encode(string), prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length, context_len=1)):
                windows.append((None, list(ctx), list(cont)))
                owners.append(k)
        scores = self._loglikelihood_tokens(windows, disable_tqdm=disable_tqdm)
        out = [0.0] * len(requests)
        for k, (score, _) in zip(owners, scores):
            out[k] += score
        for req, score in zip(requests, out):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, score)
        return out

    # ------------------------------------------------------------------ generation
    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        out = []
        pad = getattr(self.zoo_tokenizer, "pad_id", None)
        pad = pad if pad not in (None, -1) else 0
        for req in tqdm(requests, desc="zoo generate_until", disable=disable_tqdm):
            context, gen_kwargs = req.args
            kw = dict(gen_kwargs or {})
            until = kw.pop("until", None)
            until = [until] if isinstance(until, str) else list(until or [])
            eos_text = self.tok_decode([self.eot_token_id])
            if eos_text and eos_text not in until:
                until.append(eos_text)
            max_new = int(kw.pop("max_gen_toks", 256))
            do_sample = bool(kw.pop("do_sample", False))
            temperature = float(kw.pop("temperature", 0.0 if not do_sample else 1.0))
            sampling = {"temperature": temperature if do_sample else 0.0}
            for key in ("top_k", "top_p", "seed"):
                if key in kw and do_sample:
                    sampling[key] = kw.pop(key)
            ids = self.tok_encode(context, left_truncate_len=max(1, self.max_length - max_new))
            new = self.model.generate([ids], max_new_tokens=max_new, stop_tokens=[self.eot_token_id], pad_id=pad,
                                      **sampling)[0]
            text = self.tok_decode([t for t in new if t != self.eot_token_id])
            for term in until:
                if term:
                    text = text.split(term)[0]
            out.append(text)
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
        return out


def main(argv: list[str] | None = None) -> int:
    """lm_eval's command line with `--model zoo` registered."""
    from lm_eval.__main__ import cli_evaluate

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    result = cli_evaluate()
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
