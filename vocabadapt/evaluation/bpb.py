"""Bits per byte: the number that compares language models with different tokenizers.

bits/byte = (sum of token negative log-likelihoods in nats) / ln 2 / (UTF-8 bytes of the text).

Each document is scored on its own, from its start: the sequence is [BOS] + tokens (BOS = the
tokenizer's bos token, else its eos token, which is what such models see between documents). BOS
is context only; its bytes are not counted. Documents longer than the model's context are scored
with sliding windows: a window of `context` tokens moves by `stride`, and each window scores only
the targets no earlier window scored, so every token is scored exactly once, with at least
`context - stride` tokens of left context after the first window. Windows of all documents are
batched together, right-padded; padded positions are never targets.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch

from ..errors import InputError

log = logging.getLogger(__name__)

LN2 = math.log(2.0)


@dataclass(frozen=True)
class Row:
    """One forward pass row: token ids and the local positions whose tokens are scored (targets)."""

    ids: list[int]
    first_target: int  # targets are positions first_target .. len(ids)-1 (first_target >= 1)
    key: Any = None  # who the row belongs to (document index, (question, choice), ...)


def model_context(model: Any, tokenizer: Any = None, cap: int | None = None) -> int:
    """Tokens a model can attend to: the first of max_position_embeddings / n_positions / ... found.

    `cap` (evaluation.context_length) lowers it, e.g. to score a long-context model on a CPU.
    Raises:
        InputError: the model config names no context length and no cap is given.
    """
    cfg = model.config
    found = None
    for attr in ("max_position_embeddings", "n_positions", "seq_length", "max_sequence_length", "n_ctx"):
        v = getattr(cfg, attr, None)
        if isinstance(v, int) and v > 0:
            found = v
            break
    if found is None and cap is None:
        raise InputError(
            f"the model config ({type(cfg).__name__}) names no context length; set evaluation.context_length"
        )
    ctx = min(x for x in (found, cap) if x is not None)
    if ctx < 2:
        raise InputError(f"context length {ctx} is too short to score anything; it must be at least 2 tokens")
    return ctx


def start_token(tokenizer: Any) -> int | None:
    """The id every document starts with: bos, else eos, else None (first token then unscored)."""
    for tid in (getattr(tokenizer, "bos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if tid is not None:
            return int(tid)
    return None


def windows(n_tokens: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """Sliding windows over a sequence of `n_tokens` (position 0 is the start token, never a target).

    Returns [(begin, end, first_target)] in absolute positions: the window holds positions
    [begin, end) and scores targets [first_target, end). The targets of all windows partition
    [1, n_tokens). stride is clamped to [1, context - 1] so every target keeps >= 1 token of context.
    """
    if context < 2:
        raise ValueError("context must be >= 2")
    stride = max(1, min(stride, context - 1))
    out = []
    begin, prev_end = 0, 1
    while prev_end < n_tokens:
        end = min(begin + context, n_tokens)
        out.append((begin, end, prev_end))
        prev_end = end
        begin += stride
    return out


def _device_of(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model always has parameters
        return torch.device("cpu")


@torch.no_grad()
def score_rows(
    model: Any,
    rows: Sequence[Row],
    batch_size: int = 8,
    pad_id: int = 0,
    vocab_limit: int | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> list[tuple[float, int]]:
    """Sum of target-token negative log-likelihoods (nats) and target count for each row.

    Rows are sorted by length and batched, right-padded with `pad_id` under a zero attention mask;
    the logits at padded positions are never read. `vocab_limit` (the tokenizer's length) drops
    logits of embedding rows past the tokenizer: rows padded to a multiple of 64 hold no token and
    are suppressed in generation, so they must not take probability mass here either.
    Returns a list aligned with `rows`.
    """
    device = _device_of(model)
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i].ids))
    out: list[tuple[float, int]] = [(0.0, 0)] * len(rows)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = len(rows[idx[0]].ids)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for b, i in enumerate(idx):
            r = rows[i]
            ids[b, : len(r.ids)] = torch.tensor(r.ids, dtype=torch.long)
            mask[b, : len(r.ids)] = 1
        # Positions whose logits are read (t - 1 for every target t), over the whole batch.
        need = sorted({p for i in idx for p in range(rows[i].first_target - 1, len(rows[i].ids) - 1)})
        logits, col = _forward(model, ids.to(device), mask.to(device), need, width)  # (B, K, V), pos -> column
        for b, i in enumerate(idx):
            r = rows[i]
            t = torch.arange(r.first_target, len(r.ids))  # target positions
            cols = col[t - 1].to(device)
            # logits at t-1 predict the token at t; log_softmax in fp32 whatever the model's dtype.
            lp = torch.log_softmax(logits[b, cols, :vocab_limit].float(), dim=-1)  # (n_targets, V)
            nll = -lp.gather(1, ids[b, t].to(device).unsqueeze(1)).sum()
            out[i] = (float(nll.double()), len(t))
        if on_batch is not None:
            on_batch(len(idx))
    return out


def _forward(model: Any, ids: torch.Tensor, mask: torch.Tensor, need: list[int], width: int):
    """Logits at the positions in `need` only, when the model supports it, else at every position.

    Projecting onto the vocabulary is most of the cost for short targets (PubMedQA reads 1-2
    positions of a ~400-token row; a 50k vocabulary makes full logits 50k x 400 per row), so the
    model is asked for `logits_to_keep` = those positions (transformers >= 4.50). A model that
    refuses the argument, or ignores it (returns every position), is served in full.
    Returns (logits (B, K, V), col (width,) mapping a position to its column in logits).
    """
    full_col = torch.arange(width)
    if len(need) < width and getattr(model, "_vocabadapt_keep_ok", True):
        keep = torch.tensor(need, dtype=torch.long)
        try:
            logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep.to(ids.device)).logits
        except TypeError:
            logits = None
        if logits is not None and logits.shape[1] == len(need):
            col = torch.full((width,), -1, dtype=torch.long)
            col[keep] = torch.arange(len(need))
            return logits, col
        model._vocabadapt_keep_ok = False  # do not ask again
        if logits is not None and logits.shape[1] == width:
            return logits, full_col
    return model(input_ids=ids, attention_mask=mask).logits, full_col


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of `text` without special tokens (we add the start token ourselves, uniformly)."""
    # verbose=False: texts longer than model_max_length are expected here (we window them ourselves).
    return list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def bits_per_byte(
    model: Any,
    tokenizer: Any,
    texts: Iterable[str],
    context: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Score documents and return bits per byte, token perplexity and the counts behind them.

    Args:
        model: a causal LM (eval mode is set here).
        tokenizer: its tokenizer.
        texts: documents; each is scored from its start.
        context: tokens per window; None = the model's context.
        stride: window step in tokens; None = half the context.
        batch_size: windows per forward pass.
    Returns:
        {"bits_per_byte", "nll_nats", "bytes", "tokens", "documents", "windows", "context", "stride",
         "token_perplexity", "token_perplexity_note", "unscored_first_tokens"}.
    Raises:
        InputError: there is no non-empty document.
    """
    model.eval()
    context = context or model_context(model)
    stride = stride or max(1, context // 2)
    stride = max(1, min(stride, context - 1))
    bos = start_token(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (bos or 0)
    rows: list[Row] = []
    n_bytes = 0
    docs = 0
    unscored = 0
    for doc_i, text in enumerate(texts):
        if not text or not text.strip():
            continue
        ids = encode(tokenizer, text)
        if not ids:
            continue
        doc_bytes = len(text.encode("utf-8"))
        if bos is not None:
            seq = [bos] + ids
        else:
            # No start token: the first token has no context; leave it and its bytes out.
            seq = ids
            unscored += 1
            doc_bytes -= len(tokenizer.decode(ids[:1]).encode("utf-8"))
            if len(seq) < 2:
                continue
        docs += 1
        n_bytes += doc_bytes
        for begin, end, first in windows(len(seq), context, stride):
            rows.append(Row(seq[begin:end], first - begin, doc_i))
    if docs == 0 or n_bytes <= 0:
        raise InputError("no non-empty text to score; check the held-out or --text file")
    scored = score_rows(model, rows, batch_size=batch_size, pad_id=pad, vocab_limit=len(tokenizer), on_batch=on_batch)
    nll = sum(s for s, _ in scored)
    tokens = sum(n for _, n in scored)
    return {
        "bits_per_byte": nll / LN2 / n_bytes,
        "nll_nats": nll,
        "bytes": n_bytes,
        "tokens": tokens,
        "bytes_per_token": n_bytes / tokens if tokens else None,
        "documents": docs,
        "windows": len(rows),
        "context": context,
        "stride": stride,
        "token_perplexity": math.exp(nll / tokens) if tokens else None,
        "token_perplexity_note": "per token of this model's tokenizer: compare only between models sharing it",
        "unscored_first_tokens": unscored,
    }
