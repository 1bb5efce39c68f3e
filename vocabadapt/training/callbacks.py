"""Training callbacks: the stage monitor (metrics.jsonl, held-out bits per byte, spikes, NaN stop)
and stage 1's embedding health.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from transformers import TrainerCallback

from ..errors import InputError
from ..io import write_json
from .world import is_main

log = logging.getLogger(__name__)

SPIKE_WINDOW = 50  # steps in the running mean a loss is compared with
SPIKE_MIN_HISTORY = 5  # no spike verdicts before this many steps


def heldout_sample(texts: Sequence[str], max_bytes: int) -> list[str]:
    """Whole held-out documents up to `max_bytes` of UTF-8 (at least one).

    Raises:
        InputError: no held-out text.
    """
    docs: list[str] = []
    n_bytes = 0
    for t in texts:
        b = len(t.encode("utf-8"))
        if docs and n_bytes + b > max_bytes:
            break
        docs.append(t)
        n_bytes += b
    if not docs or n_bytes == 0:
        raise InputError("the held-out sample is empty; the corpus stage must hold out some documents")
    return docs


def heldout_scorer(
    tokenizer: Any, texts: Sequence[str], context: int, batch_size: int, bf16: bool = False
) -> Callable[[torch.nn.Module], float]:
    """Held-out bits per byte during training: THE definition, vocabadapt.evaluation.bpb.bits_per_byte.

    Each document is scored from its start with windows of `context` tokens (the training length) and
    the evaluation's default stride, so the training curve and the evaluate stage measure the same thing.
    The model's train/eval mode is restored afterwards.
    """
    from ..evaluation.bpb import bits_per_byte

    def score(model: torch.nn.Module) -> float:
        was_training = model.training
        device = next(model.parameters()).device
        amp = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        try:
            with amp:
                return float(
                    bits_per_byte(model, tokenizer, texts, context=context, batch_size=batch_size)["bits_per_byte"]
                )
        finally:
            model.train(was_training)

    return score


class StageMonitor(TrainerCallback):
    """Per-step loss watch, metrics.jsonl, held-out bpb, spikes, NaN stop, stage-1 embedding health.

    Losses reach it through a forward hook on the model (`hook`), kept as tensors and read (one device
    sync) only at logging/saving steps, so watching costs next to nothing per step.
    """

    def __init__(
        self,
        metrics_path: Path,
        tokens_per_step: int,
        spike_factor: float,
        eval_steps: int,
        eval_fn: Callable[[torch.nn.Module], float] | None,
        health: EmbeddingHealth | None,
        state: dict[str, Any],
        state_path: Path,
        progress: Any = None,
    ):
        self.metrics_path = metrics_path
        self.state, self.state_path = state, state_path
        self.tokens_per_step = tokens_per_step
        self.spike_factor = spike_factor
        self.eval_steps = eval_steps
        self.eval_fn = eval_fn
        self.health = health
        self.progress = progress
        self.main = is_main()
        self._micro: list[torch.Tensor] = []  # micro-batch losses of the current step
        self._pending: list[tuple[int, torch.Tensor]] = []  # (step, mean loss) not yet read
        self._history: list[float] = []  # recent finite step losses (spike reference)
        self._last_log_time: float | None = None
        self._last_log_step = 0
        self.nonfinite_step: int | None = None
        self.last_saved_step: int | None = None

    # -- plumbing
    def hook(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        loss = getattr(output, "loss", None)
        if module.training and loss is not None:
            self._micro.append(loss.detach())

    def add_loss(self, loss: torch.Tensor) -> None:
        """A micro-batch's loss computed outside the model's forward (distillation)."""
        self._micro.append(loss.detach())

    def _write(self, record: dict[str, Any]) -> None:
        if not self.main:
            return
        self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def _flush(self, control: Any) -> None:
        """Read pending losses: spikes, and a NaN/Inf stops training before anything is saved."""
        if not self._pending:
            return
        losses = torch.stack([t for _, t in self._pending]).float().cpu()
        bad = bool((~torch.isfinite(losses)).any())
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Every rank must stop at the same step, or the others would wait forever in all-reduce.
            flag = torch.tensor([int(bad)], device=self._pending[-1][1].device)  # NCCL needs a device tensor
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            bad = bool(flag.item())
        for (step, _), value in zip(self._pending, losses.tolist()):
            if not math.isfinite(value):
                self._mark_nonfinite(step, value)
                break
            if len(self._history) >= SPIKE_MIN_HISTORY:
                mean = sum(self._history) / len(self._history)
                if value > self.spike_factor * mean:
                    log.warning(
                        "loss spike at step %d: %.4f > %.1f x running mean %.4f", step, value, self.spike_factor, mean
                    )
                    self._write({"type": "spike", "step": step, "loss": value, "running_mean": mean})
            self._history = (self._history + [value])[-SPIKE_WINDOW:]
        if bad:
            self._mark_nonfinite(self._pending[-1][0], float("nan"))  # no-op when this rank saw it first
        self._pending.clear()
        if bad:
            control.should_save = False
            control.should_training_stop = True
            control.should_log = False

    def _mark_nonfinite(self, step: int, value: float) -> None:
        if self.nonfinite_step is None:
            self.nonfinite_step = step
            log.error("non-finite loss (%s) at step %d: stopping before anything is saved", value, step)
            self._write({"type": "nonfinite", "step": step, "loss": str(value)})

    # -- events
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        # Scored here, not earlier: Trainer has moved the model to its device by now.
        if self.main and self.eval_fn is not None and "heldout_bpb_before" not in self.state:
            self.state["heldout_bpb_before"] = self.eval_fn(model)
            log.info("held-out %.4f bits per byte before training", self.state["heldout_bpb_before"])
            write_json(self.state_path, self.state)
        self._last_log_time = time.perf_counter()
        self._last_log_step = state.global_step
        if self.progress is not None:
            self.progress.reset(total=state.max_steps)
            self.progress.update(state.global_step)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self._micro:
            self._pending.append((state.global_step, torch.stack(self._micro).mean()))
            self._micro.clear()
        if control.should_save or control.should_log or control.should_training_stop or len(self._pending) >= 64:
            self._flush(control)
        if self.nonfinite_step is not None:
            return control
        if self.progress is not None:
            self.progress.update(1)
        if self.main and self.eval_fn is not None and state.global_step % self.eval_steps == 0:
            bpb = self.eval_fn(model)
            log.info("step %d: held-out %.4f bits per byte", state.global_step, bpb)
            self._write({"type": "eval", "step": state.global_step, "heldout_bpb": bpb})
        if self.main and self.health is not None and control.should_log:
            self._write({"type": "health", "step": state.global_step, **self.health.measure(state.global_step)})
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" not in logs or self.nonfinite_step is not None:
            return
        now = time.perf_counter()
        steps = state.global_step - self._last_log_step
        rate = steps * self.tokens_per_step / (now - self._last_log_time) if steps and self._last_log_time else None
        self._last_log_time, self._last_log_step = now, state.global_step
        rec = {
            "type": "train",
            "step": state.global_step,
            "loss": logs.get("loss"),
            "learning_rate": logs.get("learning_rate"),
            "grad_norm": logs.get("grad_norm"),
            "tokens_per_s": rate,
            "epoch": logs.get("epoch"),
            **{k: v for k, v in logs.items() if k.startswith("distill_")},
        }
        self._write(rec)
        if self.progress is not None:
            self.progress.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)

    def on_save(self, args, state, control, **kwargs):
        self.last_saved_step = state.global_step


class EmbeddingHealth:
    """Stage 1: mean row norms of built vs copied rows and the relative update per step.

    row_groups: {"built": ids, "copied": ids} (from the mapping); without it one group "all".
    """

    def __init__(self, matrices: list[torch.nn.Parameter], names: list[str], row_groups: dict[str, np.ndarray] | None):
        self.matrices = matrices
        self.names = names
        self.groups = {k: torch.as_tensor(np.asarray(v, dtype=np.int64)) for k, v in (row_groups or {}).items()}
        self._prev = [p.detach().clone() for p in matrices]
        self._prev_step = 0

    @torch.no_grad()
    def measure(self, step: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        steps = max(step - self._prev_step, 1)
        for name, p, prev in zip(self.names, self.matrices, self._prev):
            w = p.detach()
            out[f"{name}_rel_update_per_step"] = float((w - prev).norm() / prev.norm().clamp_min(1e-12)) / steps
            norms = w.float().norm(dim=1)  # (rows,)
            if self.groups:
                for g, ids in self.groups.items():
                    ids = ids[ids < norms.numel()]
                    if ids.numel():
                        out[f"{name}_{g}_mean_norm"] = float(norms[ids.to(norms.device)].mean())
            else:
                out[f"{name}_all_mean_norm"] = float(norms.mean())
            prev.copy_(w)
        self._prev_step = step
        return out

    @staticmethod
    def verdict(records: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
        """Whether the embeddings settle: the relative update over the last quarter of logs is at most
        half its peak, and built rows end no larger than 1.5 x the copied rows' mean norm."""
        if len(records) < 4:
            return {"settled": None, "reason": "fewer than 4 health records (raise steps or lower logging_steps)"}
        out: dict[str, Any] = {}
        ok = True
        for name in names:
            upd = [r[f"{name}_rel_update_per_step"] for r in records if f"{name}_rel_update_per_step" in r]
            tail = upd[-max(1, len(upd) // 4) :]
            update_settled = (sum(tail) / len(tail)) <= 0.5 * max(upd) if upd and max(upd) > 0 else True
            out[f"{name}_update_settled"] = update_settled
            ok &= update_settled
            last = records[-1]
            b, c = last.get(f"{name}_built_mean_norm"), last.get(f"{name}_copied_mean_norm")
            if b is not None and c:
                ratio = b / c
                out[f"{name}_built_to_copied_norm"] = ratio
                out[f"{name}_norm_overshoot"] = ratio > 1.5
                ok &= ratio <= 1.5
        out["settled"] = bool(ok)
        return out
