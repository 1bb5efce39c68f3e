"""The run report: report/report.md, a self-contained report/report.html and report/*.png.

Reads only files that earlier stages wrote into the run directory (eval/summary.json,
eval/checklist.json, train/<stage>/metrics.jsonl, train/summary.json, align/summary.json,
model/init/transplant.json, config.yaml, manifest.json). Anything missing becomes a line saying so,
never an exception, so a report can be made from a partial run.

The document is built once as a list of blocks (heading, paragraph, table, image, code) and
rendered twice: to Markdown (images as files next to it) and to HTML (images inlined as base64, so
the one file can be mailed or attached to an issue). Plots use matplotlib's object API with the
Agg canvas (no display, no global pyplot state).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .evaluation.checklist import read_json_or_none, read_metrics
from .errors import InputError
from .io import atomic_dir, atomic_write

log = logging.getLogger(__name__)

MODEL_ORDER = ("source", "baseline", "init", "stage1", "stage2")
STAGES = ("stage1", "stage2")


# --------------------------------------------------------------------------------------------------
# reading the run


# JSON readers shared with the checklist: a missing or unreadable file is None / [] (logged).
_read_json = read_json_or_none
_read_jsonl = read_metrics


@dataclass
class RunFacts:
    run_dir: Path
    summary: dict
    checklist: list
    train: dict
    metrics: dict[str, list[dict]]
    align: dict
    transplant: dict
    manifest: dict
    config_text: str | None


def read_run(run_dir: Path) -> RunFacts:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"run directory {run_dir} does not exist")
    cfg = run_dir / "config.yaml"
    return RunFacts(
        run_dir=run_dir,
        summary=_read_json(run_dir / "eval" / "summary.json") or {},
        checklist=_read_json(run_dir / "eval" / "checklist.json") or [],
        train=_read_json(run_dir / "train" / "summary.json") or {},
        metrics={s: _read_jsonl(run_dir / "train" / s / "metrics.jsonl") for s in STAGES},
        align=_read_json(run_dir / "align" / "summary.json") or {},
        transplant=_read_json(run_dir / "model" / "init" / "transplant.json") or {},
        manifest=_read_json(run_dir / "manifest.json") or {},
        config_text=cfg.read_text(encoding="utf-8") if cfg.is_file() else None,
    )


def _get(d: Any, *keys: Any) -> Any:
    for k in keys:
        if isinstance(d, dict):
            d = d.get(k)
        elif isinstance(d, list) and isinstance(k, int) and -len(d) <= k < len(d):
            d = d[k]
        else:
            return None
    return d


def _f(x: Any, digits: int = 4) -> str:
    if isinstance(x, bool) or x is None:
        return "–" if x is None else str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:,.0f}" if abs(x) >= 10_000 else f"{x:.{digits}f}"
    return str(x)


def _ci(v: Any, ci: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(ci, list) and len(ci) == 2:
        return f"{v:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    return f"{v:.{digits}f}"


def _models(summary: dict) -> list[str]:
    models = summary.get("models", {})
    return [m for m in MODEL_ORDER if m in models] + [m for m in models if m not in MODEL_ORDER]


# --------------------------------------------------------------------------------------------------
# plots


def _figure(width: float = 7.0, height: float = 3.6):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _tokens_axis(recs: list[dict], stage: dict | None) -> tuple[list[float], str]:
    """x values of metric lines: their 'tokens' field, else step x tokens per step, else step."""
    if recs and all(isinstance(r.get("tokens"), (int, float)) for r in recs):
        return [float(r["tokens"]) for r in recs], "tokens"
    steps, tokens = _get(stage, "steps"), _get(stage, "tokens")
    if isinstance(steps, (int, float)) and steps and isinstance(tokens, (int, float)) and tokens:
        per = tokens / steps
        return [float(r.get("step", 0)) * per for r in recs], "tokens"
    return [float(r.get("step", 0)) for r in recs], "steps"


def plot_training(facts: RunFacts, out: Path) -> Path | None:
    """Training loss and held-out bits per byte against tokens, stage 2 continuing after stage 1."""
    series: dict[str, dict[str, tuple[list[float], list[float]]]] = {"loss": {}, "bpb": {}}
    offset, unit = 0.0, "tokens"
    for s in STAGES:
        recs = facts.metrics.get(s) or []
        stage = facts.train.get(s) if isinstance(facts.train, dict) else None
        train = [r for r in recs if isinstance(r.get("loss"), (int, float)) and r.get("type", "train") == "train"]
        evals = [r for r in recs if isinstance(r.get("heldout_bpb"), (int, float))]
        x_train, unit_t = _tokens_axis(train, stage)
        x_eval, _ = _tokens_axis(evals, stage)
        unit = unit_t if train else unit
        if train:
            series["loss"][s] = ([offset + x for x in x_train], [float(r["loss"]) for r in train])
        bx, by = [offset + x for x in x_eval], [float(r["heldout_bpb"]) for r in evals]
        before = _get(stage, "heldout_bpb_before")
        if isinstance(before, (int, float)):
            bx, by = [offset] + bx, [float(before)] + by
        if bx:
            series["bpb"][s] = (bx, by)
        span = _get(stage, "tokens")
        if isinstance(span, (int, float)) and unit == "tokens":
            offset += float(span)
        elif x_train:
            offset = max(offset, x_train[-1] + offset)
    if not series["loss"] and not series["bpb"]:
        return None
    fig = _figure(9.0, 3.6)
    ax1, ax2 = fig.subplots(1, 2)
    for ax, key, title, ylabel in ((ax1, "loss", "Training loss", "loss (nats/token)"),
                                   (ax2, "bpb", "Held-out bits per byte (training eval)", "bits per byte")):
        for s, (x, y) in series[key].items():
            ax.plot(x, y, marker="o" if len(x) < 30 else None, ms=3, label=s)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(f"{unit} seen (stage 2 continues after stage 1)", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(alpha=0.3)
        if series[key]:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
    src_bpb = _get(facts.summary, "models", "source", "bpb", "heldout", "bits_per_byte")
    if isinstance(src_bpb, (int, float)) and series["bpb"]:
        ax2.axhline(src_bpb, color="grey", ls="--", lw=1, label="source model (evaluate stage, full held-out)")
        ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    return out


def plot_similarity(facts: RunFacts, out: Path) -> Path | None:
    hist = facts.align.get("similarity_histogram") if isinstance(facts.align, dict) else None
    edges, counts = _get(hist, "edges"), _get(hist, "counts")
    if not isinstance(edges, list) or not isinstance(counts, list) or len(edges) != len(counts) + 1:
        return None
    threshold = _get(hist, "threshold")
    if threshold is None:
        threshold = facts.align.get("threshold")
    fig = _figure()
    ax = fig.subplots()
    widths = [b - a for a, b in zip(edges[:-1], edges[1:])]
    ax.bar(edges[:-1], counts, width=widths, align="edge", color="#4C72B0", edgecolor="white", lw=0.3)
    if isinstance(threshold, (int, float)):
        ax.axvline(threshold, color="#C44E52", ls="--", lw=1.5, label=f"threshold {threshold:g}")
        ax.legend(fontsize=8)
    ax.set_title("Alignment: top-1 similarity of target tokens", fontsize=10)
    ax.set_xlabel("cosine of relative representations", fontsize=8)
    ax.set_ylabel("target tokens", fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(out)
    return out


def init_method_counts(facts: RunFacts) -> tuple[dict[str, int], str] | None:
    for where, d in (("model/init/transplant.json", _get(facts.transplant, "rows_per_method")),
                     ("align/summary.json", _get(facts.align, "counts")),
                     ("align/summary.json", _get(facts.align, "methods"))):
        if isinstance(d, dict) and d and all(isinstance(v, (int, float)) for v in d.values()):
            return {str(k): int(v) for k, v in d.items()}, where
    return None


def plot_init_methods(facts: RunFacts, out: Path) -> Path | None:
    found = init_method_counts(facts)
    if found is None:
        return None
    counts, where = found
    fig = _figure()
    ax = fig.subplots()
    names = sorted(counts, key=lambda k: -counts[k])
    bars = ax.bar(names, [counts[n] for n in names], color="#55A868")
    ax.bar_label(bars, fontsize=8)
    ax.set_title(f"Rows per initialisation method ({where})", fontsize=10)
    ax.set_ylabel("target rows", fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(out)
    return out


def plot_bytes_per_token(facts: RunFacts, out: Path) -> Path | None:
    toks = facts.summary.get("tokenizers") or {}
    sides = [s for s in ("source", "target") if isinstance(_get(toks, s, "bytes_per_token"), (int, float))]
    if not sides:
        return None
    fig = _figure(5.0, 3.4)
    ax = fig.subplots()
    vals = [toks[s]["bytes_per_token"] for s in sides]
    labels = [f"{s}\n({_f(_get(toks, s, 'vocab_size'))} tokens)" for s in sides]
    bars = ax.bar(labels, vals, color=["#8172B2", "#CCB974"][:len(sides)])
    ax.bar_label(bars, labels=[f"{v:.2f}" for v in vals], fontsize=8)
    ax.set_title("Bytes per token on held-out text (higher = fewer tokens)", fontsize=10)
    ax.set_ylabel("UTF-8 bytes per token", fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(out)
    return out


PLOTS = (
    ("training.png", plot_training, "Training loss and held-out bits per byte against tokens seen.",
     "no training metrics (train/<stage>/metrics.jsonl) found"),
    ("alignment_similarity.png", plot_similarity, "Alignment similarity histogram; the dashed line is the threshold.",
     "align/summary.json has no similarity_histogram"),
    ("init_methods.png", plot_init_methods, "Embedding rows per initialisation method.",
     "no rows-per-method counts in transplant.json or align/summary.json"),
    ("bytes_per_token.png", plot_bytes_per_token, "Bytes per token of both tokenizers on the held-out text.",
     "eval/summary.json has no tokenizer efficiency"),
)


# --------------------------------------------------------------------------------------------------
# the document


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
        shown = "; ".join(f"{k}={_f(v) if not isinstance(v, (dict, list)) else json.dumps(v)}"
                          for k, v in ev.items() if k not in ("criterion",))
        rows.append([str(c.get("id")), c.get("name", ""), c.get("status", "?").upper(), c.get("reason", ""),
                     shown[:400]])
    blocks.append(("table", ["#", "check", "status", "why", "evidence"], rows))
    return blocks


def _model_blocks(facts: RunFacts) -> list[Block]:
    s = facts.summary
    blocks: list[Block] = [("h", 2, "Models")]
    names = _models(s)
    if not names:
        return blocks + [("p", "eval/summary.json is missing or lists no model: run the evaluate stage.")]
    datasets = list((s.get("datasets") or {}).keys()) or ["heldout"]
    headers = ["model"] + [f"{d} bits/byte" for d in datasets] + [
        "bytes/token", "tokens", "token ppl*", "PubMedQA acc [95% CI]", "macro-F1 [95% CI]", "few-shot acc",
        "Δacc vs baseline [95% CI]"]
    rows = []
    for n in names:
        m = s["models"][n]
        bp = m.get("bpb") or {}
        q = m.get("pubmedqa") or {}
        fs = m.get("pubmedqa_fewshot") or {}
        d = _get(s, "pubmedqa_vs_baseline", n) or {}
        label = n + (" (baseline)" if n == s.get("baseline") else "") + (" (final)" if n == s.get("final") else "")
        rows.append([label] + [_f(_get(bp, ds, "bits_per_byte")) for ds in datasets] + [
            _f(_get(bp, "heldout", "bytes_per_token") or _get(bp, datasets[0], "bytes_per_token"), 3),
            _f(_get(bp, "heldout", "tokens") or _get(bp, datasets[0], "tokens")),
            _f(_get(bp, "heldout", "token_perplexity") or _get(bp, datasets[0], "token_perplexity"), 2),
            _ci(q.get("accuracy"), q.get("accuracy_ci95")), _ci(q.get("macro_f1"), q.get("macro_f1_ci95")),
            _ci(fs.get("accuracy"), fs.get("accuracy_ci95")),
            _ci(d.get("accuracy_diff"), d.get("accuracy_diff_ci95")) if d else "–"])
    blocks.append(("table", headers, rows))
    notes = ["Bits per byte compares models with different tokenizers (lower is better). "
             "*Token perplexity is per token of each model's own tokenizer: compare it only between models "
             "that share a tokenizer."]
    if s.get("pubmedqa_file"):
        n_q = _get(s, "models", names[0], "pubmedqa", "n")
        notes.append(f"PubMedQA: {s['pubmedqa_file']} ({_f(n_q)} questions), answer chosen by the per-byte "
                     f"log-likelihood of ' yes' / ' no' / ' maybe'; intervals are 95 % bootstrap, Δ is a paired bootstrap.")
    for what, why in (s.get("skipped") or {}).items():
        notes.append(f"{what} skipped: {why}.")
    return blocks + [("p", n) for n in notes]


def _tokenizer_blocks(facts: RunFacts) -> list[Block]:
    toks = facts.summary.get("tokenizers") or {}
    blocks: list[Block] = [("h", 2, "Tokenizers and vocabulary cost")]
    sides = [x for x in ("source", "target") if isinstance(toks.get(x), dict)]
    if not sides:
        return blocks + [("p", "No tokenizer efficiency recorded.")]
    keys = [("vocab_size", "vocabulary", 0), ("bytes_per_token", "bytes per token", 3),
            ("tokens_per_word", "tokens per word", 3), ("domain_words_one_token", "domain words in 1 token", 3),
            ("domain_words_two_tokens", "domain words in 2 tokens", 3),
            ("domain_word_mean_tokens", "tokens per domain word", 3)]
    rows = [[label] + [_f(toks[x].get(k), d) for x in sides] for k, label, d in keys]
    blocks.append(("table", ["measure"] + sides, rows))
    blocks.append(("p", f"Domain words: the {_f(_get(toks, sides[0], 'domain_words'))} most frequent, from "
                        f"{toks.get('domain_words_from', 'the held-out text')}."))
    cost = facts.summary.get("vocab_cost")
    if isinstance(cost, dict):
        rows = [[k.replace("_", " "), _f(v, 2)] for k, v in cost.items() if k != "compared"]
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
        text = json.dumps(v) if isinstance(v, (dict, list)) else _f(v)
        rows.append([k, text[:300]])
    blocks.append(("table", ["key", "value"], rows))
    if facts.transplant:
        t = facts.transplant
        rows = [[k, _f(t.get(k))] for k in ("init", "zero_rows", "rows_copied", "tied", "target_vocab_size",
                                            "target_rows", "padding_rows") if k in t]
        if rows:
            blocks.append(("table", ["transplant", "value"], rows))
    return blocks


def _timing_blocks(facts: RunFacts) -> list[Block]:
    stages = _get(facts.manifest, "stages") or {}
    blocks: list[Block] = [("h", 2, "Stage timings")]
    if not stages:
        return blocks + [("p", "manifest.json is missing.")]
    rows = [[name, str(r.get("status", "?")), _f(r.get("wall_s"), 1), _f(r.get("peak_rss_mb"), 0),
             str(r.get("finished", ""))] for name, r in stages.items() if isinstance(r, dict)]
    total = sum(r.get("wall_s") or 0 for r in stages.values() if isinstance(r, dict))
    blocks.append(("table", ["stage", "status", "wall s", "peak RSS MB", "finished"], rows))
    blocks.append(("p", f"Total wall time of recorded stages: {total:.1f} s."))
    return blocks


def build_blocks(facts: RunFacts, images: dict[str, Path | None]) -> list[Block]:
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    final = facts.summary.get("final")
    blocks: list[Block] = [("h", 1, f"vocabadapt report: {facts.run_dir.name}"),
                           ("p", f"Run directory {facts.run_dir.resolve()}; generated {now}." +
                            (f" Final model: model/{final}." if final else ""))]
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


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;border-bottom:2px solid #444}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.6em 0;font-size:.85em}th,td{border:1px solid #ccc;padding:.25em .5em;
text-align:left;vertical-align:top}th{background:#f2f2f2}td.PASS{background:#dff0d8;font-weight:bold}
td.FAIL{background:#f2dede;font-weight:bold}td.NOT-RUN{background:#eee;color:#666}
figure{margin:1em 0}figcaption{font-size:.85em;color:#555}img{max-width:100%}
pre{background:#f7f7f7;border:1px solid #ddd;padding:.6em;overflow:auto;font-size:.8em}
"""


def render_html(blocks: list[Block], image_dir: Path) -> str:
    e = html.escape
    title = next((b[2] for b in blocks if b[0] == "h" and b[1] == 1), "vocabadapt report")
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{_CSS}</style>"
           "</head><body>"]
    for b in blocks:
        kind = b[0]
        if kind == "h":
            out.append(f"<h{b[1]}>{e(b[2])}</h{b[1]}>")
        elif kind == "p":
            out.append(f"<p>{e(b[1])}</p>")
        elif kind == "table":
            out.append("<table><thead><tr>" + "".join(f"<th>{e(str(h))}</th>" for h in b[1]) + "</tr></thead><tbody>")
            for row in b[2]:
                cells = []
                for c in row:
                    cls = f" class='{e(c)}'" if c in ("PASS", "FAIL", "NOT-RUN") else ""
                    cells.append(f"<td{cls}>{e(str(c))}</td>")
                out.append("<tr>" + "".join(cells) + "</tr>")
            out.append("</tbody></table>")
        elif kind == "img":
            data = base64.b64encode((image_dir / b[1]).read_bytes()).decode("ascii")
            out.append(f"<figure><img alt='{e(b[2])}' src='data:image/png;base64,{data}'>"
                       f"<figcaption>{e(b[2])}</figcaption></figure>")
        elif kind == "code":
            out.append(f"<pre>{e(b[1])}</pre>")
    out.append("</body></html>")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------------
# entry points


def build_report(run_dir: Path) -> list[Path]:
    """Write report/report.md, report/report.html and the plots for a run directory.

    Returns the written paths (md, html, then the PNGs).
    Raises:
        InputError: the run directory does not exist.
    """
    run_dir = Path(run_dir)
    facts = read_run(run_dir)
    final_dir = run_dir / "report"
    images: dict[str, Path | None] = {}
    with atomic_dir(final_dir) as tmp:
        for name, plot, _, _ in PLOTS:
            try:
                images[name] = plot(facts, tmp / name)
            except Exception as e:  # a plot of odd data must not cost the whole report
                log.warning("report: plot %s failed (%s: %s); the report says so", name, type(e).__name__, e)
                images[name] = None
        blocks = build_blocks(facts, images)
        with atomic_write(tmp / "report.md") as f:
            f.write(render_markdown(blocks))
        with atomic_write(tmp / "report.html") as f:
            f.write(render_html(blocks, tmp))
    pngs = [final_dir / n for n, p in images.items() if p is not None]
    log.info("report: %s (%d plots)", final_dir / "report.html", len(pngs))
    return [final_dir / "report.md", final_dir / "report.html", *pngs]


def run_stage(ctx: Any) -> dict[str, Any]:
    """The report stage: build the report for ctx.run_dir."""
    paths = build_report(Path(ctx.run_dir))
    return {"files": [str(p.relative_to(ctx.run_dir)) for p in paths],
            "plots": sum(p.suffix == ".png" for p in paths)}


def closing_summary(run_dir: Path) -> str:
    """A few lines for the end of `vocabadapt run`: final model, checklist, headline numbers, report."""
    facts = read_run(Path(run_dir))
    s = facts.summary
    lines = []
    final = s.get("final")
    if final:
        lines.append(f"final model: {facts.run_dir / 'model' / final}")
    if facts.checklist:
        counts = {k: sum(c.get("status") == k for c in facts.checklist) for k in ("pass", "fail", "not-run")}
        lines.append(f"checklist: {counts['pass']} pass, {counts['fail']} fail, {counts['not-run']} not run")
        for c in facts.checklist:
            lines.append(f"  [{c.get('status', '?'):>7}] {c.get('id')}. {c.get('name')}: {c.get('reason', '')}")
    names = _models(s)
    bpbs = [f"{n} {_get(s, 'models', n, 'bpb', 'heldout', 'bits_per_byte'):.4f}" for n in names
            if isinstance(_get(s, "models", n, "bpb", "heldout", "bits_per_byte"), (int, float))]
    if bpbs:
        lines.append("held-out bits per byte: " + ", ".join(bpbs))
    toks = s.get("tokenizers") or {}
    bpt = [f"{x} {toks[x]['bytes_per_token']:.3f}" for x in ("source", "target")
           if isinstance(_get(toks, x, "bytes_per_token"), (int, float))]
    if bpt:
        lines.append("bytes per token: " + ", ".join(bpt))
    accs = [f"{n} {_ci(_get(s, 'models', n, 'pubmedqa', 'accuracy'), _get(s, 'models', n, 'pubmedqa', 'accuracy_ci95'))}"
            for n in names if isinstance(_get(s, "models", n, "pubmedqa", "accuracy"), (int, float))]
    if accs:
        lines.append("PubMedQA accuracy: " + ", ".join(accs))
    report = facts.run_dir / "report" / "report.html"
    lines.append(f"report: {report}" if report.is_file() else "report: not written (run the report stage)")
    if not s:
        lines.insert(0, "no evaluation found (eval/summary.json missing)")
    elif s.get("skipped") is True:
        lines.insert(0, f"evaluation skipped: {s.get('reason', 'evaluation.enabled is false')}")
    return "\n".join(lines)
