"""Crafted files in place of data, labels, checkpoints and models: each is refused with an error
naming the file, and a marker file proves that the payload never ran.

Every payload, if unpickled by a plain ``pickle.load`` / ``torch.load(weights_only=False)``, creates
``marker``; the tests first check that it really would (so a refusal is not an accident of a broken
payload), then that the l2b entry points refuse it and the marker stays absent."""

from __future__ import annotations

import os
import pickle
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from l2b.cli.main import main as l2b_main
from l2b.data import load_dataset, load_digits
from l2b.noise import load_noisy_labels
from l2b.rundir import load_checkpoint
from l2b.training import TrainConfig, run_experiment
from l2b.training.inference import load_trained_model


class SystemPayload:
    """Unpickling calls os.system("touch marker")."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class ExecPayload:
    """Unpickling calls builtins.exec on Python source that creates the marker."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


class PopenPayload:
    """Unpickling starts a process through subprocess.Popen."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (subprocess.Popen, (["touch", self.marker],))


PAYLOADS = [SystemPayload, ExecPayload, PopenPayload]


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "PAYLOAD_RAN"


def cli(capsys, *args) -> tuple[int, str]:
    code = l2b_main([str(a) for a in args])
    return code, capsys.readouterr().err


def _wait_for(path: Path, seconds: float = 0.3) -> bool:
    """Whether `path` exists within `seconds` (the Popen payload would create it from a child process)."""
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p.__name__)
def test_the_payloads_are_live(tmp_path, payload):
    """Guard against testing with a dud: an unrestricted unpickler does run each payload."""
    marker = tmp_path / "live"
    data = pickle.dumps({"labels": payload(marker)}, protocol=2)
    pickle.loads(data)  # noqa: S301 - deliberately unsafe, on our own payload
    assert _wait_for(marker, seconds=5.0)


# ----------------------------------------------------------------------------------------------
# (a) CIFAR data batches
# ----------------------------------------------------------------------------------------------


def _cifar(root: Path) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return folder


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p.__name__)
def test_cifar_batch_with_a_payload_in_a_field(tmp_path, marker, payload):
    folder = _cifar(tmp_path)
    batch = pickle.loads((folder / "data_batch_2").read_bytes())
    batch["filenames"] = [payload(marker)]
    (folder / "data_batch_2").write_bytes(pickle.dumps(batch, protocol=2))
    # (protocol 2 names builtins and subprocess by their Python 2 modules, __builtin__ and commands)
    with pytest.raises(
        ValueError,
        match=r"data_batch_2: refusing to load global \w+\.(system|exec|Popen): only "
        r"numpy arrays, dtypes and plain Python containers are allowed",
    ):
        load_dataset("cifar10", root=tmp_path)
    assert not _wait_for(marker)


def test_cifar_batch_replaced_by_a_payload_refused_by_the_cli(tmp_path, marker, capsys):
    folder = _cifar(tmp_path / "data")
    (folder / "test_batch").write_bytes(pickle.dumps(SystemPayload(marker), protocol=4))
    code, err = cli(
        capsys, "train", "--data", "cifar10", "--data-root", tmp_path / "data", "--out", tmp_path / "run", "--quiet"
    )
    assert code == 2 and f"{folder / 'test_batch'}: refusing to load global posix.system" in err, err
    assert not marker.exists() and not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------------------------
# (b) CIFAR-10N-style .pt label files
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p.__name__)
def test_pt_label_file_with_a_payload(tmp_path, marker, payload):
    path = tmp_path / "CIFAR-10_human.pt"
    torch.save({"clean_label": torch.zeros(8, dtype=torch.int64), "worse_label": payload(marker)}, path)
    with pytest.raises(ValueError, match=r"refused to load '.*CIFAR-10_human\.pt'.*nothing in it was executed"):
        load_noisy_labels(path, key="worse_label")
    assert not _wait_for(marker)


def test_pt_label_file_refused_before_a_run_starts(tmp_path, marker):
    path = tmp_path / "noisy.pt"
    with open(path, "wb") as f:  # a plain pickle (no torch zip container) with a .pt name
        pickle.dump({"worse_label": SystemPayload(marker)}, f, protocol=2)
    cfg = TrainConfig(noise="file", noise_file=str(path), noise_label="worse_label", epochs=1, warmup_epochs=0)
    with pytest.raises(ValueError, match=r"refused to load '.*noisy\.pt'.*GLOBAL posix\.system"):
        run_experiment(cfg, out_dir=tmp_path / "run", progress=False, log=None)
    assert not marker.exists() and not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------------------------
# (c) .npy / .npz label files holding pickled objects
# ----------------------------------------------------------------------------------------------


def test_npy_object_array_refused(tmp_path, marker):
    path = tmp_path / "labels.npy"
    np.save(path, np.array([SystemPayload(marker), 1, 2], dtype=object), allow_pickle=True)
    with pytest.raises(
        ValueError,
        match=r"'.*labels\.npy' is not a readable \.npy array of labels: it holds pickled "
        r"Python objects, which are never unpickled",
    ):
        load_noisy_labels(path)
    assert not marker.exists()


def test_npz_with_an_object_array_refused(tmp_path, marker):
    path = tmp_path / "labels.npz"
    np.savez(path, worse_label=np.array([ExecPayload(marker)], dtype=object), clean_label=np.zeros(3, np.int64))
    with pytest.raises(
        ValueError,
        match=r"'.*labels\.npz' is not a readable \.npz archive of labels: it holds "
        r"pickled Python objects.*nothing in it was executed",
    ):
        load_noisy_labels(path, key="worse_label")
    assert not marker.exists()


def test_plain_pickle_named_npy_refused_by_the_cli(tmp_path, marker, capsys):
    path = tmp_path / "labels.npy"
    path.write_bytes(pickle.dumps(SystemPayload(marker), protocol=2))
    code, err = cli(
        capsys,
        "train",
        "--noise",
        "file",
        "--noise-file",
        path,
        "--epochs",
        "1",
        "--warmup-epochs",
        "0",
        "--out",
        tmp_path / "run",
        "--quiet",
    )
    assert code == 2 and f"'{path}' is not a readable .npy array of labels: it holds pickled Python objects" in err, err
    assert "allow_pickle=" not in err  # no advice to load it unsafely
    assert not marker.exists() and not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------------------------
# run directories: checkpoint.pt, model.pt, per_example.npz, config.yaml
# ----------------------------------------------------------------------------------------------


def _run_dir(path: Path, config: TrainConfig | None = None) -> Path:
    """A run directory as `l2b train` leaves it (config.yaml), without training anything."""
    path.mkdir(parents=True)
    config = config or TrainConfig(epochs=1, warmup_epochs=0, hidden=(16,))
    (path / "config.yaml").write_text(yaml.safe_dump({"config": config.to_dict(), "run": {}}, sort_keys=False))
    return path


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p.__name__)
def test_checkpoint_with_a_payload_refused_on_resume(tmp_path, marker, capsys, payload):
    run = _run_dir(tmp_path / "run")
    config = TrainConfig(epochs=1, warmup_epochs=0, hidden=(16,))
    torch.save(
        {
            "trainer": {"model": payload(marker)},
            "config": config.to_dict(),
            "meta_index": torch.arange(3),
            "elapsed": 0.0,
            "resumed": 0,
        },
        run / "checkpoint.pt",
    )
    code, err = cli(capsys, "train", "--resume", run, "--quiet")
    assert code == 2 and f"{run / 'checkpoint.pt'}: refused to load this checkpoint" in err, err
    assert not _wait_for(marker)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "config.yaml"]  # nothing written
    with pytest.raises(ValueError, match=r"checkpoint\.pt: refused to load this checkpoint"):
        load_checkpoint(run / "checkpoint.pt")
    assert not _wait_for(marker)


def _evil_model(run: Path, marker: Path) -> None:
    real = {"net.0.weight": torch.zeros(16, 64)}
    torch.save({**real, "net.0.bias": SystemPayload(marker)}, run / "model.pt")


def test_model_file_with_a_payload_refused_by_evaluate(tmp_path, marker, capsys):
    run = _run_dir(tmp_path / "run")
    _evil_model(run, marker)
    code, err = cli(capsys, "evaluate", run)
    assert code == 2 and f"{run / 'model.pt'}: refused to load this model file" in err, err
    assert "GLOBAL posix.system" in err and "weights_only` set to `False`" not in err  # no advice to switch it off
    assert not marker.exists()


def test_model_file_with_a_payload_refused_by_predict(tmp_path, marker, capsys):
    run = _run_dir(tmp_path / "run")
    with open(run / "model.pt", "wb") as f:
        pickle.dump({"net.0.weight": ExecPayload(marker)}, f, protocol=2)
    out = tmp_path / "pred.csv"
    code, err = cli(capsys, "predict", run, "--data", "digits", "--out", out)
    assert code == 2 and f"{run / 'model.pt'}: refused to load this model file" in err, err
    assert not marker.exists() and not out.exists()


def test_model_file_with_a_payload_refused_by_the_python_api(tmp_path, marker):
    run = _run_dir(tmp_path / "run")
    _evil_model(run, marker)
    train, _ = load_digits()
    with pytest.raises(
        ValueError,
        match=r"run/model\.pt: refused to load this model file: it is not a torch file "
        r"holding only tensors and plain containers; nothing in it was executed",
    ):
        load_trained_model(run, num_classes=10, in_shape=train.example_shape)
    assert not marker.exists()


def test_per_example_file_with_an_object_array_refused_by_relabel(tmp_path, marker, capsys):
    run = _run_dir(tmp_path / "run")
    np.savez(
        run / "per_example.npz",
        index=np.arange(3),
        given_label=np.zeros(3, np.int64),
        pred_prob=np.array([SystemPayload(marker)] * 3, dtype=object),
    )
    code, err = cli(capsys, "relabel", run)
    assert code == 2 and f"{run / 'per_example.npz'} could not be read as an npz archive" in err, err
    assert not marker.exists() and not (run / "relabelled.csv").exists()


def test_config_file_with_a_python_tag_refused(tmp_path, marker, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text(f'epochs: !!python/object/apply:os.system ["touch {marker}"]\n')
    code, err = cli(capsys, "train", "--config", path, "--print-config")
    assert code == 2 and f"{path} is not valid YAML" in err and "python/object/apply:os.system" in err, err
    assert not marker.exists()


def test_run_config_with_a_python_tag_refused_on_resume(tmp_path, marker, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(f'config: !!python/object/apply:os.system ["touch {marker}"]\n')
    try:
        code, err = cli(capsys, "train", "--resume", run)
    finally:
        assert not marker.exists()
    assert code == 2 and f"{run / 'config.yaml'}" in err
