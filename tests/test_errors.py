"""Bad input gets a clear error naming the problem."""

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from fhe_estimators import NeuralNetClassifier, NeuralNetRegressor

TINY = dict(hidden_layer_sizes=(4,), max_epochs=2, random_state=0)


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    X = rng.randn(60, 5)
    return X, (X[:, 0] > 0).astype(int)


@pytest.fixture(scope="module")
def fitted(data):
    return NeuralNetClassifier(**TINY).fit(*data)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_X_at_fit_and_predict(data, fitted, bad):
    X, y = data
    X_bad = X.copy()
    X_bad[3, 2] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):
        NeuralNetClassifier(**TINY).fit(X_bad, y)
    with pytest.raises(ValueError, match="NaN|infinity"):
        fitted.predict(X_bad)


def test_non_finite_y(data):
    X, y = data
    y_bad = y.astype(float)
    y_bad[0] = np.nan
    with pytest.raises(ValueError, match="NaN|infinity"):
        NeuralNetRegressor(**TINY).fit(X, y_bad)
    with pytest.raises(ValueError, match="NaN|infinity"):
        NeuralNetClassifier(**TINY).fit(X, y_bad)


def test_wrong_number_of_features_names_both(fitted, data):
    X, _ = data
    with pytest.raises(ValueError, match="3 features.*expecting 5 features"):
        fitted.predict(X[:, :3])
    with pytest.raises(ValueError, match="3 features.*expecting 5 features"):
        fitted.compile(X[:, :3])


def test_predict_before_fit():
    X = np.zeros((2, 5))
    for model in (NeuralNetClassifier(), NeuralNetRegressor()):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            model.predict(X)
        with pytest.raises(NotFittedError):
            model.compile(X)
    with pytest.raises(NotFittedError):
        NeuralNetClassifier().predict_proba(X)


@pytest.mark.parametrize("mode", ["fhe", "Simulate", "", None, 1])
def test_unknown_fhe_mode_lists_valid_ones(fitted, data, mode):
    X, _ = data
    if mode is None:  # None means "use the constructor's mode": valid
        assert fitted.predict(X[:2], fhe=None).shape == (2,)
        return
    with pytest.raises(ValueError, match="'disable', 'simulate', 'execute'"):
        fitted.predict(X, fhe=mode)


def test_unknown_fhe_mode_in_constructor(data):
    with pytest.raises(ValueError, match="fhe must be one of"):
        NeuralNetClassifier(fhe="encrypted", **TINY).fit(*data)


@pytest.mark.parametrize("name", ["n_w_bits", "n_a_bits", "n_accum_bits"])
@pytest.mark.parametrize("value, error", [(0, ValueError), (-2, ValueError), (2.5, TypeError), ("4", TypeError)])
def test_bad_bit_widths(data, name, value, error):
    with pytest.raises(error, match=f"{name} must be a positive integer"):
        NeuralNetClassifier(**{name: value}, **TINY).fit(*data)


def test_bits_giving_zero_omega(data):
    with pytest.raises(ValueError, match="Ω is 0"):
        NeuralNetClassifier(n_w_bits=4, n_a_bits=4, n_accum_bits=6, **TINY).fit(*data)


@pytest.mark.parametrize("multiplier", [0, -1.0, "2", None])
def test_bad_multiplier(data, multiplier):
    with pytest.raises(ValueError, match="n_hidden_neurons_multiplier must be a number > 0"):
        NeuralNetClassifier(n_hidden_neurons_multiplier=multiplier, **TINY).fit(*data)


@pytest.mark.parametrize("sizes", [(0,), (-3, 4), ("a",), 2.5, (4.0,), "wide"])
def test_bad_hidden_layer_sizes(data, sizes):
    with pytest.raises(ValueError, match='hidden_layer_sizes must be "auto" or a tuple of positive integers'):
        NeuralNetClassifier(**{**TINY, "hidden_layer_sizes": sizes}).fit(*data)


def test_single_class(data):
    X, _ = data
    with pytest.raises(ValueError, match="only one class"):
        NeuralNetClassifier(**TINY).fit(X, np.ones(len(X)))


def test_mismatched_lengths(data):
    X, y = data
    with pytest.raises(ValueError, match="60 samples but y has 59"):
        NeuralNetClassifier(**TINY).fit(X, y[:-1])
    with pytest.raises(ValueError, match="60 samples but y has 59"):
        NeuralNetRegressor(**TINY).fit(X, y[:-1].astype(float))


def test_continuous_labels_for_classifier(data):
    X, _ = data
    with pytest.raises(ValueError, match="Unknown label type: 'continuous'"):
        NeuralNetClassifier(**TINY).fit(X, np.linspace(0, 1, len(X)))


def test_circuit_wider_than_16_bits_names_the_hyperparameter(data):
    X, y = data
    model = NeuralNetClassifier(n_w_bits=8, n_a_bits=8, n_accum_bits=24, **TINY).fit(X, y)
    assert max(model.accumulator_bits_) > 16
    with pytest.raises(ValueError, match="over Concrete's limit of 16.*Lower n_accum_bits"):
        model.compile()


@pytest.mark.parametrize("start, end", [(0.7, 0.2), (-0.1, 0.5), (0.1, 1.5), ("0.1", 0.6), (None, 0.6)])
def test_bad_pruning_schedule_fractions(data, start, end):
    with pytest.raises(ValueError, match="Need 0 <= pruning_start <= pruning_end <= 1"):
        NeuralNetClassifier(pruning_start=start, pruning_end=end, **TINY).fit(*data)


@pytest.mark.parametrize(
    "X, message",
    [
        (np.zeros((0, 5)), "0 sample"),
        (np.zeros((60, 5, 2)), "Found array with dim 3"),
        ([[1.0, 2.0], [3.0]] * 30, "inhomogeneous|sequence"),
        (np.full((60, 5), "a", dtype=object), "could not convert|string"),
        (np.full((60, 5), 1e300), "too large for float32"),
    ],
    ids=["empty", "3-D", "ragged", "strings", "overflows float32"],
)
def test_bad_X_names_the_problem(data, X, message):
    _, y = data
    for model in (NeuralNetClassifier(**TINY), NeuralNetRegressor(**TINY)):
        with pytest.raises(ValueError, match=message):
            model.fit(X, y[: len(X)] if len(X) else y[:0])


@pytest.mark.parametrize(
    "y, message",
    [
        (None, "requires y to be passed"),
        ([[0, 1]] * 30 + [[1]] * 30, "could not be read as an array"),
        (np.zeros((60, 2, 2)), "y must be 1-D"),
    ],
    ids=["None", "ragged", "3-D"],
)
def test_bad_y_names_the_problem(data, y, message):
    X, _ = data
    for model in (NeuralNetClassifier(**TINY), NeuralNetRegressor(**TINY)):
        with pytest.raises(ValueError, match=message):
            model.fit(X, y)


def test_optimizer_given_by_name_is_rejected(data):
    with pytest.raises(TypeError, match="optimizer must be a torch optimizer class.*AdamW"):
        NeuralNetClassifier(optimizer="AdamW", **TINY).fit(*data)


# ---------------------------------------------------------------- Concrete's failures, diagnosed
def test_constant_inputs_are_diagnosed_from_concretes_rounding_check():
    X = np.zeros((5, 3))
    model = NeuralNetClassifier(hidden_layer_sizes=(3,), max_epochs=1, random_state=0).fit(X, np.arange(5) % 2)
    with pytest.raises(ValueError, match=r"remove \d+ bits from a \d+-bit accumulator") as caught:
        model.compile()
    assert isinstance(caught.value.__cause__, AssertionError)  # Concrete's own error stays chained


@pytest.mark.parametrize(
    "concrete_error",
    [AssertionError("an unrelated consistency check"), RuntimeError("could not map 16 MiB for the bit packing")],
)
def test_other_concrete_failures_are_not_misdiagnosed(fitted, monkeypatch, concrete_error):
    """Only what Concrete actually reports is translated; anything else propagates unchanged."""
    from fhe_estimators import compilation

    def failing_compile(*args, **kwargs):
        raise concrete_error

    monkeypatch.setattr(compilation, "compile_brevitas_qat_model", failing_compile)
    with pytest.raises(type(concrete_error)) as caught:
        fitted.compile()
    assert caught.value is concrete_error


def test_transposed_weights_of_a_square_layer_are_refused(data):
    """Concrete keeps weights as (out, in), like torch: the transpose is a different layer."""
    from fhe_estimators.compilation import compile_module

    X, y = data
    model = NeuralNetClassifier(hidden_layer_sizes=(5, 5), max_epochs=2, random_state=0).fit(X, y)
    weights = [layer.weights for layer in model.module_.integer_layers()]
    assert weights[1].shape == (5, 5) and not np.array_equal(weights[1], weights[1].T)
    calibration = np.concatenate([model.calibration_X_, model.module_.extreme_inputs()])
    compile_module(model.module_, calibration, weights, model.accumulator_ranges_)  # as checked: fine
    transposed = [weights[0], weights[1].T, weights[2]]
    with pytest.raises(RuntimeError, match="quantized layer 1 differently"):
        compile_module(model.module_, calibration, transposed, model.accumulator_ranges_)


#: One value breaking each constraint of ``_parameter_constraints``.
BAD_VALUES = {
    "hidden_layer_sizes": "32",
    "n_w_bits": 0,
    "n_a_bits": True,
    "n_accum_bits": 10.0,
    "n_input_bits": -1,
    "input_scale": "fine",
    "n_hidden_neurons_multiplier": 0,
    "pruning": "sometimes",
    "pruning_budget": "exactly",
    "neuron_removal": 1.0,
    "first_layer_density": 0.0,
    "n_init": 0,
    "pruning_start": 2,
    "pruning_end": -0.5,
    "pruning_frequency": 0,
    "lr_schedule": "step",
    "float_pretraining": 1.0,
    "weight_averaging": 1.0,
    "distillation": "tree",
    "tighten": "yes",
    "tighten_tolerance": 1.5,
    "rounding_threshold_bits": "6",
    "p_error": 1.5,
    "fhe": "encrypted",
    "n_jobs": "2",
    "random_state": "seed",
    "optimizer": "Adam",
    "predict_nonlinearity": None,
}


def test_every_parameter_of_ours_has_constraints():
    from fhe_estimators.parameters import FHE_PARAMETERS

    constraints = NeuralNetClassifier._parameter_constraints
    assert set(FHE_PARAMETERS) <= set(constraints)
    assert set(BAD_VALUES) == set(constraints)


@pytest.mark.parametrize("name", sorted(BAD_VALUES))
@pytest.mark.parametrize("estimator", [NeuralNetClassifier, NeuralNetRegressor])
def test_constraint_violation_names_the_parameter(data, estimator, name):
    from sklearn.utils._param_validation import InvalidParameterError

    model = estimator(**{**TINY, name: BAD_VALUES[name]})
    with pytest.raises(InvalidParameterError, match=name) as caught:
        model.fit(*data)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, TypeError)  # scikit-learn's convention
    assert not hasattr(model, "module_")  # raised before any training


def test_default_parameters_satisfy_their_constraints():
    from fhe_estimators.validation import validate_parameters

    for estimator in (NeuralNetClassifier(), NeuralNetRegressor()):
        validate_parameters(estimator)


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_fit_keyword_arguments_are_refused_by_name(data, fitted, method):
    """skorch would pass them to the torch module, which fails with a message about forward()."""
    X, y = data
    for model in (NeuralNetClassifier(**TINY), fitted):
        with pytest.raises(TypeError, match=rf"{method}\(\) got unexpected keyword argument\(s\) 'sample_weight'.*resample"):
            getattr(model, method)(X, y, sample_weight=np.ones(len(y)))
    assert fitted.predict(X).shape == y.shape  # the refused call left the fitted model as it was
