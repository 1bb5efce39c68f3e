"""Corpus readers, deduplication and the held-out split: local text in, two JSONL files out.

Inputs are `.jsonl`, `.txt` and `.parquet` files, each optionally gzip-compressed, read as streams
(never a whole file in memory). A JSONL line that is not valid JSON, not UTF-8, or lacks every text
field is skipped and counted with its line number, never fatal; a corpus with no usable document is
an error that says why.

Held-out documents are chosen by their hash (so the split does not depend on file order) or come
from `corpus.heldout_inputs`; they are written to `corpus/heldout.jsonl` and never to the training
file, and a training document that duplicates a held-out one is dropped.

Documents that an evaluation task scores (`corpus.exclude_inputs`, e.g. the BC5CDR cloze's test
abstracts) are dropped from both files before the split: a document goes when its whitespace-normalised
text, or its first line (the title, when text_fields start with it) of at least TITLE_MIN_CHARS
characters, equals the text or first line of an excluded document. Titles catch the same abstract
joined from other fields or with another line layout.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import json
import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal

from ..config import CorpusConfig
from ..errors import InputError
from ..io import atomic_write

log = logging.getLogger(__name__)

MAX_BAD_LINES_KEPT = 5
TITLE_MIN_CHARS = 20  # shorter first lines ("Introduction", "Abstract") are not taken for a title
SUFFIXES = (".jsonl", ".json", ".txt", ".parquet")


@dataclass
class FileStats:
    documents: int = 0
    bad_lines: int = 0
    first_bad_lines: list[str] = field(default_factory=list)  # "line N: reason"

    def bad(self, line: int, reason: str) -> None:
        self.bad_lines += 1
        if len(self.first_bad_lines) < MAX_BAD_LINES_KEPT:
            self.first_bad_lines.append(f"line {line}: {reason}")


def texts_within(texts: Iterable[str], max_bytes: int | None, last: Literal["cut", "keep", "drop"]) -> list[str]:
    """Documents in order until `max_bytes` of UTF-8 are taken (streamed; None = all of them).

    `last` says what happens to the document that crosses the limit, the one rule the callers differ in:
        cut   the bytes of it that fit are kept (a character split by the cut is dropped): exactly
              max_bytes or fewer, as the calibration text of fvt_prior is taken
        keep  it is kept whole: max_bytes or a little more, as the span test's held-out text is taken
        drop  it is left out, unless it is the first: never more than max_bytes except for one long
              document, as training's held-out sample is taken
    """
    out: list[str] = []
    total = 0  # UTF-8 bytes taken so far
    for text in texts:
        if max_bytes is None:
            out.append(text)
            continue
        if last == "cut":
            if total >= max_bytes:
                break
            raw = text.encode("utf-8")[: max_bytes - total]
            out.append(raw.decode("utf-8", errors="ignore"))
            total += len(raw)
            continue
        size = len(text.encode("utf-8"))
        if last == "drop" and out and total + size > max_bytes:
            break
        out.append(text)
        total += size
        if last == "keep" and total >= max_bytes:
            break
    return out


def expand_inputs(patterns: list[str]) -> list[Path]:
    """Files named by the patterns (globs allowed), in a stable order; missing ones are an error."""
    out: list[Path] = []
    for pat in patterns:
        hits = sorted(glob.glob(pat)) if any(c in pat for c in "*?[") else ([pat] if Path(pat).exists() else [])
        if not hits:
            raise InputError(
                f"corpus input '{pat}' matches no file; fix the path in corpus.inputs/heldout_inputs/exclude_inputs"
            )
        for h in hits:
            p = Path(h)
            if p.is_dir():
                raise InputError(f"corpus input {p} is a directory; list its files or use a glob like {p}/*.jsonl")
            out.append(p)
    return out


def _kind(path: Path) -> tuple[str, bool]:
    name = path.name.lower()
    gz = name.endswith(".gz")
    if gz:
        name = name[:-3]
    for s in SUFFIXES:
        if name.endswith(s):
            return ("jsonl" if s == ".json" else s[1:]), gz
    raise InputError(f"{path}: unsupported corpus file type; use .jsonl, .txt or .parquet (optionally .gz)")


def _open_binary(path: Path, gz: bool):
    if gz:
        return gzip.open(path, "rb")
    return open(path, "rb")


def _check_encoding(head: bytes, path: Path) -> None:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(head) > 3 and head[1:2] == b"\x00" and head[3:4] == b"\x00"):
        raise InputError(f"{path} looks like UTF-16 text; convert it to UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)")


def _join(record: dict, fields: list[str]) -> str | None:
    parts = [record[f] for f in fields if isinstance(record.get(f), str) and record[f].strip()]
    return "\n".join(parts) if parts else None


def read_documents(
    path: Path, text_fields: list[str], txt_document: str, stats: FileStats
) -> Iterator[tuple[str, str]]:
    """Yield (id, text) for each document of one file; bad lines are counted in `stats`."""
    kind, gz = _kind(path)
    try:
        if kind == "parquet":
            yield from _read_parquet(path, text_fields, stats)
            return
        with _open_binary(path, gz) as raw:
            head = raw.peek(4)[:4] if hasattr(raw, "peek") else b""
            _check_encoding(head, path)
            if kind == "jsonl":
                yield from _read_jsonl(raw, path, text_fields, stats)
            else:
                yield from _read_txt(raw, path, txt_document, stats)
    except (OSError, EOFError, zlib.error) as e:
        # A damaged gzip stream raises zlib.error (not OSError) from deep inside the gzip module.
        raise InputError(
            f"{path}: cannot read it ({type(e).__name__}: {e}); is it a truncated or corrupt file?"
        ) from None


def _read_jsonl(raw, path: Path, fields: list[str], stats: FileStats) -> Iterator[tuple[str, str]]:
    for n, line in enumerate(raw, 1):
        if not line.strip():
            continue
        try:
            text_line = line.decode("utf-8")
        except UnicodeDecodeError:
            stats.bad(n, "not UTF-8")
            continue
        try:
            rec = json.loads(text_line)
        except json.JSONDecodeError:
            stats.bad(n, "not valid JSON")
            continue
        text = _join(rec, fields) if isinstance(rec, dict) else None
        if text is None:
            stats.bad(n, f"no text in fields {fields}")
            continue
        if not _encodable(text):
            stats.bad(n, "escaped lone surrogate (\\ud800-\\udfff): not valid Unicode text")
            continue
        yield f"{path.name}:{n}", text


def _read_txt(raw, path: Path, mode: str, stats: FileStats) -> Iterator[tuple[str, str]]:
    block: list[str] = []
    start = 0
    for n, line in enumerate(raw, 1):
        try:
            s = line.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            stats.bad(n, "not UTF-8")
            continue
        if mode == "line":
            if s.strip():
                yield f"{path.name}:{n}", s
            continue
        if s.strip():
            if not block:
                start = n
            block.append(s)
        elif block:
            yield f"{path.name}:{start}", "\n".join(block)
            block = []
    if block:
        yield f"{path.name}:{start}", "\n".join(block)


def _read_parquet(path: Path, fields: list[str], stats: FileStats) -> Iterator[tuple[str, str]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:
        raise InputError(f"{path}: not a readable parquet file ({type(e).__name__}: {e})") from None
    present = [f for f in fields if f in pf.schema_arrow.names]
    if not present:
        raise InputError(
            f"{path}: has none of the text fields {fields} (columns: {pf.schema_arrow.names}); set corpus.text_fields"
        )
    row = 0
    for batch in pf.iter_batches(columns=present, batch_size=4096):
        cols = batch.to_pydict()
        for i in range(batch.num_rows):
            row += 1
            text = _join({f: cols[f][i] for f in present}, present)
            if text is None:
                stats.bad(row, f"no text in fields {fields}")
                continue
            yield f"{path.name}:{row}", text


def _encodable(text: str) -> bool:
    # JSON may escape a lone surrogate ("\ud800"): valid JSON, but no UTF-8 encoding exists for it.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _normalised_hash(text: str, hash_name: str) -> bytes:
    return hashlib.new(hash_name, " ".join(text.split()).encode("utf-8")).digest()


def _match_keys(text: str, hash_name: str) -> set[bytes]:
    """The hashes a document is matched on for corpus.exclude_inputs: its whole text and its title line."""
    keys = {_normalised_hash(text, hash_name)}
    first = " ".join(text.split("\n", 1)[0].split())
    if len(first) >= TITLE_MIN_CHARS:
        keys.add(hashlib.new(hash_name, first.encode("utf-8")).digest())
    return keys


def excluded_keys(files: list[Path], cfg: CorpusConfig) -> set[bytes]:
    """The match keys of every document in the corpus.exclude_inputs files (read with cfg.text_fields).

    Raises:
        InputError: a file is missing, unreadable, or holds no document (an exclusion that silently
            excludes nothing would let the evaluation text into training).
    """
    keys: set[bytes] = set()
    for p in files:
        st = FileStats()
        n = 0
        for _, text in read_documents(p, cfg.text_fields, cfg.txt_document, st):
            keys |= _match_keys(text, cfg.hash_name)
            n += 1
        if n == 0:
            raise InputError(
                f"corpus.exclude_inputs: {p} holds no document with text in fields {cfg.text_fields} "
                f"({st.bad_lines} bad line(s)); it would exclude nothing. Fix the file or corpus.text_fields"
            )
    return keys


def _heldout_by_hash(digest: bytes, fraction: float) -> bool:
    # First 8 bytes of the document hash as a uniform number in [0, 1): order-independent split.
    return int.from_bytes(digest[:8], "big") / 2.0**64 < fraction


# split_corpus's counters, in the order corpus/stats.json lists them.
_TOTALS = (
    "documents",
    "bytes",
    "duplicates",
    "too_short",
    "heldout_documents",
    "heldout_bytes",
    "heldout_over_cap",
    "excluded",
)


def split_corpus(cfg: CorpusConfig, min_len: int, train_path: Path, heldout_path: Path) -> dict[str, Any]:
    """Read the corpus inputs, deduplicate, budget and split them into two JSONL files ({"id", "text"}).

    Args:
        cfg: the corpus section.
        min_len: documents shorter than this many characters are dropped (tokenization.min_line_length).
        train_path, heldout_path: the files to write (atomically).
    Returns:
        the statistics (documents, bytes, duplicates, held-out counts, per-file bad lines, budget).
    Raises:
        InputError: no input, an unsupported or unreadable file, or no usable training document.
    """
    train_files, heldout_files = _input_files(cfg)
    exclude = excluded_keys(expand_inputs(cfg.exclude_inputs), cfg) if cfg.exclude_inputs else set()
    budget = cfg.budget_bytes()
    seen: set[bytes] = set()
    per_file: dict[str, FileStats] = {}
    totals = dict.fromkeys(_TOTALS, 0)
    budget_reached = False

    with atomic_write(train_path) as ftrain, atomic_write(heldout_path) as fheld:

        def keep(doc_id: str, text: str, heldout: bool) -> None:
            nbytes = len(text.encode("utf-8"))
            if heldout:
                if cfg.heldout_max_bytes and totals["heldout_bytes"] + nbytes > cfg.heldout_max_bytes:
                    # Dropped, not moved to training: membership stays a function of the hash alone.
                    totals["heldout_over_cap"] += 1
                    return
                fheld.write(json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n")
                totals["heldout_documents"] += 1
                totals["heldout_bytes"] += nbytes
            else:
                ftrain.write(json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n")
                totals["documents"] += 1
                totals["bytes"] += nbytes

        def stream(files: list[Path]) -> Iterator[tuple[str, str, bytes]]:
            for p in files:
                st = per_file.setdefault(str(p), FileStats())
                for doc_id, text in read_documents(p, cfg.text_fields, cfg.txt_document, st):
                    if len(text) < min_len:
                        totals["too_short"] += 1
                        continue
                    digest = _normalised_hash(text, cfg.hash_name)
                    if exclude and not exclude.isdisjoint(_match_keys(text, cfg.hash_name)):
                        # An evaluation document: dropped from train and held-out alike.
                        totals["excluded"] += 1
                        continue
                    if cfg.deduplicate:
                        if digest in seen:
                            totals["duplicates"] += 1
                            continue
                        seen.add(digest)
                    st.documents += 1
                    yield doc_id, text, digest

        # Held-out files first, so a training document that repeats one of them is a duplicate.
        for doc_id, text, _ in stream(heldout_files):
            keep(doc_id, text, True)
        for doc_id, text, digest in stream(train_files):
            if not heldout_files and _heldout_by_hash(digest, cfg.heldout_fraction):
                keep(doc_id, text, True)
                continue
            if budget and totals["bytes"] + len(text.encode("utf-8")) > budget:
                budget_reached = True
                break
            keep(doc_id, text, False)

        if totals["documents"] == 0:
            raise _no_training_text(cfg, min_len, totals, per_file)

    if totals["heldout_documents"] == 0:
        log.warning(
            "the held-out split is empty (heldout_fraction=%s); evaluation and the span test will lack text",
            cfg.heldout_fraction,
        )
    if cfg.exclude_inputs:
        log.info("corpus: %d document(s) dropped as corpus.exclude_inputs", totals["excluded"])
    heldout_source = "files" if heldout_files else f"hash fraction {cfg.heldout_fraction}"
    stats = _corpus_stats(totals, per_file, budget, budget_reached, heldout_source)
    _log_stats(stats, per_file)
    return stats


def _corpus_stats(
    totals: dict[str, int],
    per_file: dict[str, FileStats],
    budget: int | None,
    budget_reached: bool,
    heldout_source: str,
) -> dict[str, Any]:
    """The statistics split_corpus returns (corpus/stats.json): totals, per-file counts, the budget."""
    return {
        **totals,
        "bad_lines": sum(s.bad_lines for s in per_file.values()),
        "files": {
            k: {"documents": s.documents, "bad_lines": s.bad_lines, "first_bad_lines": s.first_bad_lines}
            for k, s in per_file.items()
        },
        "budget_bytes": budget,
        "budget_applied": budget_reached,
        "heldout_source": heldout_source,
    }


def _input_files(cfg: CorpusConfig) -> tuple[list[Path], list[Path]]:
    """The training and held-out input files, each of a supported type.

    Raises:
        InputError: no inputs, or a file of an unsupported type (before any work).
    """
    if not cfg.inputs:
        raise InputError("corpus.inputs is empty; list the training text files (.jsonl/.txt/.parquet)")
    train_files = expand_inputs(cfg.inputs)
    heldout_files = expand_inputs(cfg.heldout_inputs) if cfg.heldout_inputs else []
    for p in train_files + heldout_files:
        _kind(p)  # unsupported types fail before any work
    return train_files, heldout_files


def _no_training_text(
    cfg: CorpusConfig, min_len: int, totals: dict[str, int], per_file: dict[str, FileStats]
) -> InputError:
    """The error for a corpus that left no training document: why each document went, and what to check."""
    bad = sum(s.bad_lines for s in per_file.values())
    first = next((f"{k}: {s.first_bad_lines[0]}" for k, s in per_file.items() if s.first_bad_lines), "")
    return InputError(
        f"the corpus has no usable training text: {bad} bad line(s){' (first: ' + first + ')' if first else ''}, "
        f"{totals['too_short']} document(s) shorter than tokenization.min_line_length={min_len}, "
        f"{totals['duplicates']} duplicate(s), {totals['heldout_documents']} held out. Check corpus.inputs "
        f"and corpus.text_fields={cfg.text_fields}."
    )


def _log_stats(stats: dict[str, Any], per_file: dict[str, FileStats]) -> None:
    """Log each file's skipped bad lines, then the corpus totals (returns nothing)."""
    for name, st in per_file.items():
        if st.bad_lines:
            log.warning(
                "%s: %d bad line(s) skipped (%s%s); the rest was read",
                name,
                st.bad_lines,
                "; ".join(st.first_bad_lines),
                ", ..." if st.bad_lines > len(st.first_bad_lines) else "",
            )
    log.info(
        "corpus: %d documents (%.1f MB) for training, %d held out, %d duplicates, %d bad lines",
        stats["documents"],
        stats["bytes"] / 1e6,
        stats["heldout_documents"],
        stats["duplicates"],
        stats["bad_lines"],
    )
