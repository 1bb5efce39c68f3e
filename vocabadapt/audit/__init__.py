"""`vocabadapt audit`: review a config with real numbers before anyone spends GPU hours on it.

Each finding has an id, a severity (error | warning | info), the config key it is about, a message, a
recommendation and `evidence`: the numbers behind it. A rule that needs a fact nobody gave it (corpus
statistics, the model's config.json, GPU memory) returns an info finding that says what it could not
check; a rule that does not apply (LoRA rules with LoRA off) returns [].

    findings.py        Finding, Facts, the @rule registry
    facts.py           gather_facts: corpus statistics, the model's config, GPU memory, flash-attn
    arithmetic.py      data consumption, corpus size, parameter counts, number formats
    rules_training.py  learning rate, shuffling, stage-2 data range, token budget
    rules_distill.py   distillation: its learning rates, the teacher's memory beside the student
    rules_setup.py     precision and attention, batch and steps, optimiser and scheduler names
    rules_model.py     stage-2 memory, LoRA, maximum positions
    rules_data.py      vectors trained or skipped, alignment threshold and pivots, evaluation leaks, fastText n-grams
    format.py          the text table

Units: "GiB" is 2**30 bytes. `batch_size` and `gradient_accumulation` are per process; the rules
multiply by `vocab_adaptation.num_processes`, so every per-step number is for the whole run.
"""

from __future__ import annotations

import logging

from ..config import Config
from . import rules_data, rules_distill, rules_model, rules_setup, rules_training  # noqa: F401  (registers the rules)
from .arithmetic import count_parameters, stage2_start
from .facts import gather_facts, local_model_config, parse_corpus_stats
from .findings import RULES, SEVERITIES, Facts, Finding, rule
from .format import format_text, summarize

log = logging.getLogger(__name__)

__all__ = [
    "RULES",
    "Facts",
    "Finding",
    "audit",
    "count_parameters",
    "format_text",
    "gather_facts",
    "parse_corpus_stats",
    "rule",
    "stage2_start",
    "summarize",
]


def audit(config: Config, facts: Facts | None = None) -> list[Finding]:
    """Run every rule in RULES over a config.

    Args:
        config: a validated Config.
        facts: what is known besides the config (gather_facts); None = nothing. When it holds no model
            config and models.source_model is a local directory, that directory's config.json is used (a
            .gguf file: the config its header describes).
    Returns:
        Findings, errors first, then warnings, then info, each group in rule order.
    """
    facts = facts or Facts()
    if facts.model_config is None:
        mc, path = local_model_config(config)
        if mc is not None:
            facts = Facts(**{**facts.__dict__, "model_config": mc, "model_config_path": path})
    findings: list[Finding] = []
    for rule_id, fn in RULES.items():
        found = fn(config, facts)
        log.debug("audit rule %s: %d finding(s)", rule_id, len(found))
        findings.extend(found)
    order = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(findings, key=lambda f: order[f.severity])  # stable: rule order within a severity
