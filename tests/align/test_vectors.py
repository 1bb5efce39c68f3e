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


def _cfg(epochs=2):
    # tokalign reads the vector alignment, so the embed stage trains (the default fvt_prior reads none)
    data = {"embedding": {"fasttext": {"thread": 1, "dim": 8, "epochs": epochs}}, "alignment": {"init": "tokalign"}}
    return validate_dict(data, "test")


def _ctx(run_dir):
    return StageContext(layout=RunLayout(run_dir), config=_cfg(), stage="embed")


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


def test_killed_embed_keeps_the_finished_side_and_ends_identical(tmp_path, monkeypatch, caplog):
    import logging

    from vocabadapt.align import vectors

    _write_tokens(tmp_path / "ref")
    run_stage(_ctx(tmp_path / "ref"))
    _write_tokens(tmp_path / "run")
    trained = []
    real = vectors.shard_vectors

    def dying_on_target(reader, ft_cfg, scratch):
        trained.append(reader.dir.parent.name)
        if reader.dir.parent.name == "target":
            raise KeyboardInterrupt  # killed while fastText trains the target side
        return real(reader, ft_cfg, scratch)

    monkeypatch.setattr(vectors, "shard_vectors", dying_on_target)
    with pytest.raises(KeyboardInterrupt):
        run_stage(_ctx(tmp_path / "run"))
    assert not (tmp_path / "run" / "embeddings").exists()
    monkeypatch.setattr(vectors, "shard_vectors", lambda *a, **k: (trained.append("again"), real(*a, **k))[1])
    with caplog.at_level(logging.INFO, logger="vocabadapt"):
        run_stage(_ctx(tmp_path / "run"))
    assert trained == ["source", "target", "again"]  # the source side was not trained again
    assert any("embed source: kept from the interrupted run" in r.getMessage() for r in caplog.records)
    ref, got = tmp_path / "ref" / "embeddings", tmp_path / "run" / "embeddings"
    assert sorted(p.name for p in ref.iterdir()) == sorted(p.name for p in got.iterdir())
    for f in ref.iterdir():  # one fastText thread: bitwise the uninterrupted result
        assert (got / f.name).read_bytes() == f.read_bytes(), f.name
    assert not (tmp_path / "run" / "partial").exists() or not any((tmp_path / "run" / "partial").iterdir())


def test_embed_with_changed_settings_starts_over(tmp_path, monkeypatch):
    from vocabadapt.align import vectors

    _write_tokens(tmp_path)
    real = vectors.shard_vectors
    monkeypatch.setattr(
        vectors,
        "shard_vectors",
        lambda r, f, scratch: (
            real(r, f, scratch) if r.dir.parent.name == "source" else (_ for _ in ()).throw(KeyboardInterrupt)
        ),
    )
    with pytest.raises(KeyboardInterrupt):
        run_stage(_ctx(tmp_path))
    trained = []
    monkeypatch.setattr(
        vectors, "shard_vectors", lambda *a, **k: (trained.append(a[0].dir.parent.name), real(*a, **k))[1]
    )
    cfg = _cfg(epochs=3)
    run_stage(StageContext(layout=RunLayout(tmp_path), config=cfg, stage="embed"))
    assert trained == ["source", "target"]  # other epochs: the finished source side is not reused


def test_full_disk_while_writing_the_id_file_is_a_clear_error_and_keeps_previous_embeddings(tmp_path, monkeypatch):
    import errno

    from vocabadapt.errors import StageError
    from vocabadapt.text.shards import ShardReader

    _write_tokens(tmp_path)
    run_stage(_ctx(tmp_path))
    before = {p.name: p.read_bytes() for p in (tmp_path / "embeddings").iterdir()}
    real = ShardReader.documents

    def filling_up(self):  # the disk fills after 50 documents of the id file are written
        for i, doc in enumerate(real(self)):
            if i == 50:
                raise OSError(errno.ENOSPC, "No space left on device")
            yield doc

    monkeypatch.setattr(ShardReader, "documents", filling_up)
    cfg = _cfg(epochs=3)
    with pytest.raises(StageError, match=r"no space left on the device while writing \S*ids\.txt .*free disk space"):
        run_stage(StageContext(layout=RunLayout(tmp_path), config=cfg, stage="embed"))
    assert {p.name: p.read_bytes() for p in (tmp_path / "embeddings").iterdir()} == before
    assert not list((tmp_path / "partial" / "embed").rglob("*ids.txt*"))  # no half-written id file left
