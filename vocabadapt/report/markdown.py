"""The report as a document: a list of blocks (heading, paragraph, table, image, code), rendered to Markdown.

The same blocks are rendered to HTML by vocabadapt.report.html.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from ..evaluation import tasks
from .facts import RunFacts, fmt, get, model_names
from .plots import PLOTS

Block = tuple  # ("h", level, text) | ("p", text) | ("table", headers, rows) | ("img", file, caption) | ("code", text)


def _checklist_blocks(facts: RunFacts) -> list[Block]:
    blocks: list[Block] = [("h", 2, "Verification checklist")]
    if not facts.checklist:
        return blocks + [("p", "eval/checklist.json is missing: run the evaluate stage.")]
    counts = {s: sum(c.get("status") == s for c in facts.checklist) for s in ("pass", "fail", "not-run")}
    blocks.append(("p", f"{counts['pass']} pass, {counts['fail']} fail, {counts['not-run']} not run."))
    rows = []
    for c in facts.checklist:
        ev = c.get("evidence") or {}
        shown = "; ".join(
            f"{k}={fmt(v) if not isinstance(v, (dict, list)) else json.dumps(v)}"
            for k, v in ev.items()
            if k not in ("criterion",)
        )
        rows.append(
            [str(c.get("id")), c.get("name", ""), c.get("status", "?").upper(), c.get("reason", ""), shown[:400]]
        )
    blocks.append(("table", ["#", "check", "status", "why", "evidence"], rows))
    return blocks


def _model_blocks(facts: RunFacts) -> list[Block]:
    """The models table: bits per byte on each text set, token counts, then each evaluation task's columns
    (Task.report_columns), its notes (Task.report_notes) and its own blocks (Task.report_blocks)."""
    s = facts.summary
    blocks: list[Block] = [("h", 2, "Models")]
    names = model_names(s)
    if not names:
        return blocks + [("p", "eval/summary.json is missing or lists no model: run the evaluate stage.")]
    task_list = tasks.registered()
    datasets = list((s.get("datasets") or {}).keys()) or ["heldout"]
    rows = []
    headers: list[str] = []
    for n in names:
        bp = get(s, "models", n, "bpb") or {}
        label = n + (" (baseline)" if n == s.get("baseline") else "") + (" (final)" if n == s.get("final") else "")
        cells = (
            [("model", label)]
            + [(f"{d} bits/byte", fmt(get(bp, d, "bits_per_byte"))) for d in datasets]
            + [
                (
                    "bytes/token",
                    fmt(get(bp, "heldout", "bytes_per_token") or get(bp, datasets[0], "bytes_per_token"), 3),
                ),
                ("tokens", fmt(get(bp, "heldout", "tokens") or get(bp, datasets[0], "tokens"))),
                (
                    "token ppl*",
                    fmt(get(bp, "heldout", "token_perplexity") or get(bp, datasets[0], "token_perplexity"), 2),
                ),
            ]
            + [cell for t in task_list if t.report_columns for cell in t.report_columns(s, n)]
        )
        headers = [h for h, _ in cells]
        rows.append([c for _, c in cells])
    blocks.append(("table", headers, rows))
    notes = [
        "Bits per byte compares models with different tokenizers (lower is better). "
        "*Token perplexity is per token of each model's own tokenizer: compare it only between models "
        "that share a tokenizer."
    ]
    notes += [note for t in task_list if t.report_notes for note in t.report_notes(s, names)]
    for what, why in (s.get("skipped") or {}).items():
        notes.append(f"{what} skipped: {why}.")
    extra = [b for t in task_list if t.report_blocks for b in t.report_blocks(s, names)]
    return blocks + [("p", n) for n in notes] + extra


def _tokenizer_blocks(facts: RunFacts) -> list[Block]:
    toks = facts.summary.get("tokenizers") or {}
    blocks: list[Block] = [("h", 2, "Tokenizers and vocabulary cost")]
    sides = [x for x in ("source", "target") if isinstance(toks.get(x), dict)]
    if not sides:
        return blocks + [("p", "No tokenizer efficiency recorded.")]
    keys = [
        ("vocab_size", "vocabulary", 0),
        ("bytes_per_token", "bytes per token", 3),
        ("tokens_per_word", "tokens per word", 3),
        ("domain_words_one_token", "domain words in 1 token", 3),
        ("domain_words_two_tokens", "domain words in 2 tokens", 3),
        ("domain_word_mean_tokens", "tokens per domain word", 3),
    ]
    rows = [[label] + [fmt(toks[x].get(k), d) for x in sides] for k, label, d in keys]
    blocks.append(("table", ["measure"] + sides, rows))
    blocks.append(
        (
            "p",
            f"Domain words: the {fmt(get(toks, sides[0], 'domain_words'))} most frequent, from "
            f"{toks.get('domain_words_from', 'the held-out text')}.",
        )
    )
    cost = facts.summary.get("vocab_cost")
    if isinstance(cost, dict):
        rows = [[k.replace("_", " "), fmt(v, 2)] for k, v in cost.items() if k != "compared"]
        blocks.append(("table", ["vocabulary cost (" + " → ".join(cost.get("compared", [])) + ")", "value"], rows))
    return blocks


def _alignment_blocks(facts: RunFacts) -> list[Block]:
    a = facts.align
    blocks: list[Block] = [("h", 2, "Alignment")]
    if not a:
        return blocks + [("p", "align/summary.json is missing.")]
    rows = []
    for k, v in a.items():
        if k in ("similarity_histogram",):
            continue
        text = json.dumps(v) if isinstance(v, (dict, list)) else fmt(v)
        rows.append([k, text[:300]])
    blocks.append(("table", ["key", "value"], rows))
    if facts.transplant:
        t = facts.transplant
        rows = [
            [k, fmt(t.get(k))]
            for k in ("init", "zero_rows", "rows_copied", "tied", "target_vocab_size", "target_rows", "padding_rows")
            if k in t
        ]
        if rows:
            blocks.append(("table", ["transplant", "value"], rows))
    return blocks


def _timing_blocks(facts: RunFacts) -> list[Block]:
    stages = get(facts.manifest, "stages") or {}
    blocks: list[Block] = [("h", 2, "Stage timings")]
    if not stages:
        return blocks + [("p", "manifest.json is missing.")]
    rows = [
        [
            name,
            str(r.get("status", "?")),
            fmt(r.get("wall_s"), 1),
            fmt(r.get("peak_rss_mb"), 0),
            str(r.get("finished", "")),
        ]
        for name, r in stages.items()
        if isinstance(r, dict)
    ]
    total = sum(r.get("wall_s") or 0 for r in stages.values() if isinstance(r, dict))
    blocks.append(("table", ["stage", "status", "wall s", "peak RSS MB", "finished"], rows))
    blocks.append(("p", f"Total wall time of recorded stages: {total:.1f} s."))
    return blocks


def build_blocks(facts: RunFacts, images: dict[str, Path | None]) -> list[Block]:
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    final = facts.summary.get("final")
    blocks: list[Block] = [
        ("h", 1, f"vocabadapt report: {facts.name}"),
        ("p", f"Run directory {facts.location}; generated {now}." + (f" Final model: model/{final}." if final else "")),
    ]
    blocks += _checklist_blocks(facts)
    blocks += _model_blocks(facts)
    blocks.append(("h", 2, "Plots"))
    for name, _, caption, missing in PLOTS:
        if images.get(name) is not None:
            blocks.append(("img", name, caption))
        else:
            blocks.append(("p", f"{caption[:-1]}: not available ({missing})."))
    blocks += _tokenizer_blocks(facts)
    blocks += _alignment_blocks(facts)
    blocks += _timing_blocks(facts)
    blocks.append(("h", 2, "Config used"))
    blocks.append(("code", facts.config_text) if facts.config_text else ("p", "config.yaml is missing."))
    return blocks


def _md_cell(x: str) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        kind = b[0]
        if kind == "h":
            out.append("#" * b[1] + " " + b[2])
        elif kind == "p":
            out.append(b[1])
        elif kind == "table":
            out.append("| " + " | ".join(_md_cell(h) for h in b[1]) + " |")
            out.append("|" + "---|" * len(b[1]))
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b[2]]
        elif kind == "img":
            out.append(f"![{b[2]}]({b[1]})")
        elif kind == "code":
            out.append("```yaml\n" + b[1].rstrip("\n") + "\n```")
        out.append("")
    return "\n".join(out)
