"""Loading Hugging Face tokenizers and models safely and offline-first.

One place decides how a name in the config becomes a tokenizer or model: local directories and files
first; hub ids from the local cache when offline; no remote code unless `models.trust_remote_code`;
safetensors only unless `models.allow_pickle`; a `.gguf` file through its dequantised copy
(vocabadapt.model.gguf). Every failure names the path or id and what to do.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from ..config import ModelsConfig
from ..errors import InputError
from .gguf import gguf_model_dir, is_gguf

log = logging.getLogger(__name__)

PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def _hub_error(kind: str, name: str, err: Exception) -> InputError:
    return InputError(
        f"could not load {kind} '{name}': it is not a local path and could not be fetched from the "
        f"Hugging Face Hub ({type(err).__name__}: {str(err).splitlines()[0][:200]}). On a machine without "
        f"internet, download it elsewhere and pass its local directory in the config instead."
    )


def check_remote_code(directory: Path, models: ModelsConfig, kind: str) -> None:
    """Refuse a local directory whose config asks for custom code, unless the config allows it."""
    for cfg_name in ("config.json", "tokenizer_config.json"):
        cfg_file = directory / cfg_name
        if not cfg_file.is_file():
            continue
        try:
            data = json.loads(cfg_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"{cfg_file} is not valid JSON ({e}); fix or replace the file") from None
        if isinstance(data, dict) and data.get("auto_map") and not models.trust_remote_code:
            raise InputError(
                f"{kind} at {directory} ships its own Python code ({cfg_name} has 'auto_map'); vocabadapt "
                f"does not run it by default. Review that code, then set models.trust_remote_code: true."
            )


def load_tokenizer(name: str, models: ModelsConfig, cache_dir: str | None = None) -> Any:
    """Load a tokenizer from a directory, a tokenizer.json file, or a hub id.

    Returns a transformers PreTrainedTokenizer(Fast).
    Raises:
        InputError: the path does not hold a tokenizer, or the id cannot be fetched.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from ..text.tokenizers import tokenizer_format

    if is_gguf(name):  # the tokenizer the GGUF file carries, from its dequantised copy
        name = str(gguf_model_dir(name, cache_dir))
    p = Path(name)
    guessed = "tokenizer.json file"
    try:
        if p.is_file():
            if p.suffix != ".json":
                raise InputError(f"{p}: a tokenizer file must be a tokenizer.json; or pass its directory")
            return PreTrainedTokenizerFast(tokenizer_file=str(p))
        if p.is_dir():
            check_remote_code(p, models, "tokenizer")
            fmt = tokenizer_format(p)
            guessed = fmt.describe()
            fmt.require(p)
            bare = _bare_bpe_tokenizer(p)
            if bare is not None:
                return bare
            return AutoTokenizer.from_pretrained(str(p), trust_remote_code=models.trust_remote_code)
    except InputError:
        raise
    except Exception as e:  # transformers raises many types for a broken folder
        detail = " ".join(str(e).split())[:300]
        raise InputError(
            f"{p}: could not load a tokenizer from it (its files look like a {guessed}): {type(e).__name__}: {detail}"
        ) from None
    if name.startswith((".", "/", "~")):
        raise InputError(f"tokenizer path {name} does not exist")
    try:
        return AutoTokenizer.from_pretrained(
            name, cache_dir=cache_dir, trust_remote_code=models.trust_remote_code, local_files_only=_offline()
        )
    except Exception as e:
        raise _hub_error("tokenizer", name, e) from None


def _bare_bpe_tokenizer(directory: Path) -> Any | None:
    """A folder holding only vocab.json + merges.txt (as GPT-2's and BioGPT's original releases).

    transformers 5 cannot load such a folder by itself. fairseq/Moses BPE (tokens ending in `</w>`, as
    BioGPT) becomes a BioGptTokenizer; anything else a byte-level BPE like GPT-2's. None when the
    folder has a tokenizer.json or tokenizer_config.json (AutoTokenizer handles those).
    """
    vocab, merges = directory / "vocab.json", directory / "merges.txt"
    if (directory / "tokenizer.json").exists() or (directory / "tokenizer_config.json").exists():
        return None
    if not (vocab.is_file() and merges.is_file()):
        return None
    try:
        entries = json.loads(vocab.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{vocab} is not valid JSON ({e})") from None
    if any(k.endswith("</w>") for k in entries):
        from transformers import BioGptTokenizer

        return BioGptTokenizer(vocab_file=str(vocab), merges_file=str(merges))
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    eos = "<|endoftext|>" if "<|endoftext|>" in entries else None
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=eos, eos_token=eos, unk_token=eos)


def check_weights_safe(directory: Path, models: ModelsConfig) -> None:
    """Refuse pickle-only checkpoints unless allowed (pickle can run code when loaded)."""
    has_safe = any((directory / n).exists() for n in SAFE_WEIGHTS) or any(directory.glob("*.safetensors"))
    has_pickle = any((directory / n).exists() for n in PICKLE_WEIGHTS) or any(directory.glob("*.bin"))
    if not has_safe and has_pickle and not models.allow_pickle:
        raise InputError(
            f"{directory} holds only pickle (.bin) weights, which can run code when loaded. Convert them to "
            f"safetensors, or set models.allow_pickle: true to load them with weights_only=True."
        )
    if not has_safe and not has_pickle:
        raise InputError(f"{directory} holds no model weights (*.safetensors); is it a model directory?")


def check_finite(model: Any, where: Path | str) -> None:
    """Refuse a model with NaN or infinite weights (a corrupt or diverged checkpoint), naming the tensor.

    Raises:
        InputError: naming `where` and the first non-finite parameter.
    """
    import torch

    for name, param in model.named_parameters():
        if param.is_meta or not param.is_floating_point():
            continue  # offloaded (meta) tensors hold no values to check here
        if not bool(torch.isfinite(param).all()):
            bad = int((~torch.isfinite(param)).sum())
            raise InputError(
                f"{where}: weight {name} {tuple(param.shape)} has {bad} NaN/inf value(s); the checkpoint is "
                f"corrupt or the run that wrote it diverged. Use an earlier checkpoint or rerun that stage."
            )


def load_model(name: str, models: ModelsConfig, cache_dir: str | None = None, **kwargs: Any) -> Any:
    """Load an AutoModelForCausalLM from a directory or hub id, safely (see module docstring)."""
    from transformers import AutoModelForCausalLM

    if is_gguf(name):
        name = str(gguf_model_dir(name, cache_dir))
    p = Path(name)
    if p.exists():
        if not p.is_dir():
            raise InputError(f"{p}: a model must be a directory (config.json + weights)")
        if not (p / "config.json").is_file():
            raise InputError(f"{p} has no config.json; is it a Hugging Face model directory?")
        check_remote_code(p, models, "model")
        check_weights_safe(p, models)
        try:
            model = AutoModelForCausalLM.from_pretrained(
                str(p),
                trust_remote_code=models.trust_remote_code,
                use_safetensors=None if models.allow_pickle else True,
                **kwargs,
            )
        except Exception as e:
            raise InputError(f"{p}: could not load the model ({type(e).__name__}: {str(e)[:300]})") from None
        check_finite(model, p)
        return model
    if name.startswith((".", "/", "~")):
        raise InputError(f"model path {name} does not exist")
    try:
        return AutoModelForCausalLM.from_pretrained(
            name,
            cache_dir=cache_dir,
            trust_remote_code=models.trust_remote_code,
            local_files_only=_offline(),
            use_safetensors=None if models.allow_pickle else True,
            **kwargs,
        )
    except Exception as e:
        raise _hub_error("model", name, e) from None


def resolve_model_dir(name: str, cache_dir: str | None = None) -> Path:
    """A local directory for `name`: itself, its dequantised copy (a .gguf file), or its snapshot in the HF
    cache (downloading when online)."""
    if is_gguf(name):
        return gguf_model_dir(name, cache_dir)
    p = Path(name)
    if p.is_dir():
        return p
    if name.startswith((".", "/", "~")):
        raise InputError(f"model path {name} does not exist")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, cache_dir=cache_dir, local_files_only=_offline()))
    except Exception as e:
        raise _hub_error("model", name, e) from None
