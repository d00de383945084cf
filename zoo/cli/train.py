"""`zoo train`: train a spec from scratch, fine-tune a checkpoint, or resume a run.

    zoo train llama-2-7b arch.dim=256 arch.n_layers=6 arch.vocab_size=4096 \\
        --data tokens.bin --steps 2000 --out runs/tiny --eval-fraction 0.01 --eval-every 200
    zoo train runs/tiny --resume --steps 4000        # newest step folder, same data and split
    zoo train runs/tiny/step-002000 --data other.bin --steps 500 --out runs/ft   # fine-tune
    torchrun --nproc-per-node 2 -m zoo train SPEC --data tokens.bin --fsdp 2 --steps 100 --out run/
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .. import api
from ..train import (
    TokenStream,
    TrainConfig,
    Trainer,
    TrainError,
    checkpoints,
    distributed,
    read_state,
    resolve_checkpoint,
)


def _say(text: str) -> None:
    if distributed.world()[0] == 0:
        print(text)


def _streams(data: str, dtype: str, eval_fraction: float, seq_len: int,
             batch_size: int, sample: str, seed: int) -> tuple[Any, Any]:
    stream = TokenStream.from_file(data, seq_len, batch_size, dtype=dtype, mode=sample, seed=seed)
    return stream.split(eval_fraction) if eval_fraction > 0 else (stream, None)


def _config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(steps=args.steps, lr=args.lr, min_lr_ratio=args.min_lr_ratio, warmup_steps=args.warmup,
                       weight_decay=args.weight_decay, grad_clip=args.grad_clip or None, accum_steps=args.accum,
                       bf16=args.bf16, memory_efficient=args.memory_efficient,
                       checkpoint_every=args.checkpoint_every, keep_last=args.keep_last, eval_every=args.eval_every,
                       eval_batches=args.eval_batches, log_every=args.log_every,
                       extra={"data": str(Path(args.data).absolute()), "dtype": args.dtype,
                              "eval_fraction": args.eval_fraction, "sample": args.sample, "seed": args.seed})


def _resume(args: argparse.Namespace) -> Any:
    path = resolve_checkpoint(args.source)
    state = read_state(path)
    extra, geometry = state["config"].get("extra", {}), state["data"]
    data = args.data or extra.get("data")
    if not data:
        raise TrainError(f"{path}: the checkpoint does not record its data file; pass --data")
    train, held = _streams(data, extra.get("dtype", args.dtype), float(extra.get("eval_fraction", 0.0)),
                           geometry["seq_len"], geometry["batch_size"], geometry["mode"], geometry["seed"])
    overrides = {"steps": args.steps} if args.steps is not None else {}
    _say(f"resuming {path} at step {state['step']}")
    return Trainer.resume(path, train, eval_data=held, out=args.out, device=args.device, backend=args.backend,
                          fsdp=bool(args.fsdp), mixed_precision=args.mixed_precision, tp=args.tp, **overrides)


def _fresh(args: argparse.Namespace) -> Any:
    import torch

    if args.data is None or args.steps is None or args.out is None:
        raise TrainError("a new run needs --data, --steps and --out")
    if checkpoints(args.out):
        raise TrainError(f"{args.out} already holds step-* checkpoints; pass --resume to continue that run "
                         f"or choose another --out")
    torch.manual_seed(args.seed)
    source = Path(args.source)
    if (source / "zoo.yaml").is_file() or (source / "config.json").is_file():
        model = api.load(source, args.overrides, device=args.device, backend=args.backend)
    else:
        model = api.build(args.source, args.overrides, device=args.device, backend=args.backend, seed=args.seed)
    train, held = _streams(args.data, args.dtype, args.eval_fraction, args.seq_len, args.batch_size,
                           args.sample, args.seed)
    n = sum(p.numel() for p in model.parameters())
    _say(f"{model.spec.name}: {n / 1e6:.2f}M parameters; {len(train):,} training tokens"
         + (f", {len(held):,} held out" if held is not None else "")
         + (f"; FSDP over {args.fsdp} ranks, {args.batch_size // args.fsdp} sequences each" if args.fsdp else "")
         + (f", each split {args.tp} ways (tensor parallel)" if args.tp > 1 else ""))
    return Trainer(model, train, _config(args), eval_data=held, out=args.out, fsdp=bool(args.fsdp),
                   mixed_precision=args.mixed_precision, tp=args.tp)


def _join_group(args: argparse.Namespace) -> None:
    """--fsdp M [--tp N]: join torchrun's process group and check it has M x N ranks."""
    from ..runtime.distributed import local_device

    if args.mixed_precision and not args.fsdp:
        raise TrainError("--mixed-precision is FSDP's policy (bf16 parameters, fp32 reduction); use --bf16 "
                         "without --fsdp")
    if args.tp < 1:
        raise TrainError(f"--tp must be >= 1, got {args.tp}")
    if args.tp > 1 and not args.fsdp:
        raise TrainError("--tp N trains on a 2-D mesh with FSDP: give --fsdp M as well (M x N processes; "
                         "--fsdp 1 for tensor parallel alone)")
    if not args.fsdp:
        return
    ranks = args.fsdp * args.tp
    size = distributed.init_from_env(args.device)[1]
    if size != ranks:
        raise TrainError(f"--fsdp {args.fsdp}" + (f" --tp {args.tp}" if args.tp > 1 else "") + f" needs {ranks} "
                         f"processes, this run has {size}: launch with torchrun --nproc-per-node {ranks} "
                         "-m zoo train ...")
    args.device = local_device(args.device)


def cmd_train(args: argparse.Namespace) -> int:
    _join_group(args)
    try:
        return _run(args)
    finally:
        if args.fsdp and distributed.world()[1] > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


def _run(args: argparse.Namespace) -> int:
    trainer = _resume(args) if args.resume else _fresh(args)
    trainer.fit(progress=None if not args.no_progress else False)
    last = trainer.history[-1] if trainer.history else None
    if last is not None:
        _say(f"step {trainer.step}: loss {last.loss:.4f}, {trainer.tokens_seen:,} tokens seen")
    if trainer.eval_data is not None:
        ev = trainer.evaluate()
        heads = f" (per head: {', '.join(f'{h:.4f}' for h in ev.head_losses)})" if len(ev.head_losses) > 1 else ""
        _say(f"held-out loss {ev.loss:.4f}{heads}")
    if trainer.out is not None:
        _say(f"checkpoint: {trainer.out / f'step-{trainer.step:06d}'}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("train", help="train a model on a token file (or resume a run)",
                       description="Train a catalog spec or YAML from scratch, fine-tune a checkpoint folder, or "
                                   "--resume a run folder. Checkpoints are zoo folders (+ trainer/ state), "
                                   "written atomically as out/step-NNNNNN.")
    p.add_argument("source", help="catalog name, YAML spec, checkpoint folder, or (with --resume) a run/step folder")
    p.add_argument("overrides", nargs="*", help="dotted spec overrides, e.g. arch.n_layers=4")
    p.add_argument("--data", default=None, help="token file: .npy, or raw ids (see --dtype)")
    p.add_argument("--dtype", default="uint16", choices=["uint16", "int32", "uint32", "int64"],
                   help="element type of a raw token file")
    p.add_argument("--steps", type=int, default=None, help="total optimizer steps of the run")
    p.add_argument("--out", default=None, help="output folder for step-* checkpoints and metrics.jsonl")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in source")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per micro-batch (default 8)")
    p.add_argument("--seq-len", type=int, default=256, help="tokens per sequence (default 256)")
    p.add_argument("--sample", default="random", choices=["random", "sequential"], help="window order")
    p.add_argument("--lr", type=float, default=3e-4, help="peak learning rate")
    p.add_argument("--min-lr-ratio", type=float, default=0.1, help="cosine floor as a fraction of --lr")
    p.add_argument("--warmup", type=int, default=100, help="linear warmup steps")
    p.add_argument("--weight-decay", type=float, default=0.1, help="AdamW weight decay (default 0.1)")
    p.add_argument("--grad-clip", type=float, default=1.0, help="max global grad norm (0 disables)")
    p.add_argument("--accum", type=int, default=1, help="micro-batches per optimizer step")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast (default: on for CUDA, off on CPU where it is slower)")
    p.add_argument("--memory-efficient", action="store_true", help="multi-token: per-head forward/backward")
    p.add_argument("--eval-fraction", type=float, default=0.0, help="hold out the last fraction of the tokens")
    p.add_argument("--eval-every", type=int, default=0, help="evaluate every N steps (0: never)")
    p.add_argument("--eval-batches", type=int, default=8, help="batches per evaluation (default 8)")
    p.add_argument("--checkpoint-every", type=int, default=0, help="0: only at the end")
    p.add_argument("--keep-last", type=int, default=None, help="keep only the newest N checkpoints")
    p.add_argument("--log-every", type=int, default=10, help="metrics.jsonl interval")
    p.add_argument("--seed", type=int, default=0, help="init and data-order seed")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--backend", default=None, help="attention backend (default: auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--fsdp", type=int, default=0, metavar="M",
                   help="FSDP2 over M ranks (launch with torchrun --nproc-per-node M); --batch-size is the global "
                        "batch; checkpoints are sharded DCP folders")
    p.add_argument("--tp", type=int, default=1, metavar="N",
                   help="with --fsdp M: each model replica split N ways by tensor parallelism, on an M x N mesh "
                        "(M x N processes)")
    p.add_argument("--mixed-precision", action="store_true",
                   help="with --fsdp: bf16 parameters for compute, float32 gradient reduction")
    p.set_defaults(func=cmd_train)
