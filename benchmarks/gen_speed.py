"""Cost per byte side by side: MACs per byte, parameter memory, greedy generation and scoring speed in bytes/s.

    python benchmarks/gen_speed.py --model source=DIR --model target=DIR [--heldout FILE] [--prompts 20]
        [--new-bytes 128] [--prompt-bytes 256] [--threads 1] [--out benchmarks/results/gen_speed]

Every model is loaded at once and timed interleaved, prompt by prompt (vocabadapt.evaluation.cost.measure_speed:
greedy, KV cache, EOS suppressed so every model writes the same number of new bytes), on --threads threads.
MACs per byte: the meta-device count of the linear layers (body + head) times each model's tokens per byte
on the held-out text. The transplanted model (model/init of a run) has the adapted architecture, so its cost
figures are those of every stage's model of that run. The ratios are the result; absolute bytes/s depend on
the machine. Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import common
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from vocabadapt.evaluation import cost
from vocabadapt.evaluation.bpb import encode
from vocabadapt.evaluation.suite import read_texts

HELDOUT = common.ROOT / "examples" / "pubmed_demo" / "corpus" / "heldout.jsonl.gz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model", action="append", required=True, help="LABEL=HF_DIR (repeatable; the first is the reference)"
    )
    ap.add_argument("--heldout", type=Path, default=HELDOUT, help="held-out text (.jsonl[.gz] or .txt)")
    ap.add_argument("--prompts", type=int, default=20)
    ap.add_argument("--prompt-bytes", type=int, default=256)
    ap.add_argument("--new-bytes", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=common.ROOT / "benchmarks" / "results" / "gen_speed")
    args = ap.parse_args()
    texts = read_texts(args.heldout, 200)
    prompts = cost.prompts_from(texts, args.prompts, args.prompt_bytes)
    models, rows = {}, {}
    for spec in args.model:
        label, path = spec.split("=", 1)
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        models[label] = (model, tok)
        n_bytes = sum(len(t.encode("utf-8")) for t in texts)
        bpt = n_bytes / sum(len(encode(tok, t)) for t in texts)
        rows[label] = {
            "path": path,
            **cost.cost_per_byte(cost.macs_per_token(model), bpt),
            "parameter_bytes": cost.parameter_bytes(model),
        }
    common.log(f"{len(prompts)} prompts of <= {args.prompt_bytes} bytes, {args.new_bytes} new bytes each")
    speed = cost.measure_speed(models, prompts, args.new_bytes, threads=args.threads)
    for label in rows:
        rows[label].update(speed[label])
    ref = next(iter(rows))
    keys = ["macs_per_byte", "head_macs_per_byte", "parameter_bytes", "generate_bytes_per_s", "score_bytes_per_s"]
    ratio = cost.ratios(rows, ref, keys)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(
        json.dumps(
            {"machine": common.machine(), "load": common.load_average(), "models": rows, f"ratio_to_{ref}": ratio},
            indent=2,
            default=str,
        )
    )
    cmd = "python benchmarks/gen_speed.py " + " ".join(f"--model {m}" for m in args.model)
    lines = [
        "# Cost per byte side by side",
        "",
        f"`{cmd} --prompts {args.prompts} --new-bytes {args.new_bytes} --threads {args.threads}`",
        f"(held-out text {args.heldout.name}; models timed interleaved in one run; ratios to {ref} in parentheses)",
        "",
        f"{common.machine()}, load {common.load_average()}",
        "",
        "| model | bytes/token | MACs/token (body + head) | MACs/byte | params MB | generate B/s | generate tok/s | score B/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, r in rows.items():
        q = ratio.get(label, {})

        def x(k: str, q: dict = q) -> str:
            return f" (x{q[k]:.2f})" if k in q else ""

        lines.append(
            f"| {label} | {r['bytes_per_token']:.3f} | {r['body_macs_per_token'] / 1e6:.1f}M + {r['head_macs_per_token'] / 1e6:.1f}M "
            f"| {r['macs_per_byte'] / 1e6:.1f}M{x('macs_per_byte')} | {r['parameter_bytes'] / 1e6:.0f}{x('parameter_bytes')} "
            f"| {r['generate_bytes_per_s']:.0f}{x('generate_bytes_per_s')} | {r['generate_tokens_per_s']:.1f} "
            f"| {r['score_bytes_per_s']:.0f}{x('score_bytes_per_s')} |"
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
