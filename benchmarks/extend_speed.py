"""Cost of learning a tokenizer extension against training a from-scratch BPE on the same text.

    python benchmarks/extend_speed.py --mb 10 50 [--new-tokens 8000] [--vocab 32000] [--work DIR]

For each size, the text is scale.py's pool (biomedical abstracts and full texts, general English blocks)
in shuffled copies, each document prefixed with its copy number (so copies are distinct words to neither
learner: the prefix is one word). Each measurement runs in its own process, one after the other, the two
learners alternating, so both see the same machine: wall seconds, CPU seconds and peak RSS (ru_maxrss) of
  extend  vocabadapt.text.extend.learn_extension(SmolLM2's tokenizer, texts, new_tokens): the source
          tokenizer encodes the text and the Rust BPE trainer learns merges over its tokens;
  bpe     vocabadapt.text.tokenizers.train_tokenizer(texts, bpe vocab): the tokenize stage's
          from-scratch byte-level BPE.
Writes benchmarks/results/extend_speed.md and .json.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import git_head, log, machine  # noqa: E402
from scale import pool_documents, smollm2_tokenizer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def texts(mb: float, seed: int = 0):
    """About `mb` MB of documents from the pool, streamed."""
    pool, target, written, copy = pool_documents(), int(mb * 1e6), 0, 0
    while written < target:
        order = list(range(len(pool)))
        random.Random(seed + copy).shuffle(order)
        for i in order:
            text = f"c{copy}: {pool[i]}"
            written += len(text.encode("utf-8"))
            yield text
            if written >= target:
                return
        copy += 1


def child(kind: str, mb: float, new_tokens: int, vocab: int, tok_dir: Path) -> None:
    import logging

    logging.disable(logging.WARNING)
    t0, c0 = time.perf_counter(), time.process_time()
    if kind == "extend":
        from transformers import AutoTokenizer

        from vocabadapt.text.extend import learn_extension

        out = len(learn_extension(AutoTokenizer.from_pretrained(tok_dir), texts(mb), new_tokens).new_tokens)
    else:
        from vocabadapt.config import TokenizerTrainSpec
        from vocabadapt.text.tokenizers import batches, train_tokenizer

        out = len(train_tokenizer(batches(texts(mb), 1000), TokenizerTrainSpec(vocab_size=vocab)))
    ru = resource.getrusage(resource.RUSAGE_SELF)
    wall, cpu = time.perf_counter() - t0, ru.ru_utime + ru.ru_stime
    print(
        json.dumps(
            {
                "wall_s": wall,
                "cpu_s": cpu,
                "cpu_in_call_s": time.process_time() - c0,
                "peak_mb": ru.ru_maxrss / 1024,
                "tokens": out,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, nargs="+", default=[10.0, 50.0])
    ap.add_argument("--new-tokens", type=int, default=8000)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "extend_speed")
    ap.add_argument("--child", choices=["extend", "bpe"])
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    tok_dir = smollm2_tokenizer(args.work)
    if args.child:
        return child(args.child, args.mb[0], args.new_tokens, args.vocab, tok_dir)
    rows = []
    for mb in args.mb:
        for kind in ("extend", "bpe"):
            cmd = [sys.executable, __file__, "--child", kind, "--mb", str(mb), "--new-tokens", str(args.new_tokens)]
            cmd += ["--vocab", str(args.vocab), "--work", str(args.work)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT).stdout
            rows.append({"kind": kind, "mb": mb, **json.loads(out.strip().splitlines()[-1])})
            log(f"{kind} {mb} MB: {rows[-1]}")
    res = {
        "commit": git_head(),
        "machine": machine(),
        "command": "python benchmarks/extend_speed.py " + " ".join(sys.argv[1:]),
        "rows": rows,
    }
    (RESULTS / "extend_speed.json").write_text(json.dumps(res, indent=1))
    L = [
        "# Learning an extension vs training a BPE from scratch",
        "",
        f"Commit {res['commit']}; {res['machine']}.",
        f"Command: `{res['command']}`",
        "",
    ]
    L += [
        f"Extension: +{args.new_tokens} tokens over SmolLM2-135M's tokenizer; BPE: {args.vocab} tokens from scratch.",
        "",
    ]
    L += [
        "| MB of text | extend wall s | extend CPU s | extend peak MB | BPE wall s | BPE CPU s | BPE peak MB | CPU ratio extend / BPE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mb in args.mb:
        e, b = (next(r for r in rows if r["kind"] == k and r["mb"] == mb) for k in ("extend", "bpe"))
        L.append(
            f"| {mb:g} | {e['wall_s']:.1f} | {e['cpu_s']:.1f} | {e['peak_mb']:.0f} | {b['wall_s']:.1f} | {b['cpu_s']:.1f} "
            f"| {b['peak_mb']:.0f} | {e['cpu_s'] / b['cpu_s']:.2f} |"
        )
    (RESULTS / "extend_speed.md").write_text("\n".join(L) + "\n")


if __name__ == "__main__":
    main()
