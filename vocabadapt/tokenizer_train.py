"""Train a target tokenizer on the run's training corpus (`models.target_tokenizer: {train: ...}`).

This is how a user gets a domain tokenizer like BioGPT's from their own text: a byte-level BPE (as
GPT-2 / Llama-3) or a Unigram model (as SentencePiece), trained with the `tokenizers` library on
`corpus/train.jsonl` only (never the held-out split), streamed in batches.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterator

from .errors import InputError

log = logging.getLogger(__name__)


def _batches(path: Path, size: int = 1000) -> Iterator[list[str]]:
    batch: list[str] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                batch.append(json.loads(line)["text"])
                if len(batch) == size:
                    yield batch
                    batch = []
    if batch:
        yield batch


def train_tokenizer(texts: Any, spec: Any) -> Any:
    """Train a PreTrainedTokenizerFast from an iterator of text batches.

    Args:
        texts: iterable of lists of strings.
        spec: TokenizerTrainSpec (type, vocab_size, min_frequency, special_tokens).
    Returns:
        The tokenizer; the first special token is bos/eos/unk, the second (if any) pad.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = list(spec.special_tokens)
    if not special:
        raise InputError("models.target_tokenizer.train.special_tokens must list at least one token (the eos)")
    if spec.type == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=spec.vocab_size, min_frequency=spec.min_frequency,
                                      special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
    else:
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=spec.vocab_size, special_tokens=special,
                                          unk_token=special[0], show_progress=False)
    tok.train_from_iterator(texts, trainer)
    pad = special[1] if len(special) > 1 else special[0]
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=special[0], eos_token=special[0],
                                   unk_token=special[0], pad_token=pad)


def train_target_tokenizer(ctx: Any, spec: Any, like: Any = None) -> Any:
    """Train the target tokenizer on the run's training text (corpus/train.jsonl)."""
    train = ctx.path("corpus", "train.jsonl")
    if not train.exists():
        raise InputError(f"{train} does not exist; run the corpus stage first")
    tok = train_tokenizer(_batches(train), spec)
    log.info("trained a %s target tokenizer with %d tokens", spec.type, len(tok))
    return tok
