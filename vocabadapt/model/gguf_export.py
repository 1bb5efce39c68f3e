"""A Hugging Face model directory written as one GGUF file (llama.cpp, ollama, LM Studio), tokenizer included.

The counterpart of `gguf.py` (GGUF in): a user who came with a GGUF file gets one back. The file is what
llama.cpp's `convert_hf_to_gguf.py` writes for a Llama-family model with a byte-level BPE tokenizer:

    general.* / <arch>.* hyperparameters        from config.json
    tokenizer.ggml.*, tokenizer.chat_template    from tokenizer.json (vocabadapt.model.gguf_tokenizer)
    token_embd, blk.N.*, output_norm[, output]  the tensors, named by the gguf package's tensor map

Two facts of the format that matter for correctness:
- llama.cpp's Llama rope rotates adjacent pairs of a head's rows, Hugging Face rotates its two halves, so
  the converter reorders the rows of every q and k projection (`_permute_qk`); readers undo it.
- A tied model writes no `output.weight` (readers tie the head to `token_embd`); an untied one must write it.

Tensors are streamed: the tensor table is built from the safetensors headers, then one tensor at a time is
read, converted and written, so peak memory is about the largest tensor, not the model. The file is
written under a temporary name beside the target and renamed only when complete.
"""

from __future__ import annotations

import errno
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import InputError, StageError
from ..io import TMP_PREFIX
from .gguf_tokenizer import PRE_TOKENIZERS, GGUFVocab, find_tokenizer_dir, read_vocab, write_vocab
from .streaming import checkpoint_files, read_header, read_tensor

__all__ = [
    "ARCHITECTURES",
    "EXPORT_TYPES",
    "PRE_TOKENIZERS",  # defined in .gguf_tokenizer, kept importable here
    "ExportType",
    "GGUFArchitecture",
    "check_architecture",
    "export_gguf",
    "supported_architectures",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# what can be written: architectures and tensor types (each a registry; pre-tokenizers: .gguf_tokenizer)


@dataclass(frozen=True)
class ExportType:
    """A `--type`: how matrices are stored (1-D tensors, norms and biases, stay float32 as llama.cpp keeps them)."""

    name: str
    matrix: str  # GGMLQuantizationType name for 2-D tensors
    file_type: str  # LlamaFileType name recorded in general.file_type
    description: str


EXPORT_TYPES: dict[str, ExportType] = {
    t.name: t
    for t in (
        ExportType("f16", "F16", "MOSTLY_F16", "float16 matrices (half the size of float32)"),
        ExportType(
            "q8_0", "Q8_0", "MOSTLY_Q8_0", "8-bit blocks of 32 values with one f16 scale (34 bytes per 32 values)"
        ),
    )
}


def _refuse_rope_scaling(config: Any) -> list[str]:
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    kind = params.get("rope_type") or params.get("type") or "default"
    if kind != "default":
        return [f"rope scaling '{kind}' (the writer has no rope_freqs tensor or scaling keys for it)"]
    return []


def _refuse_llama(config: Any) -> list[str]:
    problems = _refuse_rope_scaling(config)
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        problems.append("attention_bias/mlp_bias (llama GGUF readers do not map these biases)")
    return problems


@dataclass(frozen=True)
class GGUFArchitecture:
    """How one Hugging Face `model_type` is written: the GGUF architecture and what differs from plain Llama."""

    model_type: str
    gguf_arch: str  # gguf.MODEL_ARCH member name
    permute_qk: bool  # reorder q/k rows for llama.cpp's pairwise rope (Llama, Mistral; not Qwen2's NeoX rope)
    refuse: Callable[[Any], list[str]]  # config features this writer cannot express
    note: str


ARCHITECTURES: dict[str, GGUFArchitecture] = {
    a.model_type: a
    for a in (
        GGUFArchitecture("llama", "LLAMA", True, _refuse_llama, "Llama 2/3, SmolLM, TinyLlama"),
        # llama.cpp's converter writes Mistral as the llama architecture too; a sliding window shorter than
        # the context is expressed by capping context_length at it (see _hparams).
        GGUFArchitecture("mistral", "LLAMA", True, _refuse_llama, "written as llama, as llama.cpp's converter does"),
        GGUFArchitecture("qwen2", "QWEN2", False, _refuse_rope_scaling, "Qwen2 / Qwen2.5 (q/k/v biases)"),
    )
}


def supported_architectures() -> list[str]:
    return sorted(ARCHITECTURES)


# --------------------------------------------------------------------------------------------------
# the plan: every check before the first byte is written


@dataclass
class _TensorPlan:
    hf_name: str  # key in the safetensors checkpoint
    gguf_name: str
    file: Path
    shape: tuple[int, ...]  # HF (out, in) order; the writer reverses it into GGUF's order
    qtype: str  # GGMLQuantizationType name
    permute_heads: int | None = None  # q/k: number of heads whose rows are reordered


@dataclass
class _Plan:
    config: Any
    arch: GGUFArchitecture
    export_type: ExportType
    tensors: list[_TensorPlan] = field(default_factory=list)
    tied: bool = False


def _load_config(model_dir: Path) -> Any:
    from transformers import AutoConfig

    if not (model_dir / "config.json").is_file():
        raise InputError(
            f"{model_dir} has no config.json; give a Hugging Face model directory (e.g. a run's model/stage2)"
        )
    try:
        return AutoConfig.from_pretrained(str(model_dir))
    except Exception as e:
        raise InputError(f"{model_dir}/config.json could not be read ({type(e).__name__}: {str(e)[:200]})") from None


def check_architecture(config: Any, where: Path | str) -> GGUFArchitecture:
    """The writer for this config's model_type.

    Raises:
        InputError: the architecture (or one of its features) cannot be written, naming it and what can.
    """
    model_type = getattr(config, "model_type", None)
    arch = ARCHITECTURES.get(str(model_type))
    if arch is None:
        raise InputError(
            f"{where}: architecture '{model_type}' ({', '.join(getattr(config, 'architectures', None) or [])}) "
            f"cannot be exported to GGUF; the writer supports {', '.join(supported_architectures())} (the "
            f"Llama family the GGUF input reads); for another architecture use llama.cpp's convert_hf_to_gguf.py "
            f"on the model directory"
        )
    problems = arch.refuse(config)
    if problems:
        raise InputError(f"{where}: this {model_type} model cannot be exported to GGUF: {'; '.join(problems)}")
    return arch


def _plan(model_dir: Path, export_type: ExportType) -> _Plan:
    import gguf

    from .keys import meta_model

    config = _load_config(model_dir)
    arch = check_architecture(config, model_dir)
    # The model's own parameter names and shapes: what the checkpoint must hold.
    expected = {k: tuple(v.shape) for k, v in meta_model(config, trust_remote_code=False).state_dict().items()}
    tied = bool(getattr(config, "tie_word_embeddings", False))
    files, _ = checkpoint_files(model_dir)
    found: dict[str, tuple[Path, tuple[int, ...]]] = {}
    for name in files:
        path = model_dir / name
        _, header = read_header(path)
        for key, info in header.items():
            if key != "__metadata__":
                found[key] = (path, tuple(info["shape"]))

    head, embed = "lm_head.weight", "model.embed_tokens.weight"
    if tied:
        expected.pop(head, None)  # a tied head is not a tensor of its own: readers tie output to token_embd
        if head in found and embed in found:
            if not torch.equal(read_tensor(found[head][0], head), read_tensor(found[embed][0], embed)):
                raise InputError(
                    f"{model_dir}: config.json says tie_word_embeddings=true but {head} differs from {embed}; "
                    f"a GGUF file can only tie them, so fix tie_word_embeddings in config.json (false keeps the head)"
                )
            found.pop(head)
    missing = sorted(set(expected) - set(found))
    if missing:
        raise InputError(
            f"{model_dir}: the checkpoint lacks {len(missing)} tensor(s) the model needs, e.g. {missing[:3]}"
            + (f" (untied model: {head} must be saved)" if head in missing else "")
        )

    n_blocks = int(config.num_hidden_layers)
    name_map = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, arch.gguf_arch), n_blocks)
    matrix = export_type.matrix
    plan = _Plan(config=config, arch=arch, export_type=export_type, tied=tied)
    n_head = int(config.num_attention_heads)
    n_kv = int(getattr(config, "num_key_value_heads", None) or n_head)  # grouped-query attention: fewer k heads
    for key in expected:  # the model's own order: token_embd, blocks, output_norm, output
        path, shape = found[key]
        if shape != expected[key]:
            raise InputError(f"{path}: tensor {key} has shape {shape}, the model's config expects {expected[key]}")
        gguf_name = name_map.get_name(key, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise InputError(
                f"{model_dir}: tensor {key} has no GGUF name for the {arch.gguf_arch.lower()} architecture"
            )
        qtype = "F32" if len(shape) == 1 else matrix
        if qtype == "Q8_0" and shape[-1] % 32:
            qtype = "F16"  # Q8_0 blocks run along rows of 32; llama.cpp's converter falls back the same way
            log.info("%s: %d columns is not a multiple of 32, stored as F16", key, shape[-1])
        heads = None
        if arch.permute_qk and ".self_attn.q_proj." in key:
            heads = n_head
        elif arch.permute_qk and ".self_attn.k_proj." in key:
            heads = n_kv
        plan.tensors.append(_TensorPlan(key, gguf_name, path, shape, qtype, heads))
    unused = sorted(set(found) - set(expected) - {head})
    if unused:
        log.warning(
            "%s: %d checkpoint tensor(s) are not model parameters and are not written, e.g. %s",
            model_dir,
            len(unused),
            unused[:3],
        )
    return plan


def _permute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's row order for a q or k projection: (heads*head_dim, hidden) -> same shape.

    Within each head HF's rope pairs row i with row i + head_dim/2 (rotate_half); llama.cpp's pairs rows
    2i and 2i+1. So each head's rows (2, head_dim/2) are transposed to (head_dim/2, 2), as
    convert_hf_to_gguf.py's LlamaModel.permute does; transformers' GGUF reader applies the inverse.
    """
    rows = w.shape[0]
    return w.reshape(n_heads, 2, rows // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# --------------------------------------------------------------------------------------------------
# writing


def _rope_theta(config: Any) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    theta = params.get("rope_theta", getattr(config, "rope_theta", None))
    return float(theta if theta is not None else 10000.0)


def _hparams(writer: Any, config: Any, arch: GGUFArchitecture) -> None:
    n_head = int(config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // n_head)
    context = int(config.max_position_embeddings)
    window = getattr(config, "sliding_window", None) if arch.model_type == "mistral" else None
    if window and int(window) < context:
        log.warning("sliding_window %d < context %d: the GGUF context_length is capped at the window", window, context)
        context = int(window)
    writer.add_context_length(context)
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_block_count(int(config.num_hidden_layers))
    writer.add_feed_forward_length(int(config.intermediate_size))
    writer.add_head_count(n_head)
    writer.add_head_count_kv(int(getattr(config, "num_key_value_heads", None) or n_head))
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(int(config.vocab_size))
    writer.add_rope_dimension_count(head_dim)
    if head_dim != int(config.hidden_size) // n_head:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)


def _tensor_info(writer: Any, t: _TensorPlan) -> None:
    import gguf

    qtype = gguf.GGMLQuantizationType[t.qtype]
    if t.qtype in ("F32", "F16"):
        dtype = np.float32 if t.qtype == "F32" else np.float16
        writer.add_tensor_info(t.gguf_name, t.shape, np.dtype(dtype), int(np.prod(t.shape)) * np.dtype(dtype).itemsize)
    else:
        byte_shape = gguf.quant_shape_to_byte_shape(t.shape, qtype)
        writer.add_tensor_info(t.gguf_name, byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape)), raw_dtype=qtype)


def _tensor_data(t: _TensorPlan) -> np.ndarray:
    import gguf

    w = read_tensor(t.file, t.hf_name).to(torch.float32)
    if not bool(torch.isfinite(w).all()):
        raise InputError(f"{t.file}: tensor {t.hf_name} has NaN/inf values; the model is broken, nothing to export")
    a = w.numpy()
    if t.permute_heads:
        a = _permute_qk(a, t.permute_heads)
    return gguf.quants.quantize(np.ascontiguousarray(a), gguf.GGMLQuantizationType[t.qtype])


def _write(path: Path, plan: _Plan, vocab: GGUFVocab, tok_dir: Path, name: str) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[getattr(gguf.MODEL_ARCH, plan.arch.gguf_arch)])
    try:
        writer.add_type(gguf.GGUFType.MODEL)
        writer.add_name(name)
        _hparams(writer, plan.config, plan.arch)
        writer.add_file_type(int(gguf.LlamaFileType[plan.export_type.file_type]))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        write_vocab(writer, vocab, tok_dir)
        for t in plan.tensors:
            _tensor_info(writer, t)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for t in plan.tensors:  # one tensor in memory at a time, in the order of the tensor table
            writer.write_tensor_data(_tensor_data(t))
        writer.flush()
        if writer.fout:
            for f in writer.fout:
                os.fsync(f.fileno())
    finally:
        writer.close()


def export_gguf(
    model_dir: str | os.PathLike,
    out: str | os.PathLike,
    gguf_type: str = "f16",
    tokenizer_dir: str | os.PathLike | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Write a Hugging Face causal LM directory and its tokenizer as one GGUF file.

    Args:
        model_dir: config.json + safetensors (one file or sharded); a supported architecture (ARCHITECTURES).
        out: the .gguf file to write; replaced only once the new file is complete.
        gguf_type: a key of EXPORT_TYPES ("f16" or "q8_0").
        tokenizer_dir: where tokenizer.json lives, if not in model_dir.
        name: general.name (default: the model directory's name).
    Returns:
        a summary: file, bytes, architecture, type, tensors, tied, vocab, pre-tokenizer, merges, chat_template.
    Raises:
        InputError: unsupported architecture, type or tokenizer; a missing or misshapen tensor.
        StageError: the file could not be written (full disk, permissions); nothing is left under `out`.
    """
    model_dir, out = Path(model_dir), Path(out)
    if gguf_type not in EXPORT_TYPES:
        raise InputError(f"unknown GGUF type '{gguf_type}'; choose one of {', '.join(EXPORT_TYPES)}")
    export_type = EXPORT_TYPES[gguf_type]
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise InputError(
            "writing GGUF needs the 'gguf' package, which is not installed; pip install 'gguf>=0.10'"
        ) from None
    if out.suffix.lower() != ".gguf":
        raise InputError(f"{out}: the output file name must end in .gguf")
    plan = _plan(model_dir, export_type)
    tok_dir = find_tokenizer_dir(model_dir, Path(tokenizer_dir) if tokenizer_dir else None)
    vocab = read_vocab(tok_dir, int(plan.config.vocab_size))

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX + out.name + ".", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _write(tmp, plan, vocab, tok_dir, name or model_dir.name)
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)  # mkstemp makes it private; the finished file gets the usual permissions
        os.replace(tmp, out)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        what = "no space left on the device" if e.errno == errno.ENOSPC else f"{type(e).__name__}: {e}"
        raise StageError(
            f"could not write {out} ({what}); nothing was left under that name: free space or choose another "
            f"--gguf path, then rerun"
        ) from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tensor_types: dict[str, int] = {}
    for t in plan.tensors:
        tensor_types[t.qtype] = tensor_types.get(t.qtype, 0) + 1
    size = out.stat().st_size
    summary: dict[str, Any] = {
        "file": str(out),
        "bytes": size,
        "model_dir": str(model_dir),
        "architecture": plan.arch.model_type,
        "gguf_architecture": plan.arch.gguf_arch.lower(),
        "type": gguf_type,
        "tensors": len(plan.tensors),
        "tensor_types": tensor_types,
        "tied_embeddings": plan.tied,
        "vocab": len(vocab.tokens),
        "added_tokens": vocab.added,
        "pre_tokenizer": vocab.pre,
    }
    log.info("wrote %s (%.1f MB, %s, %d tensors)", out, size / 1e6, gguf_type, len(plan.tensors))
    return summary
