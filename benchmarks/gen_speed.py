"""Cost per byte side by side: MACs per byte, parameter memory, greedy generation and scoring speed in bytes/s.

    python -m benchmarks.gen_speed --model source=DIR --model target=DIR [--heldout FILE] [--prompts 20]
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
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from benchmarks.harness import (
    RESULTS,
    ROOT,
    Block,
    load_average,
    log,
    machine,
    markdown_text,
    read_json,
    write_json,
    write_markdown,
)
from vocabadapt.evaluation import cost
from vocabadapt.evaluation.bpb import encode
from vocabadapt.evaluation.suite import read_texts

HELDOUT = ROOT / "examples" / "pubmed_demo" / "corpus" / "heldout.jsonl.gz"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.gen_speed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--model", action="append", help="LABEL=HF_DIR (repeatable; the first is the reference; required to run)"
    )
    ap.add_argument("--heldout", type=Path, default=HELDOUT, help="held-out text (.jsonl[.gz] or .txt)")
    ap.add_argument("--prompts", type=int, default=20)
    ap.add_argument("--prompt-bytes", type=int, default=256)
    ap.add_argument("--new-bytes", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS / "gen_speed")
    ap.add_argument("--render", action="store_true", help="only rewrite gen_speed.md beside --out from its .json")
    args = ap.parse_args(argv)
    if args.render:
        for name, text in rendered_files(args.out.parent).items():
            (args.out.parent / name).write_text(text)
        return
    if not args.model:
        ap.error("--model is required to run (or give --render)")
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
    log(f"{len(prompts)} prompts of <= {args.prompt_bytes} bytes, {args.new_bytes} new bytes each")
    speed = cost.measure_speed(models, prompts, args.new_bytes, threads=args.threads)
    for label in rows:
        rows[label].update(speed[label])
    ref = next(iter(rows))
    keys = ["macs_per_byte", "head_macs_per_byte", "parameter_bytes", "generate_bytes_per_s", "score_bytes_per_s"]
    ratio = cost.ratios(rows, ref, keys)
    command = "python -m benchmarks.gen_speed " + " ".join(f"--model {m}" for m in args.model)
    command += f" --prompts {args.prompts} --new-bytes {args.new_bytes} --threads {args.threads}"
    record = {
        "machine": machine(),
        "load": load_average(),
        "models": rows,
        f"ratio_to_{ref}": ratio,
        "command": command,
        "heldout": args.heldout.name,
    }
    write_json(args.out.with_suffix(".json"), record, indent=2)
    write_markdown(args.out.with_suffix(".md"), render(record))
    log(f"wrote {args.out.with_suffix('.md')}")


COLUMNS = ["model", "bytes/token", "MACs/token (body + head)", "MACs/byte", "params MB", "generate B/s"]
COLUMNS += ["generate tok/s", "score B/s"]


def render(record: dict) -> list[Block]:
    """OUT.md of the record OUT.json as Markdown blocks (the record alone decides every byte)."""
    rows, ref = record["models"], next(iter(record["models"]))
    ratio = record[f"ratio_to_{ref}"]
    table = []
    for label, r in rows.items():
        q = ratio.get(label, {})

        def x(k: str, q: dict = q) -> str:
            return f" (x{q[k]:.2f})" if k in q else ""

        table.append(
            [
                label,
                f"{r['bytes_per_token']:.3f}",
                f"{r['body_macs_per_token'] / 1e6:.1f}M + {r['head_macs_per_token'] / 1e6:.1f}M",
                f"{r['macs_per_byte'] / 1e6:.1f}M{x('macs_per_byte')}",
                f"{r['parameter_bytes'] / 1e6:.0f}{x('parameter_bytes')}",
                f"{r['generate_bytes_per_s']:.0f}{x('generate_bytes_per_s')}",
                f"{r['generate_tokens_per_s']:.1f}",
                f"{r['score_bytes_per_s']:.0f}{x('score_bytes_per_s')}",
            ]
        )
    return [
        ("h", 1, "Cost per byte side by side"),
        (
            "p",
            f"`{record['command']}`\n(held-out text {record['heldout']}; models timed interleaved in one run; "
            f"ratios to {ref} in parentheses)",
        ),
        ("p", f"{record['machine']}, load {record['load']}"),
        ("table", COLUMNS, table),
    ]


def rendered_files(results: Path) -> dict[str, str]:
    """{"gen_speed.md": its Markdown} from gen_speed.json in `results` (what --render writes)."""
    return {"gen_speed.md": markdown_text(render(read_json(results / "gen_speed.json")))}


if __name__ == "__main__":
    main()
