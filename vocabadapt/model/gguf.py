"""GGUF files (llama.cpp checkpoints) as a source model: checked, dequantised once, cached.

`models.source_model` (or `models.source_tokenizer`) may name a `.gguf` file. The first stage that needs
it turns it into a plain Hugging Face directory (float32 safetensors, config.json without a
quantization_config, the tokenizer the file carries) and every later load reads that directory, so the
rest of the pipeline never sees GGUF and the run's output models are ordinary HF directories.

The directory is cached by the file's sha256 under `<tokenization.cache_dir>/gguf/<sha256>/`, or
`$XDG_CACHE_HOME/vocabadapt/gguf/<sha256>/` (default `~/.cache/...`) when no cache_dir is set: a file
renamed or moved is not dequantised again, a changed file gets a new directory. The stages that read the
file record its sha256 in the manifest (`gguf_record`).

transformers does the reading (`from_pretrained(folder, gguf_file=name)`, through the `gguf` package);
this module checks the file first, so a missing package, a damaged file, or an architecture or
quantisation that cannot be read fails with a message naming the file and what to do, before any work.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io import TMP_PREFIX, sha256_file

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
SOURCE_RECORD = "gguf_source.json"  # written last into a finished cache directory
INSTALL_HINT = "pip install 'gguf>=0.10'"

_sha_memo: dict[tuple[str, int, int], str] = {}


def is_gguf(name: str | os.PathLike | None) -> bool:
    """Whether a config value names a GGUF file (by its suffix; the file itself is checked later)."""
    return name is not None and str(name).lower().endswith(".gguf")


def file_sha256(path: Path) -> str:
    """sha256 of the file, computed once per (path, size, mtime) in a process (the stages ask repeatedly)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _sha_memo:
        _sha_memo[key] = sha256_file(path)
    return _sha_memo[key]


def gguf_record(name: str | None) -> dict[str, Any] | None:
    """What a stage's manifest record keeps about a GGUF input: its path, size and sha256; None if not GGUF."""
    if not is_gguf(name):
        return None
    path = Path(str(name))
    if not path.is_file():
        raise InputError(f"GGUF file {path} does not exist")
    return {"file": str(path), "bytes": path.stat().st_size, "sha256": file_sha256(path)}


# --------------------------------------------------------------------------------------------------
# checking a file before reading it


@dataclass(frozen=True)
class GGUFInfo:
    """What the header says: enough to refuse a file before dequantising anything."""

    architecture: str
    tensor_types: dict[str, int]  # quantisation type name -> number of tensors
    tensors: int
    bytes: int


def _supported_types() -> set[str]:
    from gguf import quants

    # gguf.quants.dequantize handles F32, F16 and every type with registered traits; others raise.
    return {"F32", "F16"} | {t.name for t in quants._type_traits}


def _supported_architectures() -> list[str]:
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    # The list is the keys of transformers' metadata mapping, which also holds two non-architectures.
    return [a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer")]


def inspect_gguf(path: Path) -> GGUFInfo:
    """Read and check a GGUF file's header and tensor table (no dequantisation).

    Raises:
        InputError: the file is missing, the `gguf` package is not installed, the file is not GGUF, is
            truncated or corrupt, or holds an architecture or quantisation transformers cannot read.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"GGUF file {path} does not exist")
    try:
        import gguf  # noqa: F401  (transformers reads GGUF through it)
    except ImportError:
        raise InputError(
            f"{path}: reading a GGUF file needs the 'gguf' package, which is not installed; "
            f"{INSTALL_HINT}, or give a Hugging Face model directory instead"
        ) from None
    size = path.stat().st_size
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise InputError(
            f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF'); give a .gguf file "
            f"written by llama.cpp, or a Hugging Face model directory"
        )
    from gguf import GGUFReader

    damaged = (
        f"{path} ({size:,} bytes) is truncated or corrupt; download or copy it again "
        f"(compare its sha256 with the publisher's)"
    )
    try:
        reader = GGUFReader(str(path))
    except Exception as e:  # the reader raises ValueError/IndexError/struct errors on a damaged file
        raise InputError(f"{damaged} [gguf: {type(e).__name__}: {str(e)[:200]}]") from None
    # A file cut inside the tensor data can still parse (tensors are memory-mapped views): check ends.
    for t in reader.tensors:
        end = int(t.data_offset) + int(t.n_bytes)
        if end > size or t.data.nbytes != int(t.n_bytes):
            raise InputError(f"{damaged}: tensor {t.name} ends at byte {end:,}")
    field = reader.fields.get("general.architecture")
    if field is None:
        raise InputError(f"{path} has no general.architecture key; it is not a model GGUF file")
    arch = bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")
    supported = _supported_architectures()
    if arch not in supported:
        raise InputError(
            f"{path}: architecture '{arch}' cannot be read from GGUF by transformers "
            f"(it reads: {', '.join(sorted(supported))}); convert the model's original Hugging Face "
            f"checkpoint instead, or upgrade transformers"
        )
    types = Counter(t.tensor_type.name for t in reader.tensors)
    bad = sorted(set(types) - _supported_types())
    if bad:
        example = next(t.name for t in reader.tensors if t.tensor_type.name in bad)
        raise InputError(
            f"{path}: {sum(types[b] for b in bad)} tensor(s) are quantised as {', '.join(bad)} "
            f"(e.g. {example}), which the gguf package cannot dequantise; use a file with another "
            f"quantisation (F16, Q8_0, Q4_K_M, ...) or the original Hugging Face checkpoint"
        )
    return GGUFInfo(architecture=arch, tensor_types=dict(types), tensors=len(reader.tensors), bytes=size)


def gguf_config(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The HF config a GGUF file describes, as a config.json dict: its dequantised copy's when cached,
    else read from the header (no tensors are read; seconds for a large vocabulary).

    Raises:
        InputError: see inspect_gguf.
    """
    from transformers import AutoConfig

    path = Path(path)
    cached = default_cache_root(cache_dir) / file_sha256(path) / "config.json"
    if cached.is_file() and (cached.parent / SOURCE_RECORD).is_file():
        return json.loads(cached.read_text(encoding="utf-8"))
    inspect_gguf(path)
    try:
        config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
    except Exception as e:
        raise InputError(
            f"{path}: transformers could not read a model config from it ({type(e).__name__}: {str(e)[:300]})"
        ) from None
    data = config.to_dict()
    data.pop("quantization_config", None)
    return data


# --------------------------------------------------------------------------------------------------
# dequantising into a plain HF directory


def default_cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """`<cache_dir>/gguf`, else `$XDG_CACHE_HOME/vocabadapt/gguf` (default ~/.cache/vocabadapt/gguf)."""
    if cache_dir:
        return Path(cache_dir) / "gguf"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vocabadapt" / "gguf"


def dequantise_gguf(path: Path, out_dir: Path) -> dict[str, Any]:
    """Write `path` as a float32 safetensors HF model directory with its tokenizer into `out_dir`.

    transformers loads a GGUF model dequantised but refuses to save it (its config carries a GGUF
    quantization_config), so the model is rebuilt from that config without it and the state dict copied
    in, tensor by tensor with names and shapes checked; tied embeddings stay tied.
    Returns: the record written to out_dir/gguf_source.json.
    Raises:
        InputError: see inspect_gguf; or transformers could not build the model or tokenizer from it.
    """
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    info = inspect_gguf(path)
    folder, name = str(path.parent), path.name
    try:
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    except Exception as e:
        raise InputError(
            f"{path}: transformers could not build a model and tokenizer from it "
            f"({type(e).__name__}: {str(e)[:300]}); convert the original checkpoint instead"
        ) from None

    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    source = loaded.state_dict()
    target = plain.state_dict()
    if set(source) != set(target):
        raise InputError(
            f"{path}: the dequantised tensors do not match a {type(plain).__name__}: missing "
            f"{sorted(set(target) - set(source))[:5]}, unexpected {sorted(set(source) - set(target))[:5]}"
        )
    with torch.no_grad():
        for key, tensor in source.items():
            if target[key].shape != tensor.shape:
                raise InputError(
                    f"{path}: tensor {key} has shape {tuple(tensor.shape)}, the model expects "
                    f"{tuple(target[key].shape)}"
                )
            if not bool(torch.isfinite(tensor).all()):
                raise InputError(f"{path}: tensor {key} has NaN/inf values after dequantisation; the file is corrupt")
            target[key].copy_(tensor)
    tied = bool(getattr(plain.config, "tie_word_embeddings", False))
    if tied:
        plain.tie_weights()
        if plain.get_output_embeddings().weight.data_ptr() != plain.get_input_embeddings().weight.data_ptr():
            raise InputError(
                f"{path}: the GGUF file has no separate output tensor, but the rebuilt model's output "
                f"head is not tied to its input embeddings"
            )
    plain.eval()
    del loaded

    plain.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    from importlib.metadata import version

    record = {
        "file": str(path),
        "bytes": info.bytes,
        "sha256": file_sha256(path),
        "architecture": info.architecture,
        "model_class": type(plain).__name__,
        "tensor_types": info.tensor_types,
        "tied_embeddings": tied,
        "parameters": sum(p.numel() for p in plain.parameters()),
        "vocab": len(tokenizer),
        "dtype": "float32",
        "versions": {"transformers": transformers.__version__, "gguf": version("gguf")},
    }
    # Written last: a directory with this file is a finished one.
    (Path(out_dir) / SOURCE_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def gguf_model_dir(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """The HF directory for a GGUF file: from the cache, or dequantised into it now.

    Args:
        path: the .gguf file.
        cache_dir: `tokenization.cache_dir` (the cache lives under `<cache_dir>/gguf/`); None = the user cache.
    Returns:
        `<cache root>/<sha256>/`, holding config.json, model.safetensors, the tokenizer and gguf_source.json.
    Raises:
        InputError: see inspect_gguf and dequantise_gguf.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"GGUF file {path} does not exist")
    sha = file_sha256(path)
    root = default_cache_root(cache_dir)
    out = root / sha
    if (out / SOURCE_RECORD).is_file():
        return out
    log.info("dequantising %s (sha256 %s…) into %s; later runs reuse it", path, sha[:12], out)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + sha[:12] + ".", dir=root))
    try:
        dequantise_gguf(path, tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared like the HF cache
        # First writer wins: a concurrent process may have finished the same directory meanwhile, and
        # replacing it would pull files from under a reader. A half-written leftover (no record) is replaced.
        if out.exists() and not (out / SOURCE_RECORD).is_file():
            shutil.rmtree(out, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not (out / SOURCE_RECORD).is_file():
        raise InputError(f"could not write the dequantised copy of {path} to {out}; check that {root} is writable")
    return out
