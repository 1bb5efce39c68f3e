"""What every config section shares: the Section base, path markers, lists of module names."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict

# Marker put in a field's json_schema_extra: the value is a filesystem path (resolved against the
# config folder) or, for "path_or_id", a path when it exists locally and a hub id otherwise.
PATH: dict[str, Any] = {"path": "path"}
PATH_OR_ID: dict[str, Any] = {"path": "path_or_id"}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------------------------------
# lists of module names (LoRA targets)

# peft's own word for "every linear layer except the output head".
ALL_LINEAR = "all-linear"
# A module name as peft matches it: a leaf name (q_proj) or a dotted suffix of the full name
# (self_attn.q_proj, layers.0.mlp.up_proj). Regular expressions are not accepted: they would silently
# match nothing or too much, and the names are checked against the model.
_MODULE_NAME = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")


def module_names(value: Any) -> Any:
    """A list of module names as configs write it -> None, "all-linear" or a list of names.

    Accepts a YAML list, one comma-separated string ("q_proj,k_proj, v_proj", as the research configs
    write it), "all-linear" (peft) or null. Raises ValueError (a config problem naming the value) for an
    empty list, an empty name, a duplicate, a regular expression, or "all-linear" mixed with names.
    """
    if value is None:
        return None
    if isinstance(value, str):
        if value.strip() == ALL_LINEAR:
            return ALL_LINEAR
        names = [part.strip() for part in value.split(",")]
    elif isinstance(value, (list, tuple)):
        if not all(isinstance(v, str) for v in value):
            bad = next(v for v in value if not isinstance(v, str))
            raise ValueError(f"module names are text, got {type(bad).__name__} {bad!r}")
        names = [v.strip() for v in value]
    else:
        raise ValueError(
            f"expected a list of module names or one comma-separated string, got {type(value).__name__} {value!r}"
        )
    if not names or names == [""]:
        raise ValueError(f"no module names given; write null (or '{ALL_LINEAR}') for every linear projection")
    if ALL_LINEAR in names:
        raise ValueError(f"'{ALL_LINEAR}' stands alone; write it without other names, or list the names only")
    for n in names:
        if not n:
            raise ValueError(f"an empty module name in {value!r}; remove the extra comma")
        if not _MODULE_NAME.fullmatch(n):
            raise ValueError(
                f"{n!r} is not a module name (letters, digits, _ and dots, e.g. q_proj or "
                f"self_attn.q_proj); regular expressions are not supported: list the names"
            )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{dupes} listed twice; list each module once")
    return names


ModuleNames = Annotated[Union[Literal["all-linear"], list[str], None], BeforeValidator(module_names)]
