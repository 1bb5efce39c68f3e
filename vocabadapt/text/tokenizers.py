"""Tokenizers: encode texts (fast or slow), tokenize a text stream into id shards, train a tokenizer.

Documents are tokenized without special tokens (training packs documents with eos itself). Fast
(Rust) tokenizers go through the backend's `encode_batch`, which is already parallel; slow Python
tokenizers (BioGPT's Moses + BPE) run in `workers` processes, batches kept in order, so the shards are
identical whatever the number of workers.

Training a target tokenizer (`models.target_tokenizer: {train: ...}`) is how a user gets a domain
tokenizer like BioGPT's from their own text: a byte-level BPE (as GPT-2 / Llama-3) or a Unigram model
(as SentencePiece), trained with the `tokenizers` library on training text only, streamed in batches.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from collections import deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

from ..config import ModelsConfig, TokenizerTrainSpec
from ..errors import InputError
from ..io import atomic_dir, read_json
from .shards import ShardWriter

log = logging.getLogger(__name__)
R = TypeVar("R")


def source_tokenizer_name(models: ModelsConfig) -> str:
    """The source tokenizer's path or id: models.source_tokenizer, else the source model's own.

    Raises:
        InputError: neither is set.
    """
    name = models.source_tokenizer or models.source_model
    if not name:
        raise InputError("models.source_tokenizer (or models.source_model) must be set")
    return name


# --------------------------------------------------------------------------------------------------
# tokenizer folders: which format, which packages it needs

# Import name -> the name pip installs it under.
_PIP_NAMES = {
    "google.protobuf": "protobuf",
    "sentencepiece": "sentencepiece",
    "tiktoken": "tiktoken",
    "sacremoses": "sacremoses",
    "tokenizers": "tokenizers",
}
# File names SentencePiece models ship under (Llama-2/Mistral, T5, XLM-R/CamemBERT).
_MODEL_FILES = ("tokenizer.model", "spiece.model", "sentencepiece.bpe.model", "sentencepiece.model")
# A tiktoken BPE file is text: one "<base64 token bytes> <rank>" per line (Llama 3's original tokenizer.model).
_TIKTOKEN_LINE = re.compile(rb"^[A-Za-z0-9+/]+={0,2} [0-9]+\r?$")


@dataclass(frozen=True)
class TokenizerFormat:
    """What a tokenizer folder holds, judged from its files: the format, those files, the packages needed."""

    name: str  # e.g. "SentencePiece model", "tiktoken BPE file"
    files: tuple[str, ...]  # the files that decided it
    packages: tuple[str, ...] = ()  # import names transformers needs to read it

    def describe(self) -> str:
        return f"{self.name} ({' + '.join(self.files)})" if self.files else self.name

    def missing_packages(self) -> list[str]:
        """Import names of the needed packages that are not installed."""
        missing = []
        for name in self.packages:
            try:
                found = importlib.util.find_spec(name) is not None
            except (ImportError, ValueError):  # a parent package ("google") is missing too
                found = False
            if not found:
                missing.append(name)
        return missing

    def require(self, where: Path) -> None:
        """Raise InputError naming the folder, the format and the missing packages, if any are missing."""
        missing = self.missing_packages()
        if missing:
            pip = " ".join(_PIP_NAMES.get(m, m) for m in missing)
            raise InputError(
                f"{where}: cannot read this tokenizer: its files look like a {self.describe()}, which "
                f"needs the Python package(s) {', '.join(_PIP_NAMES.get(m, m) for m in missing)}; "
                f"install them (pip install {pip}) or pass a folder with a tokenizer.json"
            )


def _is_tiktoken_file(path: Path) -> bool:
    with open(path, "rb") as f:
        lines = f.read(4096).splitlines()[:3]
    return bool(lines) and all(_TIKTOKEN_LINE.match(line) for line in lines if line)


def tokenizer_format(directory: Path) -> TokenizerFormat:
    """The format of a tokenizer folder, judged from its files in the order transformers prefers them.

    tokenizer.json (the `tokenizers` library's file, any model inside); a SentencePiece model
    (tokenizer.model and the other names SentencePiece files ship under; needs sentencepiece and
    protobuf to convert); a tiktoken BPE file named tokenizer.model (Llama 3's original release; needs
    tiktoken); vocab.json + merges.txt (GPT-2 style byte-level BPE, or fairseq BPE with `</w>` as
    BioGPT, which needs sacremoses); vocab.txt (WordPiece).

    Raises:
        InputError: the folder holds none of these (the message lists what it holds).
    """
    names = {p.name for p in directory.iterdir()} if directory.is_dir() else set()
    if "tokenizer.json" in names:
        return TokenizerFormat("tokenizers file", ("tokenizer.json",), ("tokenizers",))
    for model_file in _MODEL_FILES:
        if model_file in names:
            if _is_tiktoken_file(directory / model_file):
                return TokenizerFormat("tiktoken BPE file", (model_file,), ("tiktoken",))
            return TokenizerFormat("SentencePiece model", (model_file,), ("sentencepiece", "google.protobuf"))
    if {"vocab.json", "merges.txt"} <= names:
        with open(directory / "vocab.json", "rb") as f:
            fairseq = b'</w>"' in f.read(1 << 20)  # BioGPT's vocabulary marks word ends in its first entries
        if fairseq:
            return TokenizerFormat("fairseq/Moses BPE", ("vocab.json", "merges.txt"), ("sacremoses",))
        return TokenizerFormat("byte-level BPE", ("vocab.json", "merges.txt"), ("tokenizers",))
    if "vocab.txt" in names:
        return TokenizerFormat("WordPiece vocabulary", ("vocab.txt",), ("tokenizers",))
    if "tokenizer_config.json" in names:
        return TokenizerFormat("tokenizer_config.json without vocabulary files", ("tokenizer_config.json",))
    held = ", ".join(sorted(names)[:12]) or "nothing"
    raise InputError(
        f"{directory}: no tokenizer files found (looked for tokenizer.json, tokenizer.model, "
        f"vocab.json + merges.txt, vocab.txt); the folder holds: {held}"
    )


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask a container or taskset sets, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def batches(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    """Lists of up to `size` texts, in order."""
    it = iter(texts)
    while batch := list(islice(it, size)):
        yield batch


def in_order(pool: Executor, fn: Callable[[Any], R], items: Iterable[Any], in_flight: int) -> Iterator[tuple[Any, R]]:
    """(item, fn(item)) for each item, computed in `pool`, yielded in the items' order, with at most
    `in_flight` items submitted and not yet yielded (bounded memory however long `items` is)."""
    pending: deque[tuple[Any, Future]] = deque()
    for item in items:
        pending.append((item, pool.submit(fn, item)))
        if len(pending) >= in_flight:
            item, fut = pending.popleft()
            yield item, fut.result()
    for item, fut in pending:
        yield item, fut.result()


def backend_of(tokenizer: Any) -> Any | None:
    """The Rust `tokenizers.Tokenizer` behind a fast tokenizer, or None for a slow one."""
    if not getattr(tokenizer, "is_fast", False):
        return None
    return getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)


def encode_texts(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Ids of each text, without special tokens (one list per text)."""
    backend = backend_of(tokenizer)
    if backend is not None:
        return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
    return [tokenizer.encode(t, add_special_tokens=False) for t in texts]


# End-of-text tokens by family, tried in order when a loaded tokenizer names no EOS token (a bare
# tokenizer.json, as GPT-NeoX's is shipped, has its special tokens but no tokenizer_config.json saying
# which one ends a document).
EOS_NAMES = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "<|im_end|>")


def ensure_eos(target: Any, source: Any) -> str | None:
    """Give `target` an EOS token when it names none; return the token chosen (None: it had one, or none fits).

    The source tokenizer's own EOS text is tried first (the transplanted model already ends documents with
    it), then EOS_NAMES; only a token that is in the target vocabulary as a single id is taken.
    """
    if getattr(target, "eos_token", None) is not None:
        return None
    vocab = target.get_vocab()
    for name in (getattr(source, "eos_token", None), *EOS_NAMES):
        if name and name in vocab:
            target.eos_token = name
            return str(name)
    return None


def save_tokenizer(tokenizer: Any, directory: Path) -> None:
    """Save a tokenizer into `directory`, replacing it atomically."""
    with atomic_dir(directory) as tmp:
        tokenizer.save_pretrained(str(tmp))


# Worker-process state for slow tokenizers: each worker loads the saved tokenizer once.
_WORKER_TOKENIZER: Any = None


def _init_worker(tokenizer_dir: str) -> None:
    from transformers import AutoTokenizer

    global _WORKER_TOKENIZER
    _WORKER_TOKENIZER = AutoTokenizer.from_pretrained(tokenizer_dir)


def _encode_in_worker(texts: list[str]) -> list[list[int]]:
    return encode_texts(_WORKER_TOKENIZER, texts)


def tokenize_to_shards(
    texts: Iterable[str],
    tokenizer: Any,
    out_dir: Path,
    *,
    batch_size: int,
    shard_tokens: int,
    workers: int,
    tokenizer_dir: Path,
    resume: bool = False,
    **meta: Any,
) -> dict[str, Any]:
    """Tokenize documents into a shard directory (vocabadapt.text.shards).

    Args:
        texts: the documents, in order.
        tokenizer: a transformers tokenizer.
        out_dir: the shard directory to write.
        batch_size: documents per tokenizer batch.
        shard_tokens: token ids per shard file.
        workers: processes for a slow tokenizer (a fast one is parallel by itself).
        tokenizer_dir: where `tokenizer` is saved (worker processes load it from there).
        resume: `out_dir` holds shards an interrupted call wrote from the same texts and tokenizer:
            a finished directory is returned as it is, a partial one continues after its last
            finished shard (the texts before it are skipped, not tokenized). The caller vouches
            that texts, tokenizer and shard_tokens are unchanged.
        meta: extra fields for meta.json.
    Returns:
        the shard directory's meta ({"tokens", "documents", "bytes", "shards", ...}).
    """
    if resume and (out_dir / "meta.json").exists():
        log.info("%s: already finished by the interrupted run; kept", out_dir)
        return read_json(out_dir / "meta.json")
    writer = ShardWriter(out_dir, shard_tokens=shard_tokens, resume=resume)
    if writer.resumed_from_shard is not None:
        log.info(
            "%s: resumed from shard %d (document %d); %d finished shard(s) kept",
            out_dir,
            writer.resumed_from_shard,
            writer.documents_done,
            writer.resumed_from_shard,
        )
        texts = islice(texts, writer.documents_done, None)

    def write(texts: list[str], ids: list[list[int]]) -> None:
        for t, doc in zip(texts, ids):
            writer.add(doc, n_bytes=len(t.encode("utf-8")))

    pool: Executor
    encode: Callable[[list[str]], list[list[int]]]
    if backend_of(tokenizer) is not None or workers <= 1:
        # One thread encodes (a fast tokenizer releases the GIL and is parallel by itself) while this one
        # reads the next batch and writes the last. Within noise on 2 cores; meant for many cores, where the
        # serial reading and writing would otherwise bound the parallel encoder.
        pool, encode, in_flight = ThreadPoolExecutor(1), partial(encode_texts, tokenizer), 2
    else:
        pool = ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(str(tokenizer_dir),))
        encode, in_flight = _encode_in_worker, 2 * workers
    with pool:
        for chunk, ids in in_order(pool, encode, batches(texts, batch_size), in_flight):
            write(chunk, ids)
    return writer.close(vocab_size=len(tokenizer), **meta)


def train_tokenizer(texts: Iterable[list[str]], spec: TokenizerTrainSpec) -> Any:
    """Train a PreTrainedTokenizerFast from an iterator of text batches.

    Args:
        texts: iterable of lists of strings.
        spec: type, vocab_size, min_frequency, special_tokens.
    Returns:
        The tokenizer; the first special token is bos/eos/unk, the second (if any) pad.
    Raises:
        InputError: no special token.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = list(spec.special_tokens)
    if not special:
        raise InputError("models.target_tokenizer.train.special_tokens must list at least one token (the eos)")
    trainer: Any
    if spec.type == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=spec.vocab_size,
            min_frequency=spec.min_frequency,
            special_tokens=special,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    else:
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(
            vocab_size=spec.vocab_size, special_tokens=special, unk_token=special[0], show_progress=False
        )
    tok.train_from_iterator(texts, trainer)
    pad = special[1] if len(special) > 1 else special[0]
    out = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=special[0], eos_token=special[0], unk_token=special[0], pad_token=pad
    )
    log.info("trained a %s tokenizer with %d tokens", spec.type, len(out))
    return out
