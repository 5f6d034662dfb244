"""`l2b train`: train one model on noisy labels.

Configuration flows one way: TrainConfig's defaults, then a YAML file (`--config`), then the
options given on the command line, then a frozen, validated TrainConfig.

Every command builds this parser, so building it imports no torch (about a second): `--help` and
argument errors answer at once. The plain choice lists come from :mod:`l2b.names`; the registered
methods, models and data sets, and TrainConfig's defaults, from :mod:`l2b.cli.declared`, which
reads them from the modules that declare them without importing those. The training code is
imported by the functions that run it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..configs import list_configs
from ..names import DEVICE_HELP, MASK_NOISE_KINDS, META_SOURCES, NOISE_KINDS, PRECISIONS, PRESETS
from .declared import add_option_flag, component_options, dataset_names, method_names, model_names, train_defaults

if TYPE_CHECKING:
    from ..training import TrainConfig


def _options() -> list[tuple[str, str, dict[str, Any], str]]:
    """(flag, config key, argparse keywords, help) of TrainConfig's own keys, the registered names
    read when the parser is built. Defaults come from TrainConfig and are shown in --help; the
    options of the models, methods and engines come from their declarations (:func:`component_options`)."""
    return _core_options(dataset_names(), model_names(), method_names())


def _core_options(
    datasets: list[str], models: list[str], methods: list[str]
) -> list[tuple[str, str, dict[str, Any], str]]:
    return [
        ("--data", "data", {}, f"data set name (registered: {', '.join(datasets)})"),
        ("--data-root", "data_root", {}, "folder holding the data set's files (on-disk data sets)"),
        ("--workers", "workers", {"type": int}, "DataLoader worker processes for streamed data sets"),
        (
            "--train-subset",
            "train_subset",
            {"type": int},
            "train on a class-balanced random subset of this many training examples (quick experiments on big sets)",
        ),
        (
            "--noise",
            "noise",
            {"choices": NOISE_KINDS + ("instance", "file") + MASK_NOISE_KINDS},
            "label noise: 'symmetric' flips to a different class (exact rate), 'symmetric-uniform' resamples "
            "over all classes (the paper's code), 'pair' c->c+1, 'cifar10-asymmetric', 'cifar100-asymmetric' "
            "(next class in the super-class), 'cifar100-hierarchical' (any other class of the super-class), "
            "'instance' (instance-dependent, Xia et al. 2020), 'file' (real noisy labels from --noise-file); "
            "mask noise (--data masks): 'paper' (the L2B paper's rotate, erode / dilate, ellipse), 'boundary', "
            "'drop', 'spurious', 'coarse', or 'file' (--noise-file: a folder of the given noisy masks named like "
            "the images, the data's own masks then the truth)",
        ),
        (
            "--noise-rate",
            "noise_rate",
            {"type": float},
            "fraction of training labels corrupted (masks: of training masks, default 1)",
        ),
        (
            "--noise-file",
            "noise_file",
            {},
            "file of real noisy labels, one per training example in order "
            "(.pt as CIFAR-10N/100N, .npy, .npz, .csv, .txt, .json)",
        ),
        (
            "--noise-label",
            "noise_label",
            {},
            "which label set of --noise-file, e.g. worse_label, aggre_label, random_label1, noisy_label",
        ),
        (
            "--trusted",
            "trusted",
            {"metavar": "FOLDER_OR_LIST"},
            "checked images for the meta set: a folder of class sub-folders named like the training classes, or a "
            "path,label list (class names or indices); those that are also training files are taken out of "
            "training, whatever their folder; for --data masks, checked masks in any layout --data-root takes "
            "(images/ + masks/, a volume folder, an image,mask CSV), matched to the training images by file",
        ),
        (
            "--trusted-test",
            "trusted_test",
            {"metavar": "FOLDER_OR_LIST"},
            "checked images to measure accuracy on (same forms as --trusted); without it, a data set of unchecked "
            "labels gets no test set and no test accuracy",
        ),
        (
            "--selection-fraction",
            "selection_fraction",
            {"type": float, "metavar": "F"},
            "hold this share of the trusted examples out of the meta set, stratified, and choose the checkpoint "
            "on them (so not on the examples the weights were fitted to)",
        ),
        ("--num-meta", "num_meta", {"type": int}, "size of the meta set (meta source 'split' and 'confident')"),
        (
            "--meta-source",
            "meta_source",
            {"choices": META_SOURCES},
            "'trusted': the images of --trusted; 'split': a clean class-balanced subset taken out of the training "
            "split (benchmarks, whose labels are true); 'file': the training examples listed in --meta-file (lines "
            "index[,label]); 'confident': no clean data, rebuilt every epoch after warm-up from examples the model "
            "predicts confidently and in agreement with their label; 'none': no meta set (ce, bootstrap, dividemix)",
        ),
        ("--meta-file", "meta_file", {}, "list of trusted training examples by position, for --meta-source file"),
        (
            "--allow-incomplete-meta",
            "allow_incomplete_meta",
            {"action": "store_true"},
            "accept a meta set missing some class (a warning instead of an error)",
        ),
        (
            "--test-fraction",
            "test_fraction",
            {"type": float},
            "share of a single-tree data set held out as the test split (0: none)",
        ),
        ("--model", "model", {"choices": models}, "network"),
        (
            "--init-weights",
            "init_weights",
            {"metavar": "PATH"},
            "start the model from this state dict: a .safetensors file (Hugging Face, timm) or a torch file "
            "(torch.save(model.state_dict())); neither runs code. torchvision's ResNet layout is read, and a "
            "classifier for another number of classes is re-initialised",
        ),
        ("--method", "method", {"choices": methods}, "training method"),
        (
            "--augment",
            "augment",
            {"action": "store_true"},
            "random crop (4-pixel padding) and horizontal flip of image batches, done on the device",
        ),
        (
            "--feature-noise",
            "feature_noise",
            {"type": float, "metavar": "STD"},
            "add Gaussian noise of this std to every training batch: the stand-in for image augmentation on data "
            "without one (digits, feature vectors); DivideMix needs one of the two. Not a published augmentation",
        ),
        ("--epochs", "epochs", {"type": int}, "training epochs (warm-up included)"),
        ("--warmup-epochs", "warmup_epochs", {"type": int}, "epochs of plain cross-entropy before the method starts"),
        ("--batch-size", "batch_size", {"type": int}, "noisy batch size"),
        ("--meta-batch-size", "meta_batch_size", {"type": int}, "clean meta batch size"),
        ("--lr", "lr", {"type": float}, "SGD learning rate (cosine schedule)"),
        ("--momentum", "momentum", {"type": float}, "SGD momentum"),
        ("--weight-decay", "weight_decay", {"type": float}, "SGD weight decay"),
        ("--nesterov", "nesterov", {"action": "store_true"}, "Nesterov momentum"),
        ("--seed", "seed", {"type": int}, "seed for noise, meta split, initialisation and sampling"),
        ("--device", "device", {}, DEVICE_HELP),
        (
            "--precision",
            "precision",
            {"choices": PRECISIONS},
            "fp32, or bf16: training steps under bfloat16 autocast (a GPU speed-up), the meta-gradient and so "
            "the weights still in float32",
        ),
        (
            "--channels-last",
            "channels_last",
            {"action": "store_true"},
            "channels-last memory format for convolution weights (faster cuDNN kernels on a GPU)",
        ),
        (
            "--max-bad-steps",
            "max_bad_steps",
            {"type": int},
            "steps with a non-finite loss or meta-gradient are skipped; this many in a row stop the run",
        ),
        (
            "--test-every",
            "test_every",
            {"type": int, "metavar": "N"},
            "evaluate the test set every N epochs, at the last one and whenever the meta accuracy improves "
            "(default 1: every epoch; the selected checkpoint's test accuracy is exact either way)",
        ),
    ]


# Defaults that depend on the data or on other keys, said in words.
_SHOWN_DEFAULTS = {
    "noise": "symmetric on benchmark data sets (digits, CIFAR, MNIST ...), none on imagefolder, csv, clothing1m, masks",
    "noise_rate": "0.4 when noise is simulated (1 for mask noise)",
    "test_fraction": "0.2; 0 on data of unchecked labels without simulated noise",
    "meta_source": "trusted with --trusted, split on benchmarks, none on data of unchecked labels",
    "selection_fraction": 0.0,
    "warmup_epochs": "an eighth of the epochs",
}
_GROUPS = {"--data": "data and noise", "--model": "model and method", "--epochs": "optimisation", "--seed": "run"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a classifier on noisy labels",
        description="Train a classifier on noisy labels. With no options: L2B on scikit-learn's digits with "
        "40% symmetric noise (labels flipped to a different class), 100 clean meta examples. "
        "Options given on the command line override those of --config.",
    )
    g = p.add_argument_group("config")
    g.add_argument(
        "--config",
        default=None,
        metavar="FILE_OR_NAME",
        help="YAML file of config keys, or the name of a shipped config: "
        f"{', '.join(list_configs())} (see --print-config)",
    )
    g.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        default=None,
        help="a named set of config values over --config, under the options given here: "
        + "; ".join(f"{name} ({_preset_values(name)}): {p['help']}" for name, p in PRESETS.items()),
    )
    g.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    g.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="continue an interrupted run from its last checkpoint with its own config (options that would "
        "change it are refused; --threads, --workers, --quiet and --tensorboard may differ)",
    )
    defaults = train_defaults()
    components = component_options()
    for flag, key, kw, text in _options():
        # the options the data sets declare follow --workers; those of the models, methods and
        # engines close their group
        placed = {"--train-subset": ("data",), "--epochs": ("models", "methods", "meta/engines")}.get(flag, ())
        if placed:
            for option, default, _ in (c for c in components if c[2] in placed):
                add_option_flag(g, option, default)
        if flag in _GROUPS:
            g = p.add_argument_group(_GROUPS[flag])
        default = defaults[key]
        shown = _SHOWN_DEFAULTS.get(key, list(default) if isinstance(default, tuple) else default)
        g.add_argument(flag, dest=key, default=argparse.SUPPRESS, help=f"{text} (default: {shown})", **kw)
    g.add_argument(
        "--out",
        type=Path,
        default=None,
        help="run directory (default: runs/<time>-<method>-<data>-<noise><rate>-s<seed>)",
    )
    g.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: 1 for the MLP, whose small matrices gain nothing "
        "from more and lose badly on a shared CPU; torch's choice for other models)",
    )
    g.add_argument(
        "--tensorboard",
        action="store_true",
        help="also log every epoch's numbers to RUN_DIR/tensorboard (pip install 'l2b[tensorboard]')",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """Defaults <- --config file <- command-line options, validated."""
    from ..configs import config_path, load_yaml_file
    from ..training import TrainConfig

    values: dict[str, Any] = {}
    source = "command line"
    if args.config is not None:
        path = config_path(args.config)
        source = str(path)
        doc = load_yaml_file(path)
        doc = {} if doc is None else doc
        if not isinstance(doc, dict):
            raise ValueError(f"{path} must hold a mapping of config keys, got {type(doc).__name__}")
        # A run directory's config.yaml nests the keys under "config".
        values.update(_paths_from(doc["config"] if isinstance(doc.get("config"), dict) else doc, args.config, path))
    if getattr(args, "preset", None) is not None:
        values.update(PRESETS[args.preset]["values"])
        source += f" and --preset {args.preset}"
    keys = {key for _, key, _, _ in _options()} | {option.config_key for option, _, _ in component_options()}
    values.update({k: v for k, v in vars(args).items() if k in keys})
    return TrainConfig.from_dict(values, source=source)


def _preset_values(name: str) -> str:
    return ", ".join(f"{k} {v}" for k, v in PRESETS[name]["values"].items())


def _paths_from(values: dict[str, Any], given: str, path: Path) -> dict[str, Any]:
    """A config file's relative paths are relative to the file's own folder (a shipped config's,
    named without a path, to the working directory), so a config travels with its data."""
    from ..training.config import PATH_KEYS

    if given in list_configs() and not Path(given).is_file():
        return dict(values)
    out = dict(values)
    for key in PATH_KEYS:
        value = out.get(key)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            out[key] = str(path.parent.resolve() / value)
    return out


def resume_config(args: argparse.Namespace) -> TrainConfig:
    """The config of the run in ``args.resume``, with the options of :data:`RESUME_MAY_CHANGE`
    taken from the command line. Any other option, or a --config key, that differs from the run's
    own value is refused, all of them named with both values; one that agrees is accepted."""
    from ..configs import config_path, load_yaml_file
    from ..rundir import CONFIG
    from ..training.config import PATH_KEYS, flat_options, read_run_config
    from ..training.run import RESUME_MAY_CHANGE

    run_dir = Path(args.resume)
    config = read_run_config(run_dir)
    recorded = config.to_flat_dict()
    flags = {key: flag for flag, key, _, _ in _options()} | {o.config_key: o.flag for o, _, _ in component_options()}
    given: dict[str, tuple[str, Any]] = {}  # key -> (where it was given, value)
    if args.config is not None:
        path = config_path(args.config)
        doc = load_yaml_file(path) or {}
        if not isinstance(doc, dict):
            raise ValueError(f"{path} must hold a mapping of config keys, got {type(doc).__name__}")
        for key, value in flat_options(doc["config"] if isinstance(doc.get("config"), dict) else doc).items():
            if key not in recorded:
                raise ValueError(f"{path}: unknown key {key!r}; known keys: {', '.join(recorded)}")
            given[key] = (f"--config {args.config}: {key}", value)
    given.update({key: (flags[key], value) for key, value in vars(args).items() if key in flags})
    for key in PATH_KEYS:  # recorded absolute: compare what the given path names
        if key in given and isinstance(given[key][1], str) and given[key][1]:
            given[key] = (given[key][0], os.path.abspath(os.path.expanduser(given[key][1])))
    conflicts = [
        f"{where} {_shown(value)} (the run has {_shown(recorded[key])})"
        for key, (where, value) in given.items()
        if key not in RESUME_MAY_CHANGE and not _same_value(value, recorded[key])
    ]
    if args.out is not None and Path(args.out).resolve() != run_dir.resolve():
        conflicts.append(f"--out {args.out} (the run is {run_dir})")
    if conflicts:
        raise ValueError(
            f"--resume {run_dir}: {'; '.join(conflicts)}: a resumed run keeps the config it started with "
            f"({run_dir / CONFIG}); drop these options to resume it, or start a new run with them and another --out"
        )
    changes = {key: value for key, (_, value) in given.items() if key in RESUME_MAY_CHANGE}
    return config.replace(**changes) if changes else config


def _same_value(given: Any, recorded: Any) -> bool:
    if isinstance(given, (list, tuple)) and isinstance(recorded, (list, tuple)):
        return len(given) == len(recorded) and all(map(_same_value, given, recorded))
    if isinstance(given, bool) or isinstance(recorded, bool):
        return given is recorded
    return given == recorded


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(map(_shown, value))
    return "unset" if value is None else str(value)


def run(args: argparse.Namespace) -> int:
    import yaml
    from tqdm.auto import tqdm

    from .. import distributed
    from ..rundir import CHECKPOINT, resume_command
    from ..training import resolve_device, run_experiment
    from ..training.threads import check_threads, set_process_threads

    check_threads(args.threads)  # before any work
    # On a terminal: tqdm's progress bars, with the epoch lines written above them. Into a file or
    # a pipe: no bars (their carriage returns and escape codes would fill the log), plain lines.
    interactive = sys.stderr.isatty()
    log = None if args.quiet else (tqdm.write if interactive else _plain_line)
    if args.resume is not None:
        if args.preset is not None:
            raise ValueError("--preset changes the config, and --resume continues a run with its own: drop --preset")
        config = resume_config(args)
        out, resume = args.resume, True
    else:
        config = resolve_config(args)
        out, resume = args.out, False
    if args.print_config:
        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
        return 0
    set_process_threads(config.model, args.threads)
    progress = not args.quiet and interactive
    rate = "" if config.noise_rate is None else f"{config.noise_rate:g}"  # None: labels from a file
    out = out or Path("runs") / (
        f"{time.strftime('%Y%m%d-%H%M%S')}-{config.method}-{config.data}-{config.noise}{rate}-s{config.seed}"
    )
    # Under torchrun: one process per device, joined through torch.distributed (gloo on CPU, nccl on GPU).
    ctx = distributed.setup_from_env(device=resolve_device(config.device))
    try:
        if ctx is not None:
            out = distributed.broadcast_object(out)  # rank 0's clock names the run directory
            if not ctx.is_main:
                log = None
        if log:
            where = "" if ctx is None else f", {ctx.world_size} processes ({ctx.backend})"
            log(
                f"l2b train: {config.method} on {config.data}, {_noise_words(config)}, {_meta_words(config)}, "
                f"{config.epochs} epochs ({config.warmup_epochs} of them warm-up with plain cross-entropy), "
                f"seed {config.seed}{where} -> {out}"
            )
        try:
            summary = run_experiment(
                config,
                out_dir=out,
                progress=progress and log is not None,
                log=log,
                resume=resume,
                tensorboard=args.tensorboard,
                dist=ctx,
            )
        except RuntimeError as err:
            if ctx is None:
                raise
            # A peer that died surfaces as gloo's / NCCL's error in the survivors: say what it means.
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise distributed.PeerLost(
                f"another process of this torchrun job stopped ({reason}); the last checkpoint in {out} is intact: "
                f"resume with `{resume_command(out)}`"
            ) from None
        except KeyboardInterrupt as err:
            if (Path(out) / CHECKPOINT).exists() and (ctx is None or ctx.is_main):
                signum = getattr(err, "signum", signal.SIGINT)
                what = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
                print(f"{what}: resume with `{resume_command(out)}`", flush=True)
            raise
    finally:
        if ctx is not None:
            try:
                distributed.shutdown()
            except RuntimeError:  # the group is already broken (a peer died): nothing left to leave
                pass
    if ctx is not None and not ctx.is_main:
        return 0
    print(json.dumps(summary, indent=2))
    return 0


def _noise_words(config: TrainConfig) -> str:
    if config.noise == "none":
        return f"no simulated noise (the given {'masks' if config.task == 'segmentation' else 'labels'} as they are)"
    if config.noise == "file":
        return f"noisy {'masks' if config.task == 'segmentation' else 'labels'} from {config.noise_file}"
    if config.task == "segmentation":
        return f"{config.noise} mask noise simulated on {config.noise_rate:.0%} of the masks"
    return f"{config.noise} noise {config.noise_rate:g} simulated"


def _meta_words(config: TrainConfig) -> str:
    if config.task == "segmentation" and config.meta_source == "split":
        cases = config.data_options.get("meta_cases")
        what = f"{cases} whole cases" if cases else f"{config.num_meta} images in whole cases"
        return f"meta set: {what} of the training split with their clean masks"
    return {
        "trusted": f"meta set: the checked images of {config.trusted}",
        "split": f"meta set: {config.num_meta} examples of the training split with their true labels",
        "file": f"meta set: the examples listed in {config.meta_file}",
        "confident": "meta set: chosen each epoch among confidently predicted examples (no checked data)",
        "none": "no meta set",
    }[config.meta_source]


def _plain_line(line: str) -> None:
    print(line, flush=True)
