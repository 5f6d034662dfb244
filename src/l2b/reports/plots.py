"""Figures and a one-page Markdown report comparing finished runs.

Matplotlib is used through its object-oriented API on the Agg canvas (no pyplot, no global
backend switch), so making a report never opens a window or touches the caller's matplotlib state.

:func:`make_report` is the whole thing; each ``plot_*`` function draws one PNG from loaded runs
(:func:`load_run`) and returns its path, or None when no run has what it shows.

Real use first: a run on the user's own data has no known truth (``data.json`` says
``truth_known: false``, or ``clean_label`` is -1), and nothing that needs the true labels is drawn
or printed for it; the report says so in one line instead. Classes are shown by the names in the
run's ``data.json`` (indices for older runs), and runs on image files get a gallery of their most
suspect training images (paths from ``files.csv``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from ..rundir import CONFIG, DATA_INFO, METRICS, PER_EXAMPLE, SUMMARY, read_data_info, read_files, read_run_doc
from ..tasks import get_task
from .issues import detection_scores, label_issues, load_per_example, noise_mask

DPI = 120
IMAGES = {
    "accuracy": "accuracy.png",
    "weights": "weights.png",
    "detection": "detection_pr.png",
    "transition": "transition.png",
}
GALLERY = "gallery_{}.png"  # one per run on image files, numbered by the run's position
GALLERY_SIZE = 24
MANIFEST = ".l2b-report.json"  # what the last report wrote here: name -> sha256
TICK_LIMIT = 20  # more classes than this: no class names on the transition matrix's axes
# The figures that compare against the true labels: drawn only for runs whose truth is known.
TRUTH_FIGURES = ("weights", "detection", "transition")


@dataclass
class Run:
    """A finished run directory, loaded.

    ``data_info`` is its data.json and ``files`` its files.csv (index -> image path), each None for
    runs that lack them; ``class_names`` holds one name per class (indices as strings without
    data.json); ``issues`` is the :func:`~l2b.reports.issues.label_issues` table at the report's
    threshold, filled in by :func:`make_report`.
    """

    path: Path
    summary: dict[str, Any]
    metrics: list[dict[str, Any]]
    config: dict[str, Any]
    per_example: dict[str, np.ndarray]
    label: str = ""
    detection: dict[str, Any] | None = field(default=None)
    data_info: dict[str, Any] | None = None
    files: dict[int, str] | None = None
    class_names: list[str] = field(default_factory=list)
    issues: dict[str, np.ndarray] | None = None

    @property
    def has_weights(self) -> bool:
        a = self.per_example.get("alpha")
        return a is not None and not np.all(np.isnan(a))

    @property
    def warmup_epochs(self) -> int:
        return sum(1 for r in self.metrics if r.get("phase") == "warmup")

    @property
    def truth_known(self) -> bool:
        """Whether the true training labels are known (synthetic noise on a labelled set): data.json
        must not deny it and per_example.npz must hold a full ``clean_label``. Either one saying no is
        enough, so a run whose clean_label merely repeats the given labels is not taken for truth."""
        if self.data_info is not None and not self.data_info.get("truth_known", True):
            return False
        return noise_mask(self.per_example) is not None

    @property
    def names(self) -> list[str]:
        """One display name per class, in label order."""
        if self.class_names:
            return self.class_names
        return [str(i) for i in range(np.shape(self.per_example["pred_prob"])[1])]


def load_run(run_dir: str | Path) -> Run:
    """Read a finished run directory (summary.json, metrics.jsonl, config.yaml, per_example.npz, and
    data.json and files.csv where the run has them)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run directory {run} not found")
    for name in (SUMMARY, METRICS):
        if not (run / name).is_file():
            raise FileNotFoundError(f"{run / name} not found: {run} is not a finished l2b run")
    try:
        summary = json.loads((run / SUMMARY).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{run / SUMMARY} is not valid JSON: {err}") from None
    metrics = []
    for n, line in enumerate((run / METRICS).read_text().splitlines(), 1):
        if line.strip():
            try:
                metrics.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{run / METRICS} line {n} is not valid JSON: {err}") from None
    config: dict[str, Any] = {}
    if (run / CONFIG).is_file():
        config = read_run_doc(run)["config"]
    per_example = load_per_example(run)
    info = read_data_info(run)
    k = int(np.shape(per_example["pred_prob"])[1])
    names = [str(i) for i in range(k)]
    if info is not None:
        names = [str(n) for n in info["class_names"]]
        if len(names) != k:  # a mismatch would put every name on the wrong class
            raise ValueError(
                f"{run / DATA_INFO} lists {len(names)} class names but {run / PER_EXAMPLE} has "
                f"probabilities for {k} classes: the two files are not from the same run"
            )
    return Run(run, summary, metrics, config, per_example, data_info=info, files=read_files(run), class_names=names)


def _name_runs(runs: Sequence[Run]) -> None:
    base = [f"{r.summary.get('method', '?')} seed {r.summary.get('seed', '?')}" for r in runs]
    for r, b in zip(runs, base):
        r.label = b if base.count(b) == 1 else f"{b} ({r.path.name})"


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=DPI)
    return path


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def plot_accuracy(runs: Sequence[Run], path: Path) -> Path | None:
    """Test and meta accuracy per epoch, one colour per run, warm-up epochs shaded; with known
    noise also the memorised share (mislabelled examples fitted to their wrong label), for the runs whose
    truth is known. A panel only where some run has its figure (no checked test set: no test
    panel); None when none has any."""
    panels = [
        ("test_accuracy", "Test accuracy (held-out test split)"),
        ("meta_accuracy", "Meta accuracy (clean meta set, used to select the checkpoint)"),
    ]
    if any("memorised" in m for r in runs if r.truth_known for m in r.metrics):
        panels.append(("memorised", "Memorised: mislabelled training examples\npredicted as their wrong given label"))
    panels = [(key, title) for key, title in panels if any(m.get(key) is not None for r in runs for m in r.metrics)]
    if not panels:
        return None
    fig = Figure(figsize=(5.5 * len(panels), 4.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
    colors = _colors(len(runs))
    warmups = sorted({r.warmup_epochs for r in runs if r.warmup_epochs})
    for ax, (key, title) in zip(axes, panels):
        for w in warmups:
            ax.axvspan(0.5, w + 0.5, color="0.6", alpha=0.18, lw=0, label=f"warm-up: {w} epochs of plain cross-entropy")
        for r, c in zip(runs, colors):
            if key == "memorised" and not r.truth_known:
                continue
            ep = [m["epoch"] for m in r.metrics if key in m]
            ax.plot(ep, [m[key] for m in r.metrics if key in m], color=c, lw=1.6, label=r.label)
            best = r.summary.get("best_meta_epoch")
            if key == "test_accuracy" and best:
                at = next((m.get(key) for m in r.metrics if m["epoch"] == best), None)  # None: no test set
                if at is not None:
                    ax.plot([best], [at], "o", color=c, ms=7, mec="black", mew=0.8)
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[0].plot([], [], "o", color="white", mec="black", mew=0.8, label="epoch selected on the meta set")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), fontsize=9, frameon=False)
    fig.suptitle(
        "Accuracy per epoch (runs with the same seed share the warm-up, so their curves overlap there)", fontsize=11.5
    )
    return _save(fig, path)


def plot_weights(runs: Sequence[Run], path: Path) -> Path | None:
    """Histograms of the last epoch's alpha and beta on truly clean vs truly mislabelled examples
    (runs with weights whose truth is known)."""
    runs = [r for r in runs if r.has_weights and r.truth_known]
    if not runs:
        return None
    fig = Figure(figsize=(11, 3.4 * len(runs) + 0.6), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(runs), 2, squeeze=False))
    what = {"alpha": "α, weight on the given label", "beta": "β, weight on the model's pseudo-label"}
    for row, r in zip(axes, runs):
        noisy = noise_mask(r.per_example)
        for ax, key in zip(row, ("alpha", "beta")):
            v = np.asarray(r.per_example[key], dtype=float)
            finite = np.isfinite(v)
            hi = float(np.percentile(v[finite], 99)) if finite.any() else 1.0
            hi = max(hi, 1.5)
            bins = np.linspace(0.0, hi, 41)
            beyond = int((v[finite] > hi).sum())
            for mask, name, color in ((~noisy, "truly clean", "tab:blue"), (noisy, "truly mislabelled", "tab:red")):
                x = v[mask & finite]
                if len(x):
                    ax.hist(
                        np.clip(x, 0, hi),
                        bins=bins,
                        weights=np.full(len(x), 1.0 / len(x)),
                        histtype="stepfilled",
                        alpha=0.35,
                        color=color,
                        ec=color,
                        lw=1.2,
                        label=f"{name} examples: n={len(x)}, mean {x.mean():.2f}",
                    )
            ax.axvline(1.0, color="black", ls=":", lw=1, label="1 = uniform weighting")
            ax.set_title(f"{r.label}: {what[key]} (last epoch)", fontsize=10.5)
            ax.set_xlabel(
                f"{'α' if key == 'alpha' else 'β'} × batch size"
                + (f"   ({beyond} values above {hi:.1f} in the last bin)" if beyond else "")
            )
            ax.set_ylabel("fraction of the group")
            ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8.5)
    fig.suptitle("Per-example weights of the last epoch, split by whether the given label is truly wrong", fontsize=12)
    return _save(fig, path)


def plot_detection(runs: Sequence[Run], path: Path, *, threshold: float = 0.5) -> Path | None:
    """Precision-recall curves of the label-quality ranking against the known noise mask (runs whose
    truth is known and holds both clean and mislabelled examples)."""
    from sklearn.metrics import precision_recall_curve

    usable = [
        (r, c)
        for r, c in zip(runs, _colors(len(runs)))
        if r.truth_known and 0 < (m := noise_mask(r.per_example)).sum() < len(m)
    ]
    if not usable:
        return None
    fig = Figure(figsize=(7.2, 5.6), layout="constrained")
    ax = fig.subplots()
    rates = []
    for r, c in usable:
        noisy = noise_mask(r.per_example)
        rates.append(noisy.mean())
        t = r.issues if r.issues is not None else label_issues(r.per_example, threshold=threshold)
        order = np.argsort(np.asarray(r.per_example["index"]), kind="stable")
        pos = np.searchsorted(np.asarray(r.per_example["index"])[order], t["index"])
        y = noisy[order][pos]
        prec, rec, _ = precision_recall_curve(y, 1.0 - t["label_quality"])
        d = r.detection or detection_scores(r.per_example, threshold=threshold)
        ax.plot(rec, prec, color=c, lw=1.8, label=f"{r.label} (average precision {d['average_precision']:.3f})")
        if d["flagged"]:
            ax.plot([d["recall"]], [d["precision"]], "o", color=c, ms=8, mec="black", mew=0.8)
    ax.plot(
        [],
        [],
        "o",
        color="white",
        mec="black",
        mew=0.8,
        label=f"flagged examples (quality < {threshold:g}, another class predicted)",
    )
    for rate in sorted(set(round(x, 3) for x in rates)):
        ax.axhline(rate, color="0.4", ls=":", lw=1)
    ax.plot([], [], color="0.4", ls=":", lw=1, label="random ranking (precision = noise rate)")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall: share of the truly mislabelled examples found")
    ax.set_ylabel("precision: share of the ranked-first examples truly mislabelled")
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8.5)
    ax.set_title(
        "Finding mislabelled training examples\n(ranked by label quality = P(given label), lowest first)", fontsize=11
    )
    return _save(fig, path)


def plot_transition(runs: Sequence[Run], path: Path) -> Path | None:
    """Heatmap of each distinct noise transition matrix, with its values and the class names on its
    axes (up to :data:`TICK_LIMIT` classes); only runs whose truth is known."""
    mats: list[tuple[np.ndarray, list[str], list[str]]] = []
    for r in runs:
        t = r.per_example.get("transition")
        if not r.truth_known or t is None or np.ndim(t) != 2:
            continue
        t = np.asarray(t, dtype=float)
        classes = r.names if len(r.names) == t.shape[0] else [str(i) for i in range(t.shape[0])]
        for m, names, cls in mats:
            if m.shape == t.shape and np.allclose(m, t) and cls == classes:
                names.append(r.label)
                break
        else:
            mats.append((t, [r.label], classes))
    if not mats:
        return None
    k = mats[0][0].shape[0]
    size = max(4.8, 0.5 * min(k, TICK_LIMIT) + 1.8) + (1.2 if k <= TICK_LIMIT else 0.0)  # room for the names
    fig = Figure(figsize=(size * len(mats) + 0.8, size + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(mats), squeeze=False)[0])
    for ax, (m, names, classes) in zip(axes, mats):
        r = next(x for x in runs if x.label == names[0])
        im = ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
        kk = m.shape[0]
        if kk <= TICK_LIMIT:
            for i in range(kk):
                for j in range(kk):
                    ax.text(
                        j,
                        i,
                        f"{m[i, j]:.{3 if kk <= 10 else 2}f}",
                        ha="center",
                        va="center",
                        fontsize=7.5 if kk <= 10 else 5.5,
                        color="white" if m[i, j] > 0.5 else "black",
                    )
            short = [_shorten(c, 18) for c in classes]
            font = 8.5 if kk <= 10 else 6.5
            ax.set_xticks(range(kk), short, rotation=45, ha="right", rotation_mode="anchor", fontsize=font)
            ax.set_yticks(range(kk), short, fontsize=font)
            ax.set_xlabel("given (possibly noisy) label")
            ax.set_ylabel("true label")
        else:  # unreadable names and values: the colours alone, and say why the axes are bare
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"given (possibly noisy) label: {kk} classes in label order (names left out)")
            ax.set_ylabel("true label")
        noise = r.summary.get("noise", "?")
        rate = r.summary.get("noise_rate")
        head = f"{noise} noise" + (f", rate {rate:g}" if isinstance(rate, (int, float)) else "")
        ax.set_title(f"{head}\nruns: {', '.join(names)}", fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.8, label="P(given label | true label)")
    fig.suptitle("Noise transition matrix (rows sum to 1)", fontsize=12)
    return _save(fig, path)


def _shorten(text: str, width: int) -> str:
    """`text` cut to `width` characters, keeping its head and tail (file names end in what tells
    them apart: a number and the extension)."""
    if len(text) <= width:
        return text
    tail = max(4, width // 3)
    return text[: width - tail - 1] + "…" + text[-tail:]


def _clean_rate(run: Run) -> float | None:
    """1 - the run's realised noise rate: cross-entropy's share of weight on the true class."""
    rate = run.summary.get("realised_noise_rate")
    return None if rate is None else 1.0 - rate


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


# -- the gallery of suspect images ------------------------------------------------------------


def _thumbnail(path: str | None, size: int) -> tuple[np.ndarray | None, str]:
    """A file as an RGB thumbnail no larger than `size` (uint8, H×W×3) and "", or None and why not:
    "missing" (no such file, or no path recorded) or "unreadable" (it no longer decodes)."""
    if path is None or not os.path.isfile(path):
        return None, "missing"
    from PIL import Image, ImageOps

    from ..data.files import to_rgb  # the conversion training used: 16-bit, alpha, palette alike

    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                im.draft("RGB", (size, size))  # decode at 1/2..1/8 scale: far faster for large photos
            # shown upright, as an image viewer shows the file
            img = to_rgb(ImageOps.exif_transpose(im), path)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        return None, "unreadable"  # the report goes on: one bad file must not cost the whole page
    img.thumbnail((size, size))
    return np.asarray(img), ""


def suspect_images(run: Run, issues: dict[str, np.ndarray], *, limit: int = GALLERY_SIZE) -> list[dict[str, Any]]:
    """The run's flagged training examples on image files, most suspect (lowest label quality)
    first, at most `limit`, with their thumbnails.

    Parameters
    ----------
    run : a loaded run with ``files`` (its files.csv); without, the list is empty.
    issues : its :func:`~l2b.reports.issues.label_issues` table (rows sorted by label quality).

    Returns
    -------
    One dict per example: ``index``, ``path`` (None when files.csv lacks the index), ``given`` and
    ``suggested`` (class names), ``quality`` (float), ``image`` (uint8 H×W×3 thumbnail or None) and
    ``status`` ("" when decoded, else "missing" or "unreadable").
    """
    if run.files is None or limit <= 0:
        return []
    names = run.names
    rows = []
    for pos in np.flatnonzero(issues["is_label_issue"])[:limit]:
        index = int(issues["index"][pos])
        path = run.files.get(index)
        image, status = _thumbnail(path, 160)
        rows.append(
            {
                "index": index,
                "path": path,
                "given": names[int(issues["given_label"][pos])],
                "suggested": names[int(issues["predicted_label"][pos])],
                "quality": float(issues["label_quality"][pos]),
                "image": image,
                "status": status,
            }
        )
    return rows


def plot_gallery(run: Run, rows: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """A grid of the :func:`suspect_images` rows, each titled "given → suggested", its label quality
    and its file name; a file that cannot be shown is a grey box saying why. None without rows."""
    if not rows:
        return None
    ncols = min(6, len(rows))
    nrows = math.ceil(len(rows) / ncols)
    fig = Figure(figsize=(2.25 * ncols + 0.2, 2.6 * nrows + 0.7), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, row in zip(axes, rows):
        if row["image"] is None:
            ax.set_facecolor("0.9")
            ax.text(0.5, 0.5, row["status"], ha="center", va="center", fontsize=11, color="0.35")
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            ax.imshow(row["image"])
            ax.set_axis_off()
        name = os.path.basename(row["path"]) if row["path"] else f"index {row['index']}"
        ax.set_title(
            f"{_shorten(row['given'], 14)} → {_shorten(row['suggested'], 14)}\n"
            f"quality {row['quality']:.3f}\n{_shorten(name, 26)}",
            fontsize=7.5,
        )
    for ax in axes[len(rows) :]:
        ax.set_axis_off()
    fig.suptitle(
        f"{run.label}: the {len(rows)} most suspect training images\n"
        "(given label → suggested label, label quality = P(given label), file)",
        fontsize=11,
    )
    return _save(fig, path)


def _md(text: Any) -> str:
    """`text` as literal Markdown table-cell text (class names and paths are the user's own)."""
    return re.sub(r"([\\`*_\[\]<>|#])", r"\\\1", str(text)).replace("\n", " ")


def _md_path(path: str) -> str:
    if "`" in path:
        return _md(path)
    return "`" + path.replace("|", "\\|") + "`"  # GitHub tables need the pipe escaped even in code


def _gallery_lines(run: Run, rows: Sequence[dict[str, Any]], image: str, *, threshold: float) -> list[str]:
    flagged = int(run.issues["is_label_issue"].sum()) if run.issues is not None else len(rows)
    lines = [
        f"## Suspect training images: {run.label}",
        "",
        f"The {len(rows)} flagged training images of {run.label} with the lowest label quality (of {flagged} "
        f"flagged: the selected model gives the given label a probability below {threshold:g} and predicts "
        "another class), most suspect first. Each is titled with its given label → the suggested label, its "
        "label quality (the probability of the given label) and its file name; a grey box marks a file that "
        "is missing or no longer decodes. Check these first: each is either a wrong label or a hard image.",
        "",
        f"![Suspect training images of {run.label}]({image})",
        "",
        "| # | index | file | given label | suggested label | label quality |",
        "|---|---|---|---|---|---|",
    ]
    for n, row in enumerate(rows, 1):
        file = _md_path(row["path"]) if row["path"] else "– (not in files.csv)"
        if row["path"] and row["status"]:
            file += f" ({row['status']})"
        lines.append(
            f"| {n} | {row['index']} | {file} | {_md(row['given'])} | {_md(row['suggested'])} | {row['quality']:.4f} |"
        )
    return [*lines, ""]


def _per_class_lines(runs: Sequence[Run], *, threshold: float, max_rows: int = 30) -> list[str]:
    """A table per distinct list of class names: each class's flagged examples out of those given it,
    one column per run."""
    groups: dict[tuple[str, ...], list[Run]] = {}
    for r in runs:
        groups.setdefault(tuple(r.names), []).append(r)
    lines = [
        "## Label issues per class",
        "",
        f"Flagged examples (threshold {threshold:g}) of those given each label, per run.",
        "",
    ]
    for names, group in groups.items():
        k = len(names)
        counts = []
        for r in group:
            t = r.issues
            given = np.bincount(t["given_label"], minlength=k)
            flagged = np.bincount(t["given_label"][t["is_label_issue"]], minlength=k)
            counts.append((given, flagged))
        rows = np.arange(k)
        if k > max_rows:  # the classes with the most flags, so the table stays a page
            total = sum(f for _, f in counts)
            rows = np.argsort(-total, kind="stable")[:max_rows]
            lines += [f"The {max_rows} of {k} classes with the most flagged examples:", ""]
        lines += [
            "| class | " + " | ".join(r.label for r in group) + " |",
            "|---|" + "---|" * len(group),
        ]
        lines += [f"| {_md(names[c])} | " + " | ".join(f"{f[c]} of {g[c]}" for g, f in counts) + " |" for c in rows]
        lines.append("")
    return lines


# -- the output directory ---------------------------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _previous_report(out: Path, *, overwrite: bool) -> dict[str, str]:
    """The files an earlier report wrote in `out` (name -> sha256, from its manifest), after making
    sure that writing a report there destroys nothing else.

    Raises FileExistsError when `out` is not a directory, or (without `overwrite`) holds anything
    that no earlier report wrote there, or that was changed since."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"report output {out} exists and is not a directory: choose another with --out NEW_DIR")
    if not out.is_dir():
        return {}
    try:
        previous = json.loads((out / MANIFEST).read_text())["files"]
        previous = {str(k): str(v) for k, v in previous.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        previous = {}
    foreign = sorted(
        p.name
        for p in out.iterdir()
        if p.name != MANIFEST and not (p.name in previous and p.is_file() and _sha256(p) == previous[p.name])
    )
    if foreign and not overwrite:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise FileExistsError(
            f"report directory {out} already holds files that no earlier `l2b report` wrote there, or that were "
            f"changed since ({shown}); write the report to another directory with --out NEW_DIR, or overwrite "
            "the report's files there with --force (other files are left alone)"
        )
    return previous


def make_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    threshold: float | None = None,
    overwrite: bool = False,
    gallery_size: int = GALLERY_SIZE,
) -> Path:
    """Write the PNGs and ``report.md`` comparing `run_dirs` into `out_dir`; return report.md's path.

    `out_dir` may be new, empty, or hold an earlier report (whose files, listed in its hidden
    manifest ``.l2b-report.json``, are replaced; its figures this report does not draw are removed).
    Anything else in it is refused with FileExistsError unless `overwrite`, which writes the
    report's files over whatever is there and leaves the other files alone. `gallery_size`: the
    most suspect images shown per run on image files (0: no gallery). Runs on masks get their own
    report (:func:`l2b.reports.mask_report.make_mask_report`; `threshold` on a mask's Dice against
    the prediction, default 0.8; classification's default 0.5).
    """
    from .mask_report import make_mask_report, report_kind

    if not run_dirs:
        raise ValueError("no run directories given")
    if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold={threshold} must lie in [0, 1]")
    runs = [load_run(d) for d in run_dirs]
    _name_runs(runs)
    if report_kind(runs) == "segmentation":
        return make_mask_report(runs, Path(out_dir), threshold=threshold, overwrite=overwrite)
    threshold = get_task("classification").issue_threshold if threshold is None else threshold
    for r in runs:
        r.issues = label_issues(r.per_example, threshold=threshold)
        r.detection = detection_scores(r.per_example, threshold=threshold) if r.truth_known else None
    out = Path(out_dir)
    previous = _previous_report(out, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    images = {
        "accuracy": plot_accuracy(runs, out / IMAGES["accuracy"]),
        "weights": plot_weights(runs, out / IMAGES["weights"]),
        "detection": plot_detection(runs, out / IMAGES["detection"], threshold=threshold),
        "transition": plot_transition(runs, out / IMAGES["transition"]),
    }
    galleries: list[tuple[Run, list[dict[str, Any]], Path]] = []
    for n, r in enumerate(runs, 1):
        rows = suspect_images(r, r.issues, limit=gallery_size)
        p = plot_gallery(r, rows, out / GALLERY.format(n))
        if p is not None:
            galleries.append((r, rows, p))
    any_truth = any(r.truth_known for r in runs)
    unknown = [r for r in runs if not r.truth_known]

    lines = [
        "# l2b report",
        "",
        f"{len(runs)} run{'s' if len(runs) != 1 else ''}: " + ", ".join(f"`{r.path}`" for r in runs) + ".",
        "",
    ]
    datasets = sorted({str(r.summary.get("data")) for r in runs})
    if len(datasets) > 1:  # one table, but not one comparison
        lines += [
            f"**These runs are on different data sets ({', '.join(datasets)}): their accuracies and detection "
            "scores are not comparable across data sets.**",
            "",
        ]
    # Detection scores need the true labels: without any run that has them the columns go.
    head = (
        "| run | method | noise | rate | seed | final test acc. | test acc. at best meta (epoch) | "
        "best meta acc. | flagged |"
    )
    lines += [
        head + (" precision | recall | F1 | AP |" if any_truth else "") + " seconds |",
        "|---" * (head.count("|") - 1 + (4 if any_truth else 0) + 1) + "|",
    ]
    for r in runs:
        s, d = r.summary, r.detection or {}
        rate = s.get("noise_rate")
        realised = s.get("realised_noise_rate") if r.truth_known else None
        rate_txt = (f"{rate:g}" if isinstance(rate, (int, float)) else "–") + (
            f" ({realised:.3f} realised)" if isinstance(realised, float) else ""
        )
        detection = (
            f" {_fmt(d.get('precision'), 3)} | {_fmt(d.get('recall'), 3)} | {_fmt(d.get('f1'), 3)} | "
            f"{_fmt(d.get('average_precision'), 3)} |"
            if any_truth
            else ""
        )
        lines.append(
            f"| {r.label} | {s.get('method', '–')} | {s.get('noise', '–')} | {rate_txt} | {s.get('seed', '–')} | "
            f"{_fmt(s.get('test_accuracy'))} | {_fmt(s.get('test_accuracy_at_best_meta'))} "
            f"({s.get('best_meta_epoch', '–')}) | {_fmt(s.get('best_meta_accuracy'))} | "
            f"{int(r.issues['is_label_issue'].sum())} |{detection} {_fmt(s.get('seconds'), 1)} |"
        )
    lines += [
        "",
        (
            "Accuracies are fractions of the held-out test split (final epoch, and the checkpoint selected on the "
            "clean meta set) and of the clean meta set."
            if any(r.summary.get("test_accuracy") is not None for r in runs)
            else "No run has a checked test set (give one with `--trusted-test`), so no test accuracy is shown; "
            "meta accuracies are fractions of the clean meta set."
        )
        + " An example is *flagged* as a label issue when the "
        f"meta-selected model gives its given label a probability below {threshold:g} and predicts another "
        "class (`l2b relabel` moves exactly these to the predicted class). *seconds*: wall time of the run."
        + (
            " Detection scores compare the flagged examples with the known noise mask (given label ≠ true "
            "label; the noise is synthetic): *precision* is the share of flagged examples that are truly "
            "mislabelled, *recall* the share of truly mislabelled examples flagged, *AP* the average precision "
            "of the whole ranking."
            if any_truth
            else ""
        ),
        "",
    ]
    if unknown:  # real use: the user's own labels, no truth to score anything against
        who = ", ".join(r.label for r in unknown)
        lines += [
            f"True labels unknown for {who} (nothing to check the given labels against): detection scores, the "
            "weights of clean vs mislabelled examples, the memorised share, where the loss weight went and the "
            f"noise transition matrix are not shown for {'it' if len(unknown) == 1 else 'them'}.",
            "",
        ]
    memorised = [r for r in runs if r.truth_known and "memorised" in r.summary]
    if memorised:
        lines += [
            "Fit to the given labels, last epoch: *train acc.* on the given (noisy) training labels; of the "
            "mislabelled training examples, the share *memorised* (predicted as their wrong given label) and the "
            "share predicted as their true class. *peak test acc.*: the best epoch's test accuracy, for seeing "
            "whether a run fell from its peak as it fitted the noise (nothing is selected on it).",
            "",
        ]
        lines += [
            f"- {r.label}: train acc. {_fmt(r.summary.get('train_accuracy'), 3)}, memorised "
            f"{_fmt(r.summary.get('memorised'), 3)}, mislabelled predicted correctly "
            f"{_fmt(r.summary.get('noisy_correct'), 3)}; peak test acc. {_fmt(r.summary.get('peak_test_accuracy'))}, "
            f"final {_fmt(r.summary.get('test_accuracy'))}"
            for r in memorised
        ]
        lines.append("")
    signal = [(r, r.metrics[-1]) for r in runs if r.truth_known and r.metrics and "true_class_share" in r.metrics[-1]]
    if signal:
        lines += [
            "Where the loss weight went, last epoch (runs with weights and known noise): the share of the "
            "weight (α + β) whose target is the true class (α where the given label is right, β where the "
            "pseudo-label is), against cross-entropy's 1 − noise rate; the share on mislabelled examples, "
            "against the noise rate; the share moved to mislabelled examples' right pseudo-labels; and the "
            "share on mislabelled examples' given labels (α there: what teaches the wrong labels), against "
            "the noise rate. Less weight on mislabelled examples is *selection*; weight on their right "
            "pseudo-labels is *relabelling*; weight moved from the wrong labels to the network's own wrong "
            "guesses is neither (self-training); if no share moves, a gain is regularisation.",
            "",
        ]
        lines += [
            f"- {r.label}: on the true class {_fmt(m['true_class_share'], 3)} "
            f"(cross-entropy {_fmt(_clean_rate(r), 3)}), on mislabelled examples {_fmt(m['weight_on_noisy'], 3)}, "
            f"relabelled {_fmt(m['relabelled_share'], 3)}, on the wrong given labels "
            f"{_fmt(m.get('wrong_label_share'), 3)} (cross-entropy {_fmt(r.summary.get('realised_noise_rate'), 3)})"
            for r, m in signal
        ]
        lines.append("")
    many = max((len(r.names) for r in runs if r.truth_known), default=0) > TICK_LIMIT
    captions = {
        "accuracy": "Test and meta accuracy per epoch; the dot marks the epoch selected on the meta set, the "
        "grey band the warm-up epochs. With known noise, the third panel is the share of mislabelled training "
        "examples the model predicts as their wrong given label: a rising curve is the network memorising the "
        "noise.",
        "weights": "Last-epoch weights (scaled so uniform weighting = 1) on truly clean and truly mislabelled "
        "examples, for runs with weights.",
        "detection": "Precision-recall curve of the label-quality ranking against the noise mask; the dot is "
        "the set of flagged examples.",
        "transition": "The noise generator's transition matrix, classes by name"
        + (
            f" (with more than {TICK_LIMIT} classes the names are left off the axes; rows and columns "
            "are in label order)."
            if many
            else "."
        ),
    }
    titles = {"accuracy": "Accuracy", "weights": "Weights", "detection": "Label-issue detection", "transition": "Noise"}
    for key, p in images.items():
        if p is None:
            continue
        lines += [f"## {titles[key]}", "", captions[key], "", f"![{titles[key]}]({p.name})", ""]
    lines += _per_class_lines(runs, threshold=threshold)
    for r, rows, p in galleries:
        lines += _gallery_lines(r, rows, p.name, threshold=threshold)
    # figures that need the truth are explained by the line above when no run has it
    missing = [titles[k] for k, p in images.items() if p is None and (any_truth or k not in TRUTH_FIGURES)]
    if not any(r.files is not None for r in runs):
        missing.append("suspect images (no run was trained on image files)")
    if missing:
        lines += [f"Not drawn (no run has the data): {', '.join(missing)}.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))

    written = [path, *(p for p in images.values() if p is not None), *(p for _, _, p in galleries)]
    names = {p.name for p in written}
    for name, digest in previous.items():  # the earlier report's figures this one did not draw
        old = out / name
        if name not in names and Path(name).name == name and old.is_file() and _sha256(old) == digest:
            old.unlink()
    manifest = {"files": {p.name: _sha256(p) for p in written}}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return path
