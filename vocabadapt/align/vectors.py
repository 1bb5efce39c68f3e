"""Token co-occurrence vectors: one vector per token id of a token-id corpus.

TokAlign learns token vectors from each tokenizer's own segmentation of the same text: fastText
skipgram over the id corpus (each document one line of space-separated ids). Character n-grams are
off by default because n-grams of numeric ids ("123" inside "41237") are noise. With `thread: 1` the
result is bitwise reproducible (fastText's `seed`; Hogwild threads race otherwise).

Per tokenizer the embed stage keeps: vectors float32 (rows, dim), the int64 token id of each row
(ascending) and the int64 corpus frequency of each row's token.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from ..config import FastTextConfig
from ..errors import InputError, StageError
from ..io import atomic_write
from ..text.shards import ShardReader
from ..text.tokenizers import available_cpus

log = logging.getLogger(__name__)


def write_id_corpus(reader: ShardReader, path: Path) -> None:
    """One line per document: its token ids separated by spaces (fastText's input).

    Raises:
        StageError: the disk filled up (vocabadapt.io.atomic_write names the file and what to free).
    """
    with atomic_write(path, "w", encoding="ascii") as f:
        for doc in reader.documents():
            if doc.size:
                f.write(" ".join(map(str, doc.tolist())))
                f.write("\n")


def token_counts(reader: ShardReader, vocab_size: int) -> np.ndarray:
    """Corpus frequency of every id 0..vocab_size-1, shard by shard (int64, (vocab_size,))."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for shard in reader.shards:
        c = np.bincount(np.asarray(shard), minlength=vocab_size)
        if c.size > vocab_size:
            raise InputError(
                f"{reader.dir}: token id {c.size - 1} is outside the vocabulary ({vocab_size}); rerun tokenize"
            )
        counts += c
    return counts


def train_vectors(corpus_file: Path, ft_cfg: FastTextConfig, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train fastText on an id corpus; return (ids int64 ascending, vectors float32 (n, dim))."""
    from fasttext import FastText as ft_api

    # fasttext 0.9.2's train_unsupervised() refuses a `seed` keyword although its C++ Args has one,
    # so build the Args the way train_unsupervised does and set the seed on them.
    args = dict(ft_api.unsupervised_default)
    given = dict(
        input=str(corpus_file),
        model=ft_cfg.model,
        dim=ft_cfg.dim,
        ws=ft_cfg.window,
        epoch=ft_cfg.epochs,
        lr=ft_cfg.lr,
        minCount=ft_cfg.mincount,
        minn=ft_cfg.minn,
        maxn=ft_cfg.maxn,
        neg=ft_cfg.neg,
        thread=ft_cfg.thread or available_cpus(),
        seed=seed,
        verbose=0,
    )
    args.update(given)
    a = ft_api._build_args(args, set(given))
    model = ft_api._FastText(args=a)
    ft_api.fasttext.train(model.f, a)
    model.set_args(model.f.getArgs())
    words = model.get_words()
    ids, rows = [], []
    for w in words:
        if w.isdigit():  # skips fastText's own "</s>" line-end token
            ids.append(int(w))
            rows.append(model.get_word_vector(w))
    if not ids:
        raise StageError(f"fastText learned no token vectors from {corpus_file}; is the corpus empty?")
    ids_arr = np.asarray(ids, dtype=np.int64)
    order = np.argsort(ids_arr, kind="stable")
    return ids_arr[order], np.stack(rows).astype(np.float32)[order]


def shard_vectors(
    reader: ShardReader, ft_cfg: FastTextConfig, scratch: Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """fastText vectors of one tokenizer's shards.

    Returns (vectors float32 (n, dim), ids int64 (n,), corpus counts int64 (n,), ids seen in the corpus).

    The id corpus is written under `scratch` (a temp folder) and removed afterwards.
    """
    vocab_size = int(reader.meta.get("vocab_size") or 0)
    counts_all = token_counts(reader, vocab_size or int(reader.tokens(0, reader.num_tokens).max()) + 1)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        corpus_file = Path(tmp) / "ids.txt"
        write_id_corpus(reader, corpus_file)
        ids, vecs = train_vectors(corpus_file, ft_cfg, seed=ft_cfg.seed)
    return vecs, ids, counts_all[ids], int((counts_all > 0).sum())
