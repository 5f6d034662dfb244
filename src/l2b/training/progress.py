"""What a run shows while it trains: one human-readable line per epoch record."""

from __future__ import annotations

from typing import Any

__all__ = ["format_epoch"]


def format_epoch(record: dict[str, Any], epochs: int) -> str:
    """One human-readable line per epoch: accuracies, or Dice for masks (records holding
    ``meta_dice`` / ``test_dice``)."""
    parts = [f"epoch {record['epoch']:3d}/{epochs} [{record['phase']}]", f"loss {record['train_loss']:.4f}"]
    metric = "dice" if "meta_dice" in record or "test_dice" in record else "accuracy"
    shown = {"accuracy": "acc", "dice": "Dice"}[metric]
    parts += [f"{k} {shown} {record[f'{k}_{metric}']:.4f}" for k in ("meta", "test") if f"{k}_{metric}" in record]
    if "train_accuracy" in record:
        parts.append(f"train acc {record['train_accuracy']:.4f}")
    if "memorised" in record:
        parts.append(f"memorised {record['memorised']:.2f}")
    if "alpha_noisy" in record or "alpha_clean" in record:
        clean, noisy = record.get("alpha_clean", float("nan")), record.get("alpha_noisy", float("nan"))
        parts.append(f"alpha clean/noisy {clean:.2f}/{noisy:.2f}")
    if "true_class_share" in record:
        parts.append(f"weight on true class {record['true_class_share']:.2f}")
    if record.get("skipped_steps"):
        parts.append(f"{record['skipped_steps']} non-finite steps skipped")
    parts.append(f"{record['images_per_second']:.0f} img/s")
    return "  ".join(parts)
