"""A notebook's parameters as papermill sees them, and whether a value fits a declared annotation.

Papermill's parameters-cell parser silently drops a line holding a second ``=`` (``x: int = 0  # 0 = all``
vanishes) and annotations like ``int | None``: :func:`interface` fails on such a parameter instead.

>>> type_ok(1, "float"), type_ok(True, "int"), type_ok(None, "Optional[str]"), type_ok("a", "int | None")
(True, False, True, False)
"""
from __future__ import annotations

import ast
import os
import re
from pathlib import Path

_IFACE_CACHE: dict = {}


def interface(notebook: str | os.PathLike) -> dict:
    """{name: (annotation, default value or None)} from the notebook's `parameters` cell."""
    import papermill
    p = Path(notebook)
    key = (str(p), p.stat().st_mtime_ns)
    if key not in _IFACE_CACHE:
        out = {}
        inspected = papermill.inspect_notebook(str(p))
        missing = [n for n in _assigned_names(p) if n not in inspected]
        if missing:
            raise ValueError(f"papermill cannot read parameter{'s' * (len(missing) > 1)} "
                             f"{', '.join(map(repr, missing))} of {p} (its parameters-cell parser drops a line "
                             f"with a second '=', e.g. in the comment, and annotations like 'int | None'): write "
                             f"each as `name: type = literal  # help` with no '=' in the help, Optional[int] for "
                             f"optional values")
        for name, info in inspected.items():
            try:
                default = ast.literal_eval(info["default"])
            except (ValueError, SyntaxError, TypeError):
                default = None
            out[name] = (info["inferred_type_name"], default)
        _IFACE_CACHE[key] = out
    return _IFACE_CACHE[key]


def _assigned_names(notebook: Path) -> list[str]:
    """Names assigned at top level of the notebook's first `parameters` cell (what papermill should report)."""
    import nbformat
    nb = nbformat.read(str(notebook), as_version=4)
    cell = next((c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        return []
    try:
        tree = ast.parse(cell.source)
    except SyntaxError as e:
        raise ValueError(f"the parameters cell of {notebook} is not valid Python: {e}") from None
    names = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


_BASES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "list": (list, tuple),
          "tuple": (list, tuple), "dict": (dict,)}


def _alternatives(ann: str) -> list[str]:
    ann = ann.replace(" ", "").replace("typing.", "")
    m = re.fullmatch(r"Optional\[(.*)\]", ann)
    if m:
        return _alternatives(m.group(1)) + ["None"]
    m = re.fullmatch(r"Union\[(.*)\]", ann)
    parts, depth, cur = [], 0, ""
    for ch in m.group(1) + "," if m else ann + "|":
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch in ",|" and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [p for p in parts if p]


def type_ok(value, annotation: str) -> bool:
    """Does `value` fit the declared annotation? Unknown or missing annotations accept anything."""
    alts = _alternatives(annotation or "None")
    if alts == ["None"]:                 # papermill's "no annotation"
        return True
    for a in alts:
        base = a.split("[")[0].lower()
        if base in ("none", "nonetype"):
            if value is None:
                return True
            continue
        if base not in _BASES or base == "any":
            return True
        if isinstance(value, bool) and base != "bool":
            continue
        if isinstance(value, _BASES[base]):
            return True
    return False
