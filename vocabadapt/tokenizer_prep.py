"""Prepare the run's two tokenizers: load (or train) them and save copies into the run directory.

Every stage after `tokenize` loads tokenizers from `tokenizers/source/` and `tokenizers/target/` in
the run directory, never from the config, so a run is self-contained and a changed tokenizer shows
up as a changed fingerprint.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .errors import InputError
from .hf import load_tokenizer
from .io import atomic_dir

log = logging.getLogger(__name__)


def source_tokenizer_name(config: Any) -> str:
    name = config.models.source_tokenizer or config.models.source_model
    if not name:
        raise InputError("models.source_tokenizer (or models.source_model) must be set")
    return name


def prepare_tokenizers(ctx: Any) -> dict[str, Any]:
    """Write tokenizers/source and tokenizers/target into the run directory; return a summary.

    Raises:
        InputError: a tokenizer is missing or does not load.
    """
    cfg = ctx.config
    cache = cfg.tokenization.cache_dir
    src = load_tokenizer(source_tokenizer_name(cfg), cfg.models, cache)
    spec = cfg.models.target_tokenizer
    if spec is None:
        raise InputError("models.target_tokenizer must be set: a tokenizer path/id, or {train: {...}}")
    if isinstance(spec, str):
        tgt = load_tokenizer(spec, cfg.models, cache)
        trained = False
    else:
        from .tokenizer_train import train_target_tokenizer

        tgt = train_target_tokenizer(ctx, spec.train, like=src)
        trained = True
    terms_added = 0
    if cfg.term_mining.enabled:
        from .terms import mine_terms

        terms = mine_terms(ctx)
        if cfg.term_mining.add_to_target:
            from .terms import add_terms

            terms_added = add_terms(tgt, terms)
    for side, tok in (("source", src), ("target", tgt)):
        with atomic_dir(ctx.path("tokenizers", side)) as tmp:
            tok.save_pretrained(str(tmp))
    log.info("tokenizers: source %d tokens, target %d tokens%s", len(src), len(tgt),
             f" (+{terms_added} mined terms)" if terms_added else "")
    return {"source_vocab": len(src), "target_vocab": len(tgt), "target_trained": trained,
            "terms_added": terms_added}


def load_run_tokenizer(run_dir: Path, side: str) -> Any:
    """The tokenizer a run saved (side: 'source' or 'target')."""
    from transformers import AutoTokenizer

    path = Path(run_dir) / "tokenizers" / side
    if not path.is_dir():
        raise InputError(f"{path} does not exist; run the tokenize stage first")
    return AutoTokenizer.from_pretrained(str(path))
