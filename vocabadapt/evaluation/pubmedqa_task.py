"""The `pubmedqa` evaluation task: PubMedQA zero-shot and few-shot, and what it adds to summary and report.

Scoring is vocabadapt.evaluation.pubmedqa (lm-evaluation-harness's pubmedqa prompt and log-likelihood
choice, so acc is comparable with published figures); this module is the task around it: the
questions and few-shot examples fixed once per run, a paired bootstrap of every model against the
baseline on the same questions, the closing-summary line and the report's columns and note.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import EvaluationConfig
from ..values import ci, fmt, get
from . import pubmedqa as qa_mod
from .tasks import Skip, Task

log = logging.getLogger(__name__)

RESULT_KEYS = ("pubmedqa", "pubmedqa_fewshot")  # a model's result fields this task writes


@dataclass
class QASetup:
    """PubMedQA questions and few-shot examples, fixed once for all models of a run."""

    questions: list[qa_mod.Question]
    shots: list[qa_mod.Question] = field(default_factory=list)
    bootstrap: int = 1000
    source: str = ""


def qa_setup(
    file: str, split_ids: str | None, fewshot_file: str | None, fewshot_k: int, bootstrap: int, max_samples: int | None
) -> QASetup:
    ids = qa_mod.load_split_ids(split_ids) if split_ids else None
    questions = qa_mod.load_questions(file, ids=ids, max_samples=max_samples)
    shots: list[qa_mod.Question] = []
    if fewshot_k:
        # Few-shot examples never come from the evaluated questions (nor, with a split, from the split).
        exclude = set(ids or []) | {q.id for q in questions}
        pool = qa_mod.load_questions(fewshot_file or file, exclude=sorted(exclude))
        shots = qa_mod.choose_shots(pool, fewshot_k)
    return QASetup(questions, shots, bootstrap, str(file))


def cli_setup(file: str, bootstrap: int, max_samples: int | None) -> QASetup:
    """`vocabadapt eval --pubmedqa FILE`: the official 500-question test split when FILE is ori_pqal.json
    with test_ground_truth.json beside it, otherwise every record."""
    split = Path(file).with_name("test_ground_truth.json")
    use_split = Path(file).name == "ori_pqal.json" and split.is_file()
    if use_split:
        log.info("using the official test split %s", split)
    return qa_setup(file, str(split) if use_split else None, None, 0, bootstrap, max_samples)


def _prepare(entry: str, cfg: EvaluationConfig, heldout: Path) -> QASetup | Skip:
    if not cfg.qa.enabled:
        return Skip("evaluation.qa.enabled is false")
    if not cfg.qa.file:
        return Skip("evaluation.qa.file is not set")
    return qa_setup(
        cfg.qa.file, cfg.qa.split_ids, cfg.qa.fewshot_file, cfg.qa.fewshot_k, cfg.qa.bootstrap, cfg.max_samples
    )


def _score(label: str, model: Any, tokenizer: Any, qa: QASetup, cfg: EvaluationConfig, context: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    r = qa_mod.score_questions(
        model, tokenizer, qa.questions, context=context, batch_size=cfg.batch_size, bootstrap=qa.bootstrap
    )
    log.info(
        "PubMedQA acc %.3f (lm-eval's), acc_bytes %.3f, macro-F1 %.3f (n=%d, skipped %d)",
        r["acc"] or 0,
        r["acc_bytes"] or 0,
        r["macro_f1"] or 0,
        r["n"],
        r["skipped"],
    )
    out["pubmedqa"] = r
    if qa.shots:
        r = qa_mod.score_questions(
            model,
            tokenizer,
            qa.questions,
            shots=qa.shots,
            context=context,
            batch_size=cfg.batch_size,
            bootstrap=qa.bootstrap,
        )
        log.info("PubMedQA %d-shot acc %.3f", len(qa.shots), r["acc"] or 0)
        out["pubmedqa_fewshot"] = r
    return out


def compare_to_baseline(results: dict[str, dict], baseline: str, bootstrap: int) -> dict[str, dict]:
    """Paired bootstrap of every model's PubMedQA against the baseline's, on the same questions."""
    out: dict[str, dict] = {}
    base = results.get(baseline, {})
    for name, r in results.items():
        if name == baseline:
            continue
        for key, label in (("pubmedqa", name), ("pubmedqa_fewshot", f"{name}/fewshot")):
            if key in r and key in base:
                out[label] = qa_mod.paired_difference(r[key]["predictions"], base[key]["predictions"], bootstrap)
    return out


def _compare(results: dict[str, dict], baseline: str, qa: QASetup) -> dict[str, Any]:
    return {"pubmedqa_file": qa.source, "pubmedqa_vs_baseline": compare_to_baseline(results, baseline, qa.bootstrap)}


def _slim(result: dict[str, Any]) -> dict[str, Any]:
    out = dict(result)
    for k in RESULT_KEYS:
        if isinstance(out.get(k), dict):
            out[k] = {kk: v for kk, v in out[k].items() if kk != "predictions"}
    return out


def _summary_lines(summary: dict[str, Any], names: list[str]) -> list[str]:
    accs = [
        f"{n} {ci(get(summary, 'models', n, 'pubmedqa', 'acc'), get(summary, 'models', n, 'pubmedqa', 'acc_ci95'))}"
        f" (acc_bytes {get(summary, 'models', n, 'pubmedqa', 'acc_bytes'):.4f}, n={get(summary, 'models', n, 'pubmedqa', 'n')})"
        for n in names
        if isinstance(get(summary, "models", n, "pubmedqa", "acc"), (int, float))
    ]
    return ["PubMedQA acc (lm-eval's scoring): " + ", ".join(accs)] if accs else []


def _report_columns(summary: dict[str, Any], name: str) -> list[tuple[str, str]]:
    m = get(summary, "models", name) or {}
    q = m.get("pubmedqa") or {}
    fs = m.get("pubmedqa_fewshot") or {}
    d = get(summary, "pubmedqa_vs_baseline", name) or {}
    return [
        ("PubMedQA acc† [95% CI]", ci(q.get("acc"), q.get("acc_ci95"))),
        ("acc_bytes‡ [95% CI]", ci(q.get("acc_bytes"), q.get("acc_bytes_ci95"))),
        ("macro-F1 [95% CI]", ci(q.get("macro_f1"), q.get("macro_f1_ci95"))),
        ("few-shot acc", ci(fs.get("acc"), fs.get("acc_ci95"))),
        ("Δacc vs baseline [95% CI]", ci(d.get("accuracy_diff"), d.get("accuracy_diff_ci95")) if d else "–"),
    ]


def _report_notes(summary: dict[str, Any], names: list[str]) -> list[str]:
    if not summary.get("pubmedqa_file"):
        return []
    n_q = get(summary, "models", names[0], "pubmedqa", "n")
    return [
        f"PubMedQA: {summary['pubmedqa_file']} ({fmt(n_q)} questions). †acc is lm-evaluation-harness's pubmedqa "
        f"accuracy (prompt 'Abstract: …\\nQuestion: …\\nAnswer:', answer = highest summed log-likelihood of "
        f"' yes' / ' no' / ' maybe'), comparable with published figures; macro-F1, few-shot acc and Δ use "
        f"that choice. ‡acc_bytes divides the same log-likelihoods by the answer's bytes (lm-eval's "
        f"acc_bytes). Intervals are 95 % bootstrap, Δ is a paired bootstrap."
    ]


PUBMEDQA = Task(
    "pubmedqa",
    "PubMedQA zero-shot and few-shot: lm-eval's acc, acc_bytes, macro-F1",
    _prepare,
    _score,
    compare=_compare,
    slim=_slim,
    summary_lines=_summary_lines,
    report_columns=_report_columns,
    report_notes=_report_notes,
)
