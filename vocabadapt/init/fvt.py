"""FVT row initialisation: a target token's row is the mean of the rows of its source-tokenizer pieces.

Gee et al., "Fast Vocabulary Transfer for Language Model Compression" (EMNLP 2022, industry track):
decode the target token to text, tokenise that text with the source tokenizer (no special tokens) and
average the pieces' rows. Every non-special, non-identical target token is recomputed here, whatever
the mapping said; special and identical tokens keep their mapping entry (a copy). A token that decodes
to nothing gets the mean row.

Byte-level BPE tokens that hold part of a multi-byte UTF-8 character decode to U+FFFD; when both
tokenizers are byte-level those are mapped byte by byte onto the source's single-byte tokens instead
of re-tokenising the replacement character.
"""

from __future__ import annotations

import logging
from typing import Any

from . import InitContext, Recipe, entry

log = logging.getLogger(__name__)


def _byte_level_alphabet() -> dict[int, str]:
    """GPT-2's byte -> printable character table (the byte-level BPE alphabet)."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:  # unprintable bytes are moved past 255
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _byte_fallback(target_tok: Any, source_vocab: dict[str, int], tid: int) -> list[int] | None:
    """Source single-byte token ids for a byte-level target token, or None when either side is not byte-level."""
    byte_to_char = _byte_level_alphabet()
    char_to_byte = {c: b for b, c in byte_to_char.items()}
    token = target_tok.convert_ids_to_tokens(tid)
    if not token or any(c not in char_to_byte for c in token):
        return None
    out = []
    for c in token:
        sid = source_vocab.get(byte_to_char[char_to_byte[c]])
        if sid is None:
            return None
        out.append(sid)
    return out


def fvt_pieces(target_tokenizer: Any, source_tokenizer: Any, target_ids: list[int]) -> list[list[int]]:
    """Source token ids of each target token's decoded text ([] when it decodes to the empty string).

    Args:
        target_tokenizer, source_tokenizer: transformers tokenizers.
        target_ids: the target ids to re-tokenise.
    Returns:
        one list of source ids per target id, in order.
    """
    texts = target_tokenizer.batch_decode(
        [[t] for t in target_ids], skip_special_tokens=False, clean_up_tokenization_spaces=False
    )
    encoded = source_tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    source_vocab = source_tokenizer.get_vocab()
    out: list[list[int]] = []
    for tid, text, ids in zip(target_ids, texts, encoded):
        if text == "":
            out.append([])
            continue
        if "\ufffd" in text:
            fallback = _byte_fallback(target_tokenizer, source_vocab, tid)
            if fallback:
                ids = fallback
        out.append(list(ids))
    return out


def recipe(ctx: InitContext) -> Recipe:
    n = ctx.mapping.target_vocab_size
    special = ctx.special_ids()
    keep = {tid for tid in range(n) if tid in special or ctx.mapping.methods[tid] == "identical"}
    todo = [tid for tid in range(n) if tid not in keep]
    pieces = dict(zip(todo, fvt_pieces(ctx.target_tokenizer, ctx.source_tokenizer, todo)))
    labels, ids, weights = [], [], []
    empty = 0
    for tid in range(n):
        if tid in keep:
            label, i, w = entry(ctx, tid)
        elif pieces[tid]:
            i = pieces[tid]
            label, w = "fvt", [1.0 / len(i)] * len(i)
        else:
            label, i, w = "mean", [], []
            empty += 1
        labels.append(label)
        ids.append(i)
        weights.append(w)
    if empty:
        log.info("fvt: %d target tokens decode to empty text; they get the mean row", empty)
    ctx.info["fvt_empty_decodes"] = empty
    return Recipe(labels, ids, weights)
