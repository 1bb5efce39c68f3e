"""The two training stages: one function (`train_stage`), two stage settings.

Stage 1 trains the input embeddings and the output head only (the rows transplant rebuilt have to
fit the frozen body first); stage 2 trains the whole model, or LoRA adapters plus the embeddings and
head, merged back at the end so `model/stage2/` is a plain Hugging Face directory.

HF `Trainer` runs the loop, accumulation, schedule, clipping, checkpoints and DDP (torchrun /
accelerate launch; DeepSpeed/FSDP configs pass through `accelerate launch --config_file` untouched).
vocabadapt customises it only through arguments, the data (vocabadapt.training.packing: packed sequences, one
seeded order shared by every process and resume, read sequentially) and callbacks
(vocabadapt.training.callbacks, vocabadapt.training.checkpoints):

- `StageMonitor` writes `metrics.jsonl`: loss, lr, grad norm, tokens/s per logging
  step; held-out bits per byte every `eval_steps`; loss spikes (loss > spike_factor x the mean of the
  previous steps); a NaN/Inf loss stops the stage before its weights are checkpointed, and the stage
  raises StageError naming the last good checkpoint; stage-1 embedding health.
- `TrainableRowsSaver` (LoRA only): peft checkpoints hold only the adapter, so the trainable
  embedding and head matrices are saved next to it and restored on resume.

The objective (vocab_adaptation.objective_stage1/2) is next-token by default; `distill` / `distill+ce` let
the source model teach (vocabadapt.training.distill: the teacher; .byte_align: the collator that adds the
source tokenization of the same bytes; .objective: the Trainer subclass whose compute_loss combines them).
`train_rows: new` masks the gradients of the copied rows and `lr_embeddings` gives the embeddings and
head their own rate (vocabadapt.training.rows).

Library entry (tests, benchmarks, other drivers):

    train_stage(settings, cfg, model_dir, train_shards, output_dir, metrics_dir, checkpoint_dir,
                heldout_texts=None, models=None, row_groups=None, callbacks=(), teacher=None,
                frozen_rows=None) -> summary dict

Before any weights load, vocabadapt.training.plan checks the data, the resume point and the precision;
vocabadapt.training.model_setup loads the model and freezes what the stage does not train (LoRA included);
vocabadapt.training.teacher sets up the teacher side of a distilling stage.

vocabadapt.stages.train is the pipeline's recipe around it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..config import ModelsConfig, VocabAdaptationConfig
from ..io import atomic_dir, read_jsonl, write_json
from .callbacks import EmbeddingHealth, StageMonitor
from .checkpoints import STATE_FILE, TrainableRowsSaver, copy_model
from .distill import TeacherSource
from .loop import fit, stage_summary
from .model_setup import checkpoint_dtype, prepare_model, trainable_matrices
from .objective import Distiller, RowPlan
from .packing import PackedDataset, collate
from .plan import StagePlan, plan_stage
from .rows import RowMask
from .settings import StageSettings
from .teacher import distill_collator, load_distiller, report_signal, warn_unaligned
from .world import world

__all__ = ["train_stage", "trainable_matrices"]  # trainable_matrices lives in .model_setup; kept importable here

log = logging.getLogger(__name__)


def train_stage(
    settings: StageSettings,
    cfg: VocabAdaptationConfig,
    model_dir: str | Path,
    train_shards: str | Path,
    output_dir: str | Path,
    metrics_dir: str | Path,
    checkpoint_dir: str | Path,
    heldout_texts: Sequence[str] | None = None,
    models: ModelsConfig | None = None,
    row_groups: dict[str, np.ndarray] | None = None,
    callbacks: Sequence[Any] = (),
    progress: Any = None,
    teacher: TeacherSource | None = None,
    frozen_rows: np.ndarray | None = None,
) -> dict[str, Any]:
    """Train one stage and write the model to `output_dir` (plain HF directory + tokenizer).

    Args:
        settings: the stage (see stage_settings).
        cfg: the vocab_adaptation section.
        model_dir: input HF model directory with its tokenizer (model/init or model/stage1).
        train_shards: target-tokenizer id shards (tokens/target/train).
        output_dir: where the trained model goes (replaced atomically).
        metrics_dir: gets metrics.jsonl.
        checkpoint_dir: HF Trainer checkpoints; resumed from when present.
        heldout_texts: held-out documents for bits per byte (None: no held-out scoring).
        models: the models section (safe loading rules); default ModelsConfig().
        row_groups: stage 1 health: {"built": target ids, "copied": target ids}.
        callbacks: extra TrainerCallbacks (tests use them to interrupt a run).
        progress: a tqdm-like bar (reset/update/set_postfix); None = no bar.
        teacher: the source model and tokenizer; required when settings.objective distils.
        frozen_rows: target ids whose embedding/head rows stay unchanged (train_rows: new); None = all train.
    Returns:
        The stage summary (steps, tokens, sequence ranges, losses, spikes, bpb before/after, ...).
    Raises:
        StageError: NaN/Inf loss, batch out of memory, resume refused, flash-attn missing.
        InputError: bad model, data or held-out sample; LoRA targets missing from the model.
    """
    models = models or ModelsConfig()
    model_dir, train_shards = Path(model_dir), Path(train_shards)
    output_dir, metrics_dir, checkpoint_dir = Path(output_dir), Path(metrics_dir), Path(checkpoint_dir)
    rank, world_size = world()
    main = rank == 0
    t0 = time.perf_counter()
    if settings.steps == 0:
        return _skip_stage(settings, model_dir, output_dir, main)

    # ---- validate everything before loading weights
    plan = plan_stage(
        settings, cfg, model_dir, train_shards, metrics_dir, checkpoint_dir, heldout_texts, models, world_size, main
    )
    collator = distill_collator(settings, cfg, plan, teacher)

    # ---- the model (and the teacher beside it)
    model, matrices, lora_targets = prepare_model(model_dir, settings, cfg, models, plan.attn, plan.resume.checkpoint)
    distiller = (
        load_distiller(model, settings, cfg, plan, teacher, models)
        if teacher is not None and collator is not None
        else None
    )
    mask, row_plan = _row_controls(matrices, settings, frozen_rows)
    save_dtype = checkpoint_dtype(model_dir)
    trainee = _Trainee.of(model, matrices, lora_targets)
    if main:
        write_json(checkpoint_dir / STATE_FILE, plan.resume.state)

    # ---- the trainer
    health = EmbeddingHealth(matrices, trainee.matrix_names, row_groups) if settings.trainable == "embeddings" else None
    try:
        _fit_stage(
            model,
            settings,
            cfg,
            plan,
            checkpoint_dir,
            health,
            matrices,
            callbacks,
            progress if main else None,
            _Objective(collator or collate, distiller, row_plan),
        )
    finally:
        if mask is not None:
            mask.remove()
    if collator is not None and distiller is not None:
        distiller.flush()  # count the micro-batches after the last logging step too
        warn_unaligned(settings, collator, distiller)

    # ---- finish: merge, score, write
    final = model.merge_and_unload() if settings.trainable == "lora" else model
    if not main:
        return {}
    bpb_after = plan.eval_fn(final) if plan.eval_fn is not None else None
    final.to(save_dtype)
    with atomic_dir(output_dir) as tmp:
        final.save_pretrained(str(tmp), safe_serialization=True)
        plan.tokenizer.save_pretrained(str(tmp))
    summary = _summarise(
        settings, cfg, plan, trainee, health is not None, bpb_after, round(time.perf_counter() - t0, 3)
    )
    summary["train_rows"] = {"frozen_rows": mask.count if mask is not None else 0}
    summary["lr_embeddings"] = settings.lr_embeddings
    if distiller is not None and collator is not None:
        report_signal(summary, settings, collator, distiller)
    return summary


def _row_controls(
    matrices: list[torch.nn.Parameter], settings: StageSettings, frozen_rows: np.ndarray | None
) -> tuple[RowMask | None, RowPlan | None]:
    """The gradient mask of the frozen rows (train_rows: new) and the optimiser's parameter groups, when asked."""
    mask = RowMask(matrices, frozen_rows) if frozen_rows is not None else None
    row_plan = (
        RowPlan(matrices, settings.lr_embeddings, mask is not None)
        if mask is not None or settings.lr_embeddings is not None
        else None
    )
    return mask, row_plan


def _skip_stage(settings: StageSettings, model_dir: Path, output_dir: Path, main: bool) -> dict[str, Any]:
    """The summary of a stage of 0 steps, whose output is a copy of its input model."""
    log.info("%s: 0 steps configured, stage skipped; %s is a copy of %s", settings.name, output_dir, model_dir)
    if main:
        copy_model(model_dir, output_dir)
    return {
        "skipped": True,
        "steps": 0,
        "tokens": 0,
        "mode": settings.trainable,
        "sequences": {"start": settings.start_position, "stop": settings.start_position, "ranges": []},
    }


@dataclass
class _Objective:
    """How a stage computes its loss and groups its parameters (see vocabadapt.training.objective)."""

    collator: Callable[[list[dict[str, torch.Tensor]]], dict[str, Any]]
    distiller: Distiller | None
    row_plan: RowPlan | None


@dataclass
class _Trainee:
    """What the summary reports about the model a stage trains."""

    matrix_names: list[str]  # "embeddings" and, when untied, "head"
    n_trainable: int
    n_total: int
    lora_targets: list[str] | None

    @classmethod
    def of(cls, model: Any, matrices: list[torch.nn.Parameter], lora_targets: list[str] | None) -> _Trainee:
        return cls(
            matrix_names=["embeddings" if i == 0 else "head" for i in range(len(matrices))],
            n_trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
            n_total=sum(p.numel() for p in model.parameters()),
            lora_targets=lora_targets,
        )


def _fit_stage(
    model: Any,
    settings: StageSettings,
    cfg: VocabAdaptationConfig,
    plan: StagePlan,
    checkpoint_dir: Path,
    health: EmbeddingHealth | None,
    matrices: list[torch.nn.Parameter],
    callbacks: Sequence[Any],
    progress: Any,
    objective: _Objective,
) -> None:
    """Train `model` in place through HF Trainer (vocabadapt.training.loop.fit), watched by a StageMonitor."""
    monitor = StageMonitor(
        plan.metrics_path,
        plan.per_step * cfg.max_seq_length,
        cfg.spike_factor,
        cfg.eval_steps,
        plan.eval_fn,
        health,
        plan.resume.state,
        checkpoint_dir / STATE_FILE,
        progress,
    )
    fit(
        model,
        settings,
        cfg,
        PackedDataset(plan.packed, plan.order, settings.start_position, plan.count),
        checkpoint_dir,
        plan.bf16,
        plan.world_size,
        monitor,
        [*([TrainableRowsSaver(matrices)] if settings.trainable == "lora" else []), *callbacks],
        plan.resume.checkpoint,
        collator=objective.collator,
        distiller=objective.distiller,
        row_plan=objective.row_plan,
    )


def _summarise(
    settings: StageSettings,
    cfg: VocabAdaptationConfig,
    plan: StagePlan,
    trainee: _Trainee,
    health: bool,
    bpb_after: float | None,
    wall_s: float,
) -> dict[str, Any]:
    """The stage summary (vocabadapt.training.loop.stage_summary), also logged in one line."""
    summary = stage_summary(
        settings,
        cfg,
        read_jsonl(plan.metrics_path),
        per_step=plan.per_step,
        world_size=plan.world_size,
        count=plan.count,
        order=plan.order,
        packed=plan.packed,
        bf16=plan.bf16,
        attn=plan.attn,
        matrix_names=trainee.matrix_names,
        n_trainable=trainee.n_trainable,
        n_total=trainee.n_total,
        lora_targets=trainee.lora_targets,
        state=plan.resume.state,
        bpb_after=bpb_after,
        heldout_bytes=plan.heldout_bytes,
        resume_from=plan.resume.checkpoint,
        health=health,
        wall_s=wall_s,
    )
    log.info(
        "%s: %d steps, loss %s -> %s, held-out bpb %s -> %s",
        settings.name,
        settings.steps,
        summary["first_loss"],
        summary["last_loss"],
        summary["heldout_bpb_before"],
        bpb_after,
    )
    return summary
