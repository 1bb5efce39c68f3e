"""Score Hugging Face model directories on the BC5CDR entity cloze (examples/bc5cdr_cloze/), as lm-eval does.

    python -m benchmarks.cloze --model source=DIR [--model stage2=DIR ...] [--limit N] [--out results/cloze_smollm2]

SmolLM2-135M's HF directory is the dequantised GGUF in ~/.cache/vocabadapt/gguf/<sha256>/ (made by any demo
run). One thread. Writes OUT.json (every figure, no per-question predictions) and OUT.md (a table).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from benchmarks.harness import RESULTS, ROOT, Block, log, markdown_text, read_json, write_json, write_markdown
from vocabadapt.evaluation.cloze import load_cloze, score_cloze

QUESTIONS = ROOT / "examples" / "bc5cdr_cloze" / "bc5cdr_cloze.jsonl"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.cloze", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", action="append", help="LABEL=HF_DIR (repeatable; required unless --render)")
    ap.add_argument("--limit", type=int, default=None, help="a seeded sample of N questions (default: all)")
    ap.add_argument("--context", type=int, default=None, help="tokens of context (default: the model's)")
    ap.add_argument("--out", type=Path, default=RESULTS / "cloze_smollm2")
    ap.add_argument("--render", action="store_true", help="only rewrite every cloze*.md beside --out from its .json")
    args = ap.parse_args(argv)
    if args.render:
        for name, text in rendered_files(args.out.parent).items():
            (args.out.parent / name).write_text(text)
        return
    if not args.model:
        ap.error("--model is required to run (or give --render)")
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
        log(
            f"{label}: acc {r['acc']:.3f} {r['acc_ci95']}, acc_norm {r['acc_norm']:.3f} {r['acc_norm_ci95']} "
            f"(n={r['n']}, chance {r['chance']:.2f}, {r['seconds']:.0f} s)"
        )
    command = f"python -m benchmarks.cloze {' '.join('--model ' + m for m in args.model)}" + (
        f" --limit {args.limit}" if args.limit else ""
    )
    record = {"questions": str(QUESTIONS), "results": results, "command": command}
    write_json(args.out.with_suffix(".json"), record, indent=2)
    write_markdown(args.out.with_suffix(".md"), render(record))


def render(record: dict) -> list[Block]:
    """OUT.md of the record OUT.json as Markdown blocks (the record alone decides every byte)."""
    rows = []
    for label, r in record["results"].items():
        ci, cn, bt = r["acc_ci95"], r["acc_norm_ci95"], r["by_type"]
        rows.append(
            [
                label,
                r["n"],
                f"{r['acc']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]",
                f"{r['acc_norm']:.3f} [{cn[0]:.3f}, {cn[1]:.3f}]",
            ]
            + [f"{bt.get('Chemical', {}).get('acc', float('nan')):.3f}"]
            + [f"{bt.get('Disease', {}).get('acc', float('nan')):.3f}", f"{r['seconds']:.0f}"]
        )
    headers = ["model", "n", "acc [95 % CI]", "acc_norm [95 % CI]", "Chemical acc", "Disease acc", "s"]
    return [
        ("h", 1, "BC5CDR entity cloze"),
        ("p", f"`{record['command']}` (1 thread)"),
        ("table", headers, rows),
        ("p", f"Chance is {next(iter(record['results'].values()))['chance']:.2f} (4 choices)."),
    ]


def rendered_files(results: Path) -> dict[str, str]:
    """{results file name: Markdown} for every cloze*.json in `results` (what --render writes)."""
    return {p.with_suffix(".md").name: markdown_text(render(read_json(p))) for p in sorted(results.glob("cloze*.json"))}


if __name__ == "__main__":
    main()
