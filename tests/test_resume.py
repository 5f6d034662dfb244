"""Checkpoints and resume: an interrupted run finishes exactly as an uninterrupted one."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from l2b.training import TrainConfig, run_experiment

TIMING = {"train_seconds", "images_per_second", "test_seconds"}
ARGS = ["--epochs", "30", "--warmup-epochs", "3", "--threads", "1", "--quiet", "--seed", "3"]


def l2b(*args, cwd):
    return subprocess.run([sys.executable, "-m", "l2b", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def records(run):
    return [
        {k: v for k, v in json.loads(line).items() if k not in TIMING}
        for line in (run / "metrics.jsonl").read_text().splitlines()
    ]


def assert_same_run(a, b):
    sa, sb = (json.loads((r / "summary.json").read_text()) for r in (a, b))
    for key in (
        "test_accuracy",
        "best_meta_epoch",
        "best_meta_accuracy",
        "test_accuracy_at_best_meta",
        "realised_noise_rate",
        "zero_weight_steps",
    ):
        assert sa[key] == sb[key], key
    assert records(a) == records(b)
    pa, pb = np.load(a / "per_example.npz"), np.load(b / "per_example.npz")
    for key in pa.files:
        np.testing.assert_array_equal(pa[key], pb[key], err_msg=key)


def test_sigkill_after_first_checkpoint_then_resume_matches_uninterrupted_run(tmp_path):
    assert l2b("train", *ARGS, "--out", "full", cwd=tmp_path).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "l2b", "train", *ARGS, "--out", "killed"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ckpt = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "summary.json").exists(), "the run finished before it could be killed"
    r = l2b("train", "--resume", "killed", "--quiet", "--threads", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "killed" / "summary.json").read_text())["resumed"] == 1
    assert_same_run(tmp_path / "full", tmp_path / "killed")
    # A finished run is not resumed again, and resuming needs a checkpoint.
    r = l2b("train", "--resume", "killed", cwd=tmp_path)
    assert r.returncode == 2 and "already holds a finished run" in r.stderr
    r = l2b("train", "--resume", "nowhere", cwd=tmp_path)
    assert r.returncode == 2 and "not an l2b run directory" in r.stderr


def interrupt_at_method_step(monkeypatch, n: int):
    """Make run_experiment's method send this process SIGINT (Ctrl-C) during its n-th step
    (warm-up epochs use their own CE method and do not count); returns the real create_method."""
    import l2b.training.setup as setup_mod  # where a run builds its method

    real_create = setup_mod.create_method
    calls = {"n": 0}

    def interrupting_create(name, **opts):
        method = real_create(name, **opts)
        real_step = method.step

        def step(*a, **kw):
            calls["n"] += 1
            if calls["n"] == n:
                os.kill(os.getpid(), signal.SIGINT)
            return real_step(*a, **kw)

        method.step = step
        return method

    monkeypatch.setattr(setup_mod, "create_method", interrupting_create)
    return real_create


def test_ctrl_c_mid_epoch_checkpoints_the_step_and_resume_continues_there(tmp_path, monkeypatch):
    import l2b.rundir as rundir
    import l2b.training.setup as setup_mod  # where a run builds its method

    cfg = TrainConfig(epochs=4, warmup_epochs=1, device="cpu", seed=5, mixup=True)
    run_experiment(cfg, out_dir=tmp_path / "full", progress=False, log=None)

    real_create = interrupt_at_method_step(monkeypatch, 7)  # inside epoch 2 (21 steps per epoch)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, out_dir=tmp_path / "cut", progress=False, log=None)
    ckpt = rundir.load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert ckpt["trainer"]["epoch"] == 1 and ckpt["trainer"]["cursor"]["step"] == 7
    monkeypatch.setattr(setup_mod, "create_method", real_create)
    run_experiment(cfg, out_dir=tmp_path / "cut", progress=False, log=None, resume=True)
    assert_same_run(tmp_path / "full", tmp_path / "cut")


def test_sigkill_at_random_points_then_resume_each_time_matches_uninterrupted_run(tmp_path):
    """The real CLI killed (SIGKILL) five times in one run, each time at a random moment after it
    has written one more checkpoint than before (so the kills fall at different epochs, inside an
    epoch or while a checkpoint is being written), and resumed after each kill. The finished run
    must equal the uninterrupted one in every metric and per-example value."""
    args = ["--epochs", "60", "--warmup-epochs", "3", "--threads", "1", "--quiet", "--seed", "7"]
    assert l2b("train", *args, "--out", "full", cwd=tmp_path).returncode == 0
    rng = np.random.default_rng(2026)
    run, ckpt, kills, resumed_from = tmp_path / "cut", tmp_path / "cut" / "checkpoint.pt", 0, []
    for attempt in range(12):
        resume = ckpt.exists()
        cmd = ["train", "--resume", "cut", "--quiet", "--threads", "1"] if resume else ["train", *args, "--out", "cut"]
        if resume:
            resumed_from.append(run_epochs(run))
        last = ckpt.stat().st_ino if resume else None
        proc = subprocess.Popen(
            [sys.executable, "-m", "l2b", *cmd],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if kills < 5:
            deadline = time.time() + 300
            while proc.poll() is None and time.time() < deadline:  # until a new checkpoint replaces the old
                with contextlib.suppress(FileNotFoundError):
                    if ckpt.stat().st_ino != last:
                        break
                time.sleep(0.002)
            time.sleep(float(rng.uniform(0.0, 0.4)))  # then somewhere in the next epochs
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
        _, err = proc.communicate(timeout=600)
        if (run / "summary.json").exists():
            break
        assert proc.returncode == -signal.SIGKILL, err
    assert (run / "summary.json").exists() and kills == 5, (kills, resumed_from)
    assert resumed_from == sorted(resumed_from) and len(set(resumed_from)) == 5, resumed_from
    assert_same_run(tmp_path / "full", run)
    print(f"{kills} kills survived; resumed from epochs {resumed_from}")  # shown with pytest -s


def run_epochs(run) -> int:
    from l2b.rundir import load_checkpoint

    return int(load_checkpoint(run / "checkpoint.pt")["trainer"]["epoch"])
