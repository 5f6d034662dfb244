"""MkDocs hooks for the l2b documentation site (named in mkdocs.yml).

At build time they
- add the pages that live outside docs/: the README as the home page, CHANGELOG.md, and every
  repository file a page links to (benchmark result tables and figures), and rewrite the links
  of every page so that the repository's relative links work on the site too;
- generate the API reference, one page per public module, with one entry per name of the
  module's ``__all__`` (rendered by mkdocstrings from the docstrings, read statically by griffe);
- generate the choices page from the live registries (methods, models, data sets, configs) and
  the name lists of :mod:`l2b.names` (engines, noise models, ...): nothing there is written by hand;
- check, after the build, that every public name has a docstring and a rendered entry. A name
  without one is a warning, so ``mkdocs build --strict`` (``make docs``, CI) fails on it.
"""

from __future__ import annotations

import html
import importlib
import inspect
import logging
import posixpath
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.l2b")

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"

#: The public modules that get an API page: every name of their ``__all__`` gets an entry.
MODULES = (
    "l2b",
    "l2b.meta",
    "l2b.methods",
    "l2b.models",
    "l2b.noise",
    "l2b.reports",
    "l2b.segmentation",
    "l2b.sklearn",
)

#: Repository files shown under another name on the site.
RENAMED = {"README.md": "index.md", "CHANGELOG.md": "changelog.md"}

# An inline link or image target: ](target) or ](target "title").
_LINK = re.compile(r"(\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")
_FENCE = re.compile(r"^(```|~~~)")
# Sphinx roles in docstrings (:func:`x`), rendered by mkdocstrings as the role's name then <code>.
_ROLE = re.compile(r":(?:func|meth|class|mod|data|attr|obj|exc|const|py:\w+):(?=<code>)")


def _site_uri(repo_path: str) -> str:
    """Where the repository file `repo_path` (posix, relative to the root) sits on the site."""
    if repo_path in RENAMED:
        return RENAMED[repo_path]
    if repo_path.startswith("docs/"):
        return repo_path[len("docs/") :]
    return repo_path


def _targets(text: str):
    """(target, anchor) of each relative inline link of markdown `text`, outside code fences."""
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if fenced:
            continue
        for match in _LINK.finditer(line):
            target = match.group(2)
            if "://" in target or target.startswith(("#", "/", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            yield path, anchor


def _linked_repo_files(start: list[str]) -> tuple[list[str], list[str]]:
    """Repository files and folders (posix paths) outside docs/ that the markdown files `start`
    link to, directly or through the markdown files they link to. A linked folder brings all of
    its files (and gets a generated index page on the site)."""
    seen: set[str] = set(start)
    queue = list(start)
    found, folders = [], []
    while queue:
        page = queue.pop()
        if not page.endswith(".md"):
            continue
        for path, _ in _targets((ROOT / page).read_text(encoding="utf-8")):
            if not path:
                continue
            target = posixpath.normpath(posixpath.join(posixpath.dirname(page), path))
            if target in seen or target.startswith("../") or target.startswith("docs/"):
                continue
            seen.add(target)
            if (ROOT / target).is_dir():
                folders.append(target)
                inside = [p.relative_to(ROOT).as_posix() for p in sorted((ROOT / target).rglob("*")) if p.is_file()]
                news = [p for p in inside if p not in seen and not _hidden(p)]
                seen.update(news)
                found += news
                queue += news
            elif (ROOT / target).is_file():  # a missing target is left to MkDocs' link check
                found.append(target)
                queue.append(target)
    return sorted(found), sorted(folders)


def _hidden(repo_path: str) -> bool:
    return any(part.startswith((".", "__")) for part in repo_path.split("/"))


def _folder_page(folder: str) -> str:
    """An index of a linked repository folder: its files, linked."""
    lines = [f"# `{folder}/`", "", "The files of this folder of the repository.", ""]
    for path in sorted((ROOT / folder).rglob("*")):
        rel = path.relative_to(ROOT / folder).as_posix()
        if path.is_file() and not _hidden(rel):
            lines.append(f"- [`{rel}`]({rel})")
    return "\n".join(lines) + "\n"


def _first_paragraph(doc: str | None) -> str:
    """The first paragraph of a docstring on one line, Sphinx roles and double backticks as markdown code."""
    text = inspect.cleandoc(doc or "").split("\n\n")[0]
    text = " ".join(text.split())
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", text)
    return text.replace("``", "`").replace("|", "\\|")


def _api_page(module_name: str) -> str:
    module = importlib.import_module(module_name)
    lines = [
        f"# `{module_name}`",
        "",
        f"::: {module_name}",
        "    options:",
        "      members: false",
        "      show_root_heading: false",
        "      show_root_toc_entry: false",
        "",
    ]
    for name in module.__all__:
        lines += [f"::: {module_name}.{name}", ""]
    return "\n".join(lines)


def _api_index() -> str:
    lines = [
        "# API reference",
        "",
        "Rendered from the docstrings (NumPy style) of each public module; each page lists the names",
        "of the module's `__all__`. `import l2b` loads its names on first use and does not import torch;",
        "the other modules import it. The choice lists of the registries are on [Choices](choices.md).",
        "",
        "| module | what it holds |",
        "|---|---|",
    ]
    for name in MODULES:
        doc = _first_paragraph(importlib.import_module(name).__doc__)
        lines.append(f"| [`{name}`]({name}.md) | {doc} |")
    return "\n".join(lines) + "\n"


def _choices_page() -> str:
    """The registries' choice lists, read from the live registries and name lists."""
    from l2b import names
    from l2b.configs import list_configs
    from l2b.data import DATASETS, UNCHECKED_LABELS
    from l2b.meta.engines import ENGINE_REGISTRY
    from l2b.methods import METHODS
    from l2b.models import MODELS
    from l2b.options import options_table

    out = [
        "# Choices",
        "",
        "Every list on this page is read from the registry or name list that defines it when the site",
        "is built: a method, model or data set registered in the code appears here without an edit.",
        "They are the lists `l2b train --help` shows and a config file is checked against. Each option",
        "table is derived from the entry's declarations (`l2b.options.Option`): the key in the config's",
        "nested block, the flat key and command-line flag, type, default and allowed values.",
        "",
        "## Methods (`--method`, `method`)",
        "",
        "Registered with `l2b.methods.register_method`; built by `l2b.methods.create_method(name, **options)`.",
        "",
    ]
    for name in METHODS.names():
        cls = METHODS.get(name)
        out += [
            f"### `{name}`",
            "",
            f"`{cls.__module__}.{cls.__qualname__}`: {_first_paragraph(cls.__doc__)}",
            "",
            options_table(METHODS.options(name), block="method_options"),
            "",
        ]
    out += [
        "",
        "## Models (`--model`, `model`)",
        "",
        "Registered with `l2b.models.register_model`; built by",
        "`l2b.models.create_model(name, num_classes=..., in_shape=..., **options)`.",
        "",
    ]
    for name in MODELS.names():
        out += [f"### `{name}`", "", options_table(MODELS.options(name), block="model_options"), ""]
    out += [
        "",
        "## Engine options",
        "",
        "Each engine declares its own options; every method that computes meta-gradient weights takes them.",
        "",
    ]
    for name in ENGINE_REGISTRY.names(sort=False):
        if ENGINE_REGISTRY.options(name):
            out += [f"### `{name}`", "", options_table(ENGINE_REGISTRY.options(name), block="method_options"), ""]
    out += [
        "",
        "## Data sets (`--data`, `data`)",
        "",
        "The keys of `l2b.data.DATASETS`; each loader returns `(train, test)`. Unchecked labels are the",
        "ones a user gave: nothing is scored against them as a truth.",
        "",
    ]
    for name, loader in DATASETS.items():
        unchecked = UNCHECKED_LABELS.get(name, ())
        labels = f"unchecked labels: {', '.join(unchecked)}" if unchecked else "checked labels"
        where = f"`{loader.__module__}.{loader.__qualname__}`"
        out.append(f"- **`{name}`** ({where}; {labels}): {_first_paragraph(loader.__doc__)}")
    lists = [
        ("Meta-gradient engines (`--engine`, `engine`)", "ENGINES", "l2b.meta.meta_weights"),
        ("Weight normalisations (`--normalize`, `normalize`)", "NORMALIZATIONS", "l2b.meta.normalize_scores"),
        ("Noise models (`--noise`, `noise`)", "NOISE_KINDS", "l2b.noise.make_noise"),
        ("Meta-set sources (`--meta-source`, `meta_source`)", "META_SOURCES", "l2b.TrainConfig"),
        ("Precisions (`--precision`, `precision`)", "PRECISIONS", "l2b.TrainConfig"),
    ]
    for title, attr, see in lists:
        values = ", ".join(f"`{value}`" for value in getattr(names, attr))
        out += ["", f"## {title}", "", values, "", f"`l2b.names.{attr}`; see [`{see}`][{see}]."]
    out += [
        "",
        "## Shipped configs (`--config`)",
        "",
        "`l2b.configs.list_configs()`: YAML files of `TrainConfig` keys inside the package.",
        "",
        ", ".join(f"`{name}`" for name in list_configs()),
        "",
    ]
    return "\n".join(out)


def on_files(files: Files, config) -> Files:
    """Add the README, the changelog, the linked repository files and the generated pages."""
    from mkdocs.structure.files import File

    linked, folders = _linked_repo_files(["README.md", "CHANGELOG.md", *_docs_md()])
    for repo_path in ["README.md", "CHANGELOG.md", *linked]:
        uri = _site_uri(repo_path)
        if files.get_file_from_path(uri) is None:
            files.append(File.generated(config, uri, abs_src_path=str(ROOT / repo_path)))
    generated = {f"{folder}/index.md": _folder_page(folder) for folder in folders}
    generated.update({"api/index.md": _api_index(), "api/choices.md": _choices_page()})
    generated.update({f"api/{name}.md": _api_page(name) for name in MODULES})
    for uri, content in generated.items():
        files.append(File.generated(config, uri, content=content))
    return files


def _docs_md() -> list[str]:
    return sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md"))


def _repo_path(file: File) -> str | None:
    """The repository path a site file was read from (None for a generated page)."""
    if file.abs_src_path is None:
        return None
    try:
        return Path(file.abs_src_path).resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return None


def on_page_markdown(markdown: str, page, config, files: Files) -> str:
    """Rewrite relative links, written against the repository's layout, to the site's layout."""
    source = _repo_path(page.file)
    if source is None:
        return markdown
    here = posixpath.dirname(page.file.src_uri)

    def rewrite(match: re.Match) -> str:
        target = match.group(2)
        path, sep, anchor = target.partition("#")
        if not path or "://" in path or path.startswith(("/", "mailto:")):
            return match.group(0)
        repo_target = posixpath.normpath(posixpath.join(posixpath.dirname(source), path))
        if (ROOT / repo_target).is_dir() and not repo_target.startswith("docs/"):
            repo_target += "/index.md"  # the folder's generated index page
        site_target = posixpath.relpath(_site_uri(repo_target), here or ".")
        return f"{match.group(1)}{site_target}{sep}{anchor}{match.group(3)}"

    out, fenced = [], False
    for line in markdown.splitlines(keepends=True):
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
        out.append(line if fenced else _LINK.sub(rewrite, line))
    return "".join(out)


def on_page_content(html_text: str, page, config, files: Files) -> str:
    """Drop the Sphinx role names (``:func:``) that docstrings put before a code span."""
    return _ROLE.sub("", html_text)


def undocumented() -> list[str]:
    """The public names (``module.name``) without a docstring, as griffe reads the source
    statically for mkdocstrings (``tests/test_packaging.py`` runs this check too)."""
    import griffe

    package = griffe.load("l2b", search_paths=[str(SRC)], docstring_parser="numpy")
    out = []
    for module_name in MODULES:
        for name in importlib.import_module(module_name).__all__:
            path = f"{module_name}.{name}"
            try:
                docstring = package[path.removeprefix("l2b.")].docstring
            except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
                docstring = None
            if docstring is None or not docstring.value.strip():
                out.append(path)
    return out


def on_post_build(config) -> None:
    """Warn (an error under --strict) for a public name without a docstring or a rendered entry."""
    site = Path(config["site_dir"])
    for module_name in MODULES:
        page = site / "api" / module_name / "index.html"
        rendered = page.read_text(encoding="utf-8") if page.is_file() else ""
        for name in importlib.import_module(module_name).__all__:
            path = f"{module_name}.{name}"
            if f'id="{html.escape(path)}"' not in rendered:
                log.warning(f"API reference: {path} has no entry in {page.relative_to(site)}")
    for path in undocumented():
        log.warning(f"API reference: {path} has no docstring")
