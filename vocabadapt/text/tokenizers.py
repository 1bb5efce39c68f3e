"""Tokenizers: encode texts (fast or slow), tokenize a text stream into id shards, train a tokenizer.

Documents are tokenized without special tokens (training packs documents with eos itself). Fast
(Rust) tokenizers go through the backend's `encode_batch`, which is already parallel; slow Python
tokenizers (BioGPT's Moses + BPE) run in `workers` processes, batches kept in order, so the shards are
identical whatever the number of workers.

Training a target tokenizer (`models.target_tokenizer: {train: ...}`) is how a user gets a domain
tokenizer like BioGPT's from their own text: a byte-level BPE (as GPT-2 / Llama-3) or a Unigram model
(as SentencePiece), trained with the `tokenizers` library on training text only, streamed in batches.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..config import ModelsConfig, TokenizerTrainSpec
from ..errors import InputError
from ..io import atomic_dir
from .shards import ShardWriter

log = logging.getLogger(__name__)


def source_tokenizer_name(models: ModelsConfig) -> str:
    """The source tokenizer's path or id: models.source_tokenizer, else the source model's own.

    Raises:
        InputError: neither is set.
    """
    name = models.source_tokenizer or models.source_model
    if not name:
        raise InputError("models.source_tokenizer (or models.source_model) must be set")
    return name


def batches(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    """Lists of up to `size` texts, in order."""
    it = iter(texts)
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


def save_tokenizer(tokenizer: Any, directory: Path) -> None:
    """Save a tokenizer into `directory`, replacing it atomically."""
    with atomic_dir(directory) as tmp:
        tokenizer.save_pretrained(str(tmp))


# Worker-process state for slow tokenizers: each worker loads the saved tokenizer once.
_WORKER_TOKENIZER: Any = None


def _init_worker(tokenizer_dir: str) -> None:
    from transformers import AutoTokenizer

    global _WORKER_TOKENIZER
    _WORKER_TOKENIZER = AutoTokenizer.from_pretrained(tokenizer_dir)


def _encode_in_worker(texts: list[str]) -> list[list[int]]:
    return encode_texts(_WORKER_TOKENIZER, texts)


def tokenize_to_shards(
    texts: Iterable[str],
    tokenizer: Any,
    out_dir: Path,
    *,
    batch_size: int,
    shard_tokens: int,
    workers: int,
    tokenizer_dir: Path,
    **meta: Any,
) -> dict[str, Any]:
    """Tokenize documents into a shard directory (vocabadapt.text.shards).

    Args:
        texts: the documents, in order.
        tokenizer: a transformers tokenizer.
        out_dir: the shard directory to write.
        batch_size: documents per tokenizer batch.
        shard_tokens: token ids per shard file.
        workers: processes for a slow tokenizer (a fast one is parallel by itself).
        tokenizer_dir: where `tokenizer` is saved (worker processes load it from there).
        meta: extra fields for meta.json.
    Returns:
        the shard directory's meta ({"tokens", "documents", "bytes", "shards", ...}).
    """
    writer = ShardWriter(out_dir, shard_tokens=shard_tokens)

    def write(texts: list[str], ids: list[list[int]]) -> None:
        for t, doc in zip(texts, ids):
            writer.add(doc, n_bytes=len(t.encode("utf-8")))

    if backend_of(tokenizer) is not None or workers <= 1:
        for chunk in batches(texts, batch_size):
            write(chunk, encode_texts(tokenizer, chunk))
    else:
        with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(str(tokenizer_dir),)) as pool:
            # Keep at most 2×workers batches in flight; results come back in submission order.
            pending: list[tuple[list[str], Future]] = []
            for chunk in batches(texts, batch_size):
                pending.append((chunk, pool.submit(_encode_in_worker, chunk)))
                if len(pending) >= 2 * workers:
                    t, fut = pending.pop(0)
                    write(t, fut.result())
            for t, fut in pending:
                write(t, fut.result())
    return writer.close(vocab_size=len(tokenizer), **meta)


def train_tokenizer(texts: Iterable[list[str]], spec: TokenizerTrainSpec) -> Any:
    """Train a PreTrainedTokenizerFast from an iterator of text batches.

    Args:
        texts: iterable of lists of strings.
        spec: type, vocab_size, min_frequency, special_tokens.
    Returns:
        The tokenizer; the first special token is bos/eos/unk, the second (if any) pad.
    Raises:
        InputError: no special token.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = list(spec.special_tokens)
    if not special:
        raise InputError("models.target_tokenizer.train.special_tokens must list at least one token (the eos)")
    trainer: Any
    if spec.type == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=spec.vocab_size,
            min_frequency=spec.min_frequency,
            special_tokens=special,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    else:
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(
            vocab_size=spec.vocab_size, special_tokens=special, unk_token=special[0], show_progress=False
        )
    tok.train_from_iterator(texts, trainer)
    pad = special[1] if len(special) > 1 else special[0]
    out = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=special[0], eos_token=special[0], unk_token=special[0], pad_token=pad
    )
    log.info("trained a %s tokenizer with %d tokens", spec.type, len(out))
    return out
