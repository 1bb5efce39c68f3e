"""Relative representations and the blockwise top-k search (TokAlign's numerical core).

TokAlign (Li et al., ACL 2025) aligns two independently trained token-embedding spaces through
relative representations: pick P pivot pairs among identical tokens, describe every token by its
cosine similarities to its own side's pivots, and compare target and source tokens in that shared
P-dimensional space. Here each relative representation is L2-normalised, so the similarity of a
target and a source token is a cosine in [-1, 1] whatever P is, and `alignment.similarity_threshold`
keeps its meaning when the pivot count changes.

The search is blockwise: a block of target rows against a chunk of source rows at a time, in float32
with torch, merging a running top-k, so memory is bounded by `block_size` × chunk and never holds a
|V_target| × |V_source| matrix; no Python loop runs over the vocabulary.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import StageError

# Score-matrix elements held at once per block (float32): 2**24 = 64 MiB whatever the vocabularies.
MAX_BLOCK_ELEMENTS = 1 << 24


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


def blockwise_topk(
    query: Any, keys: Any, k: int, block_rows: int = 4096, max_elements: int = MAX_BLOCK_ELEMENTS
) -> tuple[np.ndarray, np.ndarray]:
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
            qb = query.rows(r0, r0 + block_rows) if lazy else q[r0 : r0 + block_rows]  # (b, P)
            best_v: Any = None
            best_i: Any = None
            for c0 in range(0, n, chunk):
                scores = qb @ s[c0 : c0 + chunk].T  # (b, chunk)
                v, i = torch.topk(scores, min(k, scores.shape[1]), dim=1)
                i += c0
                if best_v is not None:
                    # Merge with the running top-k; earlier chunks first, so ties keep the lower id.
                    v, sel = torch.topk(torch.cat([best_v, v], 1), k, dim=1)
                    i = torch.gather(torch.cat([best_i, i], 1), 1, sel)
                best_v, best_i = v, i
            out_v[r0 : r0 + block_rows] = best_v
            out_i[r0 : r0 + block_rows] = best_i
    return out_v.numpy(), out_i.numpy()


def choose_pivots(
    pairs: list[tuple[int, int]],
    count: int,
    strategy: str,
    seed: int,
    target_counts: dict[int, int] | None = None,
    source_counts: dict[int, int] | None = None,
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
