"""Domain term mining: frequent (or TF-IDF-salient) words of the training corpus.

Streams the training texts once, counting each word's occurrences and document frequency (the
held-out split is never read). Memory is bounded whatever the corpus size: when more than
`max_words` distinct words are being counted, the rarer half is dropped (a word seen again later starts
from zero), so a kept word's count is short by at most the sum of the pruning thresholds, which the
terms file states; below the cap (every corpus under about a gigabyte of ordinary text) counts are exact. Writes a terms file (term, count, documents, score) and can add
the terms to the target tokenizer as whole-word tokens; those are target-only tokens whose rows the
align stage builds (FVT from their source-tokenizer pieces), never zero rows.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..config import TermMiningConfig
from ..io import atomic_write

log = logging.getLogger(__name__)

# A word: letters/digits with inner hyphens or apostrophes ("interleukin-6", "Crohn's"); at least one
# letter so pure numbers are not terms. (Written without a per-character lookahead: twice as fast.)
WORD = re.compile(r"[^\W_]\w*(?:[-']\w+)*", re.UNICODE)
HAS_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)
MAX_WORDS = 2_000_000  # distinct words counted at once (about 0.5 GB of Python dicts)


@dataclass(frozen=True)
class Term:
    text: str
    count: int
    documents: int
    score: float


@dataclass
class WordCounts:
    counts: Counter
    doc_freq: Counter
    documents: int
    max_undercount: int = 0  # a kept word's count may be short by at most this (0 = exact)


def _count_batch(texts: list[str]) -> tuple[Counter, Counter, int]:
    """(word counts, document frequencies, documents) of one batch; also the worker-process function."""
    counts: Counter = Counter()
    doc_freq: Counter = Counter()
    for text in texts:
        words = list(filter(HAS_LETTER.search, WORD.findall(text)))
        counts.update(words)
        doc_freq.update(set(words))
    return counts, doc_freq, len(texts)


def count_words(
    texts: Iterable[str], max_words: int = MAX_WORDS, workers: int = 1, batch_size: int = 2000
) -> WordCounts:
    """Word counts and document frequencies over an iterable of texts, in bounded memory.

    Args:
        texts: the documents.
        max_words: when more than this many distinct words are held, the words at or below the median
            count are dropped from both counters; `max_undercount` adds up the thresholds used.
        workers: processes counting batches of `batch_size` documents in parallel (merged in order;
            the counts are the same for any number of workers while the cap is not reached).
    """
    from .tokenizers import batches, in_order

    total = WordCounts(Counter(), Counter(), 0)

    def merge(part: tuple[Counter, Counter, int]) -> None:
        total.counts.update(part[0])
        total.doc_freq.update(part[1])
        total.documents += part[2]
        if len(total.counts) > max_words:
            total.max_undercount += _prune(total.counts, total.doc_freq)

    chunks = batches(texts, batch_size)
    first = next(chunks, None)
    if first is None:
        return total
    if workers <= 1 or len(first) < batch_size:  # one batch: a pool would cost more than it saves
        merge(_count_batch(first))
        for chunk in chunks:
            merge(_count_batch(chunk))
        return total
    from concurrent.futures import ProcessPoolExecutor
    from itertools import chain

    with ProcessPoolExecutor(workers) as pool:  # merged in submission order, 2 x workers batches in flight
        for _, part in in_order(pool, _count_batch, chain([first], chunks), 2 * workers):
            merge(part)
    return total


def _prune(counts: Counter, doc_freq: Counter) -> int:
    """Drop the words at or below the median count; return that count (the threshold)."""
    import numpy as np

    values = np.fromiter(counts.values(), dtype=np.int64, count=len(counts))
    threshold = int(np.partition(values, values.size // 2)[values.size // 2])
    for word in [w for w, c in counts.items() if c <= threshold]:
        del counts[word]
        doc_freq.pop(word, None)
    log.info(
        "term mining: over the distinct-word cap; dropped words seen <= %d times (now %d words)", threshold, len(counts)
    )
    return threshold


def rank_terms(
    counts: Counter,
    doc_freq: Counter,
    n_docs: int,
    top_k: int,
    min_frequency: int,
    use_tfidf: bool,
    min_length: int = 3,
) -> list[Term]:
    """Keep words seen at least `min_frequency` times, ranked by count or by count × idf.

    idf = log((1 + N) / (1 + df)) + 1 (smoothed, as in scikit-learn), so a word in every document
    still scores above zero but far below a word of equal count concentrated in a few documents.
    Ties break alphabetically, so the ranking is deterministic.
    """
    terms = []
    for word, c in counts.items():
        if c < min_frequency or len(word) < min_length:
            continue
        df = doc_freq[word]
        score = c * (math.log((1 + n_docs) / (1 + df)) + 1) if use_tfidf else float(c)
        terms.append(Term(word, c, df, score))
    terms.sort(key=lambda t: (-t.score, t.text))
    return terms[:top_k]


def mine_terms(texts: Iterable[str], cfg: TermMiningConfig, out_path: Path, workers: int = 1) -> list[Term]:
    """Mine terms from training texts and write them to `out_path` (tab-separated), counting in `workers`
    processes. Returns the ranked terms."""
    wc = count_words(texts, workers=workers)
    terms = rank_terms(wc.counts, wc.doc_freq, wc.documents, cfg.top_k, cfg.min_frequency, cfg.use_tfidf)
    exact = "exact counts" if not wc.max_undercount else f"counts short by at most {wc.max_undercount} (memory cap)"
    with atomic_write(out_path) as f:
        f.write(
            f"# {len(terms)} terms from {wc.documents} training documents; "
            f"ranked by {'tf-idf' if cfg.use_tfidf else 'count'}, min_frequency {cfg.min_frequency}; {exact}\n"
        )
        f.write("term\tcount\tdocuments\tscore\n")
        for t in terms:
            f.write(f"{t.text}\t{t.count}\t{t.documents}\t{t.score:.3f}\n")
    log.info("term mining: %d terms kept of %d distinct words", len(terms), len(wc.counts))
    return terms


def add_terms(tokenizer: Any, terms: list[Term]) -> int:
    """Add terms that the tokenizer splits into several pieces as whole-word tokens.

    The token is " term" with its leading space, because in running text a word follows a space and a
    bare "term" would leave the space as a token of its own. (The tokenizers library's `single_word`
    flag never matches a token that starts with a space, so it is off: " term" also matches the start
    of " terms", which stays lossless, the rest becoming its own tokens.)
    Returns the number of tokens added.
    """
    from tokenizers import AddedToken

    new = []
    for t in terms:
        if len(tokenizer.encode(" " + t.text, add_special_tokens=False)) > 1:
            new.append(AddedToken(" " + t.text, single_word=False, normalized=False))
    return tokenizer.add_tokens(new) if new else 0
