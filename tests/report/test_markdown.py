"""vocabadapt.report.markdown: the table helper and the block kinds benchmarks use."""

from __future__ import annotations

import pytest

from vocabadapt.report.markdown import markdown_table, render_markdown


def test_markdown_table_rules_escapes_and_alignment() -> None:
    text = markdown_table(["a", "b|c", "n"], [["x\ny", 1, 2.5]], align="lr")
    assert text.splitlines() == ["| a | b\\|c | n |", "|---|---:|---|", "| x y | 1 | 2.5 |"]
    assert markdown_table(["a"], [], align="c").splitlines()[1] == "|:---:|"


def test_markdown_table_refuses_an_unknown_alignment() -> None:
    with pytest.raises(ValueError, match="l, r or c"):
        markdown_table(["a"], [["1"]], align="x")


def test_render_markdown_keeps_the_report_table_and_code_forms() -> None:
    """The report's own blocks render as before (plain rules, yaml fences); the optional parts are extra."""
    blocks = [
        ("h", 2, "T"),
        ("table", ["a", "b"], [["1", "2"]]),
        ("table", ["a", "b"], [["1", "2"]], "rr"),
        ("code", "k: v\n"),
        ("code", "line", ""),
    ]
    assert render_markdown(blocks) == (
        "## T\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n| a | b |\n|---:|---:|\n| 1 | 2 |\n\n"
        "```yaml\nk: v\n```\n\n```\nline\n```\n"
    )
