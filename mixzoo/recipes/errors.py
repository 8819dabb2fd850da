"""Recipe errors that point at the exact place in the user's file.

`RecipeError` carries one `Issue` per problem: the dotted path of the bad field
(`model.layers[3].window`), the value, what was allowed, and where it came from (the file
with line and column, or the command-line override that set it). The CLI prints it
without a traceback and exits with code 2.
"""
from __future__ import annotations

import difflib
import re
import typing
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import yaml
from pydantic import BaseModel, ValidationError

__all__ = ["Issue", "RecipeError", "format_loc", "yaml_locator"]

class _Nothing:
    """The value of an Issue that has none (a missing field); pickles as the singleton."""

    def __repr__(self) -> str:
        return "<nothing>"

    def __reduce__(self) -> str:
        return "_NOTHING"


_NOTHING = _Nothing()


def format_loc(loc: tuple) -> str:
    """("model", "layers", 3, "window") -> "model.layers[3].window"."""
    out = ""
    for step in loc:
        if step == "[key]":                 # pydantic's marker for a bad mapping key
            out += " (key)"
        elif isinstance(step, int):
            out += f"[{step}]"
        else:
            out += ("." if out else "") + str(step)
    return out


def _short(value: Any, limit: int = 70) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


@dataclass(frozen=True)
class Issue:
    """One problem in a recipe."""
    path: str                       # dotted path, "" for the whole document
    message: str                    # what is wrong and what was allowed
    value: Any = _NOTHING           # the offending value (absent for missing fields)
    line: int | None = None         # 1-based, in `RecipeError.source`
    column: int | None = None
    origin: str | None = None       # e.g. "override 'model.d_model=abc'"

    def format(self, source: str | None) -> str:
        where = ""
        if self.origin:
            where = f"{self.origin}: "
        elif source and self.line is not None:
            where = f"{source}:{self.line}:{self.column}: "
        elif source:
            where = f"{source}: "
        path = f"{self.path}: " if self.path else ""
        got = f" (got {_short(self.value)})" if self.value is not _NOTHING else ""
        return f"{where}{path}{self.message}{got}"


class RecipeError(ValueError):
    """A recipe that cannot be loaded: bad YAML, a bad override, or failed validation."""

    def __init__(self, source: str | None, issues: list[Issue]):
        self.source = source
        self.issues = list(issues)
        super().__init__(str(self))

    def __reduce__(self):
        # Rebuilt from its parts (a grid's worker processes send it back pickled).
        return type(self), (self.source, self.issues)

    def __str__(self) -> str:
        n = len(self.issues)
        head = f"invalid recipe {self.source}" if self.source else "invalid recipe"
        head += f" ({n} problem{'s' if n != 1 else ''}):"
        return "\n".join([head] + ["  " + i.format(self.source) for i in self.issues])

    @classmethod
    def from_validation(cls, err: ValidationError, source: str | None, *,
                        raw: Mapping[str, Any] | None = None,
                        locate: Callable[[tuple], tuple[int, int, int] | None] | None = None,
                        overrides: Mapping[tuple, str] | None = None) -> "RecipeError":
        """Turn a pydantic ValidationError on a Recipe into located, explained issues.

        raw: the recipe data that was validated (to find the allowed fields of the model
        at an error's location); locate: loc -> (line, column, depth) in the source file;
        overrides: the CLI overrides as {key path tuple: "key=value"}."""
        issues = []
        for d in err.errors(include_url=False):
            loc = tuple(d["loc"])
            msg = _explain(d, loc, raw)
            value = _NOTHING if d["type"] in ("missing",) else d.get("input", _NOTHING)
            pos = locate(loc) if locate is not None else None
            origin = _override_for(loc, overrides or {}, pos[2] if pos else 0)
            line = col = None
            if origin is None and pos is not None:
                line, col = pos[0], pos[1]
            issues.append(Issue(format_loc(loc), msg, value, line, col, origin))
        # In file order; issues without a line (overrides, expanded layers) last.
        issues.sort(key=lambda i: (i.line is None, i.line or 0, i.column or 0))
        return cls(source, issues)


def _override_for(loc: tuple, overrides: Mapping[tuple, str], file_depth: int) -> str | None:
    """The (last) override responsible for `loc`: one whose key is a prefix of it (or the
    reverse), or one that reaches deeper along it than the file does."""
    key = tuple(str(s) for s in loc)
    found = None
    for path, text in overrides.items():
        n = min(len(path), len(key))
        common = next((i for i in range(n) if path[i] != key[i]), n)
        if common == n or common > file_depth:
            found = f"override {text!r}"
    return found


def _explain(d: Mapping[str, Any], loc: tuple, raw: Mapping[str, Any] | None) -> str:
    """Pydantic's message, completed with the allowed names and the closest match."""
    msg = d["msg"]
    if d["type"] == "extra_forbidden" and msg == "Extra inputs are not permitted":
        allowed = _fields_at(loc[:-1], raw)
        if allowed:
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            return f"unknown field {loc[-1]!r}{hint} (allowed: {', '.join(allowed)})"
        return f"unknown field {loc[-1]!r}"
    if d["type"] == "literal_error":
        choices = re.findall(r"'([^']*)'", msg)
        value = d.get("input")
        close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
        if close:
            msg += f"; did you mean {close[0]!r}?"
    if d["type"] == "missing" and msg == "Field required":
        msg = "required field is missing"
    if d["type"] == "value_error" and msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return msg


def _fields_at(loc: tuple, raw: Any) -> list[str] | None:
    """The field names of the pydantic model that validates `raw` at `loc` (best effort)."""
    from .schema import Recipe
    cls: Any = Recipe
    node = raw
    special = {("train",): ("mixzoo.train", "TrainConfig"),
               ("model", "vision"): ("mixzoo.models.vision.config", "VisionSpec")}
    for i, step in enumerate(loc):
        node = node.get(step) if isinstance(node, Mapping) else (
            node[step] if isinstance(node, list) and isinstance(step, int)
            and -len(node) <= step < len(node) else None)
        cls = _step(cls, step)
        if tuple(loc[:i + 1]) in special:
            mod, name = special[tuple(loc[:i + 1])]
            try:
                cls = getattr(__import__(mod, fromlist=[name]), name)
            except ImportError:
                return None
        if cls is None:
            return None
        cls = _by_type_tag(cls, node)
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return [f for f in cls.model_fields if f != "type"]
    return None


def _step(cls: Any, step: Any) -> Any:
    """The annotation one location step below `cls` (model field, list item, dict value)."""
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        field = cls.model_fields.get(step) if isinstance(step, str) else None
        return _unwrap(field.annotation) if field is not None else None
    origin = typing.get_origin(cls)
    args = typing.get_args(cls)
    if origin in (list, tuple) and isinstance(step, int) and args:
        return _unwrap(args[0])
    if origin is dict and len(args) == 2:
        return _unwrap(args[1])
    return None


def _unwrap(ann: Any) -> Any:
    """Strip Annotated / Optional / SerializeAsAny down to one model class if there is one."""
    while True:
        origin = typing.get_origin(ann)
        if origin is typing.Annotated:
            ann = typing.get_args(ann)[0]
            continue
        if origin is typing.Union or type(ann).__name__ == "UnionType":
            models = [a for a in typing.get_args(ann)
                      if isinstance(a, type) and issubclass(a, BaseModel)]
            others = [a for a in typing.get_args(ann) if a is not type(None)]
            if len(models) == 1:
                return models[0]
            if len(others) == 1:
                ann = others[0]
                continue
            return None
        if "SerializeAsAny" in repr(ann) and typing.get_args(ann):
            ann = typing.get_args(ann)[0]
            continue
        return ann


def _by_type_tag(cls: Any, node: Any) -> Any:
    """A base config class (mixer, task) + data with `type` -> the registered subclass."""
    if not (isinstance(cls, type) and issubclass(cls, BaseModel) and isinstance(node, Mapping)
            and "type" in cls.model_fields and isinstance(node.get("type"), str)):
        return cls
    todo = [cls]
    while todo:
        c = todo.pop()
        ann = c.model_fields["type"].annotation
        if typing.get_origin(ann) is typing.Literal and node["type"] in typing.get_args(ann):
            return c
        todo.extend(c.__subclasses__())
    return cls


def yaml_locator(text: str) -> Callable[[tuple], tuple[int, int, int] | None]:
    """loc -> (line, column, depth): 1-based position of the deepest YAML node on that path
    in `text`, and how many steps of the path the file holds."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        root = None

    def locate(loc: tuple) -> tuple[int, int] | None:
        node, mark, depth = root, None, 0
        for step in loc:
            nxt = None
            if isinstance(node, yaml.MappingNode):
                for knode, vnode in node.value:
                    if str(knode.value) == str(step):
                        nxt, mark = vnode, knode.start_mark
                        break
            elif isinstance(node, yaml.SequenceNode) and isinstance(step, int):
                if -len(node.value) <= step < len(node.value):
                    nxt = node.value[step]
                    mark = nxt.start_mark
            if nxt is None:
                break
            node, depth = nxt, depth + 1
        return (mark.line + 1, mark.column + 1, depth) if mark is not None else None
    return locate


def yaml_syntax_issue(err: yaml.YAMLError) -> Issue:
    """A YAML parse error -> an Issue with its line and column."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    context = getattr(err, "context", None)
    cmark = getattr(err, "context_mark", None)
    msg = f"YAML syntax error: {problem}"
    if context:
        msg += f" ({context}"
        if cmark is not None and cmark is not mark:
            msg += f" at line {cmark.line + 1}, column {cmark.column + 1}"
        msg += ")"
    if isinstance(err, yaml.constructor.ConstructorError) and "tag" in str(problem):
        msg += ("; recipes are plain YAML: tags that import or run Python code are not "
                "allowed")
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
    return Issue("", msg, line=line, column=col)
