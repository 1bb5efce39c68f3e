"""Tokens to parity: how fast each training recipe brings an adapted SmolLM2-135M back to the source model.

    python -m benchmarks.recovery --work W [--rows ce,distill,...] [--jobs 2] [--steps 49]

One target, the extension of SmolLM2's tokenizer by 8,000 tokens learned on the benchmark corpus (the best
row of benchmarks/extension.py), one budget for every row: --steps steps of stage 1 and as many of stage 2,
8 x 256 tokens a step (49 + 49 = 200,704 tokens), the training monitor scoring --monitor-bytes held-out bytes
every 10 steps (20,480 tokens). Rows (`vocab_adaptation` settings; everything else as the quality benchmark):
  continued      the source tokenizer as target (the identity), next-token loss in both stages
  ce             next-token stage 1 + 2 (the recipe before issue 26)
  distill        stage 1 distills from the source model (hidden + chunk + KL), stage 2 next-token
  distill-lre    as distill, with train_rows: new (copied rows frozen) and stage 2's embeddings and head at
                 lr_embeddings = lr_stage1 (a differential rate)
Each row reports held-out bpb against tokens trained and against the row's CPU seconds, the evaluate stage's
40-document bpb of each stage's model, general-English bpb (retention), and the tokens it needed to reach the
untrained source's bpb on the monitor's sample (or its distance at the end).

Writes benchmarks/results/recovery.md, .json and _curves.png; --render rewrites them from the JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks import extension, quality  # extension: the row runner and reader
from benchmarks.harness import (
    RESULTS,
    ROOT,
    Block,
    git_head,
    log,
    machine,
    read_json,
    run_cli,
    write_json,
    write_markdown,
)

EXTENSION = extension.flow(extension.ROWS["ext-8k"])
DISTILL = {"vocab_adaptation.objective_stage1": "distill", "vocab_adaptation.distill.kl_weight": 1.0}
ROWS = {
    "continued": {"models.target_tokenizer": extension.flow(extension.ROWS["continued"])},
    "ce": {"models.target_tokenizer": EXTENSION},
    "distill": {"models.target_tokenizer": EXTENSION, **DISTILL},
    "distill-lre": {
        "models.target_tokenizer": EXTENSION,
        **DISTILL,
        "vocab_adaptation.train_rows": "new",
        "vocab_adaptation.lr_embeddings": quality.REAL_STEP["vocab_adaptation.lr_stage1"],
    },
}


def monitor_curve(dest: Path) -> list[dict]:
    """(tokens trained, CPU seconds, monitor bpb) from train/<stage>/metrics.jsonl, stage 2 after stage 1."""
    per_step = quality.tokens_per_step(dest)
    summaries = quality.train_summaries(dest)
    pts, tokens0 = [], 0
    for stage in ("stage1", "stage2"):
        s = summaries.get(stage) or {}
        if stage == "stage1" and s.get("heldout_bpb_before") is not None:
            pts.append({"tokens": 0, "bpb": s["heldout_bpb_before"]})
        path = dest / "train" / stage / "metrics.jsonl"
        for line in path.read_text().splitlines() if path.exists() else []:
            r = json.loads(line)
            if r.get("type") == "eval" and r.get("heldout_bpb") is not None:
                pts.append({"tokens": tokens0 + r["step"] * per_step, "bpb": r["heldout_bpb"]})
        tokens0 += s.get("steps", 0) * per_step
    wall = read_json(dest / "manifest.json")["stages"]
    stage_wall = [(wall.get(st) or {}).get("wall_s") or 0.0 for st in ("stage1", "stage2")]
    s1_tokens = (summaries.get("stage1") or {}).get("steps", 0) * per_step
    for p in pts:  # wall seconds of training, linear within a stage (the steps are the same size)
        if p["tokens"] <= s1_tokens:
            p["train_s"] = stage_wall[0] * p["tokens"] / max(s1_tokens, 1)
        else:
            p["train_s"] = stage_wall[0] + stage_wall[1] * (p["tokens"] - s1_tokens) / max(tokens0 - s1_tokens, 1)
    return pts


def curve_from_log(name: str, work: Path) -> list[dict]:
    """Monitor points of a row that has not finished, from its CLI log (WORK/NAME.log): the training
    monitor's "held-out X bits per byte" lines, by stage (stage 2 after stage 1's configured steps)."""
    import re

    import yaml

    cfg = yaml.safe_load((work / name / "config.yaml").read_text())["vocab_adaptation"]
    per_step = cfg["batch_size"] * cfg["gradient_accumulation"] * cfg["max_seq_length"]
    offset, stage, pts = 0, None, []
    for line in (work / f"{name}.log").read_text().splitlines():
        if m := re.search(r"\] (stage[12]) +running", line):
            stage = m.group(1)
            offset = 0 if stage == "stage1" else cfg["stage1_steps"] * per_step
        elif stage and (m := re.search(r"held-out ([0-9.]+) bits per byte before training", line)):
            if stage == "stage1":
                pts.append({"tokens": 0, "bpb": float(m.group(1))})
        elif stage and (m := re.search(r"step (\d+): held-out ([0-9.]+) bits per byte", line)):
            pts.append({"tokens": offset + int(m.group(1)) * per_step, "bpb": float(m.group(2))})
        elif m := re.search(r"(stage[12]): (\d+) steps, .*held-out bpb [0-9.]+ -> ([0-9.]+)", line):
            end = offset + int(m.group(2)) * per_step  # the stage's last reading, at its last step
            if not pts or pts[-1]["tokens"] != end:
                pts.append({"tokens": end, "bpb": float(m.group(3))})
    return pts


def partial_row(name: str, work: Path) -> dict:
    """What a row that did not finish measured: its monitor curve so far (no evaluate-stage figures)."""
    empty = {"bpb": None, "bytes_per_token": None}
    return {
        "partial": True,
        "monitor": curve_from_log(name, work),
        "settings": ROWS[name],
        **{k: dict(empty) for k in ("init", "stage1", "stage2", "source")},
        "general_bpb": {},
        "wall_s": 0.0,
    }


def source_monitor_bpb(work: Path, name: str, monitor_bytes: int) -> float:
    """The untrained source model's bpb on the monitor's sample of row NAME (the sample every row's monitor
    scores: the first documents of corpus/heldout.jsonl up to monitor_bytes), scored as the monitor scores."""
    import yaml

    from vocabadapt.config import ModelsConfig
    from vocabadapt.model.hub import load_model, load_tokenizer
    from vocabadapt.run.layout import RunLayout
    from vocabadapt.training.callbacks import heldout_sample, heldout_scorer

    cfg = yaml.safe_load((work / name / "config.yaml").read_text())
    models = ModelsConfig(**cfg["models"])
    layout = RunLayout(work / name)
    sample = heldout_sample(list(layout.corpus_texts("heldout")), monitor_bytes)
    va = cfg["vocab_adaptation"]
    model = load_model(models.source_model, models)
    tokenizer = load_tokenizer(str(layout.tokenizer_dir("source")), models)
    return heldout_scorer(tokenizer, sample, va["max_seq_length"], va["batch_size"])(model)


def tokens_to(curve: list[dict], target: float) -> int | None:
    """Tokens of the first monitor point at or below `target` bpb (None: never reached)."""
    return next((p["tokens"] for p in curve if p["bpb"] <= target), None)


def run_row(name: str, work: Path, steps: int, monitor_bytes: int, extra: dict) -> dict:
    budget = {
        **quality.REAL_BUDGETS["full"],
        **quality.COMMON,
        "vocab_adaptation.stage1_steps": steps,
        "vocab_adaptation.stage2_steps": steps,
        "vocab_adaptation.eval_steps": 10,
        "vocab_adaptation.eval_max_bytes": monitor_bytes,
        **ROWS[name],
        **extra,
    }
    dest = extension.run_config_row(name, work, budget)
    r = extension.row_summary(dest)
    r["monitor"] = monitor_curve(dest)
    r["settings"] = ROWS[name]
    log(f"{name}: done in {r['wall_s']:.0f} s")
    return r


def fmt(x, nd: int = 4) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


MAIN_COLUMNS = ["row", "40 docs: init", "stage 1", "stage 2", "general-English bpb stage 2 (source)"]
MAIN_COLUMNS += ["tokens to the source's monitor bpb", "monitor bpb at the end", "wall s"]


def render(res: dict, stem: str) -> list[Block]:
    """STEM.md of record `res` as Markdown blocks (the record alone decides every byte)."""
    rows = res["rows"]
    first = next(iter(rows.values()))
    source_monitor = res.get("source_monitor_bpb")
    table = []
    for name, r in rows.items():
        curve = r["monitor"]
        reach = tokens_to(curve, source_monitor) if source_monitor is not None else None
        gen = r.get("general_bpb") or {}
        table.append(
            [
                name + (" (partial)" if r.get("partial") else ""),
                fmt(r["init"]["bpb"]),
                fmt(r["stage1"]["bpb"]),
                fmt(r["stage2"]["bpb"]),
            ]
            + [f"{fmt(gen.get('stage2'))} ({fmt(gen.get('source'))})", "-" if reach is None else f"{reach:,}"]
            + [fmt(curve[-1]["bpb"] if curve else None), "-" if r.get("partial") else f"{r['wall_s']:.0f}"]
        )
    tokens = sorted({p["tokens"] for r in rows.values() for p in r["monitor"]})
    curves = [
        [f"{t:,}"] + [next((fmt(p["bpb"]) for p in r["monitor"] if p["tokens"] == t), "") for r in rows.values()]
        for t in tokens
    ]
    return [
        ("h", 1, "Tokens to parity (SmolLM2-135M, extension +8k)"),
        ("p", f"Commit {res['commit']}; {res['machine']}; {res['date']}.\nCommand: `{res['command']}`"),
        (
            "p",
            f"Budget per row: {res['budget']}. The monitor scores {res['monitor_bytes']:,} held-out bytes every 10 "
            f"steps; the untrained source scores {fmt(source_monitor)} there"
            + (
                f" and {fmt(first['source']['bpb'])} on the evaluate stage's 40 documents"
                if first["source"]["bpb"]
                else ""
            )
            + "."
            + (
                " Rows marked partial did not finish in the session: their curve is the monitor's readings so far, "
                "from the row's log, and they have no evaluate-stage figures."
                if any(r.get("partial") for r in rows.values())
                else ""
            ),
        ),
        ("table", MAIN_COLUMNS, table),
        ("p", "Monitor bpb against tokens trained:"),
        ("table", ["tokens", *rows], curves),
        ("img", f"{stem}_curves.png", "curves"),
    ]


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, r in res["rows"].items():
        pts = r["monitor"]
        axes[0].plot([p["tokens"] for p in pts], [p["bpb"] for p in pts], marker=".", label=name)
        if all("train_s" in p for p in pts):  # a finished row's curve against its training time
            axes[1].plot([p["train_s"] for p in pts], [p["bpb"] for p in pts], marker=".", label=name)
    axes[0].set_xlabel("tokens trained (stage 1 then stage 2)")
    axes[1].set_xlabel("training wall seconds (same machine, rows side by side)")
    for ax in axes:
        ax.set_ylabel("held-out bits per byte (monitor sample)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_results(out: Path) -> None:
    """OUT.md and OUT_curves.png from the record OUT.json."""
    res = read_json(out.with_suffix(".json"))
    write_markdown(out.with_suffix(".md"), render(res, out.stem))
    plot(res, out.parent / f"{out.stem}_curves.png")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.recovery", description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "recovery")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {', '.join(ROWS)}")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--steps", type=int, default=49, help="steps per stage (8 x 256 tokens each)")
    ap.add_argument("--monitor-bytes", type=int, default=20000)
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE for every row")
    ap.add_argument("--tag", default="")
    ap.add_argument("--render", action="store_true", help="rewrite the results file from its JSON only")
    ap.add_argument(
        "--partial", action="store_true", help="record the rows as they stand: unfinished ones from their logs"
    )
    ap.add_argument("--results", type=Path, default=RESULTS, help="the folder of the results files")
    args = ap.parse_args(argv)
    out = args.results / f"recovery{'-' + args.tag if args.tag else ''}"
    if args.render:
        return write_results(out)
    quality.CONFIG = quality.REAL_CONFIG
    names = args.rows.split(",")
    if unknown := [n for n in names if n not in ROWS]:
        raise SystemExit(f"unknown rows {unknown}; valid: {', '.join(ROWS)}")
    extra = dict(s.split("=", 1) for s in args.set)
    args.work.mkdir(parents=True, exist_ok=True)
    if not (args.work / "base" / "corpus" / "train.jsonl").exists():
        run_cli(
            ["run", str(quality.REAL_CONFIG), "--run-dir", str(args.work / "base"), "--until", "corpus"],
            args.work / "base.log",
        )
    t0 = time.time()

    def row(name: str) -> dict:
        if args.partial and not (args.work / name / "wall_s").exists():
            return partial_row(name, args.work)
        return run_row(name, args.work, args.steps, args.monitor_bytes, extra)

    with ThreadPoolExecutor(args.jobs) as pool:
        rows = dict(zip(names, pool.map(row, names)))
    res = {
        "source_monitor_bpb": source_monitor_bpb(args.work, names[0], args.monitor_bytes),
        "commit": git_head(),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "command": "python -m benchmarks.recovery " + " ".join(sys.argv[1:]),
        "budget": f"{args.steps} + {args.steps} steps of 8 x 256 tokens (lr 5e-4 / 5e-5)",
        "monitor_bytes": args.monitor_bytes,
        "wall_s": round(time.time() - t0),
        "rows": rows,
    }
    write_json(out.with_suffix(".json"), res)
    write_results(out)
    log(f"wrote {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
