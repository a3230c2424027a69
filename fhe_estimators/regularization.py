"""The regularization a fit trains with: the L2 penalty (``optimizer__weight_decay``) and how many
inputs each first-layer neuron may read (``first_layer_density``), given or chosen on the hold-out,
and which of ``n_init`` random initializations of that setting the hold-out keeps.

With ``optimizer__weight_decay="auto"`` (both estimators' default) one network per setting is
trained on the train part of :func:`~.holdout.internal_split` and the hold-out picks one
(:func:`~.holdout.choose_regularization`), as ``RidgeCV`` picks its alpha: first the penalties
(:func:`candidate_regularizations`, weakest first; a classifier's until a stronger one falls out of the
tie band of the best: :func:`~.holdout.past_the_best_penalty`), then, with ``first_layer_density="auto"`` (the default too),
sparse first layers (:func:`sparse_candidates`). Both ways of fitting choose the same way
(:func:`fit_best_on_holdout`): the tightening search (:mod:`.search`) keeps the chosen network as
its base; a plain fit (``tighten=False``) takes its settings and trains on all the data.

Why a sparse first layer: an L2 penalty shrinks every weight alike, so on data with irrelevant
features it must choose between fitting the noise columns and flattening the useful ones (moons
with 8 noise features: 0.848 test accuracy at any penalty, 0.92 on its 2 real features). A neuron
that keeps only its few largest input weights (pruned during training like the budget's) ignores
the rest: moons 0.888. The hold-out takes it only when it wins by more than a paired standard error
(:data:`~.holdout.SPARSE_STANDARD_ERRORS`): a win by one row of 107 had cost breast cancer 0.028.
Why several initializations (``n_init``): networks trained alike from different random weights end
apart at 3 bits (3-class set: test accuracy 0.813-0.869 over five seeds), and the hold-out tells
them apart (its log-likelihood ranked those five as their test accuracy did). The setting is chosen
first; :func:`best_initialization` then trains ``n_init - 1`` more networks at it and keeps the
one :func:`~.holdout.choose_initialization` prefers.
Why a wider network (``hidden_layer_sizes="auto"``, :func:`wider_network`): 32 neurons at 3 bits
fall short where the classes are many (10 classes: 0.744 against a float MLP's 0.810) and 64 win
it back at twice the lookups; elsewhere they only cost, so 64 must win the hold-out clearly.

docs/pruning.md has the measurements.
"""

from __future__ import annotations

import copy
import numbers
from functools import partial
from typing import NamedTuple

import numpy as np

from .budget import MAX_FREE_INPUT_BITS, first_layer_cap, terms_that_fit
from .parallel_fits import candidate_processes, fit_all
from .holdout import (
    AUTO_FIRST_LAYER_DENSITIES,
    AUTO_HIDDEN_LAYER_SIZES,
    AUTO_INIT_MIN_HOLDOUT,
    AUTO_MIN_SAMPLES,
    AUTO_SPARSE_MIN_HOLDOUT,
    AUTO_WEIGHT_DECAYS,
    FINER_INPUT_MIN_HOLDOUT,
    WIDER_MIN_HOLDOUT,
    HoldoutRows,
    choose_initialization,
    choose_penalty,
    choose_regularization,
    holdout_rows,
    PENALTY_STOP,
    internal_split,
    past_the_best_penalty,
    prefers_finer_input,
    prefers_wider,
)

#: The L2 penalty when "auto" has too few rows to choose (it keeps weights small, which is what
#: lets a pruned neuron fit its accumulator).
DEFAULT_WEIGHT_DECAY = 1e-4


class Regularization(NamedTuple):
    """One setting a fit trains with: the L2 penalty and the first layer's density."""

    weight_decay: float
    first_layer_density: float = 1.0


class HoldoutChoice(NamedTuple):
    """What a plain fit trains with on all the data: the setting and the initialization (what
    :func:`resolve_regularization` returns), and the hold-out scores they were chosen by (None
    when nothing was chosen)."""

    setting: Regularization
    scores: dict | None = None
    initialization: int = 0
    initialization_scores: list | None = None
    #: The model input's width the hold-out chose (:func:`finer_input`); None: the width rule's.
    input_bits: int | None = None
    input_bits_scores: dict | None = None
    #: The hidden widths the hold-out chose (:func:`wider_network`); None: :func:`given_hidden_sizes`.
    hidden_sizes: tuple | None = None
    hidden_sizes_scores: dict | None = None

    #: The fitted attribute each field of hold-out scores becomes (set only when there are scores).
    SCORE_ATTRIBUTES = {
        "scores": "regularization_scores_",
        "initialization_scores": "initialization_scores_",
        "input_bits_scores": "input_bits_scores_",
        "hidden_sizes_scores": "hidden_layer_sizes_scores_",
    }

    def score_attributes(self) -> dict:
        """``{fitted attribute: hold-out scores}`` of every choice that compared anything."""
        return {
            attribute: getattr(self, field)
            for field, attribute in self.SCORE_ATTRIBUTES.items()
            if getattr(self, field) is not None
        }


def weight_decay_parameter(estimator):
    """``optimizer__weight_decay`` as given, or the estimator's default (``_default_weight_decay``)."""
    return getattr(estimator, "optimizer__weight_decay", estimator._default_weight_decay)


def is_auto(value) -> bool:
    return isinstance(value, str) and value == "auto"


def check_weight_decay(value) -> float:
    """A penalty given as a number, as a float; a clear error otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f'optimizer__weight_decay must be a number >= 0 or "auto", got {value!r}.')
    return float(value)


def given_first_layer_density(estimator) -> float:
    """``first_layer_density`` when no hold-out chooses it: the parameter's number, dense for "auto"."""
    density = estimator.first_layer_density
    return 1.0 if is_auto(density) else float(density)


def given_hidden_sizes(estimator) -> tuple[int, ...]:
    """``hidden_layer_sizes`` when no hold-out chooses it: the parameter's widths as a tuple (an int
    is one layer), the first of :data:`~.holdout.AUTO_HIDDEN_LAYER_SIZES` for "auto"."""
    sizes = estimator.hidden_layer_sizes
    if is_auto(sizes):
        return AUTO_HIDDEN_LAYER_SIZES[0]
    return (int(sizes),) if isinstance(sizes, numbers.Integral) else tuple(int(size) for size in sizes)


def candidate_regularizations(estimator) -> list[Regularization]:
    """The settings "auto" compares first: the penalties of :data:`~.holdout.AUTO_WEIGHT_DECAYS`,
    weakest first, at the given first-layer density (dense when it is "auto"); :func:`fit_best_on_holdout`
    stops once they are past the best."""
    density = given_first_layer_density(estimator)
    return [Regularization(decay, density) for decay in AUTO_WEIGHT_DECAYS]


def sparse_candidates(estimator, n_inputs: int, n_holdout: int, penalty: float) -> list[Regularization]:
    """What "auto" compares next, with ``first_layer_density="auto"`` and a hold-out of at least
    :data:`~.holdout.AUTO_SPARSE_MIN_HOLDOUT` rows: the sparse first layers of
    :data:`~.holdout.AUTO_FIRST_LAYER_DENSITIES` at the weakest penalty and at ``penalty`` (the
    dense settings' choice). Sparsity is a regularizer of its own, which the weakest penalty
    leaves alone (moons: 0.864 against 0.844 at the chosen 0.1); on noisy data the chosen one
    still helps (the noisy regression). Densities that keep as many inputs as a denser one are
    left out."""
    if not is_auto(estimator.first_layer_density) or n_holdout < AUTO_SPARSE_MIN_HOLDOUT:
        return []
    caps = {n_inputs}
    settings = []
    for density in AUTO_FIRST_LAYER_DENSITIES:
        cap = first_layer_cap(n_inputs, density)
        if cap not in caps:
            caps.add(cap)
            settings += [Regularization(decay, density) for decay in sorted({min(AUTO_WEIGHT_DECAYS), penalty})]
    return settings


def fit_on_rows(
    estimator,
    X: np.ndarray,
    y: np.ndarray,
    rows: np.ndarray,
    regularization=None,
    initialization: int = 0,
    input_bits: int | None = None,
    hidden_sizes: tuple | None = None,
    **fit_params,
):
    """A copy of ``estimator`` fitted (plainly: no search) on ``X[rows], y[rows]`` (``y`` encoded)."""
    model = copy.deepcopy(estimator)
    # A refit must not score with the rounding an earlier search chose.
    model.rounding_threshold_bits_ = estimator.rounding_threshold_bits
    return model._fit_prepared(
        X[rows],
        y[rows],
        regularization=regularization,
        initialization=initialization,
        input_bits=input_bits,
        hidden_sizes=hidden_sizes,
        **fit_params,
    )


def fit_and_score(estimator, X: np.ndarray, y: np.ndarray, train, holdout, regularization, **fit_params):
    """:func:`fit_on_rows` on ``train`` at ``regularization``, with the fitted model's ``holdout`` rows."""
    model = fit_on_rows(estimator, X, y, train, regularization=regularization, **fit_params)
    return model, holdout_rows(model, X[holdout], y[holdout])


def refit_like(estimator, X: np.ndarray, y: np.ndarray, rows: np.ndarray, first, **changes):
    """:func:`fit_on_rows` at everything ``first`` was fitted with (setting, initialization, input
    width, hidden widths) but ``changes`` (``initialization``, ``input_bits`` or ``hidden_sizes``):
    how a challenger to ``first`` is trained."""
    fitted_like_first = dict(
        regularization=Regularization(first.weight_decay_, first.first_layer_density_),
        initialization=first.initialization_,
        input_bits=first.n_input_bits_,
        hidden_sizes=first.hidden_layer_sizes_,
    )
    return fit_on_rows(estimator, X, y, rows, **{**fitted_like_first, **changes})


def initialization_seed(seed: int, initialization: int) -> int:
    """Torch's seed for initialization ``initialization`` of a fit seeded ``seed``: ``seed`` itself
    for the first (so ``n_init=1`` trains what a fit always trained), an independent draw for the others."""
    if initialization == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(initialization)]).generate_state(1)[0] % 2**31)


def fit_seed(estimator, rng) -> int | None:
    """The seed torch starts a fit from: an int ``random_state`` as given, a RandomState's draw, and
    with ``random_state=None`` the seed :func:`draw_unseeded_fit_seed` drew for this fit (None: torch
    continues from its own state, as it always did)."""
    state = numpy_random_state(estimator)
    if state is None or isinstance(state, numbers.Integral):
        return None if state is None else int(state)
    return int(rng.randint(2**31))


def draw_unseeded_fit_seed(estimator) -> int | None:
    """With ``random_state=None`` and ``n_init > 1`` or candidates trained in processes (``n_jobs``),
    one seed for the whole fit (numpy's global generator, as scikit-learn's None means), so that
    the initialization the hold-out keeps is the one a plain fit then trains on all the rows, and
    a worker process draws what the fit would have drawn (not from its own generators); None otherwise."""
    parallel = candidate_processes(estimator.n_jobs, 2) > 1
    if estimator.random_state is None and (estimator.n_init > 1 or parallel):
        return int(np.random.randint(2**31))
    return None


def numpy_random_state(estimator):
    """What the fit's numpy draws (the calibration sample, the distillation teacher) start from:
    ``random_state``, or with None the seed :func:`draw_unseeded_fit_seed` drew (None if it drew none)."""
    if estimator.random_state is None:
        return getattr(estimator, "_unseeded_fit_seed", None)
    return estimator.random_state


def best_initialization(
    estimator, X: np.ndarray, y: np.ndarray, train, holdout, first, first_rows: HoldoutRows | None = None, **fit_params
):
    """``first`` (a network fitted on ``train``, initialization 0) or one of ``n_init - 1`` more
    networks trained at its setting from other random weights, whichever the ``holdout`` rows prefer
    (:func:`~.holdout.choose_initialization`); every one's hold-out score in ``initialization_scores_``.
    With ``n_init=1``, or a hold-out under :data:`~.holdout.AUTO_INIT_MIN_HOLDOUT` rows (which cannot
    tell them apart), ``first`` as it is."""
    if estimator.n_init == 1 or len(holdout) < AUTO_INIT_MIN_HOLDOUT:
        return first  # nothing to compare: the fit n_init=1 always made
    others = fit_all(
        partial(refit_like, estimator, X, y, train, first, **fit_params),
        [{"initialization": initialization} for initialization in range(1, estimator.n_init)],
        estimator.n_jobs,
    )
    models = [first, *others]
    rows = [first_rows if first_rows is not None else holdout_rows(first, X[holdout], y[holdout])]
    rows += [holdout_rows(model, X[holdout], y[holdout]) for model in others]
    best = models[choose_initialization(rows)]
    best.initialization_scores_ = [float(np.mean(r.score)) for r in rows]
    return best


def fit_best_on_holdout(estimator, X: np.ndarray, y: np.ndarray, train, holdout, **fit_params):
    """The copy of ``estimator`` trained on ``train`` with the setting the ``holdout`` rows prefer,
    with every setting's hold-out score in ``regularization_scores_``.

    The penalties first, weakest first (a classifier's until past the best: :func:`~.holdout.past_the_best_penalty`;
    :func:`~.holdout.choose_penalty` picks among those trained), then the sparse first
    layers at the weakest and the chosen penalty; :func:`~.holdout.choose_regularization` decides.
    Then a finer input (:func:`finer_input`) and a wider network (:func:`wider_network`) for it, and
    ``n_init - 1`` more initializations of what was kept (:func:`best_initialization`)."""
    fits, rows = {}, {}

    def try_settings(settings, stop_after=None):
        fitted = fit_all(
            partial(fit_and_score, estimator, X, y, train, holdout, **fit_params),
            [{"regularization": setting} for setting in settings],
            estimator.n_jobs,
            stop_after,
        )
        for setting, (model, setting_rows) in zip(settings, fitted):
            fits[setting], rows[setting] = model, setting_rows

    # The penalties weakest first, for a classifier until they are past the best (the stronger ones
    # are not trained).
    stop = None
    if PENALTY_STOP[estimator._estimator_type]:
        stop = lambda fitted: past_the_best_penalty([r for _, r in fitted])  # noqa: E731
    try_settings(candidate_regularizations(estimator), stop)
    penalty = choose_penalty(rows).weight_decay
    try_settings(sparse_candidates(estimator, X.shape[1], len(holdout), penalty))
    chosen, scores = choose_regularization(rows)
    first, first_rows, input_scores = finer_input(estimator, X, y, train, holdout, fits[chosen], rows[chosen], **fit_params)
    first, first_rows, width_scores = wider_network(estimator, X, y, train, holdout, first, first_rows, **fit_params)
    best = best_initialization(estimator, X, y, train, holdout, first, first_rows, **fit_params)
    best.regularization_scores_ = {tuple(setting): score for setting, score in scores.items()}
    for name, chosen_scores in [("input_bits_scores_", input_scores), ("hidden_layer_sizes_scores_", width_scores)]:
        if chosen_scores is not None:
            setattr(best, name, chosen_scores)
    return best


def finer_input(estimator, X: np.ndarray, y: np.ndarray, train, holdout, first, first_rows: HoldoutRows, **fit_params):
    """``first`` (fitted on ``train`` at the chosen setting, its input as wide as the width rule
    gives) or the same setting with a :data:`~.budget.MAX_FREE_INPUT_BITS`-bit input, when that
    scores higher on the hold-out (:func:`~.holdout.prefers_finer_input`); with both rows and
    scores ``{bits: hold-out score}`` (None when nothing was compared).

    The rule gives an input only the bits the first layer fits *unpruned*; on many columns
    (a one-hot matrix) that is 3, coarse for a continuous feature that carries the target. Tried
    only with ``n_input_bits=None``, a hold-out of at least :data:`~.holdout.FINER_INPUT_MIN_HOLDOUT`
    rows and an ``n_accum_bits`` that keeps at least one weight per neuron at the finer input.
    """
    if (
        estimator.n_input_bits is not None
        or len(holdout) < FINER_INPUT_MIN_HOLDOUT[estimator._estimator_type]
        or first.n_input_bits_ >= MAX_FREE_INPUT_BITS
        or terms_that_fit(estimator.n_accum_bits, estimator.n_w_bits, MAX_FREE_INPUT_BITS) == 0
    ):
        return first, first_rows, None
    finer = refit_like(estimator, X, y, train, first, input_bits=MAX_FREE_INPUT_BITS, **fit_params)
    finer_rows = holdout_rows(finer, X[holdout], y[holdout])
    scores = {int(first.n_input_bits_): float(np.mean(first_rows.score)), MAX_FREE_INPUT_BITS: float(np.mean(finer_rows.score))}
    if prefers_finer_input(finer_rows, first_rows):
        return finer, finer_rows, scores
    return first, first_rows, scores


def wider_network(estimator, X: np.ndarray, y: np.ndarray, train, holdout, first, first_rows: HoldoutRows, **fit_params):
    """``first`` (fitted on ``train`` at the chosen setting and input, :func:`given_hidden_sizes`
    wide) or the same fit with the wider hidden layer of :data:`~.holdout.AUTO_HIDDEN_LAYER_SIZES`,
    when it wins the hold-out by enough (:func:`~.holdout.prefers_wider`); with both rows and scores
    ``{sizes: hold-out score}`` (None when nothing was compared).

    Why: 32 neurons at 3 bits lose accuracy to a float MLP where the classes are many (10 classes:
    0.744 against 0.810), and 64 win it back at twice the lookups; elsewhere they only cost. Tried
    only with ``hidden_layer_sizes="auto"`` and a hold-out of at least
    :data:`~.holdout.WIDER_MIN_HOLDOUT` rows.
    """
    if not is_auto(estimator.hidden_layer_sizes) or len(holdout) < WIDER_MIN_HOLDOUT:
        return first, first_rows, None
    wider_sizes = AUTO_HIDDEN_LAYER_SIZES[1]
    wider = refit_like(estimator, X, y, train, first, hidden_sizes=wider_sizes, **fit_params)
    wider_rows = holdout_rows(wider, X[holdout], y[holdout])
    scores = {tuple(first.hidden_layer_sizes_): float(np.mean(first_rows.score)), wider_sizes: float(np.mean(wider_rows.score))}
    if prefers_wider(wider_rows, first_rows):
        return wider, wider_rows, scores
    return first, first_rows, scores


def resolve_regularization(estimator, X: np.ndarray, y: np.ndarray) -> HoldoutChoice:
    """The setting and initialization of a plain fit on all of ``X, y`` and, for "auto", the hold-out
    scores they were chosen by ("auto" on fewer than ``AUTO_MIN_SAMPLES`` rows gives
    :data:`DEFAULT_WEIGHT_DECAY`, a dense first layer and no scores to compare: ``{}``). Without
    "auto" there is no hold-out, so nothing to choose an initialization by: the first."""
    value = weight_decay_parameter(estimator)
    if not is_auto(value):
        return HoldoutChoice(Regularization(check_weight_decay(value), given_first_layer_density(estimator)))
    if len(X) < AUTO_MIN_SAMPLES:
        return HoldoutChoice(Regularization(DEFAULT_WEIGHT_DECAY, given_first_layer_density(estimator)), {})
    train, holdout = internal_split(y, estimator._estimator_type == "classifier")
    best = fit_best_on_holdout(estimator, X, y, train, holdout)
    return HoldoutChoice(
        Regularization(best.weight_decay_, best.first_layer_density_),
        best.regularization_scores_,
        best.initialization_,
        getattr(best, "initialization_scores_", None),
        best.n_input_bits_,
        getattr(best, "input_bits_scores_", None),
        tuple(best.hidden_layer_sizes_),
        getattr(best, "hidden_layer_sizes_scores_", None),
    )
