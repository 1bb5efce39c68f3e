"""The whole pipeline on a tiny model, corpus and tokenizers: every stage runs, reruns skip, the
closing summary is printed, and (slow tier) the training stages run as 2 processes."""

import json

import pytest

from helpers import (
    TEXT,
    save_tiny_model,
    sentencepiece_folder,
    tiktoken_folder,
    train_bpe_tokenizer,
    write_config,
    write_jsonl,
)
from vocabadapt.cli import main
from vocabadapt.run.layout import RunLayout
from vocabadapt.stages import STAGE_NAMES

DOCS = [f"{TEXT} case {i}: the patient number {i} received {i % 7} doses of heparin." for i in range(60)]
HELDOUT = [f"report {i}: aspirin and heparin were given for chest pain in the study." for i in range(6)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    source_tok = train_bpe_tokenizer(DOCS[:20], vocab_size=280)
    target_tok = train_bpe_tokenizer(DOCS, vocab_size=330)
    save_tiny_model(root / "model", source_tok, "gpt_neox", max_pos=64)
    target_tok.save_pretrained(str(root / "target_tok"))
    write_jsonl(root / "train.jsonl", DOCS)
    write_jsonl(root / "heldout.jsonl", HELDOUT)
    qa = {
        str(1000 + i): {
            "QUESTION": f"Does heparin help case {i}?",
            "CONTEXTS": ["heparin slows growth."],
            "final_decision": ["yes", "no", "maybe"][i % 3],
        }
        for i in range(6)
    }
    (root / "qa.json").write_text(json.dumps(qa))
    config = {
        "models": {"source_model": "model", "target_tokenizer": "target_tok"},
        "corpus": {"inputs": ["train.jsonl"], "heldout_inputs": ["heldout.jsonl"]},
        "term_mining": {"top_k": 20, "min_frequency": 2, "add_to_target": True},
        "embedding": {"fasttext": {"epochs": 2, "dim": 16, "thread": 1}},
        "alignment": {"pivot_count": 50, "similarity_threshold": 0.3},
        "evaluation": {"qa": {"file": "qa.json", "bootstrap": 50}, "batch_size": 4},
        "pipeline": {"run_root": "runs"},
        "vocab_adaptation": {
            "stage1_steps": 3,
            "stage2_steps": 3,
            "batch_size": 2,
            "gradient_accumulation": 1,
            "max_seq_length": 32,
            "lr_stage1": 1e-3,
            "lr_stage2": 1e-3,
            "bf16": False,
            "save_steps": 2,
            "eval_steps": 2,
            "logging_steps": 1,
            "eval_max_bytes": 2000,
        },
    }
    return root, write_config(root / "tiny.yaml", config)


def test_whole_pipeline_runs_then_skips(setup, capsys):
    root, cfg = setup
    run_dir = root / "run1"
    assert main(["run", str(cfg), "--run-dir", str(run_dir)]) == 0
    out, err = capsys.readouterr()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["complete"] and all(manifest["stages"][s]["status"] == "done" for s in STAGE_NAMES)
    assert "final model:" in out and "checklist:" in out and "bits per byte" in out
    for k, name in enumerate(STAGE_NAMES, 1):
        assert f"[{k}/9] {name}" in err
    # artifacts the design names
    for rel in (
        "corpus/stats.json",
        "terms/terms.txt",
        "align/mapping.json",
        "model/init/transplant.json",
        "model/stage2/config.json",
        "train/stage1/summary.json",
        "train/stage2/summary.json",
        "eval/summary.json",
        "eval/checklist.json",
        "report/report.html",
    ):
        assert (run_dir / rel).exists(), rel
    # mined terms were added to the target tokenizer and got non-zero rows
    transplant = json.loads((run_dir / "model/init/transplant.json").read_text())
    assert transplant["zero_rows"] == 0
    stats = json.loads((run_dir / "corpus/stats.json").read_text())
    assert stats["heldout_documents"] == len(HELDOUT) and stats["documents"] == len(DOCS)
    # the same command again: nothing reruns
    assert main(["run", str(cfg), "--run-dir", str(run_dir)]) == 0
    err = capsys.readouterr().err
    assert err.count("skipped") == 9


def test_changed_training_key_reruns_from_stage2(setup, capsys):
    root, cfg = setup
    run_dir = root / "run1"
    assert main(["run", str(cfg), "--run-dir", str(run_dir), "--set", "vocab_adaptation.lr_stage2=5e-4"]) == 0
    err = capsys.readouterr().err
    ran = [n for n in STAGE_NAMES if f"{n:<10} running" in err]
    assert ran == ["stage2", "evaluate", "report"]


def test_embedding_warmup_alone_is_stage1_with_its_settings_and_skips_stage2(setup, capsys):
    """The research form `embedding_warmup: {enabled: true}` + `vocab_adaptation: {enabled: false}`."""
    root, cfg = setup
    run_dir = root / "run_warmup"
    warm = [
        "--set",
        "embedding_warmup.enabled=true",
        "--set",
        "vocab_adaptation.enabled=false",
        "--set",
        "embedding_warmup.steps=2",
        "--set",
        "embedding_warmup.batch_size=1",
        "--set",
        "embedding_warmup.lr=5e-4",
        "--set",
        "embedding_warmup.max_seq_length=16",
    ]
    assert main(["run", str(cfg), "--run-dir", str(run_dir), "--until", "stage2", *warm]) == 0
    layout = RunLayout(run_dir)
    s1, s2 = layout.train_summaries()["stage1"], layout.train_summaries()["stage2"]
    # stage 1 trained embeddings and head with the warm-up's steps, batch (1 × 1 accumulation) and length
    assert s1["embedding_warmup"] is True and s1["mode"] == "embeddings" and s1["steps"] == 2
    assert s1["sequences_per_step"] == 1 and s1["tokens"] == 2 * 1 * 16
    lrs = [r["learning_rate"] for r in layout.train_metrics("stage1") if r.get("type") == "train"]
    assert max(lrs) == pytest.approx(5e-4)  # the warm-up lr, not lr_stage1 (1e-3)
    assert s2["skipped"] is True  # vocab_adaptation.enabled: false -> stage 2 is a copy
    capsys.readouterr()
    # A warm-up key is one of stage 1's keys: changing it reruns stage 1 (and what follows) only.
    assert (
        main(
            [
                "run",
                str(cfg),
                "--run-dir",
                str(run_dir),
                "--until",
                "stage2",
                *warm,
                "--set",
                "embedding_warmup.lr=2e-4",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert [n for n in STAGE_NAMES if f"{n:<10} running" in err] == ["stage1", "stage2"]


def test_sentencepiece_target_and_tiktoken_source_folders_run_through_transplant(setup, tmp_path):
    """Tokenizer folders as releases ship them: tokenizer.model alone (SentencePiece, Llama-2/Mistral) as
    the target, a tiktoken tokenizer.model (Llama 3) as the source."""
    root, cfg = setup
    sp = sentencepiece_folder(tmp_path / "sp", DOCS, "bpe", byte_fallback=True, vocab_size=400)
    source_tok = train_bpe_tokenizer(DOCS[:20], vocab_size=280)
    tk = tiktoken_folder(tmp_path / "tk", source_tok)
    model = save_tiny_model(tmp_path / "model", source_tok, "gpt_neox", max_pos=64)
    run_dir = tmp_path / "run"
    assert (
        main(
            [
                "run",
                str(cfg),
                "--run-dir",
                str(run_dir),
                "--until",
                "transplant",
                "--set",
                f"models.target_tokenizer={sp}",
                "--set",
                f"models.source_tokenizer={tk}",
                "--set",
                f"models.source_model={model}",
            ]
        )
        == 0
    )
    layout = RunLayout(run_dir)
    summary = json.loads((run_dir / "align/summary.json").read_text())
    assert (summary["target_family"], summary["source_family"]) == ("sentencepiece", "byte_level")
    assert (summary["target_vocab"], summary["source_vocab"]) == (400, 278)
    methods = layout.token_mapping().methods
    newline = layout.tokenizer("target").convert_tokens_to_ids("<0x0A>")
    assert methods[newline] == "identical"  # byte-fallback piece = the source's "Ċ"
    # 256 byte pieces + 53 SentencePiece pieces spelled as byte-level tokens of the source
    assert summary["identical_tokens"] == summary["counts"]["identical"] == 309
    assert json.loads((run_dir / "model/init/transplant.json").read_text())["zero_rows"] == 0


@pytest.mark.slow
def test_training_stages_launch_two_processes(setup):
    root, cfg = setup
    run_dir = root / "run_ddp"
    assert (
        main(
            [
                "run",
                str(cfg),
                "--run-dir",
                str(run_dir),
                "--until",
                "stage2",
                "--set",
                "vocab_adaptation.num_processes=2",
                "--set",
                "vocab_adaptation.launcher=torchrun",
            ]
        )
        == 0
    )
    summary = RunLayout(run_dir).train_summaries()
    assert summary["stage1"]["world_size"] == 2 and summary["stage2"]["steps"] == 3
