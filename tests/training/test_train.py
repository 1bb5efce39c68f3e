"""The two training stages on tiny models (CPU, seconds): vocabadapt.train."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from helpers import TEXT, save_tiny_model, tiny_stage_config, train_bpe_tokenizer
from vocabadapt.config import Config, VocabAdaptationConfig
from vocabadapt.errors import InputError, StageError
from vocabadapt.evaluation.bpb import bits_per_byte
from vocabadapt.io import read_json
from vocabadapt.model.keys import linear_module_names
from vocabadapt.run.context import StageContext
from vocabadapt.run.layout import RunLayout
from vocabadapt.stages.train import run as run_training
from vocabadapt.text.shards import ShardWriter
from vocabadapt.training.callbacks import heldout_sample, heldout_scorer
from vocabadapt.training.checkpoints import valid_checkpoints
from vocabadapt.training.settings import StageSettings, stage_settings
from vocabadapt.training.trainer import train_stage

SEQ = 16


def _cfg(**kw) -> VocabAdaptationConfig:
    return tiny_stage_config(SEQ, **{**dict(lora_r=4, lora_alpha=8), **kw})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return build_data(tmp_path_factory.mktemp("train"))


def build_data(root: Path) -> dict:
    """A tokenizer, token shards of ~200 short documents, held-out texts, and tiny model dirs."""
    sents = [s.strip() + " ." for s in TEXT.split(" . ") if s.strip()]
    rng = random.Random(0)
    docs = [" ".join(rng.sample(sents, k=rng.randint(1, 3))) for _ in range(200)]
    tok = train_bpe_tokenizer(docs, vocab_size=300)
    w = ShardWriter(root / "shards", shard_tokens=1000)
    for d in docs:
        w.add(tok(d)["input_ids"], len(d.encode()))
    w.close()
    models = {
        arch: save_tiny_model(root / arch, tok, arch=arch, hidden=16, max_pos=64)
        for arch in ("llama", "gpt2", "gpt_neox")
    }
    return {"root": root, "tok": tok, "docs": docs, "heldout": docs[:8], "shards": root / "shards", **models}


def _state(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def _run(data, tmp_path, settings, cfg, model="gpt_neox", **kw):
    return train_stage(
        settings, cfg, data[model], data["shards"], tmp_path / "out", tmp_path / "train", tmp_path / "ck", **kw
    )


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_stage1_trains_only_embeddings_and_head(data, tmp_path, arch):
    cfg = _cfg(weight_decay=0.1)  # decay must not touch frozen weights either
    summary = _run(data, tmp_path, stage_settings(cfg, "stage1"), cfg, model=arch, heldout_texts=data["heldout"])
    before, after = _state(data[arch]), _state(tmp_path / "out")
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "out"))
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    trained_names = {n for n, p in model.named_parameters() if p is emb or p is head}
    changed = {n for n in after if not torch.equal(before[n], after[n])}
    frozen = set(after) - trained_names
    assert frozen and not (changed & frozen), f"frozen parameters changed: {changed & frozen}"
    assert trained_names <= changed  # embeddings trained; for the untied Llama the lm_head too
    if arch == "llama":
        assert len(trained_names) == 2 and summary["tied_embeddings"] is False
    else:
        assert summary["tied_embeddings"] is True and torch.equal(emb, head)
    assert summary["trainable_parameters"] == sum(p.numel() for p in {id(emb): emb, id(head): head}.values())
    assert summary["sequences"]["start"] == 0 and summary["sequences"]["stop"] == 4  # 2 steps x batch 2
    assert summary["tokens"] == 4 * SEQ
    assert summary["heldout_bpb_before"] > 0 and summary["heldout_bpb_after"] > 0
    # One bits-per-byte: the monitor's number is the evaluation's definition on the same text and windows.
    sample = heldout_sample(data["heldout"], cfg.eval_max_bytes)
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "out"))
    evaluated = bits_per_byte(model, tok, sample, context=cfg.max_seq_length, batch_size=cfg.batch_size)
    assert summary["heldout_bpb_after"] == pytest.approx(evaluated["bits_per_byte"], rel=1e-6)
    assert summary["heldout_bytes"] == evaluated["bytes"]
    assert summary["first_loss"] is not None and summary["embedding_health"]["settled"] is None  # too few logs
    recs = [json.loads(x) for x in (tmp_path / "train" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in recs if r["type"] == "train"]
    assert [r["step"] for r in train] == [1, 2]
    assert all(r["tokens_per_s"] > 0 and r["grad_norm"] is not None and r["learning_rate"] is not None for r in train)
    assert [r["step"] for r in recs if r["type"] == "health"] == [1, 2]


class _Kill(TrainerCallback):
    """Stands in for kill -9: stops the process dead after a step (after its checkpoint, if any)."""

    def __init__(self, at: int):
        self.at = at

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == self.at:
            raise KeyboardInterrupt("simulated kill")


def test_kill_and_resume_reaches_the_same_weights(data, tmp_path):
    # LoRA with dropout: the resume must also restore RNG state, adapter and the trainable embeddings/head.
    cfg = _cfg(stage2_steps=4, stage2_use_lora=True, lora_dropout=0.1, save_steps=2, save_total_limit=1)
    st = stage_settings(cfg, "stage2", start_position=10)
    whole = train_stage(
        st, cfg, data["gpt_neox"], data["shards"], tmp_path / "a", tmp_path / "a_train", tmp_path / "a_ck"
    )
    with pytest.raises(KeyboardInterrupt):
        train_stage(
            st,
            cfg,
            data["gpt_neox"],
            data["shards"],
            tmp_path / "b",
            tmp_path / "b_train",
            tmp_path / "b_ck",
            callbacks=[_Kill(3)],
        )
    assert not (tmp_path / "b").exists()
    assert [s for s, _ in valid_checkpoints(tmp_path / "b_ck", need_rows=True)] == [2]
    # a checkpoint cut off mid-write (no trainer_state.json) must be ignored
    (tmp_path / "b_ck" / "checkpoint-3").mkdir()
    (tmp_path / "b_ck" / "checkpoint-3" / "adapter_config.json").write_text("{}")
    resumed = train_stage(
        st, cfg, data["gpt_neox"], data["shards"], tmp_path / "b", tmp_path / "b_train", tmp_path / "b_ck"
    )
    assert resumed["resumed_from"].endswith("checkpoint-2")
    assert not (tmp_path / "b_ck" / "checkpoint-3").exists()
    a, b = _state(tmp_path / "a"), _state(tmp_path / "b")
    assert set(a) == set(b)
    assert all("lora" not in k for k in a)  # merged: a plain model
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    assert not torch.equal(a["gpt_neox.embed_in.weight"], _state(data["gpt_neox"])["gpt_neox.embed_in.weight"])
    assert (
        resumed["sequences"]
        == whole["sequences"]
        == {"start": 10, "stop": 18, "ranges": [{"epoch": 0, "start": 10, "stop": 18}]}
    )
    train_steps = [
        json.loads(x)["step"]
        for x in (tmp_path / "b_train" / "metrics.jsonl").read_text().splitlines()
        if json.loads(x)["type"] == "train"
    ]
    assert train_steps == [1, 2, 3, 4]  # the killed run's step-3 record was dropped, then rewritten

    # the same checkpoints under another config are refused, naming the keys
    with pytest.raises(StageError, match=r"differing: stage\.learning_rate, vocab_adaptation\.lora_r"):
        train_stage(
            replace(st, learning_rate=1e-3),
            _cfg(stage2_steps=4, stage2_use_lora=True, lora_dropout=0.1, lora_r=8),
            data["gpt_neox"],
            data["shards"],
            tmp_path / "b",
            tmp_path / "b_train",
            tmp_path / "b_ck",
        )


def test_damaged_checkpoint_is_never_resumed_from(data, tmp_path):
    cfg = _cfg(stage1_steps=4, save_steps=2, save_total_limit=2)
    st = stage_settings(cfg, "stage1")
    whole = train_stage(
        st, cfg, data["gpt_neox"], data["shards"], tmp_path / "a", tmp_path / "a_train", tmp_path / "a_ck"
    )
    with pytest.raises(KeyboardInterrupt):
        train_stage(
            st,
            cfg,
            data["gpt_neox"],
            data["shards"],
            tmp_path / "b",
            tmp_path / "b_train",
            tmp_path / "b_ck",
            callbacks=[_Kill(3)],
        )
    ck = tmp_path / "b_ck" / "checkpoint-2"
    assert (tmp_path / "b_ck" / "checkpoint-2.seal.json").exists()
    weights = next(ck.glob("*.safetensors"))
    raw = bytearray(weights.read_bytes())
    raw[-64:] = bytes(64)  # damage the tail of the weights, as a bad disk would
    weights.write_bytes(bytes(raw))
    assert valid_checkpoints(tmp_path / "b_ck", need_rows=False) == []
    resumed = train_stage(
        st, cfg, data["gpt_neox"], data["shards"], tmp_path / "b", tmp_path / "b_train", tmp_path / "b_ck"
    )
    assert resumed.get("resumed_from") is None  # started over instead of training on garbage
    a, b = _state(tmp_path / "a"), _state(tmp_path / "b")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    assert whole["steps"] == resumed["steps"] == 4


def test_pipeline_stages_auto_start_disjoint_ranges_and_summary(data, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(data["gpt_neox"], run / "model" / "init")
    shutil.copytree(data["shards"], run / "tokens" / "target" / "train")
    (run / "corpus").mkdir()
    (run / "corpus" / "heldout.jsonl").write_text(
        "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(data["heldout"]))
    )
    config = Config(
        vocab_adaptation=_cfg(stage1_steps=3, stage2_steps=2, stage2_use_lora=True, train_start_idx_stage2="auto")
    )
    layout = RunLayout(run)
    s1 = run_training(StageContext(layout=layout, config=config, stage="stage1"))
    s2 = run_training(StageContext(layout=layout, config=config, stage="stage2"))  # starts where stage 1's summary says
    summary = layout.train_summaries()
    assert set(summary) == {"stage1", "stage2"} and summary["stage2"] == read_json(
        run / "train" / "stage2" / "summary.json"
    )
    assert summary["stage1"]["sequences"]["stop"] == 6 == s2["sequences"]["start"]
    assert s2["sequences"]["stop"] == 10 and s2["mode"] == "lora"
    from vocabadapt.training.packing import SequenceOrder

    n = s1["data"]["sequences_per_epoch"]
    order = SequenceOrder(n, config.vocab_adaptation.seed)
    assert not set(order.sequence_ids(0, 6).tolist()) & set(order.sequence_ids(6, 10).tolist())
    for stage in ("stage1", "stage2"):
        assert summary[stage]["heldout_bpb_before"] > 0 and summary[stage]["heldout_bpb_after"] > 0
        assert (run / "train" / stage / "metrics.jsonl").exists()
    # stage 2 starts from stage 1's result
    assert summary["stage2"]["heldout_bpb_before"] == pytest.approx(summary["stage1"]["heldout_bpb_after"], rel=1e-5)
    # LoRA merged back: a plain model directory that loads without peft
    out = run / "model" / "stage2"
    assert not (out / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert not any("lora" in n for n, _ in model.named_parameters())
    assert (out / "tokenizer.json").exists()
    assert not torch.equal(
        _state(out)["gpt_neox.layers.0.attention.query_key_value.weight"],
        _state(run / "model" / "stage1")["gpt_neox.layers.0.attention.query_key_value.weight"],
    )


def test_zero_steps_skips_but_writes_the_model(data, tmp_path):
    cfg = _cfg(stage1_steps=0)
    s = _run(data, tmp_path, stage_settings(cfg, "stage1", 0), cfg)
    assert s["skipped"] is True and s["steps"] == 0 and s["sequences"]["stop"] == 0
    assert _state(tmp_path / "out").keys() == _state(data["gpt_neox"]).keys()
    assert (tmp_path / "out" / "tokenizer.json").exists()


def test_bad_inputs_are_refused_with_what_to_change(data, tmp_path):
    cfg = _cfg()
    with pytest.raises(InputError, match="held-out sample is empty"):
        _run(data, tmp_path, stage_settings(cfg, "stage1"), cfg, heldout_texts=[])
    lora = _cfg(stage2_use_lora=True, lora_target_modules=["q_proj", "dense"])
    with pytest.raises(InputError, match=r"\['q_proj'\] are not linear layers of GPTNeoXForCausalLM.*query_key_value"):
        _run(data, tmp_path, stage_settings(lora, "stage2"), lora)
    flash = _cfg(use_flash_attn=True)
    with pytest.raises(StageError, match="flash-attn package is not installed"):
        _run(data, tmp_path, stage_settings(flash, "stage1"), flash)
    long = _cfg(max_seq_length=128)
    with pytest.raises(StageError, match="exceeds the model's context"):
        _run(data, tmp_path, stage_settings(long, "stage1"), long)
    assert linear_module_names(AutoModelForCausalLM.from_pretrained(str(data["llama"]))) == [
        "down_proj",
        "gate_proj",
        "k_proj",
        "o_proj",
        "q_proj",
        "up_proj",
        "v_proj",
    ]


class _Poison(TrainerCallback):
    def on_step_begin(self, args, state, control, model=None, **kw):
        if state.global_step == 2:  # after checkpoint-2 was written: step 3's loss is NaN
            with torch.no_grad():
                model.get_input_embeddings().weight.fill_(float("nan"))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data, tmp_path):
    cfg = _cfg(stage2_steps=4, save_steps=2)
    with pytest.raises(StageError, match=r"NaN/Inf at step 3.*checkpoint-2"):
        _run(data, tmp_path, stage_settings(cfg, "stage2"), cfg, callbacks=[_Poison()])
    assert [s for s, _ in valid_checkpoints(tmp_path / "ck", need_rows=False)] == [2]
    ck = _state(tmp_path / "ck" / "checkpoint-2")
    assert all(torch.isfinite(t).all() for t in ck.values())
    assert not (tmp_path / "out").exists()


def _run_ddp(root: Path, steps: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(Path(__file__).with_name("ddp_worker.py")),
            str(root),
            str(steps),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_two_process_ddp_equals_one_process_with_the_global_batch(data, tmp_path):
    root = tmp_path
    os.symlink(data["gpt_neox"], root / "init")
    os.symlink(data["shards"], root / "shards")
    cfg = _cfg(batch_size=1, stage2_steps=3, save_steps=2)
    (root / "cfg.json").write_text(json.dumps(cfg.model_dump()))
    proc = _run_ddp(root, 3)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((root / "ddp_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["sequences"]["stop"] == 6  # 3 steps x batch 1 x 2 processes
    # one process with batch 2 reads the same sequences per step; the DDP-averaged gradients match
    single = _cfg(batch_size=2, stage2_steps=3, save_steps=2)
    train_stage(
        StageSettings("stage2", 3, single.lr_stage2, single.stage2_optimizer, "all", 0),
        single,
        data["gpt_neox"],
        data["shards"],
        tmp_path / "one",
        tmp_path / "one_train",
        tmp_path / "one_ck",
    )
    a, b = _state(tmp_path / "ddp_out"), _state(tmp_path / "one")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    assert valid_checkpoints(root / "ddp_ck", need_rows=False)[-1][0] == 3


def test_checkpoints_of_changed_inputs_are_discarded_but_other_settings_refused(tmp_path):
    from vocabadapt.io import write_json
    from vocabadapt.training.checkpoints import STATE_FILE
    from vocabadapt.training.checkpoints import check_resume as _check_resume

    record = {"stage.learning_rate": 0.01, "input_model": "abc", "train_data": {"tokens": 10}}
    write_json(tmp_path / STATE_FILE, {"settings": record})
    (tmp_path / "checkpoint-2").mkdir()
    assert _check_resume(tmp_path, dict(record), True) == {"settings": record}  # same: resume
    with pytest.raises(StageError, match=r"differing: stage\.learning_rate\)"):
        _check_resume(tmp_path, {**record, "stage.learning_rate": 0.02}, True)
    new_input = {**record, "input_model": "def"}  # transplant reran: the old checkpoints are obsolete
    assert _check_resume(tmp_path, new_input, True)["discarded_checkpoints"] is True
    assert not (tmp_path / "checkpoint-2").exists()


def test_spike_and_nonfinite_detection(tmp_path):
    from transformers import TrainerControl

    from vocabadapt.training.callbacks import StageMonitor

    mon = StageMonitor(tmp_path / "m.jsonl", 100, 3.0, 1000, None, None, {}, tmp_path / "s.json")
    control = TrainerControl()
    mon._pending = [(s, torch.tensor(v)) for s, v in enumerate([2.0, 2.1, 1.9, 2.0, 2.0, 7.0, 2.0], start=1)]
    mon._flush(control)
    recs = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [(r["type"], r["step"]) for r in recs] == [("spike", 6)]  # 7.0 > 3 x mean(2.0, 2.1, 1.9, 2.0, 2.0)
    assert recs[0]["running_mean"] == pytest.approx(2.0)
    assert not control.should_training_stop
    control.should_save = True
    mon._pending = [(8, torch.tensor(2.0)), (9, torch.tensor(float("inf")))]
    mon._flush(control)
    assert mon.nonfinite_step == 9 and control.should_training_stop and not control.should_save


def test_embedding_health_verdict():
    from vocabadapt.training.callbacks import EmbeddingHealth

    def recs(updates, built):
        return [
            {
                "embeddings_rel_update_per_step": u,
                "embeddings_built_mean_norm": built,
                "embeddings_copied_mean_norm": 1.0,
            }
            for u in updates
        ]

    settles = EmbeddingHealth.verdict(recs([0.1, 0.08, 0.05, 0.02, 0.01, 0.01, 0.01, 0.01], 1.1), ["embeddings"])
    assert settles["settled"] is True and settles["embeddings_built_to_copied_norm"] == pytest.approx(1.1)
    still_moving = EmbeddingHealth.verdict(recs([0.1] * 8, 1.1), ["embeddings"])
    assert still_moving["settled"] is False and still_moving["embeddings_update_settled"] is False
    overshoot = EmbeddingHealth.verdict(recs([0.1, 0.05, 0.01, 0.01], 2.0), ["embeddings"])
    assert overshoot["settled"] is False and overshoot["embeddings_norm_overshoot"] is True


def test_monitor_scores_with_the_evaluation_definition(data):
    """The drift of issue 13: the monitor once scored a concatenated EOS stream (1.599 vs 1.442 bpb on one model)."""
    model = AutoModelForCausalLM.from_pretrained(str(data["gpt_neox"])).eval()
    tok = data["tok"]
    texts = data["heldout"]
    monitor = heldout_scorer(tok, texts, SEQ, 2)
    model.train()
    got = monitor(model)
    assert model.training  # the monitor leaves the training mode as it found it
    want = bits_per_byte(model, tok, texts, context=SEQ, batch_size=2)["bits_per_byte"]
    assert got == pytest.approx(want, rel=1e-9)


def test_checkpoint_record_holds_exactly_the_stage_keys(data):
    """The resume record and the manifest hash the same keys: vocabadapt.training.settings.OUTPUT_KEYS."""
    from vocabadapt.training.settings import OUTPUT_KEYS, settings_record

    cfg = _cfg(num_processes=2)
    for stage in ("stage1", "stage2"):
        rec = settings_record(stage_settings(cfg, stage), cfg, 1, False, data["gpt_neox"], data["shards"])
        assert {k for k in rec if k.startswith("vocab_adaptation.")} == {
            k for k in OUTPUT_KEYS[stage] if k.startswith("vocab_adaptation.")
        }
        assert rec["vocab_adaptation.num_processes"] == 2
    # Stage 1 also hashes embedding_warmup; its values reach the record through Config.stage_training.
    assert [k for k in OUTPUT_KEYS["stage1"] if not k.startswith("vocab_adaptation.")] == ["embedding_warmup"]
    from vocabadapt.config import validate_dict

    warm = validate_dict(
        {
            "vocab_adaptation": {"enabled": False},
            "embedding_warmup": {"enabled": True, "steps": 3, "lr": 2e-4, "batch_size": 1},
        },
        "t",
    )
    s1 = warm.stage_training("stage1")
    rec = settings_record(stage_settings(s1, "stage1"), s1, 1, False, data["gpt_neox"], data["shards"])
    assert (
        rec["stage.steps"],
        rec["stage.learning_rate"],
        rec["vocab_adaptation.batch_size"],
        rec["vocab_adaptation.enabled"],
    ) == (3, 2e-4, 1, True)
