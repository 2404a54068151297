"""What every notebook does first: find the repo, resolve model/data names, seed, report the environment.

Model names of the offline tiny world (`tiny-xlmr-s`, `tiny-xlmr-m`) and the data dir `tiny` resolve to a world
built once under XFER_TINY_DIR (default `<repo>/.cache/tiny`), so notebook defaults run offline in seconds; any
other name is passed to `from_pretrained` unchanged (hub id or local folder).
"""
from __future__ import annotations

import os
import platform
import random
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def in_colab() -> bool:
    import sys
    return "COLAB_RELEASE_TAG" in os.environ or "google.colab" in sys.modules


def tiny_dir() -> Path:
    return Path(os.environ.get("XFER_TINY_DIR") or REPO / ".cache" / "tiny")


def resolve_model(name: str) -> str:
    from . import tiny
    if name in tiny.MODEL_SIZES:
        return str(tiny.ensure(tiny_dir())[name])
    return name


def resolve_data_dir(data_dir: str) -> str:
    """'' -> '' (the hub, or XFER_DATA_DIR); 'tiny' -> the tiny world's mirror; anything else: a mirror folder."""
    from . import tiny
    if data_dir == "tiny":
        return str(tiny.ensure(tiny_dir())["data"])
    if data_dir and not Path(data_dir).is_dir():
        raise FileNotFoundError(f"data_dir {data_dir!r} is not a folder; use '' for the hub, 'tiny' for the offline "
                                f"world, or a local mirror built like `xfer tiny DIR` (DIR/data)")
    return data_dir


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def report() -> dict:
    """Versions, device and the precision training will use."""
    import datasets
    import torch
    import transformers

    from .train import choose_precision
    dev = "cpu"
    if torch.cuda.is_available():
        dev = f"cuda ({torch.cuda.get_device_name(0)}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB)"
    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "datasets": datasets.__version__, "device": dev, "precision": choose_precision("auto"),
            "cpu_threads": torch.get_num_threads(), "colab": in_colab(), "repo": str(REPO)}


def setup(seed: int = 1, quiet_hf: bool = True) -> dict:
    """Seed, quiet the hub libraries' per-file progress bars, chdir to the repo root; returns `report()`."""
    if quiet_hf:
        import datasets
        from transformers.utils import logging as hf_logging
        datasets.disable_progress_bars()
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    os.chdir(REPO)
    seed_everything(seed)
    return report()
