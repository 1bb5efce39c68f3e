"""The teacher's side of a distilling stage (objective distill / distill+ce), set up around train_stage.

Before weights load, `distill_collator` checks both tokenizers and builds the collator that adds the source
tokenization of the same bytes (vocabadapt.training.byte_align). Beside the student, `load_distiller` loads
the source model as the frozen teacher (vocabadapt.training.distill) and wraps it for the Trainer's loss
(vocabadapt.training.objective.Distiller). After training, `report_signal` adds the counts of text the
teacher could not be aligned with to the stage summary and logs them.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import torch

from ..config import ModelsConfig, VocabAdaptationConfig
from ..errors import InputError
from ..io import read_json
from .byte_align import DistillCollator
from .distill import LOSSES, TeacherSource, build_teacher, shared_vocabulary
from .objective import Distiller
from .plan import StagePlan
from .settings import StageSettings

log = logging.getLogger(__name__)


def distill_collator(
    settings: StageSettings, cfg: VocabAdaptationConfig, plan: StagePlan, teacher: TeacherSource | None
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


def load_distiller(
    model: Any,
    settings: StageSettings,
    cfg: VocabAdaptationConfig,
    plan: StagePlan,
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


def warn_unaligned(settings: StageSettings, collator: DistillCollator, distiller: Distiller) -> None:
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


def report_signal(
    summary: dict[str, Any], settings: StageSettings, collator: DistillCollator, distiller: Distiller
) -> None:
    """Add the unaligned-segment and no-signal counts to summary["distill"] and log the signal fractions."""
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
