"""What a user who installs the wheel gets: the package with its configs, py.typed and LICENSE,
metadata that a current setuptools writes without deprecation warnings, one version, and a
docstring on every public name (what the API reference renders)."""

from __future__ import annotations

import importlib
import importlib.util
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import l2b

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "l2b"

# Builds the wheel with the environment's setuptools through the PEP 517 hook that pip and
# `python -m build` call, offline; a SetuptoolsDeprecationWarning (the old `license = {text}`
# table, say) is an error.
_BUILD = """
import sys, warnings
from setuptools import build_meta
from setuptools.warnings import SetuptoolsDeprecationWarning
warnings.simplefilter("error", SetuptoolsDeprecationWarning)
print(build_meta.build_wheel(sys.argv[1]))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """The wheel built from a copy of the tree (so no build/ or egg-info lands in the checkout)."""
    tree, dist = tmp_path_factory.mktemp("tree"), tmp_path_factory.mktemp("dist")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    done = subprocess.run(
        [sys.executable, "-c", _BUILD, str(dist)], cwd=tree, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    name = done.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(dist / name) as zf:
        yield zf


def _dist_info(wheel: zipfile.ZipFile) -> str:
    return f"l2b-{l2b.__version__}.dist-info"


def test_the_wheel_holds_the_package_its_configs_py_typed_and_license(wheel):
    names = set(wheel.namelist())
    expected = {
        "l2b/" + p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".yaml", ".typed")
    }
    assert {"l2b/py.typed", "l2b/configs/digits-l2b.yaml", "l2b/cli/main.py"} <= expected
    assert expected - names == set()
    info = _dist_info(wheel)
    assert f"{info}/licenses/LICENSE" in names
    assert wheel.read(f"{info}/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
    assert "l2b = l2b.cli:main" in wheel.read(f"{info}/entry_points.txt").decode()


def test_the_wheel_holds_nothing_from_tests_or_benchmarks(wheel):
    tops = {name.split("/")[0] for name in wheel.namelist()}
    assert tops == {"l2b", _dist_info(wheel)}
    assert not [n for n in wheel.namelist() if re.search(r"(^|/)(tests?|benchmarks|docs)/", n)]


def test_the_metadata_has_the_spdx_license_version_and_classifiers(wheel):
    meta = wheel.read(f"{_dist_info(wheel)}/METADATA").decode()
    headers = meta.split("\n\n", 1)[0].splitlines()
    assert f"Version: {l2b.__version__}" in headers
    assert "License-Expression: MIT" in headers
    assert "License-File: LICENSE" in headers
    assert not [h for h in headers if h.startswith(("License:", "Classifier: License ::"))]
    assert "Classifier: Typing :: Typed" in headers
    assert any(h.startswith("Provides-Extra: docs") for h in headers)


def test_the_version_is_defined_once_and_in_the_changelog():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?(a|b|rc|dev|post)\d*)?", l2b.__version__)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "l2b.__version__"}
    assert f"## [{l2b.__version__}]" in (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")


def test_l2b_version_prints_the_version_without_importing_torch():
    code = (
        "import sys\nfrom l2b.cli.main import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit as e:\n    code = e.code\n"
        "print('torch' in sys.modules, code)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"l2b {l2b.__version__}", "False 0"]


def _docs_hooks():
    spec = importlib.util.spec_from_file_location("l2b_docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_public_name_has_a_docstring():
    """What the API reference renders; ``make docs`` also checks that each name has an entry."""
    pytest.importorskip("griffe", reason="the docs extra: pip install -e '.[docs]'")
    hooks = _docs_hooks()
    assert set(hooks.MODULES) >= {"l2b", "l2b.meta", "l2b.noise", "l2b.methods", "l2b.models", "l2b.reports"}
    assert "l2b.sklearn" in hooks.MODULES
    assert hooks.undocumented() == []
