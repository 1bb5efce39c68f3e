"""Loading Hugging Face tokenizers and models safely and offline-first.

One place decides how a name in the config becomes a tokenizer or model: local directories and files
first; hub ids from the local cache when offline; no remote code unless `models.trust_remote_code`;
safetensors only unless `models.allow_pickle`; a `.gguf` file through its dequantised copy
(vocabadapt.model.gguf). Every failure names the path or id and what to do.

Hub downloads are retried here, around the download alone (DownloadRetry, from `pipeline.max_retries`
and `pipeline.retry_backoff`), never by rerunning the stage that asked for them: a network error must
not cost a finished 40-minute stage, and an error that is not a network error is never retried.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from ..config import ModelsConfig
from ..errors import InputError, TransientError
from .gguf import gguf_model_dir, is_gguf

if TYPE_CHECKING:
    from ..config import PipelineConfig

log = logging.getLogger(__name__)
T = TypeVar("T")

PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def _first_line(err: BaseException) -> str:
    return (str(err).splitlines() or [""])[0][:200]


def _hub_error(kind: str, name: str, err: Exception, attempts: int = 1) -> InputError:
    tried = f" after {attempts} attempts" if attempts > 1 else ""
    return InputError(
        f"could not load {kind} '{name}': it is not a local path and could not be fetched from the "
        f"Hugging Face Hub{tried} ({type(err).__name__}: {_first_line(err)}). On a "
        f"machine without internet, download it elsewhere and pass its local directory in the config instead."
    )


@dataclass(frozen=True)
class DownloadRetry:
    """How often a hub download is retried after a transient (network) error, and how patiently."""

    max_retries: int = 0  # retries after the first attempt
    backoff_s: float = 0.0  # seconds before the first retry; doubles each time

    @classmethod
    def from_config(cls, pipeline: PipelineConfig) -> DownloadRetry:
        """The retry policy that `pipeline.max_retries` and `pipeline.retry_backoff` describe."""
        return cls(max_retries=pipeline.max_retries, backoff_s=pipeline.retry_backoff)


# Network failures by class name, so that requests', httpx's and the builtin ones all count without
# importing the HTTP library huggingface_hub happens to use; HTTP statuses the server may answer
# differently a moment later.
_TRANSIENT_NAMES = {"ConnectionError", "ConnectError", "Timeout", "TimeoutError", "TimeoutException", "TransportError"}
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


def is_transient(err: BaseException) -> bool:
    """True when `err`, or an exception it was raised from, is a network failure worth retrying.

    HF_HUB_OFFLINE's refusal (OfflineModeIsEnabled, a ConnectionError) is not transient.
    """
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        names = {c.__name__ for c in type(e).__mro__}
        if "OfflineModeIsEnabled" in names:
            return False
        if isinstance(e, TransientError) or names & _TRANSIENT_NAMES:
            return True
        if getattr(getattr(e, "response", None), "status_code", None) in _TRANSIENT_STATUS:
            return True
        e = e.__cause__ or e.__context__
    return False


def _from_hub(kind: str, name: str, fetch: Callable[[], T], retry: DownloadRetry) -> T:
    """fetch()'s result, retrying it after transient errors as `retry` says (never when offline).

    Raises:
        InputError: naming `name` and the local-path alternative, when fetch fails for good.
    """
    attempts = 1 if _offline() else retry.max_retries + 1
    backoff = retry.backoff_s
    for attempt in range(1, attempts + 1):
        try:
            return fetch()
        except Exception as e:
            if attempt == attempts or not is_transient(e):
                raise _hub_error(kind, name, e, attempt) from None
            log.warning(
                "download of %s '%s': transient error (%s: %s); retry %d/%d in %.0fs",
                kind,
                name,
                type(e).__name__,
                _first_line(e),
                attempt,
                attempts - 1,
                backoff,
            )
            time.sleep(backoff)
            backoff *= 2
    raise AssertionError("unreachable: the loop returns or raises")


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


def load_tokenizer(
    name: str, models: ModelsConfig, cache_dir: str | None = None, retry: DownloadRetry = DownloadRetry()
) -> Any:
    """Load a tokenizer from a directory, a tokenizer.json file, or a hub id.

    `retry` says how often a hub download is retried after a network error (local paths never are).
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
    return _from_hub(
        "tokenizer",
        name,
        lambda: AutoTokenizer.from_pretrained(
            name, cache_dir=cache_dir, trust_remote_code=models.trust_remote_code, local_files_only=_offline()
        ),
        retry,
    )


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


def load_model(
    name: str,
    models: ModelsConfig,
    cache_dir: str | None = None,
    retry: DownloadRetry = DownloadRetry(),
    **kwargs: Any,
) -> Any:
    """Load an AutoModelForCausalLM from a directory or hub id, safely (see module docstring).

    `retry` says how often a hub download is retried after a network error (local paths never are).
    """
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
    return _from_hub(
        "model",
        name,
        lambda: AutoModelForCausalLM.from_pretrained(
            name,
            cache_dir=cache_dir,
            trust_remote_code=models.trust_remote_code,
            local_files_only=_offline(),
            use_safetensors=None if models.allow_pickle else True,
            **kwargs,
        ),
        retry,
    )


def convert_to_safetensors(model_dir: Path, models_cfg: ModelsConfig, scratch: Path) -> Path:
    """An allowed pickle checkpoint loaded once (weights_only) and re-saved as safetensors under scratch;
    returns the new directory."""
    log.warning(
        "%s has only pickle weights; loading the whole model once to convert it to safetensors (memory = model size)",
        model_dir,
    )
    model = load_model(str(model_dir), models_cfg)
    converted = scratch / "converted"
    model.save_pretrained(str(converted))
    del model
    return converted


def load_frozen_model(model_dir: str | Path, trust_remote_code: bool = False) -> Any:
    """A local model in float32 eval mode with no gradients, on the GPU when there is one (load_model: safe,
    safetensors only). What initialisers that run the source model receive (InitContext.load_source_model)."""
    import torch

    model = load_model(str(model_dir), ModelsConfig(trust_remote_code=trust_remote_code), dtype=torch.float32)
    if torch.cuda.is_available():
        model = model.to("cuda")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def resolve_model_dir(name: str, cache_dir: str | None = None, retry: DownloadRetry = DownloadRetry()) -> Path:
    """A local directory for `name`: itself, its dequantised copy (a .gguf file), or its snapshot in the HF
    cache (downloading when online, retried after network errors as `retry` says)."""
    if is_gguf(name):
        return gguf_model_dir(name, cache_dir)
    p = Path(name)
    if p.is_dir():
        return p
    if name.startswith((".", "/", "~")):
        raise InputError(f"model path {name} does not exist")
    from huggingface_hub import snapshot_download

    return _from_hub(
        "model", name, lambda: Path(snapshot_download(name, cache_dir=cache_dir, local_files_only=_offline())), retry
    )
