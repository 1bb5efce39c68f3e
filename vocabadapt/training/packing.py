"""Packed, shuffled constant-length training sequences from token-id shards.

The shards hold documents concatenated without separators (vocabadapt.shards). Training reads them
as one stream with the EOS id after every document,

    doc0 EOS doc1 EOS doc2 EOS ...

cut into sequences of exactly `seq_len` tokens (the tail shorter than one sequence is dropped). No
position is padding, so every position trains; padding each short abstract to the full length would
waste most of the compute.

The data order is a list of "positions": position g reads sequence perm_e[g mod n] of epoch
e = g // n, where perm_e is a permutation seeded by (seed, e) (identity when shuffle is off). It is a
pure function of (seed, shuffle, n), so every resume and every process sees the same order; a stage
reads the positions [start, start + count), and each process takes its slice of each batch (HF
Trainer + accelerate hand batch k of a step to rank k mod world_size). Stage 2 starting where stage 1
stopped therefore reads data stage 1 did not, until the corpus is exhausted and a new epoch (with a new
permutation) begins.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..text.shards import ShardReader

log = logging.getLogger(__name__)


class PackedSequences:
    """Random access to the packed sequences of a shard directory.

    Args:
        reader: the token shards.
        seq_len: tokens per sequence.
        eos_id: the id written after every document.
    Raises:
        InputError: the shards hold fewer tokens than one sequence.
    """

    def __init__(self, reader: ShardReader, seq_len: int, eos_id: int):
        if eos_id is None or eos_id < 0:
            raise InputError(
                "the target tokenizer has no EOS token and none of its tokens is a known end-of-text token; "
                "packing needs one between documents: set eos_token in the target tokenizer's "
                "tokenizer_config.json (models.target_tokenizer) and rerun from the tokenize stage"
            )
        self.reader = reader
        self.seq_len = int(seq_len)
        self.eos_id = int(eos_id)
        offsets = reader.offsets.astype(np.int64)  # (documents + 1,) token offsets of document starts
        # Start of document k in the stream with one EOS after every document: offsets[k] + k.
        self.stream_starts = offsets + np.arange(offsets.size, dtype=np.int64)  # (documents + 1,)
        self.stream_len = int(self.stream_starts[-1])
        self.doc_lengths = np.diff(offsets)  # (documents,)
        self.num_sequences = self.stream_len // self.seq_len
        if self.num_sequences == 0:
            raise InputError(
                f"{reader.dir}: {reader.num_tokens} tokens in {reader.num_documents} documents make fewer than one "
                f"training sequence of {self.seq_len} tokens; add training text or lower vocab_adaptation.max_seq_length"
            )

    def __len__(self) -> int:
        return self.num_sequences

    def stream(self, start: int, stop: int) -> np.ndarray:
        """Stream positions [start, stop) as int64 token ids (EOS where a document ends)."""
        pos = np.arange(start, stop, dtype=np.int64)  # (stop - start,)
        doc = np.searchsorted(self.stream_starts, pos, side="right") - 1  # document of each position
        within = pos - self.stream_starts[doc]
        is_eos = within == self.doc_lengths[doc]
        raw = self.reader.offsets[doc] + within  # index into the raw concatenation (unused where EOS)
        lo = int(raw[~is_eos].min()) if (~is_eos).any() else 0
        hi = int(raw[~is_eos].max()) + 1 if (~is_eos).any() else 0
        chunk = self.reader.tokens(lo, hi).astype(np.int64)
        out = np.full(pos.size, self.eos_id, dtype=np.int64)
        out[~is_eos] = chunk[raw[~is_eos] - lo]
        return out

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < self.num_sequences:
            raise IndexError(i)
        return self.stream(i * self.seq_len, (i + 1) * self.seq_len)

    def stats(self) -> dict[str, Any]:
        """Token accounting: share of real tokens per sequence (1.0: no padding), corpus share used."""
        L = self.seq_len
        padded_each = int(np.sum(np.ceil((self.doc_lengths + 1) / L)) * L)  # padding every document to L
        return {
            "sequences_per_epoch": self.num_sequences,
            "seq_len": L,
            "stream_tokens": self.stream_len,
            "real_token_share": 1.0,  # by construction: no position is padding
            "stream_share_used": self.num_sequences * L / self.stream_len,
            "real_token_share_if_padded_per_document": self.stream_len / max(padded_each, 1),
        }


class SequenceOrder:
    """Position g -> sequence index: seeded permutation per epoch (identity without shuffle)."""

    def __init__(self, num_sequences: int, seed: int, shuffle: bool = True):
        self.n = int(num_sequences)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self._cache: dict[int, np.ndarray] = {}

    def permutation(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n, dtype=np.int64)
        if epoch not in self._cache:
            if len(self._cache) >= 2:  # a stage touches at most a few epochs at a time
                self._cache.pop(next(iter(self._cache)))
            rng = np.random.default_rng([self.seed, epoch])
            self._cache[epoch] = rng.permutation(self.n).astype(np.int64)
        return self._cache[epoch]

    def __getitem__(self, g: int) -> int:
        epoch, k = divmod(int(g), self.n)
        return int(self.permutation(epoch)[k])

    def ranges(self, start: int, stop: int) -> list[dict[str, int]]:
        """The positions [start, stop) split per epoch: [{"epoch", "start", "stop"}] (epoch-local)."""
        out = []
        g = start
        while g < stop:
            epoch, k = divmod(g, self.n)
            end = min(stop, (epoch + 1) * self.n)
            out.append({"epoch": epoch, "start": k, "stop": k + (end - g)})
            g = end
        return out

    def sequence_ids(self, start: int, stop: int) -> np.ndarray:
        """Sequence indices read by positions [start, stop)."""
        return np.asarray([self[g] for g in range(start, stop)], dtype=np.int64)


class PackedDataset(torch.utils.data.Dataset):
    """The `count` sequences at positions [start, start + count) of the order, for HF Trainer.

    Items are {"input_ids": LongTensor (seq_len,)}; `collate` adds labels (= input ids; the model
    shifts them). Use with a sequential sampler: the order lives here.
    """

    def __init__(self, packed: PackedSequences, order: SequenceOrder, start: int, count: int):
        self.packed, self.order, self.start, self.count = packed, order, int(start), int(count)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not 0 <= i < self.count:
            raise IndexError(i)
        return {"input_ids": torch.from_numpy(self.packed[self.order[self.start + i]])}


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack equal-length sequences; labels are the inputs (no padding, so no -100 anywhere)."""
    ids = torch.stack([it["input_ids"] for it in items])  # (batch, seq_len)
    return {"input_ids": ids, "labels": ids}
