"""`l2b train` under torchrun: two CPU processes (gloo) train one run, rank 0 writes it, and a run
killed mid-way resumes under torchrun to the result of an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from test_resume import assert_same_run

pytest.importorskip("torch.distributed")
ARGS = ["--epochs", "4", "--warmup-epochs", "1", "--seed", "4", "--quiet"]


def torchrun(*args, cwd, **popen):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "l2b",
        "train",
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if popen:
        return subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid`, from /proc (torchrun starts its workers in new sessions)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def test_two_processes_train_one_run_and_resume_after_a_kill(tmp_path):
    r = torchrun(*ARGS, "--out", "full", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["epochs"] == 4
    assert len((tmp_path / "full" / "metrics.jsonl").read_text().splitlines()) == 4  # written by rank 0 only
    assert r.stdout.count('"method"') == 1  # one summary printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]

    proc = torchrun(*ARGS, "--out", "killed", cwd=tmp_path, popen=True)
    ckpt = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    for pid in [proc.pid, *descendants(proc.pid)]:  # the launcher and its workers (own sessions) at once
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "summary.json").exists(), "the run finished before it could be killed"
    r = torchrun("--resume", "killed", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((tmp_path / "killed" / "summary.json").read_text())["resumed"] == 1
    assert_same_run(tmp_path / "full", tmp_path / "killed")


def test_two_processes_train_a_streamed_image_folder(tmp_path):
    """Each process decodes only its shard of every planned batch; the run completes once."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        (tmp_path / "images" / f"c{c}").mkdir(parents=True)
        for i in range(20):
            a = np.clip(np.array(colour)[None, None] + rng.normal(0, 40, (12, 12, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(tmp_path / "images" / f"c{c}" / f"{i}.png")
    r = torchrun(
        "--data",
        "imagefolder",
        "--noise",
        "symmetric",
        "--data-root",
        "images",
        "--lazy",
        "--image-size",
        "12",
        "--workers",
        "1",
        "--model",
        "small_cnn",
        "--epochs",
        "2",
        "--warmup-epochs",
        "1",
        "--num-meta",
        "6",
        "--meta-batch-size",
        "4",
        "--batch-size",
        "8",
        "--quiet",
        "--out",
        "run",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["data"] == "imagefolder"
    pe = np.load(tmp_path / "run" / "per_example.npz")
    assert not np.isnan(pe["alpha"]).any()  # every example's weight gathered from its process


def test_two_processes_train_on_masks_with_per_pixel_weights(tmp_path):
    """A mask folder under torchrun: one run in Dice, every training image's per-pixel weights
    gathered from its process, equal to the same run in one process (the global meta loss and
    normalisation count pixels, not images)."""
    import numpy as np
    from test_masks_run import write_folder

    write_folder(tmp_path / "data", n=20, size=16)
    args = ["--data", "masks", "--data-root", "data", "--model", "unet", "--width", "4", "--depth", "2"]
    args += ["--noise", "boundary", "--num-meta", "4", "--epochs", "2", "--warmup-epochs", "1"]
    args += ["--batch-size", "4", "--meta-batch-size", "2", "--quiet", "--seed", "3"]
    r = torchrun(*args, "--out", "two", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["task"] == "segmentation"
    assert 0 <= summary["test_dice_at_best_meta"] <= 1
    pe = np.load(tmp_path / "two" / "per_example.npz")
    assert pe["alpha_map"].shape == (12, 16, 16) and np.isfinite(pe["alpha_map"]).all()
    metrics = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    one = subprocess.run(
        [sys.executable, "-m", "l2b", "train", *args, "--threads", "1", "--out", "one"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    alone = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    # BatchNorm statistics are per process on the CPU, so the runs are close, not equal: the meta
    # loss is on one scale (per pixel), which a count of images instead of pixels would break 256-fold
    assert metrics[-1]["meta_loss"] == pytest.approx(alone[-1]["meta_loss"], rel=0.5)
