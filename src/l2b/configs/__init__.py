"""Shipped YAML configs: `l2b train --config NAME` (a name from :func:`list_configs`) or a path.

Each file is a mapping of TrainConfig keys; comments in it say where every value comes from.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml


class DuplicateKeyError(ValueError):
    """A YAML mapping holds the same key twice (PyYAML alone would keep the last silently)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping holding the same key twice."""


def _mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:  # a list or mapping as a key: construct_mapping says so, as a YAML error
            break
        if key in seen:
            raise DuplicateKeyError(
                f"duplicate key {key!r} on line {key_node.start_mark.line + 1} (first on line {seen[key] + 1}); "
                "keep one of them"
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_yaml(text: str, *, source: str = "YAML") -> Any:
    """Parse YAML as yaml.safe_load does (no objects built), but refuse duplicate keys.

    Raises
    ------
    ValueError
        One line naming `source`: ``{source}: duplicate key 'lr' on line 3 (first on line 1)...``
        (:class:`DuplicateKeyError`), or ``{source} is not valid YAML: ...``.
    """
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except DuplicateKeyError as err:
        raise DuplicateKeyError(f"{source}: {err}") from None
    except yaml.YAMLError as err:  # safe loading builds no objects: a python/* tag is refused here
        raise ValueError(f"{source} is not valid YAML: {' '.join(str(err).split())}") from None


def load_yaml_file(path: str | Path) -> Any:
    """:func:`load_yaml` of a UTF-8 file; a file that is not UTF-8 text is a ValueError naming it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text ({err})") from None
    return load_yaml(text, source=str(path))


def list_configs() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in files(__name__).iterdir() if p.name.endswith(".yaml"))


def config_path(name_or_path: str | Path) -> Path:
    """A path as given, or the shipped config of that name. Raises FileNotFoundError naming both."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = files(__name__) / f"{name_or_path}.yaml"
    if shipped.is_file():
        return Path(str(shipped))
    raise FileNotFoundError(
        f"config {name_or_path!s} is neither a file nor a shipped config ({', '.join(list_configs())})"
    )
