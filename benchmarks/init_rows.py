"""Held-out bits per byte right after the transplant, one row per initialiser, on one run directory.

    python -m benchmarks.init_rows RUN_DIR [--inits fvt_prior,fvt,chain,tokalign,mean,random] [--docs 40]
                                   [--source] [--out FILE.md]

RUN_DIR is a run that went as far as the align stage (`vocabadapt run CONFIG --until align`); its source
model (models.source_model of RUN_DIR/config.yaml) is transplanted with each initialiser by the package's own
transplant (the same call the transplant stage makes, calibration included) into a temporary directory, and
scored with vocabadapt.evaluation.bpb on the first --docs documents of RUN_DIR/corpus/heldout.jsonl (what the
evaluate stage scores with evaluation.max_samples = --docs). "chain" is alignment.init = null; "focus" is
FOCUS (deepfocus, in the throwaway venv of benchmarks/quality.py, $FOCUS_VENV) written over a mean-initialised
transplant, as quality.py's FOCUS row does. --source adds
the source model with its own tokenizer. One torch thread unless OMP_NUM_THREADS says otherwise.
Prints a markdown table (and appends it to --out): bpb, bytes per token, transplant wall seconds.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from benchmarks.harness import log, markdown_text


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.init_rows", description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--inits", default="fvt_prior,fvt,chain")
    ap.add_argument("--docs", type=int, default=40)
    ap.add_argument("--source", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from transformers import AutoModelForCausalLM

    from vocabadapt.config import load_config
    from vocabadapt.evaluation.bpb import bits_per_byte
    from vocabadapt.init import reads_vectors
    from vocabadapt.init.calibration import Calibration
    from vocabadapt.io import read_json_or_none
    from vocabadapt.model.hub import resolve_model_dir
    from vocabadapt.model.transplant import transplant_model
    from vocabadapt.run.layout import RunLayout
    from vocabadapt.stages.transplant import first_bytes

    manifest = read_json_or_none(args.run_dir / "manifest.json") or {}
    aligned = manifest.get("stages", {}).get("align", {}).get("summary", {}).get("vector_alignment", {}).get("done")
    inits = [(name, {"chain": None, "focus": "mean"}.get(name, name)) for name in args.inits.split(",")]
    if aligned is False and (need := [n for n, i in inits if reads_vectors(i)]):
        raise SystemExit(
            f"{args.run_dir}: its align stage ran without vectors, so {', '.join(need)} would be FVT's fallback "
            "rows only; rerun it with vectors first: vocabadapt run CONFIG --run-dir RUN --until align "
            "--set embedding.enabled=true"
        )
    layout = RunLayout(args.run_dir)
    cfg = load_config(args.run_dir / "config.yaml")
    model_dir = resolve_model_dir(cfg.models.source_model, cfg.tokenization.cache_dir)
    src_tok, tgt_tok = layout.tokenizer("source"), layout.tokenizer("target")
    texts = layout.heldout_texts()[: args.docs]
    title = (
        f"{args.run_dir.name}: {len(texts)} held-out docs, {sum(len(t.encode()) for t in texts):,} bytes; "
        f"source {model_dir}"
    )
    rows: list[list[str]] = []
    log(title)

    def row(name: str, model, tok, wall: float) -> None:
        r = bits_per_byte(model, tok, texts, batch_size=8)
        rows.append([name, f"{r['bits_per_byte']:.4f}", f"{r['bytes_per_token']:.3f}", f"{wall:.0f}"])
        log(" | ".join(rows[-1]))

    if args.source:
        row(
            "source (own tokenizer)",
            AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32),
            src_tok,
            0,
        )
    calibration = Calibration(
        texts=first_bytes(layout.corpus_texts("train"), cfg.alignment.calibration_bytes),
        max_tokens=cfg.alignment.calibration_tokens,
    )
    for name, init in inits:
        with tempfile.TemporaryDirectory(dir=args.run_dir) as tmp:
            t = time.perf_counter()
            transplant_model(
                model_dir,
                src_tok,
                tgt_tok,
                layout.token_mapping(),
                Path(tmp) / "m",
                init=init,
                norm_match=cfg.alignment.norm_match,
                seed=cfg.alignment.seed,
                calibration=calibration,
            )
            if name == "focus":  # FOCUS's rows over the mean transplant (quality.py's child, 3 fastText epochs)
                import subprocess

                from benchmarks.quality import FOCUS_CHILD, FOCUS_VENV

                cmd = [str(FOCUS_VENV / "bin" / "python"), "-c", FOCUS_CHILD, str(args.run_dir), str(Path(tmp) / "m")]
                r = subprocess.run([*cmd, "3", str(model_dir)], capture_output=True, text=True)
                if r.returncode != 0:
                    raise SystemExit(f"FOCUS child failed (exit {r.returncode}):\n{r.stderr[-2000:]}")
            wall = time.perf_counter() - t
            row(name, AutoModelForCausalLM.from_pretrained(str(Path(tmp) / "m"), dtype=torch.float32), tgt_tok, wall)
    blocks = [("p", title), ("table", ["init", "bpb at init", "bytes/token", "transplant s"], rows)]
    print(markdown_text(blocks), flush=True)
    if args.out:  # a section appended to a results file that collects several runs (init_smollm2.md)
        with open(args.out, "a", encoding="utf-8") as f:
            f.write("\n" + markdown_text(blocks))


if __name__ == "__main__":
    main()
