"""Stage tokenize: prepare both tokenizers (load or train, add mined terms), tokenize both splits into shards.

Every later stage loads the tokenizers saved here, never the ones named in the config, so a run is
self-contained and a changed tokenizer shows up as a changed fingerprint.

Reads:   corpus/{train,heldout}.jsonl; models.source_tokenizer (or source_model), models.target_tokenizer
Target:  a file or id; {train: ...} (a new BPE/Unigram on corpus/train); {extend: ...} (the source tokenizer
         plus merges learned on corpus/train over its own tokens: vocabadapt.text.extend)
Writes:  tokenizers/{source,target}/ (a target naming no EOS token gets its end-of-text token: ensure_eos), terms/terms.txt, tokens/{source,target}/{train,heldout}/, tokens/stats.json
Keeps:   partial/tokenize/ while it runs: finished shards, so a killed run resumes after the last one
Changed by: models.*tokenizer / source_model, term_mining, tokenization.batch_size, tokenization.shard_tokens
(tokenization.workers: processes for slow tokenizers and for term mining; does not change the output)
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import InputError, StageError
from ..io import read_json_or_none, replace_dir, write_json
from ..run.context import StageContext, StageSpec
from ..run.layout import SIDES, SPLITS

log = logging.getLogger(__name__)


def prepare_tokenizers(ctx: StageContext) -> dict[str, Any]:
    """Load (or train) both tokenizers, mine terms, save both into the run; return a summary.

    Raises:
        InputError: a tokenizer is missing, does not load, or the target tokenizer is not set.
    """
    from ..model.gguf import gguf_record
    from ..model.hub import load_tokenizer
    from ..text.extend import learn_extension
    from ..text.terms import add_terms, mine_terms
    from ..text.tokenizers import (
        available_cpus,
        batches,
        ensure_eos,
        save_tokenizer,
        source_tokenizer_name,
        train_tokenizer,
    )

    cfg, layout = ctx.config, ctx.layout
    cache = cfg.tokenization.cache_dir
    src = load_tokenizer(source_tokenizer_name(cfg.models), cfg.models, cache, ctx.download_retry)
    spec = cfg.models.target_tokenizer
    if spec is None:
        raise InputError("models.target_tokenizer must be set: a tokenizer path/id, or {train: {...}}")
    eos_inferred = None
    extension = None
    if isinstance(spec, str):
        tgt = load_tokenizer(spec, cfg.models, cache, ctx.download_retry)
        if eos_inferred := ensure_eos(tgt, src):
            log.info(
                "tokenizers: %s names no EOS token; using %r (in its vocabulary; saved with the run's copy)",
                spec,
                eos_inferred,
            )
    elif spec.extend is not None:  # the source plus merges learned on the training split only
        extension = learn_extension(
            src,
            layout.corpus_texts("train"),
            spec.extend.new_tokens,
            min_frequency=spec.extend.min_frequency,
            name=source_tokenizer_name(cfg.models),
            batch_size=cfg.tokenization.batch_size,
        )
        tgt = extension.tokenizer
    else:  # trained on the training split only, never the held-out text
        assert spec.train is not None  # the schema allows exactly one of train / extend
        tgt = train_tokenizer(batches(layout.corpus_texts("train"), 1000), spec.train)
    terms_added = 0
    if cfg.term_mining.enabled:
        terms = mine_terms(
            layout.corpus_texts("train"),
            cfg.term_mining,
            layout.terms,
            workers=cfg.tokenization.workers or available_cpus(),
        )
        if cfg.term_mining.add_to_target:
            terms_added = add_terms(tgt, terms)
    for side, tok in (("source", src), ("target", tgt)):
        save_tokenizer(tok, layout.tokenizer_dir(side))
    log.info(
        "tokenizers: source %d tokens, target %d tokens%s",
        len(src),
        len(tgt),
        f" (+{terms_added} mined terms)" if terms_added else "",
    )
    summary: dict[str, Any] = {
        "source_vocab": len(src),
        "target_vocab": len(tgt),
        "target_trained": not isinstance(spec, str),
        "terms_added": terms_added,
    }
    if extension is not None:
        summary["target_extension"] = extension.summary()
    if eos_inferred:
        summary["target_eos_inferred"] = eos_inferred
    if record := gguf_record(source_tokenizer_name(cfg.models)):
        summary["source_gguf"] = record  # the manifest keeps the GGUF file's sha256
    return summary


def run(ctx: StageContext) -> dict[str, Any]:
    """Prepare both tokenizers, tokenize corpus/{train,heldout}.jsonl into tokens/{side}/{split}/.

    Work goes into partial/tokenize/ first: the prepared tokenizers' summary and every finished shard
    survive a kill, and the rerun (same config, same corpus) resumes after the last finished shard and
    writes the same bytes an uninterrupted run writes. tokens/ is replaced only when all is done.
    """
    from ..run.partial import file_identity, finish_partial, open_partial
    from ..text.tokenizers import available_cpus, backend_of, tokenize_to_shards

    layout, tcfg = ctx.layout, ctx.config.tokenization
    corpus_files = [layout.require(layout.corpus(split), "corpus") for split in SPLITS]
    partial = layout.partial("tokenize")
    key = {"config": ctx.config.section_hash(SPEC.config_keys), "corpus": file_identity(corpus_files)}
    resuming = open_partial(partial, key)
    prepared = read_json_or_none(partial / "tokenizers.json") if resuming else None
    if prepared is not None and all(layout.tokenizer_dir(side).is_dir() for side in SIDES):
        log.info("tokenize: resuming an interrupted run; the tokenizers it prepared are kept")
    else:
        prepared = prepare_tokenizers(ctx)
        write_json(partial / "tokenizers.json", prepared)
    stats: dict[str, Any] = {"tokenizers": prepared}
    workers = tcfg.workers or available_cpus()
    staging = partial / "tokens"
    for side in SIDES:
        tok = layout.tokenizer(side)
        side_stats: dict[str, Any] = {"vocab_size": len(tok), "fast": backend_of(tok) is not None}
        for split in SPLITS:
            info = tokenize_to_shards(
                layout.corpus_texts(split),
                tok,
                layout.staged(layout.token_shards(side, split), layout.tokens_dir, staging),
                batch_size=tcfg.batch_size,
                shard_tokens=tcfg.shard_tokens,
                workers=workers,
                tokenizer_dir=layout.tokenizer_dir(side),
                resume=resuming,
                side=side,
                split=split,
            )
            side_stats[f"{split}_tokens"] = info["tokens"]
            side_stats[f"{split}_documents"] = info["documents"]
            side_stats[f"{split}_bytes"] = info["bytes"]
            side_stats[f"{split}_bytes_per_token"] = (
                round(info["bytes"] / info["tokens"], 4) if info["tokens"] else None
            )
        if side_stats["train_tokens"] == 0:
            raise StageError(f"the {side} tokenizer produced no tokens from corpus/train.jsonl; is the text empty?")
        stats[side] = side_stats
        log.info(
            "tokenize %s: %d train tokens, %.3f bytes/token",
            side,
            side_stats["train_tokens"],
            side_stats["train_bytes_per_token"],
        )
    write_json(layout.staged(layout.tokens_stats, layout.tokens_dir, staging), stats)
    replace_dir(staging, layout.tokens_dir)
    finish_partial(partial)
    return stats


SPEC = StageSpec(
    name="tokenize",
    run=run,
    config_keys=(
        "models.source_model",
        "models.source_tokenizer",
        "models.target_tokenizer",
        "term_mining",
        "tokenization.batch_size",
        "tokenization.shard_tokens",
    ),
    inputs=("corpus",),
    outputs=lambda layout: (layout.tokenizers_dir, layout.terms_dir, layout.tokens_dir),
    resume_state=lambda layout: (layout.partial("tokenize"),),
    description="prepare both tokenizers (train / add terms) and tokenize into id shards",
)
