"""What a run shows while it trains: one human-readable line per epoch record."""

from __future__ import annotations

from typing import Any

__all__ = ["format_epoch"]


def format_epoch(record: dict[str, Any], epochs: int) -> str:
    """One human-readable line per epoch."""
    parts = [f"epoch {record['epoch']:3d}/{epochs} [{record['phase']}]", f"loss {record['train_loss']:.4f}"]
    parts += [
        f"{k.replace('_accuracy', ' acc')} {record[k]:.4f}" for k in ("meta_accuracy", "test_accuracy") if k in record
    ]
    if "train_accuracy" in record:
        parts.append(f"train acc {record['train_accuracy']:.4f}")
    if "memorised" in record:
        parts.append(f"memorised {record['memorised']:.2f}")
    if "alpha_noisy" in record:
        parts.append(f"alpha clean/noisy {record['alpha_clean']:.2f}/{record['alpha_noisy']:.2f}")
    if "true_class_share" in record:
        parts.append(f"weight on true class {record['true_class_share']:.2f}")
    if record.get("skipped_steps"):
        parts.append(f"{record['skipped_steps']} non-finite steps skipped")
    parts.append(f"{record['images_per_second']:.0f} img/s")
    return "  ".join(parts)
