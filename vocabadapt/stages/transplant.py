"""Stage transplant: rebuild the source model for the target tokenizer (only embedding and head rows change).

Reads:   models.source_model (a .gguf file: its dequantised copy), tokenizers/{source,target}/, align/mapping.json,
         and for initialisers with a refine step (alignment.init = fvt_prior) the first
         alignment.calibration_bytes of corpus/train.jsonl
Writes:  model/init/ (a plain Hugging Face model directory + the target tokenizer + transplant.json)
Changed by: models.source_model, alignment.init, alignment.norm_match, alignment.seed,
            alignment.calibration_bytes, alignment.calibration_tokens, transplant.*
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import init as initialisers
from ..errors import InputError
from ..run.context import StageContext, StageSpec
from ..text.corpus import texts_within


def run(ctx: StageContext) -> dict[str, Any]:
    """Transplant the source model into model/init; return the transplant summary.

    Raises:
        InputError: no source model, no mapping, or inputs that do not match (see transplant_model).
    """
    from ..model.gguf import gguf_record
    from ..model.hub import resolve_model_dir
    from ..model.transplant import transplant_model

    cfg, layout = ctx.config, ctx.layout
    if not cfg.models.source_model:
        raise InputError("models.source_model must be set to the model to transplant (local directory or HF id)")
    mapping = layout.token_mapping()
    # a .gguf: its HF copy; a hub id: its snapshot
    model_dir = resolve_model_dir(cfg.models.source_model, cfg.tokenization.cache_dir, ctx.download_retry)
    calibration = None
    if initialisers.get(cfg.alignment.init).refine is not None:
        texts = first_bytes(layout.corpus_texts("train"), cfg.alignment.calibration_bytes)
        calibration = initialisers.Calibration(texts=texts, max_tokens=cfg.alignment.calibration_tokens)
    summary = transplant_model(
        model_dir,
        layout.tokenizer("source"),
        layout.tokenizer("target"),
        mapping,
        layout.model_dir("init"),
        init=cfg.alignment.init,
        norm_match=cfg.alignment.norm_match,
        pad_to_multiple_of=cfg.transplant.pad_to_multiple_of,
        dtype=cfg.transplant.dtype,
        seed=cfg.alignment.seed,
        allow_pickle=cfg.models.allow_pickle,
        trust_remote_code=cfg.models.trust_remote_code,
        calibration=calibration,
    )
    if record := gguf_record(cfg.models.source_model):
        summary["source_gguf"] = {**record, "dequantised_to": str(model_dir)}  # the manifest keeps its sha256
    return summary


def first_bytes(texts: Iterable[str], max_bytes: int) -> list[str]:
    """Documents in order until max_bytes (UTF-8) are taken; the last one is cut to fit (streamed)."""
    return texts_within(texts, max_bytes, last="cut")


SPEC = StageSpec(
    name="transplant",
    run=run,
    config_keys=(
        "models.source_model",
        "alignment.init",
        "alignment.norm_match",
        "alignment.seed",
        "alignment.calibration_bytes",
        "alignment.calibration_tokens",
        "transplant",
    ),
    inputs=("corpus", "tokenize", "align"),
    outputs=lambda layout: (layout.model_dir("init"),),
    description="rebuild the source model for the target tokenizer",
)
