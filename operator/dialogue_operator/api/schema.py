"""Turns pydantic JSON Schema into a Kubernetes structural OpenAPI v3 schema (pure; used by crdgen)."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

Schema = dict[str, Any]

# JSON Schema keywords Kubernetes structural schemas do not accept or that carry no meaning there.
_DROP = ("title", "additionalProperties", "$defs")


class SchemaError(ValueError):
    """The pydantic model uses a construct that has no structural-schema equivalent."""


def structural_schema(model: type[BaseModel]) -> Schema:
    """The structural schema of `model` (camelCase aliases, $refs inlined, optionals unwrapped)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs: dict[str, Schema] = raw.get("$defs", {})
    return _convert(raw, defs, path=model.__name__)


def _resolve(node: Schema, defs: dict[str, Schema], path: str) -> Schema:
    """Inline a $ref, letting the referring node's own keywords (description, default) win."""
    if "$ref" not in node:
        return node
    name = node["$ref"].rsplit("/", 1)[-1]
    if name not in defs:
        raise SchemaError(f"{path}: unresolved $ref {node['$ref']}")
    merged = copy.deepcopy(defs[name])
    for key, value in node.items():
        if key != "$ref":
            merged[key] = value
    return merged


def _unwrap_optional(node: Schema, path: str) -> Schema:
    """`X | None` (anyOf with a null branch) becomes X; a None default is dropped."""
    branches = node.get("anyOf")
    if not branches:
        return node
    non_null = [b for b in branches if b.get("type") != "null"]
    if len(non_null) == len(branches):
        return node
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    if rest.get("default", 0) is None:
        del rest["default"]
    if len(non_null) == 1:
        return {**non_null[0], **rest}
    return {**rest, "anyOf": non_null}


def _int_or_string(node: Schema) -> Schema:
    """anyOf [integer, string] becomes x-kubernetes-int-or-string (patterns hoisted, as controller-gen does)."""
    branches = node.get("anyOf")
    if not branches or sorted(b.get("type", "") for b in branches) != ["integer", "string"]:
        return node
    out = {k: v for k, v in node.items() if k != "anyOf"}
    out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    out["x-kubernetes-int-or-string"] = True
    for branch in branches:
        for key in ("pattern", "maxLength"):
            if key in branch:
                out[key] = branch[key]
    return out


def _convert(node: Schema, defs: dict[str, Schema], path: str) -> Schema:
    node = _resolve(node, defs, path)
    node = _unwrap_optional(node, path)
    node = _resolve(node, defs, path)
    node = _int_or_string(node)
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        raise SchemaError(f"{path}: unions other than X | None and int | str are not structural")
    out: Schema = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "exclusiveMinimum" and not isinstance(value, bool):
            out["minimum"] = value
            out["exclusiveMinimum"] = True
        elif key == "exclusiveMaximum" and not isinstance(value, bool):
            out["maximum"] = value
            out["exclusiveMaximum"] = True
        elif key == "const":
            out["enum"] = [value]
        elif key == "properties":
            required = set(node.get("required", ()))
            out["properties"] = {
                name: _with_empty_default(sub, _convert(sub, defs, f"{path}.{name}"), name in required)
                for name, sub in value.items()
            }
        elif key == "items":
            out["items"] = _convert(value, defs, f"{path}[]")
        else:
            out[key] = value
    if node.get("additionalProperties") is True or (
        node.get("type") == "object" and "properties" not in node and "additionalProperties" not in node
    ):
        out["x-kubernetes-preserve-unknown-fields"] = True
    elif isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = _convert(node["additionalProperties"], defs, f"{path}{{}}")
    if out.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("type", "object")
    # An object-valued default becomes {}: the apiserver then applies the nested fields' own defaults, so the
    # CRD states each default once.
    if isinstance(out.get("default"), dict) and "properties" in out:
        out["default"] = {}
    if "enum" in out and "type" not in out:
        out["type"] = _enum_type(out["enum"], path)
    return out


def _with_empty_default(raw: Schema, converted: Schema, required: bool) -> Schema:
    """A field with a default_factory (pydantic emits no default for it) defaults to {} or [] in the CRD.

    The apiserver then fills nested defaults, and CEL rules can read the field without has().
    """
    optional = any(b.get("type") == "null" for b in raw.get("anyOf", ()))
    if required or optional or "default" in raw:
        return converted
    if converted.get("type") == "object":
        return {**converted, "default": {}}
    if converted.get("type") == "array":
        return {**converted, "default": []}
    return converted


def _enum_type(values: list[Any], path: str) -> str:
    kinds = {type(v) for v in values}
    if kinds == {str}:
        return "string"
    if kinds == {int}:
        return "integer"
    raise SchemaError(f"{path}: enum of mixed or unsupported types {kinds}")


def missing_descriptions(schema: Schema, path: str = "") -> list[str]:
    """Paths of properties without a description (kubectl explain would show nothing for them)."""
    missing: list[str] = []
    for name, sub in schema.get("properties", {}).items():
        here = f"{path}.{name}"
        if not sub.get("description"):
            missing.append(here)
        missing.extend(missing_descriptions(sub, here))
        if "items" in sub:
            missing.extend(missing_descriptions(sub["items"], here + "[]"))
    return missing
