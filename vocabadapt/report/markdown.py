"""The report as a document: a list of blocks (heading, paragraph, table, image, code), rendered to Markdown.

The same blocks are rendered to HTML by vocabadapt.report.html.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from .facts import RunFacts, ci, fmt, get, model_names
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
    s = facts.summary
    blocks: list[Block] = [("h", 2, "Models")]
    names = model_names(s)
    if not names:
        return blocks + [("p", "eval/summary.json is missing or lists no model: run the evaluate stage.")]
    datasets = list((s.get("datasets") or {}).keys()) or ["heldout"]
    headers = (
        ["model"]
        + [f"{d} bits/byte" for d in datasets]
        + [
            "bytes/token",
            "tokens",
            "token ppl*",
            "PubMedQA acc† [95% CI]",
            "acc_bytes‡ [95% CI]",
            "macro-F1 [95% CI]",
            "few-shot acc",
            "Δacc vs baseline [95% CI]",
        ]
    )
    rows = []
    for n in names:
        m = s["models"][n]
        bp = m.get("bpb") or {}
        q = m.get("pubmedqa") or {}
        fs = m.get("pubmedqa_fewshot") or {}
        d = get(s, "pubmedqa_vs_baseline", n) or {}
        label = n + (" (baseline)" if n == s.get("baseline") else "") + (" (final)" if n == s.get("final") else "")
        rows.append(
            [label]
            + [fmt(get(bp, ds, "bits_per_byte")) for ds in datasets]
            + [
                fmt(get(bp, "heldout", "bytes_per_token") or get(bp, datasets[0], "bytes_per_token"), 3),
                fmt(get(bp, "heldout", "tokens") or get(bp, datasets[0], "tokens")),
                fmt(get(bp, "heldout", "token_perplexity") or get(bp, datasets[0], "token_perplexity"), 2),
                ci(q.get("acc"), q.get("acc_ci95")),
                ci(q.get("acc_bytes"), q.get("acc_bytes_ci95")),
                ci(q.get("macro_f1"), q.get("macro_f1_ci95")),
                ci(fs.get("acc"), fs.get("acc_ci95")),
                ci(d.get("accuracy_diff"), d.get("accuracy_diff_ci95")) if d else "–",
            ]
        )
    blocks.append(("table", headers, rows))
    notes = [
        "Bits per byte compares models with different tokenizers (lower is better). "
        "*Token perplexity is per token of each model's own tokenizer: compare it only between models "
        "that share a tokenizer."
    ]
    if s.get("pubmedqa_file"):
        n_q = get(s, "models", names[0], "pubmedqa", "n")
        notes.append(
            f"PubMedQA: {s['pubmedqa_file']} ({fmt(n_q)} questions). †acc is lm-evaluation-harness's pubmedqa "
            f"accuracy (prompt 'Abstract: …\\nQuestion: …\\nAnswer:', answer = highest summed log-likelihood of "
            f"' yes' / ' no' / ' maybe'), comparable with published figures; macro-F1, few-shot acc and Δ use "
            f"that choice. ‡acc_bytes divides the same log-likelihoods by the answer's bytes (lm-eval's "
            f"acc_bytes). Intervals are 95 % bootstrap, Δ is a paired bootstrap."
        )
    for what, why in (s.get("skipped") or {}).items():
        notes.append(f"{what} skipped: {why}.")
    return blocks + [("p", n) for n in notes] + _task_blocks(s, names) + _lm_eval_blocks(s, names)


def _task_blocks(s: dict, names: list[str]) -> list[Block]:
    """One table of the registered tasks' report columns (cloze, retention, cost per byte), a row per model."""
    from ..evaluation.tasks import TASKS

    hooks = [t.report_columns for t in TASKS.values() if t.report_columns]
    rows, headers = [], None
    for n in names:
        cells = [c for hook in hooks for c in hook(s, n)]
        if headers is None:
            headers = ["model"] + [h for h, _ in cells]
        rows.append([n] + [v for _, v in cells])
    if not headers or all(v == "–" for r in rows for v in r[1:]):
        return []
    note = (
        "Cloze: lm-eval multiple_choice accuracy on the BC5CDR entity cloze (chance 0.25), Δ a paired bootstrap "
        "against the source. General bpb: bits per byte on general English (evaluation.general_inputs), Δ relative "
        "to the source: what adaptation forgot. MACs/byte: multiply-adds of the linear layers (body + head) per "
        "byte of held-out text; B/s: bytes of text per second, greedy generation with the KV cache and prompt "
        "scoring, each model timed interleaved with the source in one run (ratios to the source in parentheses)."
    )
    return [("h", 3, "Domain task, retention and cost per byte"), ("table", headers, rows), ("p", note)]


def _lm_eval_blocks(s: dict, names: list[str]) -> list[Block]:
    """One row per lm-eval task and metric: each model's value ± stderr, and its difference from the source."""
    if not any(get(s, "models", n, "lm_eval") for n in names):
        return []
    pairs = sorted(
        {
            (task, metric)
            for n in names
            for task, t in (get(s, "models", n, "lm_eval", "tasks") or {}).items()
            for metric in t.get("metrics", {})
        }
    )
    rows = []
    for task, metric in pairs:
        row = [task, metric]
        for n in names:
            v = get(s, "models", n, "lm_eval", "tasks", task, "metrics", metric) or {}
            d = get(s, "lm_eval_vs_source", n, task, metric)
            row.append(
                fmt(v.get("value"))
                + (f" ± {fmt(v.get('stderr'))}" if v.get("stderr") is not None else "")
                + (f" ({d:+.4f})" if isinstance(d, (int, float)) else "")
            )
        rows.append(row)
    return [
        ("h", 3, "lm-evaluation-harness tasks"),
        ("table", ["task", "metric"] + names, rows),
        (
            "p",
            "Value ± lm-eval's standard error; in brackets the difference from the source model. Run by "
            "lm-eval's own code on each model (evaluation.lm_eval).",
        ),
    ]


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
