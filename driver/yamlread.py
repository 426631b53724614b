"""Reading untrusted YAML field by field: every error names the file, the line and the field.

A scenario (and the environment and steps inside it) is data, whoever wrote it:
it is composed into nodes with limits (size, nesting, alias expansion, no
duplicate keys) and each value is checked where it is read. The one reader for
scenario files (``scenario``), their steps (``steps``) and their environment
(``registry``).
"""

from __future__ import annotations

import re

import yaml

from .errors import UsageError

MAX_NODES = 100_000  # nodes visited, aliases expanded: an alias bomb stops here
MAX_DEPTH = 32
WORD = re.compile(r"[\w][\w.-]*")


class Where:
    """file:line for a YAML node, for error messages."""

    def __init__(self, path: str):
        self.path = path

    def error(self, node: yaml.Node | None, field: str, message: str) -> UsageError:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        return UsageError(f"{self.path}{line}: {field}: {message}")


def compose(w: Where, text: str) -> yaml.Node:
    """The document's root node, refused when malformed, empty, too deep or too large."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise UsageError(f"{w.path}{line}: malformed YAML: {problem(exc)}") from None
    except RecursionError:
        raise w.error(None, "scenario", f"nested deeper than {MAX_DEPTH} levels") from None
    if root is None:
        raise w.error(None, "scenario", "the file is empty")
    _check_shape(w, root)
    return root


def problem(exc: yaml.YAMLError) -> str:
    """What is wrong, in one line (a reader error has no 'problem' and says where on a line of its own)."""
    return " ".join(str(getattr(exc, "problem", None) or exc).split())


def _check_shape(w: Where, root: yaml.Node) -> None:
    """Refuse a document that is too deep or too large once its aliases are expanded."""
    seen, stack = 0, [(root, 1)]
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            raise w.error(None, "scenario", f"more than {MAX_NODES} values once aliases are expanded (an alias bomb?)")
        if depth > MAX_DEPTH:
            raise w.error(node, "scenario", f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                stack.extend(((k, depth + 1), (v, depth + 1)))


def mapping(node: yaml.Node, w: Where | None = None, field: str = "") -> dict[str, tuple[yaml.Node, yaml.Node]]:
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for k, v in node.value:
        key = str(k.value)
        if key in out and w is not None:
            raise w.error(k, f"{field}.{key}" if field else key, "comes twice (YAML keys must be unique)")
        out[key] = (k, v)
    return out


def scalar(w: Where, node: yaml.Node, field: str, kind: type):
    if not isinstance(node, yaml.ScalarNode):
        raise w.error(node, field, f"must be a {kind.__name__}")
    value = plain(w, node, field)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise w.error(node, field, f"must be a {kind.__name__}, not {value!r}")
    return value


def plain(w: Where, node: yaml.ScalarNode, field: str):
    """A scalar's value; one with a tag the safe loader does not construct (!!python/…) is an error."""
    try:
        return yaml.safe_load(yaml.serialize(node))
    except yaml.YAMLError:
        raise w.error(node, field, f"must be a plain value, not tagged {node.tag}") from None


def keys(w: Where, node: yaml.Node, field: str, allowed: set[str], required: set[str] = frozenset()) -> dict:
    """The mapping at ``node``: only ``allowed`` keys, every ``required`` one."""
    if not isinstance(node, yaml.MappingNode):
        raise w.error(node, field or "scenario", "must be a mapping")
    m = mapping(node, w, field)
    for key, (knode, _) in m.items():
        if key not in allowed:
            raise w.error(knode, f"{field}.{key}" if field else key, f"unknown field (allowed: {', '.join(sorted(allowed))})")
    for key in sorted(required - set(m)):
        raise w.error(node, f"{field}.{key}" if field else key, "missing")
    return m


def str_list(w: Where, node: yaml.Node, field: str) -> list[str]:
    if not isinstance(node, yaml.SequenceNode):
        raise w.error(node, field, "must be a list")
    return [str(scalar(w, item, f"{field}[{i}]", str)) for i, item in enumerate(node.value)]


def str_map(w: Where, node: yaml.Node, field: str) -> dict[str, str]:
    if not isinstance(node, yaml.MappingNode):
        raise w.error(node, field, "must be a mapping")
    out = {}
    for k, (_, v) in mapping(node, w, field).items():
        if not isinstance(v, yaml.ScalarNode):
            raise w.error(v, f"{field}.{k}", "must be a plain value")
        out[k] = str(plain(w, v, f"{field}.{k}"))
    return out


def bounded(w: Where, node: yaml.Node, field: str, kind: type, low, high):
    value = scalar(w, node, field, kind)
    if not (low <= value <= high):
        raise w.error(node, field, f"must be between {low:g} and {high:g}")
    return value


def regex(w: Where, node: yaml.Node, field: str, pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise w.error(node, field, f"bad regular expression: {exc}") from None
    return pattern


def optional(m: dict, key: str, read, default=None):
    """``read(node)`` of field ``key`` when the mapping has it, else ``default``."""
    return read(m[key][1]) if key in m else default
