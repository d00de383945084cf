"""A small trainer for any zoo model on a token stream.

    model = zoo.build("llama-2-7b", [...], init="random")
    train, held = TokenStream.from_file("tokens.bin", seq_len=256, batch_size=16).split(0.01)
    trainer = Trainer(model, train, TrainConfig(steps=2000, lr=1e-3), eval_data=held, out="runs/a")
    trainer.fit()                                    # checkpoints in runs/a/step-*/
    trainer = Trainer.resume("runs/a", train, eval_data=held)   # continues bit for bit

AdamW with a warmup + cosine schedule, global-norm clipping, gradient accumulation and bf16
autocast where it pays (see TrainConfig.bf16). Everything a resumed run needs is a function of
saved state (weights, AdamW moments, step, data position, RNG), so K steps + resume + K steps
equals 2K steps exactly on CPU. Multi-token models can train with the paper's memory-efficient
schedule (`memory_efficient=True`), where `model.loss` runs the backward pass itself.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .. import loading
from . import distributed as fsdp_mod
from . import state as ts
from .config import TrainConfig, TrainError, lr_at
from .data import TokenStream

__all__ = ["EvalResult", "StepStats", "TokenStream", "TrainConfig", "TrainError", "Trainer", "lr_at"]


@dataclass(frozen=True)
class StepStats:
    step: int  # optimizer steps done after this one
    loss: float  # mean over the step's micro-batches (multi-token: summed over heads)
    grad_norm: float  # global L2 norm before clipping
    lr: float
    tokens: int  # target tokens this step trained on
    seconds: float
    aux_loss: float | None = None  # MoE models: the raw load-balancing loss (mean over micro-batches)


@dataclass(frozen=True)
class EvalResult:
    loss: float  # comparable to the training loss (multi-token: sum over heads)
    head_losses: tuple[float, ...]  # per head (one entry for next-token models); [0] is next-token loss
    tokens: int


def is_multi_token(model: nn.Module) -> bool:
    return int(getattr(model, "n_future", 1)) > 1


class Trainer:
    def __init__(self, model: nn.Module, data: TokenStream, config: TrainConfig | None = None, *,
                 eval_data: TokenStream | None = None, out: str | Path | None = None, fsdp: bool = False,
                 mixed_precision: bool = False, tp: int = 1) -> None:
        """`fsdp=True` (under an initialized process group, e.g. torchrun): FSDP2-shard the model
        across the ranks; each rank trains on its slice of `data`'s global batch and checkpoints
        are DCP folders (distributed.py). `mixed_precision`: bf16 parameters, float32 reduction.
        `tp` > 1 (with fsdp): tensor parallel inside FSDP on a (world/tp) x tp mesh."""
        if tp > 1 and not fsdp:
            raise TrainError("tp > 1 trains on a tp x fsdp mesh: pass fsdp=True (--fsdp) as well")
        if fsdp:
            model = fsdp_mod.shard_model(model, mixed_precision=mixed_precision, tp=tp)
        self.model, self.data, self.eval_data = model, data, eval_data
        self.sharded = fsdp_mod.is_sharded(model)
        self.rank = fsdp_mod.world()[0]
        self.config = config or TrainConfig()
        self.out = Path(out) if out is not None else None
        self.device = next(model.parameters()).device
        if self.config.memory_efficient and not is_multi_token(model):
            raise TrainError("memory_efficient=True is the multi-token loss schedule; this model has one head")
        vocab = getattr(getattr(model, "cfg", None), "vocab_size", None)
        self.vocab_size: int | None = int(vocab) if vocab is not None else None
        self.step = 0
        self.tokens_seen = 0
        self.history: list[StepStats] = []
        self.last_aux_loss: float | None = None  # MoE: last step's raw load-balancing loss
        self._names: dict[int, str] = {}  # optimizer index -> parameter name, set with the optimizer
        self.optimizer = self._build_optimizer()

    # ------------------------------------------------------------------ setup
    def _trainable(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def _build_optimizer(self) -> torch.optim.Optimizer:
        """AdamW with weight decay on matrices only: decaying norm gains and biases toward zero
        fights their role (scales and offsets), the usual GPT/LLaMA recipe."""
        params = self._trainable()
        decay = [p for _, p in params if p.dim() >= 2]
        no_decay = [p for _, p in params if p.dim() < 2]
        # the optimizer numbers parameters group by group: rebuild names in that order
        order = [n for n, p in params if p.dim() >= 2] + [n for n, p in params if p.dim() < 2]
        self._names = dict(enumerate(order))
        c = self.config
        groups = [{"params": decay, "weight_decay": c.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=lr_at(self.step, c), betas=c.betas, eps=c.eps)

    @property
    def bf16(self) -> bool:
        if self.config.bf16 is not None:
            return self.config.bf16
        return self.device.type == "cuda" and torch.cuda.is_bf16_supported()

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    @property
    def tokens_per_step(self) -> int:
        return self.data.batch_size * self.data.seq_len * self.config.accum_steps

    def _to_device(self, batch: torch.Tensor) -> torch.Tensor:
        if self.vocab_size is not None and int(batch.max()) >= self.vocab_size:
            raise TrainError(f"{self.data.source or 'data'}: token id {int(batch.max())} >= the model's vocab_size "
                             f"{self.vocab_size} (wrong tokenizer or --dtype?)")
        return batch.to(self.device, non_blocking=True)

    # ------------------------------------------------------------------ one step
    def forward_backward(self) -> float:
        """Run `accum_steps` micro-batches forward and backward; gradients end up averaged.

        Each micro-batch's *unscaled* loss is backpropagated and the summed gradients are
        divided once at the end, because the memory-efficient multi-token loss runs its own
        backward and cannot be scaled beforehand; both schedules then share one code path."""
        self.model.train()
        total = torch.zeros((), device=self.device)  # summed on the device: one host sync per step
        aux_total: torch.Tensor | None = None  # MoE: the raw load-balancing loss CausalLM.loss leaves
        for _ in range(self.config.accum_steps):
            batch = self._to_device(fsdp_mod.local_rows(self.data.next_batch(), self.model) if self.sharded
                                    else self.data.next_batch())
            with self.autocast():
                if self.config.memory_efficient:
                    loss = self.model.loss(batch, memory_efficient=True)  # type: ignore[operator]
                else:
                    loss = self.model.loss(batch)  # type: ignore[operator]
            if not self.config.memory_efficient:
                loss.backward()
            total += loss.detach().float()
            aux = getattr(self.model, "last_aux_loss", None)
            if aux is not None:
                aux_total = aux.float() if aux_total is None else aux_total + aux.float()
        self.last_aux_loss = None if aux_total is None else float(aux_total) / self.config.accum_steps
        if self.config.accum_steps > 1:
            for _, p in self._trainable():
                if p.grad is not None:
                    p.grad.div_(self.config.accum_steps)
        mean = float(total) / self.config.accum_steps
        if self.sharded:  # each rank's loss is the mean over its equal share of the global batch
            mean = fsdp_mod.mean_over_ranks(mean, self.device)
        if not math.isfinite(mean):
            raise TrainError(f"loss is {mean} at step {self.step}; lower the learning rate or check the data")
        return mean

    def clip_gradients(self) -> float:
        """Clip to `grad_clip` (global L2 norm); returns the norm before clipping."""
        params = [p for _, p in self._trainable() if p.grad is not None]
        if self.sharded:  # DTensor gradients: the norm is reduced over the shards (of each mesh)
            norm = fsdp_mod.grad_norm([p.grad for p in params])
            if self.config.grad_clip is not None:
                torch.nn.utils.clip_grads_with_norm_(params, self.config.grad_clip, norm, foreach=False)
            return float(norm)
        if self.config.grad_clip is None:
            return float(torch.nn.utils.get_total_norm([p.grad for p in params]))
        return float(torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip))

    def apply_update(self) -> float:
        """One AdamW step at this step's learning rate; returns that rate."""
        lr = lr_at(self.step, self.config)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return lr

    def train_step(self) -> StepStats:
        t0 = time.perf_counter()
        loss = self.forward_backward()
        norm = self.clip_gradients()
        lr = self.apply_update()
        self.tokens_seen += self.tokens_per_step
        stats = StepStats(self.step, loss, norm, lr, self.tokens_per_step, time.perf_counter() - t0,
                          self.last_aux_loss)
        self.history.append(stats)
        return stats

    # ------------------------------------------------------------------ loop
    def fit(self, steps: int | None = None, *, progress: bool | None = None) -> list[StepStats]:
        """Train until `config.steps` (or `steps` more); checkpoints every `checkpoint_every` and
        at the end when there is an output folder. Returns this call's step stats."""
        from tqdm.auto import tqdm

        end = self.config.steps if steps is None else self.step + steps
        c, start = self.config, len(self.history)
        bar = tqdm(total=end, initial=self.step, desc="train", unit="step", disable=True if self.rank else
                   None if progress is None else not progress, dynamic_ncols=True)
        with bar:
            while self.step < end:
                s = self.train_step()
                bar.update(1)
                bar.set_postfix(loss=f"{s.loss:.4f}", lr=f"{s.lr:.2e}", tok_s=f"{s.tokens / s.seconds:,.0f}")
                record: dict[str, Any] = {}
                if c.eval_every and self.eval_data is not None and self.step % c.eval_every == 0:
                    ev = self.evaluate()
                    record.update(eval_loss=ev.loss, eval_head_losses=list(ev.head_losses))
                    bar.write(f"step {self.step}: eval loss {ev.loss:.4f}"
                              + (f" (heads {', '.join(f'{h:.3f}' for h in ev.head_losses)})"
                                 if len(ev.head_losses) > 1 else ""))
                if record or (c.log_every and self.step % c.log_every == 0):
                    if s.aux_loss is not None:
                        record["aux_loss"] = s.aux_loss
                    self._log({"step": self.step, "loss": s.loss, "grad_norm": s.grad_norm, "lr": s.lr,
                               "tokens_seen": self.tokens_seen, "tok_s": s.tokens / s.seconds, **record})
                if self.out is not None and c.checkpoint_every and self.step % c.checkpoint_every == 0:
                    self.save_checkpoint()
        ran = len(self.history) > start
        if self.out is not None and ran and not (c.checkpoint_every and self.step % c.checkpoint_every == 0):
            self.save_checkpoint()  # the final state, unless the loop just saved it
        return self.history[start:]

    def _log(self, record: dict[str, Any]) -> None:
        if self.out is not None and self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            with open(self.out / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------------ evaluation
    def _eval_batches(self, data: TokenStream, max_batches: int) -> Iterator[torch.Tensor]:
        for i in range(min(max_batches, data.batches_per_epoch)):
            yield self._to_device(data.batch(i))

    @torch.no_grad()
    def evaluate(self, data: TokenStream | None = None, max_batches: int | None = None) -> EvalResult:
        """Mean cross-entropy over the first `eval_batches` sequential batches of the held-out
        stream (the same batches every time, so evaluations are comparable); per head for
        multi-token models, from `model(tokens, all_heads=True)`."""
        data = data or self.eval_data
        if data is None:
            raise TrainError("evaluate() needs held-out data: pass eval_data to the Trainer")
        was_training = self.model.training
        self.model.eval()
        n = int(getattr(self.model, "n_future", 1))
        sums, counts = [0.0] * n, [0] * n
        for batch in self._eval_batches(data, max_batches or self.config.eval_batches):
            with self.autocast():
                logits = self.model(batch, all_heads=True) if n > 1 else self.model(batch).unsqueeze(2)
            for i in range(n):
                k = i + 1
                if k >= batch.shape[1]:
                    continue
                tgt = batch[:, k:]
                sums[i] += float(F.cross_entropy(logits[:, :-k, i].flatten(0, 1).float(), tgt.flatten(), reduction="sum"))
                counts[i] += tgt.numel()
        self.model.train(was_training)
        heads = tuple(s / max(c, 1) for s, c in zip(sums, counts))
        return EvalResult(sum(heads), heads, counts[0])

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        return {"step": self.step, "tokens_seen": self.tokens_seen, "config": self.config.to_json(),
                "data": self.data.state_dict(), "source": self.data.source,
                "eval_data": self.eval_data.state_dict() if self.eval_data is not None else None}

    def save_checkpoint(self, folder: str | Path | None = None) -> Path:
        """Write `out/step-NNNNNN` (or `folder`) atomically; prunes to `keep_last`."""
        if folder is None:
            if self.out is None:
                raise TrainError("save_checkpoint() needs a folder, or an `out` folder on the Trainer")
            folder = ts.step_folder(self.out, self.step)
        if self.sharded:
            path = fsdp_mod.save_dcp(folder, self.model, self.optimizer, self.state())
        else:
            path = ts.write_checkpoint(folder, self.model, self.optimizer, self._names, self.state())
        if self.out is not None and self.rank == 0 and Path(folder).parent.resolve() == self.out.resolve():
            ts.prune(self.out, self.config.keep_last)
        return path

    @classmethod
    def resume(cls, folder: str | Path, data: TokenStream, *, eval_data: TokenStream | None = None,
               out: str | Path | None = None, device: str | torch.device | None = None,
               backend: str | None = None, fsdp: bool | None = None, mixed_precision: bool = False,
               tp: int = 1, **overrides: Any) -> Trainer:
        """Continue from a step folder (or the newest one in a run folder): same weights, AdamW
        state, step, data position and RNG, so the run goes on as if never stopped. `data` must
        be the stream the run trained on (checked: length and batch geometry). `overrides`
        change settings (e.g. steps=...) at the price of exactness. A DCP folder (written by an
        FSDP run) resumes at any world size and tp; `fsdp` (default: when more than one rank) shards
        again, the model built on the meta device and only its shards allocated, then read."""
        path = ts.resolve_checkpoint(folder)
        state = ts.read_state(path)
        config = TrainConfig.from_json(state["config"], **overrides)
        fsdp = fsdp_mod.world()[1] > 1 if fsdp is None else fsdp
        out = out if out is not None else path.parent
        if state.get("dcp"):
            model = fsdp_mod.model_from_dcp(path, device=device or "cpu", backend=backend, meta=fsdp)
            trainer = cls(model, data, config, eval_data=eval_data, out=out, fsdp=fsdp, mixed_precision=mixed_precision,
                          tp=tp)
            if fsdp:
                fsdp_mod.allocate_shards(trainer.model, device or "cpu")
                trainer.device = next(trainer.model.parameters()).device
                trainer.optimizer = trainer._build_optimizer()  # over the allocated shards
            fsdp_mod.load_dcp(path, trainer.model, trainer.optimizer)
        else:
            model = loading.load(path, device=device or "cpu", backend=backend)
            trainer = cls(model, data, config, eval_data=eval_data, out=out, fsdp=fsdp, mixed_precision=mixed_precision,
                          tp=tp)
            tensors, groups = ts.read_optimizer(path)
            ts.optimizer_from_files(trainer.optimizer, trainer._names, tensors, groups, str(path))
        data.load_state_dict(state["data"])
        if eval_data is not None and state.get("eval_data"):
            eval_data.load_state_dict(state["eval_data"])
        trainer.step, trainer.tokens_seen = int(state["step"]), int(state["tokens_seen"])
        if not state.get("dcp"):  # a DCP run's ranks had their own generators: none is restored
            ts.restore_rng(ts.read_rng(path))
        return trainer
