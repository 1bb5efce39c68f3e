"""The embed stage: fastText vectors per token id, counts, determinism with one thread."""

from __future__ import annotations

import numpy as np
import pytest

from vocabadapt.config import validate_dict
from vocabadapt.errors import InputError
from vocabadapt.run.context import StageContext
from vocabadapt.run.layout import RunLayout
from vocabadapt.stages.embed import run as run_stage
from vocabadapt.text.shards import ShardWriter


def _ctx(run_dir):
    cfg = validate_dict({"embedding": {"fasttext": {"thread": 1, "dim": 8, "epochs": 2}}}, "test")
    return StageContext(layout=RunLayout(run_dir), config=cfg, stage="embed")


def _write_tokens(run_dir, seed=0):
    rng = np.random.default_rng(seed)
    docs = {}
    for side, vocab in (("source", 60), ("target", 50)):
        w = ShardWriter(run_dir / "tokens" / side / "train", shard_tokens=1000)
        side_docs = [rng.integers(2, vocab - 5, size=rng.integers(5, 40)) for _ in range(200)]
        for d in side_docs:
            w.add(d, n_bytes=4 * d.size)
        w.close(vocab_size=vocab)
        docs[side] = side_docs
    return docs


def test_vectors_ids_counts_and_determinism(tmp_path):
    docs = _write_tokens(tmp_path / "a")
    summary = run_stage(_ctx(tmp_path / "a"))
    vecs, ids, counts = RunLayout(tmp_path / "a").embeddings("target")
    expected = np.bincount(np.concatenate(docs["target"]), minlength=50)
    assert vecs.dtype == np.float32 and vecs.shape == (ids.size, 8)
    np.testing.assert_array_equal(ids, np.flatnonzero(expected))  # every seen id, ascending
    np.testing.assert_array_equal(counts, expected[ids])
    assert summary["target"]["rows"] == ids.size and summary["source"]["vocab_size"] == 60
    _write_tokens(tmp_path / "b")
    run_stage(_ctx(tmp_path / "b"))
    for name in ("source.npy", "target.npy", "source_ids.npy", "target_counts.npy"):
        assert (tmp_path / "a" / "embeddings" / name).read_bytes() == (
            tmp_path / "b" / "embeddings" / name
        ).read_bytes()


def test_missing_tokens_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="run the tokenize stage first"):
        run_stage(_ctx(tmp_path))
