"""Properties (hypothesis) of what l2b does with malformed input: list files of random rows,
bytes, delimiters, headers, BOMs and line endings, and configs (dicts and YAML text) of wrong-typed
values and unknown keys. Every failure is the project's own clean error naming the file or key
(docs/faults.md), never a TypeError, KeyError, IndexError or OverflowError from deep inside."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from l2b.cli.main import main
from l2b.data.lists import load_csv, read_label_list
from l2b.training import TrainConfig
from l2b.training.config import option_keys

PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
IMAGES = ("a.png", "b.png", "c.png", "d.png", "e.png", "f.png")
K = 3  # classes of the structured lists


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """A folder of six real 4x4 PNGs, shared by every example (list files go elsewhere)."""
    root = tmp_path_factory.mktemp("images")
    for i, name in enumerate(IMAGES):
        Image.new("RGB", (4, 4), (40 * i, 7, 200)).save(root / name)
    return root


def _write_list(folder: str, lines: list[str], *, bom: bool, crlf: bool) -> Path:
    path = Path(folder) / "labels.csv"
    text = ("\ufeff" if bom else "") + ("\r\n" if crlf else "\n").join(lines) + "\n"
    path.write_bytes(text.encode("utf-8"))
    return path


def _names_the_list(err: BaseException, path: Path) -> None:
    event(f"refused: {type(err).__name__}")
    assert isinstance(err, ValueError), f"{type(err).__name__}: {err}"
    assert path.name in str(err), str(err)


# ----------------------------------------------------------------------------------------------
# list files: rows whose validity is known, so the count of a list that loads can be checked
# ----------------------------------------------------------------------------------------------

NOT_DIGITS = st.text(st.characters(categories=("L",)), min_size=1, max_size=6)  # letters: never \d
BAD_LABELS = st.one_of(
    st.integers(max_value=-1).map(str),
    st.integers(min_value=K, max_value=10**40).map(str),
    st.just("9" * 5000),  # beyond int()'s digit limit
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    NOT_DIGITS,
    st.just(""),
)


@st.composite
def row(draw, image: str | None = None, *, good: bool | None = None) -> tuple[list[str], bool]:
    """(fields, valid) for one row of an index-labelled `path,label` list of K classes."""
    image = draw(st.sampled_from(IMAGES)) if image is None else image
    label = str(draw(st.integers(min_value=0, max_value=K - 1)))
    kinds = {True: ["valid", "extra"], False: ["short", "empty_path", "unknown_path", "bad_label"]}
    kind = draw(st.sampled_from(kinds[good] if good is not None else kinds[True] + kinds[False]))
    if kind == "valid":
        return [image, draw(st.sampled_from(["", "+", "0"])) + label], True
    if kind == "extra":  # columns after the label are ignored
        return [image, label, *draw(st.lists(NOT_DIGITS | st.just(""), min_size=1, max_size=3))], True
    if kind == "short":
        return [image], False
    if kind == "empty_path":
        return ["", label], False
    if kind == "unknown_path":
        return ["missing-" + draw(NOT_DIGITS) + ".png", label], False
    return [image, draw(BAD_LABELS)], False


@st.composite
def bodies(draw, *, max_good: int = len(IMAGES)) -> list[tuple[list[str], bool]]:
    """Good rows of distinct files, then, as often as not, bad rows or a repeated file among them."""
    files = draw(st.permutations(IMAGES))[: draw(st.integers(min_value=1, max_value=max_good))]
    body = [draw(row(f, good=True)) for f in files]
    spoilers = draw(st.lists(row(good=False) | row(draw(st.sampled_from(files)), good=True), max_size=2))
    for spoiler in spoilers:
        body.insert(draw(st.integers(min_value=0, max_value=len(body))), spoiler)
    return body


@PROPERTY
@given(
    body=bodies(),
    noise=st.lists(st.sampled_from(["", "   ", "# a comment", "  # path,label"]), max_size=3),
    delimiter=st.sampled_from([",", "\t"]),
    header=st.booleans(),
    bom=st.booleans(),
    crlf=st.booleans(),
    pad=st.booleans(),
    seed=st.randoms(use_true_random=False),
)
def test_a_list_loads_its_valid_unique_rows_or_names_itself(
    images, body, noise, delimiter, header, bom, crlf, pad, seed
):
    join = (" " + delimiter + " ") if pad else delimiter  # fields are stripped
    lines = [join.join(fields) for fields, _ in body]
    for extra in noise:  # blank and comment lines count for nothing
        lines.insert(seed.randint(0, len(lines)), extra)
    if header:
        lines.insert(0, join.join(["path", "label"]))
    written = [fields[0] for fields, _ in body]
    expect_ok = all(ok for _, ok in body) and len(set(written)) == len(written)
    with tempfile.TemporaryDirectory() as folder:
        path = _write_list(folder, lines, bom=bom, crlf=crlf)
        try:
            parsed, fmt = read_label_list(path, base=images, label_format="index", num_classes=K, header=header)
        except Exception as err:  # noqa: BLE001 - the property is about which exceptions
            _names_the_list(err, path)
            assert not expect_ok, f"refused a good list: {err}"
            return
    assert expect_ok, f"accepted a bad list: {lines}"
    assert fmt == "index"
    assert parsed.written == written
    assert all(os.path.isfile(p) for p in parsed.paths)
    assert parsed.labels.dtype == np.int64
    np.testing.assert_array_equal(parsed.labels, [int(fields[1]) for fields, _ in body])
    assert ((parsed.labels >= 0) & (parsed.labels < K)).all()


# ----------------------------------------------------------------------------------------------
# list files: anything at all
# ----------------------------------------------------------------------------------------------

FIELD = st.one_of(
    st.sampled_from(IMAGES),
    st.sampled_from(["path", "label", "image", "class", "y", "#x", '"', '"a,b"', "..", "/", "../images"]),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats().map(str),
    st.text(max_size=8),
)
LABEL = st.one_of(
    st.integers(min_value=0, max_value=6).map(str), BAD_LABELS, st.sampled_from(["\u0663", "\uff11", "²"])
)
LINE = st.one_of(
    st.tuples(st.sampled_from(IMAGES), LABEL).map(",".join),  # a file that exists, any label
    st.tuples(st.lists(FIELD, max_size=4), st.sampled_from([",", "\t", " ", ";", "|", ", ", ""])).map(
        lambda t: t[1].join(t[0])
    ),
    st.text(max_size=20),
)


@st.composite
def plausible_lines(draw) -> list[str]:
    """Lines of existing files, one delimiter, any labels, and now and then a stray LINE."""
    files = draw(st.lists(st.sampled_from(IMAGES), min_size=1, unique=True))
    sep = draw(st.sampled_from([",", "\t", " ", " , "]))
    lines = [f + sep + draw(LABEL) for f in files]
    if draw(st.booleans()):
        lines.insert(0, sep.join(draw(st.permutations(["path", draw(st.sampled_from(["label", "class", "y"]))]))))
    for stray in draw(st.lists(LINE, max_size=1)):
        lines.insert(draw(st.integers(min_value=0, max_value=len(lines))), stray)
    return lines


@PROPERTY
@given(
    lines=st.lists(LINE, max_size=8) | plausible_lines(),
    junk=st.none() | st.none() | st.binary(min_size=1, max_size=12),
    bom=st.booleans(),
    crlf=st.booleans(),
    header=st.sampled_from([None, True, False]),
    label_format=st.sampled_from(["auto", "index", "name"]),
    num_classes=st.none() | st.integers(min_value=1, max_value=5),
)
def test_any_list_file_loads_consistently_or_names_itself(
    images, lines, junk, bom, crlf, header, label_format, num_classes
):
    with tempfile.TemporaryDirectory() as folder:
        path = _write_list(folder, lines, bom=bom, crlf=crlf)
        if junk is not None:  # random bytes, often not UTF-8
            with path.open("ab") as f:
                f.write(junk + b"\n")
        raw = path.read_bytes()
        try:
            parsed, fmt = read_label_list(
                path, base=images, label_format=label_format, num_classes=num_classes, header=header
            )
        except Exception as err:  # noqa: BLE001
            _names_the_list(err, path)
            return
        assert all(os.path.isfile(p) for p in parsed.paths)
    assert len(parsed.paths) == len(parsed.labels) == len(parsed.lines) == len(parsed.written) > 0
    assert len(set(parsed.keys)) == len(parsed.keys)  # repeats are refused, not kept
    assert parsed.labels.dtype == np.int64 and (parsed.labels >= 0).all()
    if fmt == "index" and num_classes is not None:
        assert (parsed.labels < num_classes).all()
    if fmt == "name":  # names are indexed in order of appearance
        assert set(parsed.labels.tolist()) == set(range(int(parsed.labels.max()) + 1))
    # Every entry line became one example: none dropped, none counted twice.
    text = raw.decode("utf-8-sig").splitlines()
    entries = [n for n, line in enumerate(text, 1) if line.strip() and not line.lstrip().startswith("#")]
    assert parsed.lines == entries[len(entries) - len(parsed.lines) :]
    assert len(entries) - len(parsed.lines) in ((1,) if header else (0,) if header is False else (0, 1))


@settings(max_examples=25, deadline=None)
@given(
    train=bodies(max_good=4),
    test=st.none() | st.lists(row(), min_size=1, max_size=2),
    test_fraction=st.sampled_from([0.2, 0.5, 0.99]),
)
def test_load_csv_builds_data_sets_or_names_the_list(images, train, test, test_fraction):
    # num_classes is given: an inferred one is the largest label + 1, so that a lone label of 10**12
    # would ask for 10**12 class names (memory, not an error; not refused so far).
    with tempfile.TemporaryDirectory() as folder:
        lists = Path(folder)
        (lists / "train.csv").write_text("".join(",".join(f) + "\n" for f, _ in train))
        if test is not None:
            (lists / "test.csv").write_text("".join(",".join(f) + "\n" for f, _ in test))
        try:
            tr, te = load_csv(
                root=images,
                train_list=lists / "train.csv",
                test_list=None if test is None else lists / "test.csv",
                test_fraction=test_fraction,
                label_format="index",
                num_classes=K,
                image_size=8,
            )
        except Exception as err:  # noqa: BLE001
            assert isinstance(err, ValueError), f"{type(err).__name__}: {err}"
            assert "train.csv" in str(err) or "test.csv" in str(err), str(err)
            return
    n_train = len(train) if test is None else len(train) + len(test)
    assert len(tr.labels) + len(te.labels) == n_train
    for ds in (tr, te):
        assert ds.num_classes == K and ds.labels.dtype == np.int64
        assert ((ds.labels >= 0) & (ds.labels < K)).all()
        assert ds.inputs.shape[1:] == (3, 8, 8) and np.isfinite(ds.inputs).all()


@settings(max_examples=20, deadline=None)
@given(name=st.text(st.characters(categories=("L", "N")), min_size=1, max_size=12))
def test_a_missing_list_file_is_file_not_found(tmp_path_factory, name):
    folder = tmp_path_factory.getbasetemp() / "no-such-folder"
    with pytest.raises(FileNotFoundError, match="not found") as info:
        load_csv(train_list=folder / f"{name}.csv")
    assert name in str(info.value)


# ----------------------------------------------------------------------------------------------
# configs
# ----------------------------------------------------------------------------------------------

FIELDS = {f.name: str(f.type) for f in dataclasses.fields(TrainConfig)}
CHOICES = [
    "digits", "l2b", "ce", "l2rw", "dividemix", "dividemix-l2b", "bootstrap-hard", "mlp", "small_cnn",
    "resnet18", "symmetric", "pair", "file", "instance", "split", "confident", "forward", "head", "tail",
    "org", "softmax", "sigmoid", "clean", "labelled", "auto", "cpu",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=50),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0.0, max_value=1.0),
    st.sampled_from(CHOICES),
    st.text(max_size=10),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5,
)
OPTIONS = option_keys()  # flat key -> (kind, declaration)
KEYS = st.sampled_from(sorted(FIELDS) + sorted(OPTIONS)) | st.text(max_size=12)


def _config_dicts():
    return st.dictionaries(KEYS, VALUES, max_size=6)


@settings(max_examples=150, deadline=None)
@given(values=_config_dicts() | st.dictionaries(st.sampled_from(sorted(FIELDS)), SCALARS, max_size=4))
def test_from_dict_returns_a_config_or_names_the_key(values):
    try:
        config = TrainConfig.from_dict(values, source="fuzz.yaml")
    except Exception as err:  # noqa: BLE001
        assert isinstance(err, ValueError), f"{type(err).__name__}: {err}"
        message = str(err)
        assert message.startswith("fuzz.yaml"), message
        # A key at fault, as written or (for a method's own checks) as the method's option name.
        names = [str(k) for k in values] + [repr(k) for k in values]
        names += [OPTIONS[k][1].name for k in values if k in OPTIONS]
        for block in ("method_options", "model_options"):  # a nested block: its own keys
            if isinstance(values.get(block), dict):
                names += [str(k) for k in values[block]]
        if any(isinstance(values.get(block), dict) for block in ("method_options", "model_options")):
            names += [option.config_key for _, option in OPTIONS.values()]
        assert any(name in message for name in names), message
        return
    assert isinstance(config, TrainConfig)
    for key, value in config.to_flat_dict().items():  # every value of its declared type
        kind = OPTIONS[key][1].type if key in OPTIONS else FIELDS[key].replace(" | None", "")
        if value is None:
            continue
        if kind == "float":
            assert isinstance(value, float) and not math.isnan(value), (key, value)
        elif kind == "int":
            assert isinstance(value, int) and not isinstance(value, bool), (key, value)
        elif kind in ("bool", "str"):
            assert type(value).__name__ == kind, (key, value)
        else:
            assert all(isinstance(v, int) and not isinstance(v, bool) for v in value), (key, value)


def _yaml_texts():
    dumped = st.one_of(
        _config_dicts(),
        _config_dicts().map(lambda d: {"config": d}),  # a run directory's layout
        VALUES,
        st.dictionaries(st.integers() | st.booleans() | st.none(), SCALARS, max_size=3),
    ).map(lambda doc: yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    spliced = st.tuples(dumped, st.integers(min_value=0, max_value=200), st.text(max_size=8)).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] :]
    )
    snippets = st.sampled_from(
        [
            "lr: 0.1\nlr: 0.2\n",
            "? [1, 2]\n: 3\n",
            "{[1]: 2}\n",
            "? {a: 1}\n: 3\n",
            "1: 2\nlr: 0.1\n",
            "config: [1, 2]\n",
            "config: {epochs: 1e400}\n",
            "a: &x [1]\nb: *x\n",
            "!!python/object/apply:os.system [echo hi]\n",
            "lr: !!binary aGk=\n",
            "seed: 2001-12-14\n",
            "---\nlr: 1\n---\nlr: 2\n",
            "epochs: 0x10\nwarmup_epochs: 0o1\n",
            "hidden: 1_000\n",
            "lr: .nan\n",
            "lr: .inf\n",
        ]
    )
    return st.one_of(dumped, spliced, snippets, st.text(max_size=40)).map(lambda s: s.encode("utf-8")) | st.binary(
        max_size=30
    )


@settings(max_examples=120, deadline=None)
@given(data=_yaml_texts(), bom=st.booleans())
def test_print_config_exits_0_or_2_and_writes_nothing_else(data, bom):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.yaml"
        path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
        out, err = io.StringIO(), io.StringIO()
        cwd = os.getcwd()
        os.chdir(folder)  # a run directory, if any were made, would land here
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(["train", "--config", str(path), "--print-config"])
        finally:
            os.chdir(cwd)
        assert os.listdir(folder) == ["fuzz.yaml"]
    stdout, stderr = out.getvalue(), err.getvalue()
    event(f"exit {code}")
    assert code in (0, 2), (code, stderr)
    assert "Traceback" not in stderr
    if code == 2:
        assert stdout == ""
        assert stderr.startswith("l2b train: error: ") and stderr.count("\n") == 1, stderr
        assert "fuzz.yaml" in stderr, stderr
        return
    assert stderr == ""
    printed = yaml.safe_load(stdout)  # the resolved config, which reads back as itself
    assert printed == TrainConfig.from_dict(printed).to_dict()
