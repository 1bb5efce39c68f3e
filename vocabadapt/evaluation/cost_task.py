"""The `cost` evaluation task: what each model costs per byte of text, next to the source's.

For every model (vocabadapt.evaluation.cost): multiply-adds per byte (body + head, from a meta-device
model, times the model's own tokens per byte on the held-out text), parameter memory, and measured
greedy generation and prompt scoring speed in bytes of text per second.

Speed is only comparable when measured side by side, so the first model the task scores (the evaluate
stage scores the source first) is kept as the reference, and every later model is timed interleaved
with it, prompt by prompt, in one run (evaluation.cost: the same held-out prompts, the same number of
new bytes, evaluation.cost.threads threads). The reference therefore stays in memory while the others
are scored (two models at a time instead of one); set evaluation.cost.enabled: false where that does
not fit. Runs whenever evaluation.cost.enabled (no evaluation.datasets entry needed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import EvaluationConfig
from . import cost
from .tasks import Skip, Task

log = logging.getLogger(__name__)

RESULT_KEY = "cost"
RATIO_KEYS = ("macs_per_byte", "parameter_bytes", "generate_bytes_per_s", "score_bytes_per_s")


@dataclass
class CostSetup:
    texts: list[str]  # held-out documents: bytes per token of each model's tokenizer
    prompts: list[str]  # the same prompt texts for every model
    reference: tuple[Any, Any] | None = None  # (model, tokenizer) of the first model scored
    reference_speed: list[dict[str, Any]] = field(default_factory=list)  # its figures from every paired run


def prepare(entry: str, cfg: EvaluationConfig, heldout: Path) -> CostSetup | Skip:
    from .suite import read_texts

    if not cfg.cost.enabled:
        return Skip("evaluation.cost.enabled is false")
    if not heldout.is_file():
        return Skip(f"{heldout} is missing: no held-out prompts")
    texts = read_texts(heldout, cfg.max_samples)
    return CostSetup(texts, cost.prompts_from(texts, cfg.cost.prompts, cfg.cost.prompt_bytes))


def _bytes_per_token(tokenizer: Any, texts: list[str]) -> float | None:
    from .bpb import encode

    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_tokens = sum(len(encode(tokenizer, t)) for t in texts)
    return n_bytes / n_tokens if n_tokens else None


def score(label: str, model: Any, tokenizer: Any, setup: CostSetup, cfg: EvaluationConfig, context: int) -> dict:
    out = cost.cost_per_byte(cost.macs_per_token(model), _bytes_per_token(tokenizer, setup.texts))
    out["parameter_bytes"] = cost.parameter_bytes(model)
    if setup.reference is None or not setup.prompts:
        setup.reference = (model, tokenizer)  # the source: timed beside each later model
        out["speed"] = None
    else:
        speed = cost.measure_speed(
            {"reference": setup.reference, "model": (model, tokenizer)},
            setup.prompts,
            cfg.cost.new_bytes,
            threads=cfg.cost.threads,
        )
        setup.reference_speed.append(speed["reference"])
        out["speed"] = speed["model"]
        out["reference_speed"] = speed["reference"]  # the source, timed in the same run
        out["speed_ratio"] = {
            k: speed["model"][k] / speed["reference"][k]
            for k in ("generate_bytes_per_s", "score_bytes_per_s")
            if speed["model"][k] and speed["reference"][k]
        }
    return {RESULT_KEY: out}


def _flat(r: dict[str, Any]) -> dict[str, Any]:
    c = r.get(RESULT_KEY) or {}
    s = c.get("speed") or {}
    return {
        "macs_per_byte": c.get("macs_per_byte"),
        "body_macs_per_byte": c.get("body_macs_per_byte"),
        "head_macs_per_byte": c.get("head_macs_per_byte"),
        "macs_per_token": c.get("macs_per_token"),
        "body_macs_per_token": c.get("body_macs_per_token"),
        "head_macs_per_token": c.get("head_macs_per_token"),
        "bytes_per_token": c.get("bytes_per_token"),
        "parameter_bytes": c.get("parameter_bytes"),
        "generate_bytes_per_s": s.get("generate_bytes_per_s"),
        "score_bytes_per_s": s.get("score_bytes_per_s"),
    }


def compare(results: dict[str, dict], baseline: str, setup: CostSetup) -> dict[str, Any]:
    """eval/summary.json "cost": every model's figures and their ratios to the source's.

    The source's own speed is the mean of its figures over the paired runs; each model's speed ratio
    is the one measured beside the source in its own run (not against that mean).
    """
    rows = {name: _flat(r) for name, r in results.items() if RESULT_KEY in r}
    if not rows:
        return {}
    if "source" in rows and setup.reference_speed:
        for k in ("generate_bytes_per_s", "score_bytes_per_s"):
            vals = [s[k] for s in setup.reference_speed if s.get(k)]
            rows["source"][k] = sum(vals) / len(vals) if vals else None
    ref = rows.get("source") or {}
    for name, row in rows.items():
        if name == "source":
            continue
        measured = (results[name].get(RESULT_KEY) or {}).get("speed_ratio") or {}
        ratio = {k: row[k] / ref[k] for k in ("macs_per_byte", "parameter_bytes") if row.get(k) and ref.get(k)}
        ratio.update(measured)
        row["ratio_to_source"] = ratio
    first: dict[str, Any] = next(
        (r[RESULT_KEY].get("speed") for r in results.values() if (r.get(RESULT_KEY) or {}).get("speed")), {}
    )
    return {
        "cost": {
            "models": rows,
            "speed_setup": {k: first.get(k) for k in ("prompts", "new_bytes_per_prompt", "threads")} if first else None,
        }
    }


def summary_lines(summary: dict[str, Any], names: list[str]) -> list[str]:
    """Bytes per second (generation, scoring) and MACs per byte, with ratios to the source."""
    rows = (summary.get("cost") or {}).get("models") or {}
    parts = []
    for n in names:
        r = rows.get(n)
        if not r:
            continue
        ratio = r.get("ratio_to_source") or {}
        gen = r.get("generate_bytes_per_s")
        txt = f"{n} " + (f"{gen:.0f} B/s generated" if gen else "– B/s")
        if "generate_bytes_per_s" in ratio:
            txt += f" (x{ratio['generate_bytes_per_s']:.2f})"
        if r.get("macs_per_byte"):
            txt += f", {r['macs_per_byte'] / 1e6:.1f}M MACs/byte"
            if "macs_per_byte" in ratio:
                txt += f" (x{ratio['macs_per_byte']:.2f})"
        parts.append(txt)
    return ["cost per byte (vs source): " + "; ".join(parts)] if parts else []


def report_blocks(summary: dict[str, Any], names: list[str]) -> list[tuple]:
    """A 'Cost per byte' table (a row per model, ratios to the source in parentheses) and how it was measured."""
    rows_in = (summary.get("cost") or {}).get("models") or {}
    if not rows_in:
        return []

    def cell(r: dict[str, Any], key: str, scale: float, unit: str, digits: int = 1) -> str:
        v = r.get(key)
        if not isinstance(v, (int, float)):
            return "–"
        ratio = (r.get("ratio_to_source") or {}).get(key)
        return f"{v / scale:.{digits}f}{unit}" + (f" (x{ratio:.2f})" if isinstance(ratio, (int, float)) else "")

    headers = ["model", "bytes/token", "MACs/token body + head", "MACs/byte", "parameters", "generate B/s", "score B/s"]
    rows = []
    for n in names:
        r = rows_in.get(n)
        if not r:
            continue
        body, head = r.get("body_macs_per_token"), r.get("head_macs_per_token")
        split = f"{body / 1e6:.1f}M + {head / 1e6:.1f}M" if body is not None and head is not None else "–"
        rows.append(
            [
                n,
                cell(r, "bytes_per_token", 1, "", 3),
                split,
                cell(r, "macs_per_byte", 1e6, "M"),
                cell(r, "parameter_bytes", 1e6, " MB", 0),
                cell(r, "generate_bytes_per_s", 1, "", 0),
                cell(r, "score_bytes_per_s", 1, "", 0),
            ]
        )
    setup = (summary.get("cost") or {}).get("speed_setup") or {}
    note = (
        "MACs/byte: multiply-adds of the linear layers (body + head, counted on a meta-device model) per token, "
        "over the model's bytes per token on the held-out text. B/s: bytes of text per second, greedy generation "
        f"with the KV cache ({setup.get('prompts')} held-out prompts, {setup.get('new_bytes_per_prompt')} new bytes "
        f"each, {setup.get('threads')} thread(s)) and prompt scoring; each model was timed interleaved with the "
        "source in one run, and its ratio (in parentheses) is to the source of that run; the source's row is the "
        "mean of its runs."
    )
    return [("h", 3, "Cost per byte"), ("table", headers, rows), ("p", note)]


COST = Task(
    "cost",
    "MACs per byte, parameter memory, generation and scoring bytes/s, each model timed beside the source",
    prepare,
    score,
    compare=compare,
    summary_lines=summary_lines,
    report_blocks=report_blocks,
)
