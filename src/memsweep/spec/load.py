"""Sweep file → :class:`~memsweep.spec.study.Study`, hardened against hostile YAML.

:func:`load_study` reads a file (size, alias and node limits; ``yaml.safe_load`` rules:
no tag constructs an object, nothing is evaluated) and raises
:class:`~memsweep.errors.SpecError` with one line per problem naming the key, the bad
value and what is allowed, before Ray starts.
"""

from __future__ import annotations

import decimal
import difflib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ValidationError,
)

from memsweep.errors import SpecError
from memsweep.spec.base import FILE_ENTRY_POINT_RE, short_value
from memsweep.spec.study import Study

_KEYED_MESSAGE_RE = re.compile(r"^[a-z_]+(?:\.[a-z_]+)+: ")


def _location(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in {"function-after[_conv_positive()]"} or part.startswith("function-"):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _allowed_keys(model: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """The keys allowed at ``loc``'s parent, for a did-you-mean hint."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        annotation = fields[part].annotation
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args]
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            # tuple[ModelSpec, ...] and similar.
            nested = [
                a
                for c in args
                for a in getattr(c, "__args__", ())
                if isinstance(a, type) and issubclass(a, BaseModel)
            ]
        if not nested:
            return []
        current = nested[0]
    return list(getattr(current, "model_fields", {}))


def _format_error(source: str, error: Mapping[str, Any]) -> str:
    loc = tuple(error.get("loc", ()))
    where = _location(loc) or "(top level)"
    kind = error.get("type", "")
    value = error.get("input")
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        allowed = _allowed_keys(Study, loc)
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        return f"{source}: unknown key '{where}'.{hint} Allowed here: {', '.join(allowed)}."
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    if kind == "missing":
        return f"{source}: {where} is required."
    if not loc and _KEYED_MESSAGE_RE.match(message):
        # A study-wide check that names its own key ("search.subject_to: …").
        return f"{source}: {message}."
    shown = "" if isinstance(value, dict) or "got " in message else f", got {short_value(value)}"
    return f"{source}: {where}: {message}{shown}."


def _resolve_file(value: Any, base_dir: Path, source: str, key: str) -> Any:
    """``dir/x.py:Name`` relative to ``base_dir`` → ``/abs/dir/x.py:Name``; the file must
    exist. Anything else is returned as it is, for the model to judge."""
    if not isinstance(value, str) or not FILE_ENTRY_POINT_RE.match(value):
        return value
    file, name = value.rsplit(":", 1)
    path = (base_dir / file).resolve()
    if not path.is_file():
        raise SpecError(
            f"{source}: {key}: no such file {file} (a path relative to the sweep file, here {path})"
        )
    return f"{path}:{name}"


def parse_study(data: Any, source: str = "<sweep>", base_dir: Path | None = None) -> Study:
    """Validate an already-loaded mapping; errors name ``source`` and the key.

    ``base_dir``: the folder file entry points (``env: envs/my_env.py:MyEnv``,
    ``config: train.py:make_config``) are relative to, made absolute here; the current
    folder when None.
    """
    if not isinstance(data, dict):
        raise SpecError(
            f"{source}: a sweep file is a YAML mapping with at least 'name:', "
            f"got {type(data).__name__}"
        )
    base = base_dir if base_dir is not None else Path.cwd()
    env = data.get("env")
    if isinstance(env, str):
        data = {**data, "env": _resolve_file(env, base, source, "env")}
    elif isinstance(env, dict) and "id" in env:
        data = {**data, "env": {**env, "id": _resolve_file(env["id"], base, source, "env.id")}}
    if "config" in data:
        data = {**data, "config": _resolve_file(data["config"], base, source, "config")}
    try:
        return Study.model_validate(data)
    except ValidationError as exc:
        lines = [_format_error(source, err) for err in exc.errors()]
        raise SpecError("\n".join(dict.fromkeys(lines))) from None


MAX_SWEEP_FILE_BYTES = 1_000_000
"""A sweep file is a page of YAML; anything bigger is a wrong path."""

MAX_YAML_ALIASES = 100
"""``*alias`` uses allowed in a sweep file: enough to reuse a model list, far too few
for a billion-laughs bomb (each alias can double what validation has to walk)."""

MAX_YAML_NODES = 100_000
"""Values in the sweep file once aliases are expanded."""


class _SweepLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (plain data only, no tag constructs an object) that refuses
    alias bombs: PyYAML shares an aliased node instead of copying it, so a bomb costs
    nothing to load, but everything that walks the result (validation) expands it."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_YAML_ALIASES:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(
                    None, None, f"more than {MAX_YAML_ALIASES} aliases (*name)", event.start_mark
                )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        # YAML says keys are unique, PyYAML lets the later one win silently: a sweep with
        # two `factors:` would run only the second. Refuse, naming the key and both lines.
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise DuplicateKeyError(key, seen[key], key_node.start_mark)
                    seen[key] = line
                except TypeError:
                    continue  # an unhashable key; construct_mapping reports it
        return super().construct_mapping(node, deep=deep)


# YAML 1.1 (PyYAML) reads a float only with a dot (and a signed exponent), so `lr: 5e-5`
# and `replay_capacity: 1e6` were the strings "5e-5" and "1e6"; YAML 1.2, and RL configs
# everywhere, read numbers. A whole mantissa with a non-negative exponent (1e6, 2E+3) is
# the integer it writes (a count: capacities, batch sizes, env steps), any other the float.
_E_INTEGER_TAG = "tag:memsweep,2026:e-integer"
_SweepLoader.add_implicit_resolver(
    _E_INTEGER_TAG, re.compile(r"^[-+]?[0-9][0-9_]*[eE]\+?[0-9]+$"), list("-+0123456789")
)
_SweepLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _e_integer(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    return int(decimal.Decimal(str(loader.construct_scalar(node)).replace("_", "")))


_SweepLoader.add_constructor(_E_INTEGER_TAG, _e_integer)


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A key given twice in one YAML mapping (the later one would silently win)."""

    def __init__(self, key: Any, first_line: int, mark: Any) -> None:
        super().__init__(
            None,
            None,
            f"duplicate key '{key}' (first on line {first_line}): keep one of them",
            mark,
        )


def _expanded_size(data: Any, limit: int) -> int:
    """Values in ``data`` with shared (aliased) parts counted every time; stops at ``limit``."""
    count = 0
    stack = [data]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def load_study(path: str | Path) -> Study:
    """Read and validate a sweep file; :class:`SpecError` on any problem."""
    file = Path(path)
    if file.is_dir():
        raise SpecError(f"{file} is a folder: give a sweep file, e.g. sweeps/default.yaml")
    if file.exists() and not file.is_file():
        raise SpecError(f"{file} is not a regular file: give a sweep file (sweeps/*.yaml)")
    if not file.is_file():
        # As given: Path would print s3://b/x.yaml as s3:/b/x.yaml.
        raise SpecError(
            f"No such sweep file: {os.fspath(path)} (sweep files are local: sweeps/*.yaml)"
        )
    try:
        size = file.stat().st_size
        if size > MAX_SWEEP_FILE_BYTES:
            raise SpecError(
                f"{file}: {size} bytes is not a sweep file (at most {MAX_SWEEP_FILE_BYTES}); "
                "check the path"
            )
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SpecError(f"{file}: cannot read it as UTF-8 text ({reason})") from None
    if "\x00" in text:
        raise SpecError(f"{file}: contains NUL bytes, not a YAML text file")
    loader = None
    try:
        # The reader refuses non-printable characters as it is built: inside the try.
        loader = _SweepLoader(text)
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f": line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        if isinstance(exc, yaml.reader.ReaderError):
            where = f": character {exc.position + 1}"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{file}{where}: not valid YAML: {problem}") from None
    except RecursionError:
        raise SpecError(f"{file}: nested too deeply to be a sweep file") from None
    finally:
        if loader is not None:
            loader.dispose()
    if data is None:
        raise SpecError(f"{file} is empty: a sweep file needs at least 'name: <study>'")
    if _expanded_size(data, MAX_YAML_NODES) > MAX_YAML_NODES:
        raise SpecError(
            f"{file}: expands to more than {MAX_YAML_NODES} values (aliases?): not a sweep file"
        )
    try:
        return parse_study(data, str(file), file.parent)
    except RecursionError:
        raise SpecError(f"{file}: nested too deeply to be a sweep file") from None


def describe_fields(model: type[BaseModel] = Study, prefix: str = "") -> list[str]:
    """``key: type = default — docstring`` lines for every field, nested ones indented."""
    lines: list[str] = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        nested = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        default = (
            ""
            if info.is_required() or nested is annotation
            else f" = {info.get_default(call_default_factory=True)!r}"
        )
        doc = f"  — {info.description}" if info.description else ""
        lines.append(f"{prefix}{name}{default}{doc}")
        if nested is not None:
            lines.extend(describe_fields(nested, prefix + "  "))
    return lines
