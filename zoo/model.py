"""What `zoo.build`/`zoo.load` return: the runtime module itself, given the zoo's methods.

The runtime's nn.Module is kept as is (its state_dict keys are the canonical names); the zoo
swaps in a subclass that adds `spec`, `tokenizer`, `save`, `push` and text-level helpers, so a
model is both a plain nn.Module for training and a zoo object for I/O.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from . import vlm
from .chat import reply as chat_reply
from .compiler import Compiled
from .compiler import compile as compile_spec
from .compiler.errors import UsageError
from .compiler.lowering import lower
from .compiler.schema import ModelSpec
from .formats.export import save
from .hub import push
from .runtime.memory import huge_page_empty
from .runtime.generation import iter_tokens
from .runtime.sampling import check_sampling
from .runtime.tokenizers.infill import InfillTokens, build_infill_prompt
from .textstream import check_stops, decode_continuation, text_pieces, truncate_at_stop


class ModelMixin:
    spec: ModelSpec
    compiled: Compiled
    tokenizer: Any
    weights_from: str | None = None  # the Hub repo the weights were loaded from (None: built here)

    # ------------------------------------------------------------------ I/O
    def save(self, path: str | Path, **kw: Any) -> Path:
        """Write a zoo checkpoint folder (atomically): zoo.yaml, safetensors, tokenizer, card."""
        return save(self, path, **kw)

    def push(self, repo_id: str, **kw: Any) -> str:
        """Publish to the Hugging Face Hub as one commit; returns its sha."""
        return push(self, repo_id, **kw)

    def explain(self) -> str:
        return self.compiled.explain()

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ text
    def _need_tokenizer(self) -> Any:
        if getattr(self, "tokenizer", None) is None:
            raise UsageError(f"{self.spec.name} has no tokenizer loaded (its folder holds no tokenizer file): text "
                             "needs one; give model.generate token ids instead")
        return self.tokenizer

    def _prompt_ids(self, prompt: str) -> list[int]:
        bos = self.spec.tokenizer.bos_id if self.spec.tokenizer else None  # the spec says what starts a prompt
        return ([bos] if bos is not None else []) + self._need_tokenizer().encode(prompt, bos=False)

    def stop_ids(self) -> list[int]:
        ids = []
        tok = self.spec.tokenizer
        if tok and tok.eos_id is not None:
            ids.append(tok.eos_id)
        if tok and tok.infill is not None:
            ids.append(tok.infill.eot_id)
        return ids

    def generate_text(self, prompt: str | Sequence[str], max_new_tokens: int = 64, *, speculative: bool | None = None,
                      images: Sequence[Any] | None = None, stop: str | Sequence[str] | None = None,
                      **kw: Any) -> str | list[str]:
        """Complete text prompt(s); stops at EOS (and <EOT> on infilling models). Greedy
        decoding of a float32 multi-token model is self-speculative by default (same output,
        faster); in bf16/fp16 it is not, because verifying several tokens in one forward rounds
        differently from one at a time, which can flip a near-tie and change the text.
        `images` (vision-language models): a list for one prompt, a list per prompt for a batch;
        `[IMG]` in a prompt marks where its next image goes, else its images come first.
        `stop`: a string or strings that end a reply (not included)."""
        check_text(prompt)
        check_sampling(kw.get("temperature", 0.0), kw.get("top_k"), kw.get("top_p"))
        stops = check_stops(stop)
        if images is not None:
            out = vlm.generate_with_images(self, prompt, images, max_new_tokens, **kw)
            return out if not stops else (truncate_at_stop(out, stops) if isinstance(out, str)
                                          else [truncate_at_stop(t, stops) for t in out])
        tok = self._need_tokenizer()
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        ids = [self._prompt_ids(p) for p in prompts]
        kw.setdefault("stop_tokens", self.stop_ids())
        kw.setdefault("pad_id", tok.pad_id if getattr(tok, "pad_id", None) not in (None, -1) else 0)
        greedy = kw.get("temperature", 0.0) <= 0.0
        if speculative is None:
            exact = all(p.dtype == torch.float32 for p in self.parameters())  # type: ignore[attr-defined]
            speculative = greedy and getattr(self, "n_future", 1) > 1 and exact
        if speculative:
            if not greedy:
                raise UsageError("speculative decoding is greedy: use temperature=0")
            kw = {k: v for k, v in kw.items() if k in ("stop_tokens", "pad_id")}
            out, _ = self.generate_speculative(ids, max_new_tokens=max_new_tokens, **kw)  # type: ignore[attr-defined]
        else:
            out = self.generate(ids, max_new_tokens=max_new_tokens, **kw)  # type: ignore[attr-defined]
        # decoded after the prompt's last ids: a SentencePiece first piece keeps its space
        texts = [truncate_at_stop(decode_continuation(tok, p, [t for t in row if t not in kw["stop_tokens"]]), stops)
                 for p, row in zip(ids, out)]
        return texts[0] if isinstance(prompt, str) else texts

    def stream(self, prompt: str, max_new_tokens: int = 64, *, temperature: float = 0.0, top_k: int | None = None,
               top_p: float | None = None, seed: int | None = None,
               stop: str | Sequence[str] | None = None) -> Iterator[str]:
        """Text pieces of the completion of `prompt`, yielded as tokens are decoded (one step
        at a time over the KV cache); ends at EOS (<EOT> on infilling models) or at a `stop`
        string, which is not yielded. Arguments are checked now, before the first piece.

            for piece in m.stream("def fib(n):", max_new_tokens=64, stop=["\n\n"]):
                print(piece, end="", flush=True)"""
        if not isinstance(prompt, str):
            raise UsageError(f"stream takes one prompt (a string), got {type(prompt).__name__}")
        stops = check_stops(stop)
        tok = self._need_tokenizer()
        ids = self._prompt_ids(prompt)
        pad = tok.pad_id if getattr(tok, "pad_id", None) not in (None, -1) else 0
        steps = iter_tokens(self, [ids], max_new_tokens, temperature=temperature, top_k=top_k,  # type: ignore[arg-type]
                            top_p=top_p, seed=seed, pad_id=pad)
        return text_pieces(tok, (int(t[0]) for t in steps), context=ids, stop_ids=self.stop_ids(), stop=stops)

    # ------------------------------------------------------------------ images (vision-language)
    def chat(self, messages: Sequence[Any], max_new_tokens: int = 256, **kw: Any) -> str | list[str]:
        """The assistant's reply to `messages` (`[{"role": "user", "content": "Hi"}, ...]`) in the
        chat format of the spec's `tokenizer.chat` (zoo/chat.py), or a list of replies for a list
        of conversations. Vision-language models (Pixtral) take image items too: paths, bytes,
        PIL images or arrays. Sampling: temperature, top_k, top_p, seed; `stop` strings.
        `tools` (functions, zoo.tools.Tool, schema dicts; zoo.tools.python runs code in the
        sandbox): the model's tool calls are run and their results appended until it answers,
        at most `max_steps` rounds (zoo/tools/loop.py)."""
        if kw.get("tools") is not None:
            from .tools.loop import chat_with_tools

            return chat_with_tools(self, messages, max_new_tokens, **kw)
        kw.pop("tools", None)
        tok = self.spec.tokenizer
        if vlm.reads_images(self.spec.arch) or (tok is not None and tok.kind == "tekken" and tok.chat is None):
            return vlm.chat(self, messages, max_new_tokens, **kw)
        return chat_reply(self, messages, max_new_tokens, **kw)

    @property
    def image_processor(self) -> Any:
        """The ImageProcessor images go through (from the spec's vision encoder); assignable."""
        proc = self.__dict__.get("_image_processor")
        if proc is None:
            proc = self.__dict__["_image_processor"] = vlm.image_processor(self)
        return proc

    @image_processor.setter
    def image_processor(self, value: Any) -> None:
        self.__dict__["_image_processor"] = value

    def infill(self, prefix: str, suffix: str, mode: str = "psm", max_new_tokens: int = 128, **kw: Any) -> str:
        """Code Llama fill-in-the-middle: the text that goes between prefix and suffix."""
        tok = self._need_tokenizer()
        spec = self.spec.tokenizer.infill if self.spec.tokenizer else None
        if spec is None:
            raise UsageError(f"{self.spec.name} was not trained for infilling (no <PRE>/<SUF>/<MID> tokens)")
        ids = InfillTokens(spec.prefix_id, spec.suffix_id, spec.middle_id, spec.eot_id)
        prompt = build_infill_prompt(tok, prefix, suffix, mode=mode, ids=ids)
        stops = [spec.eot_id] + ([self.spec.tokenizer.eos_id] if self.spec.tokenizer.eos_id is not None else [])
        out = self.generate([prompt], max_new_tokens=max_new_tokens, stop_tokens=stops, **kw)[0]  # type: ignore[attr-defined]
        return tok.decode([t for t in out if t not in stops])


@functools.lru_cache(maxsize=None)
def _zoo_class(cls: type) -> type:
    return type(cls.__name__, (ModelMixin, cls), {"__module__": cls.__module__, "__qualname__": cls.__qualname__})


def as_zoo_model(net: nn.Module, compiled: Compiled, tokenizer: Any = None) -> nn.Module:
    net.__class__ = _zoo_class(type(net))
    net.spec = compiled.spec  # type: ignore[attr-defined]
    net.compiled = compiled  # type: ignore[attr-defined]
    net.tokenizer = tokenizer  # type: ignore[attr-defined]
    return net


Model = ModelMixin  # for isinstance checks: isinstance(m, zoo.Model)


def materialize(net: nn.Module, device: torch.device | str, dtype: torch.dtype | None, seed: int | None) -> None:
    """Allocate a meta model on `device` and initialize it randomly (for `init="random"`)."""
    device = torch.device(device)
    # random numbers are drawn on the CPU for devices without their own generator (XLA), so a
    # seed gives the same weights everywhere
    init_on = device if device.type in ("cpu", "cuda") else torch.device("cpu")
    if init_on.type == "cpu":  # big matrices on huge pages (runtime/memory.py), the rest as usual
        for mod in net.modules():
            for attr, p in mod._parameters.items():
                if p is not None and p.is_meta:
                    mod._parameters[attr] = nn.Parameter(huge_page_empty(p.shape, p.dtype), p.requires_grad)
            for attr, b in mod._buffers.items():
                if b is not None and b.is_meta:
                    mod._buffers[attr] = torch.empty_like(b, device=init_on)
    else:
        net.to_empty(device=init_on)
    gen = torch.Generator(device=init_on).manual_seed(seed) if seed is not None else None
    net.init_weights(generator=gen)  # type: ignore[operator]
    if dtype is not None or init_on != device:
        net.to(device=device, dtype=dtype)


def lower_spec(spec: ModelSpec, backend: str | None, device: torch.device | str) -> tuple[Compiled, nn.Module]:
    """Compile `spec` once (one IR, one backend) and lower it on the meta device: nothing is
    allocated. BackendUnavailable says why a requested backend cannot run here."""
    compiled = compile_spec(spec, backend, device)
    return compiled, lower(compiled.ir, compiled.require_backend())


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """torch.bfloat16 from "bfloat16" (or a dtype, or None); ValueError naming the choices."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    out = getattr(torch, str(dtype), None)
    if not isinstance(out, torch.dtype) or not out.is_floating_point:
        raise UsageError(f"{'unknown' if not isinstance(out, torch.dtype) else 'not a weight'} dtype {dtype!r}; "
                         "use float32, bfloat16 or float16")
    return out


def parse_device(device: str | torch.device) -> torch.device:
    """torch.device from "cpu", "cuda:1" …; UsageError for a name torch does not know, or for
    CUDA on a machine or build without it."""
    try:
        out = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise UsageError(f"unknown device {device!r}; use cpu, cuda, cuda:N or xla") from None
    if out.type == "meta":
        raise UsageError("device 'meta' holds no weights; build with init='meta' for a model without them")
    if out.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {device!r}: no CUDA device here (this torch build or machine has none); use cpu")
    return out


def check_text(prompt: Any) -> None:
    """A text prompt is a string, or a non-empty list of strings."""
    if isinstance(prompt, str):
        return
    if not isinstance(prompt, (list, tuple)) or not prompt or not all(isinstance(p, str) for p in prompt):
        raise UsageError(f"a prompt is a string or a list of strings, got {type(prompt).__name__}"
                         + (f" of {sorted({type(p).__name__ for p in prompt})}" if isinstance(prompt, (list, tuple))
                            else ""))


def check_name(name: Any) -> Any:
    """A model name as the API takes it (catalog name, folder, Hub repo id, YAML path, or a
    ModelSpec), or a UsageError saying what was given instead."""
    if isinstance(name, ModelSpec):
        return name
    if isinstance(name, Path):
        name = str(name)
    if not isinstance(name, str):
        raise UsageError(f"a model is named by a string or a path (catalog name, folder, Hub repo id), "
                         f"got {type(name).__name__}")
    if not name.strip() or "\x00" in name or len(name) > 4096:
        raise UsageError(f"{name[:80]!r} is not a model name (empty, a NUL byte, or over 4096 characters)")
    return name


def is_folder(path: str | Path) -> bool:
    """Path.is_dir that answers False, not an exception, for names the OS refuses (too long)."""
    try:
        return Path(path).expanduser().is_dir()
    except (OSError, ValueError, RuntimeError):  # RuntimeError: ~user that does not exist
        return False
