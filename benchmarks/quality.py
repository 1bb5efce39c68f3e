"""Quality benchmark: does the adapted model beat the source model and every other initialisation?

    python -m benchmarks.quality [--quick] [--seeds 3] [--source-model DIR] [--work DIR] [--no-pair]

Setting: the bundled smoke demo (configs/demo-tiny.yaml): the GPT-NeoX source model of examples/pubmed_demo
(built by `python examples/pubmed_demo/build.py` when examples/pubmed_demo/model is missing; seeded,
cached afterwards), its general-English tokenizer, the biomedical target tokenizer, the biomedical
training corpus, the held-out biomedical documents (never trained on) and PubMedQA.

Rows, each a full `vocabadapt run` with the same corpus, token budget and seed:
  1. source model, own tokenizer, no training (the `source` entry of a run's evaluation);
  2. source model, own tokenizer, continued training: target tokenizer = the source tokenizer, so the
     alignment is the identity and stages 1 + 2 train it on the same corpus for the same budget;
  3. transplant + two stages with `alignment.init` = random, mean, fvt, tokalign, soft, chain (null: the
     mapping's per-token chain, the default before issue 18) and the default (fvt_prior); and FOCUS through the `deepfocus` package, which must live in a
     throwaway venv ($FOCUS_VENV, default /tmp/focusvenv; never in .venv):
         python -m venv --system-site-packages /tmp/focusvenv
         echo $PWD/.venv/lib/python3.11/site-packages > /tmp/focusvenv/lib/python3.11/site-packages/main.pth
         /tmp/focusvenv/bin/pip install deepfocus entmax fastdist numba print-on-steroids datasets
     (without it the row is skipped and the results say so).
corpus..align run once into a base run directory per tokenizer pair; each row is a copy of it
(`cp -r`, manifest kept) run with `--set alignment.init=X`, so the pipeline skips the shared stages.
The default row and the best competitor (lowest held-out bits per byte after stage 2, seed 0) are
rerun with `vocab_adaptation.seed` = 1 .. seeds-1 to show the spread.

Also, with no model, the real pair GPT-NeoX -> BioGPT (benchmarks/configs/neox_biogpt.yaml; needs
../shared/data): identical pairs, coverage, rows per method, span precision of hard TokAlign vs the
identical map, align wall time.

Writes benchmarks/results/quality.md (quality-quick.md with --quick), quality.json and quality_bpb.png.
Every number in them is read from the run directories this script made.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.harness import (
    RESULTS,
    ROOT,
    Block,
    git_head,
    log,
    machine,
    markdown_text,
    read_json,
    run_cli,
    write_json,
    write_markdown,
)
from vocabadapt.init import DEFAULT as DEFAULT_INIT
from vocabadapt.testing import SHARED_DATA

DEMO = ROOT / "examples" / "pubmed_demo"
CONFIG = ROOT / "configs" / "demo-tiny.yaml"  # --setting demo-tiny: the 1.8M-parameter demo model
REAL_CONFIG = ROOT / "benchmarks" / "configs" / "smollm2_biomed.yaml"  # --setting smollm2 (issue 18)
# --setting smollm2 --target: (a) the config's own 16k BPE trained on the corpus, (b) BioGPT, (c) GPT-NeoX
TARGETS = {"a": None, "b": "tokenizers/biogpt", "c": "tokenizers/gpt-neox-20b"}
PAIR_CONFIG = ROOT / "benchmarks" / "configs" / "neox_biogpt.yaml"
# "default" = the schema's alignment.init (vocabadapt.init.DEFAULT, fvt_prior); "chain" = alignment.init null
# (TokAlign match above the threshold, FVT below: the default before issue 18)
INITS = ["random", "mean", "fvt", "tokalign", "soft", "chain", "default"]
# Rows that are an initialiser with other settings: "tokalign-paper" is TokAlign as the paper runs it, every
# target token that is not identical copies its top-1 source row (no similarity threshold, no FVT fallback
# for seen tokens; the align stage reruns for it)
ROW_SETTINGS = {"tokalign-paper": {"alignment.init": "tokalign", "alignment.similarity_threshold": -1}}

# Budgets, chosen for 2 shared CPU cores. Full: 50 + 50 steps of 8 x 128 tokens (102,400 tokens trained per
# row), curves every 25 steps, and evaluation.max_samples=100 (100 held-out documents, the first 100 questions
# of the official 500-question PubMedQA test split): one evaluation of the 4 models of a row on all 500
# questions takes ~12 minutes on this machine, which would put the benchmark at hours; `--max-samples 0`
# evaluates everything (500 questions, all 230 held-out documents). Quick: a few minutes in all.
BUDGETS = {
    "full": {
        "vocab_adaptation.stage1_steps": 50,
        "vocab_adaptation.stage2_steps": 50,
        "vocab_adaptation.eval_steps": 25,
        "vocab_adaptation.eval_max_bytes": 20000,
        "evaluation.max_samples": 100,
        "evaluation.qa.bootstrap": 1000,
    },
    "quick": {
        "vocab_adaptation.stage1_steps": 20,
        "vocab_adaptation.stage2_steps": 20,
        "vocab_adaptation.eval_steps": 10,
        "vocab_adaptation.eval_max_bytes": 20000,
        "evaluation.max_samples": 40,
        "evaluation.qa.bootstrap": 200,
        "embedding.fasttext.epochs": 1,
        "corpus.byte_budget": 1500000,
    },
}
# SmolLM2-135M (--setting smollm2): 10 + 10 steps of 8 x 256 tokens (40,960 tokens per row) at learning
# rates 5e-4 (embeddings + head) and 5e-5 (whole model); the training monitor samples 5,000 held-out
# bytes before and after each stage only (the table and the curve use the evaluate stage's 40 documents).
# One training step of 2k tokens is ~10-20 s on 2 cores, one 40-document evaluation ~35 s: a row ~7 min.
REAL_STEP = {  # one step = 8 x 256 tokens (the schema's defaults are a 7B research step of 131k tokens)
    "vocab_adaptation.batch_size": 8,
    "vocab_adaptation.gradient_accumulation": 1,
    "vocab_adaptation.max_seq_length": 256,
    "vocab_adaptation.lr_stage1": 5e-4,
    "vocab_adaptation.lr_stage2": 5e-5,
}
REAL_BUDGETS = {
    "full": {
        **REAL_STEP,
        "vocab_adaptation.stage1_steps": 10,
        "vocab_adaptation.stage2_steps": 10,
        "vocab_adaptation.eval_steps": 1000,
        "vocab_adaptation.eval_max_bytes": 5000,
        "evaluation.max_samples": 40,
        "evaluation.qa.bootstrap": 1000,
    },
    "quick": {
        **REAL_STEP,
        "vocab_adaptation.stage1_steps": 2,
        "vocab_adaptation.stage2_steps": 2,
        "vocab_adaptation.eval_steps": 1000,
        "vocab_adaptation.eval_max_bytes": 2000,
        "evaluation.max_samples": 10,
        "evaluation.qa.bootstrap": 200,
    },
}
COMMON = {"vocab_adaptation.save_steps": 1000}
UNTRAINED = {"vocab_adaptation.enabled": "false"}  # --train-rows: rows scored at init only


def sets(d: dict) -> list[str]:
    out = []
    for k, v in d.items():
        out += ["--set", f"{k}={v}"]
    return out


# --------------------------------------------------------------------------------------------------
# held-out leakage check


def _texts(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def check_heldout(run_dir: Path) -> dict:
    """Prove held-out text is in no training input: no shared document, and no 80-character window of any
    held-out document (every 40th offset) occurs in the training text (which embedding and term mining
    also read: both stream corpus/train only)."""
    held = _texts(run_dir / "corpus" / "heldout.jsonl")
    train = _texts(run_dir / "corpus" / "train.jsonl")
    shared_docs = set(held) & set(train)
    if shared_docs:
        raise SystemExit(f"{len(shared_docs)} held-out documents are also in corpus/train.jsonl of {run_dir}")
    blob = "\n".join(train)
    windows = hits = 0
    for t in held:
        for i in range(0, max(1, len(t) - 80), 40):
            w = t[i : i + 80]
            if len(w) < 80:
                continue
            windows += 1
            hits += w in blob
    # Biomedical abstracts share boilerplate ("were randomly assigned to ..."); 80 characters verbatim
    # is rarer than that, so allow a tiny share before calling it a leak.
    if hits > 0.01 * max(1, windows):
        raise SystemExit(
            f"{hits} of {windows} held-out 80-char windows occur verbatim in the training text of {run_dir}"
        )
    terms = run_dir / "terms" / "terms.txt"
    return {
        "heldout_documents": len(held),
        "train_documents": len(train),
        "shared_documents": 0,
        "windows_checked": windows,
        "windows_in_train": hits,
        "term_mining_reads": "corpus/train.jsonl only" if terms.exists() else "term mining produced no file",
    }


# --------------------------------------------------------------------------------------------------
# rows


def eval_entry(run_dir: Path, model: str) -> dict:
    s = read_json(run_dir / "eval" / "summary.json")
    m = s["models"].get(model, {})
    bpb = (m.get("bpb") or {}).get("heldout") or {}
    qa = m.get("pubmedqa") or {}
    return {
        "bpb": bpb.get("bits_per_byte"),
        "bytes_per_token": bpb.get("bytes_per_token"),
        "acc": qa.get("acc"),
        "acc_ci": qa.get("acc_ci95"),
        "f1": qa.get("macro_f1"),
        "f1_ci": qa.get("macro_f1_ci95"),
        "qa_n": qa.get("n"),
        "predicted": qa.get("prediction_counts"),
    }


def train_summaries(run_dir: Path) -> dict:
    """{stage: train/<stage>/summary.json} of the training stages that finished."""
    from vocabadapt.run.layout import RunLayout

    return RunLayout(run_dir).train_summaries()


def curve(run_dir: Path) -> list[tuple[int, float]]:
    """(tokens trained, held-out bpb) from train/<stage>/metrics.jsonl eval lines; stage 2 after stage 1."""
    s = train_summaries(run_dir)
    pts = []
    offset = 0
    for stage in ("stage1", "stage2"):
        per_step = tokens_per_step(run_dir)
        p = run_dir / "train" / stage / "metrics.jsonl"
        if stage == "stage1" and s.get("stage1", {}).get("heldout_bpb_before") is not None:
            pts.append((0, s["stage1"]["heldout_bpb_before"]))
        if p.exists():
            for line in p.read_text().splitlines():
                r = json.loads(line)
                if r.get("type") == "eval" and r.get("heldout_bpb") is not None:
                    pts.append((offset + r["step"] * per_step, r["heldout_bpb"]))
        offset += (s.get(stage) or {}).get("steps", 0) * per_step
        after = (s.get(stage) or {}).get("heldout_bpb_after")
        if after is not None and (not pts or pts[-1][0] != offset):
            pts.append((offset, after))
    return pts


def tokens_per_step(run_dir: Path) -> int:
    import yaml

    c = yaml.safe_load((run_dir / "config.yaml").read_text())["vocab_adaptation"]
    return c["batch_size"] * c["gradient_accumulation"] * c["max_seq_length"]


def row_result(run_dir: Path, wall: float) -> dict:
    s = read_json(run_dir / "eval" / "summary.json")
    t = train_summaries(run_dir)
    man = read_json(run_dir / "manifest.json")["stages"]
    stage_wall = {k: v.get("wall_s") for k, v in man.items()}
    tokens = sum(
        (t.get(st) or {}).get("tokens_trained") or (t.get(st) or {}).get("steps", 0) * tokens_per_step(run_dir)
        for st in ("stage1", "stage2")
    )
    s1 = t.get("stage1") or {}
    out = {
        "run_dir": str(run_dir.relative_to(ROOT)) if run_dir.is_relative_to(ROOT) else str(run_dir),
        "stage1_tokens": s1.get("tokens_trained") or s1.get("steps", 0) * tokens_per_step(run_dir),
        "init": eval_entry(run_dir, "init"),
        "stage1": eval_entry(run_dir, "stage1"),
        "stage2": eval_entry(run_dir, "stage2"),
        "source": eval_entry(run_dir, "source"),
        "tokens_trained": tokens,
        "wall_s": round(wall, 1),
        "stage_wall_s": stage_wall,
        "transplant": {
            k: (man.get("transplant") or {}).get("summary", {}).get(k) for k in ("rows_per_method", "rows_copied")
        },
        "curve": curve(run_dir),
        "eval_datasets": s.get("datasets"),
    }
    if not trained(run_dir):  # --train-rows: the evaluate stage scored init's copies as stage 1 and 2
        out["stage1"] = out["stage2"] = {k: None for k in out["init"]}
        out["tokens_trained"] = out["stage1_tokens"] = 0
    if CONFIG == REAL_CONFIG:  # the monitor sampled only before and after each stage: plot the table's numbers
        out["curve"] = eval_curve(out)
    return out


def trained(run_dir: Path) -> bool:
    """Whether the row's run trained (vocab_adaptation.enabled in its config.yaml)."""
    import yaml

    return bool(yaml.safe_load((run_dir / "config.yaml").read_text())["vocab_adaptation"]["enabled"])


def read_qa500(work: Path) -> dict:
    """{row: PubMedQA-500 result} from the WORK/qa500_<row>.json files that pubmedqa_500 cached."""
    out = {}
    for f in sorted(work.glob("qa500_*.json")):
        name = f.stem.removeprefix("qa500_")
        q = next(iter(read_json(f)["models"].values()))["pubmedqa"]
        keys = ("acc", "acc_ci95", "acc_bytes", "macro_f1", "macro_f1_ci95", "n", "prediction_counts")
        out[name] = {k: q.get(k) for k in keys}
    return out


def run_row(base: Path, dest: Path, init: str, seed: int, overrides: dict, logf: Path) -> dict:
    if (dest / "wall_s").exists() and (dest / "eval" / "summary.json").exists():
        log(f"{dest.name}: cached")
        return row_result(dest, float((dest / "wall_s").read_text()))
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(base, dest, symlinks=True)
    value = {"chain": "null", "default": DEFAULT_INIT}.get(init, init)
    extra = {**overrides, "alignment.init": value, "vocab_adaptation.seed": seed, **ROW_SETTINGS.get(init, {})}
    log(f"{dest.name}: running")
    wall = run_cli(["run", str(CONFIG), "--run-dir", str(dest), "--until", "evaluate", *sets(extra)], logf)
    (dest / "wall_s").write_text(f"{wall:.1f}")
    return row_result(dest, wall)


def eval_curve(r: dict) -> list[tuple[int, float]]:
    """(tokens trained, held-out bpb) from the evaluate stage's init / stage 1 / stage 2 models (the same
    documents as the table), for settings whose monitor samples only before and after each stage."""
    pts = [(0, r["init"]["bpb"]), (r["stage1_tokens"], r["stage1"]["bpb"]), (r["tokens_trained"], r["stage2"]["bpb"])]
    return [(t, b) for t, b in pts if b is not None]


def pubmedqa_500(name: str, model_dir: Path, work: Path, logf: Path) -> dict:
    """PubMedQA on all 500 questions of the official test split (ori_pqal.json with test_ground_truth.json
    beside it), lm-evaluation-harness scoring, through `vocabadapt eval`; cached in WORK/qa500_<name>.json."""
    out = work / f"qa500_{name}.json"
    if not out.exists():
        log(f"PubMedQA 500: {name} ({model_dir})")
        qa_file = SHARED_DATA / "pubmedqa" / "ori_pqal.json"
        t = time.perf_counter()
        run_cli(["eval", str(model_dir), "--pubmedqa", str(qa_file), "--out", str(out)], logf)
        data = read_json(out)
        data["wall_s"] = round(time.perf_counter() - t, 1)
        out.write_text(json.dumps(data, indent=1))
    q = next(iter(read_json(out)["models"].values()))["pubmedqa"]
    keys = ("acc", "acc_ci95", "acc_bytes", "macro_f1", "macro_f1_ci95", "n", "prediction_counts")
    return {"model": str(model_dir), **{k: q.get(k) for k in keys}}


# --------------------------------------------------------------------------------------------------
# FOCUS (Dobler & de Melo, EMNLP 2023) through the `deepfocus` package, in a throwaway venv

FOCUS_VENV = Path(os.environ.get("FOCUS_VENV", "/tmp/focusvenv"))
# Child run by the venv's python: FOCUS rows for the input embedding and (untied models) the output head,
# computed in one call on the two matrices side by side (FOCUS combines whole source rows with one weight
# set per target token, so concatenating along the hidden dimension gives both at once).
FOCUS_CHILD = r"""
import json, sys, time
from pathlib import Path
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from deepfocus import FOCUS
run, model_dir, epochs = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
src = AutoTokenizer.from_pretrained(run / "tokenizers/source")   # as saved by the run (BioGPT has no
tgt = AutoTokenizer.from_pretrained(run / "tokenizers/target")   # tokenizer.json: a slow Moses + BPE one)
txt = run / "focus_train.txt"   # corpus/train only: held-out text stays out of FOCUS's fastText too
with open(txt, "w") as f:
    for line in open(run / "corpus/train.jsonl"):
        f.write(json.loads(line)["text"].replace("\n", " ") + "\n")
m = AutoModelForCausalLM.from_pretrained(model_dir)
tied = m.get_output_embeddings().weight.data_ptr() == m.get_input_embeddings().weight.data_ptr()
src_model = AutoModelForCausalLM.from_pretrained(sys.argv[4])
w_in, w_out = src_model.get_input_embeddings().weight.detach(), src_model.get_output_embeddings().weight.detach()
d = w_in.shape[1]
both = w_in if tied else torch.cat([w_in, w_out[: w_in.shape[0]]], dim=1)   # (V_source, d or 2d)
t = time.time()
emb = FOCUS(source_embeddings=both, source_tokenizer=src, target_tokenizer=tgt, target_training_data_path=str(txt),
            fasttext_model_epochs=epochs, fasttext_model_min_count=1, processes=1, seed=0, verbosity="silent")
n = m.get_input_embeddings().weight.shape[0]
with torch.no_grad():
    m.get_input_embeddings().weight[: emb.shape[0]] = emb[:n, :d]
    if not tied:
        m.get_output_embeddings().weight[: emb.shape[0]] = emb[:n, d:]
m.save_pretrained(model_dir)
txt.unlink()
print(json.dumps({"focus_s": time.time() - t, "rows": int(emb.shape[0]), "tied": bool(tied)}))
"""


def run_focus_row(base: Path, dest: Path, overrides: dict, logf: Path, quick: bool) -> dict:
    """Transplant with init=mean, replace model/init's embedding rows by FOCUS's, re-record the transplant
    stage's output fingerprint (so the pipeline keeps it), then train and evaluate as every other row."""
    if (dest / "wall_s").exists() and (dest / "eval" / "summary.json").exists():
        return row_result(dest, float((dest / "wall_s").read_text()))
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(base, dest, symlinks=True)
    extra = {**overrides, "alignment.init": "mean", "vocab_adaptation.seed": 0}
    t = time.perf_counter()
    run_cli(["run", str(CONFIG), "--run-dir", str(dest), "--until", "transplant", *sets(extra)], logf)
    r = subprocess.run(
        [
            str(FOCUS_VENV / "bin" / "python"),
            "-c",
            FOCUS_CHILD,
            str(dest),
            str(dest / "model" / "init"),
            "1" if quick else "3",
            overrides["models.source_model"],
        ],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-1500:])
    info = json.loads(r.stdout.strip().splitlines()[-1])
    import yaml

    from vocabadapt.run.layout import RunLayout
    from vocabadapt.run.manifest import output_prints
    from vocabadapt.run.runner import get_stage

    how = yaml.safe_load((dest / "config.yaml").read_text())["pipeline"]["checkpoint_fingerprints"]
    man = read_json(dest / "manifest.json")
    man["stages"]["transplant"]["outputs"] = output_prints(RunLayout(dest), get_stage("transplant"), how)
    man["stages"]["transplant"]["summary"]["focus"] = info
    (dest / "manifest.json").write_text(json.dumps(man, indent=1))
    run_cli(["run", str(CONFIG), "--run-dir", str(dest), "--until", "evaluate", *sets(extra)], logf)
    wall = time.perf_counter() - t
    (dest / "wall_s").write_text(f"{wall:.1f}")
    out = row_result(dest, wall)
    out["focus"] = info
    return out


# --------------------------------------------------------------------------------------------------
# the real pair GPT-NeoX -> BioGPT (no model)


def pair_benchmark(work: Path, quick: bool, logf: Path) -> dict | None:
    if not (Path("/work/shared/data/tokenizers/biogpt").exists() or (ROOT.parent / "shared" / "data").exists()):
        return {"skipped": "../shared/data is absent"}
    # vocabadapt.hf.load_tokenizer cannot load the bare BioGPT vocab.json + merges.txt folder; save a copy
    # with save_pretrained. /tmp/biogpt_tok is the path the alignment benchmark's runs used, so a cached
    # run of it (runs/neox_biogpt_a) keeps its config hash and is reused instead of re-embedding (~10 min).
    tok_dir = Path(os.environ.get("BIOGPT_TOKENIZER", "/tmp/biogpt_tok"))
    if not (tok_dir / "vocab.json").exists():
        from transformers import BioGptTokenizer

        src = Path("/work/shared/data/tokenizers/biogpt")
        BioGptTokenizer(vocab_file=str(src / "vocab.json"), merges_file=str(src / "merges.txt")).save_pretrained(
            str(tok_dir)
        )
    run_dir = work / "neox_biogpt"
    seeded_from = None
    if not (run_dir / "manifest.json").exists():
        for cand in (ROOT / "runs" / "neox_biogpt_a", ROOT / "runs" / "neox_biogpt_b"):
            if (cand / "manifest.json").exists() and (
                read_json(cand / "manifest.json").get("stages", {}).get("align", {}).get("status") == "done"
            ):
                shutil.copytree(cand, run_dir, symlinks=True)
                seeded_from = str(cand.relative_to(ROOT))
                break
    if quick and not (run_dir / "manifest.json").exists():
        return {"skipped": "--quick and no cached run (the full mode embeds for ~10 minutes)"}
    env = {"BIOGPT_TOKENIZER": str(tok_dir)}
    cmd = ["run", str(PAIR_CONFIG), "--run-dir", str(run_dir), "--until", "align"]
    run_cli(cmd, logf, env)  # stages up to date are skipped (config hash and fingerprints checked)
    if not quick:  # a fresh align on this commit, for its wall time
        run_cli(cmd + ["--from", "align", "--force"], logf, env)
    s = read_json(run_dir / "align" / "summary.json")
    man = read_json(run_dir / "manifest.json")["stages"]
    return {
        "run_dir": str(run_dir.relative_to(ROOT)),
        "seeded_from": seeded_from,
        "command": f"BIOGPT_TOKENIZER={tok_dir} vocabadapt {' '.join(cmd)}"
        + ("" if quick else " [--from align --force]"),
        "target_vocab": s["target_vocab"],
        "source_vocab": s["source_vocab"],
        "counts": s["counts"],
        "identical": s["identical_tokens"],
        "coverage": s["coverage"],
        "span_test": s.get("span_test"),
        "align_wall_s": man["align"]["wall_s"],
        "align_peak_mb": man["align"].get("peak_rss_mb"),
        "embed_wall_s": man["embed"]["wall_s"],
    }


# --------------------------------------------------------------------------------------------------
# output


def fmt(x, nd=4):
    return "-" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


def ci(c):
    return "" if not c else f" [{c[0]:.3f}, {c[1]:.3f}]"


def pred(e):
    p = e.get("predicted") or {}
    return "/".join(str(p.get(k, 0)) for k in ("yes", "no", "maybe")) if p else "-"


def plot(rows: dict, seeds: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for name, r in rows.items():
        pts = r["curve"]
        if pts:
            axes[0].plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=name)
    axes[0].set_title("held-out bits per byte vs tokens trained (seed 0)")
    for name, runs in seeds.items():
        for i, r in enumerate(runs):
            pts = r["curve"]
            axes[1].plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                color="C0" if name == "default" else "C3",
                alpha=0.8,
                label=name if i == 0 else None,
            )
    axes[1].set_title("seeds: default vs best competitor")
    for ax in axes:
        ax.set_xlabel("tokens trained (stage 1 then stage 2)")
        ax.set_ylabel("held-out bits per byte")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_md(res: dict, path: Path) -> None:
    """Write the results file of record `res` to `path`."""
    write_markdown(path, render(res))


def render(res: dict) -> list[Block]:
    """The results file of record `res` as Markdown blocks (the record alone decides every byte)."""
    blocks: list[Block] = [("h", 1, f"Quality benchmark{' (quick)' if res['quick'] else ''}")]
    if not res.get("complete"):
        blocks.append(
            (
                "p",
                "**Partial: the run was still going (or was stopped) when this was written; not yet run: "
                f"{res.get('pending')}.**",
            )
        )
    blocks.append(("p", _bullets(_header_items(res))))
    blocks += [
        ("h", 2, "Held-out check"),
        ("p", f"`check_heldout` on both base runs: {json.dumps(res['heldout_check'])}"),
    ]
    blocks += _row_blocks(res) + _seed_blocks(res) + _qa500_blocks(res.get("qa500"))
    blocks += [
        ("h", 2, "Verdict"),
        ("p", _bullets(res["verdict"])),
        (
            "p",
            "Curves: the training monitor's held-out bits per byte on the first vocab_adaptation.eval_max_bytes "
            "bytes of held-out text (the table's columns come from the evaluate stage on evaluation.max_samples "
            "documents).",
        ),
        ("img", f"{res['stem']}_bpb.png", "held-out bpb vs tokens"),
    ]
    return blocks + _pair_blocks(res.get("pair"))


def _bullets(items: list[str]) -> str:
    return "\n".join(f"- {x}" for x in items)


def _header_items(res: dict) -> list[str]:
    return [
        f"command: `{res['command']}`",
        f"commit: {res['commit']}",
        f"machine: {res['machine']}",
        f"date: {res['date']}",
        f"seeds: vocab_adaptation.seed {res['seeds']} (0 for the main table); alignment.seed 0",
        f"source model: `{res['source_model']}`",
        f"budget: {res['budget']}",
        f"evaluation: {res['eval_note']}",
        f"whole benchmark wall time: {res['total_wall_s']:.0f} s",
    ]


ROW_COLUMNS = [
    "row",
    "bpb init",
    "bpb stage 1",
    "bpb stage 2",
    "PubMedQA acc",
    "PubMedQA macro-F1",
    "predicted yes/no/maybe",
    "bytes/tok",
    "tokens trained",
    "wall s",
]


def _row_cells(name: str, r: dict) -> list[str]:
    s2 = r["stage2"]
    own = sum(v or 0 for k, v in r["stage_wall_s"].items() if k in ("transplant", "stage1", "stage2", "evaluate"))
    own += (r.get("focus") or {}).get("focus_s", 0)  # FOCUS's own fastText + weights, outside the pipeline
    label = (
        "2. source model, own tokenizer, continued training" if name == "continued" else f"3. transplant, init={name}"
    )
    return [
        label,
        fmt(r["init"]["bpb"]),
        fmt(r["stage1"]["bpb"]),
        fmt(s2["bpb"]),
        f"{fmt(s2['acc'], 3)}{ci(s2['acc_ci'])}",
        f"{fmt(s2['f1'], 3)}{ci(s2['f1_ci'])}",
        pred(s2),
        fmt(s2["bytes_per_token"] or r["init"]["bytes_per_token"], 3),
        str(r["tokens_trained"]),
        f"{own:.0f}",
    ]


def _row_blocks(res: dict) -> list[Block]:
    src = res["source_row"]
    source_cells = [
        "1. source model, own tokenizer, no training",
        fmt(src["bpb"]),
        "-",
        "-",
        f"{fmt(src['acc'], 3)}{ci(src['acc_ci'])}",
        f"{fmt(src['f1'], 3)}{ci(src['f1_ci'])}",
        pred(src),
        fmt(src["bytes_per_token"], 3),
        "0",
        "-",
    ]
    rows = [source_cells] + [_row_cells(name, r) for name, r in res["rows"].items()]
    methods = [
        f"{name}: {json.dumps(t['rows_per_method'])}, copied {t.get('rows_copied')}"
        for name, r in res["rows"].items()
        if (t := r.get("transplant") or {}).get("rows_per_method")
    ]
    blocks: list[Block] = [
        ("h", 2, "Rows (seed 0)"),
        (
            "p",
            "bpb = held-out bits per byte (lower is better), bytes/tok = held-out bytes per token of the row's "
            "tokenizer; PubMedQA accuracy and macro-F1 with 95% bootstrap intervals, after stage 2; wall = this "
            "row's own stages (transplant, stage 1, stage 2, evaluate), the shared corpus..align stages excluded.",
        ),
        ("table", ROW_COLUMNS, rows),
        (
            "p",
            "Target rows by how the transplant built them (`transplant` stage summary, rows_per_method / rows "
            "copied verbatim from one source row):",
        ),
    ]
    if methods:
        blocks.append(("p", _bullets(methods)))
    return blocks + [("p", f"FOCUS: {res['focus']}")]


def _seed_blocks(res: dict) -> list[Block]:
    if not res["seed_rows"]:
        return []
    rows = [
        [name, sd, fmt(r["init"]["bpb"]), fmt(r["stage1"]["bpb"]), fmt(r["stage2"]["bpb"])]
        + [fmt(r["stage2"]["acc"], 3), fmt(r["stage2"]["f1"], 3)]
        for name, runs in res["seed_rows"].items()
        for sd, r in zip(res["seeds"], runs)
    ]
    headers = ["row", "seed", "bpb init", "bpb stage 1", "bpb stage 2", "PubMedQA acc", "macro-F1"]
    blocks: list[Block] = [
        ("h", 2, "Seeds"),
        ("p", "vocab_adaptation.seed changes the training data order; the rows at init are the same for every seed."),
        ("table", headers, rows),
    ]
    for name, st in res["seed_stats"].items():
        blocks.append(
            (
                "p",
                f"{name}: stage-2 bpb mean {st['mean']:.4f}, min {st['min']:.4f}, max {st['max']:.4f} "
                f"over {st['n']} seeds",
            )
        )
    return blocks


def _qa500_blocks(qa500: dict | None) -> list[Block]:
    if not qa500:
        return []
    rows = [
        [name, f"{fmt(q['acc'], 3)}{ci(q['acc_ci95'])}", fmt(q["acc_bytes"], 3)]
        + [f"{fmt(q['macro_f1'], 3)}{ci(q['macro_f1_ci95'])}", pred({"predicted": q["prediction_counts"]}), q["n"]]
        for name, q in qa500.items()
    ]
    return [
        ("h", 2, "PubMedQA, all 500 questions of the official test split"),
        (
            "p",
            "Final model of each row (after stage 2; `source` = the source model, no training), "
            "lm-evaluation-harness pubmedqa scoring (`vocabadapt eval MODEL --pubmedqa ori_pqal.json`), "
            "95% bootstrap intervals. The test split's answers are yes 276 / no 169 / maybe 55 (always 'yes' = 0.552).",
        ),
        ("table", ["row", "acc", "acc_bytes", "macro-F1", "predicted yes/no/maybe", "n"], rows),
    ]


def _pair_blocks(p: dict | None) -> list[Block]:
    blocks: list[Block] = [("h", 2, "Real pair GPT-NeoX -> BioGPT (alignment only, no model)")]
    if not p or "skipped" in p:
        return blocks + [("p", f"skipped: {(p or {}).get('skipped')}")]
    st = p.get("span_test") or {}
    a, i = st.get("aligned", {}), st.get("identical", {})
    seeded = (
        f" (run directory seeded by copying {p['seeded_from']}; the pipeline "
        "re-checked each stage's config hash and fingerprints)"
        if p["seeded_from"]
        else ""
    )
    items = [
        f"command: `{p['command']}`{seeded}",
        f"vocabularies: target {p['target_vocab']}, source {p['source_vocab']}",
        f"identical-token pairs: {p['identical']}; coverage (identical + aligned, of the target vocabulary): "
        f"{p['coverage']}",
        f"rows per method: {json.dumps(p['counts'])}",
        f"span precision@1 / @5: hard TokAlign (aligned rows, n={a.get('n')}) {a.get('precision@1')} / "
        f"{a.get('precision@5')}; identical map (n={i.get('n')}) {i.get('precision@1')} / {i.get('precision@5')}",
        f"align wall time {p['align_wall_s']:.1f} s (peak RSS {fmt(p['align_peak_mb'], 0)} MB); "
        f"embed {p['embed_wall_s']:.0f} s",
    ]
    return blocks + [("p", _bullets(items))]


def rendered_files(results: Path) -> dict[str, str]:
    """{results file name: Markdown} for every quality*.json in `results` (what --render writes)."""
    return {
        p.with_suffix(".md").name: markdown_text(render(read_json(p))) for p in sorted(results.glob("quality*.json"))
    }


def verdict(res: dict) -> list[str]:
    rows, src = res["rows"], res["source_row"]
    out = []
    for model, what in (("init", "at init (every row)"), ("stage1", "after stage 1 (trained rows)")):
        ranked_rows = sorted(
            ((k, v[model]["bpb"]) for k, v in rows.items() if k != "continued" and v[model]["bpb"] is not None),
            key=lambda kv: kv[1],
        )
        if ranked_rows:
            out.append(f"ranking by bpb {what}: " + ", ".join(f"{k} {b:.4f}" for k, b in ranked_rows))
    adapted = {k: v for k, v in rows.items() if k != "continued" and v["stage2"]["bpb"] is not None}
    ranked = sorted(adapted.items(), key=lambda kv: kv[1]["stage2"]["bpb"])
    if ranked:
        best, second = ranked[0], ranked[1] if len(ranked) > 1 else None
        out.append(
            f"lowest held-out bpb after stage 2 among initialisers: {best[0]} ({best[1]['stage2']['bpb']:.4f})"
            + (
                f", ahead of {second[0]} by {second[1]['stage2']['bpb'] - best[1]['stage2']['bpb']:.4f} bpb"
                if second
                else ""
            )
        )
        out.append("ranking by stage-2 bpb: " + ", ".join(f"{k} {v['stage2']['bpb']:.4f}" for k, v in ranked))
        qa500 = {k: v for k, v in (res.get("qa500") or {}).items() if v.get("acc") is not None}
        if qa500:  # the real-model setting scores PubMedQA apart, on all 500 questions
            out.append(
                "ranking by PubMedQA accuracy (all 500 questions, final models): "
                + ", ".join(f"{k} {v['acc']:.3f}" for k, v in sorted(qa500.items(), key=lambda kv: -kv[1]["acc"]))
            )
        else:
            acc_rank = sorted(adapted.items(), key=lambda kv: -(kv[1]["stage2"]["acc"] or 0))
            out.append(
                "ranking by PubMedQA accuracy: " + ", ".join(f"{k} {fmt(v['stage2']['acc'], 3)}" for k, v in acc_rank)
            )
    groups: dict = {}
    for k, v in adapted.items():
        groups.setdefault((round(v["init"]["bpb"] or 0, 4), round(v["stage2"]["bpb"] or 0, 4)), []).append(k)
    for names in groups.values():
        if len(names) > 1:
            out.append(
                f"{', '.join(names)} gave identical results (to 4 decimals): with alignment.method=hard (configs/demo.yaml) every "
                "aligned entry has one source row, so soft has nothing to combine and the default chain is "
                "tokalign's top-1 copy with the FVT fallback"
            )
    d = rows.get("default")
    cont = rows.get("continued")
    if cont and cont["stage2"]["bpb"] is not None and ranked:
        best = ranked[0]
        out.append(
            f"continued training of the source model (row 2) {'beats' if cont['stage2']['bpb'] < best[1]['stage2']['bpb'] else 'loses to'} "
            f"the best initialiser ({best[0]}) by {abs(cont['stage2']['bpb'] - best[1]['stage2']['bpb']):.4f} bpb after stage 2"
        )
    if d:
        b = d["stage2"]["bpb"]
        qa = res.get("qa500") or {}

        def qa_of(row: str, fallback: dict | None) -> tuple:
            """(acc, macro-F1, acc interval): all 500 questions where scored apart, else the row's own."""
            if qa.get(row, {}).get("acc") is not None:
                return qa[row]["acc"], qa[row]["macro_f1"], qa[row]["acc_ci95"]
            own = fallback or {}
            return own.get("acc"), own.get("f1"), own.get("acc_ci")

        acc, f1, ci = qa_of("default", d["stage2"])
        for name, key, ref_bpb, ref in (
            ("row 1 (source, no training)", "source", src["bpb"], src),
            (
                "row 2 (source, continued training)",
                "continued",
                cont and cont["stage2"]["bpb"],
                cont and cont["stage2"],
            ),
        ):
            if ref_bpb is None:
                continue
            ref_acc, ref_f1, ref_ci = qa_of(key, ref)
            out.append(
                f"default adapted model vs {name}: bpb {b:.4f} vs {ref_bpb:.4f} "
                f"({'better' if b < ref_bpb else 'worse'} by {abs(b - ref_bpb):.4f}); PubMedQA accuracy "
                f"{fmt(acc, 3)} vs {fmt(ref_acc, 3)}, macro-F1 {fmt(f1, 3)} vs {fmt(ref_f1, 3)}"
                + (" (intervals overlap: no difference shown)" if _overlap(ci, ref_ci) else "")
            )
    return out


def _overlap(a, b):
    return bool(a and b and a[0] <= b[1] and b[0] <= a[1])


# --------------------------------------------------------------------------------------------------


def focus_status() -> str:
    py = Path("/tmp/focusvenv/bin/python")
    if not py.exists():
        return (
            "not run: the `deepfocus` package is not installed here (try `python -m venv --system-site-packages "
            "/tmp/focusvenv && /tmp/focusvenv/bin/pip install deepfocus`)"
        )
    r = subprocess.run([str(py), "-c", "import deepfocus; print(deepfocus.__file__)"], capture_output=True, text=True)
    if r.returncode != 0:
        return f"not run: `deepfocus` is installed in /tmp/focusvenv but does not import: {r.stderr.strip().splitlines()[-1:]}"
    return (
        "not run: `deepfocus` 1.0.1 installs and imports in a throwaway venv (/tmp/focusvenv), but its FOCUS() "
        "builds its own fastText model on the target-tokenized corpus and returns an embedding matrix; no "
        "`alignment.init` entry wires such a matrix into the transplant stage yet, so there is no FOCUS row"
    )


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small budgets, 40 QA questions / held-out documents")
    ap.add_argument(
        "--seeds", type=int, default=None, help="seeds for the default row and the best competitor (3; quick 1)"
    )
    ap.add_argument("--source-model", default=None, help="source model directory (default: examples/pubmed_demo/model)")
    ap.add_argument("--work", default=None, help="run directories (default benchmarks/cache/quality[-quick])")
    ap.add_argument("--no-pair", action="store_true", help="skip the GPT-NeoX -> BioGPT alignment part")
    ap.add_argument(
        "--pair-only",
        action="store_true",
        help="only the GPT-NeoX -> BioGPT part, saved to WORK/pair.json (a later run reuses it)",
    )
    ap.add_argument(
        "--max-samples",
        type=int,
        default=None,
        help="evaluation.max_samples (held-out documents and PubMedQA questions); 0 = all (500 questions)",
    )
    ap.add_argument("--steps", type=int, default=None, help="steps of each training stage (full 50, quick 20)")
    ap.add_argument("--tag", default=None, help="results go to quality-TAG.md/.json/_bpb.png instead of quality.*")
    ap.add_argument(
        "--render", action="store_true", help="rewrite every quality*.md of --results from its .json (no runs)"
    )
    ap.add_argument("--results", type=Path, default=RESULTS, help="the folder --render reads and writes")
    ap.add_argument(
        "--reread",
        action="store_true",
        help="refresh the record of --quick/--tag/--setting from its run directories (numbers, verdict, plot)",
    )
    ap.add_argument("--bases-only", action="store_true", help="only the shared corpus..align runs (no model needed)")
    ap.add_argument("--no-focus", action="store_true", help="skip the FOCUS row (needs deepfocus in $FOCUS_VENV)")
    ap.add_argument("--inits", default=",".join(INITS), help="comma list of rows to run")
    ap.add_argument(
        "--setting",
        choices=["demo-tiny", "smollm2"],
        default="demo-tiny",
        help="demo-tiny: configs/demo-tiny.yaml (1.8M model); smollm2: benchmarks/configs/smollm2_biomed.yaml",
    )
    ap.add_argument("--target", choices=sorted(TARGETS), default="a", help="smollm2 target tokenizer (see TARGETS)")
    ap.add_argument(
        "--qa-rows",
        default=None,
        help="comma list of rows (and 'source') whose final model answers all 500 PubMedQA test questions",
    )
    ap.add_argument(
        "--train-rows",
        default=None,
        help="comma list of rows that train (default: all); the others are scored at init only "
        "(vocab_adaptation.enabled=false), for CPU budgets",
    )
    return ap


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.render:
        for name, text in rendered_files(args.results).items():
            (args.results / name).write_text(text)
        log(f"rendered the quality*.md files of {args.results} from their JSON records")
        return
    bench = Bench.start(args)
    if args.reread:
        return bench.reread()
    if args.pair_only:
        pair = pair_benchmark(bench.work, args.quick, bench.logf)
        (bench.work / "pair.json").write_text(json.dumps(pair, indent=1))
        log(f"wrote {bench.work / 'pair.json'}: {pair}")
        return
    bench.prepare_source_model()
    bench.base_runs()
    if args.bases_only:
        return
    bench.run_all()


@dataclass
class Bench:
    """One run of the benchmark: its settings, its folders, and the rows measured so far."""

    args: argparse.Namespace
    mode: str  # "quick" or "full": the key of BUDGETS
    real: bool  # --setting smollm2
    work: Path
    stem: str  # results file name without suffix
    t0: float = field(default_factory=time.perf_counter)
    start_machine: str = field(default_factory=machine)
    start_commit: str = field(default_factory=git_head)  # the code this run started from (others may commit)
    model: Path = DEMO / "model"
    overrides: dict = field(default_factory=dict)
    cont_overrides: dict = field(default_factory=dict)
    heldout: dict = field(default_factory=dict)
    rows: dict[str, dict] = field(default_factory=dict)
    seed_rows: dict[str, list] = field(default_factory=dict)
    qa500: dict[str, dict] = field(default_factory=dict)
    state: dict = field(default_factory=lambda: {"focus": "not reached", "pair": None, "pending": ""})

    @classmethod
    def start(cls, args: argparse.Namespace) -> Bench:
        """Settle the setting (the smollm2 one swaps CONFIG and BUDGETS) and the work folder."""
        global CONFIG, BUDGETS
        real = args.setting == "smollm2"
        if real:
            CONFIG, BUDGETS = REAL_CONFIG, REAL_BUDGETS
            args.no_pair = True
            args.tag = f"smollm2-{args.target}" + (f"-{args.tag}" if args.tag else "")
        work = Path(args.work or ROOT / "benchmarks" / "cache" / f"quality{'-quick' if args.quick else ''}").resolve()
        work.mkdir(parents=True, exist_ok=True)
        stem = ("quality-quick" if args.quick else "quality") + (f"-{args.tag}" if args.tag else "")
        return cls(args, "quick" if args.quick else "full", real, work, stem)

    @property
    def logf(self) -> Path:
        return self.work / "vocabadapt.log"

    @property
    def base(self) -> Path:
        return self.work / "base"

    @property
    def base_cont(self) -> Path:
        return self.work / "base_continued"

    @property
    def n_seeds(self) -> int:
        return self.args.seeds if self.args.seeds is not None else (1 if self.args.quick else 3)

    def reread(self) -> None:
        """--reread: the record's numbers read again from its run directories, then verdict, plot and .md."""
        res = read_json(RESULTS / f"{self.stem}.json")
        for r in list(res["rows"].values()) + [x for runs in res["seed_rows"].values() for x in runs]:
            r.update(row_result(ROOT / r["run_dir"], r["wall_s"]))
        if self.real:
            res["qa500"] = read_qa500((ROOT / next(iter(res["rows"].values()))["run_dir"]).parent)
            res["source_row"] = next(iter(res["rows"].values()))["source"]
        res["stem"] = self.stem
        plot(res["rows"], res["seed_rows"], RESULTS / f"{self.stem}_bpb.png")
        res["verdict"] = verdict(res)
        write_json(RESULTS / f"{self.stem}.json", res)
        write_md(res, RESULTS / f"{self.stem}.md")
        log(f"re-rendered {RESULTS / (self.stem + '.md')} from its json and run directories")

    def prepare_source_model(self) -> None:
        """The source model (built when the demo's is missing) and the overrides every row shares."""
        args = self.args
        if self.real and not args.source_model:
            from vocabadapt.config import load_config
            from vocabadapt.model.hub import resolve_model_dir

            cfg = load_config(CONFIG)  # the GGUF of `make demo`, dequantised once into the model cache
            args.source_model = str(resolve_model_dir(cfg.models.source_model, cfg.tokenization.cache_dir))
        self.model = Path(args.source_model).resolve() if args.source_model else DEMO / "model"
        if not (self.model / "config.json").exists() and not args.bases_only:
            if args.source_model:
                raise SystemExit(f"--source-model {self.model} holds no config.json")
            log(
                "examples/pubmed_demo/model is missing: building it (python examples/pubmed_demo/build.py, "
                "seeded, ~1 h on 2 cores)"
            )
            subprocess.run([sys.executable, str(DEMO / "build.py")], cwd=ROOT, check=True)
        budget = BUDGETS[self.mode]
        if args.max_samples is not None:
            budget["evaluation.max_samples"] = "null" if args.max_samples == 0 else args.max_samples
        if args.steps is not None:
            budget["vocab_adaptation.stage1_steps"] = budget["vocab_adaptation.stage2_steps"] = args.steps
        # The source tokenizer named explicitly (the model's own, build.py saves it with the model): the shared
        # corpus..align stages then need no model, and --bases-only can run them while the model is being built.
        src_tok = DEMO / "tokenizers" / "source"
        self.overrides = {
            **budget,
            **COMMON,
            "models.source_model": str(self.model),
            "models.source_tokenizer": str(src_tok),
        }
        if self.real:  # the source tokenizer is the model's own; the continued row uses the copy the base run saved
            del self.overrides["models.source_tokenizer"]
            if TARGETS[args.target]:
                self.overrides["models.target_tokenizer"] = str(SHARED_DATA / TARGETS[args.target])
            src_tok = self.base / "tokenizers" / "source"
        # Row 2's alignment is the identity whatever the embeddings (every target token is identical to a source
        # token), so its base embeds with 1 fastText epoch instead of 5: same mapping, less time.
        self.cont_overrides = {
            **self.overrides,
            "models.target_tokenizer": str(src_tok),
            "embedding.fasttext.epochs": 1,
        }

    def base_runs(self) -> None:
        """corpus..align once per tokenizer pair (the target one, and the source one as target for row 2)."""
        log("base runs: corpus..align (target tokenizer, and the source tokenizer as target for row 2)")
        until_align = ["--until", "align"]
        run_cli(["run", str(CONFIG), "--run-dir", str(self.base), *until_align, *sets(self.overrides)], self.logf)
        run_cli(
            ["run", str(CONFIG), "--run-dir", str(self.base_cont), *until_align, *sets(self.cont_overrides)], self.logf
        )
        self.heldout = {"target_base": check_heldout(self.base), "continued_base": check_heldout(self.base_cont)}
        log(f"held-out check passed: {self.heldout['target_base']}")

    def command(self) -> str:
        """The command line that repeats this run (the results file's `command`)."""
        args, real = self.args, self.real
        tag = ""
        if real and args.tag != f"smollm2-{args.target}":
            tag = f" --tag {args.tag.removeprefix(f'smollm2-{args.target}').lstrip('-')}"
        elif args.tag and not real:
            tag = f" --tag {args.tag}"
        return (
            "python -m benchmarks.quality"
            + (" --quick" if args.quick else "")
            + (f" --seeds {args.seeds}" if args.seeds is not None else "")
            + (f" --source-model {args.source_model}" if args.source_model else "")
            + (" --no-pair" if args.no_pair else "")
            + (f" --max-samples {args.max_samples}" if args.max_samples is not None else "")
            + (f" --steps {args.steps}" if args.steps is not None else "")
            + (" --no-focus" if args.no_focus else "")
            + (f" --inits {args.inits}" if args.inits != ",".join(INITS) else "")
            + (f" --train-rows {args.train_rows}" if args.train_rows is not None else "")
            + (f" --qa-rows {args.qa_rows}" if args.qa_rows else "")
            + (f" --work {args.work}" if args.work else "")
            + (f" --setting {args.setting} --target {args.target}" if real else "")
            + tag
        )

    def record(self, done: bool) -> dict:
        """The results record so far."""
        seed_stats = {}
        for name, runs in self.seed_rows.items():
            v = [r["stage2"]["bpb"] for r in runs if r["stage2"]["bpb"] is not None]
            if v:
                seed_stats[name] = {"mean": sum(v) / len(v), "min": min(v), "max": max(v), "n": len(v)}
        b = BUDGETS[self.mode]
        curve_note = (
            "bpb curve from the evaluate stage (init, after stage 1, after stage 2)"
            if self.real
            else f"bpb curve every {b['vocab_adaptation.eval_steps']} steps"
        )
        docs_note = (
            " held-out documents (the first N of corpus/heldout.jsonl; no PubMedQA in the rows: "
            "benchmarks/configs/smollm2_biomed.yaml evaluates held-out text only)"
            if self.real
            else " (caps held-out documents and PubMedQA questions, first N of each; null = all 230 held-out "
            "documents and the 500-question official test split)"
        )
        model = self.model
        res = {
            "quick": self.args.quick,
            "command": self.command(),
            "commit": f"{self.start_commit} at start, {git_head()} when written",
            "machine": self.start_machine,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "seeds": list(range(self.n_seeds)),
            "complete": done,
            "pending": self.state["pending"],
            "stem": self.stem,
            "source_model": str(model.relative_to(ROOT)) if model.is_relative_to(ROOT) else str(model),
            "budget": (
                f"stage 1 {b['vocab_adaptation.stage1_steps']} + stage 2 {b['vocab_adaptation.stage2_steps']} steps "
                f"of {tokens_per_step(self.base)} tokens ({CONFIG.relative_to(ROOT)} batch x sequence length); "
                f"held-out {curve_note}; overrides {json.dumps(BUDGETS[self.mode])}"
            ),
            "eval_note": "evaluation.max_samples=" + str(b["evaluation.max_samples"]) + docs_note,
            "heldout_check": self.heldout,
            "rows": self.rows,
            "source_row": self.rows.get("default", next(iter(self.rows.values())))["source"],
            "seed_rows": self.seed_rows,
            "seed_stats": seed_stats,
            "pair": self.state["pair"],
            "focus": self.state["focus"],
            "qa500": self.qa500,
            "total_wall_s": time.perf_counter() - self.t0,
        }
        res["verdict"] = verdict(res)
        return res

    def emit(self, done: bool = False) -> None:
        """Write the results so far (after every row: a run cut short still leaves its finished rows)."""
        if not self.rows:
            return
        res = self.record(done)
        write_json(RESULTS / f"{self.stem}.json", res)
        plot(self.rows, self.seed_rows, RESULTS / f"{self.stem}_bpb.png")
        write_md(res, RESULTS / f"{self.stem}.md")
        if done:
            log(f"wrote {RESULTS / (self.stem + '.md')}")
            for v in res["verdict"]:
                log(v)

    def trains(self, row: str) -> bool:
        return self.args.train_rows is None or row in self.args.train_rows.split(",")

    def run_all(self) -> None:
        """Every row, FOCUS, the seeds, PubMedQA-500 and the GPT-NeoX -> BioGPT pair, writing after each."""
        args = self.args
        if args.no_pair:
            self.state["pair"] = None
        elif (self.work / "pair.json").exists():
            self.state["pair"] = read_json(self.work / "pair.json")
            self.state["pair"]["command"] += (
                f" (via python -m benchmarks.quality --pair-only{' --quick' if args.quick else ''})"
            )
        else:
            self.state["pair"] = {"skipped": "not run yet (runs after the rows)"}
        self.run_rows([x for x in args.inits.split(",") if x])
        self.run_focus()
        self.run_seeds()
        self.run_qa500()
        self.state["pending"] = ""
        if not args.no_pair and not (self.work / "pair.json").exists():
            self.state["pair"] = pair_benchmark(self.work, args.quick, self.logf)
        self.emit(done=True)

    def run_rows(self, wanted: list[str]) -> None:
        order = ["default"] + [x for x in wanted if x != "default"] if "default" in wanted else wanted
        if self.trains("continued"):
            self.rows["continued"] = run_row(
                self.base_cont, self.work / "row_continued_s0", "default", 0, self.cont_overrides, self.logf
            )
        self.state["pending"] = "rows " + ", ".join([*order, "focus", "seeds"])
        self.emit()
        for k, init in enumerate(order):
            extra = self.overrides if self.trains(init) else {**self.overrides, **UNTRAINED}
            self.rows[init] = run_row(self.base, self.work / f"row_{init}_s0", init, 0, extra, self.logf)
            self.state["pending"] = "rows " + ", ".join([*order[k + 1 :], "focus", "seeds"])
            self.emit()

    def run_focus(self) -> None:
        if self.args.no_focus:
            self.state["focus"] = "skipped (--no-focus)"
        elif not (FOCUS_VENV / "bin" / "python").exists():
            self.state["focus"] = focus_status()
        else:
            try:
                log("row_focus_s0: running (deepfocus in " + str(FOCUS_VENV) + ")")
                extra = self.overrides if self.trains("focus") else {**self.overrides, **UNTRAINED}
                self.rows["focus"] = run_focus_row(
                    self.base, self.work / "row_focus_s0", extra, self.logf, self.args.quick
                )
                self.state["focus"] = (
                    f"row `focus`: deepfocus 1.0.1 (installed in a throwaway venv {FOCUS_VENV}, never in .venv), "
                    f"FOCUS rows written over a mean-initialised transplant of the same run, fastText "
                    f"auxiliary embeddings trained by deepfocus on corpus/train only; {self.rows['focus'].get('focus')}"
                )
            except (Exception, SystemExit) as e:
                self.state["focus"] = f"FOCUS failed to run here: {str(e)[-600:]}"
        self.state["pending"] = "seeds"
        self.emit()

    def run_seeds(self) -> None:
        """The default row and the best competitor again with vocab_adaptation.seed = 1 .. seeds-1."""
        rows = self.rows
        competitors = sorted(
            (k for k in rows if k not in ("default", "continued", "focus") and rows[k]["stage2"]["bpb"] is not None),
            key=lambda k: rows[k]["stage2"]["bpb"],
        )
        if self.n_seeds > 1 and "default" in rows and competitors:
            for name in ("default", competitors[0]):
                self.seed_rows[name] = [rows[name]]
                for sd in range(1, self.n_seeds):
                    dest = self.work / f"row_{name}_s{sd}"
                    self.seed_rows[name].append(run_row(self.base, dest, name, sd, self.overrides, self.logf))
                    self.emit()

    def run_qa500(self) -> None:
        if not self.args.qa_rows:
            return
        self.state["pending"] = "PubMedQA 500"
        self.emit()
        for name in self.args.qa_rows.split(","):
            if name == "source":
                self.qa500[name] = pubmedqa_500(name, self.model, self.work, self.logf)
            elif name in self.rows and self.rows[name]["stage2"]["bpb"] is not None:
                final = ROOT / self.rows[name]["run_dir"] / "model" / "stage2"
                self.qa500[name] = pubmedqa_500(name, final, self.work, self.logf)
            self.emit()


if __name__ == "__main__":
    main()
