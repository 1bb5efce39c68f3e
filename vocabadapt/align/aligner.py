"""The aligner: run the mapping rules (vocabadapt.align.rules) in order and summarise what they did.

`align_vocabularies` takes two tokenizers, their co-occurrence vectors and some held-out text and
returns the mapping with a summary (coverage, pivots, similarity histogram, span test) and the
per-token provenance records; it never sees a run directory. `map_without_vectors` is the mapping when
no vectors were trained (an alignment.init that reads none): special and identical tokens, then the
fallback for every other token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from ..config import AlignmentConfig
from ..text import vocab as V
from .mapping import TokenMapping, tokenizer_checksum
from .rules import (
    Candidates,
    Embeddings,
    MappingEntries,
    apply_fallback,
    apply_similarity_rules,
    check_embeddings,
    search,
    special_and_identical_entries,
)
from .span import precision_at, span_truth

log = logging.getLogger(__name__)

# Held-out text used by the span test; BioGPT's Python tokenizer reads about 0.5 MB/s.
SPAN_TEST_MAX_BYTES = 400_000
HISTOGRAM_BINS = 20


@dataclass
class Alignment:
    """What align_vocabularies returns."""

    mapping: TokenMapping
    summary: dict[str, Any]
    target_tokens: list[str | None]
    source_tokens: list[str | None]
    target_counts: np.ndarray | None  # (target vocab,) corpus frequency of each target id; None without vectors
    warnings: list[str] = field(default_factory=list)

    def provenance(self) -> Iterator[dict[str, Any]]:
        """One record per target id: how its row is built, with token strings (align/provenance.jsonl)."""
        m = self.mapping
        for tid in range(m.target_vocab_size):
            yield {
                "target_id": tid,
                "target_token": self.target_tokens[tid],
                "method": m.methods[tid],
                "source_ids": m.source_ids[tid],
                "source_tokens": [self.source_tokens[s] for s in m.source_ids[tid]],
                "weights": m.weights[tid],
                "similarity": m.similarity[tid],
                "target_count": None if self.target_counts is None else int(self.target_counts[tid]),
            }


def span_report(
    target_tokenizer: Any,
    source_tokenizer: Any,
    heldout: list[str],
    tgt: Embeddings,
    found: Candidates,
    identical: dict[int, int],
    rows: MappingEntries,
    aligned: dict[int, list[int]],
    warnings: list[str],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(span test on held-out text, top-k check of the identical pairs that were not pivots)."""
    have_topk = found.top_src.shape[1] > 0
    row_of = {tid: r for r, tid in enumerate(tgt.ids.tolist())}
    span: dict[str, Any]
    if not heldout:
        warnings.append("the held-out split is empty; the span test was skipped")
        span = {"skipped": "no held-out text"}
    else:
        truth = span_truth(target_tokenizer, source_tokenizer, heldout)
        relrep_all = {tid: found.top_src[r].tolist() for tid, r in row_of.items()} if have_topk else {}
        span = {
            "documents": len(heldout),
            "target_types_with_same_span_source": len(truth),
            "aligned": precision_at(truth, aligned),
            "identical": precision_at(truth, {t: [s] for t, s in identical.items() if rows.methods[t] == "identical"}),
            "relrep_all_with_vectors": precision_at(truth, relrep_all),
        }
    # Model-free check that needs no held-out text: identical pairs not used as pivots should find
    # their own identical partner among the top-k.
    pivot_targets = {t for t, _ in found.pivots}
    held_pairs = {t: s for t, s in found.available if t not in pivot_targets}
    if have_topk:
        check = precision_at(held_pairs, {t: found.top_src[row_of[t]].tolist() for t in held_pairs})
    else:
        check = {"skipped": "no alignment"}
    return span, check


def _mapping(rows: MappingEntries, target_tokenizer: Any, source_tokenizer: Any, info: dict) -> TokenMapping:
    """The TokenMapping of `rows` (over the source tokenizer's ids), with both tokenizers' checksums and `info`."""
    return TokenMapping(
        methods=rows.methods,
        source_ids=rows.source_ids,
        weights=rows.weights,
        similarity=rows.similarity,
        source_vocab_size=len(source_tokenizer),
        target_checksum=tokenizer_checksum(target_tokenizer),
        source_checksum=tokenizer_checksum(source_tokenizer),
        info=info,
    )


def align_vocabularies(
    target_tokenizer: Any,
    source_tokenizer: Any,
    tgt: Embeddings,
    src: Embeddings,
    cfg: AlignmentConfig,
    heldout: list[str],
) -> Alignment:
    """Map every target token to source rows (see the module docstring for the rules).

    Args:
        target_tokenizer, source_tokenizer: transformers tokenizers.
        tgt, src: each side's co-occurrence vectors.
        cfg: the alignment section.
        heldout: held-out documents for the span test ([] skips it).
    Returns:
        the mapping, its summary and provenance.
    Raises:
        InputError: embeddings that do not fit the tokenizers.
    """
    n_t, n_s = len(target_tokenizer), len(source_tokenizer)
    warnings = check_embeddings(tgt, src, n_t, n_s)
    rows, identical, (t_family, s_family) = special_and_identical_entries(target_tokenizer, source_tokenizer, warnings)
    found = search(tgt, src, identical, cfg, warnings)
    aligned, top1 = apply_similarity_rules(rows, tgt, found, V.special_ids(target_tokenizer), cfg)
    apply_fallback(rows, target_tokenizer, source_tokenizer, cfg)

    mapping = _mapping(
        rows,
        target_tokenizer,
        source_tokenizer,
        {
            "paper": "TokAlign (Li et al., ACL 2025)",
            "pivots": len(found.pivots),
            "pivot_strategy": cfg.pivot_strategy,
            "threshold": cfg.similarity_threshold,
            "method": cfg.method,
            "fallback": cfg.fallback,
            "target_family": t_family,
            "source_family": s_family,
        },
    )
    span, identical_check = span_report(
        target_tokenizer, source_tokenizer, heldout, tgt, found, identical, rows, aligned, warnings
    )
    summary = _summary(mapping, tgt, src, cfg, found, top1, identical, (t_family, s_family), span, identical_check)
    summary["warnings"] = warnings
    summary["mapping_checksum"] = mapping.checksum()
    for w in warnings:
        log.warning("align: %s", w)
    target_counts = np.zeros(n_t, dtype=np.int64)
    target_counts[tgt.ids] = tgt.counts
    return Alignment(
        mapping, summary, V.vocab_list(target_tokenizer), V.vocab_list(source_tokenizer), target_counts, warnings
    )


def _summary(
    mapping: TokenMapping,
    tgt: Embeddings,
    src: Embeddings,
    cfg: AlignmentConfig,
    found: Candidates,
    top1: list[float],
    identical: dict[int, int],
    families: tuple[str, str],
    span: dict[str, Any],
    identical_check: dict[str, Any],
) -> dict[str, Any]:
    """align/summary.json of a vector alignment (the caller adds warnings and the mapping checksum)."""
    t_family, s_family = families
    counts = mapping.counts()
    covered = counts.get("identical", 0) + counts.get("aligned", 0) + counts.get("soft", 0)
    edges = np.linspace(-1.0, 1.0, HISTOGRAM_BINS + 1)
    hist, _ = np.histogram(np.asarray(top1, dtype=np.float64), bins=edges)
    return {
        "target_vocab": mapping.target_vocab_size,
        "source_vocab": mapping.source_vocab_size,
        "target_family": t_family,
        "source_family": s_family,
        "counts": counts,
        "identical_tokens": len(identical),
        "coverage": round(covered / mapping.target_vocab_size, 4),
        "target_rows_with_vectors": int(tgt.ids.size),
        "source_rows_with_vectors": int(src.ids.size),
        "pivots": {
            "requested": cfg.pivot_count,
            "used": len(found.pivots),
            "strategy": cfg.pivot_strategy,
            "available": len(found.available),
        },
        "threshold": cfg.similarity_threshold,
        "similarity_histogram": {
            "edges": [round(float(e), 4) for e in edges],
            "counts": hist.tolist(),
            "threshold": cfg.similarity_threshold,
            "of": "top-1 cosine of target tokens with vectors that are not special or identical",
        },
        "span_test": span,
        "nonpivot_identical_pairs": identical_check,
    }


def map_without_vectors(target_tokenizer: Any, source_tokenizer: Any, cfg: AlignmentConfig, reason: str) -> Alignment:
    """The mapping when no co-occurrence vectors were trained: special and identical tokens, then the fallback.

    What the align stage writes when alignment.init reads no vector alignment (Config.vector_plan): such
    an initialiser uses only the special and identical entries and rebuilds every other row itself, so
    the other entries are `alignment.fallback`, as they would be for tokens without vectors. The summary
    says that no vector alignment was done and `reason`; only alignment.fallback and alignment.seed (the
    random fallback) shape the result, so nothing else of the alignment section is recorded.

    Args:
        target_tokenizer, source_tokenizer: transformers tokenizers.
        cfg: the alignment section.
        reason: why no vectors were trained, for the summary (Config.vector_plan().reason).
    Returns:
        the mapping, its summary and provenance (no similarities, no corpus counts).
    """
    n_t, n_s = len(target_tokenizer), len(source_tokenizer)
    warnings: list[str] = []
    rows, identical, (t_family, s_family) = special_and_identical_entries(target_tokenizer, source_tokenizer, warnings)
    apply_fallback(rows, target_tokenizer, source_tokenizer, cfg)
    mapping = _mapping(
        rows,
        target_tokenizer,
        source_tokenizer,
        {
            "vector_alignment": False,
            "fallback": cfg.fallback,
            "target_family": t_family,
            "source_family": s_family,
        },
    )
    counts = mapping.counts()
    summary = {
        "target_vocab": n_t,
        "source_vocab": n_s,
        "target_family": t_family,
        "source_family": s_family,
        "vector_alignment": {"done": False, "reason": reason},
        "counts": counts,
        "identical_tokens": len(identical),
        "coverage": round(counts.get("identical", 0) / n_t, 4),
        "warnings": warnings,
        "mapping_checksum": mapping.checksum(),
    }
    for w in warnings:
        log.warning("align: %s", w)
    return Alignment(mapping, summary, V.vocab_list(target_tokenizer), V.vocab_list(source_tokenizer), None, warnings)
