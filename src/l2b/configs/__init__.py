"""Shipped YAML configs: `l2b train --config NAME` (a name from :func:`list_configs`) or a path.

Each file is a mapping of TrainConfig keys; comments in it say where every value comes from.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


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
