"""The config.json and generation_config.json of a transplanted model: the target vocabulary's sizes and ids."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


def special_ids(tok: Any) -> dict[str, int | None]:
    return {k: getattr(tok, k, None) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}


def write_hf_configs(
    config: Any,
    model_dir: Path,
    out: Path,
    target_tokenizer: Any,
    n_tgt: int,
    n_rows: int,
    out_dtype: torch.dtype | None,
) -> dict[str, int | None]:
    """Save config.json and generation_config.json for the target vocabulary into `out`.

    Special-token ids become the target tokenizer's; padding rows n_tgt..n_rows-1 are suppressed in
    generation. Returns the special ids written.
    """
    from transformers import GenerationConfig

    ids = special_ids(target_tokenizer)
    src_ids = {k: getattr(config, k, None) for k in ids}
    text_config = config.get_text_config()
    text_config.vocab_size = n_rows
    for k, v in ids.items():
        setattr(config, k, v)
        if text_config is not config:
            setattr(text_config, k, v)
    if getattr(config, "decoder_start_token_id", None) is not None:
        same_as_pad = config.decoder_start_token_id == src_ids.get("pad_token_id")
        config.decoder_start_token_id = ids["pad_token_id"] if same_as_pad else ids["bos_token_id"]
    if out_dtype is not None:
        config.dtype = out_dtype
    config.save_pretrained(str(out))

    if (model_dir / "generation_config.json").is_file():
        gen = GenerationConfig.from_pretrained(str(model_dir))
    else:
        gen = GenerationConfig.from_model_config(config)
    if gen.suppress_tokens:
        log.warning(
            "dropping the source generation config's suppress_tokens %s: they are source ids", gen.suppress_tokens[:10]
        )
    gen.suppress_tokens = list(range(n_tgt, n_rows)) or None
    for k, v in ids.items():
        setattr(gen, k, v)
    if getattr(gen, "decoder_start_token_id", None) is not None:
        gen.decoder_start_token_id = config.decoder_start_token_id
    gen.save_pretrained(str(out))
    return ids
