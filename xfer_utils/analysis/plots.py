"""Figures and tables of the analysis notebooks, written to the run's figures folder: annotated heatmaps of the
paper's table and its gains, scatter plots with one OLS line per group (on log10 x) for the follow-up questions.
An empty input gives a figure that says so, never an exception, so a partial results table still renders.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd


def save_table(table: pd.DataFrame, folder, name: str) -> Path:
    """Write a table as CSV under `folder` (created) and return the path."""
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path)
    return path


def _save(fig, figures_dir, name: str) -> Path:
    path = Path(figures_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def _empty(figures_dir, name: str, message: str) -> Path:
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return _save(fig, figures_dir, name)


def plot_heatmap(table: pd.DataFrame, figures_dir, name: str, title: str = "", center: float | None = None) -> Path:
    """Annotated heatmap of a (paper or gain) table; rows labelled 'model | intermediate' when several models."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    if table.empty:
        return _empty(figures_dir, name, f"{title}: no data")
    data = table.copy()
    models = data.index.get_level_values("model").unique() if "model" in data.index.names else []
    data.index = [f"{i[0]} | {i[-1]}" if len(models) > 1 else i[-1] for i in data.index]
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * data.shape[1], 1.0 + 0.45 * data.shape[0]))
    with warnings.catch_warnings():      # seaborn 0.13 calls a colormap method matplotlib 3.11 deprecates
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        sns.heatmap(data.astype(float), annot=True, fmt=".1f", center=center, ax=ax, cbar=True,
                    cmap="RdBu_r" if center is not None else "viridis", linewidths=0.5)
    ax.set_title(title)
    return _save(fig, figures_dir, name)


def plot_scatter(frame: pd.DataFrame, x: str, y: str, figures_dir, name: str, hue: str | None = None,
                 col: str | None = None, log_x: bool = True, title: str = "", xlabel: str = "",
                 ylabel: str = "", yerr: tuple[str, str] | None = None) -> Path:
    """Scatter of y on x (log x axis), one panel per `col`, one colour and one OLS line (on log10 x) per `hue`;
    ``yerr`` = (low, high) interval columns draws each point's interval as an error bar (where it is finite)."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    d = frame.dropna(subset=[x, y])
    if log_x:
        d = d[d[x] > 0]
    if d.empty:
        return _empty(figures_dir, name, f"{title}: no points to plot")
    panels = list(dict.fromkeys(d[col])) if col else [None]
    levels = list(dict.fromkeys(d[hue])) if hue else [None]
    colors = dict(zip(levels, sns.color_palette(n_colors=max(len(levels), 1))))
    ncols = min(len(panels), 4)
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.8 * nrows), squeeze=False, sharey=True)
    for ax, panel in zip(axes.flat, panels):
        sub = d if panel is None else d[d[col] == panel]
        for level in levels:
            pts = sub if level is None else sub[sub[hue] == level]
            if pts.empty:
                continue
            ax.scatter(pts[x], pts[y], color=colors[level], label=str(level) if hue else None, s=28, alpha=0.85)
            if yerr:
                bars = pts[np.isfinite(pts[list(yerr)].to_numpy(float)).all(axis=1)]
                ax.errorbar(bars[x], bars[y], yerr=[(bars[y] - bars[yerr[0]]).clip(lower=0),
                                                   (bars[yerr[1]] - bars[y]).clip(lower=0)], fmt="none",
                            ecolor=colors[level], alpha=0.6, lw=1, capsize=2)
            xs = np.log10(pts[x].to_numpy(float)) if log_x else pts[x].to_numpy(float)
            if len(np.unique(xs)) >= 2:
                b, a = np.polyfit(xs, pts[y].to_numpy(float), 1)
                grid = np.linspace(xs.min(), xs.max(), 20)
                ax.plot(10 ** grid if log_x else grid, a + b * grid, color=colors[level], lw=1.2)
        ax.axhline(0, color="grey", lw=0.8, ls="--")
        if log_x:
            ax.set_xscale("log")
        ax.set_title(f"{panel}" if panel is not None else title)
        ax.set_xlabel(xlabel or x)
        ax.set_ylabel(ylabel or y)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if hue:
        axes.flat[0].legend(title=hue, fontsize=8)
    if title and col:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, figures_dir, name)


def plot_forests(table: pd.DataFrame, figures_dir, prefix: str, title: str = "") -> list[Path]:
    """One forest plot per target of a `gains.compute` table: each (intermediate, language) gain with its interval,
    the language average as a diamond, a dashed line at 0; intervals that exclude 0 are drawn in colour.
    Files ``<prefix>_<target>.png``; an empty table gives one figure that says so."""
    import matplotlib.pyplot as plt
    if table.empty:
        return [_empty(figures_dir, f"{prefix}.png", f"{title}: no gains with per-example predictions")]
    paths = []
    for target, sub in table.groupby("target", sort=True):
        sub = sub.iloc[::-1]
        labels = [f"{m} | {i} | {lg}" if sub["model"].nunique() > 1 else f"{i} | {lg}"
                  for m, i, lg in zip(sub["model"], sub["intermediate"], sub["language"])]
        if sub["split"].nunique() > 1:
            labels = [f"{lab} ({sp})" for lab, sp in zip(labels, sub["split"])]
        ypos = np.arange(len(sub))
        fig, ax = plt.subplots(figsize=(6.5, 1.0 + 0.28 * len(sub)))
        color = np.where(sub["excludes_zero"], "tab:red", "tab:grey")
        ax.hlines(ypos, sub["gain_lo"], sub["gain_hi"], colors=color, lw=1.6)
        is_avg = (sub["language"] == "avg").to_numpy()
        ax.scatter(sub["gain"][~is_avg], ypos[~is_avg], c=color[~is_avg], s=18, zorder=3)
        ax.scatter(sub["gain"][is_avg], ypos[is_avg], c=color[is_avg], s=60, marker="D", zorder=3)
        ax.axvline(0, color="black", lw=0.8, ls="--")
        ax.set_yticks(ypos)
        ax.set_yticklabels(labels, fontsize=7)
        ax.set_xlabel("gain over no intermediate (points), 95% paired bootstrap interval")
        ax.set_title(f"{title}: {target}" if title else str(target))
        fig.tight_layout()
        paths.append(_save(fig, figures_dir, f"{prefix}_{target}.png"))
        plt.close(fig)
    return paths
