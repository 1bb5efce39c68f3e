"""Stage report: report/report.md, a self-contained report/report.html and report/*.png.

Reads only what earlier stages wrote; anything missing becomes a line saying so, never an exception,
so a report can be made from a partial run (also by `vocabadapt report RUN_DIR`).

Reads:   eval/summary.json, eval/checklist.json, train/<stage>/, align/summary.json,
         model/init/transplant.json, config.yaml, manifest.json
Writes:  report/
Changed by: nothing in the config
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import InputError
from ..run.context import StageContext, StageSpec
from ..run.layout import TRAIN_STAGES, RunLayout


def run_facts(layout: RunLayout) -> Any:
    """The run's artifacts as the report reads them (vocabadapt.report.RunFacts).

    Raises:
        InputError: the run directory does not exist.
    """
    from ..report import RunFacts

    if not layout.root.is_dir():
        raise InputError(f"run directory {layout.root} does not exist")
    cfg = layout.config_yaml
    return RunFacts(
        name=layout.root.name,
        location=layout.root.resolve(),
        summary=layout.read(layout.eval_summary) or {},
        checklist=layout.read(layout.eval_checklist) or [],
        train=layout.train_summaries(),
        metrics={s: layout.train_metrics(s) for s in TRAIN_STAGES},
        align=layout.read(layout.align_summary) or {},
        transplant=layout.read(layout.transplant_summary) or {},
        manifest=layout.read(layout.manifest) or {},
        config_text=cfg.read_text(encoding="utf-8") if cfg.is_file() else None,
    )


def build_report(run_dir: Path) -> list[Path]:
    """Write the report of a run directory; returns the written paths (md, html, then the PNGs)."""
    from ..report import write_report

    layout = RunLayout(Path(run_dir))
    return write_report(run_facts(layout), layout.report_dir)


def closing_summary(run_dir: Path) -> str:
    """The closing lines of `vocabadapt run`: final model, checklist, headline numbers, report."""
    from ..report import closing_summary as summary_lines

    layout = RunLayout(Path(run_dir))
    facts = run_facts(layout)
    final = facts.summary.get("final")
    return summary_lines(facts, layout.model_dir(final) if final else None, layout.report_html)


def run(ctx: StageContext) -> dict[str, Any]:
    """Build the report of this run."""
    paths = build_report(ctx.layout.root)
    return {
        "files": [str(p.relative_to(ctx.layout.root)) for p in paths],
        "plots": sum(p.suffix == ".png" for p in paths),
    }


SPEC = StageSpec(
    name="report",
    run=run,
    config_keys=(),
    inputs=("evaluate",),
    outputs=lambda layout: (layout.report_dir,),
    description="Markdown and HTML report with plots",
)
