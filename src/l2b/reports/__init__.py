"""What a finished run says about its data: label issues, corrected labels, and reports.

:mod:`l2b.reports.issues` needs only numpy (and scikit-learn for average precision);
:mod:`l2b.reports.plots` imports matplotlib and is loaded only when asked for.
"""

from .issues import (
    COLUMNS,
    LABEL_ISSUES,
    PER_EXAMPLE,
    alpha_share,
    corrected_labels,
    detection_scores,
    label_issues,
    load_per_example,
    noise_mask,
    run_names,
    training_signal,
    write_label_issues,
    write_table,
)

__all__ = [
    "COLUMNS",
    "LABEL_ISSUES",
    "PER_EXAMPLE",
    "alpha_share",
    "corrected_labels",
    "detection_scores",
    "label_issues",
    "load_per_example",
    "noise_mask",
    "run_names",
    "training_signal",
    "write_label_issues",
    "write_table",
]
