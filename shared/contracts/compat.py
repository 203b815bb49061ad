"""Is a new JSON Schema of an event still the same ``schema_version`` as the published one?

Within a version, old and new events live side by side (in the store, on retained topics, in
replays), read by consumers written against either schema. So the only compatible changes are:
a new *optional* field, a new enum value, and new titles, descriptions, defaults or examples.
Everything else — a field removed, a field made required or optional, a type narrowed or widened,
a constraint (format, pattern, bounds, const) changed, an enum value removed — is breaking and
needs schema_version N+1 with an upcaster.
"""

from __future__ import annotations

from typing import Any

#: Annotations: they change no instance's validity.
_IGNORED = {"title", "description", "default", "examples", "$defs", "$schema", "$id", "deprecated"}
_STRUCTURAL = {"properties", "required", "items", "anyOf", "oneOf", "allOf", "enum", "$ref"}


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable reasons why ``new`` cannot replace ``old`` within a version (empty: it can)."""
    problems: list[str] = []
    _compare(_resolve(old, old), _resolve(new, new), "", problems)
    return problems


def _resolve(node: Any, root: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """Inline local ``$ref``s (``#/$defs/...``, ``#/components/schemas/...``) so shapes compare."""
    if isinstance(node, list):
        return [_resolve(v, root, seen) for v in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/") and ref not in seen:
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, root, (*seen, ref))
    return {k: _resolve(v, root, seen) for k, v in node.items() if k != "$defs"}


def _branches(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """A schema as its alternatives: ``anyOf``/``oneOf`` branches, or itself."""
    for key in ("anyOf", "oneOf"):
        if key in schema:
            rest = {k: v for k, v in schema.items() if k != key and k not in _IGNORED}
            return [{**rest, **b} for b in schema[key]]
    return [schema]


def _kind(schema: dict[str, Any]) -> str:
    if "const" in schema:
        return f"const {schema['const']!r}"
    if "enum" in schema:
        return "enum"
    t = schema.get("type")
    return str(t) if t is not None else "any"


def _compare(old: Any, new: Any, path: str, problems: list[str]) -> None:
    where = path or "(root)"
    if not isinstance(old, dict) or not isinstance(new, dict):
        if old != new:
            problems.append(f"{where}: schema changed from {old!r} to {new!r}")
        return
    old_branches, new_branches = _branches(old), _branches(new)
    if len(old_branches) > 1 or len(new_branches) > 1:
        old_by = {_kind(b): b for b in old_branches}
        new_by = {_kind(b): b for b in new_branches}
        for kind in old_by.keys() - new_by.keys():
            problems.append(f"{where}: type narrowed, {kind} no longer accepted")
        for kind in new_by.keys() - old_by.keys():
            problems.append(f"{where}: type widened, {kind} now possible (consumers do not expect it)")
        for kind in old_by.keys() & new_by.keys():
            _compare(old_by[kind], new_by[kind], path, problems)
        return
    if "enum" in old or "enum" in new:
        removed = [v for v in old.get("enum", []) if v not in new.get("enum", [])]
        if "enum" not in new:
            problems.append(f"{where}: enum constraint dropped (type widened)")
        elif "enum" not in old:
            problems.append(f"{where}: enum constraint added (type narrowed)")
        elif removed:
            problems.append(f"{where}: enum value(s) removed: {', '.join(map(str, removed))}")
    for key in sorted((old.keys() | new.keys()) - _IGNORED - _STRUCTURAL):
        if old.get(key) != new.get(key):
            verb = "added" if key not in old else "removed" if key not in new else "changed"
            problems.append(f"{where}: {key} {verb} ({old.get(key)!r} -> {new.get(key)!r})")
    if "properties" in old or "properties" in new:
        old_props, new_props = old.get("properties", {}), new.get("properties", {})
        old_req, new_req = set(old.get("required", [])), set(new.get("required", []))
        for name in sorted(old_props):
            sub = f"{path}.{name}" if path else name
            if name not in new_props:
                problems.append(f"{sub}: field removed")
                continue
            if name in old_req and name not in new_req:
                problems.append(f"{sub}: no longer required (consumers rely on it)")
            if name in new_req and name not in old_req:
                problems.append(f"{sub}: now required (older events lack it)")
            _compare(old_props[name], new_props[name], sub, problems)
        for name in sorted(new_props.keys() - old_props.keys()):
            if name in new_req:
                sub = f"{path}.{name}" if path else name
                problems.append(f"{sub}: new field is required (older events lack it; give it a default)")
    if "items" in old or "items" in new:
        _compare(old.get("items", {}), new.get("items", {}), f"{path}[]", problems)
