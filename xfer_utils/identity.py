"""Checkpoint identity: a digest of everything that determines a run's weights, recorded with every checkpoint and
compared before one is reused.

Checkpoint folders are named by plan and run id, and run ids come from grid labels, not from lr, data caps or the
init encoder; a folder alone therefore cannot tell whether its weights are the ones a run asks for. The digest
covers the model (its name, or the digest of the saved encoder it starts from), every training hyper-parameter
(`TrainConfig` except how often checkpoints are written), the resolved precision, the strategy (LoRA rank,
optimizer, FSDP), the seed, and the training and selection data by content (token ids and labels of every
training example, the dev subset's rows), so caps, seeds of subsets and data mirrors are covered too.

A mismatch is refused (`check_checkpoint`), not worked around: see the comment there.

>>> settings_diff({"lr": 1e-5, "seed": 1}, {"lr": 2e-5, "seed": 1})
'lr 1e-05 -> 2e-05'
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

from . import files

RECORD = "identity.json"             # in a checkpoint folder: the digest and the settings it was computed from
ENCODER_RECORD = "xfer_identity.json"   # in a saved encoder folder: the digest of the run that trained it
NOT_WEIGHTS = ("checkpoint_every",)  # TrainConfig fields that do not change the weights (a resume may change them)


def digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _features_digest(feats: list[dict]) -> str:
    h = hashlib.sha1()
    for f in feats:
        h.update(repr((f.get("input_ids"), f.get("labels"))).encode())
    return h.hexdigest()[:16]


def _dev_digest(dev) -> str:
    if dev is None:
        return ""
    rows = dev.to_list() if hasattr(dev, "to_list") else list(dev)
    return digest(rows)


def encoder_record(path: str | os.PathLike) -> dict | None:
    """The identity record of an encoder saved by a training phase, or None (a raw pretrained model)."""
    p = Path(path) / ENCODER_RECORD if path else None
    if p is None or not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def model_identity(model: str, init_from: str = "") -> dict:
    """What a run starts from: the model's name, and the init encoder's own digest when it was trained here (a
    retrained encoder at the same path is then a different start)."""
    out = {"model": str(model)}
    if init_from:
        rec = encoder_record(init_from)
        out["init"] = rec["digest"] if rec else str(init_from)
    return out


def settings(cfg, tds, identity: dict | None, precision: str, fsdp: bool, packed: bool = False) -> dict:
    """The flat settings a checkpoint's digest is computed from (also shown when they differ). Packing counts as
    resolved (`packed`: 'auto' means other things on other devices) and only when on, so digests of runs from before
    the option existed stay the same; a compiled encoder computes the same weights (a resume may change it)."""
    s = {k: v for k, v in asdict(cfg).items() if k not in NOT_WEIGHTS + ("packing", "compile")}
    if packed:
        s["packed"] = True

    s["precision"] = precision
    s["fsdp"] = fsdp
    s.update(identity or {})
    for td in tds:
        s[f"task:{td.name}"] = {"type": td.type, "max_length": td.max_length, "n_train": len(td.train),
                                "train": _features_digest(td.train), "dev": _dev_digest(td.dev),
                                "labels": td.label_names, "mlm": td.is_mlm, "score_as": td.score_as}
    return s


def settings_diff(old: dict, new: dict) -> str:
    keys = sorted(set(old) | set(new))
    parts = []
    for k in keys:
        a, b = old.get(k, "(unset)"), new.get(k, "(unset)")
        if a != b:
            if isinstance(a, dict) and isinstance(b, dict):
                sub = [f"{kk}" for kk in sorted(set(a) | set(b)) if a.get(kk) != b.get(kk)]
                parts.append(f"{k} ({', '.join(sub)} differ)")
            else:
                parts.append(f"{k} {a} -> {b}")
    return "; ".join(parts)


def check_checkpoint(ckpt: str | os.PathLike, dig: str, current: dict, write: bool = True) -> None:
    """Before a run reuses `ckpt` (train_done.json, last.pt, best.pt): the folder's record must carry `dig`.
    A fresh folder gets the record now.

    Choice: refuse (one sentence naming the folder and what differs) rather than start clean elsewhere. Starting
    clean in a digest-keyed folder would keep every superseded checkpoint of an XXL model (optimizer moments
    included, hundreds of GB) on the disk without anyone deciding it, and the saved encoder that the next phase
    reads by path would have to move with it; a refusal costs one `rm -r` and leaves no doubt which weights a
    result came from."""
    ckpt = Path(ckpt)
    rec_path = ckpt / RECORD
    used = [n for n in ("train_done.json", "last.pt", "best.pt") if (ckpt / n).exists()]
    rec = None
    if rec_path.exists():
        try:
            rec = json.loads(rec_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            rec = None
    if rec is not None and rec.get("digest") == dig:
        return
    if used:
        what = (f"with different settings ({settings_diff(rec.get('settings') or {}, current)})" if rec
                else "without an identity record, so its settings are unknown")
        raise ValueError(f"checkpoint folder {ckpt} holds {', '.join(used)} written {what}; delete {ckpt} to "
                         f"train with these settings, or give this run its own checkpoint_dir")
    if write:      # under FSDP the main process alone writes
        files.atomic_write_text(rec_path, json.dumps({"digest": dig, "settings": current}, indent=1, default=str))


def record_encoder(encoder_dir: str | os.PathLike, dig: str, **info) -> None:
    files.atomic_write_text(Path(encoder_dir) / ENCODER_RECORD,
                            json.dumps({"digest": dig, **info}, indent=1, default=str))


def check_init(init_from: str, intermediate: str, none: str = "none") -> None:
    """The `intermediate` label a run reports must be the one its init encoder was trained with: a baseline
    (`none`) never starts from an intermediate encoder, and an intermediate label never from the raw model."""
    rec = encoder_record(init_from) if init_from else None
    if rec is not None and rec.get("intermediate") and rec["intermediate"] != intermediate:
        raise ValueError(f"init_from {init_from} is the encoder trained on intermediate {rec['intermediate']!r}, but "
                         f"this run reports intermediate {intermediate!r}; pass -p intermediate "
                         f"{rec['intermediate']} (a baseline, intermediate 'none', leaves init_from empty)")
    if not init_from and intermediate and intermediate != none:
        raise ValueError(f"intermediate is {intermediate!r} but init_from is empty (the raw pretrained model); pass "
                         f"-p init_from <checkpoints>/<plan>/<run_id>/encoder of that intermediate run, or "
                         f"-p intermediate {none} for the baseline")


def weights_digest(model: str, init_from: str = "") -> str:
    """The digest of an encoder used without training (retrieval): its training run's, else of its name."""
    rec = encoder_record(init_from) if init_from else None
    return rec["digest"] if rec else digest(model_identity(model, init_from))
