"""KServe's `logger` block set in the InferenceServices of a YAML manifest, as text edits.

A manifest is edited, never re-emitted: the composed YAML gives each node's position, and only
the logger's own values are rewritten (or a new logger block inserted at the component's
indentation), so every other byte (documents, key order, comments, quoting) stays as it was.
Fields of an existing logger block that are not set here (metadataAnnotations, storage) stay.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# KServe's API group; InferenceService in any of its versions.
KSERVE_GROUP = "serving.kserve.io"
INFERENCE_SERVICE = "InferenceService"
COMPONENTS = ("predictor", "transformer", "explainer")


class ManifestError(ValueError):
    """The manifest cannot be edited: not YAML, or no InferenceService to edit."""


@dataclass(frozen=True)
class LoggerFields:
    """What the logger block is set to; `metadata_headers` None leaves that field as it is."""

    mode: str
    url: str
    metadata_headers: tuple[str, ...] | None = None

    def items(self) -> list[tuple[str, str | tuple[str, ...]]]:
        fields: list[tuple[str, str | tuple[str, ...]]] = [("mode", self.mode), ("url", self.url)]
        if self.metadata_headers is not None:
            fields.append(("metadataHeaders", self.metadata_headers))
        return fields


@dataclass(frozen=True)
class Edit:
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Result:
    text: str
    edited: list[str]  # the InferenceServices whose logger was set, by name
    skipped: list[str]  # those without the component


def set_logger(text: str, component: str, fields: LoggerFields) -> Result:
    """`text` with the logger of `spec.<component>` set in every InferenceService."""
    newline = "\r\n" if "\r\n" in text else "\n"
    edits: dict[int, list[Edit]] = {}  # by component node, once even if reached by an alias
    edited: list[str] = []
    skipped: list[str] = []
    found = False
    for service in _inference_services(_documents(text)):
        found = True
        name = _scalar(_value(_value(service, "metadata"), "name")) or "(unnamed)"
        target = _value(_value(service, "spec"), component)
        if not isinstance(target, MappingNode):
            skipped.append(name)
            continue
        edited.append(name)
        edits.setdefault(id(target), _component_edits(text, target, fields, newline))
    if not found:
        raise ManifestError(
            f"no InferenceService in it (kind: {INFERENCE_SERVICE}, apiVersion: "
            f"{KSERVE_GROUP}/...): nothing to enable logging on"
        )
    # From the end backwards, so that each edit's positions still hold; of two insertions at
    # one place the later one first, so that they read in the order they were made.
    ordered = list(enumerate(e for group in edits.values() for e in group))
    for _, edit in sorted(ordered, key=lambda pair: (-pair[1].start, -pair[0])):
        text = text[: edit.start] + edit.text + text[edit.end :]
    return Result(text, edited, skipped)


def _documents(text: str) -> list[Node]:
    try:
        return [node for node in yaml.compose_all(text, Loader=yaml.SafeLoader) if node]
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ManifestError(f"not valid YAML: {error.problem or error.context}{where}") from None
    except yaml.YAMLError as error:
        raise ManifestError(f"not valid YAML: {str(error).splitlines()[0]}") from None


def _inference_services(nodes: list[Node]) -> Iterator[MappingNode]:
    """Each InferenceService, at the top of a document or in the items of a `kind: List`."""
    for node in nodes:
        if not isinstance(node, MappingNode):
            continue
        kind = _scalar(_value(node, "kind"))
        api_version = _scalar(_value(node, "apiVersion")) or ""
        if kind == INFERENCE_SERVICE and api_version.startswith(KSERVE_GROUP + "/"):
            yield node
        items = _value(node, "items")
        if kind is not None and kind.endswith("List") and isinstance(items, SequenceNode):
            yield from _inference_services(items.value)


def _entry(mapping: Node | None, key: str) -> tuple[Node, Node] | None:
    if not isinstance(mapping, MappingNode):
        return None
    for key_node, value_node in mapping.value:
        if isinstance(key_node, ScalarNode) and key_node.value == key:
            return key_node, value_node
    return None


def _value(mapping: Node | None, key: str) -> Node | None:
    entry = _entry(mapping, key)
    return entry[1] if entry else None


def _scalar(node: Node | None) -> str | None:
    return node.value if isinstance(node, ScalarNode) else None


def _component_edits(
    text: str, component: MappingNode, fields: LoggerFields, newline: str
) -> list[Edit]:
    entry = _entry(component, "logger")
    if entry is None:
        return [_new_logger(text, component, fields, newline)]
    key, logger = entry
    if not isinstance(logger, MappingNode):  # `logger:` empty, or not a mapping: replaced
        indent = " " * (key.start_mark.column + _indent_step(component))
        lines = [f"{indent}{name}: {_render(value, flow=False)}" for name, value in fields.items()]
        if component.flow_style:
            return [Edit(key.end_mark.index, _end(logger), ": " + _flow_mapping(fields))]
        return [Edit(key.end_mark.index, _end(logger), ":" + newline + newline.join(lines))]
    return [_field_edit(text, logger, name, value, newline) for name, value in fields.items()]


def _field_edit(
    text: str, logger: MappingNode, name: str, value: str | tuple[str, ...], newline: str
) -> Edit:
    entry = _entry(logger, name)
    flow = bool(logger.flow_style)
    if entry is not None:  # the value replaced, in the old value's quoting where it can be
        key, old = entry
        style = old.style if isinstance(old, ScalarNode) and isinstance(value, str) else None
        return Edit(key.end_mark.index, _end(old), ": " + _render(value, flow, style))
    if flow:
        return _flow_insert(text, logger, f"{name}: {_render(value, flow=True)}")
    at = _line_end(text, _end(logger.value[-1][1])) if logger.value else logger.end_mark.index
    indent = " " * logger.value[0][0].start_mark.column
    return Edit(at, at, f"{newline}{indent}{name}: {_render(value, flow=False)}")


def _new_logger(text: str, component: MappingNode, fields: LoggerFields, newline: str) -> Edit:
    if component.flow_style:
        return _flow_insert(text, component, f"logger: {_flow_mapping(fields)}")
    if not component.value:  # a block mapping has at least one entry
        raise ManifestError("an empty component mapping that is not in flow style")
    column = component.value[0][0].start_mark.column
    step = " " * _indent_step(component)
    lines = [" " * column + "logger:"] + [
        f"{' ' * column}{step}{name}: {_render(value, flow=False)}"
        for name, value in fields.items()
    ]
    at = _line_end(text, _end(component.value[-1][1]))
    return Edit(at, at, newline + newline.join(lines))


def _indent_step(component: MappingNode) -> int:
    """The manifest's own indentation step, as its component's nested block mappings show it."""
    for key, value in component.value:
        if isinstance(value, MappingNode) and not value.flow_style and value.value:
            step: int = value.value[0][0].start_mark.column - key.start_mark.column
            if step > 0:
                return step
    return 2


def _end(node: Node) -> int:
    """Where a node's own text ends: a block collection's end mark lies past the comments and
    blank lines after it, so its last descendant's end is taken instead."""
    while isinstance(node, MappingNode | SequenceNode) and not node.flow_style and node.value:
        last = node.value[-1]
        node = last[1] if isinstance(node, MappingNode) else last
    index: int = node.end_mark.index
    return index


def _line_end(text: str, index: int) -> int:
    """The end of the line `index` is on (before its line break), or `index` itself when it
    starts a line (a block scalar ends after its line break)."""
    if index > 0 and text[index - 1] == "\n":
        return index - (2 if text[index - 2 : index] == "\r\n" else 1)
    end = text.find("\n", index)
    if end < 0:
        return len(text)
    return end - 1 if end > 0 and text[end - 1] == "\r" else end


def _flow_insert(text: str, mapping: MappingNode, entry: str) -> Edit:
    """`entry` added last in a flow mapping `{...}`."""
    if mapping.value:
        at = mapping.value[-1][1].end_mark.index
        return Edit(at, at, ", " + entry)
    at = text.index("{", mapping.start_mark.index) + 1
    return Edit(at, at, entry)


def _flow_mapping(fields: LoggerFields) -> str:
    return "{" + ", ".join(f"{k}: {_render(v, flow=True)}" for k, v in fields.items()) + "}"


def _render(value: str | tuple[str, ...], flow: bool, style: str | None = None) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_scalar_text(item, flow=True) for item in value) + "]"
    return _scalar_text(value, flow, style)


# Plain text that YAML reads back as the same string in block and flow context alike.
_PLAIN = re.compile(r"[A-Za-z0-9_./-][A-Za-z0-9_./:+@%=~-]*")


def _scalar_text(value: str, flow: bool, style: str | None = None) -> str:
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    if style != '"' and _PLAIN.fullmatch(value) and _reads_back(value, flow):
        return value
    return json.dumps(value)  # a JSON string is a YAML double-quoted scalar


def _reads_back(value: str, flow: bool) -> bool:
    """Plain `value` is read as that string (not a number, a boolean or null)."""
    try:
        loaded = yaml.safe_load("{k: " + value + "}" if flow else "k: " + value)
    except yaml.YAMLError:
        return False
    return isinstance(loaded, dict) and loaded.get("k") == value
