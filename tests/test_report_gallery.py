"""`l2b report` on hand-built run directories: class names from data.json, the gallery of suspect
images from files.csv (a missing or corrupt file is a placeholder), nothing that needs the true
labels for a run whose truth is unknown, and no silent overwriting of the output directory.

The run directories are written by hand (a few arrays, tiny PNGs in tmp_path): no training, so
the tests stay fast and do not depend on how a training run records its truth."""

import json

import numpy as np
import pytest

from l2b import rundir
from l2b.cli import main
from l2b.reports import plots

NAMES = ["cat", "dog", "bird|wing"]  # a pipe, to check that Markdown tables escape it

# 8 examples, 3 classes. Flagged (quality < 0.5, another class predicted), most suspect first:
# index 5 (0.05), 3 (0.10), 7 (0.20), 1 (0.30); the others are confident in their given label.
PROB = np.array(
    [
        [0.90, 0.05, 0.05],
        [0.30, 0.60, 0.10],
        [0.10, 0.80, 0.10],
        [0.10, 0.10, 0.80],
        [0.10, 0.10, 0.80],
        [0.90, 0.05, 0.05],
        [0.05, 0.05, 0.90],
        [0.70, 0.20, 0.10],
    ]
)
GIVEN = np.array([0, 0, 1, 1, 2, 2, 2, 1])


def write_run(
    path,
    *,
    truth: str = "known",
    names=NAMES,
    images: bool = True,
    method: str = "l2b",
):
    """A finished run directory. truth: "known" (clean labels, data.json truth_known true), "unknown"
    (clean_label all -1, truth_known false) or "denied" (a full clean_label, but data.json says
    truth_known false). The truth-unknown ones still carry truth-only keys in summary.json and
    metrics.jsonl, so that the report must leave them out by itself. images: files.csv and PNG files,
    of which index 3's is missing and index 7's is not an image."""
    path.mkdir(parents=True)
    clean = np.array([0, 1, 1, 2, 2, 0, 2, 0]) if truth != "unknown" else np.full(8, -1)
    rng = np.random.default_rng(0)
    np.savez(
        path / rundir.PER_EXAMPLE,
        index=np.arange(8),
        given_label=GIVEN,
        clean_label=clean,
        pred_prob=PROB,
        alpha=rng.uniform(0, 2, 8),
        beta=rng.uniform(0, 2, 8),
        alpha_mean=rng.uniform(0, 1, 8),
        beta_mean=rng.uniform(0, 1, 8),
        transition=np.eye(3) * 0.7 + 0.1,
    )
    summary = {
        "method": method,
        "noise": "symmetric",
        "noise_rate": 0.4,
        "realised_noise_rate": 0.375,
        "seed": 0,
        "test_accuracy": 0.8,
        "best_meta_epoch": 2,
        "best_meta_accuracy": 0.9,
        "test_accuracy_at_best_meta": 0.8,
        "peak_test_accuracy": 0.8,
        "seconds": 1.5,
        "train_accuracy": 0.7,
        "memorised": 0.123,
        "noisy_correct": 0.456,
    }
    rundir.write_summary(path, summary)
    truth_keys = {"memorised": 0.123, "true_class_share": 0.777, "weight_on_noisy": 0.2, "relabelled_share": 0.1}
    rundir.write_metrics(
        path,
        [{"epoch": e, "test_accuracy": 0.7 + 0.05 * e, "meta_accuracy": 0.8 + 0.05 * e, **truth_keys} for e in (1, 2)],
    )
    if names is not None:
        rundir.write_data_info(
            path, {"class_names": list(names), "num_classes": len(names), "truth_known": truth == "known"}
        )
    if images:
        from PIL import Image

        pics = path.parent / f"{path.name}-images"
        pics.mkdir()
        rows = []
        for i in range(8):
            file = pics / f"photo_{i:03d}_with_a_rather_long_file_name.png"
            if i == 7:
                file.write_bytes(b"this is not an image")
            elif i != 3:
                Image.new("RGB", (12, 9), (30 * i, 100, 200)).save(file)
            rows.append((i, str(file), (names or NAMES)[GIVEN[i]], "train"))
        rundir.write_files(path, rows)
    return path


@pytest.fixture
def figures(monkeypatch):
    """Every figure the report saves, by file name (to look at axes, not pixels)."""
    saved = {}
    real = plots._save

    def save(fig, path):
        saved[path.name] = fig
        return real(fig, path)

    monkeypatch.setattr(plots, "_save", save)
    return saved


def md_table(md: str, header_start: str) -> list[list[str]]:
    """The rows (cells) of the Markdown table whose header starts with `header_start`."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return rows


def test_gallery_shows_the_most_suspect_images_with_names_and_placeholders(tmp_path, figures):
    run = write_run(tmp_path / "run", truth="unknown")
    md = plots.make_report([run], tmp_path / "out").read_text()
    png = tmp_path / "out" / "gallery_1.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "](gallery_1.png)" in md
    assert "## Suspect training images: l2b seed 0" in md and "most suspect first" in md
    rows = md_table(md, "| # | index | file |")
    assert [r[1] for r in rows] == ["5", "3", "7", "1"]  # flagged only, lowest label quality first
    assert [(r[3], r[4], r[5]) for r in rows] == [
        ("bird\\|wing", "cat", "0.0500"),
        ("dog", "bird\\|wing", "0.1000"),
        ("dog", "cat", "0.2000"),
        ("cat", "dog", "0.3000"),
    ]
    assert rows[0][2] == f"`{tmp_path}/run-images/photo_005_with_a_rather_long_file_name.png`"
    assert rows[1][2].endswith("(missing)") and rows[2][2].endswith("(unreadable)")
    assert not rows[0][2].endswith(")") and not rows[3][2].endswith(")")
    # the figure: one panel per row, titled given -> suggested, quality, shortened file name
    axes = [ax for ax in figures["gallery_1.png"].axes if ax.get_title()]
    titles = [ax.get_title() for ax in axes]
    assert len(titles) == 4 and titles[0].startswith("bird|wing → cat\nquality 0.050\nphoto_005")
    assert all(len(t.splitlines()[2]) <= 26 for t in titles) and titles[0].endswith("name.png")
    missing, unreadable = axes[1], axes[2]
    assert [t.get_text() for t in missing.texts] == ["missing"] and not missing.images
    assert [t.get_text() for t in unreadable.texts] == ["unreadable"] and len(axes[0].images) == 1
    # class names in the per-class table too
    per_class = md_table(md, "| class |")
    assert per_class == [["cat", "1 of 2"], ["dog", "2 of 3"], ["bird\\|wing", "1 of 3"]]


def test_suspect_images_limit_and_runs_without_files(tmp_path):
    run = plots.load_run(write_run(tmp_path / "run"))
    issues = plots.label_issues(run.per_example, threshold=0.5)
    rows = plots.suspect_images(run, issues, limit=2)
    assert [r["index"] for r in rows] == [5, 3] and rows[1]["image"] is None and rows[1]["status"] == "missing"
    assert rows[0]["image"].dtype == np.uint8 and rows[0]["image"].shape == (9, 12, 3)
    old = plots.load_run(write_run(tmp_path / "old", names=None, images=False))
    assert old.files is None and old.names == ["0", "1", "2"]
    assert plots.suspect_images(old, issues) == []


def test_an_old_run_falls_back_to_class_indices_and_no_gallery(tmp_path, figures):
    run = write_run(tmp_path / "old", names=None, images=False)
    md = plots.make_report([run], tmp_path / "out").read_text()
    assert "gallery" not in md and not list((tmp_path / "out").glob("gallery_*"))
    assert "suspect images (no run was trained on image files)" in md
    assert [r[0] for r in md_table(md, "| class |")] == ["0", "1", "2"]


def test_transition_ticks_are_class_names(tmp_path, figures):
    run = plots.load_run(write_run(tmp_path / "run", images=False))
    plots._name_runs([run])
    plots.plot_transition([run], tmp_path / "t.png")
    ax = figures["t.png"].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == NAMES
    assert [t.get_text() for t in ax.get_yticklabels()] == NAMES
    assert ax.get_xticklabels()[0].get_rotation() == 45
    # more classes than TICK_LIMIT: no names, and the axis says why
    k = plots.TICK_LIMIT + 5
    run.per_example["transition"] = np.eye(k)
    run.class_names = [f"class {i}" for i in range(k)]
    plots.plot_transition([run], tmp_path / "t25.png")
    ax = figures["t25.png"].axes[0]
    assert len(ax.get_xticks()) == 0 and len(ax.get_yticks()) == 0
    assert f"{k} classes" in ax.get_xlabel() and "names left out" in ax.get_xlabel()


@pytest.mark.parametrize("truth", ["unknown", "denied"])
def test_a_run_with_unknown_truth_shows_nothing_that_needs_it(tmp_path, figures, truth):
    run = write_run(tmp_path / "run", truth=truth)
    assert not plots.load_run(run).truth_known
    md = plots.make_report([run], tmp_path / "out").read_text()
    out = tmp_path / "out"
    for image in ("weights.png", "detection_pr.png", "transition.png"):
        assert image not in md and not (out / image).exists()
    assert (out / "accuracy.png").is_file() and len(figures["accuracy.png"].axes) == 2  # no memorised panel
    low = md.lower()
    for word in ("precision", "recall", "truly", "realised", "average precision", "on the true class", "0.123"):
        assert word not in low, word
    assert "| AP |" not in md and "Not drawn" not in md
    assert sum("true labels unknown" in line.lower() for line in md.splitlines()) == 1
    assert "not shown" in next(line for line in md.splitlines() if "True labels unknown" in line)
    row = md_table(md, "| run |")[0]
    assert row[0] == "l2b seed 0" and row[3] == "0.4" and row[8] == "4" and len(row) == 10


def test_a_run_without_a_checked_test_set_gets_no_test_panel(tmp_path, figures):
    run = write_run(tmp_path / "run", truth="unknown", images=False)
    rundir.write_metrics(run, [{"epoch": e, "meta_accuracy": 0.8 + 0.05 * e} for e in (1, 2)])
    summary = json.loads((run / rundir.SUMMARY).read_text())
    rundir.write_summary(run, {**summary, **dict.fromkeys(("test_accuracy", "test_accuracy_at_best_meta"), None)})
    md = plots.make_report([run], tmp_path / "out").read_text()
    assert [ax.get_title() for ax in figures["accuracy.png"].axes if ax.get_title()] == [
        "Meta accuracy (clean meta set, used to select the checkpoint)"
    ]
    assert "No run has a checked test set (give one with `--trusted-test`)" in md and "held-out test" not in md
    rundir.write_metrics(run, [{"epoch": e} for e in (1, 2)])  # no meta set either: no accuracy figure at all
    md = plots.make_report([run], tmp_path / "out2").read_text()
    assert not (tmp_path / "out2" / "accuracy.png").exists() and "Not drawn (no run has the data): Accuracy" in md


def test_truth_known_and_unknown_runs_side_by_side(tmp_path, figures):
    known = write_run(tmp_path / "known", method="ce", images=False)
    unknown = write_run(tmp_path / "unknown", truth="unknown", images=False)
    md = plots.make_report([known, unknown], tmp_path / "out").read_text()
    rows = {r[0]: r for r in md_table(md, "| run |")}
    assert rows["ce seed 0"][3] == "0.4 (0.375 realised)" and rows["ce seed 0"][9] != "–"
    assert rows["l2b seed 0"][3] == "0.4" and rows["l2b seed 0"][9:13] == ["–"] * 4
    assert "True labels unknown for l2b seed 0" in md
    assert "- ce seed 0: train acc." in md and "- l2b seed 0: train acc." not in md
    assert "- ce seed 0: on the true class" in md and "- l2b seed 0: on the true class" not in md
    # only the known run is on the truth figures
    weights = figures["weights.png"]
    assert all(ax.get_title().startswith("ce seed 0") for ax in weights.axes if ax.get_title())
    assert "ce seed 0" in figures["transition.png"].axes[0].get_title()
    assert "l2b seed 0" not in figures["transition.png"].axes[0].get_title()


def test_class_names_must_match_the_probabilities(tmp_path):
    run = write_run(tmp_path / "run", names=["a", "b"], images=False)
    with pytest.raises(ValueError, match="2 class names.*3 classes"):
        plots.load_run(run)


def test_report_refuses_to_overwrite_foreign_files_unless_forced(tmp_path, capsys, monkeypatch):
    write_run(tmp_path / "run", truth="unknown")
    plain = write_run(tmp_path / "plain", truth="unknown", images=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "notes.txt").write_text("mine")
    code = main(["report", "run"])
    err = capsys.readouterr().err
    assert code == 2 and "report directory report already holds" in err
    assert "notes.txt" in err and "--out NEW_DIR" in err and "--force" in err
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["notes.txt"]  # nothing written
    assert main(["report", "run", "--force"]) == 0
    assert (tmp_path / "report" / "notes.txt").read_text() == "mine" and (
        tmp_path / "report" / "gallery_1.png"
    ).is_file()
    # a directory holding only an earlier report is replaced without --force, its stale figures removed
    assert main(["report", "run", "--out", "fresh"]) == 0
    manifest = json.loads((tmp_path / "fresh" / plots.MANIFEST).read_text())
    assert {"report.md", "accuracy.png", "gallery_1.png"} <= set(manifest["files"])
    assert main(["report", "plain", "--out", "fresh"]) == 0
    assert not (tmp_path / "fresh" / "gallery_1.png").exists() and (tmp_path / "fresh" / "report.md").is_file()
    # ...but not once a file of it was edited
    with open(tmp_path / "fresh" / "report.md", "a") as f:
        f.write("my notes\n")
    capsys.readouterr()
    assert main(["report", "plain", "--out", "fresh"]) == 2
    assert "report.md" in capsys.readouterr().err
    (tmp_path / "afile").write_text("x")
    with pytest.raises(FileExistsError, match="not a directory"):
        plots.make_report([plain], tmp_path / "afile")
