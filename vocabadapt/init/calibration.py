"""What initialisers that look at the source model's behaviour read: corpus counts and hidden states.

An initialiser with a `refine` step (Initialiser.refine) receives `Calibration` in its context:
training text (capped by alignment.calibration_bytes) and a token budget (alignment.calibration_tokens)
for forward passes of the source model. Everything here is deterministic: texts in corpus order, the
model in eval mode, float32 on the CPU unless a GPU is present.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from . import Calibration

__all__ = ["Calibration", "head_inputs", "token_counts"]

log = logging.getLogger(__name__)


def token_counts(tokenizer: Any, texts: Sequence[str], vocab_size: int, batch: int = 256) -> torch.Tensor:
    """(vocab_size,) int64: how often each id occurs in the tokenised texts (no special tokens added)."""
    counts = torch.zeros(vocab_size, dtype=torch.int64)
    for a in range(0, len(texts), batch):
        enc = tokenizer(list(texts[a : a + batch]), add_special_tokens=False, verbose=False)["input_ids"]
        flat = torch.tensor([i for ids in enc for i in ids], dtype=torch.long)
        if len(flat):
            counts += torch.bincount(flat, minlength=vocab_size)[:vocab_size]
    return counts


@torch.no_grad()
def head_inputs(model: Any, id_lists: Sequence[Sequence[int]], max_tokens: int, window: int = 512) -> torch.Tensor:
    """(N, hidden) float32: what the output head receives (the final hidden state), N <= max_tokens.

    Read with a forward hook on `get_output_embeddings()`, so no architecture's layer names are needed.
    Each document is cut into windows of `window` tokens, in order, until max_tokens are collected.
    """
    head = model.get_output_embeddings()
    device = next(model.parameters()).device
    seen: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, args, _out: seen.append(args[0].detach()[0].float().cpu()))
    got = 0
    try:
        for ids in id_lists:
            for a in range(0, len(ids), window):
                chunk = list(ids[a : a + window])[: max_tokens - got]
                if not chunk:
                    break
                model(input_ids=torch.tensor([chunk], device=device))
                got += len(chunk)
                if got >= max_tokens:
                    break
            if got >= max_tokens:
                break
    finally:
        hook.remove()
    if not seen:
        return torch.zeros(0, head.weight.shape[1])
    return torch.cat(seen)[:max_tokens]
