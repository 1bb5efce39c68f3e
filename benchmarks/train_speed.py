"""Stage-2 training speed: vocabadapt.training.trainer.train_stage vs a bare HF Trainer on the same model and batch.

    python -m benchmarks.train_speed [--steps 30] [--repeats 3] [--out benchmarks/results/train_speed.md]
    python -m benchmarks.train_speed --distill [--steps 30] [--repeats 3]   (-> results/train_speed_distill.md)

`--distill`: a stage-1 step with the distillation objective against a next-token stage-1 step of the same
tokens, side by side on the tiny demo model (examples/pubmed_demo/model, 1.8M parameters) adapted to the
demo's target tokenizer (rows resized, the same body), on the demo corpus; runs alternate, medians of
tokens/s, and the ratio (target: a distillation step costs at most 1.4x a next-token step).

Both runs train the same small GPT-NeoX (random init) on the same packed sequences of PubMed abstracts
(../shared/data/biomed, a byte-level BPE trained on them) with the same TrainingArguments-level
settings (batch, accumulation, lr, schedule, fp32 on CPU, no checkpoints inside the timed window).
The bare run is Trainer + a list of pre-built tensors + default collator, none of vocabadapt's
callbacks. Tokens/s is timed per optimiser step by one identical callback in both, skipping the first
`--warmup` steps; runs alternate (bare, vocabadapt, bare, ...) so machine load hits both alike; the
median over repeats is reported. Also reported: the share of real (non-padding) tokens per batch with
packing, against padding every abstract to the sequence length.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPTNeoXConfig, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback

import vocabadapt.training.loop as vtrain  # the loop module holds the collate the Trainer calls
import vocabadapt.training.packing as vdata
from benchmarks.harness import RESULTS, ROOT, Block, git_commit, git_dirty, log, utc_now, write_markdown
from vocabadapt.config import VocabAdaptationConfig
from vocabadapt.testing import SHARED_DATA, train_bpe_tokenizer
from vocabadapt.text.shards import ShardReader, ShardWriter
from vocabadapt.training.callbacks import StageMonitor
from vocabadapt.training.distill import TeacherSource
from vocabadapt.training.packing import PackedSequences, SequenceOrder
from vocabadapt.training.settings import StageSettings
from vocabadapt.training.trainer import train_stage


class OwnTime:
    """Wall time spent inside vocabadapt's own per-step code (data, collate, loss hook, callbacks)."""

    def __init__(self):
        self.seconds = 0.0
        self._patched: list[tuple[object, str, object]] = []

    def wrap(self, owner: object, name: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t

        self._patched.append((owner, name, original))
        setattr(owner, name, timed)

    def restore(self) -> None:
        for owner, name, original in reversed(self._patched):
            setattr(owner, name, original)
        self._patched.clear()


class StepTimer(TrainerCallback):
    def __init__(self):
        self.times: list[float] = []
        self.cpu: list[float] = []  # this process's CPU seconds (one torch thread: less sensitive to machine load)

    def on_step_end(self, args, state, control, **kw):
        self.times.append(time.perf_counter())
        self.cpu.append(time.process_time())


def tokens_per_s(timer: StepTimer, tokens_per_step: int, warmup: int) -> float:
    t = timer.times[warmup - 1 :]  # time from the end of step `warmup` to the last step
    return (len(t) - 1) * tokens_per_step / (t[-1] - t[0])


def build(work: Path, hidden: int, layers: int, seq: int) -> tuple[Path, Path, dict]:
    docs = []
    for f in sorted((SHARED_DATA / "biomed").glob("*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            docs.append(f"{r.get('title', '')}\n{r.get('abstract', '')}".strip())
    tok = train_bpe_tokenizer(docs, vocab_size=4096)
    w = ShardWriter(work / "shards", shard_tokens=1_000_000)
    for d in docs:
        w.add(tok(d)["input_ids"], len(d.encode()))
    meta = w.close()
    cfg = GPTNeoXConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        max_position_embeddings=max(seq, 128),
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(str(work / "model"), safe_serialization=True)
    tok.save_pretrained(str(work / "model"))
    meta["documents_text"] = len(docs)
    return work / "model", work / "shards", meta


def bare_run(
    model_dir: Path, sequences: list[torch.Tensor], cfg: VocabAdaptationConfig, steps: int, out: Path
) -> StepTimer:
    """HF Trainer with nothing of vocabadapt: the same model, batch and optimiser settings."""
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32, attn_implementation="sdpa")
    data = [{"input_ids": s, "labels": s} for s in sequences]
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation,
        learning_rate=cfg.lr_stage2,
        optim=cfg.stage2_optimizer,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    timer = StepTimer()
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[timer])
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return timer


def cpu_per_step(timer: StepTimer, warmup: int) -> float:
    c = timer.cpu[warmup - 1 :]
    return (c[-1] - c[0]) / (len(c) - 1)


def build_demo_student(work: Path, seq: int) -> tuple[Path, Path, Any]:
    """The demo model with the demo's target tokenizer (embeddings resized: same body) and target shards."""
    import gzip

    demo = ROOT / "examples" / "pubmed_demo"
    src_tok = AutoTokenizer.from_pretrained(str(demo / "model"))
    tgt_tok = AutoTokenizer.from_pretrained(str(demo / "tokenizers" / "target"))
    model = AutoModelForCausalLM.from_pretrained(str(demo / "model"), dtype=torch.float32)
    model.resize_token_embeddings(len(tgt_tok), mean_resizing=False)
    model.save_pretrained(str(work / "student"), safe_serialization=True)
    tgt_tok.save_pretrained(str(work / "student"))
    w = ShardWriter(work / "dshards", shard_tokens=1_000_000)
    with gzip.open(demo / "corpus" / "train.jsonl.gz", "rt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= 600:
                break
            text = json.loads(line)["text"]
            w.add(tgt_tok(text)["input_ids"], len(text.encode()))
    w.close()
    return work / "student", work / "dshards", TeacherSource(model_dir=demo / "model", tokenizer=src_tok)


def distill_main(a: argparse.Namespace) -> None:
    """Stage 1, next-token vs distillation (hidden + chunk, the defaults), same tokens, alternating runs."""
    work = Path(tempfile.mkdtemp(prefix="train_speed-distill-"))
    try:
        rows, cpu = distill_runs(a, work)
        out = Path(a.out if a.out != ap_default_out() else RESULTS / "train_speed_distill.md")
        write_markdown(out, distill_blocks(a, rows, cpu))
        log(f"wrote {out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


# row name -> (objective, vocab_adaptation.distill); "hidden only" skips the teacher's head and the chunk loss
DISTILL_VARIANTS: dict[str, tuple[str, dict[str, float]]] = {
    "ce": ("ce", {}),
    "distill": ("distill", {}),
    "distill+ce": ("distill+ce", {}),
    "distill, hidden only": ("distill", {"chunk_weight": 0.0}),
}


def distill_runs(a: argparse.Namespace, work: Path) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """({variant: tokens/s per repeat}, {variant: CPU s per step per repeat}), the variants alternating."""
    student, shards, teacher = build_demo_student(work, a.seq)
    rows: dict[str, list[float]] = {k: [] for k in DISTILL_VARIANTS}
    cpu: dict[str, list[float]] = {k: [] for k in rows}
    for r in range(a.repeats):
        for row, (objective, distill) in DISTILL_VARIANTS.items():
            cfg = VocabAdaptationConfig(
                stage1_steps=a.steps,
                batch_size=a.batch,
                gradient_accumulation=1,
                max_seq_length=a.seq,
                lr_stage1=1e-4,
                save_steps=10 * a.steps,
                eval_steps=10 * a.steps,
                logging_steps=10,
                bf16=False,
                objective_stage1=objective,
                distill=distill,
            )
            timer = StepTimer()
            train_stage(
                StageSettings("stage1", a.steps, 1e-4, cfg.stage1_optimizer, "embeddings", 0, objective=objective),
                cfg,
                student,
                shards,
                work / f"out{r}{row}",
                work / f"train{r}{row}",
                work / f"ck{r}{row}",
                callbacks=[timer],
                teacher=teacher if objective != "ce" else None,
            )
            rows[row].append(tokens_per_s(timer, a.batch * a.seq, a.warmup))
            cpu[row].append(cpu_per_step(timer, a.warmup))
        log(f"repeat {r}: " + ", ".join(f"{k} {v[-1]:.0f} tok/s" for k, v in rows.items()))
    return rows, cpu


def distill_blocks(a: argparse.Namespace, rows: dict[str, list[float]], cpu: dict[str, list[float]]) -> list[Block]:
    med = {k: statistics.median(v) for k, v in rows.items()}
    mcpu = {k: statistics.median(v) for k, v in cpu.items()}
    load = os.getloadavg()
    items = [
        f"command: `python -m benchmarks.train_speed --distill --steps {a.steps} --repeats {a.repeats} "
        f"--batch {a.batch} --seq {a.seq}`",
        f"commit: {git_commit()}{' (with uncommitted changes)' if git_dirty(['vocabadapt/training/']) else ''}",
        f"date: {utc_now()}",
        f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, CPU fp32, "
        f"torch threads {torch.get_num_threads()}; load average at the end {load[0]:.1f} (shared machine)",
        "model: examples/pubmed_demo/model (GPT-NeoX, 4 layers, hidden 128) with the demo's target tokenizer "
        "(rows resized, same body); the teacher is the demo model itself, sharing the frozen body",
        f"batch: {a.batch} x {a.seq} target tokens, {a.steps} steps, first {a.warmup} untimed; distill = "
        "hidden (last layer) + chunk (abs) losses; the collator re-encodes each row with the source tokenizer",
    ]
    headers = ["objective", "tokens/s per repeat", "median", "wall cost vs ce", "CPU s/step per repeat", "median"]
    headers.append("CPU cost vs ce")
    table = [
        [k, ", ".join(f"{x:.0f}" for x in v), f"{med[k]:.0f}", f"{med['ce'] / med[k]:.2f}x"]
        + [", ".join(f"{x:.3f}" for x in cpu[k]), f"{mcpu[k]:.3f}", f"{mcpu[k] / mcpu['ce']:.2f}x"]
        for k, v in rows.items()
    ]
    return [
        ("h", 1, "Stage-1 step cost: distillation vs next-token, same tokens"),
        ("p", "\n".join(f"- {x}" for x in items)),
        ("table", headers, table),
        (
            "p",
            f"**A distillation step costs {mcpu['distill'] / mcpu['ce']:.2f}x a next-token step in CPU time** "
            f"({med['ce'] / med['distill']:.2f}x by wall time, which the shared machine's load makes noisy; "
            "target: at most 1.4x). CPU time is this process's, one torch thread.",
        ),
    ]


def ap_default_out() -> str:
    return str(RESULTS / "train_speed.md")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.train_speed", description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--out", default=ap_default_out())
    ap.add_argument("--distill", action="store_true", help="stage 1: distillation vs next-token step cost")
    return ap


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if a.distill:
        return distill_main(a)
    if not (SHARED_DATA / "biomed").is_dir():
        sys.exit(f"{SHARED_DATA / 'biomed'} not found: this benchmark needs the shared abstracts")
    work = Path(tempfile.mkdtemp(prefix="train_speed-"))
    try:
        model_dir, shards, meta = build(work, a.hidden, a.layers, a.seq)
        cfg = VocabAdaptationConfig(
            stage2_steps=a.steps,
            batch_size=a.batch,
            gradient_accumulation=1,
            max_seq_length=a.seq,
            save_steps=10 * a.steps,
            eval_steps=10 * a.steps,
            logging_steps=10,
            bf16=False,
        )
        eos = AutoTokenizer.from_pretrained(str(model_dir)).eos_token_id
        packed = PackedSequences(ShardReader(shards), a.seq, eos)
        order = SequenceOrder(len(packed), cfg.seed, cfg.shuffle)
        sequences = [torch.from_numpy(packed[order[g]]) for g in range(a.steps * a.batch)]
        commit = git_commit()
        dirty = git_dirty(["vocabadapt/training/", "benchmarks/train_speed.py"])
        runs = alternating_runs(a, work, model_dir, shards, sequences, cfg)
        params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(str(model_dir)).parameters())
        head = {"commit": commit, "dirty": dirty, "params": params, "meta": meta, "stats": packed.stats()}
        write_markdown(Path(a.out), stage2_blocks(a, head, *runs))
        log(f"wrote {a.out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def alternating_runs(
    a: argparse.Namespace, work: Path, model_dir: Path, shards: Path, sequences: list, cfg: VocabAdaptationConfig
) -> tuple[list[float], list[float], list[float]]:
    """(bare tokens/s, vocabadapt tokens/s, vocabadapt's own share of the loop), one entry per repeat."""
    tokens_per_step = a.batch * a.seq
    bare, ours, own_share = [], [], []
    for r in range(a.repeats):
        t = bare_run(model_dir, sequences, cfg, a.steps, work / f"bare{r}")
        bare.append(tokens_per_s(t, tokens_per_step, a.warmup))
        timer = StepTimer()
        own = OwnTime()
        for owner, name in (
            (vdata.PackedDataset, "__getitem__"),
            (vtrain, "collate"),
            (StageMonitor, "hook"),
            (StageMonitor, "on_step_end"),
            (StageMonitor, "on_log"),
        ):
            own.wrap(owner, name)
        t_start = time.perf_counter()
        train_stage(
            StageSettings("stage2", a.steps, cfg.lr_stage2, cfg.stage2_optimizer, "all", 0),
            cfg,
            model_dir,
            shards,
            work / f"out{r}",
            work / f"train{r}",
            work / f"ck{r}",
            callbacks=[timer],
        )
        own.restore()
        ours.append(tokens_per_s(timer, tokens_per_step, a.warmup))
        # share of the whole training loop (first step to last) spent in vocabadapt's per-step code
        own_share.append(own.seconds / (timer.times[-1] - t_start))
        log(f"repeat {r}: bare {bare[-1]:.0f} tok/s, vocabadapt {ours[-1]:.0f} tok/s")
    return bare, ours, own_share


def stage2_blocks(
    a: argparse.Namespace, head: dict[str, Any], bare: list[float], ours: list[float], own_share: list[float]
) -> list[Block]:
    mb, mo = statistics.median(bare), statistics.median(ours)
    load = os.getloadavg()
    meta, stats = head["meta"], head["stats"]
    items = [
        f"command: `python -m benchmarks.train_speed --steps {a.steps} --repeats {a.repeats} --batch {a.batch} "
        f"--seq {a.seq} --hidden {a.hidden} --layers {a.layers}`",
        f"commit: {head['commit']}{' (with uncommitted changes)' if head['dirty'] else ''}",
        f"date: {utc_now()}",
        f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"{'CUDA' if torch.cuda.is_available() else 'CPU only, fp32'}; load average at the end {load[0]:.1f} "
        f"(the machine is shared: absolute numbers are noisy, runs alternate so load hits both alike)",
        f"model: GPT-NeoX, {a.layers} layers, hidden {a.hidden}, vocab {meta.get('vocab_size', 'bpe-4096')}, "
        f"{head['params'] / 1e6:.2f} M parameters, random init; data: {meta['documents']} PubMed abstracts, "
        f"{meta['tokens']} tokens",
        f"batch: {a.batch} x {a.seq} tokens, accumulation 1, {a.steps} steps, first {a.warmup} untimed",
    ]
    table = [
        ["bare HF Trainer", ", ".join(f"{x:.0f}" for x in bare), f"{mb:.0f}"],
        ["vocabadapt train_stage (stage 2, full)", ", ".join(f"{x:.0f}" for x in ours), f"{mo:.0f}"],
    ]
    return [
        ("h", 1, "Stage-2 training speed: vocabadapt vs bare HF Trainer"),
        ("p", "\n".join(f"- {x}" for x in items)),
        ("table", ["run", "tokens/s per repeat", "median"], table),
        ("p", f"**Overhead: {(1 - mo / mb) * 100:+.1f} %** (target: at most 5 %; median of alternating runs)."),
        (
            "p",
            "Time inside vocabadapt's own per-step code (packed-sequence reads, collate, loss hook, StageMonitor "
            f"callbacks), measured directly: {', '.join(f'{x * 100:.2f} %' for x in own_share)} of the training "
            "loop per repeat. This is the overhead that does not depend on machine load; the rest of the tokens/s "
            "difference is run-to-run noise of the shared machine.",
        ),
        (
            "p",
            f"Real tokens per batch with packing: {stats['real_token_share'] * 100:.1f} % (no padding; "
            f"{stats['stream_share_used'] * 100:.2f} % of the corpus stream fits in whole sequences). Padding each "
            f"abstract to {a.seq} tokens instead would leave "
            f"{stats['real_token_share_if_padded_per_document'] * 100:.1f} % real tokens.",
        ),
    ]


if __name__ == "__main__":
    main()
