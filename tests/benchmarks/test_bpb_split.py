"""benchmarks/bpb_split.py (python -m benchmarks.bpb_split): the per-class split adds up to the evaluate stage's bits per byte."""

from __future__ import annotations

import json

import pytest

from benchmarks import bpb_split
from helpers import TEXT, save_tiny_model, train_bpe_tokenizer, write_jsonl
from vocabadapt.evaluation.bpb import bits_per_byte

DOCS = [f"case {i}: " + TEXT[(11 * i) % 150 : (11 * i) % 150 + 90] for i in range(12)]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run directory with held-out text, two tokenizers of one family (the target's vocabulary holds the
    source's and more) and a tiny model for each."""
    root = tmp_path_factory.mktemp("split")
    src, tgt = train_bpe_tokenizer(DOCS, 300), train_bpe_tokenizer(DOCS, 380)
    write_jsonl(root / "run" / "corpus" / "heldout.jsonl", DOCS)
    src.save_pretrained(str(root / "run" / "tokenizers" / "source"))
    tgt.save_pretrained(str(root / "run" / "tokenizers" / "target"))
    save_tiny_model(root / "src", src, arch="llama", max_pos=512, seed=1)
    save_tiny_model(root / "tgt", tgt, arch="llama", max_pos=512, seed=2)
    return root, src, tgt


def _bpb(model_dir, tok):
    from transformers import AutoModelForCausalLM

    return bits_per_byte(AutoModelForCausalLM.from_pretrained(model_dir), tok, DOCS)["bits_per_byte"]


def test_split_adds_up_to_both_models_bits_per_byte(run):
    root, src, tgt = run
    res = bpb_split.split(root / "run", root / "tgt", root / "src", n_docs=len(DOCS), max_chars=10_000)
    assert res["documents"] == len(DOCS)
    assert res["bytes"] == sum(len(d.encode()) for d in DOCS)
    assert res["target_bpb"] == pytest.approx(_bpb(root / "tgt", tgt), rel=1e-5)
    assert res["source_bpb"] == pytest.approx(_bpb(root / "src", src), rel=1e-5)
    rows = {r["class"]: r for r in res["rows"]}
    src_vocab = set(src.get_vocab())
    new = sum(tgt.convert_ids_to_tokens(i) not in src_vocab for d in DOCS for i in tgt(d)["input_ids"])
    assert new > 0 and rows["new"]["tokens"] == new
    assert sum(r["share_of_excess"] for r in res["rows"]) == pytest.approx(1.0)
    json.dumps(res)  # --json writes it as it is


def test_a_model_against_itself_is_all_kept_with_no_excess(run, tmp_path):
    root, src, _ = run
    same = tmp_path / "run"
    write_jsonl(same / "corpus" / "heldout.jsonl", DOCS)
    for side in ("source", "target"):
        src.save_pretrained(str(same / "tokenizers" / side))
    res = bpb_split.split(same, root / "src", root / "src", n_docs=len(DOCS), max_chars=10_000)
    rows = {r["class"]: r for r in res["rows"]}
    assert rows["kept"]["bytes"] == res["bytes"]
    assert rows["kept"]["target_bits"] == pytest.approx(rows["kept"]["source_bits"])
    assert rows["kept"]["mean_mass_on_new"] == 0.0
