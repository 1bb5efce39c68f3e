"""Alignment: the numerical core on known answers, and the stage end to end on tiny tokenizers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import TEXT, train_bpe_tokenizer, write_config, write_jsonl
from vocabadapt.align.mapping import METHODS, TokenMapping
from vocabadapt.align.relrep import RelativeRepresentation, blockwise_topk, choose_pivots
from vocabadapt.align.span import precision_at
from vocabadapt.run.runner import run


def _unit(x):
    return torch.nn.functional.normalize(torch.as_tensor(x, dtype=torch.float32), dim=1)


def test_blocks_give_the_same_answer_as_one_unblocked_product():
    g = torch.Generator().manual_seed(0)
    q, s = _unit(torch.randn(53, 8, generator=g)), _unit(torch.randn(97, 8, generator=g))
    v_ref, i_ref = torch.topk(q @ s.T, 5, dim=1)
    # 7-row blocks against 13-column chunks: many merges of the running top-k.
    v, i = blockwise_topk(q, s, 5, block_rows=7, max_elements=7 * 13)
    np.testing.assert_array_equal(i, i_ref.numpy())
    np.testing.assert_allclose(v, v_ref.numpy(), atol=1e-6)
    # The lazily computed relative representation matches its materialised form.
    vecs = torch.randn(40, 6, generator=g).numpy()
    rel = RelativeRepresentation(vecs, [0, 3, 5, 9], block_rows=7)
    np.testing.assert_allclose(rel.rows(10, 20).numpy(), rel.full()[10:20].numpy(), atol=1e-6)
    np.testing.assert_allclose(torch.linalg.norm(rel.full(), dim=1).numpy(), 1.0, atol=1e-5)


def test_known_alignment_is_recovered_through_relative_representations():
    # Target space = source space permuted and rotated: cosines to corresponding pivots are the same,
    # so every target token's top-1 must be its own source token, although no vector is shared.
    rng = np.random.default_rng(0)
    src = rng.standard_normal((400, 16)).astype(np.float32)
    perm = rng.permutation(400)
    rot, _ = np.linalg.qr(rng.standard_normal((16, 16)))
    tgt = (src[perm] @ rot).astype(np.float32)  # target row r is source row perm[r]
    pivot_t = np.arange(0, 400, 10)
    pivot_s = perm[pivot_t]
    rel_t = RelativeRepresentation(tgt, pivot_t)
    rel_s = RelativeRepresentation(src, pivot_s).full()
    sims, rows = blockwise_topk(rel_t, rel_s, 3, block_rows=64)
    np.testing.assert_array_equal(rows[:, 0], perm)
    np.testing.assert_allclose(sims[:, 0], 1.0, atol=1e-4)
    assert precision_at({t: int(perm[t]) for t in range(400)}, {t: rows[t].tolist() for t in range(400)}) == {
        "n": 400,
        "precision@1": 1.0,
        "precision@5": 1.0,
    }


def test_pivot_choice_is_seeded_and_frequent_takes_the_most_frequent():
    pairs = [(t, t + 100) for t in range(50)]
    a = choose_pivots(pairs, 10, "random", seed=3)
    assert a == choose_pivots(list(reversed(pairs)), 10, "random", seed=3) and len(a) == 10
    assert a != choose_pivots(pairs, 10, "random", seed=4)
    counts = {t: t for t in range(50)}
    assert choose_pivots(pairs, 3, "frequent", 0, counts, {}) == [(47, 147), (48, 148), (49, 149)]
    assert choose_pivots(pairs[:4], 10, "random", 0) == pairs[:4]  # fewer pairs than asked: all of them


# --------------------------------------------------------------------------------------------------
# the stage on two tiny byte-level BPE tokenizers that merge the same text differently


SENTENCES = [s.strip() + " ." for s in TEXT.split(" . ") if s.strip()]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("align")
    docs = [" ".join(SENTENCES[(i + j) % len(SENTENCES)] for j in range(3 + i % 4)) + f" case {i} ." for i in range(80)]
    # The target merges further (whole words the source lacks): those must be aligned or fall back.
    src = train_bpe_tokenizer(docs, vocab_size=290)
    tgt = train_bpe_tokenizer(docs, vocab_size=360)
    src.save_pretrained(str(root / "src_tok"))
    tgt.save_pretrained(str(root / "tgt_tok"))
    write_jsonl(root / "corpus.jsonl", docs)
    cfg = write_config(
        root / "tiny.yaml",
        {
            "models": {"source_tokenizer": str(root / "src_tok"), "target_tokenizer": str(root / "tgt_tok")},
            "corpus": {"inputs": [str(root / "corpus.jsonl")], "heldout_fraction": 0.2},
            "term_mining": {"enabled": False},
            "tokenization": {"workers": 1},
            "embedding": {"fasttext": {"thread": 1, "dim": 16, "epochs": 3}},
            # tokalign reads the vector alignment, so embed trains vectors and align uses them
            "alignment": {"pivot_count": 20, "similarity_threshold": 0.3, "init": "tokalign"},
            "pipeline": {"run_root": str(root / "runs")},
        },
    )
    result = run(cfg, run_dir=root / "runs" / "r", until="align")
    return cfg, result.run_dir, src, tgt


def _mapping(run_dir):
    return TokenMapping.load(run_dir / "align" / "mapping.json")


def test_stage_writes_a_complete_deterministic_mapping(tiny_run):
    cfg, run_dir, src, tgt = tiny_run
    m = _mapping(run_dir)
    assert m.target_vocab_size == len(tgt) and m.source_vocab_size == len(src)
    assert set(m.methods) <= set(METHODS)
    # Specials by role: <|endoftext|> is bos/eos/unk, <|pad|> is pad on both sides.
    assert m.methods[0] == "special" and m.source_ids[0] == [0]
    assert m.methods[1] == "special" and m.source_ids[1] == [1]
    for tid, method in enumerate(m.methods):
        if method == "identical":
            assert src.convert_ids_to_tokens(m.source_ids[tid][0]) == tgt.convert_ids_to_tokens(tid)
        if method in ("aligned", "fvt", "soft"):
            assert abs(sum(m.weights[tid]) - 1.0) < 1e-5 and m.source_ids[tid]
    summary = json.loads((run_dir / "align" / "summary.json").read_text())
    assert sum(summary["counts"].values()) == len(tgt)
    assert summary["counts"]["identical"] > 250  # same alphabet and the first merges in common
    assert summary["pivots"]["used"] == 20
    # The histogram holds every non-identical token with a vector: the aligned ones and those below.
    assert sum(summary["similarity_histogram"]["counts"]) >= summary["counts"].get("aligned", 0)
    assert all(s >= 0.3 for s, mth in zip(m.similarity, m.methods) if mth == "aligned")
    assert summary["span_test"]["identical"]["precision@1"] > 0.9
    lines = (run_dir / "align" / "provenance.jsonl").read_text().splitlines()
    assert len(lines) == len(tgt) and json.loads(lines[0])["target_token"] == "<|endoftext|>"
    before = (run_dir / "align" / "mapping.json").read_bytes()
    run(cfg, run_dir=run_dir, from_stage="align", until="align", force=True)
    assert (run_dir / "align" / "mapping.json").read_bytes() == before


def test_threshold_and_fallbacks(tiny_run):
    cfg, run_dir, src, tgt = tiny_run
    run(cfg, ["alignment.similarity_threshold=1.0"], run_dir=run_dir, until="align")
    m = _mapping(run_dir)
    assert "aligned" not in m.methods and "fvt" in m.methods
    tid = next(i for i, x in enumerate(m.methods) if x == "fvt")
    # fvt: the target token's text re-tokenised by the source tokenizer, uniform weights.
    text = tgt.convert_tokens_to_string([tgt.convert_ids_to_tokens(tid)])
    assert m.source_ids[tid] == src.encode(text, add_special_tokens=False)
    assert m.weights[tid] == [round(1 / len(m.source_ids[tid]), 6)] * len(m.source_ids[tid])

    run(cfg, ["alignment.similarity_threshold=1.0", "alignment.fallback=zero"], run_dir=run_dir, until="align")
    m = _mapping(run_dir)
    assert "fvt" not in m.methods and m.counts()["zero"] == len(tgt) - m.counts()["identical"] - m.counts()["special"]

    run(
        cfg,
        ["alignment.similarity_threshold=-1.0", "alignment.method=soft", "alignment.top_k=3"],
        run_dir=run_dir,
        until="align",
    )
    m = _mapping(run_dir)
    soft = [i for i, x in enumerate(m.methods) if x == "soft"]
    assert soft and all(len(m.source_ids[i]) == 3 and abs(sum(m.weights[i]) - 1) < 1e-5 for i in soft)
    assert all(m.weights[i] == sorted(m.weights[i], reverse=True) for i in soft)
    summary = json.loads((run_dir / "align" / "summary.json").read_text())
    # Threshold -1: every non-identical token with a vector is aligned, the rest (unseen) fall back.
    assert summary["counts"]["soft"] == sum(summary["similarity_histogram"]["counts"])


def test_fewer_identical_pairs_than_pivots_is_recorded(tiny_run):
    cfg, run_dir, _, _ = tiny_run
    run(cfg, ["alignment.pivot_count=100000"], run_dir=run_dir, until="align")
    summary = json.loads((run_dir / "align" / "summary.json").read_text())
    assert summary["pivots"]["used"] == summary["pivots"]["available"] < 100000
    assert any("fewer than alignment.pivot_count" in w for w in summary["warnings"])


def test_fvt_fallback_builds_the_same_rows_as_the_fvt_initialiser():
    """One FVT (issue 13): align's `fallback: fvt` once re-tokenised canonical forms, init's `fvt` decoded tokens."""
    from vocabadapt.align.aligner import align_vocabularies
    from vocabadapt.align.rules import Embeddings
    from vocabadapt.config import AlignmentConfig
    from vocabadapt.init import InitContext
    from vocabadapt.init import fvt as fvt_init
    from vocabadapt.init.rows import build_rows

    text = TEXT + " naïve µg/kg tumour cells ≥ 5 ° ß "
    src = train_bpe_tokenizer([text], vocab_size=290)
    tgt = train_bpe_tokenizer([text * 3 + " cardiomyopathy interleukin"], vocab_size=330)
    rng = np.random.default_rng(0)

    def emb(tok):
        ids = np.arange(len(tok), dtype=np.int64)
        return Embeddings(rng.standard_normal((len(tok), 8)).astype(np.float32), ids, np.ones_like(ids))

    cfg = AlignmentConfig(similarity_threshold=1.0, fallback="fvt", pivot_count=20)  # nothing aligns: all fall back
    mapping = align_vocabularies(tgt, src, emb(tgt), emb(src), cfg, []).mapping
    fvt_ids = [t for t, m in enumerate(mapping.methods) if m == "fvt"]
    assert len(fvt_ids) > 10
    recipe = fvt_init.recipe(InitContext(mapping=mapping, source_tokenizer=src, target_tokenizer=tgt))
    for t in fvt_ids:
        assert recipe.labels[t] == "fvt" and recipe.source_ids[t] == mapping.source_ids[t], t
        assert recipe.weights[t] == mapping.weights[t], t
    # and so the built rows are identical, bit for bit
    from vocabadapt.init import mapping_recipe

    source_rows = torch.randn(len(src), 8, generator=torch.Generator().manual_seed(0))
    by_fallback = build_rows(source_rows, mapping_recipe(InitContext(mapping, src, tgt)), len(src), len(tgt))
    by_init = build_rows(source_rows, recipe, len(src), len(tgt))
    assert torch.equal(by_fallback[fvt_ids], by_init[fvt_ids])
