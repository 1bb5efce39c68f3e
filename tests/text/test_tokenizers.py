"""The tokenize stage: both tokenizers into id shards; slow tokenizers in worker processes."""

from __future__ import annotations

import json

import pytest

from helpers import SHARED_DATA, TEXT, train_bpe_tokenizer, write_config, write_jsonl
from vocabadapt.run.runner import run
from vocabadapt.text.shards import ShardReader

DOCS = [f"case {i}: " + TEXT[(7 * i) % 200 : (7 * i) % 200 + 120] for i in range(60)]


def _config(root, source, target, workers=1):
    write_jsonl(root / "corpus.jsonl", DOCS)
    return write_config(
        root / "t.yaml",
        {
            "models": {"source_tokenizer": str(source), "target_tokenizer": str(target)},
            "corpus": {"inputs": [str(root / "corpus.jsonl")], "heldout_fraction": 0.2},
            "term_mining": {"enabled": False},
            "tokenization": {"workers": workers, "batch_size": 7},
            "pipeline": {"run_root": str(root / "runs")},
        },
    )


def test_shards_round_trip_and_stats(tmp_path):
    src, tgt = train_bpe_tokenizer(DOCS, 300), train_bpe_tokenizer(DOCS, 400)
    src.save_pretrained(str(tmp_path / "s"))
    tgt.save_pretrained(str(tmp_path / "t"))
    result = run(_config(tmp_path, tmp_path / "s", tmp_path / "t"), run_dir=tmp_path / "run", until="tokenize")
    run_dir = result.run_dir
    train = [json.loads(line)["text"] for line in (run_dir / "corpus" / "train.jsonl").read_text().splitlines()]
    reader = ShardReader(run_dir / "tokens" / "target" / "train")
    assert reader.num_documents == len(train) and reader.meta["vocab_size"] == len(tgt)
    assert [tgt.decode(reader.document(i).tolist()) for i in range(len(train))] == train
    stats = json.loads((run_dir / "tokens" / "stats.json").read_text())
    total_bytes = sum(len(t.encode()) for t in train)
    assert stats["target"]["train_bytes"] == total_bytes
    assert stats["target"]["train_bytes_per_token"] == round(total_bytes / reader.num_tokens, 4)
    # More merges, fewer tokens for the same bytes.
    assert stats["target"]["train_tokens"] < stats["source"]["train_tokens"]
    assert result.manifest["stages"]["tokenize"]["summary"]["source"]["heldout_documents"] > 0


@pytest.mark.shared_data("tokenizers", "biogpt")
def test_slow_tokenizer_in_workers_matches_direct_encoding(tmp_path):
    from transformers import BioGptTokenizer

    d = SHARED_DATA / "tokenizers" / "biogpt"
    bio = BioGptTokenizer(str(d / "vocab.json"), str(d / "merges.txt"))
    bio.save_pretrained(str(tmp_path / "bio"))
    src = train_bpe_tokenizer(DOCS, 300)
    src.save_pretrained(str(tmp_path / "s"))
    result = run(
        _config(tmp_path, tmp_path / "s", tmp_path / "bio", workers=2), run_dir=tmp_path / "run", until="tokenize"
    )
    train = [json.loads(line)["text"] for line in (result.run_dir / "corpus" / "train.jsonl").read_text().splitlines()]
    reader = ShardReader(result.run_dir / "tokens" / "target" / "train")
    assert [reader.document(i).tolist() for i in range(len(train))] == [
        bio.encode(t, add_special_tokens=False) for t in train
    ]
    assert result.manifest["stages"]["tokenize"]["summary"]["target"]["fast"] is False
