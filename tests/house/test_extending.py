"""A new initialiser and a new evaluation task are each one module and one registry entry (issue 24).

The toy initialiser and the toy task live in this module (the "one module"); each test appends one
entry to vocabadapt.registry (the "one registry entry") and runs the toy through the real path: the
config accepts its name, the transplant builds its rows, the evaluate path scores it and its hooks
reach eval/summary.json, the report and the closing lines.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from helpers import TEXT, save_tiny_model, tiny_model, train_bpe_tokenizer
from vocabadapt import init as initialisers
from vocabadapt import registry
from vocabadapt.align.mapping import TokenMapping
from vocabadapt.config import Config, EvaluationConfig
from vocabadapt.evaluation import tasks
from vocabadapt.evaluation.suite import build_summary, evaluate_model, gather_inputs
from vocabadapt.model.transplant import transplant_model
from vocabadapt.report.facts import RunFacts
from vocabadapt.report.markdown import build_blocks

# ------------------------------------------------------------------------------------------------
# the toy initialiser: every row copies source row 0


def toy_recipe(ctx: initialisers.InitContext) -> initialisers.Recipe:
    n = ctx.mapping.target_vocab_size
    return initialisers.Recipe(["toy"] * n, [[0] for _ in range(n)], [[1.0] for _ in range(n)])


def any_mapping(tok) -> TokenMapping:
    """A mapping of the right size: the toy initialiser reads none of its entries."""
    n = len(tok)
    return TokenMapping(["mean"] * n, [[] for _ in range(n)], [[] for _ in range(n)], [None] * n, n)


def tensors(directory) -> dict[str, torch.Tensor]:
    return {k: v for f in sorted(directory.glob("*.safetensors")) for k, v in load_file(str(f)).items()}


@pytest.fixture(scope="module")
def tok():
    return train_bpe_tokenizer([TEXT], vocab_size=300)


def test_a_new_initialiser_is_one_module_and_one_entry(tok, tmp_path, monkeypatch):
    entry = registry.InitialiserEntry("first_row", False, f"{__name__}:toy_recipe", "every row is source row 0")
    monkeypatch.setattr(registry, "INITIALISERS", [*registry.INITIALISERS, entry])

    cfg = Config.model_validate({"alignment": {"init": "first_row"}})
    assert cfg.alignment.init == "first_row" and cfg.vector_plan().trained is False
    loaded = initialisers.get("first_row")
    assert loaded.recipe is toy_recipe and loaded.refine is None

    src = save_tiny_model(tmp_path / "src", tok, "gpt_neox")
    summary = transplant_model(src, tok, tok, any_mapping(tok), tmp_path / "out", init="first_row")
    assert summary["init"] == "first_row" and summary["rows_per_method"] == {"toy": len(tok)}
    before, after = tensors(src), tensors(tmp_path / "out")
    key = summary["tensors"]["input"]
    rows = after[key][: len(tok)]  # (target_vocab, hidden): every one a copy of source row 0
    assert torch.equal(rows, before[key][0].expand_as(rows))


# ------------------------------------------------------------------------------------------------
# the toy task: tokens of a fixed text, with every hook


def _prepare(entry, cfg, heldout):
    return "the patient"


def _score(label, model, tokenizer, data, cfg, context):
    return {"count_tokens": {"tokens": len(tokenizer(data)["input_ids"]), "detail": [1, 2, 3]}}


def _compare(results, baseline, data):
    base = results[baseline]["count_tokens"]["tokens"]
    return {"count_tokens_vs_baseline": {n: r["count_tokens"]["tokens"] - base for n, r in results.items()}}


TOY = tasks.Task(
    "count_tokens",
    "tokens of a fixed text",
    _prepare,
    _score,
    compare=_compare,
    slim=lambda r: {**r, "count_tokens": {"tokens": r["count_tokens"]["tokens"]}} if "count_tokens" in r else r,
    summary_lines=lambda s, names: [f"toy tokens: {s['models'][names[0]]['count_tokens']['tokens']}"],
    report_columns=lambda s, n: [("toy tokens", str((s["models"][n].get("count_tokens") or {}).get("tokens")))],
)


def test_a_new_task_is_one_module_and_one_entry(tok, tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "TASKS", [*registry.TASKS, registry.TaskEntry("count_tokens", f"{__name__}:TOY", "")])

    ev = EvaluationConfig(datasets=["count_tokens", "pubmedqa"], qa={"enabled": False}, cost={"enabled": False})
    prepared, skips = gather_inputs(ev, tmp_path / "none.jsonl")
    assert list(prepared) == ["count_tokens"] and skips == {"pubmedqa": "evaluation.qa.enabled is false"}
    model = tiny_model("gpt_neox", vocab_size=len(tok))
    n_tokens = len(tok("the patient")["input_ids"])
    results = {name: evaluate_model(name, model, tok, prepared, ev) for name in ("source", "init")}
    assert results["init"]["count_tokens"] == {"tokens": n_tokens, "detail": [1, 2, 3]}

    summary = build_summary(results, "source", "init", prepared, skips, {}, None, None)
    assert summary["count_tokens_vs_baseline"] == {"source": 0, "init": 0}  # the compare hook
    assert summary["models"]["init"]["count_tokens"] == {"tokens": n_tokens}  # the slim hook
    assert tasks.summary_lines(summary, ["source", "init"]) == [f"toy tokens: {n_tokens}"]

    blocks = build_blocks(RunFacts(name="r", location=tmp_path, summary=summary), {})
    table = next(b for b in blocks if b[0] == "table" and b[1][0] == "model")
    assert table[1][-1] == "toy tokens" and [row[-1] for row in table[2]] == [str(n_tokens)] * 2
