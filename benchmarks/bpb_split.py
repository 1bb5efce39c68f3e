"""Where a transplanted model loses its bits: held-out bits per byte split by the kind of target token.

    python -m benchmarks.bpb_split RUN_DIR [--model RUN_DIR/model/init] [--source-model DIR] [--docs 40]

Both models score the same held-out documents (the first --docs of RUN_DIR/corpus/heldout.jsonl, as
the evaluate stage takes them; each cut to its first --max-chars characters so one window holds it).
Each target token is put in one class:

    new              not identical to a source token (vocabadapt.text.vocab.identical_tokens; special
                     tokens match by role): its rows come from the initialiser
    kept, after new  identical to a source token (its rows are copied), the token before it is new
    kept, resplit    identical, but the source tokenizer does not cut the text there:
                     its byte span is not one source token's (a segmentation the model never saw)
    kept             identical, the same span as a source token, after a kept token

and the source model's bits for the same bytes are added up beside it: a source token counts towards
the target token in whose byte span it ends. The excess (target bits - source bits) per class says
whether the gap to the source model is in the new rows themselves, in the copied rows that read them
as context, or spread evenly. Both tokenizers must be fast (character offsets).
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from benchmarks.harness import Block, markdown_text

REPO = Path(__file__).resolve().parents[1]

LN2 = math.log(2.0)
CLASSES = ("new", "kept, after new", "kept, resplit", "kept")


def token_bits(
    model: Any, tokenizer: Any, text: str, new: torch.Tensor | None = None
) -> tuple[list[int], list[float], list[int], list[int], list[float]]:
    """(ids, bits of each id given the ones before it and a start token, start and end character of each
    id, probability the model puts on the ids flagged in `new` at each position)."""
    from vocabadapt.evaluation.bpb import start_token

    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    starts, ends = [b for b, _ in enc["offset_mapping"]], [e for _, e in enc["offset_mapping"]]
    seq = torch.tensor([[start_token(tokenizer), *ids]])
    with torch.no_grad():
        logp = torch.log_softmax(model(seq).logits[0, :-1].float(), dim=-1)
    nats = -logp[torch.arange(len(ids)), torch.tensor(ids)]
    mass = logp[:, : new.numel()].exp()[:, new].sum(-1).tolist() if new is not None else [0.0] * len(ids)
    return ids, (nats / LN2).tolist(), starts, ends, mass


def split(run_dir: Path, model_dir: Path, source_dir: Path, n_docs: int, max_chars: int) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from vocabadapt.text.vocab import identical_tokens, special_map

    docs = []
    with open(run_dir / "corpus" / "heldout.jsonl", encoding="utf-8") as f:
        for line in f:
            text = json.loads(line)["text"][:max_chars]
            if text.strip():
                docs.append(text)
            if len(docs) == n_docs:
                break
    src_tok = AutoTokenizer.from_pretrained(run_dir / "tokenizers" / "source")
    tgt_tok = AutoTokenizer.from_pretrained(run_dir / "tokenizers" / "target")
    # kept = the rows the transplant copies: identical tokens (vocabadapt's own matching, across
    # families) and special tokens matched by role
    kept = set(identical_tokens(tgt_tok, src_tok)) | set(special_map(tgt_tok, src_tok)[0])
    src = AutoModelForCausalLM.from_pretrained(source_dir, dtype=torch.float32).eval()
    tgt = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    new_ids = torch.ones(len(tgt_tok), dtype=torch.bool)
    new_ids[sorted(kept)] = False
    zero = {"tokens": 0, "bytes": 0, "target_bits": 0.0, "source_bits": 0.0, "mass_on_new": 0.0}
    acc: dict[str, dict[str, Any]] = {c: dict(zero) for c in CLASSES}
    worst: dict[str, Counter] = {c: Counter() for c in CLASSES}  # excess bits by the token's text
    for text in docs:
        t_ids, t_bits, _, t_ends, t_mass = token_bits(tgt, tgt_tok, text, new_ids)
        _, s_bits, s_starts, s_ends, _ = token_bits(src, src_tok, text)
        spans = set(zip(s_starts, s_ends))
        j, start, prev_new = 0, 0, False
        for tid, bits, end, mass in zip(t_ids, t_bits, t_ends, t_mass):
            is_new = bool(new_ids[tid])
            if is_new:
                cls = "new"
            elif prev_new:
                cls = "kept, after new"
            else:
                # the offsets of a byte-level BPE token may include its leading space; compare both ways
                cls = "kept" if (start, end) in spans or (start + 1, end) in spans else "kept, resplit"
            a = acc[cls]
            a["tokens"] += 1
            a["bytes"] += len(text[start:end].encode("utf-8"))
            a["target_bits"] += bits
            a["mass_on_new"] += mass
            before = a["source_bits"]
            while j < len(s_ends) and s_ends[j] <= end:
                a["source_bits"] += s_bits[j]
                j += 1
            worst[cls][text[start:end]] += bits - (a["source_bits"] - before)
            start, prev_new = end, is_new
    total_bytes = sum(a["bytes"] for a in acc.values())
    total_excess = sum(a["target_bits"] - a["source_bits"] for a in acc.values())
    rows = []
    for c in CLASSES:
        a = acc[c]
        excess = a["target_bits"] - a["source_bits"]
        rows.append(
            {
                "class": c,
                **a,
                "target_bpb": a["target_bits"] / a["bytes"] if a["bytes"] else None,
                "source_bpb": a["source_bits"] / a["bytes"] if a["bytes"] else None,
                "share_of_bytes": a["bytes"] / total_bytes,
                "share_of_excess": excess / total_excess if total_excess else None,
                "mean_mass_on_new": a["mass_on_new"] / a["tokens"] if a["tokens"] else None,
                "most_excess": [[t, round(b, 1)] for t, b in worst[c].most_common(8)],
            }
        )
    return {
        "documents": len(docs),
        "bytes": total_bytes,
        "target_bpb": sum(a["target_bits"] for a in acc.values()) / total_bytes,
        "source_bpb": sum(a["source_bits"] for a in acc.values()) / total_bytes,
        "rows": rows,
    }


SPLIT_COLUMNS = ["target token", "tokens", "share of bytes", "target bpb", "source bpb, same bytes"]
SPLIT_COLUMNS += ["excess bits per byte", "share of the excess", "probability on new tokens"]


def render(res: dict[str, Any], title: str) -> list[Block]:
    """The split of `res` (from split()) as Markdown blocks: one row per class of target token."""
    rows = [
        [r["class"], f"{r['tokens']:,}", f"{r['share_of_bytes']:.1%}", f"{r['target_bpb']:.3f}"]
        + [f"{r['source_bpb']:.3f}", f"{r['target_bpb'] - r['source_bpb']:+.3f}"]
        + ["-" if r["share_of_excess"] is None else format(r["share_of_excess"], ".1%"), f"{r['mean_mass_on_new']:.3f}"]
        for r in res["rows"]
        if r["bytes"]
    ]
    excess = [f"- {r['class']}: " + ", ".join(f"`{t!r}` {b:+.0f}" for t, b in r["most_excess"]) for r in res["rows"]]
    return [
        (
            "p",
            f"{title}: {res['documents']} documents, {res['bytes']:,} bytes; target {res['target_bpb']:.4f} bpb, "
            f"source {res['source_bpb']:.4f} bpb on the same bytes",
        ),
        ("table", SPLIT_COLUMNS, rows),
        ("p", "Texts with the most excess bits in each class (summed over their occurrences):"),
        ("p", "\n".join(excess)),
    ]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bpb_split", description=__doc__.split("\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--model", type=Path, default=None, help="the target model (default RUN_DIR/model/init)")
    p.add_argument("--source-model", type=Path, default=None, help="default: models.source_model of the run")
    p.add_argument("--docs", type=int, default=40)
    p.add_argument("--max-chars", type=int, default=6000)
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = p.parse_args(argv)
    if args.source_model is None:
        from vocabadapt.config import load_config

        named = load_config(args.run_dir / "config.yaml").models.source_model
        if named is None:
            raise SystemExit(f"{args.run_dir / 'config.yaml'} names no models.source_model; pass --source-model")
        args.source_model = Path(named)
    model = args.model or args.run_dir / "model" / "init"
    res = split(args.run_dir, model, args.source_model, args.docs, args.max_chars)
    print(markdown_text(render(res, f"{model}")))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
