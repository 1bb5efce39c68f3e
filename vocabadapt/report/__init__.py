"""The run report: Markdown, a self-contained HTML page (a Jinja2 template) and PNG plots.

The document is built once as a list of blocks (vocabadapt.report.markdown) and rendered twice: to
Markdown (images as files next to it) and to HTML (vocabadapt.report.html, images inlined as base64,
so the one file can be mailed or attached to an issue). The facts come in as a RunFacts; the report
stage (vocabadapt.stages.report) reads them from the run directory.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..evaluation.tasks import summary_lines as task_summary_lines
from ..io import atomic_dir, atomic_write
from .facts import RunFacts, get, model_names
from .html import render_html
from .markdown import build_blocks, render_markdown
from .plots import PLOTS

log = logging.getLogger(__name__)

__all__ = ["RunFacts", "closing_summary", "write_report"]


def write_report(facts: RunFacts, out_dir: Path) -> list[Path]:
    """Write report.md, report.html and the plots into `out_dir` (replaced atomically).

    Returns the written paths (md, html, then the PNGs). A plot that fails is left out and the report
    says so; it never costs the whole report.
    """
    images: dict[str, Path | None] = {}
    with atomic_dir(out_dir) as tmp:
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
    pngs = [out_dir / n for n, p in images.items() if p is not None]
    log.info("report: %s (%d plots)", out_dir / "report.html", len(pngs))
    return [out_dir / "report.md", out_dir / "report.html", *pngs]


def closing_summary(facts: RunFacts, final_model: Path | None, report_html: Path) -> str:
    """A few lines for the end of `vocabadapt run`: final model, checklist, headline numbers, report.

    Args:
        facts: the run's facts.
        final_model: the final model's directory (None when there is none).
        report_html: where the report is (said to be missing when it does not exist).
    """
    s = facts.summary
    lines = []
    if s.get("final") and final_model is not None:
        lines.append(f"final model: {final_model}")
    if facts.checklist:
        counts = {k: sum(c.get("status") == k for c in facts.checklist) for k in ("pass", "fail", "not-run")}
        lines.append(f"checklist: {counts['pass']} pass, {counts['fail']} fail, {counts['not-run']} not run")
        for c in facts.checklist:
            lines.append(f"  [{c.get('status', '?'):>7}] {c.get('id')}. {c.get('name')}: {c.get('reason', '')}")
    names = model_names(s)
    bpbs = [
        f"{n} {get(s, 'models', n, 'bpb', 'heldout', 'bits_per_byte'):.4f}"
        for n in names
        if isinstance(get(s, "models", n, "bpb", "heldout", "bits_per_byte"), (int, float))
    ]
    if bpbs:
        lines.append("held-out bits per byte: " + ", ".join(bpbs))
    toks = s.get("tokenizers") or {}
    bpt = [
        f"{x} {toks[x]['bytes_per_token']:.3f}"
        for x in ("source", "target")
        if isinstance(get(toks, x, "bytes_per_token"), (int, float))
    ]
    if bpt:
        lines.append("bytes per token: " + ", ".join(bpt))
    lines += task_summary_lines(s, names)
    lines.append(f"report: {report_html}" if report_html.is_file() else "report: not written (run the report stage)")
    if not s:
        lines.insert(0, "no evaluation found (eval/summary.json missing)")
    elif s.get("skipped") is True:
        lines.insert(0, f"evaluation skipped: {s.get('reason', 'evaluation.enabled is false')}")
    return "\n".join(lines)
