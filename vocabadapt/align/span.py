"""The span test: alignment accuracy from character offsets, without any model.

A target token and a source token that cover exactly the same characters of held-out text are a
"span truth" pair; precision@k says how often the alignment's top-k candidates contain it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from ..text.tokenizers import backend_of


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
            out.append((list(enc.ids), [_trim(text, a, b) for a, b in enc.offsets]))
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


def precision_at(
    truth: dict[int, int], candidates: dict[int, list[int]], ks: tuple[int, ...] = (1, 5)
) -> dict[str, Any]:
    """precision@k over target ids that have both a span truth and candidates."""
    ids = [t for t in sorted(candidates) if t in truth]
    out: dict[str, Any] = {"n": len(ids)}
    for k in ks:
        hit = sum(truth[t] in candidates[t][:k] for t in ids)
        out[f"precision@{k}"] = round(hit / len(ids), 4) if ids else None
    return out
