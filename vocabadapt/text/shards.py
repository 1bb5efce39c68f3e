"""Token-id shards: the on-disk format between tokenize and embed / train / evaluate.

A shard directory holds
    ids-00000.npy, ids-00001.npy, ...   uint32 token ids, documents concatenated (no separators)
    docs.npy                            int64 document start offsets into the concatenation, length
                                        documents + 1 (docs[i]:docs[i+1] is document i)
    meta.json                           {"tokens", "documents", "bytes", "shards", "vocab_size", ...}

Arrays are plain .npy so they memory-map (`np.load(..., mmap_mode="r")`) and nothing ever loads a
whole corpus of ids into memory. Documents may span shard boundaries.

While a directory is being written it also holds progress.json and docs-partial.npy, rewritten after
every finished shard: how many documents (and how many tokens of the next one) the finished shards
hold. A writer opened with `resume=True` on such a directory continues after the last finished shard,
and the directory it closes is byte for byte the one an uninterrupted writer makes (a shard's content
depends only on the token stream and `shard_tokens`, never on where the writing stopped).
"""

from __future__ import annotations

import bisect
import logging
from array import array
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import InputError
from ..io import atomic_write, read_json, write_json

log = logging.getLogger(__name__)

PROGRESS = "progress.json"
PARTIAL_OFFSETS = "docs-partial.npy"


class ShardWriter:
    """Append documents of token ids; `close()` writes docs.npy and meta.json last (commit marker).

    With `resume=True` and a progress.json in `directory` (left by a writer that was killed), the
    writer continues after the last finished shard: `documents_done` says how many documents of the
    stream to skip; the next document added must be document `documents_done` of the same stream.
    """

    def __init__(self, directory: str | Path, shard_tokens: int = 50_000_000, resume: bool = False):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.shard_tokens = shard_tokens
        # One shard's worth of ids, filled in place: memory is bounded by shard_tokens x 4 bytes whatever the
        # corpus size (np.empty: pages are only touched as they fill, so a small corpus costs little).
        self._buf = np.empty(shard_tokens, dtype=np.uint32)
        self._buf_len = 0
        self._shards = 0
        self._offsets = array("q", [0])  # int64 document starts; compact (8 bytes a document)
        self._tokens = 0
        self._bytes = 0
        self._doc_bytes = 0  # UTF-8 size of the document being added (progress bookkeeping)
        self._skip = 0  # tokens of the next document that finished shards already hold (resume)
        self.documents_done = 0  # documents of the stream already in finished shards (resume)
        self.resumed_from_shard: int | None = None
        if resume and (self.dir / PROGRESS).exists():
            self._restore()

    def _restore(self) -> None:
        prog = read_json(self.dir / PROGRESS)
        if prog.get("shard_tokens") != self.shard_tokens:
            raise InputError(
                f"{self.dir}: partial shards were written with shard_tokens={prog.get('shard_tokens')}, "
                f"not {self.shard_tokens}; delete the folder to start over"
            )
        done = int(prog["documents"])
        offsets = np.load(self.dir / PARTIAL_OFFSETS)
        if offsets.size < done + 1 or int(prog["shards"]) * self.shard_tokens < int(offsets[done]):
            raise InputError(f"{self.dir}: {PROGRESS} and {PARTIAL_OFFSETS} disagree; delete the folder to start over")
        self._shards = int(prog["shards"])
        self._offsets = array("q", offsets[: done + 1].tolist())
        self._tokens = self._offsets[-1]
        self._bytes = int(prog["bytes"])
        self._skip = self._shards * self.shard_tokens - self._tokens
        self.documents_done = done
        self.resumed_from_shard = self._shards
        # A shard written after the last progress record (killed in between) is rewritten, identically.
        for extra in self.dir.glob("ids-*.npy"):
            if int(extra.stem.split("-")[1]) >= self._shards:
                extra.unlink()

    def add(self, ids: Any, n_bytes: int = 0) -> None:
        """Add one document's ids (any int sequence); `n_bytes` = its UTF-8 size, for bytes/token."""
        arr = np.asarray(ids, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() > np.iinfo(np.uint32).max):
            raise ValueError("token ids must fit in uint32")
        arr = arr.astype(np.uint32)
        self._tokens += arr.size
        self._bytes += n_bytes
        self._doc_bytes = n_bytes
        self._offsets.append(self._tokens)
        if self._skip:
            # Resuming inside a document that spans the last finished shard: its head is already written.
            if arr.size < self._skip:
                raise InputError(
                    f"{self.dir}: the resumed document is shorter than the partial shards say; "
                    f"the input changed since the interruption; delete the folder to start over"
                )
            arr, self._skip = arr[self._skip :], 0
        while arr.size:
            room = self.shard_tokens - self._buf_len
            take, arr = arr[:room], arr[room:]
            self._buf[self._buf_len : self._buf_len + take.size] = take
            self._buf_len += take.size
            if self._buf_len >= self.shard_tokens:
                self._flush()
                self._record_progress()

    def _flush(self) -> None:
        if not self._buf_len:
            return
        with atomic_write(self.dir / f"ids-{self._shards:05d}.npy", "wb") as f:
            np.save(f, self._buf[: self._buf_len])
        self._shards += 1
        self._buf_len = 0

    def _record_progress(self) -> None:
        # Finished shards hold tokens [0, written): the documents that end at or before it are done; only
        # the document being added can straddle the boundary (earlier ones were flushed whole).
        written = self._shards * self.shard_tokens
        done = bisect.bisect_right(self._offsets, written) - 1
        n_bytes = self._bytes if done == len(self._offsets) - 1 else self._bytes - self._doc_bytes
        with atomic_write(self.dir / PARTIAL_OFFSETS, "wb") as f:
            np.save(f, np.asarray(self._offsets[: done + 1], dtype=np.int64))
        write_json(
            self.dir / PROGRESS,
            {"shards": self._shards, "shard_tokens": self.shard_tokens, "documents": done, "bytes": n_bytes},
        )

    def close(self, **meta: Any) -> dict[str, Any]:
        self._flush()
        with atomic_write(self.dir / "docs.npy", "wb") as f:
            np.save(f, np.asarray(self._offsets, dtype=np.int64))
        info = {
            "tokens": int(self._tokens),
            "documents": len(self._offsets) - 1,
            "bytes": int(self._bytes),
            "shards": self._shards,
            **meta,
        }
        write_json(self.dir / "meta.json", info)
        for name in (PROGRESS, PARTIAL_OFFSETS):
            (self.dir / name).unlink(missing_ok=True)
        return info


class ShardReader:
    """Read a shard directory: random access to token ranges and documents, memory-mapped."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        meta_file = self.dir / "meta.json"
        if not meta_file.exists():
            raise InputError(f"{self.dir} is not a finished token shard directory (no meta.json); rerun tokenize")
        self.meta = read_json(meta_file)
        self.offsets = np.load(self.dir / "docs.npy")
        self.shards = [np.load(self.dir / f"ids-{i:05d}.npy", mmap_mode="r") for i in range(self.meta["shards"])]
        self._starts = np.cumsum([0] + [s.size for s in self.shards])
        if int(self._starts[-1]) != self.meta["tokens"] or int(self.offsets[-1]) != self.meta["tokens"]:
            raise InputError(f"{self.dir}: shard sizes do not add up to meta.json's token count; rerun tokenize")

    @property
    def num_tokens(self) -> int:
        return int(self.meta["tokens"])

    @property
    def num_documents(self) -> int:
        return len(self.offsets) - 1

    def tokens(self, start: int, stop: int) -> np.ndarray:
        """Token ids [start, stop) of the concatenation, as a new uint32 array."""
        start, stop = max(0, start), min(stop, self.num_tokens)
        if stop <= start:
            return np.zeros(0, dtype=np.uint32)
        first = int(np.searchsorted(self._starts, start, side="right")) - 1
        last = int(np.searchsorted(self._starts, stop, side="left")) - 1
        parts = []
        for k in range(first, last + 1):
            lo = max(start, self._starts[k]) - self._starts[k]
            hi = min(stop, self._starts[k + 1]) - self._starts[k]
            parts.append(np.asarray(self.shards[k][lo:hi]))
        return np.concatenate(parts) if len(parts) > 1 else parts[0].copy()

    def document(self, i: int) -> np.ndarray:
        return self.tokens(int(self.offsets[i]), int(self.offsets[i + 1]))

    def documents(self) -> Iterator[np.ndarray]:
        for i in range(self.num_documents):
            yield self.document(i)
