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


# --------------------------------------------------------------------------------------------------
# resume inside the stage, and a full disk

BIG_DOCS = [f"record {i}: " + TEXT[(11 * i) % 300 : (11 * i) % 300 + 90 + i % 50] for i in range(400)]


class SimulatedKill(Exception):
    """Stands for a SIGKILL: nothing in vocabadapt catches it."""


def _big_config(root, shard_tokens=1000):
    write_jsonl(root / "corpus.jsonl", BIG_DOCS)
    return write_config(
        root / "t.yaml",
        {
            "models": {"source_tokenizer": str(root / "s"), "target_tokenizer": str(root / "t")},
            "corpus": {"inputs": [str(root / "corpus.jsonl")], "heldout_fraction": 0.1},
            "term_mining": {"enabled": True, "min_frequency": 2},
            "tokenization": {"workers": 1, "batch_size": 16, "shard_tokens": shard_tokens},
            "pipeline": {"run_root": str(root / "runs")},
        },
    )


def _tree_bytes(d):
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _save_tokenizers(root):
    train_bpe_tokenizer(BIG_DOCS, 300).save_pretrained(str(root / "s"))
    train_bpe_tokenizer(BIG_DOCS, 500).save_pretrained(str(root / "t"))


@pytest.mark.parametrize("killed_side", ["source", "target"])
def test_killed_tokenize_resumes_from_last_finished_shard_with_identical_shards(
    tmp_path, monkeypatch, caplog, killed_side
):
    import logging

    from vocabadapt.text import shards

    _save_tokenizers(tmp_path)
    cfg = _big_config(tmp_path)
    reference = run(cfg, run_dir=tmp_path / "ref", until="tokenize").run_dir
    # Progress is recorded once per full shard, in the order source/train, source/heldout, target/...:
    # kill after the middle shard of the killed side's training split.
    landing = []
    for side in ("source", "target"):
        for split in ("train", "heldout"):
            meta = json.loads((reference / "tokens" / side / split / "meta.json").read_text())
            landing += [(side, split, k) for k in range(1, meta["tokens"] // 1000 + 1)]
    in_side = [i for i, (side, split, _) in enumerate(landing) if (side, split) == (killed_side, "train")]
    assert len(in_side) >= 4
    kill_after = in_side[len(in_side) // 2] + 1
    side, split, shards_done = landing[kill_after - 1]

    calls = {"n": 0}
    record = shards.ShardWriter._record_progress

    def killing_record(self):
        record(self)
        calls["n"] += 1
        if calls["n"] == kill_after:
            raise SimulatedKill(f"killed after shard {self._shards} of {self.dir}")

    monkeypatch.setattr(shards.ShardWriter, "_record_progress", killing_record)
    with pytest.raises(SimulatedKill):
        run(cfg, run_dir=tmp_path / "run", until="tokenize")
    assert not (tmp_path / "run" / "tokens").exists()  # nothing half-written under the final name
    assert (tmp_path / "run" / "partial" / "tokenize").is_dir()
    monkeypatch.setattr(shards.ShardWriter, "_record_progress", record)

    with caplog.at_level(logging.INFO, logger="vocabadapt"):
        result = run(cfg, run_dir=tmp_path / "run", until="tokenize")
    resumed = [r.getMessage() for r in caplog.records if "resumed from shard" in r.getMessage()]
    assert len(resumed) == 1
    assert f"tokens/{side}/{split}: resumed from shard {shards_done} " in resumed[0]
    assert any("tokenizers it prepared are kept" in r.getMessage() for r in caplog.records)
    assert result.ran == ["tokenize"]  # corpus was done; tokenize resumed, not started over
    assert _tree_bytes(result.run_dir / "tokens") == _tree_bytes(reference / "tokens")
    assert _tree_bytes(result.run_dir / "terms") == _tree_bytes(reference / "terms")
    assert not (result.run_dir / "partial" / "tokenize").exists()


def test_partial_shards_of_other_settings_are_not_resumed(tmp_path, monkeypatch, caplog):
    import logging

    from vocabadapt.text import shards

    _save_tokenizers(tmp_path)
    record = shards.ShardWriter._record_progress

    def killing_record(self):
        record(self)
        raise SimulatedKill("killed")

    monkeypatch.setattr(shards.ShardWriter, "_record_progress", killing_record)
    with pytest.raises(SimulatedKill):
        run(_big_config(tmp_path), run_dir=tmp_path / "run", until="tokenize")
    monkeypatch.setattr(shards.ShardWriter, "_record_progress", record)
    reference = run(_big_config(tmp_path, 2000), run_dir=tmp_path / "ref", until="tokenize").run_dir
    with caplog.at_level(logging.INFO, logger="vocabadapt"):
        result = run(_big_config(tmp_path, 2000), run_dir=tmp_path / "run", until="tokenize")
    assert not any("resumed from shard" in r.getMessage() for r in caplog.records)
    assert any("starting over" in r.getMessage() for r in caplog.records)
    assert _tree_bytes(result.run_dir / "tokens") == _tree_bytes(reference / "tokens")


def test_full_disk_mid_stage_is_a_clear_error_and_keeps_the_previous_tokens(tmp_path, monkeypatch):
    import errno

    from vocabadapt.errors import StageError
    from vocabadapt.text import shards

    _save_tokenizers(tmp_path)
    first = run(_big_config(tmp_path), run_dir=tmp_path / "run", until="tokenize").run_dir
    before = _tree_bytes(first / "tokens")
    saves = {"n": 0}
    real_save = shards.np.save

    def filling_save(f, arr, *a, **k):
        saves["n"] += 1
        if saves["n"] == 4:  # the disk fills up while the fourth array is written
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(f, arr, *a, **k)

    monkeypatch.setattr(shards.np, "save", filling_save)
    with pytest.raises(StageError) as err:  # shard size changed: the stage reruns and hits the full disk
        run(_big_config(tmp_path, 2000), run_dir=first, until="tokenize")
    msg = str(err.value)
    assert "no space left on the device while writing" in msg and "partial/tokenize/tokens/source/train" in msg
    assert "free disk space" in msg and "GB free there now" in msg
    assert _tree_bytes(first / "tokens") == before  # the previous artifacts are intact
    manifest = json.loads((first / "manifest.json").read_text())
    assert manifest["stages"]["tokenize"]["status"] == "failed"
    monkeypatch.setattr(shards.np, "save", real_save)
    # After freeing space the same command finishes (resuming the shards written before the disk filled).
    result = run(_big_config(tmp_path, 2000), run_dir=first, until="tokenize")
    assert result.manifest["stages"]["tokenize"]["status"] == "done"
    assert ShardReader(first / "tokens" / "source" / "train").meta["documents"] > 0


def test_bare_tokenizer_json_target_gets_its_end_of_text_token_as_eos(tmp_path):
    """A target shipped as a bare tokenizer.json (GPT-NeoX's form) names no EOS; the run's copy does."""
    from transformers import AutoTokenizer

    src, tgt = train_bpe_tokenizer(DOCS, 300), train_bpe_tokenizer(DOCS, 400)
    src.save_pretrained(str(tmp_path / "s"))
    (tmp_path / "t").mkdir()
    tgt.backend_tokenizer.save(str(tmp_path / "t" / "tokenizer.json"))
    assert AutoTokenizer.from_pretrained(str(tmp_path / "t")).eos_token is None  # the premise
    result = run(_config(tmp_path, tmp_path / "s", tmp_path / "t"), run_dir=tmp_path / "run", until="tokenize")
    saved = AutoTokenizer.from_pretrained(str(result.run_dir / "tokenizers" / "target"))
    assert saved.eos_token == "<|endoftext|>" and saved.eos_token_id == tgt.convert_tokens_to_ids("<|endoftext|>")
    assert result.manifest["stages"]["tokenize"]["summary"]["tokenizers"]["target_eos_inferred"] == "<|endoftext|>"


def test_ensure_eos_prefers_the_source_eos_and_leaves_a_named_eos_alone():
    from vocabadapt.text.tokenizers import ensure_eos

    class Tok:
        def __init__(self, vocab, eos=None):
            self.vocab, self.eos_token = vocab, eos

        def get_vocab(self):
            return self.vocab

    source = Tok({}, eos="<|im_end|>")
    both = Tok({"</s>": 0, "<|im_end|>": 1})
    assert ensure_eos(both, source) == "<|im_end|>" and both.eos_token == "<|im_end|>"
    assert ensure_eos(Tok({"</s>": 0, "a": 1}), Tok({})) == "</s>"
    named = Tok({"</s>": 0}, eos="a")
    assert ensure_eos(named, source) is None and named.eos_token == "a"
    none_fits = Tok({"a": 0, "b": 1})
    assert ensure_eos(none_fits, source) is None and none_fits.eos_token is None
