"""The config reference (docs/config.md), generated from the schema so it cannot drift."""

from __future__ import annotations

import inspect
import json
from typing import Any, cast

from pydantic import BaseModel

from .schema import Config, TargetTokenizerSpec


def schema_reference() -> str:
    """Markdown reference of every key, its type, default and description (docs/config.md)."""
    out = [
        "# Config reference",
        "",
        "Generated from `vocabadapt/config/schema.py` by `vocabadapt config docs > docs/config.md`; a test checks",
        "that this file matches the schema. Relative paths resolve against the config file's folder;",
        "`${VAR}` and `${VAR:-default}` expand; `--set section.key=value` overrides any key.",
        "",
    ]

    def walk(model: type[BaseModel], prefix: str) -> None:
        rows = []
        subs: list[tuple[str, type[BaseModel], Any]] = []
        for name, f in model.model_fields.items():
            ann = f.annotation
            cands = [ann, *getattr(ann, "__args__", ())]
            sub: type[BaseModel] | None = next(
                (c for c in cands if isinstance(c, type) and issubclass(c, BaseModel) and c is not TargetTokenizerSpec),
                None,
            )
            if sub is not None and ann is sub:
                subs.append((name, cast("type[BaseModel]", sub), f))
                continue
            default = f.get_default(call_default_factory=True)
            rows.append(f"| `{prefix}{name}` | {json.dumps(default)} | {f.description or ''} |")
        if rows:
            out.extend(["| key | default | meaning |", "|---|---|---|", *rows, ""])
        for name, sub, f in subs:  # sub: a section model
            out.extend([f"## `{prefix}{name}`", "", f.description or "", ""])
            doc = inspect.cleandoc(sub.__doc__) if "__doc__" in vars(sub) and sub.__doc__ else ""
            if doc:  # a section whose meaning needs more than a line says it in its class docstring
                out.extend([doc, ""])
            walk(sub, f"{prefix}{name}.")

    walk(Config, "")
    return "\n".join(out).rstrip() + "\n"
