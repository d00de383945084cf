"""The `zoo` command line: list, show, compile, generate, schema (and the weights/Hub,
training and BTX commands registered by their modules)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import re
import secrets
import sys
from pathlib import Path
from typing import Any, Sequence

from .. import __version__, api, catalog
from ..compiler.explain import render_accounting
from ..compiler.frontend import apply_overrides
from ..compiler.passes.sharding import plan_sharding, render_sharding
from ..compiler.schema import json_schema
from ..model import parse_device
from . import btx, chat, data, serve, tokenizer, train, weights
from . import eval as eval_cmd
from .errors import CLIError, Parser, run_guarded
from .options import add_spec_and_format


def _flatten(data: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    if isinstance(data, dict) and data:
        out = []
        for k, v in data.items():
            out += _flatten(v, prefix + (str(k),))
        return out
    return [(prefix, data)]


def _rel(file: str) -> str:
    try:
        return str(Path(file).resolve().relative_to(catalog.specs_root().resolve()))
    except ValueError:
        return file


def cmd_list(args: argparse.Namespace) -> int:
    rows = []
    entries = [e for e in api.list_models() if args.family is None or e.family == args.family]
    if not entries:
        families = sorted({e.family for e in api.list_models() if e.family})
        print(f"error: no model of family {args.family!r} (families: {', '.join(families)})", file=sys.stderr)
        return 2
    for e in entries:
        c = api.compile(e.name)
        n = c.accounting.params
        rows.append((e.name, e.family or "", f"{n / 1e9:.2f}B" if n >= 1e8 else f"{n / 1e6:.2f}M", e.description))
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    print(f"{'model':<{w[0]}}  {'family':<{w[1]}}  {'params':>{w[2]}}  description")
    for r in rows:
        print(f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:>{w[2]}}  {r[3]}")
    return 0


def _show_resolved(name: str, overrides: Sequence[str]) -> None:
    raw = apply_overrides(catalog.load_raw_spec(name), overrides)
    spec = api.spec(name, overrides)
    print(f"# {spec.name}: effective spec; each key with the file (and line) it came from")
    print(f"# extends chain: {' -> '.join(_rel(f) for f in raw.chain)}")
    for path, value in _flatten(spec.model_dump(mode="json", exclude_none=False)):
        loc = raw.origins.get(path)
        src = f"{_rel(loc.file)}:{loc.line}" if loc and loc.line else (loc.file if loc else "default")
        if path == ("name",) and loc is None:
            src = "file name"
        print(f"{'.'.join(path)}: {json.dumps(value)}  # {src}")


def cmd_show(args: argparse.Namespace) -> int:
    if args.resolved:
        _show_resolved(args.model, args.overrides)
        return 0
    c = api.compile(args.model, args.overrides)
    s = c.spec
    print(f"{s.name}" + (f" — {s.description}" if s.description else ""))
    print(f"family           {s.family or '-'}")
    print(f"fingerprint      {s.fingerprint()}")
    for label, text in s.arch.summary(c.accounting):
        print(f"{label:<16} {text}")
    for line in render_accounting(c.accounting):
        print(line)
    if s.published and s.published.params:
        ok = "matches" if s.published.params == c.accounting.params else "DIFFERS from"
        print(f"published        {s.published.params:,} ({ok} the count above)")
    if s.tokenizer:
        print(f"tokenizer        {s.tokenizer.kind} ({s.tokenizer.file})" + (", infilling" if s.tokenizer.infill else ""))
    if s.weights:
        print(f"weights          {s.weights.repo}@{s.weights.revision} ({s.weights.format})")
    _print_sharding(c, args)
    return 0


def _add_sharding(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tp", type=int, default=None, help="tensor-parallel ranks: print the sharding plan")
    p.add_argument("--fsdp", type=int, default=None, help="FSDP shards: print the sharding plan")


def _print_sharding(c: Any, args: argparse.Namespace) -> None:
    """The sharding plan (per-rank weights, KV cache per token, what is split) when --tp or
    --fsdp was given."""
    if args.tp is None and args.fsdp is None:
        return
    tp, fsdp = (1 if n is None else n for n in (args.tp, args.fsdp))
    for line in render_sharding(plan_sharding(c.ir, tp, fsdp)):
        print(line)


def cmd_compile(args: argparse.Namespace) -> int:
    c = api.compile(args.spec, args.overrides, backend=args.backend, device=args.device)
    if args.explain:
        print(c.explain())
    else:
        print(f"{c.spec.name}: ok, {c.accounting.params:,} parameters, backend {c.backend.name}")
    _print_sharding(c, args)
    if not c.backend.available:
        print(f"error: backend refused: {c.backend.why}", file=sys.stderr)
        # --explain on a known backend that cannot run here is the question answered; a name
        # that is no backend at all is a mistake
        return 0 if args.explain and c.runtime_backend is not None else 2
    return 0


def _unescape(text: str) -> str:
    r"""`\n`, `\t`, `\r` and `\\` typed in a shell argument as the characters they stand for."""
    return re.sub(r"\\([ntr\\])", lambda m: {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}[m.group(1)], text)


def _read_prompt(prompt: str) -> str:
    if prompt != "-":
        return prompt
    if sys.stdin is None or sys.stdin.isatty():
        raise CLIError("the prompt `-` reads standard input, and none is piped in",
                       hint='echo "def fib(n):" | zoo generate tiny-code -')
    text = sys.stdin.read()
    if not text:
        raise CLIError("the prompt `-` reads standard input, and it was empty")
    return text


def _check_generate_args(args: argparse.Namespace) -> None:
    """The sampling flags in range, before a model is loaded (named as flags)."""
    if not math.isfinite(args.temperature) or args.temperature < 0:
        raise CLIError(f"--temperature must be a finite number >= 0 (0 is greedy), got {args.temperature}")
    if args.top_p is not None and not (math.isfinite(args.top_p) and 0 < args.top_p <= 1):
        raise CLIError(f"--top-p must be in (0, 1], got {args.top_p}", hint="e.g. --top-p 0.9 keeps the smallest set "
                       "of tokens holding 90% of the probability")
    if args.top_k is not None and args.top_k < 1:
        raise CLIError(f"--top-k must be >= 1, got {args.top_k}", hint="leave it out to sample from every token")
    if args.max_new_tokens < 1:
        raise CLIError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.image and args.suffix is not None:
        raise CLIError("--suffix (infilling) and --image do not go together")
    if args.stream and (args.image or args.suffix is not None):
        raise CLIError("--stream streams plain completions: not with --image or --suffix")
    parse_device(args.device)  # CUDA asked for where there is none: before loading anything


def _check_model_for(model: Any, args: argparse.Namespace, prompt: str) -> None:
    """What the loaded model must have for these flags: a tokenizer, infilling for --suffix,
    a vision encoder for --image, room in its context for --max-new-tokens."""
    if args.image and getattr(model, "vision", None) is None:
        raise CLIError(f"{args.model} has no vision encoder: --image needs a vision-language model "
                       "(e.g. pixtral-12b)")
    if getattr(model, "tokenizer", None) is None:
        raise CLIError(f"{args.model} has no tokenizer: `zoo generate` turns text into tokens with the tokenizer "
                       "file a checkpoint folder carries (tokenizer.model, tokenizer.json or tekken.json)",
                       hint="copy the tokenizer file of the model it was trained from into the folder")
    if args.suffix is not None and (model.spec.tokenizer is None or model.spec.tokenizer.infill is None):
        raise CLIError(f"{args.model} was not trained for infilling (no <PRE>/<SUF>/<MID> tokens), so --suffix "
                       "cannot be used", hint="fill in the middle with a Code Llama model, e.g. codellama-7b")
    context = getattr(getattr(model, "cfg", None), "max_seq_len", None)
    if context is not None and not args.image:
        n = len(model._prompt_ids(prompt)) + (0 if args.suffix is None else len(model.tokenizer.encode(args.suffix)) + 3)
        if n + args.max_new_tokens > context:
            raise CLIError(f"a {n}-token prompt plus --max-new-tokens {args.max_new_tokens} is past {args.model}'s "
                           f"context of {context} tokens (its max_seq_len)",
                           hint=f"ask for at most --max-new-tokens {max(1, context - n)}")


def _join_tp_group(args: argparse.Namespace) -> bool:
    """--tp N: join torchrun's group of N processes; True on the rank that prints."""
    from ..runtime.distributed import init_from_env, launched_ranks, local_device

    if args.tp < 1:
        raise CLIError(f"--tp must be >= 1, got {args.tp}")
    if args.tp == 1:
        return True
    if launched_ranks() != args.tp:
        raise CLIError(f"--tp {args.tp} needs {args.tp} processes, this run has {launched_ranks()}",
                       hint=f"torchrun --nproc-per-node {args.tp} -m zoo generate {args.model} ... --tp {args.tp}")
    args.device = local_device(args.device)
    return init_from_env(args.device)[0] == 0


def _same_seed(seed: int | None) -> int:
    """The sampling seed, equal on every rank (ranks that sampled differently would stop at
    different steps and hang the others); no --seed: a fresh one, so samples differ per run."""
    import torch.distributed as dist

    seed = seed if seed is not None else secrets.randbits(63)
    if dist.is_available() and dist.is_initialized():
        box = [seed]
        dist.broadcast_object_list(box, src=0)
        seed = box[0]
    return seed


def cmd_generate(args: argparse.Namespace) -> int:
    _check_generate_args(args)
    prints = _join_tp_group(args)
    try:
        if prints:
            return _generate(args)
        with contextlib.redirect_stdout(io.StringIO()):  # one rank prints
            return _generate(args)
    finally:
        if args.tp > 1:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()


def _generate(args: argparse.Namespace) -> int:
    prompt = _read_prompt(args.prompt)
    model = api.load(args.model, args.overrides, backend=args.backend, device=args.device, dtype=args.dtype,
                     spec=args.spec, format=args.format, tp=args.tp)
    model.eval()
    _check_model_for(model, args, prompt)
    seed = _same_seed(args.seed)
    kw = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
              seed=seed)
    if args.image:
        print(model.generate_text(prompt, images=args.image, stop=args.stop, **kw))
        return 0
    if args.suffix is not None:
        print(prompt + model.infill(prompt, args.suffix, **kw) + args.suffix)
        return 0
    if not args.stream:
        print(prompt + model.generate_text(prompt, stop=args.stop, **kw))
        return 0
    sys.stdout.write(prompt)
    sys.stdout.flush()
    for piece in model.stream(prompt, stop=args.stop, **kw):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    text = json.dumps(json_schema(resolved=args.resolved), indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n")
        print(f"wrote {args.output}")
    else:
        print(text)
    return 0


def _add_backend(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default=None, help="eager, sdpa, xformers, xla or auto (default: $ZOO_BACKEND or auto)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or xla")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="zoo", description="Models as data: YAML specs, compiled and loaded.")
    parser.add_argument("--version", action="version", version=f"zoo {__version__}", help="print the version")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="every model in the catalog, with family and size")
    p.add_argument("--family", default=None, help="only this family's models (e.g. gemma, qwen2, llama)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="a model's shape, parameter count, memory and FLOPs/token")
    p.add_argument("model", help="catalog name, YAML spec or checkpoint folder")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. arch.n_layers=2")
    p.add_argument("--resolved", action="store_true", help="the effective spec, each key with its source file")
    _add_sharding(p)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("compile", help="check a spec and plan it for a backend")
    p.add_argument("spec", help="catalog name or YAML file")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. arch.n_layers=2")
    p.add_argument("--explain", action="store_true", help="print each op, its kernel and why")
    _add_backend(p)
    _add_sharding(p)
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("generate", help="complete a prompt with a checkpoint or catalog model",
                       description="Complete a prompt (greedy by default; --temperature samples).",
                       epilog='examples:\n  zoo generate tiny-code "def f(" --stream --stop "\\n\\n" --seed 1\n'
                              '  echo "def fib(n):" | zoo generate tiny-code -',
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="checkpoint folder, catalog name or Hub repo")
    p.add_argument("prompt", help="the text to complete; - reads it from standard input")
    p.add_argument("overrides", nargs="*", help="dotted spec overrides, e.g. arch.max_seq_len=4096")
    p.add_argument("--max-new-tokens", type=int, default=64, help="most tokens to generate (default 64)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 is greedy (default); higher samples more freely")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens only")
    p.add_argument("--top-p", type=float, default=None, help="sample within the smallest set of tokens of this "
                                                               "probability mass, 0 < p <= 1")
    p.add_argument("--seed", type=int, default=None, help="sampling seed, for the same text again (default: a "
                                                            "fresh one each run)")
    p.add_argument("--stop", action="append", default=None, metavar="TEXT", type=_unescape,
                   help="end the completion at this text, not printed (repeatable; \\n and \\t are read as a "
                        "newline and a tab)")
    p.add_argument("--stream", action="store_true", help="print the text as it is generated")
    p.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: the checkpoint's)")
    p.add_argument("--suffix", default=None, help="fill in the middle between the prompt and this suffix")
    p.add_argument("--image", action="append", default=[], metavar="FILE",
                   help="an image for a vision-language model (repeatable; [IMG] in the prompt marks where each "
                        "goes, else they come first)")
    p.add_argument("--tp", type=int, default=1, metavar="N",
                   help="tensor-parallel over N processes, each holding 1/N of the weights (launch with torchrun "
                        "--nproc-per-node N; rank 0 prints)")
    add_spec_and_format(p)
    _add_backend(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("schema", help="write the JSON Schema of spec files (for editors)")
    p.add_argument("-o", "--output", default=None, help="write the schema to this file (default: print it)")
    p.add_argument("--resolved", action="store_true",
                   help="the schema of a complete spec (after extends and interpolation), not of a file as written")
    p.set_defaults(func=cmd_schema)

    for module in (weights, train, btx, serve, chat, tokenizer, eval_cmd, data):  # subcommands defined beside the code they drive
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. A user's mistake (any ZooError, a bad argument, a path the OS refuses)
    prints `error: …` and returns 2; Ctrl-C returns 130; anything else is a bug in zoo, reported
    in one line (ZOO_DEBUG=1 shows the traceback) with 1."""
    def run() -> int:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)

    return run_guarded(run)


if __name__ == "__main__":
    sys.exit(main())
