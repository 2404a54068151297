"""What every notebook does first: find the repo, resolve model/data names, seed, report the environment.

Model names of the offline tiny world (`tiny-xlmr-s`, `tiny-xlmr-m`) and the data dir `tiny` resolve to a world
built once under XFER_TINY_DIR (default `<repo>/.cache/tiny`), so notebook defaults run offline in seconds; any
other name is passed to `from_pretrained` unchanged (hub id or local folder).
The other architecture families' tiny models (`tiny-bert`, ...: tiny_families.NAMES) are built there on first use.
"""
from __future__ import annotations

import os
import platform
import random
from pathlib import Path

from ..files import REPO, tiny_dir


def in_colab() -> bool:
    import sys
    return "COLAB_RELEASE_TAG" in os.environ or "google.colab" in sys.modules


def resolve_model(name: str) -> str:
    from ..world import tiny, tiny_families
    if name in tiny.MODEL_SIZES:
        return str(tiny.ensure(tiny_dir())[name])
    if name in tiny_families.NAMES:     # tiny models of the other architecture families, built on first use
        return str(tiny_families.ensure(name, tiny_dir()))
    return name


def resolve_data_dir(data_dir: str) -> str:
    """'' -> '' (the hub, or XFER_DATA_DIR); 'tiny' -> the tiny world's mirror; anything else: a mirror folder."""
    from ..world import tiny
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

    from ..train import choose_precision
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


def mount_drive(mountpoint: str = "/content/drive") -> Path:
    """Mount Google Drive once; a second call (or a re-run cell) finds it mounted and does nothing."""
    root = Path(mountpoint)
    if not (root / "MyDrive").is_dir():
        from google.colab import drive  # only importable on Colab
        drive.mount(str(root))
    return root / "MyDrive"


def colab_roots(drive_dir: str = "xfer", use_drive: bool = True) -> dict[str, str]:
    """On Colab: outputs and checkpoints on Drive (so a disconnect loses nothing and runs resume); checkpoints are
    exported as XFER_CHECKPOINTS for the runner. Elsewhere: the repo's own outputs/ and checkpoints/."""
    if in_colab() and use_drive:
        base = mount_drive() / drive_dir
    else:
        base = REPO
    roots = {"outputs": str(base / "outputs"), "checkpoints": str(base / "checkpoints")}
    for p in roots.values():
        Path(p).mkdir(parents=True, exist_ok=True)
    os.environ["XFER_CHECKPOINTS"] = roots["checkpoints"]
    return roots


def gpu_advice() -> str:
    """What fits the GPU at hand (T4: fp16, XLM-R base comfortably, large only with small batches; L4/A100: bf16)."""
    import torch
    if not torch.cuda.is_available():
        return "no GPU: only the tiny world (smoke plan) is practical here"
    name = torch.cuda.get_device_name(0)
    gib = torch.cuda.get_device_properties(0).total_memory / 2**30
    if torch.cuda.is_bf16_supported():
        return f"{name} ({gib:.0f} GiB): bf16; quick.yaml in well under an hour; XLM-R large fits with per_device_batch 8"
    return f"{name} ({gib:.0f} GiB): no bf16, fp16 with loss scaling; quick.yaml in about 2 h; XLM-R large needs " \
           f"per_device_batch 2-4 and gradient checkpointing"
