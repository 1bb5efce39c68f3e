"""A training stage as checked before any weights load: precision, attention, data, held-out scorer, resume point.

`plan_stage` does everything train_stage can check and read cheaply, so a bad directory, a missing
flash-attn or a refused resume fails before the model loads.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..config import ModelsConfig, VocabAdaptationConfig
from ..errors import InputError
from ..text.shards import ShardReader
from .callbacks import heldout_sample, heldout_scorer
from .checkpoints import check_resume, partial_checkpoints, truncate_metrics, valid_checkpoints
from .model_setup import attn_implementation, resolve_bf16
from .packing import PackedSequences, SequenceOrder
from .settings import METRICS_FILE, StageSettings, settings_record

log = logging.getLogger(__name__)


@dataclass
class Resume:
    """Where a stage resumes: the checkpoint state record and the checkpoint to load (None = start)."""

    state: dict[str, Any]
    checkpoint: Path | None
    step: int


def find_resume(
    settings: StageSettings, record: dict[str, Any], checkpoint_dir: Path, metrics_path: Path, main: bool
) -> Resume:
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
    return Resume(state, good[-1][1] if good else None, good[-1][0] if good else 0)


@dataclass
class StagePlan:
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
    resume: Resume


def plan_stage(
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
) -> StagePlan:
    """The stage's StagePlan: everything train_stage checks and reads before it loads the model's weights.

    Raises:
        StageError: flash-attn missing, resume refused. InputError: no model directory, no shards, bad tokenizer.
    """
    from ..model.hub import load_tokenizer

    per_step = cfg.batch_size * cfg.gradient_accumulation * world_size
    bf16 = resolve_bf16(cfg.bf16)
    attn = attn_implementation(cfg.use_flash_attn)
    if not (model_dir / "config.json").is_file():
        raise InputError(f"{model_dir} is not a model directory (no config.json); run the previous stage first")
    tokenizer = load_tokenizer(str(model_dir), models)
    packed = PackedSequences(_shard_reader(train_shards), cfg.max_seq_length, tokenizer.eos_token_id)
    order = SequenceOrder(len(packed), cfg.seed, cfg.shuffle)
    eval_fn, heldout_bytes = None, 0
    if heldout_texts is not None:
        sample = heldout_sample(heldout_texts, cfg.eval_max_bytes)
        heldout_bytes = sum(len(t.encode("utf-8")) for t in sample)
        eval_fn = heldout_scorer(tokenizer, sample, cfg.max_seq_length, cfg.batch_size, bf16)
    metrics_path = metrics_dir / METRICS_FILE
    record = settings_record(settings, cfg, world_size, bf16, model_dir, train_shards)
    resume = find_resume(settings, record, checkpoint_dir, metrics_path, main)
    return StagePlan(
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


def _shard_reader(path: Path) -> ShardReader:
    if not path.is_dir():
        raise InputError(f"{path} does not exist; run the tokenize stage first")
    return ShardReader(path)
