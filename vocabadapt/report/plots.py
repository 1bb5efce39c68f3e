"""The report's plots: matplotlib's object API on the Agg canvas (no display, no global pyplot state)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .facts import STAGES, RunFacts, fmt, get


def _figure(width: float = 7.0, height: float = 3.6) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _tokens_axis(recs: list[dict], stage: dict | None) -> tuple[list[float], str]:
    """x values of metric lines: their 'tokens' field, else step x tokens per step, else step."""
    if recs and all(isinstance(r.get("tokens"), (int, float)) for r in recs):
        return [float(r["tokens"]) for r in recs], "tokens"
    steps, tokens = get(stage, "steps"), get(stage, "tokens")
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
        before = get(stage, "heldout_bpb_before")
        if isinstance(before, (int, float)):
            bx, by = [offset] + bx, [float(before)] + by
        if bx:
            series["bpb"][s] = (bx, by)
        span = get(stage, "tokens")
        if isinstance(span, (int, float)) and unit == "tokens":
            offset += float(span)
        elif x_train:
            offset = max(offset, x_train[-1] + offset)
    if not series["loss"] and not series["bpb"]:
        return None
    fig = _figure(9.0, 3.6)
    ax1, ax2 = fig.subplots(1, 2)
    for ax, key, title, ylabel in (
        (ax1, "loss", "Training loss", "loss (nats/token)"),
        (ax2, "bpb", "Held-out bits per byte (training eval)", "bits per byte"),
    ):
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
    src_bpb = get(facts.summary, "models", "source", "bpb", "heldout", "bits_per_byte")
    if isinstance(src_bpb, (int, float)) and series["bpb"]:
        ax2.axhline(src_bpb, color="grey", ls="--", lw=1, label="source model (evaluate stage, full held-out)")
        ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    return out


def plot_similarity(facts: RunFacts, out: Path) -> Path | None:
    hist = facts.align.get("similarity_histogram") if isinstance(facts.align, dict) else None
    edges, counts = get(hist, "edges"), get(hist, "counts")
    if not isinstance(edges, list) or not isinstance(counts, list) or len(edges) != len(counts) + 1:
        return None
    threshold = get(hist, "threshold")
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
    for where, d in (
        ("model/init/transplant.json", get(facts.transplant, "rows_per_method")),
        ("align/summary.json", get(facts.align, "counts")),
        ("align/summary.json", get(facts.align, "methods")),
    ):
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
    sides = [s for s in ("source", "target") if isinstance(get(toks, s, "bytes_per_token"), (int, float))]
    if not sides:
        return None
    fig = _figure(5.0, 3.4)
    ax = fig.subplots()
    vals = [toks[s]["bytes_per_token"] for s in sides]
    labels = [f"{s}\n({fmt(get(toks, s, 'vocab_size'))} tokens)" for s in sides]
    bars = ax.bar(labels, vals, color=["#8172B2", "#CCB974"][: len(sides)])
    ax.bar_label(bars, labels=[f"{v:.2f}" for v in vals], fontsize=8)
    ax.set_title("Bytes per token on held-out text (higher = fewer tokens)", fontsize=10)
    ax.set_ylabel("UTF-8 bytes per token", fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(out)
    return out


PLOTS = (
    (
        "training.png",
        plot_training,
        "Training loss and held-out bits per byte against tokens seen.",
        "no training metrics (train/<stage>/metrics.jsonl) found",
    ),
    (
        "alignment_similarity.png",
        plot_similarity,
        "Alignment similarity histogram; the dashed line is the threshold.",
        "align/summary.json has no similarity_histogram",
    ),
    (
        "init_methods.png",
        plot_init_methods,
        "Embedding rows per initialisation method.",
        "no rows-per-method counts in transplant.json or align/summary.json",
    ),
    (
        "bytes_per_token.png",
        plot_bytes_per_token,
        "Bytes per token of both tokenizers on the held-out text.",
        "eval/summary.json has no tokenizer efficiency",
    ),
)
