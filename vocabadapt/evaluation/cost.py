"""What a model costs per byte of text: multiply-adds, parameter memory, generation and scoring speed.

A new tokenizer pays when the model needs less compute per byte of text at equal quality. Per token,
a causal LM's matrix products are those of its linear layers: the body (attention and MLP
projections, every layer) and the head (hidden -> vocabulary). Counted on a meta-device model
(vocabadapt.audit.model_meta) from the config alone, so the count is exact for any architecture
transformers builds (grouped-query attention, gated MLPs, ...) and needs no weights:

    MACs/token = sum over linear layers of in_features x out_features   (body + head)
    MACs/byte  = MACs/token x tokens/byte            (tokens/byte of the model's own tokenizer)

The embedding lookup is no product, and the attention scores (q.k and the weighted sum, which grow
with the sequence length) are left out, the usual estimate (Kaplan et al. 2020, C = 2N).

Speed is measured, not estimated: greedy generation with the KV cache from the same prompts until
the same number of new bytes of text, and scoring (one forward pass over a prompt) in bytes per second.
Models are interleaved prompt by prompt in one run, on the threads given, so the ratios are fair on a
shared or throttling machine; absolute times depend on the machine, the ratios much less.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

import torch

log = logging.getLogger(__name__)


def _linear_macs(module: torch.nn.Module) -> int:
    """Multiply-adds per token of one module's own matrix product (0 for anything but a linear layer)."""
    w = getattr(module, "weight", None)
    if isinstance(module, torch.nn.Linear):
        return int(module.in_features * module.out_features)
    # GPT-2's Conv1D is a linear layer with its weight stored (in, out).
    if type(module).__name__ == "Conv1D" and w is not None and w.dim() == 2:
        return int(w.shape[0] * w.shape[1])
    return 0


def macs_per_token(model_or_config: Any) -> dict[str, int] | None:
    """Multiply-adds per token of the body's linear layers and of the head (the vocabulary projection).

    Args:
        model_or_config: a causal LM (its config is used) or a config.json dict.
    Returns:
        {"body", "head", "total", "head_rows", "hidden"}, or None when transformers cannot build the
        architecture on the meta device.
    """
    from ..audit.model_meta import meta_model

    cfg = model_or_config.config.to_dict() if hasattr(model_or_config, "config") else dict(model_or_config)
    model = meta_model(cfg)
    if model is None:
        return None
    head = model.get_output_embeddings()
    head_macs = 0
    head_rows = hidden = 0
    if head is not None:
        # (V, H) weight: one H-long dot product per vocabulary row, tied to the embedding or not.
        head_rows, hidden = int(head.weight.shape[0]), int(head.weight.shape[1])
        head_macs = head_rows * hidden
    body = sum(_linear_macs(m) for m in model.modules() if m is not head)
    return {"body": body, "head": head_macs, "total": body + head_macs, "head_rows": head_rows, "hidden": hidden}


def parameter_bytes(model: Any) -> int:
    """Memory of a loaded model's parameters and buffers, in bytes (a tied matrix counted once)."""
    seen: set[int] = set()
    total = 0
    for t in [*model.parameters(), *model.buffers()]:
        if t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        total += t.numel() * t.element_size()
    return total


def cost_per_byte(macs: dict[str, int] | None, bytes_per_token: float | None) -> dict[str, Any]:
    """MACs per byte of text (body, head, total) from MACs per token and the tokenizer's bytes per token."""
    if macs is None or not bytes_per_token:
        return {"macs_per_byte": None, "note": "no meta-device model or no bytes per token"}
    return {
        "macs_per_token": macs["total"],
        "body_macs_per_token": macs["body"],
        "head_macs_per_token": macs["head"],
        "bytes_per_token": bytes_per_token,
        "macs_per_byte": macs["total"] / bytes_per_token,
        "body_macs_per_byte": macs["body"] / bytes_per_token,
        "head_macs_per_byte": macs["head"] / bytes_per_token,
    }


def prompts_from(texts: Sequence[str], n: int, prompt_bytes: int) -> list[str]:
    """The first `prompt_bytes` bytes (cut back to a space) of the first n non-empty texts: the same text
    for every model, whatever its tokenizer."""
    out = []
    for t in texts:
        t = " ".join(t.split())
        if not t:
            continue
        cut = t.encode("utf-8")[:prompt_bytes].decode("utf-8", errors="ignore")
        if len(cut) < len(t) and " " in cut:
            cut = cut[: cut.rindex(" ")]
        out.append(cut)
        if len(out) >= n:
            break
    return out


def _eos_ids(tokenizer: Any, model: Any) -> list[int]:
    ids = {getattr(tokenizer, "eos_token_id", None), getattr(model.generation_config, "eos_token_id", None)}
    flat: set[int] = set()
    for i in ids:
        if isinstance(i, int):
            flat.add(i)
        elif isinstance(i, (list, tuple)):
            flat.update(x for x in i if isinstance(x, int))
    return sorted(flat)


class _BytesReached:
    """A transformers StoppingCriteria: stop once the new tokens decode to at least `n_bytes` bytes."""

    def __init__(self, tokenizer: Any, prompt_len: int, n_bytes: int):
        self.tokenizer, self.prompt_len, self.n_bytes = tokenizer, prompt_len, n_bytes

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        text = self.tokenizer.decode(input_ids[0, self.prompt_len :], skip_special_tokens=True)
        done = len(text.encode("utf-8")) >= self.n_bytes
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


@torch.no_grad()
def _generate_once(model: Any, tokenizer: Any, prompt: str, new_bytes: int) -> tuple[int, int, float]:
    """Greedy generation with the KV cache until `new_bytes` bytes of new text; (bytes, tokens, seconds)."""
    from transformers import StoppingCriteriaList

    device = next(model.parameters()).device
    ids = torch.tensor([tokenizer(prompt)["input_ids"]], device=device)  # (1, prompt tokens)
    eos = _eos_ids(tokenizer, model)
    t0 = time.perf_counter()
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        use_cache=True,
        max_new_tokens=4 * new_bytes,  # a token is at least one byte of text, except partial UTF-8 bytes
        stopping_criteria=StoppingCriteriaList([_BytesReached(tokenizer, ids.shape[1], new_bytes)]),
        suppress_tokens=eos or None,  # never stop early: every model writes the same number of bytes
        pad_token_id=eos[0] if eos else tokenizer.pad_token_id,
        num_beams=1,
    )
    seconds = time.perf_counter() - t0
    new = out[0, ids.shape[1] :]
    n_bytes = len(tokenizer.decode(new, skip_special_tokens=True).encode("utf-8"))
    return n_bytes, int(new.shape[0]), seconds


@torch.no_grad()
def _score_once(model: Any, tokenizer: Any, text: str) -> tuple[int, float]:
    """One forward pass over a prompt (as scoring it would be); (bytes, seconds)."""
    device = next(model.parameters()).device
    ids = torch.tensor([tokenizer(text)["input_ids"]], device=device)
    t0 = time.perf_counter()
    model(input_ids=ids, use_cache=False)
    return len(text.encode("utf-8")), time.perf_counter() - t0


def measure_speed(
    models: dict[str, tuple[Any, Any]],
    prompts: Sequence[str],
    new_bytes: int,
    threads: int | None = 1,
) -> dict[str, dict[str, Any]]:
    """Generation and scoring speed in bytes of text per second, models interleaved prompt by prompt.

    Args:
        models: {label: (model, tokenizer)}, all in memory (each keeps its own tokenizer).
        prompts: the same prompt texts for every model (prompts_from).
        new_bytes: bytes of new text every model generates per prompt (EOS suppressed).
        threads: torch threads while measuring (restored after); None leaves them.
    Returns:
        {label: {"generate_bytes_per_s", "generate_tokens_per_s", "generated_bytes", "generated_tokens",
        "generate_seconds", "score_bytes_per_s", "score_seconds", "prompts", "threads"}}.
    """
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    acc = {k: {"gen_bytes": 0, "gen_tokens": 0, "gen_s": 0.0, "score_bytes": 0, "score_s": 0.0} for k in models}
    try:
        for m, _ in models.values():
            m.eval()
        # A warm-up on the first prompt: the first call of a model pays for lazy initialisation.
        for model, tok in models.values():
            _generate_once(model, tok, prompts[0], min(8, new_bytes))
        for prompt in prompts:
            for label, (model, tok) in models.items():  # interleaved: machine load hits every model alike
                b, t, s = _generate_once(model, tok, prompt, new_bytes)
                a = acc[label]
                a["gen_bytes"] += b
                a["gen_tokens"] += t
                a["gen_s"] += s
                b, s = _score_once(model, tok, prompt)
                a["score_bytes"] += b
                a["score_s"] += s
    finally:
        torch.set_num_threads(before)
    out = {}
    for label, a in acc.items():
        out[label] = {
            "generate_bytes_per_s": a["gen_bytes"] / a["gen_s"] if a["gen_s"] else None,
            "generate_tokens_per_s": a["gen_tokens"] / a["gen_s"] if a["gen_s"] else None,
            "generated_bytes": a["gen_bytes"],
            "generated_tokens": a["gen_tokens"],
            "generate_seconds": a["gen_s"],
            "score_bytes_per_s": a["score_bytes"] / a["score_s"] if a["score_s"] else None,
            "score_seconds": a["score_s"],
            "prompts": len(prompts),
            "new_bytes_per_prompt": new_bytes,
            "threads": threads,
        }
        log.info(
            "speed %s: generation %.0f bytes/s (%d bytes, %d tokens), scoring %.0f bytes/s",
            label,
            out[label]["generate_bytes_per_s"] or 0,
            a["gen_bytes"],
            a["gen_tokens"],
            out[label]["score_bytes_per_s"] or 0,
        )
    return out


def ratios(values: dict[str, dict[str, Any]], reference: str, keys: Sequence[str]) -> dict[str, dict[str, float]]:
    """{model: {key: value / reference's value}} for every model but the reference, where both are numbers."""
    ref = values.get(reference) or {}
    out: dict[str, dict[str, float]] = {}
    for name, v in values.items():
        if name == reference:
            continue
        for k in keys:
            a, b = v.get(k), ref.get(k)
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
                out.setdefault(name, {})[k] = a / b
    return out
