"""evaluation.lm_eval: the user's own lm-eval tasks on every model of a run, in eval/ and the report."""

from __future__ import annotations

import importlib.util
import json

import pytest

from helpers import TEXT, save_tiny_model, train_bpe_tokenizer, write_config, write_jsonl
from vocabadapt.config import Config, load_config
from vocabadapt.errors import ConfigError, InputError
from vocabadapt.run.context import StageContext
from vocabadapt.run.layout import RunLayout
from vocabadapt.stages.evaluate import run as run_stage

pytest.importorskip("lm_eval")  # the dev extra installs it

DOCS = [TEXT[:180], "aspirin reduces pain . the study of tumour growth in mice", TEXT[40:400]]


def _task_folder(tmp_path):
    """A user task over a local JSONL file: which of two sentences is the real one (multiple choice)."""
    folder = tmp_path / "tasks"
    folder.mkdir()
    items = [
        {"question": "the patient received", "choices": [" aspirin for chest pain .", " mice growth the ."], "gold": 0},
        {"question": "heparin slows", "choices": [" pain the tumour", " the growth ."], "gold": 1},
        {"question": "cardiac arrest after", "choices": [" cocaine use was reported", " slows aspirin ."], "gold": 0},
    ]
    (folder / "data.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    (folder / "my_task.yaml").write_text(
        f"task: my_local_task\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {folder / 'data.jsonl'}\n"
        "output_type: multiple_choice\ntest_split: test\ndoc_to_text: '{{question}}'\ndoc_to_target: gold\n"
        "doc_to_choice: '{{choices}}'\ntarget_delimiter: ''\nmetric_list:\n  - metric: acc\n  - metric: acc_norm\n"
    )
    return folder


def test_a_local_lm_eval_task_runs_on_every_model_and_reaches_the_report(tmp_path):
    from vocabadapt.stages.report import build_report

    tok = train_bpe_tokenizer([TEXT])
    run = tmp_path / "run"
    tok.save_pretrained(str(run / "tokenizers" / "source"))
    tok.save_pretrained(str(run / "tokenizers" / "target"))
    src = save_tiny_model(tmp_path / "source_model", tok, seed=0)
    save_tiny_model(run / "model" / "stage1", tok, seed=2)
    write_jsonl(run / "corpus" / "heldout.jsonl", DOCS)
    cfg = Config(
        models={"source_model": str(src)},
        evaluation={
            "datasets": ["heldout"],
            "batch_size": 2,
            "context_length": 64,
            "lm_eval": {"tasks": ["my_local_task"], "include_path": str(_task_folder(tmp_path))},
        },
    )
    run_stage(StageContext(layout=RunLayout(run), config=cfg, stage="evaluate"))
    summary = json.loads((run / "eval" / "summary.json").read_text())
    values = {}
    for name in ("source", "stage1"):
        task = summary["models"][name]["lm_eval"]["tasks"]["my_local_task"]
        assert task["samples"] == 3 and set(task["metrics"]) == {"acc", "acc_norm"}
        acc = task["metrics"]["acc"]
        assert acc["value"] in (0, 1 / 3, 2 / 3, 1) and acc["stderr"] is not None
        values[name] = acc["value"]
    diff = summary["lm_eval_vs_source"]["stage1"]["my_local_task"]["acc"]
    assert diff == pytest.approx(values["stage1"] - values["source"])
    build_report(run)
    md = (run / "report" / "report.md").read_text()
    assert "### lm-evaluation-harness tasks" in md
    rows = [line for line in md.splitlines() if line.startswith("| my_local_task |")]
    assert len(rows) == 2 and all(f"{values['source']:.4f} ±" in r for r in rows if "| acc |" in r)
    assert f"({diff:+.4f})" in next(r for r in rows if "| acc |" in r)


def test_hub_dataset_offline_is_an_error_naming_the_task(tmp_path, monkeypatch):
    import datasets.config
    import huggingface_hub.constants

    from vocabadapt.evaluation import lm_eval_tasks

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    (tmp_path / "hub.yaml").write_text(
        "task: hub_task\ndataset_path: some-org/some-dataset\noutput_type: multiple_choice\ntest_split: test\n"
        "doc_to_text: '{{q}}'\ndoc_to_target: 0\ndoc_to_choice: ['a', 'b']\n"
    )
    manager = lm_eval_tasks.task_manager(["hub_task"], str(tmp_path))
    with pytest.raises(InputError, match=r"lm-eval task 'hub_task': cannot load its dataset .*dataset_path: json"):
        lm_eval_tasks.check_datasets(["hub_task"], manager)


def test_lm_eval_tasks_without_the_extra_fail_at_config_load(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "lm_eval" else real(name, *a))
    path = write_config(
        tmp_path / "c.yaml", {"models": {"source_model": "m"}, "evaluation": {"lm_eval": {"tasks": ["my_local_task"]}}}
    )
    with pytest.raises(ConfigError, match=r"evaluation\.lm_eval.*pip install 'vocabadapt\[lm-eval\]'"):
        load_config(path)
    load_config(write_config(tmp_path / "ok.yaml", {"models": {"source_model": "m"}}))  # no tasks: no extra needed


@pytest.mark.slow  # indexes lm-eval's built-in tasks (~20 s)
def test_unknown_task_name_is_a_config_error_with_suggestions(tmp_path):
    from vocabadapt.evaluation import lm_eval_tasks

    folder = _task_folder(tmp_path)
    with pytest.raises(ConfigError, match="unknown lm-eval task.*'my_locl_task' \\(did you mean my_local_task"):
        lm_eval_tasks.task_manager(["my_locl_task"], str(folder))
