"""Rules about the training recipe: learning rates and warmup, data order and range, token budget."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..config import Config, VocabAdaptationConfig
from .arithmetic import (
    EMBEDDINGS_ONLY_LR_CAP,
    LR_ERROR_FACTOR,
    LR_WARN_FACTOR,
    PAPER_LR_STAGE1,
    PAPER_SEQ_LEN,
    PAPER_SEQUENCES_PER_STEP,
    PAPER_TOKENS_PER_STEP,
    SMALL_BATCH_TOKENS,
    corpus_size,
    lr_text,
    num,
    sequences_per_step,
    stage2_start,
    stage_consumption,
)
from .findings import VA, WARMUP, CorpusSize, Facts, Finding, missing, rule


@rule("lr_stage1", order=10)
def check_lr_stage1(config: Config, facts: Facts) -> list[Finding]:
    """Stage-1 learning rate against the tokens per optimiser step, scaled from the paper's setting."""
    if config.embedding_warmup.enabled:
        return []  # stage 1 is the warm-up: rule warmup_lr reviews its lr against its batch
    return _embeddings_lr(config, facts, "lr_stage1", f"{VA}.lr_stage1", "lr_stage1")


@rule("warmup_lr", order=11)
def check_warmup_lr(config: Config, facts: Facts) -> list[Finding]:
    """The embedding warm-up's learning rate against its own batch, like stage 1's (it is stage 1)."""
    w = config.embedding_warmup
    if not w.enabled:
        return []
    if w.lr is None:  # inherited: the finding is about the key that holds the value
        return _embeddings_lr(config, facts, "warmup_lr", f"{VA}.lr_stage1", "lr_stage1 (the warm-up's lr)")
    return _embeddings_lr(config, facts, "warmup_lr", f"{WARMUP}.lr", "embedding_warmup.lr")


@rule("warmup_unused", order=12)
def check_warmup_unused(config: Config, facts: Facts) -> list[Finding]:
    """An embedding_warmup section with settings but enabled: false trains nothing; say so."""
    w = config.embedding_warmup
    given = sorted(k for k in w.model_fields_set if k != "enabled")
    if w.enabled or not given:
        return []
    return [
        Finding(
            "warmup_unused",
            "info",
            f"{WARMUP}.enabled",
            f"embedding_warmup sets {', '.join(given)} but enabled is false: the warm-up does not run and "
            "these values are not used.",
            "set embedding_warmup.enabled: true (with vocab_adaptation.enabled: false) to train it, or "
            "remove the section",
            {"keys": given},
        )
    ]


def _embeddings_lr(config: Config, facts: Facts, rule_id: str, key: str, name: str) -> list[Finding]:
    """An embeddings-and-head learning rate (stage 1 or the warm-up, which is stage 1) against its batch."""
    va = config.stage_training("stage1")
    if va.stage1_steps == 0:
        return []
    seqs = sequences_per_step(config, facts, "stage1")
    tokens = seqs * va.max_seq_length
    ratio = tokens / PAPER_TOKENS_PER_STEP
    sqrt_lr = PAPER_LR_STAGE1 * math.sqrt(ratio)
    linear_lr = PAPER_LR_STAGE1 * ratio
    small = tokens < SMALL_BATCH_TOKENS
    lr = va.lr_stage1
    ev = {
        "lr_stage1": lr,
        "key": key,
        "tokens_per_step": tokens,
        "sequences_per_step": seqs,
        "batch_size": va.batch_size,
        "gradient_accumulation": va.gradient_accumulation,
        "max_seq_length": va.max_seq_length,
        "world_size": va.num_processes,
        "paper_lr_stage1": PAPER_LR_STAGE1,
        "paper_tokens_per_step": PAPER_TOKENS_PER_STEP,
        "batch_ratio": ratio,
        "sqrt_scaled_lr": sqrt_lr,
        "linear_scaled_lr": linear_lr,
        "lr_over_sqrt_scaled": lr / sqrt_lr,
        "lr_over_linear_scaled": lr / linear_lr,
    }
    step = (
        f"{num(tokens)} tokens per optimiser step ({va.batch_size} × {va.gradient_accumulation} × "
        f"{num(va.max_seq_length)} × {va.num_processes} process{'es' if va.num_processes > 1 else ''})"
    )
    scaled = (
        f"the paper's {lr_text(PAPER_LR_STAGE1)} at {num(PAPER_TOKENS_PER_STEP)} tokens/step "
        f"({PAPER_SEQUENCES_PER_STEP:,} × {PAPER_SEQ_LEN:,}) scales to {lr_text(sqrt_lr)} (square-root, "
        f"Adam-style) or {lr_text(linear_lr)} (linear) at {ratio:.4g}× the batch"
    )
    hi = min(sqrt_lr, EMBEDDINGS_ONLY_LR_CAP) if small else sqrt_lr
    advice = (
        f"set {name} between {lr_text(linear_lr)} (linear scaling) and {lr_text(hi)}"
        + (
            f" (the embeddings-only cap at this batch; square-root scaling gives {lr_text(sqrt_lr)})"
            if small and hi < sqrt_lr
            else " (square-root scaling)"
        )
        + f", e.g. {key.rsplit('.', 1)[-1]}: {lr_text(linear_lr)}; or raise the batch towards "
        f"{PAPER_SEQUENCES_PER_STEP:,} sequences per step"
    )
    severity, problems = _lr_problems(lr, sqrt_lr, linear_lr, small)
    if problems:
        msg = f"{name} " + "; ".join(problems) + f". At {step}, {scaled}."
        return [Finding(rule_id, severity, key, msg, advice, ev)]
    if lr < linear_lr / 10:
        return [
            Finding(
                rule_id,
                "info",
                key,
                f"{name} {lr_text(lr)} at {step} is below a tenth of the linear-scaled {lr_text(linear_lr)}; "
                f"{scaled}. Stage 1 may barely move the new rows.",
                f"consider {name} ≥ {lr_text(linear_lr)}",
                ev,
            )
        ]
    return [
        Finding(rule_id, "info", key, f"{name} {lr_text(lr)} at {step} is consistent with the paper: {scaled}.", "", ev)
    ]


def _lr_problems(lr: float, sqrt_lr: float, linear_lr: float, small: bool) -> tuple[str, list[str]]:
    """(severity, problems) of an embeddings learning rate: above the scaled paper value, above the small-batch cap."""
    problems = []
    severity = "info"
    if lr > LR_WARN_FACTOR * sqrt_lr:
        severity = "error" if lr > LR_ERROR_FACTOR * sqrt_lr else "warning"
        problems.append(
            f"{lr_text(lr)} is {lr / sqrt_lr:.3g}× the square-root-scaled paper value ({lr_text(sqrt_lr)}) "
            f"and {lr / linear_lr:.3g}× the linear-scaled one ({lr_text(linear_lr)})"
        )
    if small and lr > EMBEDDINGS_ONLY_LR_CAP:
        if severity == "info":
            severity = "warning"
        problems.append(
            ("it is" if problems else f"{lr_text(lr)} is") + f" above {lr_text(EMBEDDINGS_ONLY_LR_CAP)}, "
            f"high for embeddings-only training at a small batch (< {num(SMALL_BATCH_TOKENS)} tokens/step)"
        )
    return severity, problems


@rule("shuffle", order=20)
def check_shuffle(config: Config, facts: Facts) -> list[Finding]:
    """A fixed data order is a known failure of the original training code."""
    if config.vocab_adaptation.shuffle:
        return []
    return [
        Finding(
            "shuffle",
            "error",
            f"{VA}.shuffle",
            "shuffle is off: every epoch and every stage reads the packed sequences in file order, so "
            "consecutive batches come from the same documents and sources (the original training code's "
            "known failure).",
            "set vocab_adaptation.shuffle: true (seeded by vocab_adaptation.seed, reproducible)",
            {"shuffle": False},
        )
    ]


@rule("stage2_start", order=30)
def check_stage2_start(config: Config, facts: Facts) -> list[Finding]:
    """Where stage 2 starts in the data order, against stage 1's consumption and the corpus size."""
    va = config.vocab_adaptation
    if va.stage2_steps == 0 or config.embedding_warmup.enabled:
        return []  # stage 2 reads no data (with the warm-up enabled, stage 2 does not run)
    c1, c2 = stage_consumption(config, facts)
    reads = _Stage2Reads(
        sequences_per_step(config, facts), c1, c2, stage2_start(config, facts), va.train_start_idx_stage2 == "auto"
    )
    ev: dict[str, Any] = {
        "train_start_idx_stage2": va.train_start_idx_stage2,
        "start_sequence": reads.start,
        "sequences_per_step": reads.seqs,
        "stage1_sequences": c1,
        "stage2_sequences": c2,
        "stage1_tokens": c1 * va.max_seq_length,
        "stage2_tokens": c2 * va.max_seq_length,
        "auto_value": c1,
        "stage2_end_sequence": reads.start + c2,
    }
    notes = _paper_batch_notes(va, reads, ev)
    severity, problems = _stage1_overlap(reads, ev)
    size = corpus_size(config, facts)
    if size is None:
        return [_stage2_start_unsized(va, facts, reads, ev, severity, problems + notes)]
    return [_stage2_start_sized(va, size, reads, ev, severity, problems, notes)]


@dataclass(frozen=True)
class _Stage2Reads:
    """What the two stages read of the packed sequences, in sequences."""

    seqs: int  # per optimiser step, all processes together
    c1: int  # stage 1's consumption
    c2: int  # stage 2's consumption
    start: int  # stage 2's first sequence
    is_auto: bool  # train_start_idx_stage2: auto (start == c1)

    @property
    def auto_advice(self) -> str:
        return f"set train_start_idx_stage2: auto (= {num(self.c1)} here)"


def _paper_batch_notes(va: VocabAdaptationConfig, r: _Stage2Reads, ev: dict[str, Any]) -> list[str]:
    """A note when the start is stage 1's consumption at the paper's batch, not at this run's."""
    # The paper's 2,560,000 is 2,500 steps × 1,024 sequences: stage 1's consumption at the paper's batch.
    for steps in {va.stage1_steps, 2500}:
        if not r.is_auto and r.start == steps * PAPER_SEQUENCES_PER_STEP and r.seqs != PAPER_SEQUENCES_PER_STEP:
            ev["matches_paper_batch"] = True
            return [
                f"{num(r.start)} = {steps:,} steps × {PAPER_SEQUENCES_PER_STEP:,} sequences, stage 1's "
                f"consumption at the paper's batch; at {num(r.seqs)} sequences per step stage 1 consumes "
                f"{num(r.c1)}, which is what auto chooses"
            ]
    return []


def _stage1_overlap(r: _Stage2Reads, ev: dict[str, Any]) -> tuple[str, list[str]]:
    """(severity, problems) of a fixed start before stage 1's end (re-read data) or after it (unused data)."""
    if not r.is_auto and r.start < r.c1:
        return "warning", [
            f"stage 2 re-reads {num(r.c1 - r.start)} sequences stage 1 already trained on "
            f"(start {num(r.start)} < stage-1 consumption {num(r.c1)})"
        ]
    if not r.is_auto and r.start > r.c1:
        ev["skipped_sequences"] = r.start - r.c1
        return "warning", [
            f"{num(r.start - r.c1)} sequences between the end of stage 1 ({num(r.c1)}) and the start of "
            f"stage 2 are never used"
        ]
    return "info", []


def _stage2_start_unsized(
    va: VocabAdaptationConfig, facts: Facts, r: _Stage2Reads, ev: dict[str, Any], severity: str, problems: list[str]
) -> Finding:
    """The finding without a corpus size: the data the two stages need, stated as a requirement."""
    consumption = (
        f"stage 1 reads {num(r.c1)} sequences ({va.stage1_steps:,} steps × {num(r.seqs)}), stage 2 reads "
        f"{num(r.c2)} ({va.stage2_steps:,} × {num(r.seqs)}) from sequence {num(r.start)}"
        + (" (auto)" if r.is_auto else "")
    )
    need_tokens = (r.start + r.c2) * va.max_seq_length
    ev["required_sequences"] = r.start + r.c2
    ev["required_tokens"] = need_tokens
    extra = f"; the corpus must hold ≥ {num(r.start + r.c2)} packed sequences ({num(need_tokens)} target tokens)"
    if facts.documents:
        per_doc = need_tokens / facts.documents
        ev["required_tokens_per_document"] = per_doc
        extra += f", i.e. ≥ {num(per_doc)} tokens per document over its {num(facts.documents)} documents"
    parts = problems + [
        consumption + extra,
        "not checked against the corpus: no token or byte counts (--corpus-stats with "
        "tokens or bytes, or corpus.size_gb)",
        f"train_start_idx_stage2: auto means stage 1's consumption = {num(r.c1)}, so "
        "stage 2 starts on data stage 1 never saw",
    ]
    msg = ". ".join(p[0].upper() + p[1:] for p in parts) + "."
    rec = r.auto_advice if not r.is_auto else "pass --corpus-stats <run>/corpus/stats.json to check the data suffices"
    return Finding("stage2_start", severity, f"{VA}.train_start_idx_stage2", msg, rec, ev)


def _stage2_start_sized(
    va: VocabAdaptationConfig,
    size: CorpusSize,
    r: _Stage2Reads,
    ev: dict[str, Any],
    severity: str,
    problems: list[str],
    notes: list[str],
) -> Finding:
    """The finding against the corpus size: past the end, wrapping around, or stage 1 alone over an epoch."""
    N = size.sequences
    ev.update(
        {
            "corpus_sequences": N,
            "corpus_tokens": size.tokens,
            "corpus_basis": size.basis,
            "corpus_measured": size.measured,
            "stage1_fraction": r.c1 / N if N else math.inf,
            "stage2_fraction": r.c2 / N if N else math.inf,
            "start_fraction": r.start / N if N else math.inf,
        }
    )
    est = "" if size.measured else "about "
    if r.start >= N:
        # An estimate is trusted to within 2×; beyond that, or with measured counts, it is an error.
        severity = "error" if size.measured or r.start >= 2 * N else "warning"
        problems.insert(
            0,
            f"stage 2 starts at sequence {num(r.start)}, past the end of the data "
            f"({r.start / N:.2f}× the corpus{'' if size.measured else ', estimated'})"
            if N
            else "the corpus is empty",
        )
    elif r.start + r.c2 > N:
        severity = "error" if severity == "error" else "warning"
        problems.append(
            f"stage 2 runs past the end ({num(r.start + r.c2)} > {num(N)}) and wraps around into data already read"
        )
    elif r.c1 > N:
        severity = "warning" if severity == "info" else severity
        problems.append(f"stage 1 alone reads {r.c1 / N:.2f} epochs, so stage 2's data was seen in stage 1")
    share = (f" = {r.c1 / N:.1%} of the corpus" if N else "", f" ({r.c2 / N:.1%})" if N else "")
    consumption = (
        f"stage 1 reads {num(r.c1)} sequences ({va.stage1_steps:,} steps × {num(r.seqs)}{share[0]}), "
        f"stage 2 {num(r.c2)}{share[1]} from sequence {num(r.start)}" + (" (auto)" if r.is_auto else "")
    )
    parts = problems + [consumption] + notes + [f"corpus: {est}{num(N)} sequences [{size.basis}]"]
    msg = ". ".join(p[0].upper() + p[1:] for p in parts)
    rec = ""
    if severity != "info" or not r.is_auto:
        rec = r.auto_advice
        if r.c1 + r.c2 > N:  # even with auto the two stages do not fit in one epoch
            rec += "; and use a larger corpus or fewer steps so both stages fit in one epoch"
    return Finding("stage2_start", severity, f"{VA}.train_start_idx_stage2", msg + ".", rec, ev)


@rule("token_budget", order=40)
def check_token_budget(config: Config, facts: Facts) -> list[Finding]:
    """Tokens each stage trains on (steps × batch × accumulation × seq) against the corpus tokens."""
    # Stage 1 is the embedding warm-up when that is enabled: its steps and sequence length.
    warm = config.embedding_warmup.enabled
    steps1 = f"{WARMUP}.steps" if warm else f"{VA}.stage1_steps"
    t1 = stage_consumption(config, facts)[0] * config.stage_training("stage1").max_seq_length
    t2 = stage_consumption(config, facts)[1] * config.vocab_adaptation.max_seq_length
    ev: dict[str, Any] = {"stage1_tokens": t1, "stage2_tokens": t2, "total_tokens": t1 + t2}
    size = corpus_size(config, facts)
    if size is None:
        return [
            missing(
                "token_budget",
                steps1,
                f"the token budget (stage 1 {num(t1)} tokens, stage 2 {num(t2)} tokens) against the "
                "corpus: no corpus token or byte counts",
                "pass --corpus-stats <run>/corpus/stats.json (or set corpus.size_gb)",
                ev,
            )
        ]
    T = size.tokens
    ev.update(
        {
            "corpus_tokens": T,
            "corpus_measured": size.measured,
            "corpus_basis": size.basis,
            "stage1_epochs": t1 / T if T else math.inf,
            "stage2_epochs": t2 / T if T else math.inf,
            "total_epochs": (t1 + t2) / T if T else math.inf,
        }
    )
    est = "" if size.measured else " (estimated)"
    over = [(name, toks / T) for name, toks in (("stage 1", t1), ("stage 2", t2)) if T and toks > T]
    desc = (
        f"stage 1{' (the embedding warm-up)' if warm else ''} trains on {num(t1)} tokens ({t1 / T:.1%} of the "
        f"corpus's {num(T)}{est}), stage 2 on {num(t2)} ({t2 / T:.1%}); together {(t1 + t2) / T:.2f} epochs"
        if T
        else "the corpus is empty"
    )
    if over:
        return [
            Finding(
                "token_budget",
                "warning",
                steps1 if over[0][0] == "stage 1" else f"{VA}.stage2_steps",
                desc
                + "; "
                + ", ".join(f"{n} alone is {e:.2f} epochs" for n, e in over)
                + ": repeated data, overfitting risk.",
                "use more text (corpus.size_gb) or fewer steps so each stage stays within one epoch",
                ev,
            )
        ]
    return [Finding("token_budget", "info", steps1, desc + ".", "", ev)]
