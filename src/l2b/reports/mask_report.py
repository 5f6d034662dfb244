"""`l2b report` for runs on masks: Dice curves, a table of Dice at the meta-selected checkpoint,
the mask-quality ranking against the known corruption where there is one, and overlays of the
worst-scored training images (image, given mask, prediction) by file."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..tasks import get_task
from .plots import MANIFEST, Run, _colors, _fmt, _previous_report, _save, _sha256

__all__ = ["make_mask_report", "mask_quality"]

DICE_FIGURE = "dice.png"
OVERLAYS = "overlays_{}.png"
# per_example.npz's per-pixel weights (the meta-gradient methods' last epoch) -> the overlay's panel
WEIGHT_MAPS = {"alpha_map": "weight: given mask", "beta_map": "weight: pseudo-mask"}
OVERLAY_SIZE = 8


def mask_quality(run: Run) -> np.ndarray:
    """Each training mask's quality (N,): its Dice against the selected model's prediction."""
    from ..tasks import get_task

    prob = np.asarray(run.per_example["pred_prob"], np.float32)
    return get_task("segmentation").label_quality(prob, np.asarray(run.per_example["given_label"]))[0]


def _corrupted(run: Run) -> np.ndarray | None:
    """(N,) whether each training mask differs from its clean one, or None when nobody knows."""
    clean = np.asarray(run.per_example.get("clean_label", -1))
    given = np.asarray(run.per_example["given_label"])
    if not run.truth_known or clean.shape != given.shape or (clean < 0).any():
        return None
    return (clean != given).reshape(len(given), -1).any(1)


def plot_dice(runs: Sequence[Run], path: Path) -> Path:
    """Meta and test Dice per epoch, one colour per run; with known noise, the share of the wrong
    pixels of the given masks that the model predicts as given (memorised)."""
    panels = [("test_dice", "Test Dice"), ("meta_dice", "Meta Dice (selects the checkpoint)")]
    if any("memorised" in m for r in runs if r.truth_known for m in r.metrics):
        panels.append(("memorised", "Memorised: wrong pixels of the given masks\npredicted as given"))
    fig = Figure(figsize=(5.2 * len(panels), 4.4), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True)
    for ax, (key, title) in zip(axes, panels):
        for r, c in zip(runs, _colors(len(runs))):
            ep = [m["epoch"] for m in r.metrics if key in m]
            ax.plot(ep, [m[key] for m in r.metrics if key in m], color=c, lw=1.6, label=r.label)
            best = r.summary.get("best_meta_epoch")
            at = next((m.get(key) for m in r.metrics if m["epoch"] == best), None)
            if key == "test_dice" and at is not None:
                ax.plot([best], [at], "o", color=c, ms=7, mec="black", mew=0.8)
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), fontsize=9, frameon=False)
    return _save(fig, path)


def _images_of(run: Run, rows: np.ndarray) -> np.ndarray | None:
    """The training images at `rows` of per_example.npz as the model saw them (C, H, W), read
    again from their files; None when the run has no files or one is gone."""
    from ..segmentation.data import read_image, read_volume, volume_slices

    if run.files is None:
        return None
    shape = tuple(run.data_info["example_shape"]) if run.data_info else None
    index = np.asarray(run.per_example["index"])
    out = []
    for j in rows:
        path = run.files.get(int(index[j]))
        if path is None:
            return None
        base, _, part = path.partition("#")
        if not Path(base).is_file():
            return None
        size = shape[1:]
        if part:
            out.append(volume_slices(read_volume(Path(base))[int(part) : int(part) + 1], size)[0])
        else:
            out.append(read_image(base, size, shape[0]))
    return np.stack(out)


def make_mask_report(
    runs: Sequence[Run],
    out: Path,
    *,
    threshold: float | None = None,
    overwrite: bool = False,
    gallery_size: int = OVERLAY_SIZE,
) -> Path:
    """report.md, dice.png and per run overlays_<n>.png in `out` (see :func:`l2b.reports.make_report`
    for how an existing `out` is treated)."""
    from sklearn.metrics import average_precision_score

    from ..segmentation.outputs import mask_stem, overlay_figure

    if threshold is None:
        threshold = get_task("segmentation").issue_threshold
    previous = _previous_report(out, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    written = [plot_dice(runs, out / DICE_FIGURE)]
    lines = [
        "# l2b report: masks",
        "",
        f"{len(runs)} run{'s' if len(runs) != 1 else ''}: " + ", ".join(f"`{r.path}`" for r in runs) + ".",
        "",
        "| run | method | noise | given masks' Dice (realised) | final test Dice | test Dice at best meta "
        "(epoch) | best meta Dice | flagged masks | AP of the ranking | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    overlays = []
    for n, r in enumerate(runs, 1):
        s, quality, corrupted = r.summary, mask_quality(r), _corrupted(r)
        ap = "–"
        if corrupted is not None and 0 < corrupted.sum() < len(corrupted):
            ap = _fmt(float(average_precision_score(corrupted, 1.0 - quality)), 3)
        lines.append(
            f"| {r.label} | {s.get('method', '–')} | {s.get('noise', '–')} | {_fmt(s.get('realised_mask_dice'), 3)} "
            f"| {_fmt(s.get('test_dice'))} | {_fmt(s.get('test_dice_at_best_meta'))} ({s.get('best_meta_epoch', '–')})"
            f" | {_fmt(s.get('best_meta_dice'))} | {int((quality < threshold).sum())} of {len(quality)} | {ap} | "
            f"{_fmt(s.get('seconds'), 1)} |"
        )
        worst = np.argsort(quality, kind="stable")[:gallery_size]
        images = _images_of(r, worst) if len(worst) else None
        if images is not None:
            prob = np.asarray(r.per_example["pred_prob"], np.float32)[worst]
            index = np.asarray(r.per_example["index"])
            titles = [f"{mask_stem(r.files[int(index[j])])} Dice {quality[j]:.2f}" for j in worst]
            pe = r.per_example
            weights = {label: pe[key][worst] for key, label in WEIGHT_MAPS.items() if key in pe}
            p = overlay_figure(
                images,
                pe["given_label"][worst],
                prob.argmax(1),
                out / OVERLAYS.format(n),
                weights=weights,
                titles=titles,
            )
            overlays.append((r, p))
            written.append(p)
    lines += [
        "",
        "Dice per image, averaged over the foreground classes and the images. *given masks' Dice*: under "
        "simulated noise, the training masks' Dice against the clean ones (the noise level; – when the truth is "
        f"unknown). A mask is *flagged* when its Dice against the selected model's prediction is below {threshold:g}"
        " (`l2b relabel` replaces exactly these). *AP*: with known corruption, the average precision of the "
        "ranking by that Dice for finding the corrupted masks.",
        "",
        "## Dice per epoch",
        "",
        "Test and meta Dice per epoch; the dot marks the epoch selected on the meta set.",
        "",
        f"![Dice]({DICE_FIGURE})",
        "",
    ]
    for r, p in overlays:
        lines += [
            f"## Most suspect masks: {r.label}",
            "",
            "The training images whose given mask agrees least with the selected model's prediction: the image, "
            "the given mask over it, the prediction over it"
            + (
                " and, from the last epoch, each pixel's weight on its given mask and on its pseudo-mask (1: the "
                "step's mean weight per pixel; blank: not weighed that epoch)."
                if all(k in r.per_example for k in WEIGHT_MAPS)
                else "."
            ),
            "",
            f"![{r.label}]({p.name})",
            "",
        ]
    if len(overlays) < len(runs):
        lines += ["Overlays are not drawn for runs whose image files are gone or were not recorded.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    written.insert(0, path)
    names = {p.name for p in written}
    for name, digest in previous.items():
        old = out / name
        if name not in names and Path(name).name == name and old.is_file() and _sha256(old) == digest:
            old.unlink()
    (out / MANIFEST).write_text(json.dumps({"files": {p.name: _sha256(p) for p in written}}, indent=1) + "\n")
    return path


def report_kind(runs: Sequence[Run]) -> str:
    """``segmentation`` when every run is on masks, ``classification`` when none is; a mix is refused."""
    tasks: dict[str, Any] = {str((r.data_info or {}).get("task", "classification")) for r in runs}
    if len(tasks) > 1:
        raise ValueError("the runs mix masks and class labels; report them separately")
    return tasks.pop()
