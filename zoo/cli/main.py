"""The `zoo` command line: list, show, compile, generate, schema (and the weights/Hub,
training and BTX commands registered by their modules)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from .. import api, catalog
from ..compiler.errors import ZooError
from ..compiler.explain import render_accounting
from ..compiler.frontend import apply_overrides
from ..compiler.schema import json_schema
from . import btx, chat, serve, train, weights
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
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    c = api.compile(args.spec, args.overrides, backend=args.backend, device=args.device)
    if args.explain:
        print(c.explain())
    else:
        print(f"{c.spec.name}: ok, {c.accounting.params:,} parameters, backend {c.backend.name}")
    if not c.backend.available:
        print(f"error: backend refused: {c.backend.why}", file=sys.stderr)
        # --explain on a known backend that cannot run here is the question answered; a name
        # that is no backend at all is a mistake
        return 0 if args.explain and c.runtime_backend is not None else 2
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    model = api.load(args.model, args.overrides, backend=args.backend, device=args.device, dtype=args.dtype,
                     spec=args.spec, format=args.format)
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
    p.add_argument("--family", default=None, help="only this family's models (e.g. gemma, qwen2, llama)")
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
    add_spec_and_format(p)
    _add_backend(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("schema", help="write the JSON Schema of spec files (for editors)")
    p.add_argument("-o", "--output", default=None)
    p.add_argument("--resolved", action="store_true",
                   help="the schema of a complete spec (after extends and interpolation), not of a file as written")
    p.set_defaults(func=cmd_schema)

    for module in (weights, train, btx, serve, chat):  # subcommands defined beside the code they drive
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. A user's mistake (any ZooError) prints `error: …` and returns 2; anything
    else is a bug in zoo, reported in one line (ZOO_DEBUG=1 shows the traceback) with 1."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ZooError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `zoo list | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # noqa: BLE001 - the last line of defense: no traceback for users
        if os.environ.get("ZOO_DEBUG"):
            raise
        print(f"error: unexpected {type(e).__name__}: {str(e)[:500]} (a bug in zoo; ZOO_DEBUG=1 shows the "
              "traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
