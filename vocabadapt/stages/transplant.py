"""Stage transplant: rebuild the source model for the target tokenizer (only embedding and head rows change).

Reads:   models.source_model (a .gguf file: its dequantised copy), tokenizers/{source,target}/, align/mapping.json
Writes:  model/init/ (a plain Hugging Face model directory + the target tokenizer + transplant.json)
Changed by: models.source_model, alignment.init, alignment.norm_match, alignment.seed, transplant.*
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from ..run.context import StageContext, StageSpec


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
    model_dir = resolve_model_dir(cfg.models.source_model, cfg.tokenization.cache_dir)  # a .gguf: its HF copy
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
    )
    if record := gguf_record(cfg.models.source_model):
        summary["source_gguf"] = {**record, "dequantised_to": str(model_dir)}  # the manifest keeps its sha256
    return summary


SPEC = StageSpec(
    name="transplant",
    run=run,
    config_keys=("models.source_model", "alignment.init", "alignment.norm_match", "alignment.seed", "transplant"),
    inputs=("tokenize", "align"),
    outputs=lambda layout: (layout.model_dir("init"),),
    description="rebuild the source model for the target tokenizer",
)
