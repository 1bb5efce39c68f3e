"""Tokenizer efficiency and what the vocabulary costs.

A domain tokenizer earns its keep when it splits domain text into fewer tokens (more bytes per
token) by more than its larger vocabulary adds in parameters and per-token compute. These functions
measure both sides on the held-out text:

    efficiency(tokenizer, texts, words)  bytes/token, tokens/word, share of frequent domain words
                                          kept in one token or two tokens
    model_facts(model)                    embedding/output rows, hidden size, tied or not, parameters
    vocab_cost(src, tgt, src_bpt, tgt_bpt) parameter change and per-token / per-byte compute change

Per-token forward compute is estimated as 2 FLOPs per non-embedding parameter plus 2 * V * H for the
output projection (the input embedding is a lookup, and the attention term that grows with sequence
length is left out, which is the usual estimate, e.g. Kaplan et al. 2020). Per byte it is divided by
bytes per token.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

from .bpb import encode

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9\-]{2,}")


def frequent_words(texts: Iterable[str], k: int = 1000) -> list[str]:
    """The k most frequent words (letters first, >= 3 characters, case kept) of the texts."""
    counts: Counter = Counter()
    for t in texts:
        counts.update(_WORD.findall(t))
    return [w for w, _ in counts.most_common(k)]


def read_terms(path: Path, k: int = 1000) -> list[str]:
    """Terms from the tokenize stage's terms/terms.txt (tab-separated, '#' comments, a header row)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#") or line.startswith("term\t"):
            continue
        out.append(line.split("\t")[0])
        if len(out) >= k:
            break
    return out


def efficiency(tokenizer: Any, texts: Sequence[str], words: Sequence[str]) -> dict[str, Any]:
    """Bytes per token, tokens per whitespace word and how the domain words are split.

    Words are tokenized as they appear inside running text, with a leading space.
    """
    n_bytes = n_tokens = n_words = 0
    for t in texts:
        n_bytes += len(t.encode("utf-8"))
        n_tokens += len(encode(tokenizer, t))
        n_words += len(t.split())
    lengths = [len(encode(tokenizer, " " + w)) for w in words]
    n = len(lengths) or 1
    return {
        "vocab_size": len(tokenizer),
        "bytes": n_bytes,
        "tokens": n_tokens,
        "words": n_words,
        "bytes_per_token": n_bytes / n_tokens if n_tokens else None,
        "tokens_per_word": n_tokens / n_words if n_words else None,
        "domain_words": len(lengths),
        "domain_words_one_token": sum(x == 1 for x in lengths) / n,
        "domain_words_two_tokens": sum(x == 2 for x in lengths) / n,
        "domain_words_at_most_two_tokens": sum(x <= 2 for x in lengths) / n,
        "domain_word_mean_tokens": sum(lengths) / n,
    }


def model_facts(model: Any) -> dict[str, Any]:
    """Sizes of a causal LM's embedding and output matrices and of everything else."""
    emb = model.get_input_embeddings().weight  # (V, H)
    out_layer = model.get_output_embeddings()
    out_w = out_layer.weight if out_layer is not None else emb  # (V_out, H)
    tied = out_w.data_ptr() == emb.data_ptr()
    seen: set[int] = set()
    total = 0
    for p in model.parameters():  # parameters() already yields a tied tensor once
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel()
    emb_params = emb.numel()
    out_params = 0 if tied else out_w.numel()
    return {
        "vocab_rows": int(emb.shape[0]),
        "output_rows": int(out_w.shape[0]),
        "hidden": int(emb.shape[1]),
        "tied": bool(tied),
        "total_params": int(total),
        "embedding_params": int(emb_params),
        "output_params": int(out_params),
        "non_embedding_params": int(total - emb_params - out_params),
    }


def flops_per_token(facts: dict[str, Any]) -> float:
    """2 * non-embedding parameters + 2 * V * H (the output projection), per token."""
    return 2.0 * facts["non_embedding_params"] + 2.0 * facts["output_rows"] * facts["hidden"]


def vocab_cost(
    source: dict[str, Any],
    target: dict[str, Any],
    source_bytes_per_token: float | None,
    target_bytes_per_token: float | None,
) -> dict[str, Any]:
    """Parameter change and per-token / per-byte compute change from source to target model."""
    f_src, f_tgt = flops_per_token(source), flops_per_token(target)
    out: dict[str, Any] = {
        "embedding_params_change": target["embedding_params"] - source["embedding_params"],
        "output_params_change": target["output_params"] - source["output_params"],
        "total_params_change": target["total_params"] - source["total_params"],
        "total_params_change_pct": 100.0 * (target["total_params"] / source["total_params"] - 1.0),
        "flops_per_token_source": f_src,
        "flops_per_token_target": f_tgt,
        "flops_per_token_change_pct": 100.0 * (f_tgt / f_src - 1.0),
    }
    if source_bytes_per_token and target_bytes_per_token:
        per_byte_src = f_src / source_bytes_per_token
        per_byte_tgt = f_tgt / target_bytes_per_token
        out["tokens_per_byte_change_pct"] = 100.0 * (source_bytes_per_token / target_bytes_per_token - 1.0)
        out["flops_per_byte_change_pct"] = 100.0 * (per_byte_tgt / per_byte_src - 1.0)
        out["fewer_tokens_pay_for_vocabulary"] = bool(per_byte_tgt <= per_byte_src)
    return out
