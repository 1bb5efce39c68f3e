"""Domain term mining: frequent (or TF-IDF-salient) words of the training corpus.

Streams the training texts once, counting each word's occurrences and document frequency (the
held-out split is never read). Writes a terms file (term, count, documents, score) and can add
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
# letter so pure numbers are not terms.
WORD = re.compile(r"[^\W_](?:[\w]|[-'](?=\w))*", re.UNICODE)


@dataclass(frozen=True)
class Term:
    text: str
    count: int
    documents: int
    score: float


def count_words(texts: Iterable[str]) -> tuple[Counter, Counter, int]:
    """(word counts, document frequencies, number of documents) over an iterable of texts."""
    counts: Counter = Counter()
    doc_freq: Counter = Counter()
    n_docs = 0
    for text in texts:
        words = [w for w in WORD.findall(text) if any(c.isalpha() for c in w)]
        counts.update(words)
        doc_freq.update(set(words))
        n_docs += 1
    return counts, doc_freq, n_docs


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


def mine_terms(texts: Iterable[str], cfg: TermMiningConfig, out_path: Path) -> list[Term]:
    """Mine terms from training texts and write them to `out_path` (tab-separated). Returns the ranked terms."""
    counts, doc_freq, n_docs = count_words(texts)
    terms = rank_terms(counts, doc_freq, n_docs, cfg.top_k, cfg.min_frequency, cfg.use_tfidf)
    with atomic_write(out_path) as f:
        f.write(
            f"# {len(terms)} terms from {n_docs} training documents; "
            f"ranked by {'tf-idf' if cfg.use_tfidf else 'count'}, min_frequency {cfg.min_frequency}\n"
        )
        f.write("term\tcount\tdocuments\tscore\n")
        for t in terms:
            f.write(f"{t.text}\t{t.count}\t{t.documents}\t{t.score:.3f}\n")
    log.info("term mining: %d terms kept of %d distinct words", len(terms), len(counts))
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
