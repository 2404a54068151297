"""environment.yml (the conda environment users create; no conda exists here) parses and lists exactly the
packages pyproject.toml requires (runtime + dev extras), with the same version bounds."""
import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch"}           # conda's name for the same package


def _split(req: str) -> tuple[str, str]:
    m = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*?)\s*(;.*)?$", req)
    return m.group(1).lower(), m.group(2).replace(" ", "")


def test_environment_yml_agrees_with_pyproject():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert env["name"] == "xfer" and "conda-forge" in env["channels"]
    conda = {}
    pip = []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip += dep["pip"]
            continue
        name, spec = _split(dep.replace("=", "==", 1) if re.match(r"^[\w\-]+=[^=<>]", dep) else dep)
        conda[name] = spec
    py = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = py["dependencies"] + py["optional-dependencies"]["dev"]
    for req in wanted:
        name, spec = _split(req)
        cname = CONDA_NAMES.get(name, name)
        assert cname in conda, f"{name} is in pyproject.toml but not in environment.yml"
        assert conda[cname] == spec, f"{name}: pyproject {spec!r} vs environment.yml {conda[cname]!r}"
    extra = set(conda) - {CONDA_NAMES.get(_split(r)[0], _split(r)[0]) for r in wanted} - {"python", "pip"}
    assert not extra, f"environment.yml lists packages pyproject.toml does not: {sorted(extra)}"
    assert "-e ." in pip                      # the kit itself, editable
    assert conda["python"].startswith("==3.1")


def test_torch_range_admits_colab_and_the_local_pin():
    py = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    spec = dict(_split(r) for r in py["dependencies"])["torch"]
    from packaging.specifiers import SpecifierSet
    s = SpecifierSet(spec)
    assert "2.13.0" in s and "2.9.1" in s and "2.15.0" in s   # the local CPU wheel, Colab's and newer releases
    assert "torch==2.13.0" in (REPO / "Makefile").read_text()   # the Makefile pins the local CPU wheel
