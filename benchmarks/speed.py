"""Speed summary: one table, each figure with the command that produced it, ratios measured in the same run.

    python -m benchmarks.speed [--source-model DIR] [--skip-align] [--skip-transplant] [--skip-train]
                               [--skip-real | --only-real]

Measured here (about 5-10 minutes on 2 cores):
  corpus + tokenize   `vocabadapt run configs/demo-tiny.yaml --until tokenize` into benchmarks/cache/speed/demo:
                      MB/s of each stage from its manifest record (fast tokenizers, both sides)
  fast vs slow        vocabadapt.tokenize.encode_texts on the same held-out text: the demo's fast target
                      tokenizer, GPT-NeoX (fast) and BioGPT (the slow Moses/BPE tokenizer, ../shared/data)
  align vs dense      benchmarks/align_speed.py's spawn() (dense float64 reference vs vocabadapt's blockwise
                      search, each in its own process) on the GPT-NeoX -> BioGPT align run quality.py made
  transplant          benchmarks/transplant_memory.py's measure() on a Llama model (hidden 512, 8 layers,
                      50,304 untied rows) saved in 100 MB shards: sharded transplant vs load + save
  stage 2             benchmarks/train_speed.py (subprocess, 1 repeat): vocabadapt tokens/s vs bare HF
                      Trainer, and the share of real tokens per batch
  real model          benchmarks/speed_real.py on SmolLM2-135M (the demo's GGUF, installed from PyPI): stage 1
                      and stage 2 tokens/s vs a bare HF Trainer, evaluate vs a bare forward loop, transplant vs
                      load + save (--only-real measures only these and keeps the other rows of speed.json)
Read from earlier runs (their command is stated): embed time and the whole demo wall time from
quality.py's run directories (benchmarks/cache/quality/base and row_default_s0).
Writes benchmarks/results/speed.md and speed.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks import align_speed, speed_real, transplant_memory  # reused: spawn, measure
from benchmarks.harness import (
    RESULTS,
    ROOT,
    Block,
    git_commit,
    load_average,
    log,
    module_command,
    read_json,
    run_cli,
    utc_now,
    write_json,
    write_markdown,
)

CACHE = ROOT / "benchmarks" / "cache" / "speed"
QUALITY = ROOT / "benchmarks" / "cache" / "quality"
BIOGPT = Path("/work/shared/data/tokenizers/biogpt")
NEOX = Path("/work/shared/data/tokenizers/gpt-neox-20b/tokenizer.json")


def corpus_tokenize(model: Path) -> dict:
    run = CACHE / "demo"
    shutil.rmtree(run, ignore_errors=True)
    cmd = [
        "run",
        str(ROOT / "configs" / "demo-tiny.yaml"),
        "--run-dir",
        str(run),
        "--until",
        "tokenize",
        "--set",
        f"models.source_model={model}",
    ]
    run_cli(cmd, CACHE / "demo.log")
    man = read_json(run / "manifest.json")["stages"]
    stats = read_json(run / "corpus" / "stats.json") if (run / "corpus" / "stats.json").exists() else {}
    nbytes = sum((run / "corpus" / f).stat().st_size for f in ("train.jsonl", "heldout.jsonl"))
    return {
        "command": "vocabadapt " + " ".join(cmd).replace(str(ROOT) + "/", ""),
        "jsonl_bytes": nbytes,
        "corpus_wall_s": man["corpus"]["wall_s"],
        "tokenize_wall_s": man["tokenize"]["wall_s"],
        "corpus_mb_s": nbytes / 1e6 / man["corpus"]["wall_s"],
        "tokenize_mb_s": nbytes / 1e6 / man["tokenize"]["wall_s"],
        "stats": stats,
    }


def fast_vs_slow() -> dict:
    from transformers import BioGptTokenizer, PreTrainedTokenizerFast

    from vocabadapt.text.tokenizers import encode_texts

    with gzip.open(ROOT / "examples" / "pubmed_demo" / "corpus" / "heldout.jsonl.gz", "rt") as f:
        texts = [json.loads(line)["text"] for line in f]
    mb = sum(len(t.encode()) for t in texts) / 1e6
    toks = {
        "demo target (fast byte-level BPE)": PreTrainedTokenizerFast(
            tokenizer_file=str(ROOT / "examples" / "pubmed_demo" / "tokenizers" / "target" / "tokenizer.json")
        )
    }
    if NEOX.exists():
        toks["GPT-NeoX (fast)"] = PreTrainedTokenizerFast(tokenizer_file=str(NEOX))
    if BIOGPT.exists():
        toks["BioGPT (slow, Moses + BPE)"] = BioGptTokenizer(
            vocab_file=str(BIOGPT / "vocab.json"), merges_file=str(BIOGPT / "merges.txt")
        )
    out = {}
    for name, tok in toks.items():
        t = time.perf_counter()
        ids = encode_texts(tok, texts)
        wall = time.perf_counter() - t
        out[name] = {"mb_s": mb / wall, "wall_s": wall, "tokens": sum(map(len, ids))}
    return {"text_mb": mb, "tokenizers": out}


def align_vs_dense() -> dict | None:
    for cand in (QUALITY / "neox_biogpt", ROOT / "runs" / "neox_biogpt_a"):
        if (cand / "align" / "summary.json").exists() and (cand / "embeddings").exists():
            run = cand
            break
    else:
        return None
    tmp = Path(tempfile.mkdtemp(prefix="speed-align."))
    rows = {}
    for impl in ("dense", "blockwise"):
        rows[impl] = align_speed.spawn(
            {
                "kind": "real",
                "run_dir": str(run),
                "pivots": 300,
                "seed": 0,
                "impl": impl,
                "threads": os.cpu_count() or 1,
                "out": str(tmp / f"{impl}.npy"),
            }
        )
        log(f"align {impl}: {rows[impl]}")
    shutil.rmtree(tmp, ignore_errors=True)
    return {"run_dir": str(run.relative_to(ROOT)), **rows}


def transplant_vs_load(hidden: int = 512, layers: int = 8) -> dict:
    import torch
    import transformers as tf

    work = CACHE / "transplant"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    tok = NEOX if NEOX.exists() else transplant_memory.synthetic_tokenizer(work / "tokenizer.json")
    cfg = tf.LlamaConfig(
        vocab_size=50304,
        hidden_size=hidden,
        intermediate_size=int(hidden * 2.75),
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        num_key_value_heads=hidden // 64,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = tf.AutoModelForCausalLM.from_config(cfg)
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(str(work / "sharded"), max_shard_size="100MB")
    del model
    res = {
        "transplant": transplant_memory.measure("transplant", work / "sharded", work / "out-t", tok),
        "load_save": transplant_memory.measure("load", work / "sharded", work / "out-l", tok),
        "model_mb": params * 4 / 2**20,
        "hidden": hidden,
        "layers": layers,
        "shards": len(list((work / "sharded").glob("*.safetensors"))),
    }
    shutil.rmtree(work, ignore_errors=True)
    return res


def train_vs_bare() -> dict | None:
    out = CACHE / "train_speed.md"
    cmd = [
        *module_command("train_speed"),
        "--steps",
        "20",
        "--repeats",
        "1",
        "--batch",
        "8",
        "--seq",
        "128",
        "--hidden",
        "128",
        "--layers",
        "2",
        "--out",
        str(out),
    ]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        log(f"train_speed failed: {r.stderr[-500:]}")
        return None
    md = out.read_text()
    bare = re.search(r"\| bare HF Trainer \| [^|]* \| (\d+) \|", md)
    ours = re.search(r"\| vocabadapt train_stage[^|]* \| [^|]* \| (\d+) \|", md)
    share = re.search(r"Real tokens per batch with packing: ([\d.]+) %", md)
    padded = re.search(r"would leave ([\d.]+) %", md)
    return {
        "command": "python " + " ".join(cmd[1:]).replace(str(ROOT) + "/", ""),
        "bare_tok_s": int(bare.group(1)),
        "ours_tok_s": int(ours.group(1)),
        "real_share": float(share.group(1)),
        "padded_share": float(padded.group(1)),
    }


def from_quality() -> dict:
    out = {}
    q = ROOT / "benchmarks" / "results" / "quality.json"
    base, row = QUALITY / "base" / "manifest.json", QUALITY / "row_default_s0" / "manifest.json"
    if base.exists():
        b = read_json(base)["stages"]
        out["embed_wall_s"] = b.get("embed", {}).get("wall_s")
        out["embed_peak_mb"] = b.get("embed", {}).get("peak_rss_mb")
        if row.exists():
            r = read_json(row)["stages"]
            walls = {
                k: (b[k] if k in ("corpus", "tokenize", "embed", "align") else r[k]).get("wall_s")
                for k in r
                if r[k].get("status") == "done"
            }
            out["demo_stage_wall_s"] = walls
            out["demo_wall_s"] = sum(v or 0 for v in walls.values())
            import yaml

            c = yaml.safe_load((QUALITY / "row_default_s0" / "config.yaml").read_text())
            out["demo_budget"] = (
                f"{c['vocab_adaptation']['stage1_steps']} + {c['vocab_adaptation']['stage2_steps']} steps, "
                f"evaluation.max_samples {c['evaluation']['max_samples']}"
            )
    if q.exists():
        qq = read_json(q)
        out["quality_command"] = qq.get("command")
        out["quality_commit"] = qq.get("commit")
    return out


def _real_blocks(r: dict | None) -> list[Block]:
    """The SmolLM2-135M section: each figure beside its bare reference, measured in the same run."""
    if not r:
        return []
    tr, ev = r["transplant"], r["evaluate"]
    how = (
        f"`{r['command']}` at commit {r['commit']}, {r['date']}, torch threads {r['threads']}, load average "
        f"{', '.join(f'{x:.1f}' for x in r['load_avg_end'])} at the end; benchmarks/speed_real.py"
    )
    rows = [
        [
            f"{what} training",
            f"{r[stage]['ours_tok_s']:.0f} tokens/s",
            f"bare HF Trainer: {r[stage]['bare_tok_s']:.0f} tokens/s",
            f"{r[stage]['ours_tok_s'] / r[stage]['bare_tok_s']:.2f}x",
        ]
        for stage, what in (("stage1", "stage 1 (embeddings + head)"), ("stage2", "stage 2 (all parameters)"))
    ]
    rows.append(
        [
            f"evaluate: held-out bits per byte ({ev['documents']} documents, {ev['context']}-token windows)",
            f"{ev['ours_tok_s']:.0f} tokens/s (batch {ev['batch']}), {ev['ours_bpb']:.4f} bpb",
            f"bare loop, one window per forward: {ev['bare_tok_s']:.0f} tokens/s, {ev['bare_bpb']:.4f} bpb",
            f"{ev['ours_tok_s'] / ev['bare_tok_s']:.2f}x",
        ]
    )
    t, ls = tr["transplant"], tr["load_save"]
    rows.append(
        [
            "transplant SmolLM2 -> 16,000-token target (subprocess)",
            f"{t['wall_s']:.1f} s, peak {t['peak_mb']:.0f} MB",
            f"from_pretrained + save_pretrained: {ls['wall_s']:.1f} s, peak {ls['peak_mb']:.0f} MB",
            f"{t['wall_s'] / ls['wall_s']:.2f}x the time, {t['peak_mb'] / ls['peak_mb']:.2f}x the memory",
        ]
    )
    return [
        ("h", 2, f"The real model: SmolLM2-135M-Instruct (`{Path(r['model']).name}`, dequantised to float32)"),
        (
            "p",
            f"Measured in one run of {r['wall_s']:.0f} s ({how}); each pair back to back on the same inputs. "
            f"Training: {r['batch']} x {r['seq']} tokens per step, {r['stage1']['steps']} steps, the first "
            f"{r['stage1']['warmup']} untimed, model/init of the demo run (16,000-token target).",
        ),
        ("table", ["what", "vocabadapt", "reference", "ratio"], rows),
    ]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.splitlines()[0])
    ap.add_argument("--source-model", default=str(ROOT / "examples" / "pubmed_demo" / "model"))
    ap.add_argument("--skip-align", action="store_true")
    ap.add_argument("--skip-transplant", action="store_true")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-real", action="store_true", help="skip the SmolLM2-135M rows")
    ap.add_argument(
        "--only-real",
        action="store_true",
        help="measure only the SmolLM2-135M rows; keep the other rows of results/speed.json",
    )
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="keep the measurements of the last run (results/speed.json, its command and date are kept) "
        "and only refresh the figures read from quality.py's runs",
    )
    ap.add_argument("--render", action="store_true", help="only rewrite results/speed.md from results/speed.json")
    ap.add_argument("--results", type=Path, default=RESULTS, help="the folder of speed.json and speed.md")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.render:
        write_markdown(args.results / "speed.md", render(read_json(args.results / "speed.json")))
        return
    res = measure(args)
    res["quality"] = from_quality()
    res["load_when_written"] = load_average()
    res["refreshed"] = utc_now() if args.reuse else None
    write_markdown(RESULTS / "speed.md", render(res))
    write_json(RESULTS / "speed.json", res)
    log(f"wrote {RESULTS / 'speed.md'}")


def measure(args: argparse.Namespace) -> dict:
    """The record: every section measured now, or (--only-real, --reuse) kept from the last speed.json."""
    t0 = time.perf_counter()
    CACHE.mkdir(parents=True, exist_ok=True)
    mach = align_speed.machine()
    commit = git_commit()
    default_model = str(ROOT / "examples" / "pubmed_demo" / "model")
    me = (
        "python -m benchmarks.speed"
        + (f" --source-model {args.source_model}" if args.source_model != default_model else "")
        + "".join(
            f" --{k.replace('_', '-')}" for k in ("skip_align", "skip_transplant", "skip_train") if getattr(args, k)
        )
    )
    prev = RESULTS / "speed.json"
    if args.only_real:
        res = read_json(prev) if prev.exists() else {}
        log("real model: SmolLM2-135M stage costs")
        res["real"] = speed_real.measure()
        real_command = "python -m benchmarks.speed --only-real"
        res["real"].update(
            command=real_command, commit=commit, machine=mach, date=utc_now(), load_avg_end=os.getloadavg()
        )
        res.setdefault("wall_s", res["real"]["wall_s"])
        for key, value in (("command", me), ("commit", commit), ("machine", mach)):
            res.setdefault(key, value)
        return res
    if args.reuse and prev.exists():
        res = read_json(prev)
        for key, value in (("command", me), ("commit", commit), ("machine", mach)):
            res.setdefault(key, value)
        return res
    res = {"command": me, "commit": commit, "machine": mach, "date": utc_now()}
    log("corpus + tokenize")
    res["corpus_tokenize"] = corpus_tokenize(Path(args.source_model).resolve())
    log("fast vs slow tokenizers")
    res["fast_slow"] = fast_vs_slow()
    if not args.skip_align:
        log("align vs dense reference")
        res["align"] = align_vs_dense()
    if not args.skip_transplant:
        log("transplant vs load + save")
        res["transplant"] = transplant_vs_load()
    if not args.skip_train:
        log("stage 2 vs bare Trainer")
        res["train"] = train_vs_bare()
    if not args.skip_real:
        log("real model: SmolLM2-135M stage costs")
        res["real"] = speed_real.measure()
        res["real"].update(command=me, commit=commit, machine=mach, date=res["date"], load_avg_end=os.getloadavg())
    res["wall_s"] = time.perf_counter() - t0
    return res


def render(res: dict) -> list[Block]:
    """speed.md of record `res` as Markdown blocks (the record alone decides every byte)."""
    refreshed = (
        f"; figures marked * refreshed by `python -m benchmarks.speed --reuse` at {res['refreshed']}"
        if res.get("refreshed")
        else ""
    )
    items = [
        f"command: `{res['command']}` (figures marked * are read from another run; its command is given)",
        f"commit: {res['commit']}",
        f"machine: {res['machine']}",
        f"date: {res.get('date', '?')}; seeds: 0 everywhere{refreshed}",
        f"this script's wall time: {res['wall_s']:.0f} s; load average {res.get('load_when_written', '?')} "
        f"when written (a shared machine: compare figures only within a row)",
    ]
    return [
        ("h", 1, "Speed summary"),
        ("p", "\n".join(f"- {x}" for x in items)),
        ("table", ["what", "vocabadapt", "reference", "ratio", "how measured"], _summary_rows(res)),
        *_real_blocks(res.get("real")),
        (
            "p",
            "Earlier, larger measurements: [align_speed.md](align_speed.md), "
            "[transplant_memory.md](transplant_memory.md), [train_speed.md](train_speed.md).",
        ),
    ]


def _summary_rows(res: dict) -> list[list[str]]:
    """The main table: one row per figure, each beside its reference where it has one."""
    ct = res["corpus_tokenize"]
    rows = [
        [
            "corpus stage throughput",
            f"{ct['corpus_mb_s']:.1f} MB/s ({ct['corpus_wall_s']:.1f} s)",
            "-",
            "-",
            f"`{ct['command']}`, manifest wall_s, {ct['jsonl_bytes'] / 1e6:.1f} MB of corpus jsonl",
        ],
        [
            "tokenize stage throughput (term mining + both fast tokenizers)",
            f"{ct['tokenize_mb_s']:.2f} MB/s ({ct['tokenize_wall_s']:.1f} s)",
            "-",
            "-",
            "same run",
        ],
    ]
    rows += _tokenizer_rows(res["fast_slow"])
    q = res["quality"]
    if q.get("embed_wall_s") is not None:
        rows.append(
            [
                "embed stage, demo (fastText, both tokenizers) *",
                f"{q['embed_wall_s']:.0f} s, peak {q.get('embed_peak_mb') or 0:.0f} MB",
                "-",
                "-",
                f"`{q.get('quality_command')}` (benchmarks/cache/quality/base manifest)",
            ]
        )
    rows += _align_transplant_rows(res.get("align"), res.get("transplant"))
    tr = res.get("train")
    if tr:
        rows.append(
            [
                "stage-2 training, GPT-NeoX 2 x 128",
                f"{tr['ours_tok_s']} tokens/s",
                f"bare HF Trainer: {tr['bare_tok_s']} tokens/s",
                f"{tr['ours_tok_s'] / tr['bare_tok_s']:.2f}x",
                f"`{tr['command']}` (one repeat: noisy on a shared machine)",
            ]
        )
        rows.append(
            [
                "real tokens per batch",
                f"{tr['real_share']:.1f} % (packed)",
                f"{tr['padded_share']:.1f} % (one abstract per row, padded)",
                f"{tr['real_share'] / tr['padded_share']:.2f}x",
                "same run",
            ]
        )
    if q.get("demo_wall_s") is not None:
        stages = ", ".join(f"{k} {v:.0f}" for k, v in q["demo_stage_wall_s"].items() if v is not None)
        rows.append(
            [
                f"whole demo pipeline, corpus..evaluate, at quality.py's budget ({q.get('demo_budget')}; "
                "demo-tiny.yaml has 200 + 200, 50) *",
                f"{q['demo_wall_s']:.0f} s",
                "-",
                "-",
                "sum of manifest wall_s of quality.py's base run and its default row "
                f"(`{q.get('quality_command')}`); stages: {stages}",
            ]
        )
    return rows


def _tokenizer_rows(fast_slow: dict) -> list[list[str]]:
    fs = fast_slow["tokenizers"]
    fast_name = "demo target (fast byte-level BPE)"
    rows = []
    for name, r in fs.items():
        ratio = (
            ""
            if name == fast_name
            else f"{fs[fast_name]['mb_s'] / r['mb_s']:.1f}x slower than the demo fast tokenizer"
            if r["mb_s"] < fs[fast_name]["mb_s"]
            else f"{r['mb_s'] / fs[fast_name]['mb_s']:.1f}x"
        )
        how = (
            f"vocabadapt.tokenize.encode_texts on the {fast_slow['text_mb']:.2f} MB of held-out demo text, one process"
        )
        rows.append([f"encode_texts, {name}", f"{r['mb_s']:.2f} MB/s", "-", ratio, how])
    return rows


def _align_transplant_rows(a: dict | None, t: dict | None) -> list[list[str]]:
    rows = []
    if a:
        b, d = a["blockwise"], a["dense"]
        rows.append(
            [
                f"align top-k, GPT-NeoX -> BioGPT ({b['n_t']} x {b['n_s']}, 300 pivots)",
                f"{b['wall_s']:.1f} s, peak {b['peak_mb']:.0f} MB",
                f"dense float64: {d['wall_s']:.1f} s, peak {d['peak_mb']:.0f} MB",
                f"{d['wall_s'] / b['wall_s']:.1f}x faster, {d['peak_mb'] / b['peak_mb']:.1f}x less memory",
                f"benchmarks/align_speed.py spawn() on {a['run_dir']}",
            ]
        )
    if t:
        ours, ref = t["transplant"], t["load_save"]
        rows.append(
            [
                f"transplant, Llama hidden {t['hidden']} x {t['layers']} layers ({t['model_mb']:.0f} MiB, "
                f"{t['shards']} shards)",
                f"{ours['wall_s']:.1f} s, peak growth {ours['peak_delta_mb']:.0f} MiB",
                f"load + save: {ref['wall_s']:.1f} s, {ref['peak_delta_mb']:.0f} MiB",
                f"{ref['peak_delta_mb'] / ours['peak_delta_mb']:.2f}x less memory, "
                f"{ours['wall_s'] / ref['wall_s']:.2f}x the time",
                "benchmarks/transplant_memory.py measure()",
            ]
        )
    return rows


if __name__ == "__main__":
    main()
