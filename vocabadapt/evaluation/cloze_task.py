"""The `cloze` evaluation task: a multiple-choice entity cloze (evaluation.cloze.file) on every model.

Scoring is vocabadapt.evaluation.cloze (lm-evaluation-harness's multiple_choice: acc, acc_norm,
acc_bytes); this module is the task around it: the questions fixed once per run, a paired bootstrap of
every model's accuracy against the source's on the same questions, and the summary line and report
column. The shipped file is the BC5CDR test-set cloze (examples/bc5cdr_cloze/); its abstracts are in
corpus.exclude_inputs of every shipped config, so no model trains on them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import EvaluationConfig
from ..values import ci, get
from . import cloze
from .choices import mean_interval
from .tasks import Skip, Task

log = logging.getLogger(__name__)

RESULT_KEY = "cloze"


@dataclass
class ClozeSetup:
    questions: list[cloze.ClozeQuestion]
    bootstrap: int
    source: str


def prepare(entry: str, cfg: EvaluationConfig, heldout: Path) -> ClozeSetup | Skip:
    if not cfg.cloze.file:
        return Skip("evaluation.cloze.file is not set")
    n = cfg.cloze.max_questions or cfg.max_samples
    return ClozeSetup(cloze.load_cloze(cfg.cloze.file, max_samples=n), cfg.cloze.bootstrap, str(cfg.cloze.file))


def score(label: str, model: Any, tokenizer: Any, setup: ClozeSetup, cfg: EvaluationConfig, context: int) -> dict:
    r = cloze.score_cloze(
        model, tokenizer, setup.questions, context=context, batch_size=cfg.batch_size, bootstrap=setup.bootstrap
    )
    log.info(
        "cloze acc %.3f %s, acc_norm %.3f (n=%d, chance %.2f)",
        r["acc"] or 0,
        r["acc_ci95"],
        r["acc_norm"] or 0,
        r["n"],
        r["chance"] or 0,
    )
    return {RESULT_KEY: r}


def paired_difference(model: dict[str, dict], reference: dict[str, dict], bootstrap: int) -> dict[str, Any]:
    """(model - reference) accuracy on the questions both answered, with a paired 95 % bootstrap interval."""
    ids = [i for i in model if i in reference]
    if not ids:
        return {"n": 0}
    d = np.array([(model[i]["pred"] == model[i]["gold"]) - (reference[i]["pred"] == reference[i]["gold"]) for i in ids])
    return {"n": len(ids), "acc_diff": float(d.mean()), "acc_diff_ci95": mean_interval(d.astype(float), bootstrap)}


def compare(results: dict[str, dict], baseline: str, setup: ClozeSetup) -> dict[str, Any]:
    """eval/summary.json fields: the cloze file and every model's accuracy difference from the source."""
    ref = (results.get("source") or {}).get(RESULT_KEY, {}).get("predictions", {})
    diffs = {
        name: paired_difference(r[RESULT_KEY]["predictions"], ref, setup.bootstrap)
        for name, r in results.items()
        if name != "source" and RESULT_KEY in r and ref
    }
    return {"cloze_file": setup.source, "cloze_vs_source": diffs}


def slim(result: dict[str, Any]) -> dict[str, Any]:
    out = dict(result)
    if isinstance(out.get(RESULT_KEY), dict):
        out[RESULT_KEY] = {k: v for k, v in out[RESULT_KEY].items() if k != "predictions"}
    return out


def summary_lines(summary: dict[str, Any], names: list[str]) -> list[str]:
    """'cloze acc (lm-eval multiple_choice, chance 0.25): source 0.512 [0.47, 0.55] (n=600), ...'."""
    models = summary.get("models") or {}
    parts = [
        f"{n} {ci(models[n][RESULT_KEY].get('acc'), models[n][RESULT_KEY].get('acc_ci95'))}"
        for n in names
        if isinstance((models.get(n) or {}).get(RESULT_KEY), dict)
    ]
    if not parts:
        return []
    first = next(models[n][RESULT_KEY] for n in names if isinstance((models.get(n) or {}).get(RESULT_KEY), dict))
    chance = first.get("chance")
    return [
        f"cloze acc (lm-eval multiple_choice, n={first.get('n')}, chance {chance:.2f}): " + ", ".join(parts)
        if isinstance(chance, (int, float))
        else "cloze acc: " + ", ".join(parts)
    ]


def report_columns(summary: dict[str, Any], name: str) -> list[tuple[str, str]]:
    if not summary.get("cloze_file"):
        return []  # the cloze did not run: no columns
    c = ((summary.get("models") or {}).get(name) or {}).get(RESULT_KEY) or {}
    d = (summary.get("cloze_vs_source") or {}).get(name) or {}
    return [
        ("cloze acc§ [95% CI]", ci(c.get("acc"), c.get("acc_ci95"))),
        ("cloze acc_norm", ci(c.get("acc_norm"), c.get("acc_norm_ci95"))),
        ("Δcloze vs source", ci(d.get("acc_diff"), d.get("acc_diff_ci95")) if d else "–"),
    ]


def report_notes(summary: dict[str, Any], names: list[str]) -> list[str]:
    if not summary.get("cloze_file"):
        return []
    first: dict[str, Any] = next(
        (get(summary, "models", n, RESULT_KEY) for n in names if get(summary, "models", n, RESULT_KEY)), {}
    )
    return [
        f"§Cloze: {summary['cloze_file']} ({first.get('n')} questions, chance {first.get('chance') or 0:.2f}): a masked "
        "chemical or disease mention of an abstract, the gold mention against mentions of the same type from other "
        "abstracts; acc is lm-evaluation-harness's multiple_choice accuracy (highest summed log-likelihood of ' ' + "
        "choice after the text before the mention), acc_norm divides by the choice's characters; Δ is a paired "
        "bootstrap against the source."
    ]


CLOZE = Task(
    "cloze",
    "multiple-choice entity cloze (evaluation.cloze.file): lm-eval's acc, acc_norm, acc_bytes, paired Δ vs source",
    prepare,
    score,
    compare=compare,
    slim=slim,
    summary_lines=summary_lines,
    report_columns=report_columns,
    report_notes=report_notes,
)
