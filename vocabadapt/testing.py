"""Tiny deterministic models and tokenizers, built in seconds with no download, for tests and benchmarks.

tests/helpers.py re-exports these (and adds what only tests need: the offline environment, fuzz counts);
benchmarks import them from here, so the two never hold diverging copies. Nothing in the pipeline imports
this module, and it is the one place outside tests where `../shared/data` is named (`SHARED_DATA`).
"""

from __future__ import annotations

import base64
import glob
import json
import os
import shutil
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from .errors import InputError

__all__ = [
    "SHARED_DATA",
    "TEXT",
    "TINY_ARCHS",
    "save_tiny_model",
    "seed_all",
    "sentencepiece_folder",
    "tiktoken_folder",
    "mistral_tokenizer_folder",
    "tiny_model",
    "train_bpe_tokenizer",
    "write_config",
    "write_jsonl",
]

# ../shared/data beside the repository, unless $VOCABADAPT_SHARED_DATA says where it is (tests and
# benchmarks only: the package never reads it at run time).
SHARED_DATA = Path(os.environ.get("VOCABADAPT_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")

# A few biomedical sentences, repeated so that a BPE trained on them has merges to learn.
TEXT = (
    "the patient received aspirin for chest pain . the patient was treated with heparin . "
    "cardiac arrest after cocaine use was reported in the patient . aspirin reduces pain . "
    "the study of tumour growth in mice showed that heparin slows the growth . "
) * 4


def train_bpe_tokenizer(
    texts: list[str], vocab_size: int = 300, special: tuple[str, ...] = ("<|endoftext|>", "<|pad|>")
) -> Any:
    """A byte-level BPE PreTrainedTokenizerFast trained in memory on `texts`.

    bos = eos = unk = the first special token, pad = the second. Deterministic for the same texts.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=special[0], eos_token=special[0], unk_token=special[0], pad_token=special[1]
    )


def sentencepiece_folder(
    d: Path, lines: list[str], model_type: str = "bpe", byte_fallback: bool = True, vocab_size: int = 400
) -> Path:
    """A new folder `d` holding only a SentencePiece tokenizer.model (as Llama-2 and Mistral releases ship it)."""
    import sentencepiece as spm

    d.mkdir(parents=True)
    corpus = d / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(d / "tokenizer"),
        model_type=model_type,
        vocab_size=vocab_size,
        byte_fallback=byte_fallback,
        character_coverage=1.0,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    corpus.unlink()
    (d / "tokenizer.vocab").unlink()
    return d


def tiktoken_folder(d: Path, byte_level_tokenizer: Any) -> Path:
    """A new folder `d` holding only a tiktoken-format tokenizer.model (as Llama 3's original release): one
    "<base64 token bytes> <rank>" line per non-special token of a byte-level BPE, ranks in id order."""
    from .text.vocab import _byte_decoder, special_ids

    dec = _byte_decoder()
    specials = special_ids(byte_level_tokenizer)
    vocab = sorted((i, t) for t, i in byte_level_tokenizer.get_vocab().items() if i not in specials)
    d.mkdir(parents=True)
    lines = [f"{base64.b64encode(bytes(dec[c] for c in t)).decode()} {rank}" for rank, (_, t) in enumerate(vocab)]
    (d / "tokenizer.model").write_text("\n".join(lines) + "\n")
    return d


def seed_all(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Deterministic weights: every parameter drawn from one seeded generator in name order (N(0, 0.05²))."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model


# -- one config builder per architecture (the registry tiny_model reads) ----------------------------------


def _neox_config(vocab_size: int, hidden: int, layers: int, max_pos: int, tie: bool | None) -> Any:
    import transformers as tf

    return tf.GPTNeoXConfig(
        vocab_size=vocab_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        hidden_size=hidden,
        intermediate_size=hidden * 4,
        max_position_embeddings=max_pos,
        tie_word_embeddings=bool(tie),
    )


def _llama_like(class_name: str) -> Callable[..., Any]:
    def build(vocab_size: int, hidden: int, layers: int, max_pos: int, tie: bool | None) -> Any:
        import transformers as tf

        return getattr(tf, class_name)(
            vocab_size=vocab_size,
            num_hidden_layers=layers,
            num_attention_heads=4,
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            max_position_embeddings=max_pos,
            num_key_value_heads=2,  # grouped-query attention, as the real releases use
            tie_word_embeddings=bool(tie),
        )

    return build


def _gpt2_config(vocab_size: int, hidden: int, layers: int, max_pos: int, tie: bool | None) -> Any:
    import transformers as tf

    return tf.GPT2Config(
        vocab_size=vocab_size,
        n_embd=hidden,
        n_layer=layers,
        n_head=4,
        n_positions=max_pos,
        tie_word_embeddings=True if tie is None else tie,  # GPT-2 ties by default
        bos_token_id=0,
        eos_token_id=0,
    )


# {arch: config builder}: gpt_neox untied (like Pythia), llama / qwen2 / mistral untied, gpt2 tied.
TINY_ARCHS: dict[str, Callable[..., Any]] = {
    "gpt_neox": _neox_config,
    "llama": _llama_like("LlamaConfig"),
    "qwen2": _llama_like("Qwen2Config"),
    "mistral": _llama_like("MistralConfig"),
    "gpt2": _gpt2_config,
}


def tiny_model(
    arch: str = "gpt_neox",
    vocab_size: int = 320,
    hidden: int = 32,
    layers: int = 2,
    max_pos: int = 128,
    tie: bool | None = None,
    seed: int = 0,
) -> torch.nn.Module:
    """A tiny causal LM of architecture `arch` (a key of TINY_ARCHS) with deterministic weights, in eval mode.

    Token ids: bos = eos = 0, pad = 1. Raises InputError for an unknown arch.
    """
    import transformers as tf

    if arch not in TINY_ARCHS:
        raise InputError(f"tiny_model: unknown arch {arch!r}; choose one of {sorted(TINY_ARCHS)}")
    cfg = TINY_ARCHS[arch](vocab_size, hidden, layers, max_pos, tie)
    cfg.bos_token_id = 0
    cfg.eos_token_id = 0
    cfg.pad_token_id = 1
    torch.manual_seed(seed)
    model: Any = tf.AutoModelForCausalLM.from_config(cfg)  # Any: its tie_weights() is untyped in transformers
    seed_all(model, seed)
    if cfg.tie_word_embeddings:
        model.tie_weights()
    model.eval()
    return model


def save_tiny_model(directory: Path, tokenizer: Any, arch: str = "gpt_neox", **kwargs: Any) -> Path:
    """Save a tiny model sized to `tokenizer` (kwargs go to tiny_model) plus the tokenizer into `directory`."""
    model: Any = tiny_model(arch, vocab_size=len(tokenizer), **kwargs)  # a PreTrainedModel
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory), safe_serialization=True)
    tokenizer.save_pretrained(str(directory))
    return directory


def write_jsonl(path: Path, docs: list[str], field: str = "text") -> Path:
    """One `{"id": i, field: doc}` line per document at `path` (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for i, d in enumerate(docs):
            f.write(json.dumps({"id": i, field: d}) + "\n")
    return path


def write_config(path: Path, data: dict[str, Any]) -> Path:
    """`data` as YAML at `path`, keys in the given order (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# Mistral-7B v0.1's SentencePiece tokenizer (BioMistral's), copied out of the mistral-common wheel by the
# Makefile (`python -m vocabadapt.testing extract-mistral-tokenizer WHEEL_DIR`); $VOCABADAPT_MISTRAL_TOKENIZER
# names another copy. The package is never installed: installed, it changes how transformers loads Mistral.
MISTRAL_IN_WHEEL = "mistral_common/data/tokenizer.model.v1"
MISTRAL_FILE = Path(os.environ.get("VOCABADAPT_MISTRAL_TOKENIZER") or Path(sys.prefix) / "mistral-tokenizer.model.v1")


def extract_mistral_tokenizer(wheel_dir: str | Path, out: Path = MISTRAL_FILE) -> Path:
    """Copy tokenizer.model.v1 out of the mistral-common wheel in `wheel_dir` to `out`.

    Raises:
        InputError: no mistral-common wheel in `wheel_dir`, or it holds no such file.
    """
    wheels = sorted(glob.glob(str(Path(wheel_dir) / "mistral_common-*.whl")))
    if not wheels:
        raise InputError(f"{wheel_dir}: no mistral_common-*.whl (pip download --no-deps mistral-common==1.12.0)")
    with zipfile.ZipFile(wheels[-1]) as z:
        if MISTRAL_IN_WHEEL not in z.namelist():
            raise InputError(f"{wheels[-1]} holds no {MISTRAL_IN_WHEEL}")
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_bytes(z.read(MISTRAL_IN_WHEEL))
        os.replace(tmp, out)
    return out


def mistral_tokenizer_folder(d: Path) -> Path | None:
    """A Llama-2-layout folder (tokenizer.model + tokenizer_config.json) holding Mistral-7B v0.1's tokenizer,
    or None when the file has not been extracted (see MISTRAL_FILE)."""
    if not MISTRAL_FILE.is_file():
        return None
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(MISTRAL_FILE, d / "tokenizer.model")
    meta = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    (d / "tokenizer_config.json").write_text(json.dumps(meta))
    return d


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "extract-mistral-tokenizer":
        raise SystemExit("usage: python -m vocabadapt.testing extract-mistral-tokenizer WHEEL_DIR")
    print(extract_mistral_tokenizer(sys.argv[2]))
