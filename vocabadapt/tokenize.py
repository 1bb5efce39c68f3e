"""The tokenize stage: both tokenizers over the training and held-out text, into uint32 id shards.

Documents are tokenized without special tokens (training packs documents with eos itself). Fast
(Rust) tokenizers go through the backend's `encode_batch`, which is already parallel; slow Python
tokenizers (BioGPT's Moses + BPE) run in `tokenization.workers` processes, batches kept in order, so
the shards are identical whatever the number of workers.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any, Iterator

from .corpus import iter_corpus
from .errors import InputError, StageError
from .io import atomic_dir, write_json
from .shards import ShardWriter
from .tokenizer_prep import load_run_tokenizer, prepare_tokenizers

log = logging.getLogger(__name__)

SIDES = ("source", "target")
SPLITS = ("train", "heldout")


def _batches(path: Path, size: int) -> Iterator[list[str]]:
    it = (rec["text"] for rec in iter_corpus(path))
    while batch := list(islice(it, size)):
        yield batch


def backend_of(tokenizer: Any) -> Any | None:
    """The Rust `tokenizers.Tokenizer` behind a fast tokenizer, or None for a slow one."""
    if not getattr(tokenizer, "is_fast", False):
        return None
    return getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)


def encode_texts(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Ids of each text, without special tokens (one list per text)."""
    backend = backend_of(tokenizer)
    if backend is not None:
        return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
    return [tokenizer.encode(t, add_special_tokens=False) for t in texts]


# Worker-process state for slow tokenizers: each worker loads the run's tokenizer once.
_WORKER_TOKENIZER: Any = None


def _init_worker(run_dir: str, side: str) -> None:
    global _WORKER_TOKENIZER
    _WORKER_TOKENIZER = load_run_tokenizer(Path(run_dir), side)


def _encode_in_worker(texts: list[str]) -> list[list[int]]:
    return encode_texts(_WORKER_TOKENIZER, texts)


def _tokenize_split(ctx: Any, tokenizer: Any, side: str, split: str, out_dir: Path, workers: int) -> dict[str, Any]:
    cfg = ctx.config.tokenization
    src = ctx.path("corpus", f"{split}.jsonl")
    writer = ShardWriter(out_dir, shard_tokens=cfg.shard_tokens)
    batches = _batches(src, cfg.batch_size)

    def write(texts: list[str], ids: list[list[int]]) -> None:
        for t, doc in zip(texts, ids):
            writer.add(doc, n_bytes=len(t.encode("utf-8")))

    if backend_of(tokenizer) is not None or workers <= 1:
        for texts in batches:
            write(texts, encode_texts(tokenizer, texts))
    else:
        with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(str(ctx.run_dir), side)) as pool:
            # Keep at most 2×workers batches in flight; results come back in submission order.
            pending: list[tuple[list[str], Any]] = []
            for texts in batches:
                pending.append((texts, pool.submit(_encode_in_worker, texts)))
                if len(pending) >= 2 * workers:
                    t, fut = pending.pop(0)
                    write(t, fut.result())
            for t, fut in pending:
                write(t, fut.result())
    return writer.close(vocab_size=len(tokenizer), side=side, split=split)


def run_stage(ctx: Any) -> dict[str, Any]:
    """Prepare both tokenizers, tokenize corpus/{train,heldout}.jsonl into tokens/{side}/{split}/."""
    for split in SPLITS:
        if not ctx.path("corpus", f"{split}.jsonl").exists():
            raise InputError(f"corpus/{split}.jsonl is missing in {ctx.run_dir}; run the corpus stage first")
    prep = prepare_tokenizers(ctx)
    workers = ctx.config.tokenization.workers or os.cpu_count() or 1
    stats: dict[str, Any] = {"tokenizers": prep}
    with atomic_dir(ctx.path("tokens")) as tmp:
        for side in SIDES:
            tok = load_run_tokenizer(ctx.run_dir, side)
            side_stats: dict[str, Any] = {"vocab_size": len(tok), "fast": backend_of(tok) is not None}
            for split in SPLITS:
                info = _tokenize_split(ctx, tok, side, split, tmp / side / split, workers)
                side_stats[f"{split}_tokens"] = info["tokens"]
                side_stats[f"{split}_documents"] = info["documents"]
                side_stats[f"{split}_bytes"] = info["bytes"]
                side_stats[f"{split}_bytes_per_token"] = round(info["bytes"] / info["tokens"], 4) if info["tokens"] else None
            if side_stats["train_tokens"] == 0:
                raise StageError(f"the {side} tokenizer produced no tokens from corpus/train.jsonl; is the text empty?")
            stats[side] = side_stats
            log.info("tokenize %s: %d train tokens, %.3f bytes/token", side, side_stats["train_tokens"],
                     side_stats["train_bytes_per_token"])
        write_json(tmp / "stats.json", stats)
    return stats
