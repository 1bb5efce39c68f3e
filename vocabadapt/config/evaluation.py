"""Config sections of evaluation (held-out text, PubMedQA, lm-eval tasks) and the pipeline."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field, field_validator, model_validator

from .. import registry
from .common import PATH, PATH_OR_ID, Section


class QAConfig(Section):
    enabled: bool = Field(True, description="Evaluate PubMedQA-format question answering.")
    file: Optional[str] = Field(None, description="PQA-L format JSON/JSONL file.", json_schema_extra=PATH)
    split_ids: Optional[str] = Field(
        None,
        description="JSON file whose keys are the ids to evaluate (e.g. test_ground_truth.json).",
        json_schema_extra=PATH,
    )
    fewshot_file: Optional[str] = Field(None, description="Records for few-shot examples.", json_schema_extra=PATH)
    fewshot_k: int = Field(0, ge=0, description="Few-shot examples per prompt (0 = zero-shot only).")
    bootstrap: int = Field(1000, ge=0, description="Bootstrap resamples for intervals.")


class LmEvalConfig(Section):
    """lm-evaluation-harness tasks run on the source model and every stage's model."""

    tasks: list[str] = Field(
        default_factory=list,
        description="lm-eval task or group names ([] = none), run on every model (the 'lm_eval' evaluation task); "
        "needs `pip install 'vocabadapt[lm-eval]'`.",
    )
    include_path: Optional[str] = Field(
        None,
        description="Folder of your own lm-eval task YAMLs (e.g. dataset_path: json over local files).",
        json_schema_extra=PATH,
    )
    limit: Optional[int] = Field(None, ge=1, description="Documents per task (lm-eval's --limit); null = all.")
    num_fewshot: Optional[int] = Field(
        None, ge=0, description="Few-shot examples (lm-eval's --num_fewshot); null = each task's own default."
    )

    @model_validator(mode="after")
    def _lm_eval_installed(self) -> LmEvalConfig:
        import importlib.util

        if self.tasks and importlib.util.find_spec("lm_eval") is None:
            raise ValueError(
                "evaluation.lm_eval.tasks needs lm-evaluation-harness, which is not installed: "
                "pip install 'vocabadapt[lm-eval]' (or set evaluation.lm_eval.tasks: [])"
            )
        return self


class ClozeConfig(Section):
    """A multiple-choice cloze file (vocabadapt.evaluation.cloze), the 'cloze' evaluation task."""

    file: Optional[str] = Field(
        None,
        description="Cloze JSONL ({context, choices, gold}), e.g. examples/bc5cdr_cloze/bc5cdr_cloze.jsonl; "
        "null = the 'cloze' task is skipped.",
        json_schema_extra=PATH,
    )
    max_questions: Optional[int] = Field(
        None, ge=1, description="A seeded sample of this many questions; null = evaluation.max_samples, else all."
    )
    bootstrap: int = Field(1000, ge=0, description="Bootstrap resamples for the accuracy intervals.")


class CostConfig(Section):
    """Cost per byte of every model (vocabadapt.evaluation.cost): compute, memory, measured speed."""

    enabled: bool = Field(True, description="Measure MACs per byte, parameter memory and speed for every model.")
    prompts: int = Field(20, ge=1, description="Held-out prompts for the speed measurement (the same for every model).")
    prompt_bytes: int = Field(256, ge=8, description="Bytes of each prompt (cut back to a space).")
    new_bytes: int = Field(128, ge=1, description="Bytes of new text every model generates per prompt (greedy).")
    threads: int = Field(1, ge=1, description="torch threads while timing (1: comparable, like a laptop core).")


class EvaluationConfig(Section):
    enabled: bool = Field(True, description="Run the evaluate stage.")
    datasets: list[str] = Field(
        default_factory=lambda: ["heldout", "pubmedqa"],
        description="Evaluation tasks (vocabadapt.evaluation.tasks: 'heldout' bits per byte, 'pubmedqa', 'lm_eval') "
        "or paths of text files.",
    )
    max_samples: Optional[int] = Field(None, ge=1, description="Cap on QA questions and held-out documents.")
    qa: QAConfig = Field(default_factory=QAConfig, description="Question answering set.")
    baseline_model: Optional[str] = Field(
        None,
        description="Baseline model; null = the source model with its own tokenizer.",
        json_schema_extra=PATH_OR_ID,
    )
    stride: Optional[int] = Field(
        None, ge=1, description="Tokens scored per window after the first; null = the context (lm-eval's windows)."
    )
    batch_size: int = Field(8, ge=1, description="Sequences per evaluation forward pass.")
    context_length: Optional[int] = Field(
        None, ge=2, description="Tokens per scoring window; null = the model's context (max_position_embeddings)."
    )
    lm_eval: LmEvalConfig = Field(default_factory=LmEvalConfig, description="lm-evaluation-harness tasks.")
    general_inputs: list[str] = Field(
        default_factory=list,
        description="General-English text files scored in bits per byte for every model (retention: what the "
        "adapted model forgot); [] = none.",
        json_schema_extra=PATH,
    )
    max_retention_loss: float = Field(
        0.05,
        ge=0,
        description="Checklist: the final model's general-text bits per byte may exceed the source's by this "
        "fraction at most (0.05 = 5 %).",
    )
    cloze: ClozeConfig = Field(default_factory=ClozeConfig, description="Multiple-choice cloze task.")
    cost: CostConfig = Field(default_factory=CostConfig, description="Cost per byte and speed.")

    @field_validator("datasets")
    @classmethod
    def _known_tasks(cls, v: list[str]) -> list[str]:
        # Checked against the registry's torch-free task table at load, so a typo fails here, not after training.
        names = registry.task_names()
        bad = [registry.unknown_task(e) for e in v if e not in names and not registry.looks_like_path(e)]
        if bad:
            raise ValueError("; ".join(bad))
        return v

    @field_validator("qa", mode="before")
    @classmethod
    def _qa_bool(cls, v: Any) -> Any:
        # Research configs write `qa: true|false`; that is the `enabled` switch with defaults.
        return {"enabled": v} if isinstance(v, bool) else v


class PipelineConfig(Section):
    run_root: str = Field("runs", description="Folder that holds run directories.", json_schema_extra=PATH)
    max_retries: int = Field(
        2, ge=0, description="Retries of a model or tokenizer download after a network error (never a whole stage)."
    )
    retry_backoff: float = Field(5.0, ge=0, description="Seconds before a download's first retry; doubles each time.")
    torch_threads: Optional[int] = Field(
        None, ge=1, description="CPU threads for torch (null = torch's default); 1 suits tiny models on few cores."
    )
    checkpoint_fingerprints: Literal["sha256", "size"] = Field(
        "sha256", description="How outputs are fingerprinted in the manifest."
    )
