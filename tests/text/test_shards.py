"""ShardWriter resume: killed after any finished shard, a resumed writer closes byte-identical shards."""

from __future__ import annotations

import numpy as np
import pytest

from vocabadapt.errors import InputError
from vocabadapt.text.shards import PROGRESS, ShardReader, ShardWriter


class Killed(Exception):
    pass


def _docs(seed=0):
    rng = np.random.default_rng(seed)
    # Lengths from 0 to 2.5 shards: empty documents, documents inside one shard, and ones spanning three.
    return [rng.integers(0, 5000, size=int(n)) for n in rng.choice([0, 3, 40, 700, 2500], size=60)]


def _write(d, docs, kill_after=None):
    w = ShardWriter(d, shard_tokens=1000, resume=True)
    for doc in docs[w.documents_done :]:
        w.add(doc, n_bytes=2 * doc.size)
        if kill_after is not None and w._shards >= kill_after:
            raise Killed(w._shards)  # every shard finished so far has its progress record
    return w.close(vocab_size=5000), w


def _files(d):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_resume_after_every_possible_shard_gives_identical_files(tmp_path):
    docs = _docs()
    ref_meta, _ = _write(tmp_path / "ref", docs)
    reference = _files(tmp_path / "ref")
    assert ref_meta["shards"] >= 20
    for k in range(1, ref_meta["shards"], 3):
        d = tmp_path / f"k{k}"
        with pytest.raises(Killed) as killed:
            _write(d, docs, kill_after=k)
        assert (d / PROGRESS).exists() and not (d / "meta.json").exists()
        meta, w = _write(d, docs)
        assert w.resumed_from_shard == killed.value.args[0] >= k
        assert meta == ref_meta and _files(d) == reference, k
    reader = ShardReader(tmp_path / "ref")
    for i in (0, 17, 59):
        np.testing.assert_array_equal(reader.document(i), docs[i].astype(np.uint32))


def test_resume_with_other_shard_size_or_changed_input_is_refused(tmp_path):
    w = ShardWriter(tmp_path, shard_tokens=1000)
    w.add(np.arange(1500))  # shard 0 holds the first 1000 tokens of document 0, which straddles it
    with pytest.raises(InputError, match="shard_tokens=1000"):
        ShardWriter(tmp_path, shard_tokens=2000, resume=True)
    w = ShardWriter(tmp_path, shard_tokens=1000, resume=True)
    assert (w.resumed_from_shard, w.documents_done) == (1, 0)
    with pytest.raises(InputError, match="input changed"):
        w.add(np.arange(10))  # document 0 again, but shorter than the shard already written from it
    w = ShardWriter(tmp_path, shard_tokens=1000, resume=True)
    w.add(np.arange(1500))
    assert w.close()["tokens"] == 1500
    np.testing.assert_array_equal(ShardReader(tmp_path).document(0), np.arange(1500))
