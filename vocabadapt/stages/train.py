"""Stages stage1 and stage2: one function, two stage settings (vocabadapt.training).

Stage 1 trains the input embeddings and the output head of model/init; stage 2 trains the whole model
of model/stage1 (or LoRA adapters plus embeddings and head, merged back). With
vocab_adaptation.num_processes > 1 the stage launches itself as that many processes
(`python -m vocabadapt.stages.train RUN_DIR STAGE`, under accelerate launch or torchrun).

With `embedding_warmup.enabled` (and vocab_adaptation.enabled false) stage 1 is that warm-up: the same
function with the warm-up's steps, lr, batch, sequence length, seed and precision; stage 2 is skipped.

Reads:   model/init (stage1) or model/stage1 (stage2), tokens/target/train/, corpus/heldout.jsonl,
         align/mapping.json (stage 1's embedding health; train_rows: new's copied rows),
         train/stage1/summary.json (stage 2's start); with a distillation objective models.source_model
         and tokenizers/source/ (the teacher)
Writes:  model/<stage>/, train/<stage>/{metrics.jsonl,summary.json}, checkpoints/<stage>/ (resume state)
Changed by: vocabadapt.training.settings.OUTPUT_KEYS[stage] (stage 1: also embedding_warmup)
"""

from __future__ import annotations

import contextlib
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import StageError
from ..io import read_json, write_json
from ..run.context import StageContext, StageSpec
from ..run.layout import RunLayout
from ..training.settings import OUTPUT_KEYS, TRAIN_STAGES

log = logging.getLogger(__name__)


def _row_groups(layout: RunLayout) -> dict[str, Any] | None:
    """Stage 1's embedding-health groups: target ids whose rows were copied vs built (from the mapping)."""
    import numpy as np

    if not layout.mapping.exists():
        return None
    methods = np.asarray(layout.token_mapping().methods)
    copied = np.isin(methods, ["identical", "special"])
    return {"copied": np.flatnonzero(copied), "built": np.flatnonzero(~copied)}


def _copied_rows(layout: RunLayout) -> Any:
    """train_rows: new: the target ids whose rows the transplant copied from the source (identical, special).

    Raises:
        StageError: no mapping to tell copied rows from built ones.
    """
    groups = _row_groups(layout)
    if groups is None:
        raise StageError(
            f"vocab_adaptation.train_rows: new needs {layout.mapping} to know which rows were copied; "
            "run the align stage first, or set train_rows: all"
        )
    return groups["copied"]


def _teacher(ctx: StageContext) -> Any:
    """The distillation teacher: the source model (a .gguf: its HF copy) and the run's source tokenizer."""
    from ..model.hub import resolve_model_dir
    from ..training.distill import TeacherSource

    cfg = ctx.config
    if not cfg.models.source_model:
        raise StageError("a distillation objective needs models.source_model (the teacher); set it or use ce")
    model_dir = resolve_model_dir(cfg.models.source_model, cfg.tokenization.cache_dir, ctx.download_retry)
    return TeacherSource(model_dir=model_dir, tokenizer=ctx.layout.tokenizer("source"))


def _stage1_consumed(layout: RunLayout) -> int:
    """Where stage 1 stopped in the data order (stage 2 starts there with train_start_idx_stage2: auto)."""
    summary = layout.train_summary("stage1")
    if summary is None:
        raise StageError(
            "stage 2 needs stage 1's summary to place its data (train_start_idx_stage2: auto); "
            "run stage1 first, or set vocab_adaptation.train_start_idx_stage2 to a number"
        )
    return int(summary["sequences"]["stop"])


def _check_stage2_lora(ctx: StageContext) -> None:
    """Stage 2's LoRA targets, checked against model/init (built on the meta device) before stage 1 runs,
    so a misspelt module name fails now rather than after stage 1's hours. Stage 2 checks again on the
    loaded model."""
    va = ctx.config.stage_training("stage2")
    if not (va.enabled and va.stage2_steps and va.stage2_use_lora):
        return
    from transformers import AutoConfig

    from ..model.keys import lora_targets, meta_model

    trust = ctx.config.models.trust_remote_code
    config = AutoConfig.from_pretrained(str(ctx.layout.model_dir("init")), trust_remote_code=trust)
    lora_targets(meta_model(config, trust), va.lora_target_modules)


def _launch(ctx: StageContext) -> dict[str, Any]:
    """Run this stage in num_processes processes; rank 0 writes the summary back."""
    from ..training.launch import launch

    result = ctx.layout.launch_result(ctx.stage)
    result.unlink(missing_ok=True)
    launch(ctx.config.vocab_adaptation, ["-m", __name__, str(ctx.layout.root), ctx.stage], ctx.stage)
    if not result.exists():
        raise StageError(f"{ctx.stage}: the training processes finished without writing {result}")
    return read_json(result)


def run(ctx: StageContext) -> dict[str, Any]:
    """Train stage `ctx.stage` ("stage1" or "stage2") into model/<stage>; return its summary."""
    from ..training.settings import stage_settings
    from ..training.trainer import train_stage
    from ..training.world import is_main, world

    # With embedding_warmup enabled, stage 1 is the warm-up: vocab_adaptation with the warm-up's settings.
    cfg, layout, name = ctx.config.stage_training(ctx.stage), ctx.layout, ctx.stage
    if cfg.num_processes > 1 and world()[1] == 1:
        return _launch(ctx)
    if name == "stage1":
        _check_stage2_lora(ctx)
        src, start = layout.model_dir("init"), 0
    else:
        src = layout.model_dir("stage1")
        start = _stage1_consumed(layout) if cfg.train_start_idx_stage2 == "auto" else int(cfg.train_start_idx_stage2)
    settings = stage_settings(cfg, name, start)
    if not cfg.enabled:
        settings = replace(settings, steps=0)
    heldout = None
    if settings.steps:
        heldout = layout.heldout_texts() if layout.corpus("heldout").exists() else None
        if heldout is None:
            log.warning(
                "%s not found: held-out bits per byte are not measured during training", layout.corpus("heldout")
            )
    with contextlib.ExitStack() as stack:
        bar = (
            stack.enter_context(ctx.progress(total=settings.steps, unit="step"))
            if settings.steps and is_main()
            else None
        )
        summary = train_stage(
            settings,
            cfg,
            src,
            layout.token_shards("target", "train"),
            layout.model_dir(name),
            layout.train_dir(name),
            layout.checkpoints(name),
            heldout_texts=heldout,
            models=ctx.config.models,
            row_groups=_row_groups(layout) if name == "stage1" else None,
            progress=bar,
            teacher=_teacher(ctx) if settings.steps and settings.distills else None,
            frozen_rows=_copied_rows(layout) if settings.steps and cfg.train_rows == "new" else None,
        )
    if name == "stage1" and ctx.config.embedding_warmup.enabled:
        summary["embedding_warmup"] = True
    if is_main():
        write_json(layout.train_summary_file(name), summary)
    return summary


def _spec(name: str, source: str, description: str) -> StageSpec:
    return StageSpec(
        name=name,
        run=run,
        config_keys=OUTPUT_KEYS[name],
        inputs=("tokenize", source),
        outputs=lambda layout: (layout.model_dir(name), layout.train_dir(name)),
        description=description,
        resume_state=lambda layout: (layout.checkpoints(name),),
    )


STAGE1 = _spec(TRAIN_STAGES[0], "transplant", "train input embeddings and output head")
STAGE2 = _spec(TRAIN_STAGES[1], TRAIN_STAGES[0], "train the whole model or LoRA")


def main(argv: list[str]) -> int:
    """Worker entry of a multi-process training stage: `python -m vocabadapt.stages.train RUN_DIR STAGE`.

    Started by the stage itself under accelerate launch or torchrun (one process per GPU); never run
    by hand. Each process rebuilds the context from the run directory; rank 0 writes the summary.
    """
    from ..config import load_config
    from ..training.world import is_main

    layout = RunLayout(Path(argv[0]))
    ctx = StageContext(layout=layout, config=load_config(layout.config_yaml), stage=argv[1])
    summary = run(ctx)
    if is_main():
        write_json(layout.launch_result(ctx.stage), summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
