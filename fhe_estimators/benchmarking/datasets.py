"""The data sets and bit budgets of every benchmark here, and the one train/test split they share."""

from __future__ import annotations

import numpy as np

DATASETS = {
    "breast_cancer": "classification",
    "iris": "classification",
    "digits": "classification",
    "diabetes": "regression",
}
#: (n_w_bits, n_a_bits, n_accum_bits); None means "each library's own defaults".
BUDGETS = {"(3,3,10)": (3, 3, 10), "(4,4,12)": (4, 4, 12), "defaults": None}


def load_split(name: str):
    """Scaled train/test split of a scikit-learn toy data set, as in every benchmark here."""
    from sklearn import datasets
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    scaler = StandardScaler().fit(X_train)
    return (
        scaler.transform(X_train).astype(np.float32),
        scaler.transform(X_test).astype(np.float32),
        y_train,
        y_test,
    )


def parse_budget(text: str) -> tuple[int, int, int] | None:
    """A budget name of :data:`BUDGETS` or ``"n_w,n_a,n_accum"`` (e.g. ``"2,2,7"``)."""
    if text in BUDGETS:
        return BUDGETS[text]
    try:
        bits = tuple(int(part) for part in text.strip("()").split(","))
    except ValueError:
        bits = ()
    if len(bits) != 3 or min(bits) <= 0:
        raise ValueError(f"Budget {text!r} is neither one of {list(BUDGETS)} nor 'n_w,n_a,n_accum' (e.g. '3,3,10').")
    return bits
