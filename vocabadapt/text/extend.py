"""Extend a source tokenizer with new tokens learned on the corpus, instead of replacing it.

A from-scratch target tokenizer cuts text the source model knew as one token into pieces it never saw
(the "resplit" cost of benchmarks/bpb_split.py, out of any row initialiser's reach). An extension keeps
every source token, id and merge, and appends merges that join *finished* source tokens:

1. The corpus is encoded by the source tokenizer itself. Its tokens, grouped into the words its
   pre-tokenizer keeps apart, are the units new merges may join: merges never cross a pre-tokenizer
   split, never join a special or added token or a SentencePiece byte-fallback piece, and never join two
   characters of classes (letter, digit, space, other) that no source token joins: no digit after a digit
   where the source keeps digits single (SmolLM2, Llama 2), no letter after punctuation where the source's
   trainer split them by script (SentencePiece's Mistral and Llama 2).
2. Each source token is mapped to one private symbol (a code point), each word to a string of symbols,
   and the `tokenizers` library's Rust BPE trainer learns merges over those strings. Its memory is its
   table of distinct words; the corpus is streamed in batches.
3. The learned merges are appended after the source's merges with new ids after the source's. A BPE
   applies merges by rank, so every source merge that applies is applied before any new one: on text the
   new merges do not touch the extension gives exactly the source's ids, and every target token boundary
   is a source token boundary.

A merge whose result already spells a source token would hand a source id to a different segmentation of
the same bytes; it is dropped, with every later merge built on it.

Families: byte-level BPE (GPT-2, SmolLM2, Llama 3 with `ignore_merges`) and SentencePiece BPE with byte
fallback in a tokenizer.json (Llama 2, Mistral); others raise InputError naming what to use instead.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from ..errors import InputError
from .vocab import canonical_token, detect_family

log = logging.getLogger(__name__)

# Symbols: source id i is the code point _SYMBOL_BASE + i, shifted past the UTF-16 surrogates. None of
# these is whitespace, so the trainer's WhitespaceSplit keeps every symbol string one word.
_SYMBOL_BASE = 0x4E00
_SURROGATES = (0xD800, 0xE000)
_MAX_SOURCE_IDS = 0x110000 - _SYMBOL_BASE - (_SURROGATES[1] - _SURROGATES[0])
_BYTE_FALLBACK = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")
# Extra merges asked of the trainer for those dropped afterwards (aliases, digit rule).
_MARGIN = 0.25


@dataclass
class Extension:
    """An extended tokenizer and what was learned.

    Attributes:
        tokenizer: the source tokenizer plus the new tokens (a transformers fast tokenizer).
        new_tokens: the new tokens' vocabulary strings, in id order (ids first_new_id, first_new_id + 1, ...).
        first_new_id: the first new id (the source's largest id + 1).
        requested: models.target_tokenizer.extend.new_tokens.
        dropped: merges the trainer proposed that were not kept, by reason.
    """

    tokenizer: Any
    new_tokens: list[str]
    first_new_id: int
    requested: int
    family: str
    dropped: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "requested": self.requested,
            "learned": len(self.new_tokens),
            "first_new_id": self.first_new_id,
            "dropped_merges": dict(sorted(self.dropped.items())),
            "examples": self.new_tokens[:20],
        }


def _symbol(i: int) -> int:
    code = _SYMBOL_BASE + i
    return code + (_SURROGATES[1] - _SURROGATES[0]) if code >= _SURROGATES[0] else code


def _source_id(symbol: str) -> int:
    code = ord(symbol)
    if code >= _SURROGATES[1]:
        code -= _SURROGATES[1] - _SURROGATES[0]
    return code - _SYMBOL_BASE


def backend_json(tokenizer: Any, name: str) -> dict[str, Any]:
    """The tokenizer.json of a fast tokenizer whose model can be extended (a BPE with merges).

    Raises:
        InputError: a slow tokenizer, a model that is not a BPE (Unigram, WordPiece, WordLevel), a BPE
            with word-suffix/prefix notation, or one without merges; the message names the tokenizer.
    """
    from .tokenizers import backend_of

    other = "use models.target_tokenizer: {train: {...}} or a tokenizer file instead"
    backend = backend_of(tokenizer)
    if backend is None:
        raise InputError(
            f"{name}: a slow (Python-only) tokenizer cannot be extended: extension appends merges to a "
            f"tokenizer.json BPE; {other}"
        )
    spec = json.loads(backend.to_str())
    model = spec.get("model") or {}
    kind = model.get("type")
    if kind != "BPE":
        raise InputError(
            f"{name}: its tokenizer model is {kind}, which has no merges to extend (extension supports byte-level "
            f"BPE and SentencePiece BPE in a tokenizer.json); {other}"
        )
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        raise InputError(
            f"{name}: a BPE with word-piece notation (continuing_subword_prefix / end_of_word_suffix) cannot be "
            f"extended this way; {other}"
        )
    if not model.get("merges"):
        raise InputError(f"{name}: its BPE lists no merges, so new merges cannot be appended to it; {other}")
    return spec


CLASSES = "LNSP"


def char_class(c: str) -> str:
    """L letter (or mark), N digit, S whitespace, P anything else."""
    if c.isdigit():
        return "N"
    if c.isspace():
        return "S"
    return "L" if unicodedata.category(c)[0] in "LM" else "P"


def transitions(text: str) -> set[tuple[str, str]]:
    """The class pairs of adjacent characters that a pre-tokenizer may keep apart: every change of class,
    and a digit after a digit (SmolLM2 and Llama 2 keep digits single)."""
    out = set()
    for a, b in zip(text, text[1:]):
        pair = (char_class(a), char_class(b))
        if pair[0] != pair[1] or pair == ("N", "N"):
            out.add(pair)
    return out


@dataclass(frozen=True)
class _Rules:
    """Per source id, what new merges may do with it."""

    isolated: np.ndarray  # (ids,) bool: joins nothing (special, added, byte fallback; digits the source keeps single)
    starts_word: np.ndarray  # (ids,) bool: a SentencePiece word-start piece begins a new word
    texts: list[str]  # surface text per id ("" where there is none)
    seen: frozenset[tuple[str, str]]  # the transitions some regular source token has
    first: np.ndarray  # (ids,) int: class index (CLASSES) of the token's first character
    last: np.ndarray  # (ids,) int: class index of its last character
    joins: np.ndarray  # (classes, classes) bool: may a token ending in class a be followed by one starting in b

    def allows(self, text: str) -> bool:
        """A new token may hold only the character-class transitions the source's own tokens hold: where no
        source token joins a letter to punctuation (SentencePiece's script split) or a digit to a digit, no
        new one does either."""
        return transitions(text) <= self.seen


def _rules(vocab: dict[str, int], added: set[int], n_ids: int, family: str, byte_fallback: bool) -> _Rules:
    texts = [""] * n_ids
    isolated = np.zeros(n_ids, dtype=bool)
    starts_word = np.zeros(n_ids, dtype=bool)
    for tok, i in vocab.items():
        form = canonical_token(tok, family)
        texts[i] = (" " if form.boundary else "") + form.text.decode("utf-8", "replace")
        if family == "sentencepiece":
            starts_word[i] = tok.startswith("▁")
            isolated[i] = byte_fallback and bool(_BYTE_FALLBACK.match(tok))
    for i in added:
        isolated[i] = True
    for i, t in enumerate(texts):
        isolated[i] |= not t  # an id with no text (a gap in the vocabulary) joins nothing
    seen = frozenset().union(*(transitions(t) for i, t in enumerate(texts) if not isolated[i]))
    first = np.array([CLASSES.index(char_class(t[0])) if t else 0 for t in texts], dtype=np.int64)
    last = np.array([CLASSES.index(char_class(t[-1])) if t else 0 for t in texts], dtype=np.int64)
    # Same class is no transition (a word goes on), except a digit after a digit (see transitions).
    joins = np.array([[(a == b != "N") or (a, b) in seen for b in CLASSES] for a in CLASSES], dtype=bool)
    return _Rules(isolated, starts_word, texts, seen, first, last, joins)


def _symbol_lines(backend: Any, texts: Iterable[str], rules: _Rules, batch_size: int) -> Iterator[str]:
    """Per batch of documents, one string of space-separated words, each word its tokens' symbols."""
    from .tokenizers import batches

    symbols = np.array([_symbol(i) for i in range(len(rules.isolated))], dtype=np.uint32)
    space = np.array([0x20], dtype=np.uint32)
    for batch in batches(texts, batch_size):
        parts = []
        for enc in backend.encode_batch(batch, add_special_tokens=False):
            ids = np.asarray(enc.ids, dtype=np.int64)
            if ids.size < 2:
                continue
            words = np.asarray([-1 if w is None else w for w in enc.word_ids], dtype=np.int64)
            # An isolated token becomes a separator itself; a separator is also inserted before token k
            # when the pre-tokenizer starts a new word there, a SentencePiece word-start piece begins, or
            # the two tokens meet at characters of classes no source token joins.
            sym = np.where(rules.isolated[ids], 0x20, symbols[ids]).astype(np.uint32)
            cut = (words[1:] != words[:-1]) | rules.starts_word[ids[1:]]
            cut |= ~rules.joins[rules.last[ids[:-1]], rules.first[ids[1:]]]  # classes no source token joins
            parts.append(np.insert(sym, np.nonzero(cut)[0] + 1, 0x20))
            parts.append(space)
        if parts:
            yield np.concatenate(parts).astype("<u4").tobytes().decode("utf-32-le")


def learn_extension(
    tokenizer: Any,
    texts: Iterable[str],
    new_tokens: int,
    *,
    min_frequency: int = 2,
    name: str = "source tokenizer",
    batch_size: int = 1000,
) -> Extension:
    """Learn `new_tokens` merges over the source tokenizer's own tokens on `texts` and append them.

    Args:
        tokenizer: the source tokenizer (a transformers fast tokenizer with a BPE model).
        texts: training documents (corpus/train only), streamed.
        new_tokens: how many tokens to add.
        min_frequency: a pair of tokens seen fewer times is never merged.
        name: the tokenizer's path or id, for messages.
        batch_size: documents per encoder batch.
    Returns:
        the Extension; fewer than `new_tokens` tokens when the corpus supplies fewer pairs (logged).
    Raises:
        InputError: the family cannot be extended (see backend_json), new_tokens < 1, or the corpus
            supplies no pair at min_frequency.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from .tokenizers import backend_of
    from .vocab import added_ids

    if new_tokens < 1:
        raise InputError(f"models.target_tokenizer.extend.new_tokens must be >= 1 (got {new_tokens})")
    spec = backend_json(tokenizer, name)
    model = spec["model"]
    vocab: dict[str, int] = model["vocab"]
    added = {int(t["id"]) for t in spec.get("added_tokens", [])} | added_ids(tokenizer)
    n_ids = max(max(vocab.values()), max(added, default=-1)) + 1
    if n_ids > _MAX_SOURCE_IDS:
        raise InputError(f"{name}: {n_ids} ids are more than extension's symbol table holds ({_MAX_SOURCE_IDS})")
    family = detect_family(vocab)
    rules = _rules(vocab, added, n_ids, family, bool(model.get("byte_fallback")))

    # The trainer's alphabet is every source id's symbol, so its vocabulary = n_ids + merges learned.
    wanted = new_tokens + int(new_tokens * _MARGIN) + 16
    trainer_model = Tokenizer(models.BPE())
    trainer_model.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(
        vocab_size=n_ids + wanted,
        min_frequency=min_frequency,
        initial_alphabet=[chr(_symbol(i)) for i in range(n_ids)],
        show_progress=False,
    )
    lines = _symbol_lines(backend_of(tokenizer), texts, rules, batch_size)
    trainer_model.train_from_iterator(lines, trainer)
    proposed = json.loads(trainer_model.to_str())["model"]["merges"]
    kept, dropped = _keep_merges(proposed, vocab, rules, n_ids, new_tokens)
    if not kept:
        raise InputError(
            f"the training corpus supplies no pair of {name} tokens seen at least {min_frequency} times: nothing to "
            "add; use more text or lower models.target_tokenizer.extend.min_frequency"
        )
    if len(kept) < new_tokens:
        log.warning(
            "extension: learned %d new tokens of the %d asked (the corpus supplies no more pairs at min_frequency %d)",
            len(kept),
            new_tokens,
            min_frequency,
        )
    extended = _append_merges(tokenizer, spec, kept, n_ids)
    ext = Extension(extended, [a + b for a, b in kept], n_ids, new_tokens, family, dropped)
    _check_source_ids(extended, vocab, name)
    log.info("extension: %d new tokens after id %d (%s)", len(kept), n_ids - 1, family)
    return ext


def _keep_merges(
    proposed: list[Any], vocab: dict[str, int], rules: _Rules, n_ids: int, new_tokens: int
) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """The trainer's merges (in symbol strings, best first) that make a new token, as vocabulary strings.

    A merge is dropped when it is built on a dropped merge, spells a token the tokenizer has, or joins
    characters no source token joins (rules.allows). Returns (the first `new_tokens` kept merges as
    (left, right) vocabulary strings, {reason: count} of the dropped ones).
    """
    strings = {chr(_symbol(i)): t for t, i in vocab.items()}  # symbol string -> vocabulary string
    texts_of = {chr(_symbol(i)): rules.texts[i] for i in range(n_ids)}
    existing = set(vocab)
    kept: list[tuple[str, str]] = []
    dropped: dict[str, int] = {}
    for merge in proposed:
        if len(kept) == new_tokens:
            break
        left, right = merge.split(" ") if isinstance(merge, str) else merge
        if left not in strings or right not in strings:  # built on a dropped merge
            dropped["built on a dropped merge"] = dropped.get("built on a dropped merge", 0) + 1
            continue
        text = texts_of[left] + texts_of[right]
        token = strings[left] + strings[right]
        reason = None
        if token in existing:
            reason = "spells a token the tokenizer has"
        elif not rules.allows(text):
            reason = "joins characters no source token joins"
        if reason:
            dropped[reason] = dropped.get(reason, 0) + 1
            continue
        strings[left + right], texts_of[left + right] = token, text
        existing.add(token)
        kept.append((strings[left], strings[right]))
    return kept, dropped


def _append_merges(tokenizer: Any, spec: dict[str, Any], merges: list[tuple[str, str]], first_id: int) -> Any:
    """A copy of `tokenizer` (its config, special tokens and chat template) with `merges` appended and
    their results given ids first_id, first_id + 1, ..."""
    from transformers import AutoTokenizer

    spec = json.loads(json.dumps(spec))  # a deep copy
    model = spec["model"]
    as_strings = isinstance(model["merges"][0], str)
    # Added tokens outside the model's vocabulary (GPT-NeoX's whitespace runs, chat tokens added later) get
    # their ids from the model's vocabulary size when the file is read back, which the new tokens raise:
    # listing them in the vocabulary at their own ids keeps them. No merge produces them, and the added-token
    # pass splits them off before the model sees any text, so no segmentation changes.
    for added in spec.get("added_tokens", []):
        model["vocab"].setdefault(added["content"], added["id"])
    for k, (a, b) in enumerate(merges):
        model["vocab"][a + b] = first_id + k
        model["merges"].append(f"{a} {b}" if as_strings else [a, b])
    with tempfile.TemporaryDirectory(prefix="vocabadapt-extend-") as tmp:
        tokenizer.save_pretrained(tmp)
        Path(tmp, "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
        for stale in ("vocab.json", "merges.txt", "tokenizer.model"):  # the slow files would disagree
            Path(tmp, stale).unlink(missing_ok=True)
        return AutoTokenizer.from_pretrained(tmp)


def _check_source_ids(extended: Any, vocab: dict[str, int], name: str) -> None:
    got = extended.get_vocab()
    moved = [t for t, i in vocab.items() if got.get(t) != i]
    if moved:  # an internal invariant, but one a user would otherwise find only in the transplant
        raise InputError(f"{name}: extension moved {len(moved)} source token ids (e.g. {moved[:3]}); please report")
