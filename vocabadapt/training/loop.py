"""The training loop of a stage: HF Trainer with the stage's arguments and callbacks, and the stage summary."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..config import VocabAdaptationConfig
from ..errors import StageError
from .callbacks import EmbeddingHealth, StageMonitor
from .checkpoints import CheckpointSeal, valid_checkpoints
from .objective import Distiller, RowPlan, VocabTrainer
from .packing import PackedDataset, PackedSequences, SequenceOrder, collate
from .settings import StageSettings


def training_arguments(
    settings: StageSettings, cfg: VocabAdaptationConfig, checkpoint_dir: Path, bf16: bool, world_size: int
) -> Any:
    """HF TrainingArguments of a stage: the loop, schedule and checkpoints are the Trainer's."""
    from transformers import TrainingArguments

    tensorboard = importlib.util.find_spec("tensorboard") is not None
    cpu_ddp = world_size > 1 and not torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=str(checkpoint_dir),
        max_steps=settings.steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation,
        learning_rate=settings.learning_rate,
        optim=settings.optimizer,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a ratio of max_steps
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        seed=cfg.seed,
        bf16=bf16,
        activation_checkpointing=cfg.gradient_checkpointing,
        logging_strategy="steps",
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        eval_strategy="no",
        report_to=["tensorboard"] if tensorboard else "none",
        train_sampling_strategy="sequential",  # the order is PackedDataset's, identical on every resume
        remove_unused_columns=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        # CPU DDP: accelerate only sets up a gloo process group when told the run is on CPU
        use_cpu=cpu_ddp,
        ddp_backend="gloo" if cpu_ddp else None,
        ddp_find_unused_parameters=False,
        disable_tqdm=True,  # our own bar (StageMonitor) replaces Trainer's print-to-stdout one
    )
    if args.world_size != world_size:
        raise StageError(f"the process group has {args.world_size} processes but WORLD_SIZE says {world_size}")
    return args


def fit(
    model: Any,
    settings: StageSettings,
    cfg: VocabAdaptationConfig,
    dataset: PackedDataset,
    checkpoint_dir: Path,
    bf16: bool,
    world_size: int,
    monitor: StageMonitor,
    callbacks: list[Any],
    resume_from: Path | None,
    collator: Callable[[list[dict[str, torch.Tensor]]], dict[str, Any]] = collate,
    distiller: Distiller | None = None,
    row_plan: RowPlan | None = None,
) -> None:
    """Run HF Trainer over the stage's sequences; the monitor watches every step, the seal closes checkpoints.

    With a distiller the collator is byte_align.DistillCollator and the loss is VocabTrainer's; with a
    row plan the embeddings and head get their own optimiser group (vocabadapt.training.rows).

    Raises:
        StageError: a micro-batch does not fit in memory; the loss became NaN/Inf (the last good checkpoint
            is kept and named).
    """
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    args = training_arguments(settings, cfg, checkpoint_dir, bf16, world_size)
    trainer = VocabTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        callbacks=[monitor, *callbacks, CheckpointSeal()],  # the seal must come last
        distiller=distiller,
        row_plan=row_plan,
        # distillation's loss is computed outside the model's forward: the trainer hands it to the monitor
        loss_sink=monitor.add_loss if distiller is not None else None,
    )
    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    # Every micro-batch has exactly batch x (seq_len - 1) targets (no padding), so the per-micro-batch mean
    # loss the model returns is already correctly weighted; this also makes outputs.loss that mean.
    trainer.model_accepts_loss_kwargs = False
    hook = model.register_forward_hook(monitor.hook) if distiller is None else None
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except torch.OutOfMemoryError as e:
        raise StageError(
            f"{settings.name}: a micro-batch of {cfg.batch_size} x {cfg.max_seq_length} tokens does not fit in device "
            f"memory; lower vocab_adaptation.batch_size and raise gradient_accumulation to keep the same "
            f"batch_size x gradient_accumulation ({cfg.batch_size * cfg.gradient_accumulation}), or turn on "
            f"gradient_checkpointing ({str(e).splitlines()[0][:120]})"
        ) from None
    finally:
        if hook is not None:
            hook.remove()
    if monitor.nonfinite_step is not None:
        good = valid_checkpoints(checkpoint_dir, need_rows=settings.trainable == "lora")
        kept = str(good[-1][1]) if good else "none (no checkpoint was written before it)"
        raise StageError(
            f"{settings.name}: the loss became NaN/Inf at step {monitor.nonfinite_step}; training stopped and the last "
            f"good checkpoint is kept: {kept}. Lower lr_stage{settings.name[-1]}, keep max_grad_norm > 0, or check the "
            f"input model for NaN rows; rerunning resumes from that checkpoint"
        )


def stage_summary(
    settings: StageSettings,
    cfg: VocabAdaptationConfig,
    records: list[dict[str, Any]],
    *,
    per_step: int,
    world_size: int,
    count: int,
    order: SequenceOrder,
    packed: PackedSequences,
    bf16: bool,
    attn: str,
    matrix_names: list[str],
    n_trainable: int,
    n_total: int,
    lora_targets: list[str] | None,
    state: dict[str, Any],
    bpb_after: float | None,
    heldout_bytes: int,
    resume_from: Path | None,
    health: bool,
    wall_s: float,
) -> dict[str, Any]:
    """The stage summary: what was trained on which data, losses, spikes, held-out bits per byte, health."""
    train_recs = [r for r in records if r.get("type") == "train"]
    rates = [r["tokens_per_s"] for r in train_recs if r.get("tokens_per_s")]
    stop = settings.start_position + count
    summary: dict[str, Any] = {
        "skipped": False,
        "mode": settings.trainable,
        "steps": settings.steps,
        "world_size": world_size,
        "sequences_per_step": per_step,
        "tokens": count * cfg.max_seq_length,
        "sequences": {
            "start": settings.start_position,
            "stop": stop,
            "ranges": order.ranges(settings.start_position, stop),
        },
        "data": packed.stats(),
        "precision": "bf16" if bf16 else "fp32",
        "attention": attn,
        "tied_embeddings": len(matrix_names) == 1,
        "trainable_parameters": n_trainable,
        "total_parameters": n_total,
        "lora_target_modules": lora_targets,
        "first_loss": train_recs[0]["loss"] if train_recs else None,
        "last_loss": train_recs[-1]["loss"] if train_recs else None,
        "spikes": [
            {"step": r["step"], "loss": r["loss"], "running_mean": r["running_mean"]}
            for r in records
            if r.get("type") == "spike"
        ],
        "heldout_bpb_before": state.get("heldout_bpb_before"),
        "heldout_bpb_after": bpb_after,
        "heldout_bytes": heldout_bytes or None,
        "tokens_per_s_median": float(np.median(rates)) if rates else None,
        "resumed_from": str(resume_from) if resume_from else None,
        "wall_s": wall_s,
    }
    distill = sorted({k for r in train_recs for k in r if k.startswith("distill_")})
    if distill:  # the means over the stage's logging steps (loss components, teacher-signal fractions)
        summary["objective"] = settings.objective
        summary["distill"] = {
            k[len("distill_") :]: float(np.mean([r[k] for r in train_recs if r.get(k) is not None])) for k in distill
        }
    if health:
        summary["embedding_health"] = EmbeddingHealth.verdict(
            [r for r in records if r.get("type") == "health"], matrix_names
        )
    return summary
