"""The package's layers as rules (docs/architecture.md "Import rules"), read from the source with `ast`: every import
counts, also the ones inside functions, because a lazy import is still a dependency."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "xfer_utils"
FOLDERS = ("phases", "runner", "world", "analysis")
ENTRY = {"xfer_utils.cli"}          # the command line wires every layer together; it is no layer itself


def _name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in PKG.rglob("*.py")}


def imports(path: Path) -> dict[str, set[str]]:
    """{imported module: names taken from it} for every import statement in the file (relative ones resolved);
    `from pkg import mod` counts as an import of pkg.mod."""
    me = _name(path)
    pkg = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    out: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for a in node.names:
                out.setdefault(a.name, set())
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1])
                full = base + ("." + node.module if node.module else "")
            else:
                full = node.module or ""
            for a in node.names:
                sub = f"{full}.{a.name}"
                if sub in MODULES:
                    out.setdefault(sub, set())
                else:
                    out.setdefault(full, set()).add(a.name)
    return out


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in FOLDERS else "core"


def _pkg_imports(module: str) -> set[str]:
    return {m for m in imports(MODULES[module]) if m in MODULES and m != module}


def test_the_layers_exist_and_the_core_stays_flat():
    for f in FOLDERS:
        assert (PKG / f / "__init__.py").is_file(), f
    for core in ("tasks", "data", "features", "models", "train", "evaluation", "metrics", "postprocess",
                 "embeddings", "retrieval", "results", "files"):
        assert f"xfer_utils.{core}" in MODULES, core


def test_core_imports_none_of_the_folders():
    bad = [f"{m} -> {i}" for m in MODULES if layer(m) == "core" and m not in ENTRY
           for i in _pkg_imports(m) if layer(i) != "core"]
    assert not bad, "the science core may import only the core:\n" + "\n".join(bad)


def test_runner_imports_no_phase_code_and_no_torch():
    bad = []
    for m in MODULES:
        if layer(m) != "runner":
            continue
        for i in imports(MODULES[m]):
            if layer(i) == "phases" or i.split(".")[0] in ("torch", "transformers", "accelerate"):
                bad.append(f"{m} -> {i}")
    assert not bad, "runner/ reaches a phase only through its notebook:\n" + "\n".join(bad)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer(m) == "runner"))
def test_runner_modules_do_not_load_torch_at_import(module):
    """Transitively too: `xfer run`/`status`/`collect` and the dry-run cost table must not pay for torch."""
    code = f"import sys, {module}; assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)[:5]"
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]


def test_world_and_analysis_stay_in_their_lane():
    """world/ builds offline worlds from the public core API (no private core names, no phases, runner or analysis);
    analysis/ reads results and never trains or builds worlds."""
    bad = []
    for m in MODULES:
        lay = layer(m)
        if lay not in ("world", "analysis"):
            continue
        for i, names in imports(MODULES[m]).items():
            if i not in MODULES and not any(n in MODULES for n in (f"{i}.{x}" for x in names)):
                if not i.startswith("xfer_utils"):
                    continue
            other = layer(i) if i in MODULES else "core"
            if lay == "world" and other in ("phases", "runner", "analysis"):
                bad.append(f"{m} -> {i}")
            if lay == "world" and other == "core" and any(n.startswith("_") for n in names):
                bad.append(f"{m} -> {i}: private {sorted(n for n in names if n.startswith('_'))}")
            if lay == "analysis" and (other in ("phases", "world") or i in ("xfer_utils.train", "xfer_utils.models")):
                bad.append(f"{m} -> {i}")
    assert not bad, "\n".join(bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_among_modules():
    """Lazy imports included: a cycle hidden in a function is still two modules that cannot be read apart."""
    graph = {m: {i for i in _pkg_imports(m) if not MODULES[i].name == "__init__.py"} for m in MODULES}
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_only_files_reads_xfer_environment_variables():
    bad = []
    for m, p in MODULES.items():
        if m == "xfer_utils.files":
            continue
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                    and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "environ" \
                    and node.args and isinstance(node.args[0], ast.Constant) \
                    and str(node.args[0].value).startswith("XFER_"):
                bad.append(f"{m}:{node.lineno} reads {node.args[0].value}")
    assert not bad, "XFER_* variables are read through files.env:\n" + "\n".join(bad)


def test_files_env_refuses_other_variables():
    from xfer_utils import files
    with pytest.raises(ValueError, match="XFER_CHECKPOINTS"):
        files.env("HOME")


def test_checkpoint_root_has_one_default(monkeypatch, tmp_path):
    """The runner's plan checkpoint root and a notebook's hand-run default are the same function."""
    from xfer_utils import files
    monkeypatch.delenv("XFER_CHECKPOINTS", raising=False)
    assert files.checkpoint_root() == files.REPO / "checkpoints"
    assert files.checkpoint_root(tmp_path / "o2") == tmp_path / "o2_checkpoints"
    _, _, ckpt = files.run_paths("target", "r1", "p", str(tmp_path / "run"), "", "x")
    assert Path(ckpt) == files.REPO / "checkpoints" / "p" / "r1"
    monkeypatch.setenv("XFER_CHECKPOINTS", str(tmp_path / "drive"))
    _, _, ckpt = files.run_paths("target", "r1", "p", str(tmp_path / "run"), "", "x")
    assert Path(ckpt) == tmp_path / "drive" / "p" / "r1"


def test_cli_keeps_every_subcommand():
    from xfer_utils import cli
    parser = cli.build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert set(choices) == {"tasks", "tiny", "run", "status", "collect", "score", "models", "check-data",
                            "token-lengths", "gains", "rehearse"}
    assert {c for cmds, _ in cli.COMMANDS for c in cmds} == set(choices)
