"""Bits per byte: the number that compares language models with different tokenizers.

bits/byte = (sum of token negative log-likelihoods in nats) / ln 2 / (UTF-8 bytes of the text).

This equals lm-evaluation-harness's `bits_per_byte` on a `loglikelihood_rolling` task over the same
documents (tests/evaluation/test_lm_eval_parity.py pins it). Each document is scored on its own,
from its start: the sequence is [BOS] + tokens (BOS = the tokenizer's bos token, else its eos token:
lm-eval's prefix_token_id). BOS is context only; its bytes are not counted. A document longer than
the model's context C is scored in windows, as lm-eval's rolling windows do: the first window
predicts the first C tokens; each next window predicts the next `stride` tokens (default C: the
windows are disjoint, as in lm-eval) from as much left context as fits in C, so the last window
always has a full context. A stride below C gives every token at least C - stride tokens of context
(a lower, better-estimated bpb, no longer lm-eval's number). Every token is scored exactly once.
Windows of all documents are batched together, right-padded; padded positions are never read.
Where vocabadapt and lm-eval differ (tokenizers that add special tokens, embedding rows past the
tokenizer) is written in docs/evaluation.md.
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
    """Tokens to score: `ids[first_target:]` given everything before them.

    The model reads ids[:-1] (the last token is only a target), so a row may hold context + 1 ids.
    """

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


def windows(n_tokens: int, context: int, stride: int | None = None) -> list[tuple[int, int, int]]:
    """Scoring windows over a sequence of `n_tokens` (position 0 is the start token, never a target).

    Returns [(begin, end, first_target)] in absolute positions: the row holds positions [begin, end)
    (at most context + 1 ids; the model reads the first `context` of them) and scores targets
    [first_target, end). The targets of all windows partition [1, n_tokens). The first window scores
    the first `context` targets; each next one the next `stride` targets (default `context`), with
    begin = max(0, end - context - 1). stride = context is lm-eval's get_rolling_token_windows
    (context_len=1) followed by make_disjoint_window.
    """
    if context < 1:
        raise ValueError("context must be >= 1")
    stride = context if stride is None else max(1, min(stride, context))
    out = []
    end = min(context + 1, n_tokens)
    if end > 1:
        out.append((0, end, 1))
    while end < n_tokens:
        first, end = end, min(end + stride, n_tokens)
        out.append((max(0, end - context - 1), end, first))
    return out


def _device_of(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model always has parameters
        return torch.device("cpu")


def _shared_forwards(rows: Sequence[Row]) -> tuple[list[list[int]], list[int], dict[tuple[int, ...], list[int]]]:
    """Model inputs that serve every row, sharing one forward pass between rows where possible.

    Row r needs the logits after ids[:-1]; any input that starts with ids[:-1] serves it (a causal
    model's logits at a position do not depend on later tokens). PubMedQA's " yes", " no" and
    " maybe" after one prompt therefore share one forward pass when they are one token each, or
    differ only in their last token: the longest continuation's input serves the others. (lm-eval
    shares a pass only between continuations that differ in their last token.)
    Returns (inputs, input index of each row, {context: its inputs} for contexts left with several
    inputs: their continuations branch earlier; score_rows scores those from one cached context pass).
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, r in enumerate(rows):  # rows can only share an input when their contexts are equal
        groups.setdefault(tuple(r.ids[: r.first_target]), []).append(i)
    inputs: list[list[int]] = []
    served_by = [0] * len(rows)
    branched: dict[tuple[int, ...], list[int]] = {}
    for context, members in groups.items():
        mine: list[int] = []
        for i in sorted(members, key=lambda i: -len(rows[i].ids)):
            need = rows[i].ids[:-1]
            j = next((j for j in mine if inputs[j][: len(need)] == need), None)
            if j is None:
                inputs.append(need)
                j = len(inputs) - 1
                mine.append(j)
            served_by[i] = j
        if len(mine) > 1:
            branched[context] = mine
    return inputs, served_by, branched


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

    Rows that can share a forward pass do (see _shared_forwards); rows whose continuations branch
    after a shared context get that context's pass once, through the model's KV cache. The other
    inputs are sorted by length and batched, right-padded with `pad_id`. Right padding needs no
    attention mask in a causal model: a real position attends only to earlier, real positions
    (lm-eval batches the same way). Logits are computed only at the positions read. `vocab_limit`
    (the tokenizer's length) drops logits of embedding rows past the tokenizer: rows padded to a
    multiple of 64 hold no token and are suppressed in generation, so they must not take probability
    mass here either; None keeps every row (what lm-eval does).
    Returns a list aligned with `rows`.
    """
    device = _device_of(model)
    inputs, served_by, branched = _shared_forwards(rows)
    readers: list[list[int]] = [[] for _ in inputs]  # rows read from each input
    for i, j in enumerate(served_by):
        readers[j].append(i)
    out: list[tuple[float, int]] = [(0.0, 0)] * len(rows)

    def score(i: int, logits: torch.Tensor) -> None:
        """Row i from the logits (n_targets, V) at the positions before its targets."""
        r = rows[i]
        lp = torch.log_softmax(logits[:, :vocab_limit].float(), dim=-1)  # fp32 whatever the model's dtype
        target = torch.tensor(r.ids[r.first_target :], dtype=torch.long, device=device)
        out[i] = (float(-lp.gather(1, target.unsqueeze(1)).sum().double()), len(target))

    done: set[int] = set()
    for context, group in branched.items():
        stacks = _branches(model, list(context), [inputs[j][len(context) :] for j in group], device)
        if stacks is None:  # no usable KV cache: these inputs go through the batched path below
            break
        for j, stack in zip(group, stacks):  # stack[k] = logits after context + branch[:k]
            for i in readers[j]:
                score(i, stack[: len(rows[i].ids) - rows[i].first_target])
            done.add(j)
        if on_batch is not None:
            on_batch(sum(len(readers[j]) for j in group))

    order = sorted((j for j in range(len(inputs)) if j not in done), key=lambda j: -len(inputs[j]))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = len(inputs[idx[0]])
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        for b, j in enumerate(idx):
            ids[b, : len(inputs[j])] = torch.tensor(inputs[j], dtype=torch.long)
        # Positions whose logits are read (t - 1 for every target t), over the whole batch.
        need = sorted(
            {p for j in idx for i in readers[j] for p in range(rows[i].first_target - 1, len(rows[i].ids) - 1)}
        )
        logits, col = _forward(model, ids.to(device), need, width)  # (B, K, V), position -> column
        for b, j in enumerate(idx):
            for i in readers[j]:
                t = torch.arange(rows[i].first_target, len(rows[i].ids))  # target positions
                score(i, logits[b, col[t - 1].to(device)])  # logits at t-1 predict the token at t
        if on_batch is not None:
            on_batch(sum(len(readers[j]) for j in idx))
    return out


def _branches(
    model: Any, context: list[int], branches: list[list[int]], device: torch.device
) -> list[torch.Tensor] | None:
    """Logits after context + branch[:k], k = 0..len(branch), for every branch, from one pass over
    the context whose KV cache is repeated for the branches (one row each, right-padded).

    Returns [(len(branch) + 1, V) per branch], or None when the model offers no repeatable cache.
    """
    import inspect

    # transformers renames the cache argument (past_key_values -> cache) in its 5.x series
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    try:
        first = model(input_ids=torch.tensor([context], device=device), use_cache=True, logits_to_keep=1)
        cache = getattr(first, "past_key_values", None) or getattr(first, "cache", None)
        last = first.logits[0, -1:]  # (1, V): after the context
        live = [b for b in branches if b]
        if not live:
            return [last for _ in branches]
        if cache is None:
            return None
        cache.batch_repeat_interleave(len(live))
        width = max(map(len, live))
        ids = torch.tensor([b + [b[-1]] * (width - len(b)) for b in live], device=device)  # (n, width)
        mask = torch.ones((len(live), len(context) + width), dtype=torch.long, device=device)
        more = model(input_ids=ids, attention_mask=mask, use_cache=False, **{cache_arg: cache}).logits  # (n, width, V)
    except (TypeError, AttributeError, ValueError) as e:
        log.debug("no KV-cache branching for %s (%s); scoring branches in full", type(model).__name__, e)
        return None
    it = iter(range(len(live)))
    return [torch.cat([last, more[next(it), : len(b)]]) if b else last for b in branches]


def _forward(model: Any, ids: torch.Tensor, need: list[int], width: int):
    """Logits at the positions in `need` only, when the model supports it, else at every position.

    Projecting onto the vocabulary is most of the cost for short targets (PubMedQA reads 1-2
    positions of a ~400-token row; a 50k vocabulary makes full logits 50k x 400 per row), so the
    model is asked for `logits_to_keep` = those positions (transformers >= 4.50). A model that
    refuses the argument, or ignores it (returns every position), is served in full.
    No attention mask is passed: right padding needs none (see score_rows), and without one
    transformers takes its plain causal attention path (an all-ones mask measured ~10 % slower on
    SmolLM2-135M on a CPU).
    Returns (logits (B, K, V), col (width,) mapping a position to its column in logits).
    """
    full_col = torch.arange(width)
    if len(need) < width and getattr(model, "_vocabadapt_keep_ok", True):
        keep = torch.tensor(need, dtype=torch.long)
        try:
            logits = model(input_ids=ids, logits_to_keep=keep.to(ids.device)).logits
        except TypeError:
            logits = None
        if logits is not None and logits.shape[1] == len(need):
            col = torch.full((width,), -1, dtype=torch.long)
            col[keep] = torch.arange(len(need))
            return logits, col
        model._vocabadapt_keep_ok = False  # do not ask again
        if logits is not None and logits.shape[1] == width:
            return logits, full_col
    return model(input_ids=ids).logits, full_col


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
        context: tokens the model reads per window; None = the model's context.
        stride: targets per window after the first; None = the context (lm-eval's windows).
        batch_size: windows per forward pass.
    Returns:
        {"bits_per_byte", "nll_nats", "bytes", "tokens", "documents", "windows", "context", "stride",
         "token_perplexity", "token_perplexity_note", "unscored_first_tokens"}.
    Raises:
        InputError: there is no non-empty document.
    """
    model.eval()
    context = context or model_context(model)
    stride = max(1, min(stride or context, context))
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
