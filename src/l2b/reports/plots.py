"""Figures and a one-page Markdown report comparing finished runs.

Matplotlib is used through its object-oriented API on the Agg canvas (no pyplot, no global
backend switch), so making a report never opens a window or touches the caller's matplotlib state.

:func:`make_report` is the whole thing; each ``plot_*`` function draws one PNG from loaded runs
(:func:`load_run`) and returns its path, or None when no run has what it shows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from ..rundir import CONFIG, METRICS, SUMMARY, read_run_doc
from .issues import detection_scores, label_issues, load_per_example, noise_mask

DPI = 120
IMAGES = {
    "accuracy": "accuracy.png",
    "weights": "weights.png",
    "detection": "detection_pr.png",
    "transition": "transition.png",
}


@dataclass
class Run:
    """A finished run directory, loaded."""

    path: Path
    summary: dict[str, Any]
    metrics: list[dict[str, Any]]
    config: dict[str, Any]
    per_example: dict[str, np.ndarray]
    label: str = ""
    detection: dict[str, Any] | None = field(default=None)

    @property
    def has_weights(self) -> bool:
        a = self.per_example.get("alpha")
        return a is not None and not np.all(np.isnan(a))

    @property
    def warmup_epochs(self) -> int:
        return sum(1 for r in self.metrics if r.get("phase") == "warmup")


def load_run(run_dir: str | Path) -> Run:
    """Read a finished run directory (summary.json, metrics.jsonl, config.yaml, per_example.npz)."""
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
    return Run(run, summary, metrics, config, load_per_example(run))


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


def plot_accuracy(runs: Sequence[Run], path: Path) -> Path:
    """Test and meta accuracy per epoch, one colour per run, warm-up epochs shaded; with known
    noise also the memorised share (mislabelled examples fitted to their wrong label)."""
    panels = [
        ("test_accuracy", "Test accuracy (held-out test split)"),
        ("meta_accuracy", "Meta accuracy (clean meta set, used to select the checkpoint)"),
    ]
    if any("memorised" in m for r in runs for m in r.metrics):
        panels.append(("memorised", "Memorised: mislabelled training examples\npredicted as their wrong given label"))
    fig = Figure(figsize=(5.5 * len(panels), 4.8), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True)
    colors = _colors(len(runs))
    warmups = sorted({r.warmup_epochs for r in runs if r.warmup_epochs})
    for ax, (key, title) in zip(axes, panels):
        for w in warmups:
            ax.axvspan(0.5, w + 0.5, color="0.6", alpha=0.18, lw=0, label=f"warm-up: {w} epochs of plain cross-entropy")
        for r, c in zip(runs, colors):
            ep = [m["epoch"] for m in r.metrics if key in m]
            ax.plot(ep, [m[key] for m in r.metrics if key in m], color=c, lw=1.6, label=r.label)
            best = r.summary.get("best_meta_epoch")
            if key == "test_accuracy" and best:
                at = next((m[key] for m in r.metrics if m["epoch"] == best), None)
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
    """Histograms of the last epoch's alpha and beta on truly clean vs truly mislabelled examples."""
    runs = [r for r in runs if r.has_weights and noise_mask(r.per_example) is not None]
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
    """Precision-recall curves of the label-quality ranking against the known noise mask."""
    from sklearn.metrics import precision_recall_curve

    usable = [
        (r, c)
        for r, c in zip(runs, _colors(len(runs)))
        if (m := noise_mask(r.per_example)) is not None and 0 < m.sum() < len(m)
    ]
    if not usable:
        return None
    fig = Figure(figsize=(7.2, 5.6), layout="constrained")
    ax = fig.subplots()
    rates = []
    for r, c in usable:
        noisy = noise_mask(r.per_example)
        rates.append(noisy.mean())
        t = label_issues(r.per_example, threshold=threshold)
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
    """Heatmap of each distinct noise transition matrix, with its values."""
    mats: list[tuple[np.ndarray, list[str]]] = []
    for r in runs:
        t = r.per_example.get("transition")
        if t is None or np.ndim(t) != 2:
            continue
        t = np.asarray(t, dtype=float)
        for m, names in mats:
            if m.shape == t.shape and np.allclose(m, t):
                names.append(r.label)
                break
        else:
            mats.append((t, [r.label]))
    if not mats:
        return None
    k = mats[0][0].shape[0]
    size = max(4.8, 0.5 * k + 1.8)
    fig = Figure(figsize=(size * len(mats) + 0.8, size + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(mats), squeeze=False)[0])
    for ax, (m, names) in zip(axes, mats):
        r = next(x for x in runs if x.label == names[0])
        im = ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
        kk = m.shape[0]
        if kk <= 20:
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
        ax.set_xticks(range(kk))
        ax.set_yticks(range(kk))
        ax.set_xlabel("given (possibly noisy) label j")
        ax.set_ylabel("true label i")
        noise = r.summary.get("noise", "?")
        rate = r.summary.get("noise_rate")
        head = f"{noise} noise" + (f", rate {rate:g}" if isinstance(rate, (int, float)) else "")
        ax.set_title(f"{head}\nruns: {', '.join(names)}", fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.8, label="P(given label = j | true label = i)")
    fig.suptitle("Noise transition matrix (rows sum to 1)", fontsize=12)
    return _save(fig, path)


def _clean_rate(run: Run) -> float | None:
    """1 - the run's realised noise rate: cross-entropy's share of weight on the true class."""
    rate = run.summary.get("realised_noise_rate")
    return None if rate is None else 1.0 - rate


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def make_report(run_dirs: Sequence[str | Path], out_dir: str | Path, *, threshold: float = 0.5) -> Path:
    """Write the PNGs and ``report.md`` comparing `run_dirs` into `out_dir`; return report.md's path."""
    if not run_dirs:
        raise ValueError("no run directories given")
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold={threshold} must lie in [0, 1]")
    runs = [load_run(d) for d in run_dirs]
    _name_runs(runs)
    for r in runs:
        r.detection = detection_scores(r.per_example, threshold=threshold)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = {
        "accuracy": plot_accuracy(runs, out / IMAGES["accuracy"]),
        "weights": plot_weights(runs, out / IMAGES["weights"]),
        "detection": plot_detection(runs, out / IMAGES["detection"], threshold=threshold),
        "transition": plot_transition(runs, out / IMAGES["transition"]),
    }
    for key, p in images.items():  # a stale image of an earlier report must not be linked by accident
        if p is None and (out / IMAGES[key]).exists():
            (out / IMAGES[key]).unlink()

    lines = [
        "# l2b report",
        "",
        f"{len(runs)} run{'s' if len(runs) != 1 else ''}: " + ", ".join(f"`{r.path}`" for r in runs) + ".",
        "",
        "| run | method | noise | rate | seed | final test acc. | test acc. at best meta (epoch) | "
        "best meta acc. | flagged | precision | recall | F1 | AP | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        s, d = r.summary, r.detection or {}
        rate = s.get("noise_rate")
        realised = s.get("realised_noise_rate")
        rate_txt = (f"{rate:g}" if isinstance(rate, (int, float)) else "–") + (
            f" ({realised:.3f} realised)" if isinstance(realised, float) else ""
        )
        lines.append(
            f"| {r.label} | {s.get('method', '–')} | {s.get('noise', '–')} | {rate_txt} | {s.get('seed', '–')} | "
            f"{_fmt(s.get('test_accuracy'))} | {_fmt(s.get('test_accuracy_at_best_meta'))} "
            f"({s.get('best_meta_epoch', '–')}) | {_fmt(s.get('best_meta_accuracy'))} | "
            f"{d.get('flagged', '–')} | {_fmt(d.get('precision'), 3)} | {_fmt(d.get('recall'), 3)} | "
            f"{_fmt(d.get('f1'), 3)} | {_fmt(d.get('average_precision'), 3)} | {_fmt(s.get('seconds'), 1)} |"
        )
    lines += [
        "",
        "Accuracies are fractions of the held-out test split (final epoch, and the checkpoint selected on the "
        "clean meta set) and of the clean meta set. Detection scores compare the examples flagged as label "
        "issues with the known noise mask (given label ≠ true label; the noise is synthetic): *precision* is "
        "the share of flagged examples that are truly mislabelled, *recall* the share of truly mislabelled "
        f"examples flagged, *AP* the average precision of the whole ranking. An example is flagged when the "
        f"meta-selected model gives its given label a probability below {threshold:g} and predicts another "
        "class (`l2b relabel` moves exactly these to the predicted class). *seconds*: wall time of the run.",
        "",
    ]
    if any("memorised" in r.summary for r in runs):
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
            for r in runs
        ]
        lines.append("")
    signal = [(r, r.metrics[-1]) for r in runs if r.metrics and "true_class_share" in r.metrics[-1]]
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
    captions = {
        "accuracy": "Test and meta accuracy per epoch; the dot marks the epoch selected on the meta set, the "
        "grey band the warm-up epochs. With known noise, the third panel is the share of mislabelled training "
        "examples the model predicts as their wrong given label: a rising curve is the network memorising the "
        "noise.",
        "weights": "Last-epoch weights (scaled so uniform weighting = 1) on truly clean and truly mislabelled "
        "examples, for runs with weights.",
        "detection": "Precision-recall curve of the label-quality ranking against the noise mask; the dot is "
        "the set of flagged examples.",
        "transition": "The noise generator's transition matrix.",
    }
    titles = {"accuracy": "Accuracy", "weights": "Weights", "detection": "Label-issue detection", "transition": "Noise"}
    for key, p in images.items():
        if p is None:
            continue
        lines += [f"## {titles[key]}", "", captions[key], "", f"![{titles[key]}]({p.name})", ""]
    missing = [titles[k] for k, p in images.items() if p is None]
    if missing:
        lines += [f"Not drawn (no run has the data): {', '.join(missing)}.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
