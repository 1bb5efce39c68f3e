"""Mapping rules: map every target token to the source rows that should seed it (TokAlign).

Rules, in order: special tokens by role; identical tokens copy their source; tokens whose top-1
similarity of relative representations (vocabadapt.align.relrep) reaches the threshold are aligned
(hard: the top-1 row; soft: a softmax over the top-k); everything else takes `alignment.fallback`
(fvt: vocabadapt.init.fvt, the mean of the source rows of the token's text re-tokenised with the source
tokenizer, then the mean of all rows; or mean, random, zero).

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
from ..errors import InputError
from ..text import vocab as V
from .mapping import TokenMapping, tokenizer_checksum
from .relrep import RelativeRepresentation, blockwise_topk, choose_pivots
from .span import precision_at, span_truth

log = logging.getLogger(__name__)

# Held-out text used by the span test; BioGPT's Python tokenizer reads about 0.5 MB/s.
SPAN_TEST_MAX_BYTES = 400_000
HISTOGRAM_BINS = 20


@dataclass
class Embeddings:
    """One side's co-occurrence vectors: vectors (n, dim) float32, ids (n,) int64 ascending, counts (n,)."""

    vectors: np.ndarray
    ids: np.ndarray
    counts: np.ndarray


@dataclass
class Candidates:
    """The relative-representation search: pivots and every target row's top-k source ids."""

    pivots: list[tuple[int, int]]
    available: list[tuple[int, int]]  # identical pairs with vectors on both sides
    top_sims: np.ndarray  # (target rows, k) float32, descending; k = 0 without alignment
    top_src: np.ndarray  # (target rows, k) int64 source token ids


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


def check_embeddings(tgt: Embeddings, src: Embeddings, n_t: int, n_s: int) -> list[str]:
    """Refuse embeddings that do not fit the tokenizers; warn about thin coverage.

    Raises:
        InputError: ids outside a tokenizer, or an empty matrix.
    """
    for side, e, n in (("target", tgt, n_t), ("source", src, n_s)):
        if e.ids.size and (e.ids.max() >= n or e.ids.min() < 0):
            raise InputError(
                f"{side} embeddings hold id {int(e.ids.max())} but the {side} tokenizer has {n} tokens; "
                f"rerun tokenize and embed"
            )
    if tgt.vectors.shape[0] == 0 or src.vectors.shape[0] == 0:
        raise InputError("an embedding matrix is empty; the corpus is too small or tokenize produced no ids")
    warnings = []
    # Missing target rows mean unalignable tokens; missing source rows only fewer candidates.
    for side, rows, n, share in (("target", tgt.ids.size, n_t, 0.5), ("source", src.ids.size, n_s, 0.1)):
        if rows < share * n:
            warnings.append(
                f"{side} embeddings cover only {rows}/{n} tokens ({100 * rows / n:.1f}%); the rest "
                f"cannot be aligned and take the fallback (a larger corpus helps)"
            )
    return warnings


def search(
    tgt: Embeddings, src: Embeddings, identical: dict[int, int], cfg: AlignmentConfig, warnings: list[str]
) -> Candidates:
    """Pivots among identical pairs with vectors, then the top-k source tokens of every target row."""
    import torch

    t_row = {int(t): r for r, t in enumerate(tgt.ids)}
    s_row = {int(s): r for r, s in enumerate(src.ids)}
    available = [(t, s) for t, s in identical.items() if t in t_row and s in s_row]
    pivots = choose_pivots(
        available,
        cfg.pivot_count,
        cfg.pivot_strategy,
        cfg.seed,
        dict(zip(tgt.ids.tolist(), tgt.counts.tolist())),
        dict(zip(src.ids.tolist(), src.counts.tolist())),
    )
    if len(pivots) < cfg.pivot_count:
        warnings.append(
            f"only {len(pivots)} identical pairs have vectors on both sides, fewer than "
            f"alignment.pivot_count={cfg.pivot_count}; using all of them"
        )
    k = max(cfg.top_k, 5)
    top_sims = np.full((tgt.ids.size, 0), np.nan, dtype=np.float32)
    top_src = np.zeros((tgt.ids.size, 0), dtype=np.int64)
    if len(pivots) >= 2:
        torch.manual_seed(cfg.seed)
        rel_t = RelativeRepresentation(tgt.vectors, [t_row[t] for t, _ in pivots])  # lazy (rows_t, P)
        rel_s = RelativeRepresentation(src.vectors, [s_row[s] for _, s in pivots]).full()  # (rows_s, P)
        top_sims, top_rows = blockwise_topk(rel_t, rel_s, k, block_rows=cfg.block_size)
        top_src = src.ids[top_rows]  # (rows_t, k) source token ids
    else:
        warnings.append("fewer than 2 pivots: no alignment is possible; non-identical tokens take the fallback")
    return Candidates(pivots, available, top_sims, top_src)


@dataclass
class _Rows:
    """The mapping's columns while the rules fill them (index = target id)."""

    methods: list[str]
    source_ids: list[list[int]]
    weights: list[list[float]]
    similarity: list[float | None]

    @classmethod
    def empty(cls, n: int) -> _Rows:
        return cls([""] * n, [[] for _ in range(n)], [[] for _ in range(n)], [None] * n)

    def set(self, tid: int, method: str, ids: list[int], weights: list[float]) -> None:
        self.methods[tid], self.source_ids[tid], self.weights[tid] = method, ids, weights


def copy_rows(
    target_tokenizer: Any, source_tokenizer: Any, warnings: list[str]
) -> tuple[_Rows, dict[int, int], tuple[str, str]]:
    """The rows that need no vectors: special tokens by role, then identical tokens copy their source.

    Returns (the rows so far, identical pairs target id -> source id, (target family, source family)).
    """
    t_family, t_forms = V.canonical_vocab(target_tokenizer)
    s_family, s_forms = V.canonical_vocab(source_tokenizer)
    identical = V.identical_from_forms(t_forms, s_forms)  # target id -> source id
    specials, special_notes = V.special_map(target_tokenizer, source_tokenizer)
    warnings += special_notes
    rows = _Rows.empty(len(target_tokenizer))
    for tid, sid in specials.items():
        rows.set(tid, "special", [sid], [1.0])
    for tid, sid in identical.items():
        if not rows.methods[tid]:
            rows.set(tid, "identical", [sid], [1.0])
    return rows, identical, (t_family, s_family)


def apply_similarity_rules(
    rows: _Rows, tgt: Embeddings, found: Candidates, special_targets: set[int], cfg: AlignmentConfig
) -> tuple[dict[int, list[int]], list[float]]:
    """Aligned (hard) or soft rows for target tokens whose top-1 similarity reaches the threshold.

    Returns (top-k candidates of the aligned tokens, top-1 cosines of every considered token).
    """
    import torch

    aligned: dict[int, list[int]] = {}
    top1: list[float] = []
    if found.top_src.shape[1] == 0:
        return aligned, top1
    for r, tid in enumerate(tgt.ids.tolist()):
        if rows.methods[tid] or tid in special_targets:
            continue
        sims = found.top_sims[r]
        top1.append(float(sims[0]))
        if sims[0] < cfg.similarity_threshold:
            continue
        aligned[tid] = found.top_src[r].tolist()
        rows.similarity[tid] = round(float(sims[0]), 6)
        if cfg.method == "hard":
            rows.set(tid, "aligned", [int(found.top_src[r, 0])], [1.0])
        else:
            kk = cfg.top_k
            w = torch.softmax(torch.as_tensor(sims[:kk], dtype=torch.float64) / cfg.soft_temperature, 0).numpy()
            rows.set(tid, "soft", [int(x) for x in found.top_src[r, :kk]], [round(float(x), 6) for x in w])
    return aligned, top1


def apply_fallback(rows: _Rows, target_tokenizer: Any, source_tokenizer: Any, cfg: AlignmentConfig) -> None:
    """Rows of every token no earlier rule mapped: fvt, mean, random or zero.

    fvt is THE FVT of vocabadapt.init.fvt (the token decoded, re-tokenised by the source tokenizer, byte
    pieces mapped byte by byte), with the same equal weights, so `fallback: fvt` and `init: fvt` build
    the same row for the same token.
    """
    from ..text.vocab import fvt_pieces

    n_s = len(source_tokenizer)
    fallback_ids = [t for t in range(len(rows.methods)) if not rows.methods[t]]
    pieces: dict[int, list[int]] = {}
    if cfg.fallback == "fvt" and fallback_ids:
        pieces = dict(zip(fallback_ids, fvt_pieces(target_tokenizer, source_tokenizer, fallback_ids)))
    rng = np.random.default_rng(cfg.seed)
    plain_source = np.array(sorted(set(range(n_s)) - V.special_ids(source_tokenizer)), dtype=np.int64)
    for tid in fallback_ids:
        if cfg.fallback == "fvt" and pieces.get(tid):
            ids = [int(i) for i in pieces[tid]]
            rows.set(tid, "fvt", ids, [1.0 / len(ids)] * len(ids))
        elif cfg.fallback == "random":
            rows.set(tid, "random", [int(rng.choice(plain_source))], [1.0])
        elif cfg.fallback == "zero":
            rows.methods[tid] = "zero"
        else:
            rows.methods[tid] = "mean"


def span_report(
    target_tokenizer: Any,
    source_tokenizer: Any,
    heldout: list[str],
    tgt: Embeddings,
    found: Candidates,
    identical: dict[int, int],
    rows: _Rows,
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


def _mapping(rows: _Rows, n_s: int, target_tokenizer: Any, source_tokenizer: Any, info: dict) -> TokenMapping:
    """The TokenMapping of `rows` over n_s source rows, with both tokenizers' checksums and `info`."""
    return TokenMapping(
        methods=rows.methods,
        source_ids=rows.source_ids,
        weights=rows.weights,
        similarity=rows.similarity,
        source_vocab_size=n_s,
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
    rows, identical, (t_family, s_family) = copy_rows(target_tokenizer, source_tokenizer, warnings)
    found = search(tgt, src, identical, cfg, warnings)
    aligned, top1 = apply_similarity_rules(rows, tgt, found, V.special_ids(target_tokenizer), cfg)
    apply_fallback(rows, target_tokenizer, source_tokenizer, cfg)

    mapping = _mapping(
        rows,
        n_s,
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
    counts = mapping.counts()
    covered = counts.get("identical", 0) + counts.get("aligned", 0) + counts.get("soft", 0)
    edges = np.linspace(-1.0, 1.0, HISTOGRAM_BINS + 1)
    hist, _ = np.histogram(np.asarray(top1, dtype=np.float64), bins=edges)
    summary = {
        "target_vocab": n_t,
        "source_vocab": n_s,
        "target_family": t_family,
        "source_family": s_family,
        "counts": counts,
        "identical_tokens": len(identical),
        "coverage": round(covered / n_t, 4),
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
        "warnings": warnings,
        "mapping_checksum": mapping.checksum(),
    }
    for w in warnings:
        log.warning("align: %s", w)
    target_counts = np.zeros(n_t, dtype=np.int64)
    target_counts[tgt.ids] = tgt.counts
    return Alignment(
        mapping, summary, V.vocab_list(target_tokenizer), V.vocab_list(source_tokenizer), target_counts, warnings
    )


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
    rows, identical, (t_family, s_family) = copy_rows(target_tokenizer, source_tokenizer, warnings)
    apply_fallback(rows, target_tokenizer, source_tokenizer, cfg)
    mapping = _mapping(
        rows,
        n_s,
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
