"""Stage evaluate: every model side by side, tokenizer efficiency, cost per byte, and the checklist.

Models: the source model with the run's source tokenizer, evaluation.baseline_model when set, then
model/init, model/stage1, model/stage2 with their own tokenizers; one in memory at a time (two while
the cost task times each model beside the source).

Reads:   corpus/heldout.jsonl, tokenizers/, terms/terms.txt, model/*, train/<stage>/, align/summary.json,
         model/init/transplant.json; evaluation.datasets files and the PubMedQA file
         the task YAMLs and data files of evaluation.lm_eval, evaluation.cloze.file, evaluation.general_inputs
Writes:  eval/<model>.json (with per-question predictions, lm-eval task results, cost per byte),
         eval/summary.json (with retention and cost side by side), eval/checklist.json (line 7: retention)
Changed by: evaluation.*, models.source_model
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io import atomic_dir, write_json
from ..run.context import StageContext, StageSpec
from ..run.layout import MODELS, TRAIN_STAGES, RunLayout

log = logging.getLogger(__name__)


def _candidates(ctx: StageContext) -> list[tuple[str, str, Any, str]]:
    """(name, model path or id, tokenizer, where the tokenizer came from) of every model to evaluate."""
    from ..evaluation.suite import has_tokenizer
    from ..model.hub import load_tokenizer

    cfg, layout = ctx.config, ctx.layout
    if not cfg.models.source_model:
        raise InputError("models.source_model must be set to evaluate the baseline")
    out = [("source", cfg.models.source_model, layout.tokenizer("source"), str(layout.tokenizer_dir("source")))]
    if cfg.evaluation.baseline_model:
        base = cfg.evaluation.baseline_model
        if Path(base).is_dir() and not has_tokenizer(Path(base)):
            raise InputError(f"baseline model {base} has no tokenizer files; save its tokenizer into it")
        tok = load_tokenizer(base, cfg.models, cfg.tokenization.cache_dir, ctx.download_retry)
        out.append(("baseline", base, tok, base))
    for name in MODELS:
        d = layout.model_dir(name)
        if not (d / "config.json").is_file():
            continue
        if has_tokenizer(d):
            out.append((name, str(d), load_tokenizer(str(d), cfg.models), str(d)))
        else:
            log.warning("%s has no tokenizer files; using the run's target tokenizer", d)
            out.append((name, str(d), layout.tokenizer("target"), str(layout.tokenizer_dir("target"))))
    return out


def _run_tokenizers(layout: RunLayout) -> dict[str, Any]:
    toks = {"source": layout.tokenizer("source")}
    try:
        toks["target"] = layout.tokenizer("target")
    except InputError as e:
        log.warning("tokenizer efficiency: %s", e)
    return toks


def run(ctx: StageContext) -> dict[str, Any]:
    """Evaluate the source model and every stage's model; write eval/*.json (see the module docstring).

    Raises:
        InputError: held-out text, a model, a tokenizer or the QA file is missing or malformed.
    """
    from ..evaluation import checklist, efficiency, retention
    from ..evaluation.suite import (
        build_summary,
        evaluate_model,
        gather_inputs,
        load_model_for_eval,
    )
    from ..values import get

    cfg, layout = ctx.config, ctx.layout
    ev = cfg.evaluation
    if not ev.enabled:
        with atomic_dir(layout.eval_dir) as tmp:
            write_json(
                layout.staged(layout.eval_summary, layout.eval_dir, tmp),
                {"skipped": True, "reason": "evaluation.enabled is false"},
            )
        return {"skipped": True}
    prepared, skips = gather_inputs(ev, layout.corpus("heldout"))
    candidates = _candidates(ctx)
    baseline = "baseline" if ev.baseline_model else "source"

    results: dict[str, dict] = {}
    with ctx.progress(total=len(candidates), unit="model") as bar:
        for name, path, tok, tok_src in candidates:  # one model in memory at a time
            model = load_model_for_eval(path, cfg.models, cfg.tokenization.cache_dir, ctx.download_retry)
            results[name] = {
                **evaluate_model(name, model, tok, prepared, ev, ev.context_length),
                "path": path,
                "tokenizer": tok_src,
            }
            del model
            bar.update(1)

    final = next((n for n in reversed(MODELS) if n in results), None)
    terms = efficiency.read_terms(layout.terms) if layout.terms.is_file() else None
    align = layout.read(layout.align_summary)
    summary = build_summary(results, baseline, final, prepared, skips, _run_tokenizers(layout), terms, align)
    checks = checklist.build_checklist(
        summary,
        layout.train_summaries(),
        {s: layout.train_metrics(s) for s in TRAIN_STAGES},
        align,
        layout.read(layout.transplant_summary),
        start_idx_stage2=cfg.vocab_adaptation.train_start_idx_stage2,
        zero_rows_allowed=cfg.alignment.fallback == "zero",
    )
    checks.append(retention.check(summary, ev.max_retention_loss))  # line 7: general text kept
    with atomic_dir(layout.eval_dir) as tmp:
        for name, r in results.items():
            write_json(layout.staged(layout.eval_model(name), layout.eval_dir, tmp), r)
        write_json(layout.staged(layout.eval_summary, layout.eval_dir, tmp), summary)
        write_json(layout.staged(layout.eval_checklist, layout.eval_dir, tmp), checks)
    counts = {s: sum(c["status"] == s for c in checks) for s in ("pass", "fail", "not-run")}
    return {
        "models": list(results),
        "final": final,
        "baseline": baseline,
        "checklist": counts,
        "final_bits_per_byte": get(summary, "models", final or "", "bpb", "heldout", "bits_per_byte"),
        "baseline_bits_per_byte": get(summary, "models", baseline, "bpb", "heldout", "bits_per_byte"),
    }


SPEC = StageSpec(
    name="evaluate",
    run=run,
    config_keys=("evaluation", "models.source_model"),
    inputs=("corpus", "tokenize", "align", "transplant", *TRAIN_STAGES),
    outputs=lambda layout: (layout.eval_dir,),
    description="bits per byte, PubMedQA, lm-eval tasks, tokenizer efficiency, checklist",
)
