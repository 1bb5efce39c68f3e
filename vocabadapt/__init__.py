"""vocabadapt: give a pretrained causal LM a new tokenizer and prove the result.

Public API (kept small; none of these import torch):
    load_config, Config     the validated YAML config (vocabadapt.config)
    run_pipeline            the whole pipeline, resumable (vocabadapt.run.runner.run)
    audit_config            review a config before spending GPU hours (vocabadapt.audit.audit)
    RunLayout               where every artifact of a run directory lives (vocabadapt.run.layout)
    the error types         VocabadaptError and its subclasses (vocabadapt.errors)
"""

__version__ = "0.1.0"

from .audit import audit as audit_config
from .config import Config, load_config
from .errors import ConfigError, InputError, StageError, VocabadaptError
from .run.layout import RunLayout
from .run.runner import run as run_pipeline

__all__ = [
    "Config",
    "load_config",
    "run_pipeline",
    "audit_config",
    "RunLayout",
    "ConfigError",
    "InputError",
    "StageError",
    "VocabadaptError",
]
