"""The CIFAR-100 class hierarchy: 100 fine classes grouped into 20 super-classes.

Class indices follow the ``fine_label_names`` and ``coarse_label_names``
lists of the ``meta`` file shipped with the ``cifar-100-python`` archive, in
which both lists are sorted alphabetically. Each super-class holds exactly
five fine classes.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CIFAR100_ASYMMETRIC_MAP",
    "CIFAR100_COARSE_LABEL_NAMES",
    "CIFAR100_FINE_LABEL_NAMES",
    "cifar100_superclasses",
]

CIFAR100_FINE_LABEL_NAMES: tuple[str, ...] = (
    "apple", "aquarium_fish", "baby", "bear", "beaver",
    "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly",
    "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach",
    "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard",
    "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid",
    "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum",
    "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew",
    "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table",
    "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe",
    "whale", "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip
"""Names of the 100 fine classes; position ``i`` is fine label ``i``."""

CIFAR100_COARSE_LABEL_NAMES: tuple[str, ...] = (
    "aquatic_mammals",
    "fish",
    "flowers",
    "food_containers",
    "fruit_and_vegetables",
    "household_electrical_devices",
    "household_furniture",
    "insects",
    "large_carnivores",
    "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores",
    "medium_mammals",
    "non-insect_invertebrates",
    "people",
    "reptiles",
    "small_mammals",
    "trees",
    "vehicles_1",
    "vehicles_2",
)
"""Names of the 20 super-classes; position ``j`` is coarse label ``j``."""

# Members of each super-class, by name (the published CIFAR-100 hierarchy).
_MEMBERS: dict[str, tuple[str, ...]] = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}


def _build_superclasses() -> np.ndarray:
    fine_index = {name: i for i, name in enumerate(CIFAR100_FINE_LABEL_NAMES)}
    table = np.full(len(CIFAR100_FINE_LABEL_NAMES), -1, dtype=np.int64)
    for coarse, members in _MEMBERS.items():
        for name in members:
            table[fine_index[name]] = CIFAR100_COARSE_LABEL_NAMES.index(coarse)
    if (table < 0).any() or (np.bincount(table, minlength=20) != 5).any():  # pragma: no cover
        raise AssertionError("inconsistent CIFAR-100 hierarchy table")
    table.setflags(write=False)
    return table


_SUPERCLASSES = _build_superclasses()


def cifar100_superclasses() -> np.ndarray:
    """Super-class of every CIFAR-100 fine class.

    Returns
    -------
    np.ndarray
        Shape ``(100,)``, dtype ``int64``; entry ``i`` is the coarse label
        (in ``[0, 20)``, see :data:`CIFAR100_COARSE_LABEL_NAMES`) of fine
        label ``i`` (see :data:`CIFAR100_FINE_LABEL_NAMES`). A fresh, writable
        copy on every call.

    Examples
    --------
    >>> int(cifar100_superclasses()[CIFAR100_FINE_LABEL_NAMES.index("whale")])
    0
    """
    return _SUPERCLASSES.copy()


def _siblings() -> np.ndarray:
    """``(100, 5)`` fine classes of each class's super-class, in increasing fine order."""
    order = np.argsort(_SUPERCLASSES, kind="stable")  # fine indices grouped by super-class
    groups = order.reshape(20, 5)
    return groups[_SUPERCLASSES]


def _asymmetric_map() -> dict[int, int]:
    out: dict[int, int] = {}
    for group in np.argsort(_SUPERCLASSES, kind="stable").reshape(20, 5):
        for pos, fine in enumerate(group):
            out[int(fine)] = int(group[(pos + 1) % 5])
    return dict(sorted(out.items()))


CIFAR100_ASYMMETRIC_MAP: dict[int, int] = _asymmetric_map()
"""Flips of the CIFAR-100 asymmetric noise benchmark: every fine class goes to
the next fine class (in increasing index order, cyclically) of its own
super-class, e.g. beaver (4) -> dolphin (30) -> otter (55) -> seal (72)
-> whale (95) -> beaver (4)."""
