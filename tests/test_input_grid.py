"""The input grid: the power-of-two step the network reads its inputs at (fhe_estimators.input_grid)."""

import pickle

import numpy as np
import pytest

from fhe_estimators import NeuralNetClassifier, NeuralNetRegressor
from fhe_estimators.budget import accumulator_bounds
from fhe_estimators.input_grid import (
    clip_to_bounds,
    column_bounds,
    column_magnitudes,
    mse_input_scale,
    quantization_error,
    resolve_input_scale,
)

SMALL = {"hidden_layer_sizes": (6,), "max_epochs": 8, "random_state": 0, "tighten": False}


def test_mse_scale_trades_rounding_against_clipping():
    gaussian = np.random.RandomState(0).normal(size=(2000, 10))
    # At 4 bits a step of 0.25 clips beyond 1.75 sigma; 0.5 rounds coarser but clips almost nothing.
    assert quantization_error(gaussian, 0.5, 4) < quantization_error(gaussian, 0.25, 4)
    assert mse_input_scale(gaussian, 4) == 0.5
    assert mse_input_scale(gaussian, 3) == 0.5
    assert mse_input_scale(gaussian * 4, 4) == 2.0  # the step follows the data's spread
    uniform = np.random.RandomState(0).uniform(-1, 1, size=(2000, 3))
    assert mse_input_scale(uniform, 4) == 0.125  # [-8, 7] x 0.125 covers [-1, 0.875]: nothing to clip
    assert mse_input_scale(np.zeros((5, 2)), 4) == 1.0


def test_resolve_input_scale_values():
    X = np.random.RandomState(0).normal(size=(100, 3))
    assert resolve_input_scale("learned", X, 4) is None
    assert resolve_input_scale("auto", X, 4) == mse_input_scale(X, 4)
    assert resolve_input_scale(0.25, X, 4) == 0.25


@pytest.mark.parametrize("value", [0.3, 3, 0.75])
def test_a_step_that_is_not_a_power_of_two_is_refused(diabetes, value):
    # Other bad values (strings, negatives, booleans) meet the constraint check of test_errors.py.
    X_train, _, y_train, _ = diabetes
    with pytest.raises(ValueError, match="must be a power of two"):
        NeuralNetRegressor(input_scale=value, **SMALL).fit(X_train, y_train)


def test_the_network_reads_its_inputs_at_the_chosen_step(diabetes):
    X_train, X_test, y_train, _ = diabetes
    model = NeuralNetRegressor(input_scale="auto", **SMALL, optimizer__weight_decay=0.1).fit(X_train, y_train)
    assert model.input_scale_ == mse_input_scale(X_train, model.n_input_bits_)
    assert float(model.module_.input_quant.quant_act_scale()) == model.input_scale_
    assert not list(model.module_.input_quant.parameters())  # fixed, not trained
    # The circuit quantizes its inputs with the same step, so FHE predicts what the clear network does.
    model.compile(X_train)
    assert model.quantized_module_.input_quantizers[0].scale == model.input_scale_
    np.testing.assert_allclose(model.predict(X_test[:20], fhe="simulate"), model.predict(X_test[:20]), rtol=1e-5)
    restored = pickle.loads(pickle.dumps(model))
    assert float(restored.module_.input_quant.quant_act_scale()) == model.input_scale_


def test_given_and_learned_steps(diabetes):
    X_train, _, y_train, _ = diabetes
    assert NeuralNetRegressor().input_scale == "learned"  # "auto" is not the default (docs/pruning.md)
    given = NeuralNetRegressor(input_scale=0.125, **SMALL, optimizer__weight_decay=0.1).fit(X_train, y_train)
    assert given.input_scale_ == 0.125 and float(given.module_.input_quant.quant_act_scale()) == 0.125
    learned = NeuralNetRegressor(input_scale="learned", **SMALL, optimizer__weight_decay=0.1).fit(X_train, y_train)
    assert learned.input_scale_ is None
    assert list(learned.module_.input_quant.parameters())  # brevitas trains the step


def test_the_candidate_steps_reach_the_bulk_of_the_data_despite_an_outlier():
    X = np.random.RandomState(0).normal(size=(10_000, 100))
    X[0, 0] = 600.0  # sets the coarsest candidate; the finest still follows the typical magnitude
    assert mse_input_scale(X, 4) == 0.5


@pytest.mark.parametrize("value", [2.0**-30, 2.0**30])
def test_steps_outside_the_quantizer_range_are_refused(value):
    from fhe_estimators.input_grid import check_input_scale

    with pytest.raises(ValueError, match="rescale the features"):
        check_input_scale(value)
    with pytest.raises(ValueError, match="rescale the features"):
        mse_input_scale(np.full((10, 2), value * 4), 4)


def test_the_search_and_partial_fit_keep_the_step(diabetes):
    X_train, _, y_train, _ = diabetes
    model = NeuralNetRegressor(
        input_scale=0.5, hidden_layer_sizes=(6,), max_epochs=6, random_state=0, optimizer__weight_decay=0.1
    ).fit(X_train, y_train)
    assert model.tightening_candidates_  # the search ran: its winner is a deep copy of a fit on the split
    assert model.input_scale_ == 0.5 and float(model.module_.input_quant.quant_act_scale()) == 0.5
    model.partial_fit(X_train, y_train)
    assert float(model.module_.input_quant.quant_act_scale()) == 0.5


# ---------------------------------------------------------------- each column's training range
def test_range_helpers():
    X = np.array([[0.0, -2.0, 1.0], [1.0, 3.0, 1.0]], dtype=np.float32)
    lowest, highest = column_bounds(X)
    np.testing.assert_array_equal(lowest, [0, -2, 1])
    np.testing.assert_array_equal(highest, [1, 3, 1])
    clipped = clip_to_bounds(np.array([[5.0, -9.0, 0.0]]), (lowest, highest))
    np.testing.assert_array_equal(clipped, [[1.0, -2.0, 1.0]])
    assert clipped.dtype == np.float32
    np.testing.assert_array_equal(clip_to_bounds(X * 9, None), X * 9)  # no bounds: read as given
    # At a 0.25 step and 4 bits: a 0/1 column reads 0..4, the signed one reaches the clip (-8..7).
    np.testing.assert_array_equal(column_magnitudes((lowest, highest), 4, 0.25), [4, 8, 4])


@pytest.fixture(scope="module")
def one_hot_model():
    """Three numbers and a one-hot category of four: the category's columns read 0 or 1."""
    rng = np.random.RandomState(0)
    numbers = rng.randn(300, 3)
    one_hot = np.eye(4)[rng.randint(0, 4, 300)]
    X = np.hstack([numbers, one_hot]).astype(np.float32)
    y = (numbers[:, 0] + one_hot[:, 1] - one_hot[:, 2] > 0.2).astype(np.int64)
    return NeuralNetClassifier(hidden_layer_sizes=(8,), max_epochs=15, random_state=0, tighten=False).fit(X, y), X


def test_one_hot_columns_count_one_side_of_the_accumulator(one_hot_model):
    model, X = one_hot_model
    np.testing.assert_array_equal(model.input_bounds_[0][3:], 0)
    np.testing.assert_array_equal(model.input_bounds_[1][3:], 1)
    low, high = model.module_.first_input_range()
    step = float(model.module_.input_quant.quant_act_scale())
    top = 2 ** (model.n_input_bits_ - 1) - 1
    np.testing.assert_array_equal(low[3:], 0)
    np.testing.assert_array_equal(high[3:], min(top, int(np.ceil(1 / step))))
    # The reported worst case is the exact one over those per-column ranges, within the budget.
    weights = model.module_.integer_layers()[0].weights
    per_column = accumulator_bounds(weights, None, low, high)
    assert model.accumulator_ranges_[0] == (int(per_column[0].min()), int(per_column[1].max()))
    assert max(model.accumulator_bits_) <= model.n_accum_bits


def test_values_beyond_the_training_range_are_read_at_its_ends_in_every_mode(one_hot_model):
    model, X = one_hot_model
    far = X[:20].copy()
    far[:, 0] = -100.0  # a number far below anything seen
    far[:, 3:] = 7.0  # a "one-hot" row no encoder makes
    clipped = clip_to_bounds(far, model.input_bounds_)
    np.testing.assert_array_equal(model.predict_proba(far), model.predict_proba(clipped))
    model.compile(X)
    # The circuit was sized for the clipped ranges: in FHE simulation nothing overflows.
    np.testing.assert_array_equal(model.predict(far, fhe="simulate"), model.predict(far))
    np.testing.assert_allclose(model.predict_proba(far, fhe="simulate"), model.predict_proba(far), rtol=1e-5)
