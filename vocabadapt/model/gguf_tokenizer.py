"""The tokenizer half of a GGUF file: a byte-level BPE tokenizer.json as llama.cpp's vocabulary.

    tokenizer.ggml.{model,pre,tokens,token_type} from the tokenizer (model "gpt2" = byte-level BPE)
    tokenizer.ggml.{merges,*_token_id,add_*}    and tokenizer.chat_template: gguf.SpecialVocab, the same
                                                reader llama.cpp's converter uses

`read_vocab` checks and reads the tokenizer before anything is written (vocabadapt.model.gguf_export calls it
beside its tensor plan); `write_vocab` adds the keys to an open gguf.GGUFWriter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError

# tokenizer.json pre-tokenizers, as llama.cpp names them (tokenizer.ggml.pre). llama.cpp picks its split
# regex by this name, so a wrong name silently changes the token ids: an unknown shape is refused.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _pre_shape(pre: dict[str, Any] | None) -> tuple[Any, ...] | None:
    """A hashable summary of a tokenizer.json pre_tokenizer: the steps that decide where text is split."""
    if pre is None:
        return None
    steps = pre["pretokenizers"] if pre.get("type") == "Sequence" else [pre]
    shape: list[Any] = []
    for s in steps:
        kind = s.get("type")
        if kind == "ByteLevel":
            shape.append(("ByteLevel", bool(s.get("add_prefix_space")), bool(s.get("use_regex", True))))
        elif kind == "Digits":
            shape.append(("Digits", bool(s.get("individual_digits"))))
        elif kind == "Split":
            pattern = s.get("pattern", {})
            shape.append(("Split", pattern.get("Regex", pattern.get("String")), s.get("behavior"), s.get("invert")))
        else:
            shape.append((kind,))
    return tuple(shape)


PRE_TOKENIZERS: dict[tuple[Any, ...], str] = {
    (("ByteLevel", False, True),): "gpt-2",
    # SmolLM's own tokenizer.json: digits one by one, then GPT-2's split
    (("Digits", True), ("ByteLevel", False, True)): "smollm",
    (("Split", _LLAMA3_SPLIT, "Isolated", False), ("ByteLevel", False, False)): "llama-bpe",
    (("Split", _QWEN2_SPLIT, "Isolated", False), ("ByteLevel", False, False)): "qwen2",
}


@dataclass
class GGUFVocab:
    """The vocabulary as written: tokens and llama.cpp token types in id order, the pre-tokenizer name."""

    tokens: list[str]
    types: list[int]
    pre: str
    added: int  # tokens of added_tokens_decoder (special and user-defined)


def find_tokenizer_dir(model_dir: Path, tokenizer_dir: Path | None) -> Path:
    """The directory holding tokenizer.json: `tokenizer_dir` if given, else `model_dir`.

    Raises:
        InputError: no tokenizer.json there.
    """
    d = tokenizer_dir or model_dir
    if not (d / "tokenizer.json").is_file():
        raise InputError(
            f"{d} has no tokenizer.json; GGUF export needs the fast (tokenizers) byte-level BPE tokenizer saved "
            f"beside the model (tokenizer.save_pretrained), or pass its directory"
        )
    return d


def read_vocab(tok_dir: Path, n_rows: int) -> GGUFVocab:
    """Tokens in id order with llama.cpp's token types, as convert_hf_to_gguf.py's get_vocab_base does."""
    import gguf
    from transformers import AutoTokenizer

    data = json.loads((tok_dir / "tokenizer.json").read_text(encoding="utf-8"))
    model = data.get("model", {})
    if model.get("type") != "BPE" or model.get("byte_fallback") or data.get("normalizer") is not None:
        raise InputError(
            f"{tok_dir}/tokenizer.json is not a byte-level BPE without a normalizer (model {model.get('type')}, "
            f"byte_fallback {model.get('byte_fallback')}, normalizer {(data.get('normalizer') or {}).get('type')}); "
            f"GGUF export writes byte-level BPE (llama.cpp's 'gpt2' vocabulary) only"
        )
    shape = _pre_shape(data.get("pre_tokenizer"))
    pre = PRE_TOKENIZERS.get(shape) if shape is not None else None
    if pre is None:
        raise InputError(
            f"{tok_dir}/tokenizer.json: pre-tokenizer {json.dumps(data.get('pre_tokenizer'))[:300]} has no llama.cpp "
            f"name known here (known: {', '.join(sorted(set(PRE_TOKENIZERS.values())))}); llama.cpp would split "
            f"text differently from this tokenizer, so the file is not written"
        )
    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    vocab = tokenizer.get_vocab()  # token -> id, added tokens included
    if len(vocab) > n_rows:
        raise InputError(
            f"{tok_dir}: the tokenizer has {len(vocab)} tokens but the model has {n_rows} embedding rows; "
            f"export the model the tokenizer belongs to"
        )
    by_id = {i: t for t, i in vocab.items()}
    added = tokenizer.added_tokens_decoder  # id -> AddedToken
    tokens: list[str] = []
    types: list[int] = []
    for i in range(n_rows):
        if i not in by_id:  # rows beyond the tokenizer (a padded embedding): llama.cpp's placeholders
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(added[i].content)
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
    return GGUFVocab(tokens=tokens, types=[int(t) for t in types], pre=pre, added=len(added))


def write_vocab(writer: Any, vocab: GGUFVocab, tok_dir: Path) -> None:
    """Add the tokenizer keys (model, pre, tokens, types, then merges, special ids and chat template) to `writer`.

    Raises:
        InputError: tokenizer.json has no merges.
    """
    import gguf

    writer.add_tokenizer_model("gpt2")  # llama.cpp's name for byte-level BPE
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    special = gguf.SpecialVocab(tok_dir, load_merges=True, n_vocab=len(vocab.tokens))
    if not special.merges:
        raise InputError(f"{tok_dir}/tokenizer.json has no merges; a BPE vocabulary without merges cannot be written")
    special.add_to_gguf(writer, quiet=True)
