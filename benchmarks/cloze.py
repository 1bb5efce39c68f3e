"""Score Hugging Face model directories on the BC5CDR entity cloze (examples/bc5cdr_cloze/), as lm-eval does.

    python benchmarks/cloze.py --model source=DIR [--model stage2=DIR ...] [--limit N] [--out results/cloze_smollm2]

SmolLM2-135M's HF directory is the dequantised GGUF in ~/.cache/vocabadapt/gguf/<sha256>/ (made by any demo
run). One thread. Writes OUT.json (every figure, no per-question predictions) and OUT.md (a table).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import common
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from vocabadapt.evaluation.cloze import load_cloze, score_cloze

QUESTIONS = common.ROOT / "examples" / "bc5cdr_cloze" / "bc5cdr_cloze.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, help="LABEL=HF_DIR (repeatable)")
    ap.add_argument("--limit", type=int, default=None, help="a seeded sample of N questions (default: all)")
    ap.add_argument("--context", type=int, default=None, help="tokens of context (default: the model's)")
    ap.add_argument("--out", type=Path, default=common.ROOT / "benchmarks" / "results" / "cloze_smollm2")
    args = ap.parse_args()
    torch.set_num_threads(1)
    questions = load_cloze(QUESTIONS, max_samples=args.limit)
    results = {}
    for spec in args.model:
        label, path = spec.split("=", 1)
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        t0 = time.perf_counter()
        r = score_cloze(model, tok, questions, context=args.context, batch_size=8)
        r.pop("predictions")
        r["seconds"] = time.perf_counter() - t0
        r["model"] = path
        results[label] = r
        common.log(
            f"{label}: acc {r['acc']:.3f} {r['acc_ci95']}, acc_norm {r['acc_norm']:.3f} {r['acc_norm_ci95']} "
            f"(n={r['n']}, chance {r['chance']:.2f}, {r['seconds']:.0f} s)"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"questions": str(QUESTIONS), "results": results}, indent=2))
    lines = [
        "# BC5CDR entity cloze",
        "",
        f"`python benchmarks/cloze.py {' '.join('--model ' + m for m in args.model)}"
        + (f" --limit {args.limit}" if args.limit else "")
        + "` (1 thread)",
        "",
        "| model | n | acc [95 % CI] | acc_norm [95 % CI] | Chemical acc | Disease acc | s |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, r in results.items():
        ci = r["acc_ci95"]
        cn = r["acc_norm_ci95"]
        bt = r["by_type"]
        lines.append(
            f"| {label} | {r['n']} | {r['acc']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] | {r['acc_norm']:.3f} "
            f"[{cn[0]:.3f}, {cn[1]:.3f}] | {bt.get('Chemical', {}).get('acc', float('nan')):.3f} | "
            f"{bt.get('Disease', {}).get('acc', float('nan')):.3f} | {r['seconds']:.0f} |"
        )
    lines += ["", f"Chance is {next(iter(results.values()))['chance']:.2f} (4 choices)."]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
