"""The align stage: map every target token to the source rows that should seed it (TokAlign).

TokAlign (Li et al., ACL 2025) aligns two independently trained token-embedding spaces through
relative representations: pick P pivot pairs among identical tokens, describe every token by its
cosine similarities to its own side's pivots, and compare target and source tokens in that shared
P-dimensional space. Here each relative representation is L2-normalised, so the similarity of a
target and a source token is a cosine in [-1, 1] whatever P is, and `alignment.similarity_threshold`
keeps its meaning when the pivot count changes.

The search is blockwise: a block of target rows against a chunk of source rows at a time, in float32
with torch, merging a running top-k, so memory is bounded by `block_size` × chunk and never holds a
|V_target| × |V_source| matrix; no Python loop runs over the vocabulary.

Rules, in order: special tokens by role; identical tokens copy their source; tokens whose top-1
similarity reaches the threshold are aligned (hard: the top-1 row; soft: a softmax over the top-k);
everything else takes `alignment.fallback` (fvt: the mean of the source rows of the token's text
re-tokenised with the source tokenizer, then mean of all rows; or mean, random, zero).
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from .embed import load_embeddings
from .errors import InputError, StageError
from .io import atomic_dir, write_json
from .mapping import TokenMapping, tokenizer_checksum
from .tokenize import backend_of, encode_texts
from .tokenizer_prep import load_run_tokenizer
from . import vocab as V

log = logging.getLogger(__name__)

# Score-matrix elements held at once per block (float32): 2**24 = 64 MiB whatever the vocabularies.
MAX_BLOCK_ELEMENTS = 1 << 24
# Held-out text used by the span test; BioGPT's Python tokenizer reads about 0.5 MB/s.
SPAN_TEST_MAX_BYTES = 400_000
HISTOGRAM_BINS = 20


# --------------------------------------------------------------------------------------------------
# the numerical core


class RelativeRepresentation:
    """The (n, P) relative representation of one side, computed block by block on demand.

    Row i is the cosine of token i to each pivot, centred and L2-normalised. fastText vectors share a
    large common direction, so raw cosines to any pivot are all high and every relative representation
    looks alike (top-1 cosines all above 0.97 on GPT-NeoX/BioGPT, precision@1 on held-out identical
    pairs 4.5%); centring the vectors (mean over the side's rows) and the cosine columns removes it
    (precision@1 19%, top-1 cosines spread over 0.6-0.8), and makes the threshold informative.

    Args:
        vectors: (n, dim) token vectors of one side.
        pivot_rows: (P,) row indices of that side's pivots.
        center: subtract the row mean of the vectors and of the cosine columns (see above).
    """

    def __init__(self, vectors: Any, pivot_rows: Any, center: bool = True, block_rows: int = 65536):
        import torch

        self.vectors = torch.as_tensor(np.asarray(vectors), dtype=torch.float32)  # (n, dim)
        n, dim = self.vectors.shape
        self.mean = self.vectors.mean(0) if center else torch.zeros(dim)  # (dim,)
        piv = self.vectors[torch.as_tensor(np.asarray(pivot_rows), dtype=torch.long)] - self.mean
        self.pivots = torch.nn.functional.normalize(piv, dim=1)  # (P, dim)
        # Column mean of the cosines over all rows = (mean of unit rows) @ pivots.T: one pass, O(n * dim).
        unit_sum = torch.zeros(dim)
        for r0 in range(0, n, block_rows):
            unit_sum += self._unit(r0, r0 + block_rows).sum(0)
        self.col_mean = (unit_sum / max(n, 1)) @ self.pivots.T if center else torch.zeros(len(piv))  # (P,)

    @property
    def n(self) -> int:
        return int(self.vectors.shape[0])

    def _unit(self, r0: int, r1: int) -> Any:
        import torch

        return torch.nn.functional.normalize(self.vectors[r0:r1] - self.mean, dim=1)  # (b, dim)

    def rows(self, r0: int, r1: int) -> Any:
        """Rows r0..r1 of the relative representation: (b, P) float32, unit rows (a zero row stays zero)."""
        import torch

        rel = self._unit(r0, r1) @ self.pivots.T - self.col_mean  # (b, P)
        return torch.nn.functional.normalize(rel, dim=1)

    def full(self) -> Any:
        return self.rows(0, self.n)


def blockwise_topk(query: Any, keys: Any, k: int, block_rows: int = 4096,
                   max_elements: int = MAX_BLOCK_ELEMENTS) -> tuple[np.ndarray, np.ndarray]:
    """Top-k cosine (inner product of unit rows) of every query row over all key rows.

    Memory is one (block_rows, chunk) float32 score tile plus the running top-k, with
    chunk = max_elements // block_rows: independent of both vocabulary sizes. A RelativeRepresentation
    as `query` is computed block by block, so the (m, P) query matrix never exists either.

    Args:
        query: (m, P) unit rows, or a RelativeRepresentation (target side).
        keys: (n, P) unit rows (source side).
        k: candidates kept (clipped to n).
    Returns:
        (values float32 (m, k) descending, indices int64 (m, k) into keys).
    """
    import torch

    lazy = isinstance(query, RelativeRepresentation)
    q = query if lazy else torch.as_tensor(query, dtype=torch.float32)
    s = torch.as_tensor(keys, dtype=torch.float32)
    m, n = (query.n if lazy else q.shape[0]), s.shape[0]
    k = min(k, n)
    block_rows = max(1, min(block_rows, m))
    chunk = max(k, min(n, max_elements // block_rows))
    out_v = torch.empty((m, k), dtype=torch.float32)
    out_i = torch.empty((m, k), dtype=torch.int64)
    with torch.no_grad():
        for r0 in range(0, m, block_rows):
            qb = q.rows(r0, r0 + block_rows) if lazy else q[r0:r0 + block_rows]  # (b, P)
            best_v = best_i = None
            for c0 in range(0, n, chunk):
                scores = qb @ s[c0:c0 + chunk].T  # (b, chunk)
                v, i = torch.topk(scores, min(k, scores.shape[1]), dim=1)
                i += c0
                if best_v is not None:
                    # Merge with the running top-k; earlier chunks first, so ties keep the lower id.
                    v, sel = torch.topk(torch.cat([best_v, v], 1), k, dim=1)
                    i = torch.gather(torch.cat([best_i, i], 1), 1, sel)
                best_v, best_i = v, i
            out_v[r0:r0 + block_rows] = best_v
            out_i[r0:r0 + block_rows] = best_i
    return out_v.numpy(), out_i.numpy()


def choose_pivots(pairs: list[tuple[int, int]], count: int, strategy: str, seed: int,
                  target_counts: dict[int, int] | None = None, source_counts: dict[int, int] | None = None
                  ) -> list[tuple[int, int]]:
    """Pick `count` (target id, source id) pivot pairs among identical pairs present in both embeddings.

    strategy random: a seeded uniform sample (the paper); frequent: the pairs most frequent in both
    corpora (sum of counts; ties by target id). Returned sorted by target id.
    """
    pairs = sorted(pairs)
    if len(pairs) <= count:
        return pairs
    if strategy == "random":
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(len(pairs), size=count, replace=False))
        return [pairs[i] for i in pick]
    if strategy == "frequent":
        tc, sc = target_counts or {}, source_counts or {}
        ranked = sorted(pairs, key=lambda p: (-(tc.get(p[0], 0) + sc.get(p[1], 0)), p[0]))
        return sorted(ranked[:count])
    raise StageError(f"unknown pivot strategy '{strategy}' (valid: random, frequent)")


# --------------------------------------------------------------------------------------------------
# span test: alignment accuracy from character offsets, without any model


def token_spans(tokenizer: Any, texts: list[str]) -> list[tuple[list[int], list[tuple[int, int] | None]]]:
    """(ids, character span of each token with surrounding whitespace trimmed, or None) per text.

    Fast tokenizers report offsets; for slow ones each token's surface (its text as a one-token
    string) is searched for from the end of the previous token, which recovers the spans of Moses-style
    tokenizers except where they rewrite the text (those tokens get None).
    """
    out = []
    backend = backend_of(tokenizer)
    if backend is not None:
        for text, enc in zip(texts, backend.encode_batch(texts, add_special_tokens=False)):
            spans = [_trim(text, a, b) for a, b in enc.offsets]
            out.append((list(enc.ids), spans))
        return out
    surface_cache: dict[int, str] = {}
    for text in texts:
        ids = tokenizer.encode(text, add_special_tokens=False)
        spans: list[tuple[int, int] | None] = []
        cursor = 0
        for i in ids:
            s = surface_cache.get(i)
            if s is None:
                s = tokenizer.convert_tokens_to_string([tokenizer.convert_ids_to_tokens(i)]).strip()
                surface_cache[i] = s
            pos = text.find(s, cursor, cursor + len(s) + 16) if s else -1
            if pos < 0 or text[cursor:pos].strip():
                spans.append(None)
                continue
            spans.append((pos, pos + len(s)))
            cursor = pos + len(s)
        out.append((ids, spans))
    return out


def _trim(text: str, a: int, b: int) -> tuple[int, int] | None:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return (a, b) if b > a else None


def span_truth(target_tokenizer: Any, source_tokenizer: Any, texts: list[str]) -> dict[int, int]:
    """Target id -> the source id that covers exactly the same characters most often."""
    votes: dict[int, Counter] = defaultdict(Counter)
    t_all = token_spans(target_tokenizer, texts)
    s_all = token_spans(source_tokenizer, texts)
    for (t_ids, t_spans), (s_ids, s_spans) in zip(t_all, s_all):
        by_span = {sp: sid for sid, sp in zip(s_ids, s_spans) if sp is not None}
        for tid, sp in zip(t_ids, t_spans):
            if sp is not None and sp in by_span:
                votes[int(tid)][int(by_span[sp])] += 1
    # Majority source id; ties to the smallest id for determinism.
    return {tid: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for tid, c in votes.items()}


def precision_at(truth: dict[int, int], candidates: dict[int, list[int]], ks: tuple[int, ...] = (1, 5)) -> dict[str, Any]:
    """precision@k over target ids that have both a span truth and candidates."""
    ids = [t for t in sorted(candidates) if t in truth]
    out: dict[str, Any] = {"n": len(ids)}
    for k in ks:
        hit = sum(truth[t] in candidates[t][:k] for t in ids)
        out[f"precision@{k}"] = round(hit / len(ids), 4) if ids else None
    return out


# --------------------------------------------------------------------------------------------------
# the stage


def _read_heldout(path: Path, max_bytes: int) -> list[str]:
    texts, total = [], 0
    if not path.exists():
        return texts
    with open(path, encoding="utf-8") as f:
        for line in f:
            t = json.loads(line)["text"]
            texts.append(t)
            total += len(t.encode("utf-8"))
            if total >= max_bytes:
                break
    return texts


def _fvt_sources(target_forms: list, fallback_ids: list[int], target_family: str, source_family: str,
                 source_tokenizer: Any, source_specials: set[int]) -> dict[int, list[int]]:
    """Source ids of each fallback token's text re-tokenised with the source tokenizer (fast vocabulary transfer)."""
    texts, owners = [], []
    for tid in fallback_ids:
        form = target_forms[tid]
        if form is None or not form.text:
            continue
        text = form.text.decode("utf-8", errors="replace")
        if form.boundary and source_family in V.START_MARKING:
            text = " " + text  # a word-start token reads as a word start in the source too
        texts.append(text)
        owners.append(tid)
    out: dict[int, list[int]] = {}
    for tid, ids in zip(owners, encode_texts(source_tokenizer, texts) if texts else []):
        ids = [int(i) for i in ids if int(i) not in source_specials]
        if ids:
            out[tid] = ids
    return out


def run_stage(ctx: Any) -> dict[str, Any]:
    """Write align/mapping.json, align/provenance.jsonl and align/summary.json; return the summary."""
    import torch

    cfg = ctx.config.alignment
    tgt = load_run_tokenizer(ctx.run_dir, "target")
    src = load_run_tokenizer(ctx.run_dir, "source")
    t_vecs, t_ids, t_counts = load_embeddings(ctx.run_dir, "target")
    s_vecs, s_ids, s_counts = load_embeddings(ctx.run_dir, "source")
    n_t, n_s = len(tgt), len(src)
    if t_ids.size and (t_ids.max() >= n_t or t_ids.min() < 0):
        raise InputError(f"target embeddings hold id {int(t_ids.max())} but the target tokenizer has {n_t} tokens; "
                         f"rerun tokenize and embed")
    if s_ids.size and (s_ids.max() >= n_s or s_ids.min() < 0):
        raise InputError(f"source embeddings hold id {int(s_ids.max())} but the source tokenizer has {n_s} tokens; "
                         f"rerun tokenize and embed")
    if t_vecs.shape[0] == 0 or s_vecs.shape[0] == 0:
        raise InputError("an embedding matrix is empty; the corpus is too small or tokenize produced no ids")
    warnings: list[str] = []
    # Missing target rows mean unalignable tokens; missing source rows only fewer candidates.
    for side, rows, n, share in (("target", t_ids.size, n_t, 0.5), ("source", s_ids.size, n_s, 0.1)):
        if rows < share * n:
            warnings.append(f"{side} embeddings cover only {rows}/{n} tokens ({100 * rows / n:.1f}%); the rest "
                            f"cannot be aligned and take the fallback (a larger corpus helps)")

    t_family, t_forms = V.canonical_vocab(tgt)
    s_family, s_forms = V.canonical_vocab(src)
    identical = V.identical_from_forms(t_forms, s_forms)  # target id -> source id
    specials, special_notes = V.special_map(tgt, src)
    warnings += special_notes
    t_special_ids = V.special_ids(tgt)
    s_special_ids = V.special_ids(src)

    # Pivots: identical pairs with vectors on both sides.
    t_row = {int(t): r for r, t in enumerate(t_ids)}
    s_row = {int(s): r for r, s in enumerate(s_ids)}
    candidates = [(t, s) for t, s in identical.items() if t in t_row and s in s_row]
    pivots = choose_pivots(candidates, cfg.pivot_count, cfg.pivot_strategy, cfg.seed,
                           dict(zip(t_ids.tolist(), t_counts.tolist())), dict(zip(s_ids.tolist(), s_counts.tolist())))
    if len(pivots) < cfg.pivot_count:
        warnings.append(f"only {len(pivots)} identical pairs have vectors on both sides, fewer than "
                        f"alignment.pivot_count={cfg.pivot_count}; using all of them")

    # Top-k over relative representations for every target row with a vector.
    k = max(cfg.top_k, 5)
    top_sims = np.full((t_ids.size, 0), np.nan, dtype=np.float32)
    top_src = np.zeros((t_ids.size, 0), dtype=np.int64)
    if len(pivots) >= 2:
        torch.manual_seed(cfg.seed)
        rel_t = RelativeRepresentation(t_vecs, [t_row[t] for t, _ in pivots])  # lazy (rows_t, P)
        rel_s = RelativeRepresentation(s_vecs, [s_row[s] for _, s in pivots]).full()  # (rows_s, P)
        top_sims, top_rows = blockwise_topk(rel_t, rel_s, k, block_rows=cfg.block_size)
        top_src = s_ids[top_rows]  # (rows_t, k) source token ids
    else:
        warnings.append("fewer than 2 pivots: no alignment is possible; non-identical tokens take the fallback")

    # Mapping rules, in order.
    methods: list[str] = [""] * n_t
    source_ids: list[list[int]] = [[] for _ in range(n_t)]
    weights: list[list[float]] = [[] for _ in range(n_t)]
    similarity: list[float | None] = [None] * n_t
    for tid, sid in specials.items():
        methods[tid], source_ids[tid], weights[tid] = "special", [sid], [1.0]
    for tid, sid in identical.items():
        if not methods[tid]:
            methods[tid], source_ids[tid], weights[tid] = "identical", [sid], [1.0]
    aligned_candidates: dict[int, list[int]] = {}
    hist_values = []
    for r, tid in enumerate(t_ids.tolist()):
        if top_src.shape[1] == 0 or methods[tid] or tid in t_special_ids:
            continue
        sims = top_sims[r]
        hist_values.append(float(sims[0]))
        if sims[0] < cfg.similarity_threshold:
            continue
        aligned_candidates[tid] = top_src[r].tolist()
        similarity[tid] = round(float(sims[0]), 6)
        if cfg.method == "hard":
            methods[tid], source_ids[tid], weights[tid] = "aligned", [int(top_src[r, 0])], [1.0]
        else:
            kk = cfg.top_k
            w = torch.softmax(torch.as_tensor(sims[:kk], dtype=torch.float64) / cfg.soft_temperature, 0).numpy()
            methods[tid], source_ids[tid] = "soft", [int(x) for x in top_src[r, :kk]]
            weights[tid] = [round(float(x), 6) for x in w]

    fallback_ids = [t for t in range(n_t) if not methods[t]]
    fallback_sources: dict[int, list[int]] = {}
    if cfg.fallback == "fvt":
        fallback_sources = _fvt_sources(t_forms, fallback_ids, t_family, s_family, src, s_special_ids)
    rng = np.random.default_rng(cfg.seed)
    plain_source = np.array(sorted(set(range(n_s)) - s_special_ids), dtype=np.int64)
    for tid in fallback_ids:
        if cfg.fallback == "fvt" and tid in fallback_sources:
            ids = fallback_sources[tid]
            methods[tid], source_ids[tid] = "fvt", ids
            weights[tid] = [round(1.0 / len(ids), 6)] * len(ids)
        elif cfg.fallback == "random":
            methods[tid], source_ids[tid], weights[tid] = "random", [int(rng.choice(plain_source))], [1.0]
        elif cfg.fallback == "zero":
            methods[tid] = "zero"
        else:
            methods[tid] = "mean"

    mapping = TokenMapping(
        methods=methods, source_ids=source_ids, weights=weights, similarity=similarity, source_vocab_size=n_s,
        target_checksum=tokenizer_checksum(tgt), source_checksum=tokenizer_checksum(src),
        info={"paper": "TokAlign (Li et al., ACL 2025)", "pivots": len(pivots), "pivot_strategy": cfg.pivot_strategy,
              "threshold": cfg.similarity_threshold, "method": cfg.method, "fallback": cfg.fallback,
              "target_family": t_family, "source_family": s_family},
    )

    # Span test on held-out text.
    heldout = _read_heldout(ctx.path("corpus", "heldout.jsonl"), SPAN_TEST_MAX_BYTES)
    span: dict[str, Any]
    if not heldout:
        warnings.append("the held-out split is empty; the span test was skipped")
        span = {"skipped": "no held-out text"}
    else:
        truth = span_truth(tgt, src, heldout)
        row_of = {tid: r for r, tid in enumerate(t_ids.tolist())}
        relrep_all = {tid: top_src[r].tolist() for tid, r in row_of.items()} if top_src.shape[1] else {}
        span = {
            "documents": len(heldout),
            "target_types_with_same_span_source": len(truth),
            "aligned": precision_at(truth, aligned_candidates),
            "identical": precision_at(truth, {t: [s] for t, s in identical.items() if methods[t] == "identical"}),
            "relrep_all_with_vectors": precision_at(truth, relrep_all),
        }
    # Model-free check that needs no held-out text: identical pairs not used as pivots should find
    # their own identical partner among the top-k.
    pivot_targets = {t for t, _ in pivots}
    held_pairs = {t: s for t, s in candidates if t not in pivot_targets}
    if top_src.shape[1]:
        row_of_t = {tid: r for r, tid in enumerate(t_ids.tolist())}
        identical_check = precision_at(held_pairs, {t: top_src[row_of_t[t]].tolist() for t in held_pairs})
    else:
        identical_check = {"skipped": "no alignment"}

    counts = mapping.counts()
    covered = counts.get("identical", 0) + counts.get("aligned", 0) + counts.get("soft", 0)
    edges = np.linspace(-1.0, 1.0, HISTOGRAM_BINS + 1)
    hist, _ = np.histogram(np.asarray(hist_values, dtype=np.float64), bins=edges)
    summary = {
        "target_vocab": n_t, "source_vocab": n_s,
        "target_family": t_family, "source_family": s_family,
        "counts": counts,
        "identical_tokens": len(identical),
        "coverage": round(covered / n_t, 4),
        "target_rows_with_vectors": int(t_ids.size), "source_rows_with_vectors": int(s_ids.size),
        "pivots": {"requested": cfg.pivot_count, "used": len(pivots), "strategy": cfg.pivot_strategy,
                   "available": len(candidates)},
        "threshold": cfg.similarity_threshold,
        "similarity_histogram": {"edges": [round(float(e), 4) for e in edges], "counts": hist.tolist(),
                                 "threshold": cfg.similarity_threshold,
                                 "of": "top-1 cosine of target tokens with vectors that are not special or identical"},
        "span_test": span,
        "nonpivot_identical_pairs": identical_check,
        "warnings": warnings,
        "mapping_checksum": mapping.checksum(),
    }
    for w in warnings:
        log.warning("align: %s", w)

    t_tokens, s_tokens = V.vocab_list(tgt), V.vocab_list(src)
    t_count_of = np.zeros(n_t, dtype=np.int64)
    t_count_of[t_ids] = t_counts
    with atomic_dir(ctx.path("align")) as tmp:
        mapping.save(tmp / "mapping.json")
        with open(tmp / "provenance.jsonl", "w", encoding="utf-8") as f:
            for tid in range(n_t):
                rec = {"target_id": tid, "target_token": t_tokens[tid], "method": methods[tid],
                       "source_ids": source_ids[tid], "source_tokens": [s_tokens[s] for s in source_ids[tid]],
                       "weights": weights[tid], "similarity": similarity[tid], "target_count": int(t_count_of[tid])}
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        write_json(tmp / "summary.json", summary)
    log.info("align: coverage %.1f%%, %s", 100 * summary["coverage"], counts)
    return summary
