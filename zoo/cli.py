"""The `zoo` command line: list, show, compile, generate, schema (and the weights/Hub commands
registered by their modules)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from .compiler.errors import ZooError


def _flatten(data: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    if isinstance(data, dict) and data:
        out = []
        for k, v in data.items():
            out += _flatten(v, prefix + (str(k),))
        return out
    return [(prefix, data)]


def _rel(file: str) -> str:
    from .catalog import specs_root

    try:
        return str(Path(file).resolve().relative_to(specs_root().resolve()))
    except ValueError:
        return file


def cmd_list(args: argparse.Namespace) -> int:
    import zoo

    rows = []
    for e in zoo.list_models():
        c = zoo.compile(e.name)
        n = c.accounting.params
        rows.append((e.name, e.family or "", f"{n / 1e9:.2f}B" if n >= 1e8 else f"{n / 1e6:.2f}M", e.description))
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    print(f"{'model':<{w[0]}}  {'family':<{w[1]}}  {'params':>{w[2]}}  description")
    for r in rows:
        print(f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:>{w[2]}}  {r[3]}")
    return 0


def _show_resolved(name: str, overrides: Sequence[str]) -> None:
    from . import api, catalog
    from .compiler.frontend import apply_overrides

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


def _ffn_text(ffn: Any) -> str:
    """swiglu 11008; moe 8x swiglu 14336, top-2."""
    if ffn.kind == "moe":
        return f"moe {ffn.n_experts}x {ffn.expert.kind} {ffn.hidden_dim}, top-{ffn.top_k}"
    return f"{ffn.kind} {ffn.hidden_dim}"


def cmd_show(args: argparse.Namespace) -> int:
    from . import api
    from .compiler.explain import render_accounting

    if args.resolved:
        _show_resolved(args.model, args.overrides)
        return 0
    c = api.compile(args.model, args.overrides)
    s = c.spec
    a = s.arch
    blk = a.block(0)
    print(f"{s.name}" + (f" — {s.description}" if s.description else ""))
    print(f"family           {s.family or '-'}")
    print(f"fingerprint      {s.fingerprint()}")
    print(f"shape            dim {a.dim}, {a.n_layers} layers, {blk.attention.n_heads} heads, "
          f"{blk.attention.n_kv_heads} kv heads, head_dim {blk.attention.head_dim}, "
          f"{_ffn_text(blk.ffn)}, {blk.norm.kind} eps {blk.norm.eps:g}")
    rope = blk.attention.rope
    print("positions        " + (f"RoPE theta {rope.theta:g}" + (f", linear x{rope.scaling.factor:g}" if rope.scaling else "")
                                  if rope else "none") + f"; context {a.max_seq_len:,}; vocab {a.vocab_size:,}")
    if a.heads.kind == "multi_token":
        n = a.heads.n_future
        print(f"heads            {n} future-token heads (trunk {a.n_layers - n} blocks + {n} head blocks)")
    if a.kind == "vision-language":
        for line in _vision_lines(a, c.accounting):
            print(line)
    for line in render_accounting(c.accounting):
        print(line)
    if s.published and s.published.params:
        ok = "matches" if s.published.params == c.accounting.params else "DIFFERS from"
        print(f"published        {s.published.params:,} ({ok} the count above)")
    if s.tokenizer:
        print(f"tokenizer        {s.tokenizer.kind} ({s.tokenizer.file})" + (", infilling" if s.tokenizer.infill else ""))
    if s.weights:
        print(f"weights          {s.weights.repo}@{s.weights.revision} ({s.weights.format})")
    return 0


def _vision_lines(a: Any, acc: Any) -> list[str]:
    """A vision-language model's image side, and its parameters split by part."""
    from .compiler.passes.accounting_vision import text_params

    v, blk = a.vision, a.vision.block()
    tokens = f"[IMG] {a.image_token_id}" + (f", [IMG_BREAK] {a.image_break_id}" if a.image_break_id is not None else "")
    tokens += f", [IMG_END] {a.image_end_id}" if a.image_end_id is not None else ""
    by = acc.params_by_part
    return [
        f"vision           dim {v.dim}, {v.n_layers} layers, {blk.attention.n_heads} heads, head_dim "
        f"{blk.attention.head_dim}, {blk.ffn.kind} {blk.ffn.hidden_dim}, patch {v.patch_size}, 2-D RoPE theta "
        f"{v.attention.rope.theta:g} over {v.grid}x{v.grid} patches (images up to {v.image_size}px)",
        f"adapter          {v.dim} -> {a.adapter_hidden_dim} -> {a.dim}, {a.adapter.activation}"
        + (", biases" if a.adapter.bias else ""),
        f"image tokens     {tokens}",
        f"parts            vision {by['vision']:,} + adapter {by['adapter']:,} + text {text_params(acc):,}",
    ]


def cmd_compile(args: argparse.Namespace) -> int:
    from . import api

    c = api.compile(args.spec, args.overrides, backend=args.backend, device=args.device)
    if args.explain:
        print(c.explain())
    else:
        print(f"{c.spec.name}: ok, {c.accounting.params:,} parameters, backend {c.backend.name}")
    if not c.backend.available:
        print(f"error: backend refused: {c.backend.why}", file=sys.stderr)
        return 0 if args.explain else 2
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    import zoo

    model = zoo.load(args.model, args.overrides, backend=args.backend, device=args.device, dtype=args.dtype)
    model.eval()
    kw = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
              seed=args.seed)
    if args.image:
        if getattr(model, "vision", None) is None:
            print(f"error: {args.model} has no vision encoder: --image needs a vision-language model "
                  "(e.g. pixtral-12b)", file=sys.stderr)
            return 2
        if args.suffix is not None:
            print("error: --suffix (infilling) and --image do not go together", file=sys.stderr)
            return 2
        print(model.generate_text(args.prompt, images=args.image, **kw))
        return 0
    if args.suffix is not None:
        print(args.prompt + model.infill(args.prompt, args.suffix, **kw) + args.suffix)
    else:
        print(args.prompt + model.generate_text(args.prompt, **kw))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from .compiler.schema import json_schema

    text = json.dumps(json_schema(resolved=args.resolved), indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n")
        print(f"wrote {args.output}")
    else:
        print(text)
    return 0


def _add_backend(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default=None, help="eager, sdpa, xformers, xla or auto (default: $ZOO_BACKEND or auto)")
    p.add_argument("--device", default="cpu")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo", description="Models as data: YAML specs, compiled and loaded.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="every model in the catalog, with family and size")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="a model's shape, parameter count, memory and FLOPs/token")
    p.add_argument("model")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. arch.n_layers=2")
    p.add_argument("--resolved", action="store_true", help="the effective spec, each key with its source file")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("compile", help="check a spec and plan it for a backend")
    p.add_argument("spec", help="catalog name or YAML file")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--explain", action="store_true", help="print each op, its kernel and why")
    _add_backend(p)
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("generate", help="complete a prompt with a checkpoint or catalog model")
    p.add_argument("model", help="checkpoint folder, catalog name or Hub repo")
    p.add_argument("prompt")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default=None)
    p.add_argument("--suffix", default=None, help="fill in the middle between the prompt and this suffix")
    p.add_argument("--image", action="append", default=[], metavar="FILE",
                   help="an image for a vision-language model (repeatable; [IMG] in the prompt marks where each "
                        "goes, else they come first)")
    _add_backend(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("schema", help="write the JSON Schema of spec files (for editors)")
    p.add_argument("-o", "--output", default=None)
    p.add_argument("--resolved", action="store_true",
                   help="the schema of a complete spec (after extends and interpolation), not of a file as written")
    p.set_defaults(func=cmd_schema)

    for register in _extensions():
        register(sub)
    return parser


def _extensions() -> list[Callable[[Any], None]]:
    """Subcommands defined beside the code they drive (weights, Hub, recipes)."""
    import importlib

    out = []
    for name in ("cli_weights", "cli_train", "cli_btx"):
        try:
            out.append(importlib.import_module(f"{__package__}.{name}").register)
        except ModuleNotFoundError as e:
            if e.name != f"{__package__}.{name}":
                raise
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from .runtime.backends import BackendUnavailable
    from .runtime.modules.vision import VisionInputError
    from .runtime.tokenizers import TokenizerError
    from .runtime.vision.errors import ImageError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ZooError, BackendUnavailable, TokenizerError, ImageError, VisionInputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `zoo list | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
