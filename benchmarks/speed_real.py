"""The real model's stage costs: SmolLM2-135M (the demo's GGUF) against bare references, side by side.

    python -m benchmarks.speed_real [--steps 5] [--warmup 1] [--batch 4] [--seq 128] [--docs 6] [--threads 1]

(benchmarks/speed.py runs this as its "real model" rows; alone it prints the JSON.)

Setup, reused when present: `vocabadapt run configs/demo.yaml --until transplant` into
benchmarks/cache/speed/real (the demo's corpus, trained 16k target tokenizer, mapping and model/init).
Then, in one process with the same torch threads, each pair measured back to back:
  transplant  vocabadapt.model.transplant.transplant_model (SmolLM2 -> the run's 16k target, the run's mapping)
              vs AutoModelForCausalLM.from_pretrained + save_pretrained of the same model; each in a fresh
              subprocess: wall time and peak RSS
  stage 1     vocabadapt.training.trainer.train_stage (embeddings + head) vs a bare HF Trainer with everything but the
              embedding matrix frozen, on model/init, the same packed target sequences, batch, lr, optimiser
  stage 2     the same with every parameter trained
              tokens/s from the end of step `warmup` to the last step, by one identical callback in both
  evaluate    vocabadapt.evaluation.bpb.bits_per_byte on held-out documents (256-token windows, no overlap,
              batch 8) vs a bare loop of model(ids, labels=ids).loss over the same windows one at a time;
              tokens/s, and both bits per byte (they must agree)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

from benchmarks import harness
from benchmarks.harness import ROOT

CACHE = ROOT / "benchmarks" / "cache" / "speed" / "real"
DEMO = ROOT / "configs" / "demo.yaml"

CHILD = r"""
import json, sys, time
from pathlib import Path
what, src, out, run = sys.argv[1:5]
import torch
torch.set_num_threads(int(sys.argv[5]))
t = time.perf_counter()
if what == "transplant":
    from vocabadapt.model.transplant import transplant_model
    from vocabadapt.run.layout import RunLayout
    layout = RunLayout(Path(run))
    transplant_model(src, layout.tokenizer("source"), layout.tokenizer("target"), layout.token_mapping(), out)
else:
    from transformers import AutoModelForCausalLM
    AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).save_pretrained(out, safe_serialization=True)
wall = time.perf_counter() - t
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
print(json.dumps({"wall_s": wall, "peak_mb": hwm}))
"""


def log(msg: str) -> None:
    """harness.log to stderr: stdout carries the JSON result."""
    harness.log(msg, file=sys.stderr)


def setup_run() -> Path:
    """The demo's run up to the transplant (cached): tokenizers, target shards, mapping, model/init."""
    run = CACHE / "run"
    manifest = run / "manifest.json"
    if manifest.exists() and json.loads(manifest.read_text())["stages"].get("transplant", {}).get("status") == "done":
        return run
    shutil.rmtree(run, ignore_errors=True)
    log(f"setup: vocabadapt run {DEMO.relative_to(ROOT)} --until transplant")
    CACHE.mkdir(parents=True, exist_ok=True)
    harness.run_cli(["run", str(DEMO), "--run-dir", str(run), "--until", "transplant"], CACHE / "setup.log")
    return run


def child(what: str, src: Path, out: Path, run: Path, threads: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    r = harness.json_child(
        [sys.executable, "-c", CHILD, what, str(src), str(out), str(run), str(threads)],
        f"{what} child",
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    shutil.rmtree(out, ignore_errors=True)
    return r


def training_pair(run: Path, cfg, stage: str, steps: int, warmup: int, work: Path) -> dict:
    """vocabadapt train_stage vs a bare HF Trainer: same model/init, sequences, batch, lr, optimiser."""
    import torch
    from transformers import (
        AutoModelForCausalLM,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )
    from transformers.trainer_callback import PrinterCallback

    from vocabadapt.run.layout import RunLayout
    from vocabadapt.text.shards import ShardReader
    from vocabadapt.training.packing import PackedSequences, SequenceOrder
    from vocabadapt.training.settings import stage_settings
    from vocabadapt.training.trainer import train_stage

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []

        def on_step_end(self, args, state, control, **kw):
            self.times.append(time.perf_counter())

    def tokens_per_s(timer: StepTimer) -> float:
        t = timer.times[warmup - 1 :]
        return (len(t) - 1) * cfg.batch_size * cfg.max_seq_length / (t[-1] - t[0])

    layout = RunLayout(run)
    model_dir = layout.model_dir("init")
    shards = layout.token_shards("target", "train")
    settings = stage_settings(cfg, stage)
    eos = layout.tokenizer("target").eos_token_id
    packed = PackedSequences(ShardReader(shards), cfg.max_seq_length, eos)
    order = SequenceOrder(len(packed), cfg.seed, cfg.shuffle)
    sequences = [torch.from_numpy(packed[order[g]]) for g in range(steps * cfg.batch_size)]

    # bare: Trainer over pre-built tensors, nothing of vocabadapt
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32, attn_implementation="sdpa")
    if settings.trainable == "embeddings":
        for p in model.parameters():
            p.requires_grad_(False)
        model.get_input_embeddings().weight.requires_grad_(True)
        model.get_output_embeddings().weight.requires_grad_(True)  # the same tensor when tied
    args = TrainingArguments(
        output_dir=str(work / f"bare-{stage}"),
        max_steps=steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=1,
        learning_rate=settings.learning_rate,
        optim=settings.optimizer,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        seed=cfg.seed,
        logging_steps=10 * steps,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    bare = StepTimer()
    trainer = Trainer(
        model=model, args=args, train_dataset=[{"input_ids": s, "labels": s} for s in sequences], callbacks=[bare]
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    del trainer, model

    ours = StepTimer()
    summary = train_stage(
        settings,
        cfg,
        model_dir,
        shards,
        work / f"out-{stage}",
        work / f"metrics-{stage}",
        work / f"ck-{stage}",
        callbacks=[ours],
    )
    return {
        "bare_tok_s": tokens_per_s(bare),
        "ours_tok_s": tokens_per_s(ours),
        "steps": steps,
        "warmup": warmup,
        "trainable": settings.trainable,
        "ours_steps": summary.get("steps"),
    }


def evaluate_pair(run: Path, docs: int, context: int, batch: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from vocabadapt.evaluation.bpb import bits_per_byte, encode, start_token
    from vocabadapt.evaluation.suite import read_texts
    from vocabadapt.run.layout import RunLayout

    layout = RunLayout(run)
    texts = read_texts(layout.corpus("heldout"), docs)
    tok = layout.tokenizer("target")
    model = AutoModelForCausalLM.from_pretrained(str(layout.model_dir("init")), dtype=torch.float32).eval()
    t = time.perf_counter()
    ours = bits_per_byte(model, tok, texts, context=context, stride=context, batch_size=batch)
    ours_s = time.perf_counter() - t
    # bare: the same windows (start token + document, cut every `context` tokens), one forward each
    bos = start_token(tok)
    nll, n_tok, n_bytes = 0.0, 0, 0
    t = time.perf_counter()
    with torch.no_grad():
        for text in texts:
            seq = [bos, *encode(tok, text)]
            n_bytes += len(text.encode("utf-8"))
            for begin in range(0, len(seq) - 1, context - 1):
                ids = torch.tensor([seq[begin : begin + context]])
                if ids.shape[1] < 2:
                    continue
                n = ids.shape[1] - 1
                nll += model(input_ids=ids, labels=ids).loss.item() * n
                n_tok += n
    bare_s = time.perf_counter() - t
    return {
        "documents": len(texts),
        "context": context,
        "batch": batch,
        "ours_tok_s": ours["tokens"] / ours_s,
        "bare_tok_s": n_tok / bare_s,
        "ours_bpb": ours["bits_per_byte"],
        "bare_bpb": nll / math.log(2) / n_bytes,
        "ours_tokens": ours["tokens"],
        "bare_tokens": n_tok,
    }


def measure(steps: int = 5, warmup: int = 1, batch: int = 4, seq: int = 128, docs: int = 6, threads: int = 1) -> dict:
    import tempfile

    import torch

    from vocabadapt.config import load_config
    from vocabadapt.model.hub import resolve_model_dir

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    config = load_config(DEMO)
    run = setup_run()
    source_dir = resolve_model_dir(config.models.source_model, config.tokenization.cache_dir)
    work = Path(tempfile.mkdtemp(prefix="speed-real."))
    res: dict = {
        "model": config.models.source_model,
        "dequantised": str(source_dir),
        "threads": threads,
        "run": str(run.relative_to(ROOT)),
    }
    try:
        log("transplant vs load + save")
        res["transplant"] = {w: child(w, source_dir, work / w, run, threads) for w in ("transplant", "load_save")}
        cfg = config.vocab_adaptation.model_copy(
            update={
                "stage1_steps": steps,
                "stage2_steps": steps,
                "batch_size": batch,
                "gradient_accumulation": 1,
                "max_seq_length": seq,
                "save_steps": 10 * steps,
                "eval_steps": 10 * steps,
                "logging_steps": 10 * steps,
            }
        )
        for stage in ("stage1", "stage2"):
            log(f"{stage}: bare Trainer, then vocabadapt")
            res[stage] = training_pair(run, cfg, stage, steps, warmup, work)
        log("evaluate: bits_per_byte vs a bare loop")
        res["evaluate"] = evaluate_pair(run, docs, 256, 8)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res["batch"], res["seq"], res["wall_s"] = batch, seq, time.perf_counter() - t0
    return res


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.speed_real", description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--docs", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    print(json.dumps(measure(a.steps, a.warmup, a.batch, a.seq, a.docs, a.threads), indent=1))


if __name__ == "__main__":
    main()
