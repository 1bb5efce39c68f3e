"""RunLayout: the one owner of a run directory's layout.

Every artifact path of a run directory is a method or attribute here, and so are the typed readers of
the artifacts that later stages, the checklist and the report read. No other module writes a
run-artifact path literal; stages ask the layout, and library code receives plain paths, texts and
tensors.

    config.yaml, manifest.json, .lock
    corpus/{train,heldout}.jsonl, corpus/stats.json
    tokenizers/{source,target}/, terms/terms.txt
    tokens/{source,target}/{train,heldout}/ (uint32 shards), tokens/stats.json
    embeddings/{source,target}{.npy,_ids.npy,_counts.npy}, embeddings/summary.json
    align/mapping.json, align/provenance.jsonl, align/summary.json
    model/{init,stage1,stage2}/ (+ model/init/transplant.json)
    train/{stage1,stage2}/{metrics.jsonl,summary.json,launch_result.json}, checkpoints/{stage1,stage2}/
    eval/<model>.json, eval/summary.json, eval/checklist.json
    report/report.md, report/report.html, report/*.png
    partial/<stage>/ (work a long stage keeps across a kill to resume from; removed when it finishes)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import InputError, StageError
from ..io import iter_jsonl, read_json, read_json_or_none, read_jsonl
from ..model import TRANSPLANT_SUMMARY
from ..text.corpus import texts_within
from ..training.settings import METRICS_FILE, TRAIN_STAGES

log = logging.getLogger(__name__)

SIDES = ("source", "target")  # the two tokenizers of a run
SPLITS = ("train", "heldout")  # the two corpus splits
MODELS = ("init", *TRAIN_STAGES)  # model/<name> directories, in pipeline order
MODEL_STAGE = {"init": "transplant", **{s: s for s in TRAIN_STAGES}}  # model/<name> -> the stage that writes it


@dataclass(frozen=True)
class RunLayout:
    """Paths and readers of one run directory (`root`)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def path(self, *parts: str) -> Path:
        """A path inside the run directory (never outside it).

        Raises:
            StageError: the path escapes the run directory.
        """
        p = (self.root / Path(*parts)).resolve()
        if self.root.resolve() not in (p, *p.parents):
            raise StageError(f"path {p} escapes the run directory {self.root}")
        return p

    # -- the run itself
    @property
    def config_yaml(self) -> Path:
        return self.root / "config.yaml"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    # -- corpus
    @property
    def corpus_dir(self) -> Path:
        return self.root / "corpus"

    def corpus(self, split: str) -> Path:
        """corpus/{train,heldout}.jsonl: one {"id", "text"} record per line."""
        return self.corpus_dir / f"{split}.jsonl"

    @property
    def corpus_stats(self) -> Path:
        return self.corpus_dir / "stats.json"

    # -- tokenize
    @property
    def tokenizers_dir(self) -> Path:
        return self.root / "tokenizers"

    def tokenizer_dir(self, side: str) -> Path:
        return self.tokenizers_dir / side

    @property
    def terms_dir(self) -> Path:
        return self.root / "terms"

    @property
    def terms(self) -> Path:
        return self.terms_dir / "terms.txt"

    @property
    def tokens_dir(self) -> Path:
        return self.root / "tokens"

    def token_shards(self, side: str, split: str) -> Path:
        return self.tokens_dir / side / split

    @property
    def tokens_stats(self) -> Path:
        return self.tokens_dir / "stats.json"

    # -- embed
    @property
    def embeddings_dir(self) -> Path:
        return self.root / "embeddings"

    def embedding_files(self, side: str) -> dict[str, Path]:
        """One side's arrays: vectors (rows, dim) float32, ids (rows,) int64, counts (rows,) int64."""
        d = self.embeddings_dir
        return {"vectors": d / f"{side}.npy", "ids": d / f"{side}_ids.npy", "counts": d / f"{side}_counts.npy"}

    @property
    def embeddings_summary(self) -> Path:
        return self.embeddings_dir / "summary.json"

    # -- align
    @property
    def align_dir(self) -> Path:
        return self.root / "align"

    @property
    def mapping(self) -> Path:
        return self.align_dir / "mapping.json"

    @property
    def align_summary(self) -> Path:
        return self.align_dir / "summary.json"

    @property
    def provenance(self) -> Path:
        return self.align_dir / "provenance.jsonl"

    # -- models and training
    def model_dir(self, name: str) -> Path:
        """model/<name>: init (transplant), stage1, stage2."""
        return self.root / "model" / name

    @property
    def transplant_summary(self) -> Path:
        return self.model_dir("init") / TRANSPLANT_SUMMARY

    def train_dir(self, stage: str) -> Path:
        return self.root / "train" / stage

    def metrics(self, stage: str) -> Path:
        return self.train_dir(stage) / METRICS_FILE

    def train_summary_file(self, stage: str) -> Path:
        """train/<stage>/summary.json: what the training stage returned (inside its own output)."""
        return self.train_dir(stage) / "summary.json"

    def launch_result(self, stage: str) -> Path:
        return self.train_dir(stage) / "launch_result.json"

    def checkpoints(self, stage: str) -> Path:
        return self.root / "checkpoints" / stage

    # -- evaluate and report
    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    def eval_model(self, name: str) -> Path:
        """eval/<model>.json: everything measured on one model, with per-question predictions."""
        return self.eval_dir / f"{name}.json"

    @property
    def eval_summary(self) -> Path:
        return self.eval_dir / "summary.json"

    @property
    def eval_checklist(self) -> Path:
        return self.eval_dir / "checklist.json"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    @property
    def report_html(self) -> Path:
        return self.report_dir / "report.html"

    def partial(self, stage: str) -> Path:
        """partial/<stage>: what an interrupted tokenize or embed keeps to resume from (its StageSpec's
        resume_state); the stage moves its outputs out of it and removes it when it finishes."""
        return self.root / "partial" / stage

    @staticmethod
    def staged(path: Path, final_dir: Path, tmp: Path) -> Path:
        """`path` (inside `final_dir`) as it is written inside `tmp`, the temp directory that replaces
        `final_dir` when the stage succeeds (vocabadapt.io.atomic_dir)."""
        return tmp / path.relative_to(final_dir)

    # ----------------------------------------------------------------------------------------------
    # typed readers

    def require(self, path: Path, stage: str) -> Path:
        """`path` when it exists; else an InputError naming the stage that writes it."""
        if not path.exists():
            raise InputError(f"{path} does not exist; run the {stage} stage first")
        return path

    def corpus_records(self, split: str) -> Iterator[dict[str, Any]]:
        """Records ({"id", "text"}) of corpus/<split>.jsonl.

        Raises:
            InputError: the file does not exist (the corpus stage has not run).
        """
        return iter_jsonl(self.require(self.corpus(split), "corpus"))

    def corpus_texts(self, split: str) -> Iterator[str]:
        return (rec["text"] for rec in self.corpus_records(split))

    def heldout_texts(self, max_bytes: int | None = None) -> list[str]:
        """Held-out documents, whole, up to about `max_bytes` (the document that crosses it is kept);
        [] when the corpus stage held nothing out (or has not run)."""
        if not self.corpus("heldout").exists():
            return []
        return texts_within(self.corpus_texts("heldout"), max_bytes, last="keep")

    def tokenizer(self, side: str) -> Any:
        """The tokenizer the run saved (side: 'source' or 'target').

        Raises:
            InputError: the tokenize stage has not written it.
        """
        from transformers import AutoTokenizer

        path = self.tokenizer_dir(side)
        if not path.is_dir():
            raise InputError(f"{path} does not exist; run the tokenize stage first")
        return AutoTokenizer.from_pretrained(str(path))

    def embeddings(self, side: str) -> tuple[Any, Any, Any]:
        """(vectors float32 (n, dim), ids int64 (n,), counts int64 (n,)) of one side, checked.

        Raises:
            InputError: missing or inconsistent files (rerun the embed stage).
        """
        import numpy as np

        d = self.embeddings_dir
        files = self.embedding_files(side)
        try:
            vecs, ids, counts = (np.load(files[k]) for k in ("vectors", "ids", "counts"))
        except (OSError, ValueError) as e:
            raise InputError(f"{d}: cannot read the {side} embeddings ({e}); rerun the embed stage") from None
        if vecs.ndim != 2 or ids.shape != (vecs.shape[0],) or counts.shape != ids.shape:
            raise InputError(
                f"{d}: {side} embeddings have inconsistent shapes {vecs.shape}, {ids.shape}, "
                f"{counts.shape}; rerun the embed stage"
            )
        return vecs, ids, counts

    def token_mapping(self) -> Any:
        """align/mapping.json as a TokenMapping.

        Raises:
            InputError: missing (run the align stage) or malformed.
        """
        from ..align.mapping import TokenMapping

        return TokenMapping.load(self.require(self.mapping, "align"))

    def train_summary(self, stage: str) -> dict[str, Any] | None:
        """What training stage `stage` returned, or None when it has not finished."""
        found = read_json_or_none(self.train_summary_file(stage))
        return found if isinstance(found, dict) else None

    def train_summaries(self) -> dict[str, Any]:
        """{stage: summary} of the training stages that finished (the checklist's and report's view)."""
        return {s: summary for s in TRAIN_STAGES if (summary := self.train_summary(s)) is not None}

    def train_metrics(self, stage: str) -> list[dict[str, Any]]:
        """Records of train/<stage>/metrics.jsonl ([] when missing; a line cut off by a kill is skipped)."""
        return read_jsonl(self.metrics(stage))

    def finished_models(self) -> list[str]:
        """The model/<name> directories a finished stage wrote, in pipeline order (init, stage1, stage2).

        A model directory is renamed into place only when complete, so config.json marks a whole one; a
        stage whose manifest record is not "done" (failed or rerunning after a config change) does not count.
        """
        stages = self.manifest_data().get("stages", {})
        done = []
        for name in MODELS:
            record = stages.get(MODEL_STAGE[name])
            if (self.model_dir(name) / "config.json").is_file() and (record is None or record.get("status") == "done"):
                done.append(name)
        return done

    def final_model(self, name: str | None = None) -> tuple[str, Path]:
        """(name, directory) of model `name`, or of the last finished one when None (stage2, else stage1, else init).

        Raises:
            InputError: `name` is not a model of a run, or that model (any model, for None) is not finished.
        """
        done = self.finished_models()
        if name is not None and name not in MODELS:
            raise InputError(f"unknown model '{name}'; a run directory holds {', '.join(MODELS)}")
        if name is None:
            if not done:
                raise InputError(
                    f"{self.root} has no finished model (model/{{{','.join(MODELS)}}}); run the pipeline at least "
                    f"through transplant first"
                )
            name = done[-1]
        elif name not in done:
            raise InputError(
                f"{self.model_dir(name)} is not a finished model (finished: {', '.join(done) or 'none'}); "
                f"run the pipeline through {MODEL_STAGE[name]} first, or choose a finished one"
            )
        return name, self.model_dir(name)

    def read(self, path: Path) -> Any:
        """A JSON artifact of this run, or None when missing or unreadable (logged)."""
        return read_json_or_none(path)

    def manifest_data(self) -> dict[str, Any]:
        """manifest.json ({"stages": {}} when there is none).

        Raises:
            StageError: the manifest is corrupt.
        """
        if not self.manifest.exists():
            return {"stages": {}}
        try:
            data = read_json(self.manifest)
        except ValueError as e:
            raise StageError(
                f"{self.manifest} is corrupt ({e}); move it aside to redo the run from the start"
            ) from None
        return data if isinstance(data, dict) else {"stages": {}}
