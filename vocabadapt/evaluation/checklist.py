"""The six verification checks a reviewer of a vocabulary-adaptation run asks for.

Each check returns {"id", "name", "status": "pass" | "fail" | "not-run", "evidence": {...}, "reason"}.
The facts are what other stages wrote, passed in (the evaluate stage reads them through RunLayout);
any that is missing makes its check "not-run" with the reason, never an exception:

    train         {stage: summary} of the training stages: steps, tokens, sequence ranges, first/last
                  loss, spikes, embedding_health {"settled", ...}, skipped  (train/<stage>/summary.json)
    metrics       {stage: records of train/<stage>/metrics.jsonl}: per logged step, the loss
    align         the alignment summary: coverage (identical + aligned; reference, and for runs whose
                  transplant summary lacks rows_per_method)
    transplant    the transplant summary: rows per method (row coverage from evidence), zero-initialised rows
    summary       bits per byte and PubMedQA of every model (built by evaluate)
"""

from __future__ import annotations

import logging
from typing import Any

from ..values import number

log = logging.getLogger(__name__)

NAMES = {
    1: "Training loss decreases smoothly",
    2: "Embeddings converge without overshooting",
    3: "Stage 2 used the intended data range",
    4: "Rows built from evidence above 95 % and no zero-initialised rows",
    5: "Final model's held-out bits per byte better than the baseline",
    6: "PubMedQA acc (lm-eval's scoring) of the final model not below the baseline",
}
COVERAGE_MIN = 0.95
# Row coverage: a row is built from evidence when it comes from this token's own source rows (identical,
# special), its alignment (aligned, soft) or its decomposition into source pieces (fvt); it comes from a
# global fallback when it is the same for every such token (mean, random) or empty (zero).
EVIDENCE_KINDS = ("special", "identical", "aligned", "soft", "fvt")
FALLBACK_KINDS = ("mean", "random", "zero")


def _check(cid: int, status: str, evidence: dict, reason: str) -> dict[str, Any]:
    return {"id": cid, "name": NAMES[cid], "status": status, "evidence": evidence, "reason": reason}


def loss_windows(losses: list[float]) -> tuple[float, float, int]:
    """Mean of the first and the last 10 % of the logged losses (3 values at least, half at most)."""
    w = max(1, min(len(losses) // 2, max(len(losses) // 10, 3)))
    return sum(losses[:w]) / w, sum(losses[-w:]) / w, w


def check_loss(train: dict | None, metrics: dict[str, list[dict]]) -> dict[str, Any]:
    if not isinstance(train, dict):
        return _check(1, "not-run", {}, "no training stage recorded a summary (train/<stage>/summary.json)")
    evidence: dict[str, Any] = {}
    verdicts = []
    for stage in metrics:  # every training stage, in order
        s = train.get(stage)
        if not isinstance(s, dict) or s.get("skipped"):
            evidence[stage] = {"status": "skipped" if isinstance(s, dict) else "missing"}
            continue
        # Training lines only ("type": "train", or untyped); spike records repeat a loss.
        losses = [
            float(r["loss"])
            for r in metrics.get(stage, [])
            if number(r.get("loss")) is not None and r.get("type", "train") == "train"
        ]
        if len(losses) >= 2:
            first, last, w = loss_windows(losses)
            e: dict[str, Any] = {
                "first_window_mean": first,
                "last_window_mean": last,
                "window": w,
                "logged_steps": len(losses),
            }
        elif number(s.get("first_loss")) is not None and number(s.get("last_loss")) is not None:
            first, last = float(s["first_loss"]), float(s["last_loss"])
            e = {"first_loss": first, "last_loss": last}
        else:
            evidence[stage] = {"status": "no losses recorded"}
            continue
        spikes = s.get("spikes")
        if not isinstance(spikes, list):
            e["spikes"] = "not recorded"
            evidence[stage] = e
            continue
        e["spikes"] = len(spikes)
        ok = last < first and not spikes
        e["status"] = "pass" if ok else "fail"
        evidence[stage] = e
        verdicts.append(ok)
    if not verdicts:
        return _check(1, "not-run", evidence, "no trained stage with losses and spike records")
    if all(verdicts):
        return _check(1, "pass", evidence, "no spikes and the last-window mean loss is below the first, per stage")
    return _check(1, "fail", evidence, "a stage had loss spikes or did not end below where it started")


def check_embeddings(train: dict | None, first_stage: str) -> dict[str, Any]:
    s = train.get(first_stage) if isinstance(train, dict) else None
    if not isinstance(s, dict):
        return _check(2, "not-run", {}, "no stage-1 summary (train/stage1/summary.json)")
    if s.get("skipped"):
        return _check(2, "not-run", {"skipped": True}, "stage 1 was skipped")
    health = s.get("embedding_health")
    if not isinstance(health, dict) or not isinstance(health.get("settled"), bool):
        reason = health.get("reason") if isinstance(health, dict) else None
        return _check(2, "not-run", {}, reason or "stage 1 recorded no embedding_health.settled")
    evidence = {k: v for k, v in health.items() if isinstance(v, (int, float, bool, str))}
    if health["settled"]:
        return _check(2, "pass", evidence, "stage-1 embedding health settled")
    return _check(2, "fail", evidence, "stage-1 embedding norms/updates had not settled at the end")


def _ranges(stage: dict) -> list[tuple[int, int, int]] | None:
    """Positions a stage read as [(epoch, start, stop)], epoch-local; None when not recorded.

    Accepts the train stage's {"sequences": {"ranges": [{"epoch", "start", "stop"}], "start", "stop"}}
    and a plain "sequence_range": [start, stop] or [[start, stop], ...] (taken as epoch 0).
    """
    seq = stage.get("sequences")
    if isinstance(seq, dict):
        rs = seq.get("ranges")
        if isinstance(rs, list) and all(isinstance(r, dict) and {"start", "stop"} <= set(r) for r in rs):
            return [(int(r.get("epoch", 0)), int(r["start"]), int(r["stop"])) for r in rs]
        if number(seq.get("start")) is not None and number(seq.get("stop")) is not None:
            return [(0, int(seq["start"]), int(seq["stop"]))]
    value = stage.get("sequence_range")
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(number(v) is not None for v in value):
        return [(0, int(value[0]), int(value[1]))]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (list, tuple)) and len(v) == 2 for v in value):
        return [(0, int(a), int(b)) for a, b in value]
    return None


def check_data_range(train: dict | None, start_idx_stage2: Any, stages: tuple[str, ...]) -> dict[str, Any]:
    """Stage 2's positions in the data order must not repeat stage 1's.

    Ranges are epoch-local positions of the seeded order; the same epoch's positions are the same
    sequences, and a later epoch re-reads sequences of earlier ones (it is a permutation of all).
    """
    if not isinstance(train, dict):
        return _check(3, "not-run", {}, "no training stage recorded a summary (train/<stage>/summary.json)")
    s1, s2 = (train.get(s) for s in stages)
    if not isinstance(s2, dict) or s2.get("skipped"):
        return _check(3, "not-run", {}, "stage 2 did not run")
    r1 = _ranges(s1) if isinstance(s1, dict) and not s1.get("skipped") else []
    r2 = _ranges(s2)
    if r1 is None or r2 is None:
        return _check(3, "not-run", {}, "sequence ranges missing or malformed in the training summaries")
    overlap = sum(max(0, min(b1, b2) - max(a1, a2)) for e1, a1, b1 in r1 for e2, a2, b2 in r2 if e1 == e2)
    repeats = [list(r) for r in r2 if r1 and r[0] > min(e for e, _, _ in r1)]
    evidence = {
        "stage1_ranges": [list(r) for r in r1],
        "stage2_ranges": [list(r) for r in r2],
        "range_format": "[epoch, start, stop) positions of the seeded data order",
        "overlapping_sequences": overlap,
        "stage2_ranges_in_later_epochs": repeats,
        "train_start_idx_stage2": start_idx_stage2,
    }
    if overlap == 0 and not repeats:
        return _check(3, "pass", evidence, "stage 2 read no position stage 1 read, within the first pass over the data")
    problem = (
        f"ranges overlap by {overlap} sequences"
        if overlap
        else "stage 2 runs into a later epoch, so it re-reads sequences stage 1 saw"
    )
    if isinstance(start_idx_stage2, int):
        evidence["overlap_configured"] = True
        return _check(3, "pass", evidence, f"{problem}, as configured (train_start_idx_stage2={start_idx_stage2})")
    return _check(3, "fail", evidence, problem)


def coverage_of(align: dict) -> float | None:
    """The aligned share of target tokens from align/summary.json, whatever its layout."""
    v = align.get("coverage")
    if isinstance(v, dict):
        for k in ("fraction", "aligned_fraction", "overall", "total", "aligned"):
            if number(v.get(k)) is not None:
                v = v[k]
                break
    if number(v) is None:
        v = align.get("aligned_fraction")
    share = number(v)
    if share is None:
        return None
    return share / 100.0 if share > 1.0 else share  # a percentage


def row_coverage(rows_per_method: dict[str, int]) -> dict[str, Any]:
    """{"coverage": rows from evidence / all rows, "evidence": {kind: rows}, "fallback": {kind: rows}, "rows"}.

    Every kind that is not a fallback kind counts as evidence (EVIDENCE_KINDS, or a later initialiser's
    own label), listed by name, so the parts always add up to the total.
    """
    evidence = {k: int(v) for k, v in rows_per_method.items() if k not in FALLBACK_KINDS}
    fallback = {k: int(v) for k, v in rows_per_method.items() if k in FALLBACK_KINDS}
    total = sum(evidence.values()) + sum(fallback.values())
    return {
        "coverage": round(sum(evidence.values()) / total, 4) if total else None,
        "evidence": dict(sorted(evidence.items())),
        "fallback": dict(sorted(fallback.items())),
        "rows": total,
    }


def zero_rows_of(transplant: dict) -> int | None:
    for k in ("zero_rows", "rows_zero", "zero_initialised_rows", "zero_initialized_rows"):
        v = transplant.get(k)
        if isinstance(v, list):
            return len(v)
        count = number(v)
        if count is not None:
            return int(count)
    methods = transplant.get("rows_per_method") or transplant.get("methods")
    if isinstance(methods, dict) and "zero" in methods and number(methods["zero"]) is not None:
        return int(methods["zero"])
    return None


def check_alignment(align: dict | None, transplant: dict | None, zero_allowed: bool) -> dict[str, Any]:
    """Check 4: the share of target rows built from evidence (see EVIDENCE_KINDS), counted on the rows the
    transplant built; the align stage's identical + aligned share only for runs that lack that count."""
    rows = transplant.get("rows_per_method") if isinstance(transplant, dict) else None
    parts = row_coverage(rows) if isinstance(rows, dict) and rows else None
    if parts is None and not isinstance(align, dict):
        return _check(
            4, "not-run", {}, "the transplant summary has no rows_per_method and align/summary.json is missing"
        )
    cov = parts["coverage"] if parts else coverage_of(align) if isinstance(align, dict) else None
    zero = zero_rows_of(transplant) if isinstance(transplant, dict) else None
    evidence: dict[str, Any] = {
        "coverage": cov,
        "threshold": COVERAGE_MIN,
        "zero_rows": zero,
        "zero_rows_allowed": zero_allowed,
        "coverage_of": "rows from evidence (transplant.json)"
        if parts
        else "identical + aligned tokens (align/summary.json)",
    }
    if parts:
        evidence.update({"evidence_rows": parts["evidence"], "fallback_rows": parts["fallback"]})
    if isinstance(align, dict) and coverage_of(align) is not None:
        evidence["aligned_coverage"] = coverage_of(align)  # identical + aligned share, for reference
    if cov is None:
        return _check(4, "not-run", evidence, "no coverage in transplant.json or align/summary.json")
    if zero is None:
        return _check(4, "not-run", evidence, "model/init/transplant.json missing or without a zero-row count")
    problems = []
    if cov <= COVERAGE_MIN:
        problems.append(f"coverage {cov:.1%} is not above {COVERAGE_MIN:.0%}")
    if zero and not zero_allowed:
        problems.append(f"{zero} rows were zero-initialised")
    if problems:
        return _check(4, "fail", evidence, "; ".join(problems))
    how = (
        " (" + ", ".join(f"{k} {v}" for k, v in {**parts["evidence"], **parts["fallback"]}.items()) + ")"
        if parts
        else ""
    )
    return _check(4, "pass", evidence, f"coverage {cov:.1%}{how}, {zero} zero rows")


def _dataset_bpb(model_entry: dict, dataset: str = "heldout") -> float | None:
    v = (model_entry.get("bpb") or {}).get(dataset)
    return number(v.get("bits_per_byte")) if isinstance(v, dict) else None


def check_bpb(summary: dict) -> dict[str, Any]:
    models, final, base = summary.get("models", {}), summary.get("final"), summary.get("baseline")
    if not final or final == base or final not in models or base not in models:
        return _check(5, "not-run", {"final": final, "baseline": base}, "no adapted model or no baseline evaluated")
    f, b = _dataset_bpb(models[final]), _dataset_bpb(models[base])
    evidence = {"final": final, "baseline": base, "final_bits_per_byte": f, "baseline_bits_per_byte": b}
    if f is None or b is None:
        return _check(5, "not-run", evidence, "held-out bits per byte missing for the final model or the baseline")
    evidence["difference"] = f - b
    if f < b:
        return _check(5, "pass", evidence, f"{final} {f:.4f} < {base} {b:.4f} bits/byte")
    return _check(5, "fail", evidence, f"{final} {f:.4f} >= {base} {b:.4f} bits/byte")


def check_pubmedqa(summary: dict) -> dict[str, Any]:
    models, final, base = summary.get("models", {}), summary.get("final"), summary.get("baseline")
    if not final or final == base or final not in models or base not in models:
        return _check(6, "not-run", {"final": final, "baseline": base}, "no adapted model or no baseline evaluated")
    qf = models[final].get("pubmedqa") or {}
    qb = models[base].get("pubmedqa") or {}
    diff = (summary.get("pubmedqa_vs_baseline") or {}).get(final) or {}
    if qf.get("acc") is None or qb.get("acc") is None:
        return _check(6, "not-run", {"final": final, "baseline": base}, "PubMedQA was not evaluated")
    # acc is lm-evaluation-harness's pubmedqa accuracy (comparable with published figures).
    evidence = {
        "final": final,
        "baseline": base,
        "final_acc": qf["acc"],
        "final_acc_ci95": qf.get("acc_ci95"),
        "baseline_acc": qb["acc"],
        "baseline_acc_ci95": qb.get("acc_ci95"),
        "accuracy_diff": diff.get("accuracy_diff"),
        "accuracy_diff_ci95": diff.get("accuracy_diff_ci95"),
        "n": qf.get("n"),
        "criterion": "final acc >= baseline acc (lm-eval's pubmedqa acc, point estimates); the paired 95 % interval "
        "of the difference says whether a gap is more than noise",
    }
    ci = diff.get("accuracy_diff_ci95")
    gap = qf["acc"] - qb["acc"]
    if isinstance(ci, list) and len(ci) == 2:
        noise = "within noise" if ci[0] <= 0 <= ci[1] else "significant"
        where = f"; difference {gap:+.3f}, 95 % interval [{ci[0]:+.3f}, {ci[1]:+.3f}] ({noise})"
    else:
        where = f"; difference {gap:+.3f}"
    text = f"acc {qf['acc']:.3f} vs baseline {qb['acc']:.3f}{where}"
    return _check(6, "pass" if gap >= 0 else "fail", evidence, text)


def build_checklist(
    summary: dict,
    train: dict | None,
    metrics: dict[str, list[dict]],
    align: dict | None,
    transplant: dict | None,
    start_idx_stage2: Any = "auto",
    zero_rows_allowed: bool = False,
) -> list[dict[str, Any]]:
    """All six checks for a run, given the evaluate stage's summary dict and the run's records.

    Args:
        summary: eval/summary.json's content ("models", "final", "baseline", "pubmedqa_vs_baseline").
        train: {stage: summary} of the training stages (None or {} when none finished).
        metrics: {stage: metrics.jsonl records} for every training stage in pipeline order (the caller
            lists them, from vocabadapt.training.settings.TRAIN_STAGES; this module imports no training code).
        align: the alignment summary (None when missing).
        transplant: the transplant summary (None when missing).
        start_idx_stage2: vocab_adaptation.train_start_idx_stage2 (an int means overlap is intended).
        zero_rows_allowed: the config asks for zero rows (alignment.fallback == "zero").
    """
    train = train or None
    stages = tuple(metrics)
    return [
        check_loss(train, metrics),
        check_embeddings(train, stages[0]),
        check_data_range(train, start_idx_stage2, stages),
        check_alignment(align, transplant, zero_rows_allowed),
        check_bpb(summary),
        check_pubmedqa(summary),
    ]
