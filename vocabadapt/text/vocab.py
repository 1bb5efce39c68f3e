"""Canonical token forms across tokenizer families, the identical-token map, special-token roles.

Tokenizers spell the same piece of text differently:

    family        word marker                 example ("the" as a whole word, "ing" inside a word)
    byte_level    `Ġ` = a space before (start) `Ġthe`, `ing`        GPT-2, GPT-NeoX, Llama-3
    sentencepiece `▁` = a space before (start) `▁the`, `ing`        Llama-2, Mistral (+ `<0x41>` bytes)
    wordpiece     `##` = continues a word      `the`, `##ing`       BERT
    end_of_word   `</w>` = ends a word          `the</w>`, `ing`     fairseq/Moses BPE (BioGPT)

A canonical form is (bytes the token spells, boundary), where `boundary` says whether the token
touches a word boundary on the side its family marks (True/False), or None when the family's marker
carries no information for it (byte-fallback pieces; punctuation after Moses splitting, which makes
every punctuation mark its own "word" whatever the spacing of the raw text). Two tokens are identical
when they spell the same bytes and their boundaries agree. Across a start-marking and an end-marking
family that pairs whole-word tokens with whole-word tokens (`Ġthe` ~ `the</w>`) and inner pieces
with inner pieces (`ing` ~ `ing`), which is as close to "same word position" as the two conventions
allow without context.

SentencePiece byte-fallback pieces (`<0x0A>`) spell their one byte with an unknown boundary, so they
match the source token for the same byte whatever its family (`Ċ` in byte-level BPE, `<0x0A>` in
another SentencePiece model). Added tokens that are not special (`tokenizer.add_tokens`, mined terms)
are literal text, not in their family's notation: a leading space marks a word start.

Special tokens (bos, eos, pad, unk) are never matched by spelling: they are matched by role. Other
special tokens (chat-template tokens such as `<|im_start|>`, `<|eot_id|>`) match a source special token
with exactly the same text.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable

from ..errors import InputError

log = logging.getLogger(__name__)

FAMILIES = ("byte_level", "sentencepiece", "wordpiece", "end_of_word")
ROLES = ("bos", "eos", "pad", "unk")
START_MARKING = ("byte_level", "sentencepiece")

_BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@dataclass(frozen=True)
class CanonicalToken:
    """What a token spells, independent of its family's notation."""

    text: bytes
    boundary: bool | None  # touches a word boundary on the family's marked side; None = unknown


@lru_cache(maxsize=1)
def byte_level_alphabet() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (the alphabet every byte-level BPE spells in)."""
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


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    return {c: b for b, c in byte_level_alphabet().items()}


def _byte_fallback(target_tok: Any, source_vocab: dict[str, int], tid: int) -> list[int] | None:
    """Source single-byte token ids for a byte-level target token, or None when either side is not byte-level."""
    alphabet = _byte_decoder()
    token = target_tok.convert_ids_to_tokens(tid)
    if not token or any(c not in alphabet for c in token):
        return None
    out = []
    for c in token:  # each character spells one byte; the source's token for that byte is the same character
        sid = source_vocab.get(c)
        if sid is None:
            return None
        out.append(sid)
    return out


def fvt_pieces(target_tokenizer: Any, source_tokenizer: Any, target_ids: list[int]) -> list[list[int]]:
    """Source token ids of each target token's decoded text ([] when it decodes to the empty string): FVT's
    segmentation (vocabadapt.init.fvt; the align stage's fvt fallback uses the same one).

    Byte-level BPE tokens that hold part of a multi-byte UTF-8 character decode to U+FFFD; when both
    tokenizers are byte-level those are mapped byte by byte onto the source's single-byte tokens instead
    of re-tokenising the replacement character.

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


def detect_family(vocab: dict[str, int]) -> str:
    """Guess a vocabulary's family from its word markers (the most frequent marker wins).

    Raises:
        InputError: the vocabulary is empty.
    """
    if not vocab:
        raise InputError("the tokenizer has an empty vocabulary; check the tokenizer files")
    counts = {"byte_level": 0, "sentencepiece": 0, "wordpiece": 0, "end_of_word": 0}
    for tok in vocab:
        if tok.startswith("Ġ"):
            counts["byte_level"] += 1
        elif tok.startswith("▁"):
            counts["sentencepiece"] += 1
        elif tok.startswith("##"):
            counts["wordpiece"] += 1
        elif tok.endswith("</w>"):
            counts["end_of_word"] += 1
    best = max(counts, key=lambda k: counts[k])
    if counts[best] == 0:
        # No markers at all (a character-level or whitespace-free vocabulary): spelling alone.
        log.warning("tokenizer vocabulary has no word markers; treating it as byte-level without spaces")
        return "byte_level"
    return best


def _is_punctuation(text: str) -> bool:
    return bool(text) and all(unicodedata.category(c)[0] in "PS" for c in text)


def canonical_token(token: str, family: str) -> CanonicalToken:
    """The canonical form of one vocabulary entry of the given family."""
    if family == "byte_level":
        dec = _byte_decoder()
        if token and all(c in dec for c in token):
            raw = bytes(dec[c] for c in token)
            if raw.startswith(b" "):
                return CanonicalToken(raw[1:], True)
            return CanonicalToken(raw, False)
        # An added token written in plain text (not byte-mapped).
        return CanonicalToken(token.encode("utf-8"), False)
    if family == "sentencepiece":
        m = _BYTE_PIECE.match(token)
        if m:
            byte = int(m.group(1), 16)
            # The space byte is what a lone word marker spells (`▁`, `Ġ`): the same canonical form.
            return CanonicalToken(b"", True) if byte == 0x20 else CanonicalToken(bytes([byte]), None)
        if token.startswith("▁"):
            return CanonicalToken(token[1:].replace("▁", " ").encode("utf-8"), True)
        return CanonicalToken(token.replace("▁", " ").encode("utf-8"), False)
    if family == "wordpiece":
        if token.startswith("##") and len(token) > 2:
            return CanonicalToken(token[2:].encode("utf-8"), False)
        return CanonicalToken(token.encode("utf-8"), True)
    if family == "end_of_word":
        if token.endswith("</w>") and len(token) > 4:
            text = token[:-4]
            return CanonicalToken(text.encode("utf-8"), None if _is_punctuation(text) else True)
        return CanonicalToken(token.encode("utf-8"), None if _is_punctuation(token) else False)
    raise InputError(f"unknown tokenizer family '{family}' (valid: {', '.join(FAMILIES)})")


def canonical_added(token: str) -> CanonicalToken:
    """The canonical form of a non-special added token: literal text, a leading space = word start."""
    raw = token.encode("utf-8")
    if raw.startswith(b" ") and len(raw) > 1:
        return CanonicalToken(raw[1:], True)
    return CanonicalToken(raw, False)


# --------------------------------------------------------------------------------------------------
# tokenizer-level helpers


def vocab_list(tokenizer: Any) -> list[str | None]:
    """Token string of every id 0..len(tokenizer)-1 (None for a hole in the id space)."""
    n = len(tokenizer)
    out: list[str | None] = [None] * n
    for tok, i in tokenizer.get_vocab().items():
        if 0 <= i < n:
            out[i] = tok
    return out


def special_ids(tokenizer: Any) -> set[int]:
    """Ids of every special token (roles plus added tokens flagged special)."""
    ids = set(int(i) for i in getattr(tokenizer, "all_special_ids", []) or [])
    for i, added in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).items():
        if getattr(added, "special", False):
            ids.add(int(i))
    ids.update(special_roles(tokenizer).values())
    return ids


def special_roles(tokenizer: Any) -> dict[str, int]:
    """{role: id} for bos/eos/pad/unk.

    Taken from the tokenizer's own attributes; when it declares none (a bare tokenizer.json, as
    GPT-NeoX ships), inferred from its added special tokens by their conventional spellings
    (`<|endoftext|>` is GPT's bos and eos, `<|padding|>` its pad). Empty when nothing matches.
    """
    roles: dict[str, int] = {}
    for role in ROLES:
        i = getattr(tokenizer, f"{role}_token_id", None)
        if isinstance(i, int) and i >= 0:
            roles[role] = i
    if roles:
        return roles
    added = {
        int(i): str(a)
        for i, a in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).items()
        if getattr(a, "special", False)
    }
    for i in sorted(added):
        name = added[i].lower()
        if "endoftext" in name or name in ("</s>", "<eos>", "<|eos|>"):
            roles.setdefault("eos", i)
            if "endoftext" in name:
                roles.setdefault("bos", i)
        elif name in ("<s>", "<bos>", "<|bos|>") or "startoftext" in name or "begin_of_text" in name:
            roles.setdefault("bos", i)
        elif "pad" in name:
            roles.setdefault("pad", i)
        elif "unk" in name:
            roles.setdefault("unk", i)
    return roles


def added_ids(tokenizer: Any) -> set[int]:
    """Ids of added tokens that are not special (literal text, see canonical_added)."""
    return {
        int(i)
        for i, a in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).items()
        if not getattr(a, "special", False)
    }


def canonical_vocab(tokenizer: Any) -> tuple[str, list[CanonicalToken | None]]:
    """(family, canonical form per id); special tokens and holes are None."""
    tokens = vocab_list(tokenizer)
    added = added_ids(tokenizer)
    family = detect_family({t: i for i, t in enumerate(tokens) if t is not None and i not in added})
    specials = special_ids(tokenizer)
    forms = [
        None if (t is None or i in specials) else canonical_added(t) if i in added else canonical_token(t, family)
        for i, t in enumerate(tokens)
    ]
    return family, forms


def identical_from_forms(
    target_forms: Iterable[CanonicalToken | None], source_forms: Iterable[CanonicalToken | None]
) -> dict[int, int]:
    """Target id -> source id for tokens spelling the same bytes with agreeing boundaries.

    When a target boundary is unknown, an attached source piece (False) is preferred to a word-start
    one (True): punctuation follows the previous word without a space in raw text. Ties go to the
    smallest source id, so the map is deterministic.
    """
    by_text: dict[bytes, dict[bool | None, int]] = {}
    for sid, form in enumerate(source_forms):
        if form is None:
            continue
        slot = by_text.setdefault(form.text, {})
        slot.setdefault(form.boundary, sid)  # ascending ids: the first one stays
    out: dict[int, int] = {}
    for tid, form in enumerate(target_forms):
        if form is None:
            continue
        found = by_text.get(form.text)
        if not found:
            continue
        order = (False, True, None) if form.boundary is None else (form.boundary, None)
        for b in order:
            if b in found:
                out[tid] = found[b]
                break
    return out


def identical_tokens(target_tokenizer: Any, source_tokenizer: Any) -> dict[int, int]:
    """Target id -> source id of identical tokens (special tokens excluded: they match by role)."""
    _, tf = canonical_vocab(target_tokenizer)
    _, sf = canonical_vocab(source_tokenizer)
    return identical_from_forms(tf, sf)


def _special_texts(tokenizer: Any) -> dict[str, int]:
    """{text: id} of every special token (ascending ids: the first id of a text wins)."""
    ids = sorted(special_ids(tokenizer))
    out: dict[str, int] = {}
    for i, text in zip(ids, tokenizer.convert_ids_to_tokens(ids) if ids else []):
        if text is not None:
            out.setdefault(str(text), i)
    return out


def special_map(target_tokenizer: Any, source_tokenizer: Any) -> tuple[dict[int, int], list[str]]:
    """Target special id -> source special id, and notes on roles that could not be matched.

    bos/eos/pad/unk match by role. A target role the source lacks falls back to the source eos (a
    sequence boundary either way) when there is one; otherwise that special token is left to the
    fallback and noted. Every other target special token (chat-template tokens) matches the source
    special token with the same text, when there is one.
    """
    t_roles = special_roles(target_tokenizer)
    s_roles = special_roles(source_tokenizer)
    notes: list[str] = []
    if not t_roles:
        notes.append("target tokenizer declares no special tokens (bos/eos/pad/unk)")
    if not s_roles:
        notes.append("source tokenizer declares no special tokens (bos/eos/pad/unk)")
    out: dict[int, int] = {}
    for role in ROLES:
        if role not in t_roles:
            continue
        tid = t_roles[role]
        if tid in out:
            continue
        if role in s_roles:
            out[tid] = s_roles[role]
        elif "eos" in s_roles:
            out[tid] = s_roles["eos"]
            notes.append(f"target {role} mapped to the source eos (the source has no {role})")
        else:
            notes.append(f"target {role} has no source counterpart; it takes the fallback")
    source_texts = _special_texts(source_tokenizer)
    for text, tid in _special_texts(target_tokenizer).items():
        if tid not in out and text in source_texts:
            out[tid] = source_texts[text]
    return out, notes
