"""Retention: bits per byte on general English (evaluation.general_inputs), the cost side of adaptation.

Training a model on domain text makes it forget some of what it knew (Nemotron's tokenizer-transplant
guide measured 15-18 % worse general-English bits per byte after full training at 1e-4, within 2 % with
a lower backbone rate). The 'general' task scores the general-text files with the ONE bits per byte
(vocabadapt.evaluation.bpb) for the source and every stage's model; `compare` gives each model's
difference from the source, and `check` is the checklist line: the final model's general-text bpb is
at most evaluation.max_retention_loss (a fraction) above the source's.

Files are read by the corpus reader with one document per line (.txt: wikitext-style files have one
paragraph per line and no blank lines) up to GENERAL_MAX_BYTES in file order, or evaluation.max_samples
documents when that is set.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..config import EvaluationConfig
from ..errors import ConfigError
from .tasks import Skip, Task

log = logging.getLogger(__name__)

LABEL = "general"  # the bpb field the task writes: result["bpb"]["general"]
GENERAL_MAX_BYTES = 200_000  # ~50k tokens: a stable figure (see tests) at a few minutes per model on a CPU
CHECK_ID = 7
CHECK_NAME = "General-text bits per byte of the final model not worse than the source by more than max_retention_loss"


def read_general(paths: list[str], max_docs: int | None, max_bytes: int = GENERAL_MAX_BYTES) -> list[str]:
    """The general-text documents (one per line of .txt, one per record of .jsonl/.parquet), in file order.

    Raises:
        ConfigError: a file is missing (names evaluation.general_inputs).
        InputError: a file is unreadable or holds no text.
    """
    from ..errors import InputError
    from ..text.corpus import FileStats, read_documents

    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise ConfigError(
            "evaluation.general_inputs",
            [
                f"evaluation.general_inputs: {p} does not exist; give a general-English text file or set []"
                for p in missing
            ],
        )
    docs: list[str] = []
    n_bytes = 0
    for p in paths:
        stats = FileStats()
        before = len(docs)
        for _, text in read_documents(Path(p), ["text"], "line", stats):
            if not text.strip():
                continue
            docs.append(text)
            n_bytes += len(text.encode("utf-8"))
            if (max_docs and len(docs) >= max_docs) or n_bytes >= max_bytes:
                return docs
        if len(docs) == before:
            raise InputError(f"evaluation.general_inputs: {p} holds no text")
    return docs


def prepare(entry: str, cfg: EvaluationConfig, heldout: Path) -> list[str] | Skip:
    if not cfg.general_inputs:
        return Skip("evaluation.general_inputs is empty")
    return read_general(cfg.general_inputs, cfg.max_samples)


def score(label: str, model: Any, tokenizer: Any, docs: list[str], cfg: EvaluationConfig, context: int) -> dict:
    from .bpb import bits_per_byte

    r = bits_per_byte(model, tokenizer, docs, context=context, stride=cfg.stride, batch_size=cfg.batch_size)
    log.info("general text %.4f bits/byte over %d bytes", r["bits_per_byte"], r["bytes"])
    return {"bpb": {LABEL: r}}


def _bpb(result: dict[str, Any] | None) -> float | None:
    v = ((result or {}).get("bpb") or {}).get(LABEL, {}).get("bits_per_byte")
    return float(v) if isinstance(v, (int, float)) else None


def compare(results: dict[str, dict], baseline: str, docs: Any = None) -> dict[str, Any]:
    """eval/summary.json "retention": {model: {"general_bpb", "source_general_bpb", "difference", "relative"}}."""
    src = _bpb(results.get("source"))
    out: dict[str, dict[str, Any]] = {}
    for name, r in results.items():
        b = _bpb(r)
        if b is None:
            continue
        row: dict[str, Any] = {"general_bpb": b, "source_general_bpb": src}
        if src:
            row["difference"] = b - src
            row["relative"] = b / src - 1.0
        out[name] = row
    return {"retention": out} if out else {}


def check(summary: dict[str, Any], max_loss: float) -> dict[str, Any]:
    """The checklist line: {"id", "name", "status": pass | fail | not-run, "evidence", "reason"}."""

    def result(status: str, evidence: dict, reason: str) -> dict[str, Any]:
        return {"id": CHECK_ID, "name": CHECK_NAME, "status": status, "evidence": evidence, "reason": reason}

    final = summary.get("final")
    rows = summary.get("retention") or {}
    if not rows:
        return result("not-run", {}, "no general-text bits per byte: set evaluation.general_inputs")
    if not final or final not in rows or "relative" not in rows[final]:
        return result("not-run", {"models": sorted(rows)}, "no final model or no source general-text bits per byte")
    r = rows[final]
    evidence = {"final": final, **r, "max_retention_loss": max_loss}
    if r["relative"] <= max_loss:
        return result("pass", evidence, f"{final} {100 * r['relative']:+.1f} % general-text bpb vs the source")
    return result(
        "fail",
        evidence,
        f"{final} forgot general English: {100 * r['relative']:+.1f} % bpb vs the source "
        f"(allowed +{100 * max_loss:.1f} %); lower the backbone learning rate or mix general text into training",
    )


def summary_lines(summary: dict[str, Any], names: list[str]) -> list[str]:
    """'general-text bpb (retention): source 1.0123, stage2 1.0456 (+3.3 %)'."""
    rows = summary.get("retention") or {}
    parts = []
    for n in names:
        r = rows.get(n)
        if not r:
            continue
        rel = f" ({100 * r['relative']:+.1f} %)" if n != "source" and "relative" in r else ""
        parts.append(f"{n} {r['general_bpb']:.4f}{rel}")
    return ["general-text bpb (retention, vs source): " + ", ".join(parts)] if parts else []


def report_columns(summary: dict[str, Any], name: str) -> list[tuple[str, str]]:
    if not summary.get("retention"):
        return []  # no general text scored: no columns
    r = (summary.get("retention") or {}).get(name) or {}
    b = r.get("general_bpb")
    rel = r.get("relative")
    return [
        ("general bits/byte¶", f"{b:.4f}" if isinstance(b, (int, float)) else "–"),
        ("Δ general vs source", f"{100 * rel:+.1f} %" if isinstance(rel, (int, float)) and name != "source" else "–"),
    ]


def report_notes(summary: dict[str, Any], names: list[str]) -> list[str]:
    if not summary.get("retention"):
        return []
    return [
        "¶General bits/byte: general-English text (evaluation.general_inputs) scored like the held-out text; Δ is "
        "the change from the source, what adaptation made the model forget (checklist line 7 allows "
        "evaluation.max_retention_loss)."
    ]


GENERAL = Task(
    "general",
    "general-English bits per byte (evaluation.general_inputs) and its difference from the source",
    prepare,
    score,
    compare=compare,
    summary_lines=summary_lines,
    report_columns=report_columns,
    report_notes=report_notes,
)
