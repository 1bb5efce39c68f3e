"""The stage's HF Trainer: the objective (next-token or distillation) and the optimiser's parameter groups.

`VocabTrainer` is transformers' Trainer with two overrides, everything else (loop, accumulation,
schedule, clipping, checkpoints, resume, DDP) the Trainer's own:

- `compute_loss`: with a `Distiller`, the student's forward (hidden states kept) plus the teacher's
  forward under no_grad on the collator's source ids, and the weighted distillation losses
  (vocabadapt.training.distill.LOSSES), plus the next-token loss for distill+ce. Without one, the
  Trainer's next-token loss unchanged.
- `create_optimizer`: with a `RowPlan` (train_rows: new or lr_embeddings), vocabadapt.training.rows's
  parameter groups; otherwise the Trainer's.

The loss components and the share of target positions with a teacher signal are logged at each
logging step as `distill_*` (metrics.jsonl, and the stage summary's `distill` means).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from transformers import Trainer

from .distill import LOSSES, Forward, LossInputs, Teacher, next_token_loss
from .rows import param_groups

log = logging.getLogger(__name__)


@dataclass
class Distiller:
    """What compute_loss needs to distil: the teacher, the settings, the shared vocabulary, running stats."""

    teacher: Teacher
    settings: Any  # vocab_adaptation.distill (DistillConfig)
    with_ce: bool  # objective distill+ce
    shared_t: torch.Tensor  # (shared,) target ids of the KL's vocabulary
    shared_s: torch.Tensor  # (shared,) their source ids
    _parts: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    _stats: dict[str, int] = field(default_factory=dict)
    _pending_stats: list[dict[str, torch.Tensor]] = field(default_factory=list)
    batches_without_signal: int = 0

    def record(self, parts: dict[str, torch.Tensor], stats: dict[str, torch.Tensor]) -> None:
        # Kept as tensors: reading them here would wait for the device every micro-batch; flush reads them once.
        for k, v in parts.items():
            self._parts.setdefault(k, []).append(v)
        self._pending_stats.append(stats)

    def flush(self) -> dict[str, float]:
        """Means since the last flush: distill_<loss> and distill_<kind>_fraction of target positions."""
        for stats in self._pending_stats:
            counts = {k: int(v) for k, v in stats.items()}
            self.batches_without_signal += int(counts["signal_positions"] == 0)
            for k, n in counts.items():
                self._stats[k] = self._stats.get(k, 0) + n
        self._pending_stats.clear()
        out = {f"distill_{k}": float(torch.stack(v).float().mean()) for k, v in self._parts.items()}
        n = max(self._stats.get("positions", 0), 1)
        for k in ("signal_positions", "boundaries", "chunk_positions", "kl_positions"):
            out[f"distill_{k.replace('_positions', '')}_fraction"] = self._stats.get(k, 0) / n
        seg = self._stats.get("segments", 0)
        if seg:
            out["distill_segments_unaligned_fraction"] = self._stats.get("segments_unaligned", 0) / seg
        self._parts.clear()
        self._stats.clear()
        return out


@dataclass
class RowPlan:
    """Optimiser groups for the embedding/head matrices: their own rate and/or no decay (frozen rows)."""

    matrices: list[torch.nn.Parameter]
    lr_embeddings: float | None
    freeze_rows: bool


class VocabTrainer(Trainer):
    """transformers.Trainer with the stage's objective and parameter groups (see module doc)."""

    def __init__(
        self,
        *args: Any,
        distiller: Distiller | None = None,
        row_plan: RowPlan | None = None,
        loss_sink: Callable[[torch.Tensor], None] | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.distiller, self.row_plan, self.loss_sink = distiller, row_plan, loss_sink

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.distiller is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        d = self.distiller
        layers = list(d.settings.hidden_layers)
        inputs = dict(inputs)
        source_ids, align, stats = inputs.pop("source_ids"), inputs.pop("align"), inputs.pop("align_stats")
        # No labels: with distill+ce the next-token loss comes from the same log-probabilities as the chunk loss.
        out = model(input_ids=inputs["input_ids"], output_hidden_states=True, use_cache=False)
        teacher = d.teacher(source_ids, layers, logits=bool(d.settings.chunk_weight or d.settings.kl_weight))
        x = LossInputs(
            student=Forward([out.hidden_states[i] for i in layers], out.logits),
            teacher=teacher,
            input_ids=inputs["input_ids"],
            source_ids=source_ids,
            align=align,
            shared_t=d.shared_t.to(source_ids.device),
            shared_s=d.shared_s.to(source_ids.device),
            temperature=d.settings.temperature,
            chunk_distance=d.settings.chunk_distance,
        )
        total = out.logits.sum() * 0.0  # (): attached to the graph even when no loss has a signal
        parts: dict[str, torch.Tensor] = {}
        for name, (fn, weight_key) in LOSSES.items():
            weight = getattr(d.settings, weight_key)
            if weight:
                value = fn(x)
                parts[name] = value.detach()
                total = total + weight * value
        if d.with_ce:
            ce = next_token_loss(x)
            parts["ce"] = ce.detach()
            total = total + d.settings.ce_weight * ce
        d.record(parts, stats)
        if self.loss_sink is not None:
            self.loss_sink(total.detach())
        return (total, out) if return_outputs else total

    def create_optimizer(self, model=None):
        if self.optimizer is not None or self.row_plan is None:
            return super().create_optimizer(model)
        opt_model = self.model if model is None else model
        plan = self.row_plan
        groups = param_groups(
            opt_model,
            plan.matrices,
            set(self.get_decay_parameter_names(opt_model)),
            self.args.weight_decay,
            self.args.learning_rate,
            plan.lr_embeddings,
            plan.freeze_rows,
        )
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        optimizer_kwargs.pop("params", None)
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.distiller is not None and "loss" in logs:
            logs = {**logs, **self.distiller.flush()}
        super().log(logs, start_time)
