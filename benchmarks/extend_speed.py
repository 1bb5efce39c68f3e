"""Cost of learning a tokenizer extension against training a from-scratch BPE on the same text.

    python -m benchmarks.extend_speed --mb 10 50 [--new-tokens 8000] [--vocab 32000] [--work DIR]

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
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.harness import (
    ROOT,
    Block,
    git_head,
    log,
    machine,
    module_command,
    read_json,
    write_json,
    write_markdown,
)
from benchmarks.scale import pool_copies, pool_documents, smollm2_tokenizer

RESULTS = ROOT / "benchmarks" / "results"


def texts(mb: float, seed: int = 0) -> Iterator[str]:
    """About `mb` MB of documents from the pool, streamed (scale.py's corpus, not written to disk)."""
    return (text for _, text in pool_copies(pool_documents(), int(mb * 1e6), seed))


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
    ap = argparse.ArgumentParser(prog="python -m benchmarks.extend_speed", description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, nargs="+", default=[10.0, 50.0])
    ap.add_argument("--new-tokens", type=int, default=8000)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "extend_speed")
    ap.add_argument("--child", choices=["extend", "bpe"])
    ap.add_argument("--render", action="store_true", help="only rewrite results/extend_speed.md from its .json")
    args = ap.parse_args()
    if args.render:
        return write_markdown(RESULTS / "extend_speed.md", render(read_json(RESULTS / "extend_speed.json")))
    args.work.mkdir(parents=True, exist_ok=True)
    tok_dir = smollm2_tokenizer(args.work)
    if args.child:
        return child(args.child, args.mb[0], args.new_tokens, args.vocab, tok_dir)
    rows = []
    for mb in args.mb:
        for kind in ("extend", "bpe"):
            cmd = module_command("extend_speed", "--child", kind, "--mb", str(mb), "--new-tokens", str(args.new_tokens))
            cmd += ["--vocab", str(args.vocab), "--work", str(args.work)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT).stdout
            rows.append({"kind": kind, "mb": mb, **json.loads(out.strip().splitlines()[-1])})
            log(f"{kind} {mb} MB: {rows[-1]}")
    res = {
        "commit": git_head(),
        "machine": machine(),
        "command": "python -m benchmarks.extend_speed " + " ".join(sys.argv[1:]),
        "rows": rows,
    }
    res["new_tokens"], res["vocab"] = args.new_tokens, args.vocab
    write_json(RESULTS / "extend_speed.json", res)
    write_markdown(RESULTS / "extend_speed.md", render(res))
    log(f"wrote {RESULTS / 'extend_speed.md'}")


def render(res: dict) -> list[Block]:
    """extend_speed.md of record `res` as Markdown blocks (the record alone decides every byte)."""
    table = []
    for mb in dict.fromkeys(r["mb"] for r in res["rows"]):
        e, b = (next(r for r in res["rows"] if r["kind"] == k and r["mb"] == mb) for k in ("extend", "bpe"))
        table.append(
            [f"{mb:g}", f"{e['wall_s']:.1f}", f"{e['cpu_s']:.1f}", f"{e['peak_mb']:.0f}", f"{b['wall_s']:.1f}"]
            + [f"{b['cpu_s']:.1f}", f"{b['peak_mb']:.0f}", f"{e['cpu_s'] / b['cpu_s']:.2f}"]
        )
    headers = ["MB of text", "extend wall s", "extend CPU s", "extend peak MB", "BPE wall s", "BPE CPU s"]
    headers += ["BPE peak MB", "CPU ratio extend / BPE"]
    return [
        ("h", 1, "Learning an extension vs training a BPE from scratch"),
        ("p", f"Commit {res['commit']}; {res['machine']}.\nCommand: `{res['command']}`"),
        (
            "p",
            f"Extension: +{res['new_tokens']} tokens over SmolLM2-135M's tokenizer; BPE: {res['vocab']} tokens from "
            "scratch.",
        ),
        ("table", headers, table),
    ]


if __name__ == "__main__":
    main()
