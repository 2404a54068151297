"""Shared fixtures: one offline tiny world per test session (built by the project's own builder), and the path to
the real data in ../shared/data when it is present."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path | None:
    """../shared/data beside the repo (or XFER_SHARED_DATA; files.shared_data); None when absent, so real-data
    tests skip."""
    from xfer_utils import files
    return files.shared_data()


def need_data(*parts: str) -> Path:
    """The real file under ../shared/data, or a clean skip when it is absent."""
    root = shared_data()
    if root is None or not root.joinpath(*parts).exists():
        pytest.skip("real data (../shared/data or XFER_SHARED_DATA) not present")
    return root.joinpath(*parts)


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """The tiny world (model + mirror), built once; notebooks resolve 'tiny' names to it via XFER_TINY_DIR."""
    from xfer_utils.world import tiny
    root = Path(os.environ.get("XFER_TEST_WORLD") or tmp_path_factory.mktemp("world"))
    paths = tiny.ensure(root)
    os.environ["XFER_TINY_DIR"] = str(root)
    return {"root": root, **paths}


@pytest.fixture(scope="session")
def tokenizer(world):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(world["tiny-xlmr-s"])
