"""Multiple-choice log-likelihoods as lm-evaluation-harness computes them (`output_type: multiple_choice`).

The one implementation of lm-eval's request layout for a causal HF model (lm_eval/api/model.py
TemplateLM._encode_pair, lm_eval/models/huggingface.py HFLM._loglikelihood_tokens); PubMedQA and the
BC5CDR cloze both call it, and tests/evaluation/test_lm_eval_parity.py runs lm-eval itself against it:

    tokens  context and context + continuation are encoded with the tokenizer's own special tokens
            (tok_encode); trailing spaces of the context move to the continuation; the continuation's
            tokens are those of the whole past the length of the encoded context
    cut     a sequence longer than the model's context + 1 is cut from the left
    score   the summed log-likelihood of the continuation's tokens, log-softmax over every output row
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

import numpy as np

from .bpb import Row, score_rows, start_token

log = logging.getLogger(__name__)


def tok_encode(tokenizer: Any, text: str) -> list[int]:
    """lm-eval's HFLM.tok_encode: the tokenizer's own special tokens, none when text starts with BOS."""
    bos = start_token(tokenizer)
    starts_with_bos = bos is not None and text.startswith(tokenizer.decode(bos))
    kwargs = {"add_special_tokens": False} if starts_with_bos else {}
    return list(tokenizer(text, verbose=False, **kwargs)["input_ids"])


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's TemplateLM._encode_pair (causal models): (context ids, continuation ids).

    Trailing spaces of the context move to the continuation; context + continuation is encoded
    whole and split at the length of the separately encoded context.
    """
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tok_encode(tokenizer, context + continuation)
    ctx = tok_encode(tokenizer, context)
    return ctx, whole[len(ctx) :]


@dataclass
class ChoiceScores:
    """Summed continuation log-likelihoods per item, and the items that could not be scored."""

    loglikelihoods: dict[Hashable, list[float]]  # item key -> one value per continuation, in order
    skipped: list[Hashable] = field(default_factory=list)  # a continuation with no tokens or longer than the context
    truncated: list[Hashable] = field(default_factory=list)  # context cut from the left to fit


def choice_loglikelihoods(
    model: Any,
    tokenizer: Any,
    items: Sequence[tuple[Hashable, str, Sequence[str]]],
    context: int,
    batch_size: int = 8,
    on_batch: Callable[[int], None] | None = None,
) -> ChoiceScores:
    """Score every (key, context text, continuations) item as lm-eval's loglikelihood requests.

    Continuations are passed as lm-eval builds them (target delimiter included, e.g. " yes").
    Continuations of one context share its forward pass (bpb.score_rows). Items with a continuation
    that has no tokens or more tokens than `context` are skipped (logged, listed in the result).
    """
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows: list[Row] = []
    skipped: list[Hashable] = []
    truncated: list[Hashable] = []
    for key, text, continuations in items:
        pairs = [encode_pair(tokenizer, text, cont) for cont in continuations]
        if any(not cont or len(cont) > context for _, cont in pairs):
            skipped.append(key)
            continue
        cut = False
        for c, (ctx_ids, cont_ids) in enumerate(pairs):
            ids = ctx_ids + cont_ids
            if len(ids) > context + 1:  # lm-eval: (context + continuation)[-(max_length + 1):]
                ids = ids[-(context + 1) :]
                cut = True
            rows.append(Row(ids, len(ids) - len(cont_ids), (key, c)))
        if cut:
            truncated.append(key)
    if skipped:
        log.warning("%d item(s) skipped: a choice has no tokens or more than the model's %d", len(skipped), context)
    if truncated:
        log.warning(
            "%d context(s) longer than the model's %d tokens were cut from the left (as lm-eval does)",
            len(truncated),
            context,
        )
    # vocab_limit=None: lm-eval normalises over every output row of the model.
    scores = score_rows(model, rows, batch_size=batch_size, pad_id=pad, vocab_limit=None, on_batch=on_batch)
    n_choices = {key: len(conts) for key, _, conts in items}
    lls: dict[Hashable, list[float]] = {}
    for row, (nll, _) in zip(rows, scores):
        key, c = row.key
        lls.setdefault(key, [0.0] * n_choices[key])[c] = -nll
    return ChoiceScores(lls, skipped, truncated)


def mean_interval(values: np.ndarray, bootstrap: int = 1000, seed: int = 0) -> list[float] | None:
    """95 % percentile bootstrap interval of the mean of per-item values (0/1 correct, paired differences),
    resampling items; None when empty or bootstrap is 0."""
    if not bootstrap or not len(values):
        return None
    idx = np.random.default_rng(seed).integers(0, len(values), size=(bootstrap, len(values)))  # (B, n)
    means = values[idx].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]
