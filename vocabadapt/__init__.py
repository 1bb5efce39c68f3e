"""vocabadapt: give a pretrained causal LM a new tokenizer and prove the result.

Public API (kept small):
    load_config, Config     the validated YAML config (vocabadapt.config)
    run                     the whole pipeline, resumable (vocabadapt.pipeline)
    audit                   review a config before spending GPU hours (vocabadapt.audit)
"""

__version__ = "0.1.0"

from .config import Config, load_config  # noqa: E402
from .errors import ConfigError, InputError, StageError, VocabadaptError  # noqa: E402


def run(*args, **kwargs):
    """See vocabadapt.pipeline.run."""
    from .pipeline import run as _run

    return _run(*args, **kwargs)


def audit(*args, **kwargs):
    """See vocabadapt.audit.audit."""
    from .audit import audit as _audit

    return _audit(*args, **kwargs)


__all__ = ["Config", "load_config", "run", "audit", "ConfigError", "InputError", "StageError", "VocabadaptError"]
