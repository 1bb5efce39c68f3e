"""Packed sequences, the seeded data order, held-out windows (vocabadapt.data)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vocabadapt.errors import InputError
from vocabadapt.text.shards import ShardReader, ShardWriter
from vocabadapt.training.packing import PackedDataset, PackedSequences, SequenceOrder, collate

EOS = 0


def _docs(n: int = 300, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    # ids >= 2 so EOS (0) only ever appears as a separator; lengths like short abstracts
    return [rng.integers(2, 500, size=int(rng.integers(1, 40))) for _ in range(n)]


def _shards(tmp_path, docs, shard_tokens=997) -> ShardReader:
    w = ShardWriter(tmp_path / "shards", shard_tokens=shard_tokens)  # small shards: documents span files
    for d in docs:
        w.add(d)
    w.close()
    return ShardReader(tmp_path / "shards")


def test_packing_is_the_eos_joined_stream_without_padding(tmp_path):
    docs = _docs()
    packed = PackedSequences(_shards(tmp_path, docs), seq_len=64, eos_id=EOS)
    stream = np.concatenate([np.append(d, EOS) for d in docs])
    assert len(packed) == stream.size // 64
    for i in (0, 1, len(packed) // 2, len(packed) - 1):
        np.testing.assert_array_equal(packed[i], stream[i * 64 : (i + 1) * 64])
    all_tokens = np.concatenate([packed[i] for i in range(len(packed))])
    np.testing.assert_array_equal(all_tokens, stream[: len(packed) * 64])
    # one EOS per document boundary inside the packed part, and nothing else is EOS: no padding
    assert int((all_tokens == EOS).sum()) == int((stream[: all_tokens.size] == EOS).sum())
    st = packed.stats()
    assert st["real_token_share"] == 1.0
    assert st["stream_share_used"] >= 0.99  # only the tail shorter than one sequence is dropped
    # padding each short document to 64 would waste most positions
    assert st["real_token_share_if_padded_per_document"] < 0.5
    batch = collate([{"input_ids": torch.from_numpy(packed[i])} for i in range(4)])
    assert batch["input_ids"].shape == (4, 64)
    assert torch.equal(batch["labels"], batch["input_ids"])  # no -100 anywhere: every position trains


def test_too_little_data_for_one_sequence(tmp_path):
    with pytest.raises(InputError, match="fewer than one training sequence of 2048"):
        PackedSequences(_shards(tmp_path, _docs(5)), seq_len=2048, eos_id=EOS)


def test_order_is_seeded_and_a_permutation_per_epoch():
    a, b = SequenceOrder(100, seed=7), SequenceOrder(100, seed=7)
    first = [a[g] for g in range(300)]
    assert first == [b[g] for g in range(300)]  # another process / a resume computes the same order
    for e in range(3):
        assert sorted(first[e * 100 : (e + 1) * 100]) == list(range(100))
    assert first[:100] != first[100:200]  # a new epoch gets a new permutation
    assert first[:100] != list(range(100))  # shuffled
    assert [SequenceOrder(100, seed=8)[g] for g in range(100)] != first[:100]
    assert [SequenceOrder(100, seed=7, shuffle=False)[g] for g in range(150)] == list(range(100)) + list(range(50))
    assert a.ranges(90, 215) == [
        {"epoch": 0, "start": 90, "stop": 100},
        {"epoch": 1, "start": 0, "stop": 100},
        {"epoch": 2, "start": 0, "stop": 15},
    ]


def test_dataset_from_an_offset_continues_the_same_order(tmp_path):
    packed = PackedSequences(_shards(tmp_path, _docs()), seq_len=32, eos_id=EOS)
    order = SequenceOrder(len(packed), seed=3)
    whole = PackedDataset(packed, order, start=0, count=40)
    tail = PackedDataset(packed, order, start=25, count=15)  # what a resume (or stage 2) reads
    for i in range(15):
        assert torch.equal(whole[25 + i]["input_ids"], tail[i]["input_ids"])
    # stage 2 from where stage 1 stopped reads sequences stage 1 did not
    s1, s2 = set(order.sequence_ids(0, 25).tolist()), set(order.sequence_ids(25, 40).tolist())
    assert not s1 & s2 and len(s1) == 25 and len(s2) == 15
    with pytest.raises(IndexError):
        whole[40]
