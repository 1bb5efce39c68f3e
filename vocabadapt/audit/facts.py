"""The facts the audit rules use besides the config: corpus statistics, the model's config, the GPU.

`--corpus-stats FILE` is read tolerantly: a JSON object whose known keys (top level, or under
`train` or `corpus`; first match wins) are listed in _STATS_KEYS. Values that are not numbers are
ignored. `--model-config FILE|DIR` is the model's config.json; without it, `models.source_model` is
used when it is a local directory. `--gpu-memory GB` is one GPU's memory in GiB and implies a GPU;
without it, on a machine where CUDA is available, the first GPU's memory (and bf16 support) is used.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

from ..config import Config
from ..errors import InputError
from ..io import read_json
from .findings import GIB, Facts

log = logging.getLogger(__name__)


_STATS_KEYS: dict[str, tuple[str, ...]] = {
    "documents": ("documents", "num_documents", "n_documents", "docs"),
    "bytes": ("bytes", "num_bytes", "text_bytes", "train_bytes"),
    "tokens_target": (
        "tokens_target",
        "target_tokens",
        "target.tokens",
        "tokens.target",
        "tokens_per_tokenizer.target",
        "target.num_tokens",
        "tokens",
    ),
    "tokens_source": (
        "tokens_source",
        "source_tokens",
        "source.tokens",
        "tokens.source",
        "tokens_per_tokenizer.source",
        "source.num_tokens",
    ),
    "sequences": ("sequences", "packed_sequences", "sequences_target", "target.sequences", "tokens.sequences"),
    "identical_pairs": ("identical_pairs", "identical_tokens", "identical_token_pairs", "alignment.identical_pairs"),
}


def _lookup(data: dict, dotted: str) -> Any:
    cur: Any = data
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def parse_corpus_stats(data: dict[str, Any]) -> dict[str, Optional[int]]:
    """Pick the known facts out of a stats JSON object (see the module docstring for the keys)."""
    out: dict[str, Optional[int]] = {}
    scopes = [data] + [data[s] for s in ("train", "corpus") if isinstance(data.get(s), dict)]
    for name, keys in _STATS_KEYS.items():
        out[name] = None
        for scope in scopes:
            for k in keys:
                v = _lookup(scope, k)
                if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0:
                    out[name] = int(v)
                    break
            if out[name] is not None:
                break
    return out


def _read_json(path: Path, what: str) -> Any:
    if not path.exists():
        raise InputError(f"{what} {path} does not exist; pass the file a run wrote (or leave the option out)")
    try:
        return read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{what} {path} is not valid JSON ({e}); pass the JSON file itself") from None


def read_model_config(path: str | Path) -> tuple[dict, str]:
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    data = _read_json(p, "model config")
    if not isinstance(data, dict):
        raise InputError(f"model config {p} is a JSON {type(data).__name__}, not an object; pass config.json")
    return data, str(p)


# Asked in a child process so that the audit itself never imports torch (a config check must not need it;
# tests/house pins this). Prints {"cuda": bool, "bf16": bool, "memory_bytes": int | null}.
_GPU_PROBE = (
    "import json, torch\n"
    "c = torch.cuda.is_available()\n"
    "print(json.dumps({'cuda': c, 'bf16': c and torch.cuda.is_bf16_supported(), "
    "'memory_bytes': torch.cuda.get_device_properties(0).total_memory if c else None}))\n"
)


def probe_gpu() -> dict[str, Any]:
    """Whether this machine has a CUDA GPU, bf16 on it and its memory, asked of torch in a child process.

    Returns {} when torch is not installed or the probe fails (then the audit assumes no GPU).
    """
    if importlib.util.find_spec("torch") is None:
        return {}
    try:
        out = subprocess.run(
            [sys.executable, "-c", _GPU_PROBE], capture_output=True, text=True, timeout=120, check=True
        ).stdout
        found = json.loads(out.strip().splitlines()[-1])
    except (subprocess.SubprocessError, OSError, ValueError, IndexError) as e:
        log.warning("could not ask torch about the GPU (%s); auditing as if there were none", e)
        return {}
    return found if isinstance(found, dict) else {}


def gather_facts(
    corpus_stats: str | None = None, model_config: str | None = None, gpu_memory_gb: float | None = None
) -> Facts:
    """Collect the facts the rules use.

    Args:
        corpus_stats: a run's corpus/stats.json (or any JSON with the keys the module docstring lists).
        model_config: the model's config.json, or the model directory holding it.
        gpu_memory_gb: memory of one GPU in GiB; implies that the run has a GPU.
    Returns:
        Facts, including whether CUDA, bf16 and flash-attn are available on this machine.
    Raises:
        InputError: a given file is missing, not JSON, or not a JSON object.
    """
    facts = Facts(gpu_memory_gb=gpu_memory_gb)
    if corpus_stats:
        data = _read_json(Path(corpus_stats), "corpus statistics")
        if not isinstance(data, dict):
            raise InputError(f"corpus statistics {corpus_stats} is a JSON {type(data).__name__}, not an object")
        for k, v in parse_corpus_stats(data).items():
            setattr(facts, k, v)
        facts.stats_path = str(corpus_stats)
    if model_config:
        facts.model_config, facts.model_config_path = read_model_config(model_config)
    if gpu_memory_gb is not None and gpu_memory_gb <= 0:
        raise InputError(f"--gpu-memory {gpu_memory_gb}: give the memory of one GPU in GiB, e.g. 80")
    gpu = probe_gpu()
    facts.cuda_available = bool(gpu.get("cuda"))
    if facts.cuda_available:
        facts.bf16_supported = bool(gpu.get("bf16"))
        if gpu_memory_gb is None and gpu.get("memory_bytes"):
            facts.gpu_memory_gb = gpu["memory_bytes"] / GIB
    facts.flash_attn_installed = importlib.util.find_spec("flash_attn") is not None
    return facts


def local_model_config(config: Config) -> tuple[Optional[dict], Optional[str]]:
    """The source model's config.json when models.source_model is a local directory, or the config a local
    .gguf file's header describes (else None, None)."""
    from ..model.gguf import gguf_config, is_gguf

    src = config.models.source_model
    if src and is_gguf(src) and Path(src).is_file():
        try:
            return gguf_config(src, config.tokenization.cache_dir), src
        except InputError as e:
            log.warning("ignoring the source model's config: %s", e)
    if src and (Path(src) / "config.json").is_file():
        try:
            return read_model_config(src)
        except InputError as e:
            log.warning("ignoring the source model's config: %s", e)
    return None, None
