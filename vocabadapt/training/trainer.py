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

vocabadapt.stages.train is the pipeline's recipe around it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..config import ModelsConfig, VocabAdaptationConfig
from ..errors import InputError, StageError
from ..io import atomic_dir, read_json, read_jsonl, write_json
from ..model.keys import lora_targets as resolve_lora_targets
from ..text.shards import ShardReader
from .byte_align import DistillCollator
from .callbacks import EmbeddingHealth, StageMonitor, heldout_sample, heldout_scorer
from .checkpoints import (
    STATE_FILE,
    TrainableRowsSaver,
    check_resume,
    copy_model,
    partial_checkpoints,
    truncate_metrics,
    valid_checkpoints,
)
from .distill import LOSSES, TeacherSource, build_teacher, shared_vocabulary
from .loop import fit, stage_summary
from .objective import Distiller, RowPlan
from .packing import PackedDataset, PackedSequences, SequenceOrder, collate
from .rows import RowMask
from .settings import METRICS_FILE, StageSettings, settings_record
from .world import world

log = logging.getLogger(__name__)


def _resolve_bf16(requested: bool) -> bool:
    if not requested:
        return False
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return True
    log.warning("vocab_adaptation.bf16 is on but this device has no bf16 support (CPU or old GPU): training in fp32")
    return False


def _attn_implementation(use_flash_attn: bool) -> str:
    if not use_flash_attn:
        return "sdpa"
    if importlib.util.find_spec("flash_attn") is None:
        raise StageError(
            "vocab_adaptation.use_flash_attn is true but the flash-attn package is not installed; install it "
            "(pip install flash-attn, needs CUDA) or set use_flash_attn: false to use PyTorch SDPA attention"
        )
    return "flash_attention_2"


def trainable_matrices(model: Any) -> list[torch.nn.Parameter]:
    """The input embedding and output head weights, by identity (one entry when they are tied)."""
    found: list[torch.nn.Parameter] = []
    inp = model.get_input_embeddings()
    out = model.get_output_embeddings()
    for module in (inp, out):
        if module is None:
            continue
        w = module.weight
        if not any(w is f for f in found):
            found.append(w)
    if not found:
        raise StageError(f"{type(model).__name__} exposes no input/output embeddings; cannot run stage 1")
    return found


def _set_trainable(
    model: Any, settings: StageSettings, cfg: VocabAdaptationConfig, matrices: list[torch.nn.Parameter]
) -> tuple[Any, list[str] | None]:
    """Freeze what the stage does not train; wrap the model in LoRA adapters for trainable == "lora".

    Returns (the model to train, the LoRA target modules or None).
    Raises:
        InputError: a configured LoRA target is not a linear layer of the model.
    """
    if settings.trainable == "embeddings":
        for p in model.parameters():
            p.requires_grad_(False)
        for p in matrices:
            p.requires_grad_(True)
        return model, None
    if settings.trainable == "all":
        for p in model.parameters():
            p.requires_grad_(True)
        return model, None
    from peft import LoraConfig, get_peft_model
    from transformers import set_seed

    lora_targets = resolve_lora_targets(model, cfg.lora_target_modules)
    set_seed(cfg.seed)  # the adapters' random init must not depend on what ran before in this process
    model = get_peft_model(
        model,
        LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,  # type: ignore[arg-type]  # peft annotates int, accepts float
            lora_dropout=cfg.lora_dropout,
            target_modules=lora_targets,
            bias="none",
            task_type="CAUSAL_LM",
        ),
    )
    for p in matrices:  # peft froze them; the new rows keep training with the adapters
        p.requires_grad_(True)
    return model, lora_targets


def _prepare_model(
    model_dir: Path,
    settings: StageSettings,
    cfg: VocabAdaptationConfig,
    models: ModelsConfig,
    attn: str,
    resume_from: Path | None,
) -> tuple[Any, list[torch.nn.Parameter], list[str] | None]:
    """Load the input model in fp32, freeze what the stage does not train, restore a checkpoint's weights.

    Returns (the model to train, its embedding/head matrices, the LoRA targets or None).
    Raises:
        StageError: max_seq_length beyond the model's context.
    """
    from ..model.hub import load_model

    model = load_model(str(model_dir), models, dtype=torch.float32, attn_implementation=attn)
    max_pos = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    if max_pos is not None and cfg.max_seq_length > max_pos:
        raise StageError(
            f"vocab_adaptation.max_seq_length {cfg.max_seq_length} exceeds the model's context "
            f"({max_pos} positions); lower it"
        )
    matrices = trainable_matrices(model)
    model, lora_targets = _set_trainable(model, settings, cfg, matrices)
    if cfg.gradient_checkpointing and settings.trainable != "all":
        model.enable_input_require_grads()  # checkpointed blocks need an input that requires grad
    if resume_from is not None:
        log.info("%s: resuming from %s", settings.name, resume_from)
        if settings.trainable == "lora":
            TrainableRowsSaver.load(resume_from, matrices)
        else:
            # Trainer's own resume loads the raw state dict non-strictly, which skips tensors whose saved
            # name differs from the module's (transformers 5 saves GPT-NeoX's lm_head as embed_out);
            # loading through from_pretrained maps the names, and strict=True proves nothing was missed.
            saved = load_model(str(resume_from), models, dtype=torch.float32, attn_implementation=attn)
            model.load_state_dict(saved.state_dict(), strict=True)
            del saved
    return model, matrices, lora_targets


@dataclass
class _Resume:
    """Where a stage resumes: the checkpoint state record and the checkpoint to load (None = start)."""

    state: dict[str, Any]
    checkpoint: Path | None
    step: int


def _find_resume(
    settings: StageSettings, record: dict[str, Any], checkpoint_dir: Path, metrics_path: Path, main: bool
) -> _Resume:
    """Refuse checkpoints of other settings, drop cut-off ones, find the checkpoint to resume from."""
    good = valid_checkpoints(checkpoint_dir, need_rows=settings.trainable == "lora")
    state = check_resume(checkpoint_dir, record, bool(good))
    if state.pop("discarded_checkpoints", False):
        good = []
    if main:
        for d in partial_checkpoints(checkpoint_dir, good):
            log.warning("ignoring the partially written checkpoint %s (removed)", d)
            shutil.rmtree(d, ignore_errors=True)
        if not good:
            metrics_path.unlink(missing_ok=True)
        else:
            truncate_metrics(metrics_path, good[-1][0])
    return _Resume(state, good[-1][1] if good else None, good[-1][0] if good else 0)


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
    plan = _plan_stage(
        settings, cfg, model_dir, train_shards, metrics_dir, checkpoint_dir, heldout_texts, models, world_size, main
    )
    collator = _distill_collator(settings, cfg, plan, teacher)

    # ---- the model (and the teacher beside it)
    model, matrices, lora_targets = _prepare_model(model_dir, settings, cfg, models, plan.attn, plan.resume.checkpoint)
    distiller = (
        _distiller(model, settings, cfg, plan, teacher, models)
        if teacher is not None and collator is not None
        else None
    )
    mask = RowMask(matrices, frozen_rows) if frozen_rows is not None else None
    row_plan = (
        RowPlan(matrices, settings.lr_embeddings, mask is not None)
        if mask is not None or settings.lr_embeddings is not None
        else None
    )
    save_dtype = _checkpoint_dtype(model_dir)
    trainee = _Trainee(
        matrix_names=["embeddings" if i == 0 else "head" for i in range(len(matrices))],
        n_trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
        n_total=sum(p.numel() for p in model.parameters()),
        lora_targets=lora_targets,
    )
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
        _warn_signal(settings, collator, distiller)

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
        summary.setdefault("distill", {})
        summary["distill"]["segments_unaligned"] = collator.unaligned_total
        summary["distill"]["batches_without_signal"] = distiller.batches_without_signal
        log.info(
            "%s: %.1f%% of target positions had a teacher signal (%.1f%% at a shared boundary, %.1f%% with a KL pair)",
            settings.name,
            100 * summary["distill"].get("signal_fraction", 0.0),
            100 * summary["distill"].get("boundaries_fraction", 0.0),
            100 * summary["distill"].get("kl_fraction", 0.0),
        )
    return summary


def _distill_collator(
    settings: StageSettings, cfg: VocabAdaptationConfig, plan: _Plan, teacher: TeacherSource | None
) -> DistillCollator | None:
    """The collator that adds the teacher's side, built (and its tokenizers checked) before weights load.

    Raises:
        InputError: a distillation objective without a teacher; a tokenizer family that cannot be aligned by bytes.
    """
    if not settings.distills:
        return None
    if teacher is None:
        raise InputError(
            f"vocab_adaptation.objective_{settings.name} is {settings.objective} but no teacher was given; "
            f"set models.source_model (the teacher is the source model) or use objective ce"
        )
    max_source = int(cfg.max_seq_length * 4)  # a worse source tokenization needs more tokens for the same bytes
    with contextlib.suppress(OSError, ValueError):
        src_cfg = read_json(teacher.model_dir / "config.json")
        max_source = int(src_cfg.get("max_position_embeddings") or src_cfg.get("n_positions") or max_source)
    return DistillCollator(
        plan.tokenizer,
        teacher.tokenizer,
        plan.packed.eos_id,
        max_source,
        with_labels=settings.objective == "distill+ce",
    )


def _distiller(
    model: Any,
    settings: StageSettings,
    cfg: VocabAdaptationConfig,
    plan: _Plan,
    teacher: TeacherSource,
    models: ModelsConfig,
) -> Distiller:
    """Load the teacher (the source model) and check it matches the run's source tokenizer.

    Raises:
        InputError: the source model cannot be loaded, or its vocabulary is smaller than the source tokenizer's.
        StageError: stage 1 shares the body, but model/init's body is not the source model's.
    """
    from ..model.hub import load_model

    shared_body = settings.trainable == "embeddings"
    # A separate teacher runs in bf16 where training does (half the memory, as the audit counts it); a shared
    # body is the student's fp32 one, and the source rows kept beside it stay fp32.
    dtype = torch.bfloat16 if plan.bf16 and not shared_body else torch.float32
    source = load_model(str(teacher.model_dir), models, dtype=dtype, attn_implementation=plan.attn)
    rows = source.get_input_embeddings().weight.shape[0]
    if rows < len(teacher.tokenizer):
        raise InputError(
            f"the teacher {teacher.model_dir} has {rows} embedding rows but the run's source tokenizer has "
            f"{len(teacher.tokenizer)} tokens: models.source_tokenizer is not this model's tokenizer, so the "
            f"teacher would read ids it never learned; use the model's own tokenizer or objective ce"
        )
    shared = build_teacher(model, source, shared_body=shared_body)
    if shared_body:
        del source  # only its embedding and head rows are kept; the body is the student's
    d = cfg.distill
    shared_t, shared_s = (
        shared_vocabulary(plan.tokenizer, teacher.tokenizer, rows)
        if d.kl_weight
        else (torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64))
    )
    log.info(
        "%s: distilling from %s (%s), losses %s, KL vocabulary %d tokens",
        settings.name,
        teacher.model_dir,
        "shared frozen body" if shared_body else "separate frozen copy",
        {k: getattr(d, w) for k, (_, w) in LOSSES.items()},
        shared_t.numel(),
    )
    return Distiller(shared, d, settings.objective == "distill+ce", shared_t, shared_s)


def _warn_signal(settings: StageSettings, collator: DistillCollator, distiller: Distiller) -> None:
    """One counted warning for text the teacher could not be aligned with (no shared boundary, other bytes)."""
    if distiller.batches_without_signal or collator.unaligned_total:
        log.warning(
            "%s: %d micro-batches had no position with a teacher signal and %d document segments could not be "
            "aligned by bytes (the source tokenizer spells other bytes: a normaliser, or a cut character); "
            "those positions trained without the teacher",
            settings.name,
            distiller.batches_without_signal,
            collator.unaligned_total,
        )


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
class _Plan:
    """A stage as checked before any weights load: precision, attention, data, held-out scorer, resume point."""

    world_size: int
    per_step: int  # sequences per optimiser step, all processes together
    bf16: bool
    attn: str
    tokenizer: Any
    packed: PackedSequences
    order: SequenceOrder
    count: int  # sequences the stage trains on
    eval_fn: Callable[[Any], float] | None
    heldout_bytes: int
    metrics_path: Path
    resume: _Resume


def _plan_stage(
    settings: StageSettings,
    cfg: VocabAdaptationConfig,
    model_dir: Path,
    train_shards: Path,
    metrics_dir: Path,
    checkpoint_dir: Path,
    heldout_texts: Sequence[str] | None,
    models: ModelsConfig,
    world_size: int,
    main: bool,
) -> _Plan:
    """The stage's _Plan: everything train_stage checks and reads before it loads the model's weights.

    Raises:
        StageError: flash-attn missing, resume refused. InputError: no model directory, no shards, bad tokenizer.
    """
    from ..model.hub import load_tokenizer

    per_step = cfg.batch_size * cfg.gradient_accumulation * world_size
    bf16 = _resolve_bf16(cfg.bf16)
    attn = _attn_implementation(cfg.use_flash_attn)
    if not (model_dir / "config.json").is_file():
        raise InputError(f"{model_dir} is not a model directory (no config.json); run the previous stage first")
    tokenizer = load_tokenizer(str(model_dir), models)
    packed = PackedSequences(_reader(train_shards), cfg.max_seq_length, tokenizer.eos_token_id)
    order = SequenceOrder(len(packed), cfg.seed, cfg.shuffle)
    eval_fn, heldout_bytes = None, 0
    if heldout_texts is not None:
        sample = heldout_sample(heldout_texts, cfg.eval_max_bytes)
        heldout_bytes = sum(len(t.encode("utf-8")) for t in sample)
        eval_fn = heldout_scorer(tokenizer, sample, cfg.max_seq_length, cfg.batch_size, bf16)
    metrics_path = metrics_dir / METRICS_FILE
    record = settings_record(settings, cfg, world_size, bf16, model_dir, train_shards)
    resume = _find_resume(settings, record, checkpoint_dir, metrics_path, main)
    return _Plan(
        world_size=world_size,
        per_step=per_step,
        bf16=bf16,
        attn=attn,
        tokenizer=tokenizer,
        packed=packed,
        order=order,
        count=settings.steps * per_step,
        eval_fn=eval_fn,
        heldout_bytes=heldout_bytes,
        metrics_path=metrics_path,
        resume=resume,
    )


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


def _fit_stage(
    model: Any,
    settings: StageSettings,
    cfg: VocabAdaptationConfig,
    plan: _Plan,
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
    plan: _Plan,
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


def _reader(path: Path) -> ShardReader:
    if not path.is_dir():
        raise InputError(f"{path} does not exist; run the tokenize stage first")
    return ShardReader(path)


def _checkpoint_dtype(model_dir: Path) -> torch.dtype:
    """The dtype the input checkpoint was stored in (so the output keeps it); float32 when unknown."""
    with contextlib.suppress(OSError, ValueError):
        cfg = read_json(model_dir / "config.json")
        name = cfg.get("dtype") or cfg.get("torch_dtype")
        if isinstance(name, str) and hasattr(torch, name) and isinstance(getattr(torch, name), torch.dtype):
            return getattr(torch, name)
    return torch.float32
