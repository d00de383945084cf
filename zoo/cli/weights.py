"""`zoo convert`, `zoo quantize`, `zoo pull`, `zoo push`: the weights and Hub commands.

    zoo convert ./llama-2-7b-meta --to hf ./llama-2-7b-hf
    zoo quantize ./model --to int4 --group-size 32 ./model-int4
    zoo pull codellama-7b [--revision SHA]
    zoo push ./out org/my-model [--private]
"""

from __future__ import annotations

import argparse
from typing import Any

from .. import api, hub
from .options import add_spec_and_format


def cmd_convert(args: argparse.Namespace) -> int:
    out = api.convert(args.source, args.dest, args.to, dtype=args.dtype, shards=args.shards,
                  max_shard_size=args.max_shard_size, overwrite=args.overwrite, revision=args.revision, token=args.token,
                      spec=args.spec, format=args.format)
    print(f"wrote {out} ({args.to})")
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    model = api.load(args.source, revision=args.revision, token=args.token, spec=args.spec, format=args.format,
                     quantize=args.to, group_size=args.group_size, symmetric=not args.asymmetric,
                     skip=args.skip)
    out = model.save(args.dest, max_shard_size=args.max_shard_size, overwrite=args.overwrite)
    q = model.spec.quantization
    acc = model.compiled.accounting.stored
    print(f"wrote {out} ({q.describe()}: {acc.matrices} matrices, {acc.quantized_bytes / 2**20:.1f} MiB of integers "
          "and scales)")
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    folder, _ = hub.download(args.model, revision=args.revision, token=args.token, force_download=args.force,
                         verify=True if args.verify else None)
    print(folder)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    sha = hub.push(args.folder, args.repo_id, private=args.private or None, token=args.token, branch=args.branch,
               commit_message=args.message)
    print(f"pushed {args.folder} to {args.repo_id} at {sha}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("convert", help="convert a checkpoint between formats (hf, meta, zoo, gguf)",
                       description="Load a checkpoint in any known format (folder, catalog name or Hub repo) and "
                                   "write it in another: hf (transformers folder), meta (consolidated.*.pth), zoo, "
                                   "gguf (a llama.cpp file).")
    p.add_argument("source", help="a checkpoint folder, a catalog name or a Hub repo id")
    p.add_argument("--to", required=True, choices=["hf", "meta", "mistral", "zoo", "gguf"],
                   help="output format (gguf: one llama.cpp file, dest ends in .gguf)")
    p.add_argument("dest", help="output folder, or .gguf file for gguf (written atomically)")
    p.add_argument("--dtype", default=None, help="cast to float32, bfloat16 or float16 (default: keep); gguf: "
                   "the file's tensor type f32, f16, bf16, q8_0 or q4_0")
    p.add_argument("--shards", type=int, default=1, help="meta: number of model-parallel shards")
    p.add_argument("--max-shard-size", default="5GB", help="hf/zoo: largest safetensors shard (5GB, 500MB …)")
    p.add_argument("--overwrite", action="store_true", help="replace dest if it exists")
    p.add_argument("--revision", default=None, help="Hub source: branch, tag or commit")
    p.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the stored login)")
    add_spec_and_format(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("quantize", help="store a model's linear weights as int8 or int4 (weight-only)",
                       description="Load a float checkpoint (folder, catalog name or Hub repo), quantize its linear "
                                   "projections and write a zoo folder holding the integers and their scales; "
                                   "zoo.load reads it back as stored. The embedding and the output projection stay "
                                   "float unless --skip says otherwise (docs/quantization.md).")
    p.add_argument("source", help="a float checkpoint folder, a catalog name or a Hub repo id")
    p.add_argument("--to", required=True, choices=["int8", "int4"],
                   help="int8: one scale per output channel; int4: one scale per group of inputs")
    p.add_argument("dest", help="output folder (written atomically)")
    p.add_argument("--group-size", type=int, default=None, choices=[32, 64, 128, 256],
                   help="int4: inputs sharing one scale (default 32)")
    p.add_argument("--asymmetric", action="store_true", help="int4: a zero point per group (default: symmetric)")
    p.add_argument("--skip", action="append", default=None, metavar="GLOB",
                   help="canonical linear paths kept float (repeatable; default: output)")
    p.add_argument("--max-shard-size", default="5GB", help="largest safetensors shard (5GB, 500MB …)")
    p.add_argument("--overwrite", action="store_true", help="replace dest if it exists")
    p.add_argument("--revision", default=None, help="Hub source: branch, tag or commit")
    p.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the stored login)")
    add_spec_and_format(p)
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("pull", help="download a model's weights into the Hub cache (and verify them)")
    p.add_argument("model", help="a catalog name (its pinned repo and revision) or a Hub repo id")
    p.add_argument("--revision", default=None, help="branch, tag or commit sha (default: the spec's pin, or main)")
    p.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the stored login)")
    p.add_argument("--force", action="store_true", help="download again even if cached")
    p.add_argument("--verify", action="store_true", help="re-check every file's checksum even if checked before")
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("push", help="upload a checkpoint folder to the Hub")
    p.add_argument("folder", help="a checkpoint folder (zoo, transformers or Meta)")
    p.add_argument("repo_id", help="org/name on the Hub")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--branch", default=None, help="commit to this branch (created if missing)")
    p.add_argument("--message", default=None, help="commit message")
    p.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the stored login)")
    p.set_defaults(func=cmd_push)
