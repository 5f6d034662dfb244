"""A scikit-learn classifier trained with L2B: an MLP on feature vectors with noisy labels.

The common case: embeddings from a pretrained network, labels that are partly wrong, and a small
subset whose labels were checked by hand.

Examples
--------
>>> from l2b.sklearn import L2BClassifier
>>> clf = L2BClassifier(epochs=40, random_state=0)
>>> clf.fit(X_noisy, y_noisy, X_meta=X_checked, y_meta=y_checked)
>>> clf.predict(X_new), clf.predict_proba(X_new), clf.score(X_test, y_test)
>>> clf.label_issues_  # the rows of X whose label looks wrong, most suspicious first
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d, validate_data

from .api import fit as _fit
from .data import FeatureNoise
from .methods import TwoNetworks, create_method, method_class
from .models import create_model
from .reports.issues import label_issues
from .training.optim import Optimization
from .training.progress import format_epoch
from .training.setup import resolve_device, seeded
from .training.threads import check_threads, torch_threads, training_threads
from .training.trainer import predict_proba as _predict_proba

__all__ = ["L2BClassifier"]

_FLOATS = (np.float32, np.float64)


class L2BClassifier(ClassifierMixin, BaseEstimator):
    """MLP classifier for 2-D feature arrays trained on noisy labels with meta-learned weights.

    Features are standardised with the training set's mean and standard deviation, then an
    ``mlp`` (Linear -> BatchNorm -> ReLU per hidden layer) is trained with SGD, a cosine schedule
    and `warmup_epochs` of plain cross-entropy, exactly as ``l2b train`` trains its models, and
    the epoch with the best accuracy on the clean meta set is kept. Class labels may be any
    hashable values (strings, non-contiguous integers); see ``classes_``.

    Parameters
    ----------
    hidden : tuple of int, default=(256,)
        Hidden layer widths; ``()`` gives multinomial logistic regression.
    method : {"l2b", "l2rw", "ce", "bootstrap-soft", "bootstrap-hard", "dividemix", "dividemix-l2b"}, default="l2b"
    epochs : int, default=40
        Training epochs, warm-up included.
    batch_size : int, default=64
        Noisy batch size (at least 2: BatchNorm); capped at the number of training examples.
    meta_batch_size : int, default=100
    lr : float, default=0.1
        Initial SGD learning rate, annealed to 0 with a cosine schedule.
    momentum : float, default=0.9
    weight_decay : float, default=5e-4
    warmup_epochs : int or None, default=None
        Epochs of plain cross-entropy before the method starts; None: an eighth of `epochs`
        (5 of the default 40). One that leaves no epoch for a method other than ``"ce"`` is refused.
    num_meta : int or None, default=None
        Used only when `fit` gets no ``X_meta``: the size of the class-balanced subset of
        ``(X, y)`` taken out of the training data and used as the clean meta set. **This treats
        the labels of those examples as trusted**; pass a checked subset as ``X_meta, y_meta``
        whenever one exists. None means ``max(n_classes, min(100, n_samples // 10))`` for the
        meta methods (``l2b``, ``l2rw``) and no meta set for the others (they then keep the last
        epoch); 0 means no meta set.
    mixup : bool, default=False
        Train on mixed-up pairs (Beta(32, 32)), as in the paper (not for the DivideMix methods,
        which always mix).
    feature_noise : float or None, default=None
        Standard deviation of Gaussian noise added to the standardised features of every training
        batch. The DivideMix methods (``"dividemix"``, ``"dividemix-l2b"``, two networks trained
        on two noisy views of every row) need it and use 0.3 when None; this stand-in for image
        augmentation is not the published method's.
    device : str, default="cpu"
        "cpu", "cuda", "cuda:1", "auto", ...
    random_state : int, RandomState instance or None, default=None
        Seeds the meta subset, the initialisation and the batch order. The global torch RNG is
        left as it was.
    verbose : bool, default=False
        Print one line per epoch.
    threads : int or None, default=None
        CPU threads torch uses during `fit` and `predict`; None means 1, the thread policy of
        ``l2b train`` for the MLP (its small matrices gain nothing from more threads and lose
        badly on a busy machine). The previous setting is restored afterwards.
    allow_incomplete_meta : bool, default=False
        Accept `y_meta` without an example of some class of `y` (a warning instead of an error;
        the meta-gradient then never sees that class).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when X had string column names.
    mean_, scale_ : ndarray of shape (n_features_in_,)
        The standardisation (training statistics; a constant feature gets scale 1).
    model_ : torch.nn.Module
        The trained network (eval mode), mapping standardised features to logits.
    meta_index_ : ndarray of int or None
        Rows of X used as the meta set when it was taken from ``(X, y)``, else None.
    history_ : list of dict
        One record per epoch (loss, learning rate, meta accuracy, ...).
    best_epoch_ : int
        The epoch whose weights were kept (1-based).
    label_issues_ : dict of str to ndarray
        The rows of X trained on, ranked by how likely their label is correct (most suspicious
        first): :meth:`find_label_issues` at threshold 0.5. The rows taken out of X as the meta
        set (``meta_index_``) are not in it: their labels were trusted, not trained on as noisy.
    """

    def __init__(
        self,
        hidden=(256,),
        method="l2b",
        epochs=40,
        batch_size=64,
        meta_batch_size=100,
        lr=0.1,
        momentum=0.9,
        weight_decay=5e-4,
        warmup_epochs=None,
        num_meta=None,
        mixup=False,
        feature_noise=None,
        device="cpu",
        random_state=None,
        verbose=False,
        threads=None,
        allow_incomplete_meta=False,
    ):
        self.hidden = hidden
        self.method = method
        self.epochs = epochs
        self.batch_size = batch_size
        self.meta_batch_size = meta_batch_size
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.warmup_epochs = warmup_epochs
        self.num_meta = num_meta
        self.mixup = mixup
        self.feature_noise = feature_noise
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.threads = threads
        self.allow_incomplete_meta = allow_incomplete_meta

    def fit(self, X, y, X_meta=None, y_meta=None):
        """Train on features `X` (n_samples, n_features) with noisy labels `y`.

        `X_meta`, `y_meta`: a small set with trusted labels (the meta set). Without them, the
        meta methods take ``num_meta`` class-balanced examples out of ``(X, y)`` and trust their
        labels (see ``num_meta``). Returns self.
        """
        X, y = validate_data(self, X, y, dtype=_FLOATS)
        check_classification_targets(y)
        hidden = self._check_params()
        if (X_meta is None) != (y_meta is None):
            raise ValueError("pass both X_meta and y_meta, or neither")
        encoder = LabelEncoder()
        if y_meta is not None:
            X_meta = check_array(X_meta, dtype=_FLOATS, input_name="X_meta")
            y_meta = column_or_1d(y_meta)
            if X_meta.shape[1] != X.shape[1]:
                raise ValueError(f"X_meta has {X_meta.shape[1]} features but X has {X.shape[1]}")
            if X_meta.shape[0] != y_meta.shape[0]:
                raise ValueError(f"X_meta has {X_meta.shape[0]} rows but y_meta has {y_meta.shape[0]}")
            check_classification_targets(y_meta)
            if (y.dtype.kind in "OUS") != (y_meta.dtype.kind in "OUS"):
                raise ValueError(f"y and y_meta hold labels of different types ({y.dtype} and {y_meta.dtype})")
            try:
                encoder.fit(np.concatenate([y, y_meta]))
            except TypeError:
                raise ValueError("y and y_meta hold labels of different types") from None
        else:
            encoder.fit(y)
        self.classes_ = encoder.classes_
        k = len(self.classes_)
        if X.shape[0] < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 samples, got {X.shape[0]} sample")
        if k < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 classes, got 1 class")

        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        needs_meta = create_method(self.method).needs_meta
        y_enc = encoder.transform(y)
        self.mean_ = X.mean(axis=0, dtype=np.float64)
        scale = X.std(axis=0, dtype=np.float64)
        self.scale_ = np.where(scale > 1e-12 * np.maximum(1.0, np.abs(self.mean_)), scale, 1.0)
        Xs = self._standardise(X)

        self.meta_index_ = None
        train_rows = np.arange(X.shape[0])  # the row of X behind every training example
        if y_meta is not None:
            meta = (self._standardise(X_meta), encoder.transform(y_meta))
            train = (Xs, y_enc)
        else:
            num_meta = self.num_meta
            if num_meta is None:
                num_meta = max(k, min(100, X.shape[0] // 10)) if needs_meta else 0
            if num_meta == 0:
                if needs_meta:
                    raise ValueError(
                        f"method {self.method!r} needs a clean meta set: pass X_meta and y_meta, or "
                        "num_meta > 0 to trust a class-balanced subset of (X, y)"
                    )
                meta, train = None, (Xs, y_enc)
            else:
                meta_idx = _balanced_subset(y_enc, num_meta, k, rng)
                rest = np.setdiff1d(np.arange(X.shape[0]), meta_idx)
                if len(rest) < 2:
                    raise ValueError(
                        f"taking a meta set of {len(meta_idx)} out of {X.shape[0]} samples leaves "
                        f"{len(rest)} to train on; pass X_meta/y_meta or a smaller num_meta"
                    )
                self.meta_index_, train_rows = meta_idx, rest
                meta, train = (Xs[meta_idx], y_enc[meta_idx]), (Xs[rest], y_enc[rest])
        if needs_meta and y_meta is not None and not self.allow_incomplete_meta:
            missing = [c for c in self.classes_.tolist() if c not in set(np.unique(y_meta).tolist())]
            if missing:  # said in the user's labels, before l2b.fit would say it in indices
                shown = ", ".join(map(repr, missing[:5])) + (" ..." if len(missing) > 5 else "")
                raise ValueError(
                    f"y_meta has no example of class {shown} ({len(missing)} of {k} classes of y): add checked "
                    "examples of it, or accept the incomplete meta set with allow_incomplete_meta=True"
                )
        if needs_meta and len(meta[1]) < 2:
            raise ValueError(f"the meta set has {len(meta[1])} sample; method {self.method!r} needs at least 2")

        dev = resolve_device(self.device)
        algo = method_class(self.method)
        nets = []
        for i in range(algo.networks):  # DivideMix: a second network, from seed + 3 as l2b train does
            with seeded(seed + 3 * i, dev):
                nets.append(create_model("mlp", num_classes=k, in_shape=(X.shape[1],), hidden=hidden))
        if len(nets) == 1:
            model = nets[0]
        else:
            with seeded(seed + 6, dev):  # the projection heads, for a method that has them
                model = TwoNetworks(*nets, projection_dim=algo.projection_dim)
        augment = None
        if algo.views:  # two views of every row: Gaussian noise on the standardised features
            augment = FeatureNoise(0.3 if self.feature_noise is None else float(self.feature_noise))
        elif self.feature_noise is not None:
            augment = FeatureNoise(float(self.feature_noise))
        callbacks = (lambda r: print(format_epoch(r, self.epochs), flush=True),) if self.verbose else ()
        with torch_threads(training_threads("mlp", self.threads)):  # the CLI's policy, restored after
            result = _fit(
                model,
                train,
                meta,
                method=self.method,
                epochs=self.epochs,
                batch_size=min(self.batch_size, len(train[1])),
                meta_batch_size=self.meta_batch_size,
                lr=float(self.lr),
                momentum=float(self.momentum),
                weight_decay=float(self.weight_decay),
                warmup_epochs=self.warmup_epochs,
                device=dev,
                seed=seed,
                num_classes=k,
                callbacks=callbacks,
                augment=augment,
                mixup=bool(self.mixup),  # the DivideMix methods refuse it by name: they always mix
                allow_incomplete_meta=bool(self.allow_incomplete_meta),
            )
        self.model_ = model
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        # Kept so that find_label_issues re-applies the rule at any threshold without the data.
        self._per_example = {**result.per_example_arrays(), "index": train_rows}
        self.label_issues_ = self.find_label_issues()
        return self

    def find_label_issues(self, *, threshold: float = 0.5) -> dict[str, np.ndarray]:
        """The rows of X trained on, ranked by how likely their label is correct.

        The rule of ``l2b train``'s ``label_issues.csv`` (:func:`l2b.reports.issues.label_issues`):
        ``label_quality`` is the probability the selected model gives the row's label, and a row
        is flagged when that is below `threshold` and another class is predicted. The rows taken
        out of X as the meta set (``meta_index_``) are left out: their labels were trusted.

        Parameters
        ----------
        threshold : float in [0, 1], default=0.5

        Returns
        -------
        dict of numpy columns, each (n_trained,), most suspicious first (``label_quality``
        ascending, ties by row): ``index`` (the row of X passed to `fit`), ``given_label`` and
        ``predicted_label`` (values from ``classes_``), ``label_quality``, ``is_label_issue``,
        ``alpha_share`` (NaN for methods without weights), and ``clean_probability`` for the
        DivideMix methods. ``pandas.DataFrame(table)`` makes a data frame of it (pandas is not
        a dependency of l2b).
        """
        check_is_fitted(self)
        table = label_issues(self._per_example, threshold=threshold)
        table["given_label"] = self.classes_[table["given_label"]]
        table["predicted_label"] = self.classes_[table["predicted_label"]]
        return table

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes), columns ordered as ``classes_``."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=_FLOATS, reset=False)
        dev = next(self.model_.parameters()).device
        inputs = torch.as_tensor(self._standardise(X), device=dev)
        with torch_threads(training_threads("mlp", self.threads)):
            probs = _predict_proba(self.model_, inputs).cpu().numpy().astype(np.float64)
        return probs / probs.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`."""
        return np.log(np.clip(self.predict_proba(X), 1e-300, None))

    def predict(self, X):
        """The most probable class of every row, as labels from ``classes_``."""
        probs = self.predict_proba(X)  # first: it raises NotFittedError before classes_ is read
        return self.classes_[np.argmax(probs, axis=1)]

    def _standardise(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean_) / self.scale_).astype(np.float32)

    def _check_params(self) -> tuple[int, ...]:
        """Range-check the constructor parameters (sklearn: at fit time, not in __init__)."""

        def is_int(v: Any) -> bool:
            return isinstance(v, Integral) and not isinstance(v, bool)

        hidden = (self.hidden,) if is_int(self.hidden) else self.hidden
        try:
            hidden = tuple(hidden)
        except TypeError:
            raise ValueError(f"hidden={self.hidden!r} must be a tuple of positive ints") from None
        if not all(is_int(h) and h >= 1 for h in hidden):
            raise ValueError(f"hidden={self.hidden!r} must be a tuple of positive ints")
        check_threads(self.threads)
        if not (self.num_meta is None or (is_int(self.num_meta) and self.num_meta >= 0)):
            raise ValueError(f"num_meta={self.num_meta!r} must be None or a non-negative int")
        # The optimisation settings are checked where l2b train and l2b.fit check them.
        Optimization(
            epochs=self.epochs,
            warmup_epochs=self.warmup_epochs,
            batch_size=self.batch_size,
            meta_batch_size=self.meta_batch_size,
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
        )
        create_method(self.method)  # ValueError naming the known methods
        return tuple(int(h) for h in hidden)


def _balanced_subset(y: np.ndarray, num: int, k: int, rng: np.random.RandomState) -> np.ndarray:
    """`num` indices spread as evenly as the classes allow (the remainder to random classes),
    leaving at least one example of every class with two or more for training. Sorted."""
    counts = np.bincount(y, minlength=k)
    quota = np.full(k, num // k)
    quota[rng.choice(k, num % k, replace=False)] += 1
    quota = np.minimum(quota, np.where(counts > 1, counts - 1, counts))
    chosen = [rng.choice(np.flatnonzero(y == c), quota[c], replace=False) for c in range(k) if quota[c]]
    return np.sort(np.concatenate(chosen)).astype(np.int64)
