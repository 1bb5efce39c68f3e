"""safetensors files read and written without loading the model.

Every safetensors file of a checkpoint is either copied unchanged or rewritten by streaming: its
header is re-made and the byte ranges of the untouched tensors are copied in chunks, so peak memory is
about the size of the tensors being replaced, not of the model. (The safetensors library only writes
whole in-memory dicts; the file format is a JSON header plus raw little-endian buffers,
https://github.com/huggingface/safetensors#format, which is what `stream_rewrite` writes.)
"""

from __future__ import annotations

import json
import math
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch

from ..errors import InputError
from ..io import write_json

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
COPY_CHUNK = 64 << 20  # bytes per read when copying an untouched tensor's bytes

# safetensors dtype codes of the float types rows are built in and converted to
_ST_FLOAT = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
_ST_CODE = {v: k for k, v in _ST_FLOAT.items()}
DTYPE_NAMES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def read_header(path: Path) -> tuple[int, dict[str, Any]]:
    """(byte offset where the data buffer starts, header dict) of a safetensors file."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise InputError(f"{path} is not a safetensors file (too short); re-save the model")
        (n,) = struct.unpack("<Q", raw)
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            raise InputError(f"{path}: unreadable safetensors header ({e}); re-save the model") from None
    return 8 + n, header


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    # (numel * itemsize,) uint8 view of a contiguous CPU tensor; bf16 has no numpy dtype, uint8 does
    return memoryview(t.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy())  # type: ignore[arg-type]


def read_tensor(path: Path, name: str) -> torch.Tensor:
    """One tensor of a safetensors file, read with plain file reads.

    (safe_open maps the file; the mapped pages would count in the process's resident memory on top
    of the tensor's own copy, doubling the transplant's peak.)
    Raises:
        InputError: the file lacks the tensor, or it is not a float tensor.
    """
    start, header = read_header(path)
    info = header.get(name)
    if info is None:
        raise InputError(f"{path} has no tensor '{name}'; is the index (model.safetensors.index.json) stale?")
    if info["dtype"] not in _ST_FLOAT:
        raise InputError(f"{path}: tensor '{name}' has dtype {info['dtype']}, expected a float type")
    a, b = info["data_offsets"]
    t = torch.empty(info["shape"], dtype=_ST_FLOAT[info["dtype"]])
    buf = _tensor_bytes(t)
    if len(buf) != b - a:
        raise InputError(f"{path}: tensor '{name}' has {b - a} bytes, its shape needs {len(buf)}; re-save the model")
    with open(path, "rb") as f:
        f.seek(start + a)
        if f.readinto(buf) != b - a:
            raise InputError(f"{path} is truncated (tensor {name}); re-download or re-save the model")
    return t


@dataclass
class Spilled:
    """A built tensor parked in a raw little-endian file until its shard is written (frees memory)."""

    path: Path
    dtype: torch.dtype
    shape: tuple[int, ...]

    @classmethod
    def write(cls, t: torch.Tensor, path: Path) -> Spilled:
        with open(path, "wb") as f:
            f.write(_tensor_bytes(t))
        return cls(path, t.dtype, tuple(t.shape))

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * torch.empty((), dtype=self.dtype).element_size()


def _copy_bytes(f: IO[bytes], out: IO[bytes], pos: int, left: int, what: str) -> None:
    f.seek(pos)
    while left:
        chunk = f.read(min(left, COPY_CHUNK))
        if not chunk:
            raise InputError(f"{what} is truncated; re-download or re-save the model")
        out.write(chunk)
        left -= len(chunk)


def stream_rewrite(
    src: Path,
    dst: Path,
    replacements: dict[str, Spilled],
    convert: torch.dtype | None = None,
    added: dict[str, Spilled] | None = None,
) -> None:
    """Write `dst` = `src` with some tensors replaced (and, with `convert`, float tensors cast), and the
    tensors of `added` (names the file lacks, e.g. the head of a model being untied) appended.

    Every tensor's bytes are copied in COPY_CHUNK pieces; a converted tensor is read alone.
    Raises:
        InputError: a replacement the file lacks, or an addition it already holds.
    """
    start, header = read_header(src)
    meta = header.pop("__metadata__", None)
    missing = set(replacements) - set(header)
    if missing:
        raise InputError(f"{src} lacks the tensor(s) {sorted(missing)} that should be rewritten")
    added = added or {}
    clash = set(added) & set(header)
    if clash:
        raise InputError(f"{src} already holds the tensor(s) {sorted(clash)} that should be added")
    replacements = {**replacements, **added}
    names = sorted(header, key=lambda k: header[k]["data_offsets"][0]) + sorted(added)  # the file's order, then new
    plan: list[tuple[str, str]] = []  # (name, how): replace / convert / raw
    new_header: dict[str, Any] = {"__metadata__": meta} if meta is not None else {}
    offset = 0
    for name in names:
        info: dict[str, Any] = header.get(name) or {}  # {} for an added tensor (always in replacements)
        if name in replacements:
            r = replacements[name]
            code, shape, nbytes, how = _ST_CODE[r.dtype], list(r.shape), r.nbytes, "replace"
        elif convert is not None and info["dtype"] in _ST_FLOAT and _ST_FLOAT[info["dtype"]] != convert:
            code, shape, how = _ST_CODE[convert], info["shape"], "convert"
            nbytes = math.prod(shape) * torch.empty((), dtype=convert).element_size()
        else:
            code, shape, how = info["dtype"], info["shape"], "raw"
            nbytes = info["data_offsets"][1] - info["data_offsets"][0]
        plan.append((name, how))
        new_header[name] = {"dtype": code, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(new_header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the format pads the header to 8-byte alignment with spaces
    with open(dst, "wb") as out, open(src, "rb") as f:
        out.write(struct.pack("<Q", len(blob)))
        out.write(blob)
        for name, how in plan:
            if how == "replace":
                r = replacements[name]
                with open(r.path, "rb") as spilled:
                    _copy_bytes(spilled, out, 0, r.nbytes, f"{r.path} (built {name})")
            elif how == "convert":
                out.write(_tensor_bytes(read_tensor(src, name).to(convert)))
            else:
                a, b = header[name]["data_offsets"]
                _copy_bytes(f, out, start + a, b - a, f"{src} (tensor {name})")


def checkpoint_files(model_dir: Path) -> tuple[list[str], dict[str, str] | None]:
    """(safetensors file names, weight_map of the index or None for a single file)."""
    index = model_dir / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (ValueError, KeyError) as e:
            raise InputError(f"{index} is not a valid safetensors index ({e}); re-save the model") from None
        return sorted(set(weight_map.values())), weight_map
    if (model_dir / SINGLE_FILE).is_file():
        return [SINGLE_FILE], None
    raise InputError(f"{model_dir} has neither {SINGLE_FILE} nor {INDEX_FILE}; is it a safetensors model directory?")


def tensor_sizes(path: Path) -> int:
    _, header = read_header(path)
    return sum(v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items() if k != "__metadata__")


def has_safetensors(model_dir: Path) -> bool:
    return (model_dir / INDEX_FILE).is_file() or (model_dir / SINGLE_FILE).is_file()


def weight_map_of(model_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The checkpoint's safetensors files and its tensor -> file map (a single file's, from its header)."""
    files, weight_map = checkpoint_files(model_dir)
    if weight_map is None:
        _, header = read_header(model_dir / SINGLE_FILE)
        weight_map = {k: SINGLE_FILE for k in header if k != "__metadata__"}
    return files, weight_map


def write_checkpoint(
    model_dir: Path,
    tmp: Path,
    files: list[str],
    weight_map: dict[str, str],
    replacements: dict[str, Spilled],
    added: dict[str, Spilled],
    convert: torch.dtype | None,
    trust_remote_code: bool,
) -> tuple[list[str], list[str]]:
    """Write model_dir's weights into `tmp`: files with a replaced or added tensor (or all of them, for a
    dtype change) rewritten by streaming, the others copied. Returns (files rewritten, files copied).

    weight_map must name the file of every replaced and added key (an added key goes into the file the
    caller chose). Also writes the index of a sharded checkpoint and, under trust_remote_code, the model's
    own code.
    """
    by_file: dict[str, dict[str, Spilled]] = {}
    for key, t in replacements.items():
        by_file.setdefault(weight_map[key], {})[key] = t
    added_by_file: dict[str, dict[str, Spilled]] = {}
    for key, t in added.items():
        added_by_file.setdefault(weight_map[key], {})[key] = t
    rewritten, copied = [], []
    for name in files:
        if name in by_file or name in added_by_file or convert is not None:
            stream_rewrite(model_dir / name, tmp / name, by_file.get(name, {}), convert, added=added_by_file.get(name))
            rewritten.append(name)
        else:
            shutil.copyfile(model_dir / name, tmp / name)
            copied.append(name)
    if (model_dir / INDEX_FILE).is_file():
        index = json.loads((model_dir / INDEX_FILE).read_text(encoding="utf-8"))
        index["weight_map"].update({k: weight_map[k] for k in added})
        index.setdefault("metadata", {})["total_size"] = sum(tensor_sizes(tmp / name) for name in files)
        write_json(tmp / INDEX_FILE, index)
    if trust_remote_code:
        for py in model_dir.glob("*.py"):  # the model's own code travels with it (auto_map)
            shutil.copyfile(py, tmp / py.name)
    return rewritten, copied
