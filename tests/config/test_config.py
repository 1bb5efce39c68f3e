from pathlib import Path

import pytest

from vocabadapt.cli import main
from vocabadapt.config import Config, load_config, schema_reference
from vocabadapt.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

# The research config's keys, as the issue lists them, must load unchanged.
RESEARCH_LAYOUT = """
models:
  source_tokenizer: BioMistral/BioMistral-7B
  target_tokenizer: mistralai/Mistral-7B-v0.3
  source_model: BioMistral/BioMistral-7B
corpus: {size_gb: 5, byte_budget: 0, deduplicate: true, hash_name: md5}
term_mining: {top_k: 5000, min_frequency: 10, use_tfidf: true}
embedding:
  backend: fasttext
  fasttext: {epochs: 30, mincount: 1, lr: 0.05, thread: null}
alignment: {pivot_count: 2000, similarity_threshold: 0.3}
tokenization: {workers: null, cache_dir: null, min_line_length: 20}
evaluation: {enabled: true, datasets: [pubmedqa], max_samples: 500, qa: true, baseline_model: null}
pipeline: {run_root: runs, max_retries: 3, retry_backoff: 10}
vocab_adaptation:
  enabled: true
  stage1_steps: 2500
  stage2_steps: 2500
  lr_stage1: 6.4e-4
  lr_stage2: 5e-5
  batch_size: 4
  gradient_accumulation: 16
  max_seq_length: 2048
  train_start_idx_stage2: 2560000
  seed: 0
  use_flash_attn: false
  bf16: false
  stage2_use_lora: false
  stage2_optimizer: adamw_torch
  lora_r: 64
  lora_alpha: 128
  lora_dropout: 0.05
  lora_target_modules: [q_proj, v_proj]
"""


def _write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _problems(tmp_path, text, overrides=()):
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, text), overrides)
    return e.value.problems


def test_research_layout_loads_unchanged(tmp_path):
    cfg = load_config(_write(tmp_path, RESEARCH_LAYOUT))
    va = cfg.vocab_adaptation
    assert va.lr_stage1 == 6.4e-4 and va.lr_stage2 == 5e-5  # '5e-5' is a float, not a string
    assert va.train_start_idx_stage2 == 2560000
    assert cfg.corpus.budget_bytes() == 5_000_000_000
    assert cfg.evaluation.qa.enabled is True  # `qa: true` is the enabled switch
    assert cfg.alignment.similarity_threshold == 0.3
    # hub ids stay ids; run_root is a path made absolute against the config folder
    assert cfg.models.source_model == "BioMistral/BioMistral-7B"
    assert cfg.pipeline.run_root == str(tmp_path / "runs")


def test_yaml_1_1_exponent_floats_everywhere(tmp_path):
    cfg = load_config(_write(tmp_path, "alignment: {soft_temperature: 1e-2}\nvocab_adaptation: {lr_stage2: 3E-5}\n"))
    assert cfg.alignment.soft_temperature == 0.01 and cfg.vocab_adaptation.lr_stage2 == 3e-5


def test_env_expansion_with_default_and_type(tmp_path, monkeypatch):
    monkeypatch.setenv("VA_STEPS", "12")
    monkeypatch.delenv("VA_MISSING", raising=False)
    text = "vocab_adaptation: {stage1_steps: '${VA_STEPS}', stage2_steps: '${VA_MISSING:-7}'}\ncorpus: {inputs: ['${VA_MISSING:-data}/x.jsonl']}\n"
    cfg = load_config(_write(tmp_path, text))
    assert cfg.vocab_adaptation.stage1_steps == 12 and cfg.vocab_adaptation.stage2_steps == 7
    assert cfg.corpus.inputs == [str(tmp_path / "data" / "x.jsonl")]


def test_unset_env_without_default_is_an_error(tmp_path, monkeypatch):
    monkeypatch.delenv("VA_NOPE", raising=False)
    problems = _problems(tmp_path, "models: {source_model: '${VA_NOPE}/m'}\n")
    assert "models.source_model" in problems[0] and "VA_NOPE" in problems[0]


def test_relative_paths_resolve_against_config_folder(tmp_path):
    (tmp_path / "tok").mkdir()
    cfg = load_config(_write(tmp_path, "models: {target_tokenizer: tok, source_model: ./model}\n"))
    assert cfg.models.target_tokenizer == str(tmp_path / "tok")  # exists locally -> path
    assert cfg.models.source_model == str(tmp_path / "model")  # explicit ./ -> path


def test_all_errors_reported_together_with_key_paths_lines_and_suggestions(tmp_path):
    text = "corpus:\n  hash_nam: md5\nalignment:\n  similarity_threshold: 7\nvocab_adaptation:\n  stage1_steps: -1\n"
    problems = _problems(tmp_path, text)
    assert len(problems) == 3
    joined = "\n".join(problems)
    assert "corpus.hash_nam (line 2): unknown key; did you mean 'hash_name'?" in joined
    assert "alignment.similarity_threshold (line 4)" in joined and "got 7" in joined
    assert "vocab_adaptation.stage1_steps (line 6)" in joined


def test_unknown_section_names_nearest(tmp_path):
    problems = _problems(tmp_path, "vocab_adaption: {seed: 1}\n")
    assert "vocab_adaption (line 1): unknown section; did you mean 'vocab_adaptation'?" in problems[0]


def test_list_where_mapping_belongs(tmp_path):
    problems = _problems(tmp_path, "corpus: [a, b]\n")
    assert problems[0].startswith("corpus (line 1): expected a mapping")


def test_bad_hash_name(tmp_path):
    assert "did you mean 'sha1'" in _problems(tmp_path, "corpus: {hash_name: sha11}\n")[0]


def test_yaml_syntax_error_has_line_and_column(tmp_path):
    problems = _problems(tmp_path, "corpus:\n  inputs: [a, b\nmodels: {}\n")
    assert "YAML syntax error" in problems[0] and "line 3" in problems[0]


@pytest.mark.parametrize("text,expect", [("", "empty"), ("- a\n- b\n", "top level must be a mapping")])
def test_empty_and_non_mapping_files(tmp_path, text, expect):
    assert expect in _problems(tmp_path, text)[0]


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")


def test_overrides_apply_parse_and_are_validated(tmp_path):
    p = _write(tmp_path, "vocab_adaptation: {lr_stage1: 1e-4}\n")
    cfg = load_config(
        p, ["vocab_adaptation.lr_stage1=3e-5", "alignment.method=soft", "corpus.text_fields=[title, abstract]"]
    )
    assert cfg.vocab_adaptation.lr_stage1 == 3e-5 and cfg.alignment.method == "soft"
    assert cfg.corpus.text_fields == ["title", "abstract"]
    with pytest.raises(ConfigError) as e:
        load_config(p, ["alignment.similarity_threshold=7"])
    assert "alignment.similarity_threshold [from --set]" in e.value.problems[0]
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(p, ["alignment.method"])


def test_train_start_auto_or_int(tmp_path):
    assert load_config(_write(tmp_path, "{}\n")).vocab_adaptation.train_start_idx_stage2 == "auto"
    assert "train_start_idx_stage2" in _problems(tmp_path, "vocab_adaptation: {train_start_idx_stage2: soon}\n")[0]


def test_target_tokenizer_train_spec(tmp_path):
    cfg = load_config(_write(tmp_path, "models: {target_tokenizer: {train: {type: unigram, vocab_size: 8000}}}\n"))
    assert cfg.models.target_tokenizer.train.vocab_size == 8000
    problems = _problems(tmp_path, "models: {target_tokenizer: {train: {vocab_size: 10, bogus: 1}}}\n")
    assert len(problems) == 2  # no noise from the 'string' branch of the union
    assert any("train.bogus" in p for p in problems) and any("train.vocab_size" in p for p in problems)


def test_section_hash_changes_only_with_its_keys():
    a, b = Config(), Config()
    b.vocab_adaptation.lr_stage2 = 1e-5
    assert a.section_hash(["alignment"]) == b.section_hash(["alignment"])
    assert a.section_hash(["vocab_adaptation.lr_stage2"]) != b.section_hash(["vocab_adaptation.lr_stage2"])


def test_cli_config_show_and_exit_codes(tmp_path, capsys):
    good = _write(tmp_path, "vocab_adaptation: {lr_stage1: 2e-5}\n")
    assert main(["config", "show", str(good), "--set", "alignment.pivot_count=50"]) == 0
    out = capsys.readouterr().out
    assert "lr_stage1: 2.0e-05" in out and "pivot_count: 50" in out
    bad = _write(tmp_path, "alignment: {similarity_threshold: 7}\n", "bad.yaml")
    assert main(["config", "show", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "alignment.similarity_threshold" in err and "Traceback" not in err


def test_docs_config_md_matches_schema():
    doc = REPO / "docs" / "config.md"
    assert doc.read_text() == schema_reference(), "regenerate with: vocabadapt config docs > docs/config.md"


def test_every_key_has_a_description():
    def walk(model):
        for name, f in model.model_fields.items():
            assert f.description, f"{model.__name__}.{name} has no description"
            ann = f.annotation
            for c in (ann, *getattr(ann, "__args__", ())):
                if isinstance(c, type) and hasattr(c, "model_fields"):
                    walk(c)

    walk(Config)


def test_initialiser_name_is_checked_at_load_against_the_registry(tmp_path):
    """alignment.init was an unchecked string: a typo failed in the transplant stage, hours in (issue 13)."""
    from vocabadapt.registry import initialiser_names

    names = initialiser_names()

    cfg = tmp_path / "c.yaml"
    cfg.write_text("alignment:\n  init: fvtt\n")
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    msg = str(e.value)
    assert "alignment.init (line 2)" in msg and "did you mean 'fvt'" in msg
    assert all(name in msg for name in names)
    for name in (*names, None):
        assert load_config(cfg, [f"alignment.init={name if name else 'null'}"]).alignment.init == name


def test_evaluation_task_names_are_checked_at_load(tmp_path):
    from vocabadapt.registry import task_names

    cfg = tmp_path / "c.yaml"
    cfg.write_text("evaluation:\n  datasets: [heldout, pubmedq, extra/notes.txt]\n")
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert "unknown evaluation task 'pubmedq' (did you mean 'pubmedqa'?)" in str(e.value)
    assert all(name in str(e.value) for name in task_names())
    cfg.write_text("evaluation:\n  datasets: [heldout, pubmedqa, extra/notes.txt]\n")
    assert load_config(cfg).evaluation.datasets[-1].endswith("notes.txt")
