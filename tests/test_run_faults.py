"""Faults around a run directory: resume options that contradict the run, two processes on one
directory, SIGTERM, skipped image files, unreadable checkpoints and label files, the disk-space
estimate on resume, logs written to a pipe, the estimator's threads and a read-only run directory.

Each refusal is checked for what the user is promised: exit code 2 and one line naming the flag,
key or file with its value and what to do, and nothing written or lost.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_resume import assert_same_run, interrupt_at_method_step

import l2b.rundir as rundir
from l2b.cli.main import main
from l2b.training import TrainConfig, run_experiment

FAST = ["--epochs", "2", "--warmup-epochs", "1", "--threads", "1", "--quiet"]
CUT = TrainConfig(epochs=2, warmup_epochs=1, device="cpu", seed=1)  # interrupted inside epoch 2


def cli(capsys, *args):
    """`l2b ARGS` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def l2b(*args, cwd, **kw):
    return subprocess.run(
        [sys.executable, "-m", "l2b", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600, **kw
    )


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file of `folder` with its modification time and bytes."""
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    """An interrupted run (Ctrl-C inside epoch 2, checkpoint on disk) and a finished one."""
    root = tmp_path_factory.mktemp("templates")
    with pytest.MonkeyPatch.context() as mp:
        interrupt_at_method_step(mp, 3)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(CUT, out_dir=root / "cut", progress=False, log=None)
    run_experiment(CUT, out_dir=root / "done", progress=False, log=None)
    assert (root / "cut" / rundir.CHECKPOINT).is_file() and (root / "done" / rundir.SUMMARY).is_file()
    return root


@pytest.fixture
def cut_run(templates, tmp_path):
    shutil.copytree(templates / "cut", tmp_path / "cut")
    return tmp_path / "cut"


@pytest.fixture
def done_run(templates, tmp_path):
    shutil.copytree(templates / "done", tmp_path / "done")
    return tmp_path / "done"


# -- 1. --resume with options that contradict the run ---------------------------------------------


def test_resume_refuses_every_option_that_contradicts_the_run(cut_run, tmp_path, capsys):
    before = snapshot(cut_run)
    code, _, err = cli(capsys, "train", "--resume", cut_run, "--method", "ce", "--epochs", "3", "--lr", "0.5")
    assert code == 2, err
    line = err.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "--method ce (the run has l2b)" in line and "--epochs 3 (the run has 2)" in line
    assert "--lr 0.5 (the run has 0.1)" in line and "drop these options" in line
    (tmp_path / "other.yaml").write_text("data: digits\nnum_meta: 50\n")
    code, _, err = cli(capsys, "train", "--resume", cut_run, "--config", tmp_path / "other.yaml")
    assert code == 2 and f"--config {tmp_path / 'other.yaml'}: num_meta 50 (the run has 100)" in err, err
    code, _, err = cli(capsys, "train", "--resume", cut_run, "--data", "cifar10", "--out", tmp_path / "elsewhere")
    assert code == 2 and "--data cifar10 (the run has digits)" in err and "--out" in err, err
    code, _, err = cli(capsys, "train", "--resume", cut_run, "--device", "auto", "--hidden", "32")
    assert code == 2 and "--device auto (the run has cpu)" in err and "--hidden 32 (the run has 256)" in err, err
    assert snapshot(cut_run) == before  # nothing written, nothing lost
    assert not (tmp_path / "elsewhere").exists()
    # Options equal to the run's own, and those that only change how it runs, are accepted.
    code, _, err = cli(
        capsys, "train", "--resume", cut_run, "--epochs", "2", "--method", "l2b", "--workers", "1", *FAST
    )
    assert code == 0, err
    assert json.loads((cut_run / rundir.SUMMARY).read_text())["resumed"] == 1


# -- 2. the run-directory lock ------------------------------------------------------------------

HOLD = (
    "import sys, time; from pathlib import Path; from l2b.rundir import lock_run_dir; "
    "lock = lock_run_dir(Path(sys.argv[1])); lock.__enter__(); print('locked', flush=True); time.sleep(600)"
)


def hold_lock(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_process_on_a_run_directory_is_refused_and_a_dead_holder_does_not_block(cut_run, tmp_path, capsys):
    holder = hold_lock(cut_run)
    try:
        lock_file = (cut_run / rundir.LOCK).read_text()
        before = snapshot(cut_run)
        code, _, err = cli(capsys, "train", "--resume", cut_run, *FAST)
        assert code == 2, err
        assert f"run directory {cut_run} is in use by process {holder.pid} on host {socket.gethostname()}" in err
        assert "wait for that run to end" in err and "\n" not in err.strip()
        assert snapshot(cut_run) == before and (cut_run / rundir.LOCK).read_text() == lock_file
        # A new run into a directory another process owns is refused too, before writing anything.
        fresh = tmp_path / "fresh"
        fresh.mkdir()
        holder2 = hold_lock(fresh)
        try:
            code, _, err = cli(capsys, "train", *FAST, "--out", fresh)
            assert code == 2 and f"is in use by process {holder2.pid}" in err, err
            assert sorted(p.name for p in fresh.iterdir()) == [rundir.LOCK]
        finally:
            holder2.kill()
            holder2.wait()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (cut_run / rundir.LOCK).exists()  # left behind by the killed holder: stale, not blocking
    code, _, err = cli(capsys, "train", "--resume", cut_run, *FAST)
    assert code == 0, err
    assert (cut_run / rundir.SUMMARY).is_file() and not (cut_run / rundir.LOCK).exists()


def test_the_lock_conflicts_within_one_process_and_is_released_on_exit(tmp_path):
    with rundir.lock_run_dir(tmp_path):
        holder = json.loads((tmp_path / rundir.LOCK).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(rundir.RunDirectoryLocked, match=rf"in use by process {os.getpid()} "):
            with rundir.lock_run_dir(tmp_path):  # a second open file description: flock conflicts
                pass
    assert not (tmp_path / rundir.LOCK).exists()
    with rundir.lock_run_dir(tmp_path):  # free again
        pass


# -- 3. --skip-bad-files lists what it skipped ------------------------------------------------------


def test_skipped_image_files_are_listed_with_their_reasons(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for c, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(12):
            pixels = np.clip(np.array(colour)[None, None] + rng.normal(0, 40, (8, 8, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"c{c}" / f"{i}.png")
    (root / "c1" / "broken.png").write_bytes(b"not an image")
    (root / "c2" / "cut.png").write_bytes((root / "c2" / "0.png").read_bytes()[:40])
    # without the option: the first bad file is named, and the option that gets past it
    r = l2b("train", "--data", "imagefolder", "--data-root", root, "--method", "ce", "--out", "no", cwd=tmp_path)
    assert r.returncode == 2 and "c1/broken.png: cannot decode image" in r.stderr, r.stderr
    assert r.stderr.rstrip().endswith("skip_bad_files (--skip-bad-files) leaves undecodable files out and lists them")
    r = l2b(
        "train", "--data", "imagefolder", "--noise", "symmetric", "--data-root", root, "--skip-bad-files",
        "--image-size", "8",
        "--num-meta", "6", "--batch-size", "8", "--meta-batch-size", "6", "--epochs", "2", "--warmup-epochs", "1",
        "--threads", "1", "--out", "run", cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    listing = tmp_path / "run" / rundir.SKIPPED_FILES
    assert "skipped 2 training and 0 test files that could not be decoded" in r.stdout
    assert f"listed with the reasons in run/{rundir.SKIPPED_FILES}" in r.stdout
    lines = listing.read_text().splitlines()
    assert lines[0] == "split,path,reason" and len(lines) == 3
    assert {line.split(",")[1] for line in lines[1:]} == {str(root / "c1" / "broken.png"), str(root / "c2" / "cut.png")}
    assert all("cannot decode image" in line for line in lines[1:])
    summary = json.loads((tmp_path / "run" / rundir.SUMMARY).read_text())
    assert summary["skipped_files"] == 2 and summary["skipped_files_list"] == rundir.SKIPPED_FILES


# -- 4. messages for checkpoints and label files that cannot be used ---------------------------------


def test_a_checkpoint_that_does_not_fit_the_model_is_named_with_both_shapes(cut_run, capsys):
    ckpt = rundir.load_checkpoint(cut_run / rundir.CHECKPOINT)
    key = next(iter(ckpt["trainer"]["model"]))
    want = tuple(ckpt["trainer"]["model"][key].shape)
    ckpt["trainer"]["model"][key] = torch.zeros(want[0] + 1, *want[1:])
    torch.save(ckpt, cut_run / rundir.CHECKPOINT)
    before = snapshot(cut_run)
    code, _, err = cli(capsys, "train", "--resume", cut_run, *FAST)
    assert code == 2 and "Traceback" not in err
    got = (want[0] + 1, *want[1:])
    assert f"{cut_run / rundir.CHECKPOINT}: tensor {key!r} has shape {got} but the model needs {want}" in err
    assert "start the run again without --resume" in err and "\n" not in err.strip()
    assert snapshot(cut_run) == before


def test_a_truncated_checkpoint_is_called_truncated_without_zip_jargon(cut_run, capsys):
    path = cut_run / rundir.CHECKPOINT
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    before = snapshot(cut_run)
    code, _, err = cli(capsys, "train", "--resume", cut_run, *FAST)
    assert code == 2 and f"{path}: this checkpoint is truncated or corrupt" in err, err
    assert "resume from another copy of the run directory, or start the run again without --resume" in err
    assert "zip" not in err and "miniz" not in err and "\n" not in err.strip()
    assert snapshot(cut_run) == before


def test_a_truncated_model_file_is_called_truncated(done_run, capsys):
    path = done_run / rundir.MODEL
    path.write_bytes(path.read_bytes()[:1000])
    code, _, err = cli(capsys, "evaluate", done_run)
    assert code == 2 and f"{path}: this model file is truncated or corrupt" in err and "zip" not in err, err


def test_a_meta_file_listing_every_training_example_is_refused(tmp_path, capsys):
    from l2b.data import load_dataset

    n = len(load_dataset("digits", test_fraction=TrainConfig().test_fraction, split_seed=TrainConfig().split_seed)[0])
    meta = tmp_path / "meta.csv"
    meta.write_text("".join(f"{i}\n" for i in range(n)))
    code, _, err = cli(capsys, "train", *FAST, "--meta-source", "file", "--meta-file", meta, "--out", tmp_path / "run")
    assert code == 2 and "Traceback" not in err
    assert f"{meta}: the meta file lists all {n} training examples, leaving none to train on" in err, err
    assert not (tmp_path / "run").exists()


def test_float_labels_in_a_pt_file_are_refused_as_floats_not_as_unsafe(tmp_path, capsys):
    from l2b.data import load_dataset

    n = len(load_dataset("digits", test_fraction=TrainConfig().test_fraction, split_seed=TrainConfig().split_seed)[0])
    path = tmp_path / "labels.pt"
    torch.save({"worse_label": np.zeros(n, dtype=np.float32)}, path)
    code, _, err = cli(
        capsys, "train", *FAST, "--noise", "file", "--noise-file", path, "--noise-label", "worse_label",
        "--out", tmp_path / "run",
    )  # fmt: skip
    assert code == 2 and "labels must have an integer dtype, got dtype float32" in err, err
    assert "refused" not in err and "executed" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("suffix", [".npz", ".npy"])
def test_random_bytes_named_npz_or_npy_are_not_called_pickled_data(tmp_path, capsys, suffix):
    path = tmp_path / f"labels{suffix}"
    path.write_bytes(np.random.default_rng(0).bytes(300))
    code, _, err = cli(capsys, "train", *FAST, "--noise", "file", "--noise-file", path, "--out", tmp_path / "run")
    assert code == 2 and f"'{path}' is not a valid {suffix} file" in err, err
    assert "pickle" not in err
    assert not (tmp_path / "run").exists()


# -- 5. SIGTERM is handled like Ctrl-C ------------------------------------------------------------


def test_sigterm_checkpoints_and_the_resumed_run_equals_an_uninterrupted_one(tmp_path, capsys, monkeypatch):
    args = ["--epochs", "8", "--warmup-epochs", "1", "--threads", "1", "--quiet", "--seed", "3"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "l2b", "train", *args, "--out", "cut"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ckpt = tmp_path / "cut" / rundir.CHECKPOINT
    deadline = time.time() + 300
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err  # 143, as a shell reports a SIGTERM
    assert "stopped by SIGTERM: resume with `l2b train --resume cut`" in out
    assert "l2b train: stopped by SIGTERM" in err and "Traceback" not in err
    assert ckpt.is_file() and not (tmp_path / "cut" / rundir.SUMMARY).exists()
    assert not (tmp_path / "cut" / rundir.LOCK).exists()
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, "train", "--resume", "cut", "--quiet", "--threads", "1")
    assert code == 0, err
    assert cli(capsys, "train", *args, "--out", "full")[0] == 0
    assert_same_run(tmp_path / "full", tmp_path / "cut")


# -- 6. the resume hint under torchrun --------------------------------------------------------------


def test_the_resume_hint_has_the_torchrun_form_under_torchrun(monkeypatch):
    for var in ("WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert rundir.resume_command("runs/x") == "l2b train --resume runs/x"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert rundir.resume_command("runs/x") == "torchrun --standalone --nproc-per-node 2 -m l2b train --resume runs/x"
    monkeypatch.setenv("WORLD_SIZE", "16")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    hint = rundir.resume_command("runs/x")
    assert hint.startswith("torchrun --nnodes 2 --nproc-per-node 8 ") and hint.endswith("-m l2b train --resume runs/x")


# -- 7. the disk-space estimate on resume ------------------------------------------------------------


def test_a_resume_with_the_space_the_run_left_is_not_refused(cut_run, tmp_path, monkeypatch, capsys):
    from l2b.training import prepare_data
    from l2b.training.setup import build_model

    data = prepare_data(CUT)
    model = build_model(CUT, num_classes=data.num_classes, in_shape=data.example_shape)
    (tmp_path / "new").mkdir()
    needed_at_start = rundir.check_free_space(tmp_path / "new", model, num_examples=len(data.train_idx))
    # A run started with exactly the space it needed has that minus its checkpoint left.
    left = needed_at_start - (cut_run / rundir.CHECKPOINT).stat().st_size
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(rundir.shutil, "disk_usage", lambda p: usage._replace(free=left))
    code, _, err = cli(capsys, "train", "--resume", cut_run, *FAST)
    assert code == 0, err


def test_too_little_space_on_resume_counts_the_checkpoint_it_replaces(cut_run, monkeypatch, capsys):
    usage = shutil.disk_usage(cut_run)
    monkeypatch.setattr(rundir.shutil, "disk_usage", lambda p: usage._replace(free=4096))
    before = snapshot(cut_run)
    code, _, err = cli(capsys, "train", "--resume", cut_run, *FAST)
    assert code == 1 and "besides the 0." in err and "MiB checkpoint it replaces" in err, err
    assert f"`l2b train --resume {cut_run}`" in err
    assert snapshot(cut_run) == before


# -- 8. no progress-bar escape codes in a log --------------------------------------------------------


def test_output_to_a_pipe_has_plain_epoch_lines_and_no_progress_bars(tmp_path):
    r = l2b("train", "--epochs", "2", "--warmup-epochs", "1", "--threads", "1", "--out", "run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for stream in (r.stdout, r.stderr):
        assert "\r" not in stream and "\x1b[" not in stream
    assert "epoch   1/2 [warmup]" in r.stdout and "epoch   2/2 [l2b]" in r.stdout


# -- 9. the estimator's thread policy ---------------------------------------------------------------


def test_the_estimator_uses_one_thread_like_the_cli_and_restores_the_setting(monkeypatch):
    import l2b.sklearn as sk

    seen = {}
    real_fit, real_predict = sk._fit, sk._predict_proba

    def fit(*a, **kw):
        seen["fit"] = torch.get_num_threads()
        return real_fit(*a, **kw)

    def predict(*a, **kw):
        seen["predict"] = torch.get_num_threads()
        return real_predict(*a, **kw)

    monkeypatch.setattr(sk, "_fit", fit)
    monkeypatch.setattr(sk, "_predict_proba", predict)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 4)), np.arange(60) % 3
    previous = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        clf = sk.L2BClassifier(hidden=(8,), epochs=2, warmup_epochs=1, random_state=0).fit(X, y)
        clf.predict(X)
        assert seen == {"fit": 1, "predict": 1} and torch.get_num_threads() == 3
        sk.L2BClassifier(hidden=(8,), epochs=2, warmup_epochs=1, random_state=0, threads=2).fit(X, y)
        assert seen["fit"] == 2 and torch.get_num_threads() == 3
        with pytest.raises(ValueError, match="threads=0 must be a positive integer"):
            sk.L2BClassifier(threads=0).fit(X, y)
    finally:
        torch.set_num_threads(previous)


# -- 10. relabel --out leaves the run directory alone --------------------------------------------------


def test_relabel_with_out_elsewhere_writes_nothing_into_a_read_only_run_directory(done_run, tmp_path, capsys):
    before = snapshot(done_run)
    done_run.chmod(0o555)
    try:
        code, out, err = cli(capsys, "relabel", done_run, "--out", tmp_path / "fixed.csv", "--threshold", "0.3")
    finally:
        done_run.chmod(0o755)
    assert code == 0, err
    assert (tmp_path / "fixed.csv").read_text().startswith("index,given_label,label,changed\n") and "wrote" in out
    assert snapshot(done_run) == before
