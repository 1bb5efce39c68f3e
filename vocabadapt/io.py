"""Atomic file and directory writes, the one set of JSON/JSONL readers, fingerprints.

Every artifact a stage writes goes through these, so a process killed mid-write leaves a temp name
behind (ignored, cleaned on the next write), never a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import StageError

log = logging.getLogger(__name__)

TMP_PREFIX = ".tmp-"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _disk_full_message(path: Path, err: OSError) -> StageError:
    try:
        free = f" ({shutil.disk_usage(path.parent if path.parent.exists() else '/').free / 1e9:.2f} GB free there now)"
    except OSError:
        free = ""
    return StageError(
        f"no space left on the device while writing {path}{free}: free disk space on that file system "
        f"(old run directories under pipeline.run_root, caches) or point pipeline.run_root elsewhere, then "
        f"rerun the same command; the previous version of this file is intact and a stage that keeps "
        f"partial work (tokenize, embed) resumes from it"
    )


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    """Open a temp file next to `path`; on success fsync and rename it over `path`.

    On any exception the temp file is removed and `path` keeps its previous content.
    Raises:
        StageError: when the disk is full (ENOSPC), naming the file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    binary = "b" in mode
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:
        _silent_remove(tmp)
        if e.errno == errno.ENOSPC:
            raise _disk_full_message(path, e) from e
        raise
    except BaseException:
        _silent_remove(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temp directory next to `path`; on success replace `path` with it.

    The old directory (if any) is moved aside and deleted only after the new one is in place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent))
    try:
        yield tmp
        replace_dir(tmp, path)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if e.errno == errno.ENOSPC:
            raise _disk_full_message(path, e) from e
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(new: str | os.PathLike, path: str | os.PathLike) -> None:
    """Put the finished directory `new` (same file system) in place of `path`, atomically.

    The old directory (if any) is moved aside and deleted only after the new one is in place.
    """
    new, path = Path(new), Path(path)
    old = None
    if path.exists():
        old = path.with_name(f"{TMP_PREFIX}old-{path.name}.{os.getpid()}")
        os.replace(path, old)
    try:
        os.replace(new, path)
    except BaseException:
        if old is not None:
            os.replace(old, path)  # put the previous version back before reporting the failure
        raise
    _fsync_dir(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _silent_remove(p: str | os.PathLike) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(p)


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    """Write JSON atomically (sorted keys off: the writer's order is the reading order)."""
    with atomic_write(path) as f:
        json.dump(obj, f, indent=indent, ensure_ascii=False, allow_nan=False)
        f.write("\n")


def read_json(path: str | os.PathLike) -> Any:
    """Parsed JSON of a file (raises OSError / ValueError as json does)."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_json_or_none(path: str | os.PathLike) -> Any:
    """Parsed JSON, or None when the file is missing or unreadable (logged)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except (OSError, ValueError) as e:
        log.warning("cannot read %s (%s); what needs it is not done", path, e)
        return None


def iter_jsonl(path: str | os.PathLike) -> Iterator[Any]:
    """Records of a JSONL file this project wrote (blank lines skipped; a bad line raises ValueError)."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Object records of a JSONL log ([] when missing); lines a kill cut off, or non-objects, are skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fingerprint(path: str | os.PathLike, how: str = "sha256") -> dict[str, Any] | None:
    """Fingerprint a file or a directory tree (temp names skipped); None when it does not exist.

    Returns {"bytes": total size, "files": count, "sha256": digest over (relative name, file digest)}
    (without "sha256" when how == "size").
    """
    path = Path(path)
    if not path.exists():
        return None
    files = (
        [path]
        if path.is_file()
        else sorted(
            # Only names inside the tree count: a run dir that lives under a ".tmp-..." folder is still seen.
            p
            for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(TMP_PREFIX) for part in p.relative_to(path).parts)
        )
    )
    total = 0
    h = hashlib.sha256()
    for f in files:
        size = f.stat().st_size
        total += size
        rel = f.name if f == path else str(f.relative_to(path))
        h.update(rel.encode() + b"\0" + str(size).encode() + b"\0")
        if how == "sha256":
            h.update(sha256_file(f).encode())
    out: dict[str, Any] = {"bytes": total, "files": len(files)}
    if how == "sha256":
        out["sha256"] = h.hexdigest()
    return out
