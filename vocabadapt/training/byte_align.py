"""Align a packed target sequence with the source tokenization of the same bytes (distillation's data side).

The student reads packed target sequences (vocabadapt.training.packing: documents separated by EOS);
the teacher, the source model, must read the same bytes in its own tokenization. For each packed row
the collator here

1. splits the row at EOS into segments (a segment never spans a document boundary, so no alignment
   ever crosses one);
2. spells each segment in bytes from the target vocabulary (`token_bytes`: the bytes a token spells
   in running text, from vocabadapt.text.vocab's canonical forms);
3. re-encodes the segment's text with the source tokenizer and joins the source segments of the row
   with the source EOS, as packing does on the target side (the teacher sees the same documents in
   the same order, cross-document context included);
4. finds the shared boundaries: byte offsets inside a segment where a token ends on both sides.
   At a shared boundary both models have read exactly the same bytes, so their hidden states are
   comparable; between two consecutive shared boundaries lies a "chunk" of bytes whose likelihood
   both models assign; where a chunk is one token on each side, the two next-token distributions
   predict the same bytes (the KL term).

For an extension of the source vocabulary every target boundary is a source boundary, so nearly
every position gets a signal; for a replacement, only some do. Everything is returned as flat index
tensors into (batch x length) so the losses (vocabadapt.training.distill) are a few gathers.

Known limits: a segment's first chunk (from the segment start to its first shared boundary) is not
scored: the student predicts the first token of a document from the EOS before it, and the teacher's
context there differs. A row that starts inside a multi-byte UTF-8 character has the broken bytes
skipped on the teacher side. A SentencePiece target spells a document's first word with its dummy
space; the teacher text then starts with that space (both sides read the same bytes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..text.vocab import START_MARKING, canonical_vocab

log = logging.getLogger(__name__)


def token_bytes(tokenizer: Any) -> list[bytes]:
    """The bytes every id spells inside running text (special tokens and holes: b"").

    Raises:
        InputError: the tokenizer's family spells word boundaries after the token (WordPiece, end-of-word
            BPE), so a token's bytes depend on its neighbours.
    """
    family, forms = canonical_vocab(tokenizer)
    if family not in START_MARKING:
        raise InputError(
            f"distillation aligns tokenizations by bytes and needs a byte-level BPE or SentencePiece tokenizer; "
            f"this one is {family} (its spaces depend on neighbouring tokens): use vocab_adaptation.objective_stage*: ce"
        )
    # A start-marking family: boundary True = the token spells a space before its text.
    return [b"" if f is None else (b" " if f.boundary else b"") + f.text for f in forms]


def _broken_edges(data: bytes) -> tuple[int, int]:
    """(leading, trailing) byte counts that do not form whole UTF-8 characters (a row cut mid-character)."""
    lead = 0
    while lead < len(data) and lead < 3 and (data[lead] & 0xC0) == 0x80:
        lead += 1
    trail = 0
    # Walk back over continuation bytes to the last start byte; drop it if its character is incomplete.
    k = len(data) - 1
    while k >= lead and len(data) - k <= 4 and (data[k] & 0xC0) == 0x80:
        k -= 1
    if k >= lead:
        b = data[k]
        need = 1 if b < 0x80 else 2 if b >> 5 == 0b110 else 3 if b >> 4 == 0b1110 else 4 if b >> 3 == 0b11110 else 1
        if len(data) - k < need:
            trail = len(data) - k
    return lead, trail


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + n) for each (s, n), vectorised."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + np.arange(total, dtype=np.int64) - offsets


@dataclass
class Alignment:
    """Where a batch's target (student) and source (teacher) positions meet; flat indices into (batch x length).

    hidden_t / hidden_s: positions whose token ends at a shared boundary (same bytes read on both sides).
    chunk_t / chunk_s: logits positions predicting a token inside a scored chunk; chunk_t_id / chunk_s_id:
        the chunk each belongs to (0..chunks-1).
    kl_t / kl_s: logits positions whose next tokens cover the same bytes (one-token chunks on both sides).
    """

    hidden_t: list[np.ndarray] = field(default_factory=list)
    hidden_s: list[np.ndarray] = field(default_factory=list)
    chunk_t: list[np.ndarray] = field(default_factory=list)
    chunk_t_id: list[np.ndarray] = field(default_factory=list)
    chunk_s: list[np.ndarray] = field(default_factory=list)
    chunk_s_id: list[np.ndarray] = field(default_factory=list)
    kl_t: list[np.ndarray] = field(default_factory=list)
    kl_s: list[np.ndarray] = field(default_factory=list)
    chunks: int = 0

    def tensors(self) -> dict[str, torch.Tensor]:
        def cat(parts: list[Any]) -> torch.Tensor:
            return torch.from_numpy(np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64))

        return {
            "hidden_t": cat(self.hidden_t),
            "hidden_s": cat(self.hidden_s),
            "chunk_t": cat(self.chunk_t),
            "chunk_t_id": cat(self.chunk_t_id),
            "chunk_s": cat(self.chunk_s),
            "chunk_s_id": cat(self.chunk_s_id),
            "kl_t": cat(self.kl_t),
            "kl_s": cat(self.kl_s),
            "chunks": torch.tensor(self.chunks, dtype=torch.int64),
        }


def align_segment(
    target_ends: np.ndarray, source_ends: np.ndarray, t0: int, s0: int, out: Alignment
) -> tuple[int, int, int]:
    """Add one segment's shared boundaries, chunks and KL pairs to `out`.

    Args:
        target_ends: (n_t,) byte offset where each target token of the segment ends (non-decreasing).
        source_ends: (n_s,) the same for the source tokens of the same bytes.
        t0, s0: flat index of the segment's first token on each side.
    Returns:
        (shared boundaries, target positions inside scored chunks, target positions with any signal:
        from the first boundary to the last).
    """
    _, ti, si = np.intersect1d(target_ends, source_ends, assume_unique=False, return_indices=True)
    if ti.size == 0:
        return 0, 0, 0
    tpos, spos = ti.astype(np.int64) + t0, si.astype(np.int64) + s0  # (K,) tokens ending at boundary k
    out.hidden_t.append(tpos)
    out.hidden_s.append(spos)
    if ti.size < 2:
        return int(ti.size), 0, 1
    # Chunk k (1..K-1) holds the tokens after boundary k-1 up to boundary k; they are predicted by the
    # logits at positions tpos[k-1] .. tpos[k]-1.
    t_len, s_len = np.diff(tpos), np.diff(spos)  # (K-1,) tokens per chunk on each side (>= 1)
    ids = np.arange(out.chunks, out.chunks + t_len.size, dtype=np.int64)
    out.chunk_t.append(_ranges(tpos[:-1], t_len))
    out.chunk_t_id.append(np.repeat(ids, t_len))
    out.chunk_s.append(_ranges(spos[:-1], s_len))
    out.chunk_s_id.append(np.repeat(ids, s_len))
    one = (t_len == 1) & (s_len == 1)
    out.kl_t.append(tpos[:-1][one])
    out.kl_s.append(spos[:-1][one])
    out.chunks += int(t_len.size)
    return int(ti.size), int(t_len.sum()), int(tpos[-1] - tpos[0] + 1)


@dataclass
class AlignStats:
    """Counts of one batch: target positions, those with a teacher signal, segments skipped (and why)."""

    positions: int = 0
    signal_positions: int = 0  # at a shared boundary or predicting a token of a scored chunk
    boundaries: int = 0
    chunk_positions: int = 0
    kl_positions: int = 0
    segments: int = 0
    segments_unaligned: int = 0  # the source re-encoding does not spell the same bytes (normaliser, undecodable)
    segments_no_shared: int = 0  # no byte offset ends a token on both sides

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: torch.tensor(v, dtype=torch.int64) for k, v in self.__dict__.items()}


class DistillCollator:
    """Collate packed target rows and add the teacher's side: source ids of the same bytes and the alignment.

    Items are {"input_ids": (seq_len,)} (vocabadapt.training.packing.PackedDataset). The batch gets
    input_ids, labels (when `with_labels`), source_ids (batch, source_len; padded at the end with the
    source EOS, which no aligned position reads: attention is causal), `align` (Alignment.tensors)
    and `align_stats` (AlignStats.tensors).

    Args:
        target_tokenizer, source_tokenizer: the student's and the teacher's tokenizers (fast tokenizers).
        target_eos: the EOS id packing writes between documents.
        max_source_len: the teacher's context (a longer source row is cut; its tail gets no signal).
        with_labels: add labels = input_ids for the next-token loss (objective distill+ce).
    """

    def __init__(
        self, target_tokenizer: Any, source_tokenizer: Any, target_eos: int, max_source_len: int, with_labels: bool
    ):
        self.target_bytes = token_bytes(target_tokenizer)
        self.source_bytes = token_bytes(source_tokenizer)
        self.source_tokenizer = source_tokenizer
        self.target_eos = int(target_eos)
        eos = source_tokenizer.eos_token_id
        if eos is None:
            raise InputError(
                "the source tokenizer has no EOS token; the teacher's packed rows need one between documents "
                "(set eos_token in the source tokenizer's tokenizer_config.json)"
            )
        self.source_eos = int(eos)
        self.max_source_len = int(max_source_len)
        self.with_labels = with_labels
        self.unaligned_total = 0  # segments skipped over the stage (logged as one counted warning)

    def _segments(self, row: np.ndarray) -> list[tuple[int, int]]:
        """[start, stop) of each maximal run of non-EOS tokens in a packed row."""
        is_eos = np.concatenate([[True], row == self.target_eos, [True]])
        edges = np.flatnonzero(np.diff(is_eos.astype(np.int8)))  # alternating starts and stops
        return [(int(a), int(b)) for a, b in zip(edges[0::2], edges[1::2])]

    def __call__(self, items: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
        ids = torch.stack([it["input_ids"] for it in items])  # (batch, seq_len)
        rows = ids.numpy()
        B, L = rows.shape
        # 1-2: every segment's bytes and its target token ends; one text per segment for the source tokenizer
        segs: list[tuple[int, int, np.ndarray, int, int]] = []  # (row, start, target byte ends, lead, n_bytes)
        texts: list[str] = []
        stats = AlignStats(positions=B * L)
        for b in range(B):
            for a, e in self._segments(rows[b]):
                pieces = [self.target_bytes[i] if i < len(self.target_bytes) else b"" for i in rows[b, a:e]]
                data = b"".join(pieces)
                lead, trail = _broken_edges(data)
                try:
                    text = data[lead : len(data) - trail].decode("utf-8")
                except UnicodeDecodeError:
                    text = None
                stats.segments += 1
                if not text:
                    stats.segments_unaligned += 1
                    continue
                ends = np.cumsum([len(p) for p in pieces], dtype=np.int64)  # (e - a,) byte ends
                segs.append((b, a, ends, lead, len(data) - lead - trail))
                texts.append(text)
        encoded = self.source_tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        # 3: the teacher rows (segments joined by the source EOS), each segment's source byte ends
        src_rows: list[list[int]] = [[] for _ in range(B)]
        placed: list[tuple[int, int, np.ndarray, np.ndarray, int]] = []  # (row, t start, t ends, s ends, s start)
        for (b, a, ends, lead, n), sids in zip(segs, encoded):
            s_ends = np.cumsum([len(self.source_bytes[i]) for i in sids], dtype=np.int64)
            if s_ends.size and s_ends[-1] == n + 1 and self.source_bytes[sids[0]][:1] == b" ":
                s_ends -= 1  # SentencePiece's dummy prefix: a space the text does not have
            if not s_ends.size or s_ends[-1] != n:
                stats.segments_unaligned += 1  # a normaliser changed the text: no trustworthy offsets
                continue
            if src_rows[b]:
                src_rows[b].append(self.source_eos)
            s0 = len(src_rows[b])
            room = self.max_source_len - s0
            if room <= 0:
                continue  # the teacher's context is full: the rest of this row gets no signal
            src_rows[b].extend(sids[:room])
            placed.append((b, a, ends, s_ends[:room] + lead, s0))
        Ls = max([len(r) for r in src_rows] + [1])
        # 4: shared boundaries, chunks and KL pairs, as flat indices into (B x L) and (B x Ls)
        align = Alignment()
        for b, a, ends, s_ends, s0 in placed:
            found, in_chunks, signal = align_segment(ends, s_ends, b * L + a, b * Ls + s0, align)
            stats.signal_positions += signal
            stats.boundaries += found
            stats.chunk_positions += in_chunks
            stats.segments_no_shared += int(found == 0)
        source_ids = torch.full((B, Ls), self.source_eos, dtype=torch.int64)
        for b, r in enumerate(src_rows):
            if r:
                source_ids[b, : len(r)] = torch.tensor(r, dtype=torch.int64)
        stats.kl_positions = int(sum(x.size for x in align.kl_t))
        self.unaligned_total += stats.segments_unaligned
        batch: dict[str, Any] = {
            "input_ids": ids,
            "source_ids": source_ids,
            "align": align.tensors(),
            "align_stats": stats.tensors(),
        }
        if self.with_labels:
            batch["labels"] = ids
        return batch
