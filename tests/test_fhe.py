"""Compile, the worst-case accumulator guarantee, simulate, and real encrypted execution."""

import numpy as np
import pytest
import torch
from concrete.ml.torch.compile import compile_brevitas_qat_model

from fhe_estimators import NeuralNetClassifier, NeuralNetRegressor
from fhe_estimators.budget import accumulator_bounds
from fhe_estimators.compilation import compiled_accumulator_bits, gemm_ops
from fhe_estimators.input_grid import clip_to_bounds

# Overflow is judged by bit-exact equality between simulation (which wraps around
# like FHE) and the clear int64 computation (which cannot overflow). Concrete's
# detect_overflow_in_simulation is not used: on these signed circuits it warns
# even for an all-zero input.


@pytest.fixture(scope="module")
def compiled_classifier(breast_cancer):
    X_train, _, y_train, _ = breast_cancer
    # The guarantee at a fixed budget (no search): the negative control below needs accumulators
    # whose calibrated width stays under the worst case, which a searched model need not have.
    model = NeuralNetClassifier(hidden_layer_sizes=(8,), max_epochs=40, tighten=False, random_state=0)
    return model.fit(X_train, y_train).compile()


def adversarial_inputs(model, magnitude=100.0):
    """Far-out inputs along the first layer's weight signs: once clipped to the training range (as
    predict clips them), rows at the ends of every column's range."""
    signs = np.sign(model.module_.integer_layers()[0].weights)
    n_features = signs.shape[1]
    rng = np.random.RandomState(0)
    return np.vstack(
        [
            signs * magnitude,
            -signs * magnitude,
            np.full((1, n_features), magnitude),
            np.full((1, n_features), -magnitude),
            rng.choice([-magnitude, magnitude], size=(8, n_features)),
        ]
    )


def test_circuit_accumulators_cover_the_worst_case(compiled_classifier):
    model = compiled_classifier
    compiled = compiled_accumulator_bits(model.quantized_module_)
    assert all(have >= need for have, need in zip(compiled, model.accumulator_bits_))
    assert model.circuit_report_.max_bit_width <= 16
    assert model.circuit_report_.pbs_count > 0


def test_adversarial_inputs_reach_the_worst_case_and_never_overflow(compiled_classifier):
    model = compiled_classifier
    # The extreme rows drive every first-layer neuron to its exact maximum / minimum over each
    # column's integer range (the training range, widened to whole steps).
    first = model.module_.integer_layers()[0]
    extreme = model.module_.extreme_inputs()
    q_x = model.quantized_module_.quantize_input(extreme)
    accumulators = q_x @ first.weights.T
    low, high = accumulator_bounds(first.weights, None, first.input_min, first.input_max)
    n_neurons = len(high)
    np.testing.assert_array_equal(np.diag(accumulators[:n_neurons]), high)
    np.testing.assert_array_equal(np.diag(accumulators[n_neurons : 2 * n_neurons]), low)

    # Far-out rows are clipped to the training range first, as predict clips them.
    X_adv = adversarial_inputs(model)
    in_range = np.vstack([extreme, clip_to_bounds(X_adv, model.input_bounds_)]).astype(np.float32)
    clear = model.quantized_module_.forward(in_range, fhe="disable")
    simulated = model.quantized_module_.forward(in_range, fhe="simulate")
    np.testing.assert_array_equal(simulated, clear)
    np.testing.assert_array_equal(model.predict(X_adv, fhe="simulate"), model.predict(X_adv, fhe="disable"))


def test_without_the_guarantee_concrete_sizes_from_calibration_and_overflows(compiled_classifier):
    """Negative control: the plain Concrete ML compile is what our hints protect against."""
    model = compiled_classifier
    plain = compile_brevitas_qat_model(model.module_, model.calibration_X_)
    assert compiled_accumulator_bits(plain) < model.accumulator_bits_
    X_adv = adversarial_inputs(model).astype(np.float32)
    assert not np.array_equal(plain.forward(X_adv, fhe="simulate"), plain.forward(X_adv, fhe="disable"))


def test_clear_quantized_equals_simulation_on_test_data(compiled_classifier, breast_cancer):
    _, X_test, _, y_test = breast_cancer
    model = compiled_classifier
    np.testing.assert_array_equal(model.predict_proba(X_test, fhe="simulate"), model.predict_proba(X_test, fhe="disable"))
    assert model.score(X_test, y_test, fhe="simulate") > 0.9
    assert model.fhe_circuit_ is model.quantized_module_.fhe_circuit


def test_the_trained_network_computes_what_the_circuit_computes(iris):
    """Concrete ML rounds each hidden accumulator before its bias is added; the torch forward
    reproduces it, so clear outputs before compile equal the circuit's (iris seed 0 lost a
    test sample to this mismatch before)."""
    X_train, X_test, y_train, _ = iris
    model = NeuralNetClassifier(random_state=0).fit(X_train, y_train)
    before = model.predict_proba(X_test, fhe="disable")  # torch module, not compiled yet
    model.compile()
    rounded = [op.lsbs_to_remove.get("matmul", 0) for op in gemm_ops(model.quantized_module_)[:-1]]
    assert all(lsbs > 0 for lsbs in rounded)  # the rounding really is in the circuit
    np.testing.assert_allclose(before, model.predict_proba(X_test, fhe="simulate"), atol=1e-6)
    model.module_.round_like_concrete = False  # the plain brevitas network differs
    with torch.no_grad():
        plain = model.module_(torch.as_tensor(X_test, dtype=torch.float32)).numpy()
    assert not np.allclose(plain, model.quantized_module_.forward(X_test.astype(np.float32), fhe="simulate"))


def test_simulate_compiles_a_fitted_model_by_itself(breast_cancer, capsys):
    X_train, X_test, y_train, _ = breast_cancer
    model = NeuralNetClassifier(hidden_layer_sizes=(4,), max_epochs=5, random_state=0, verbose=1, fhe="simulate")
    model.fit(X_train, y_train)
    capsys.readouterr()
    assert not hasattr(model, "fhe_circuit_")
    predictions = model.predict(X_test[:5])  # constructor's fhe="simulate"
    assert "compiling on the calibration sample" in capsys.readouterr().out
    assert hasattr(model, "fhe_circuit_")
    np.testing.assert_array_equal(predictions, model.predict(X_test[:5], fhe="disable"))


def test_refit_forgets_the_old_circuit(breast_cancer):
    X_train, _, y_train, _ = breast_cancer
    model = NeuralNetClassifier(hidden_layer_sizes=(4,), max_epochs=3, random_state=0).fit(X_train, y_train).compile()
    model.fit(X_train[:, :10], y_train)
    assert not hasattr(model, "fhe_circuit_")
    model.compile()
    # The new circuit reads 10 encrypted features, and predicts what the clear network does.
    [circuit_input] = model.fhe_circuit_.graph.ordered_inputs()
    assert circuit_input.output.shape == (1, 10) and circuit_input.output.is_encrypted
    np.testing.assert_array_equal(
        model.predict_proba(X_train[:20, :10], fhe="simulate"), model.predict_proba(X_train[:20, :10], fhe="disable")
    )
    assert model.score(X_train[:, :10], y_train, fhe="simulate") > 0.8
    with pytest.raises(ValueError, match="30 features.*expecting 10"):
        model.predict(X_train[:2], fhe="simulate")


def test_regressor_simulation_matches_clear(diabetes):
    X_train, X_test, y_train, _ = diabetes
    model = NeuralNetRegressor(hidden_layer_sizes=(8,), max_epochs=20, random_state=0).fit(X_train, y_train)
    model.compile(X_train[:100])
    simulated = model.predict(X_test, fhe="simulate")
    assert simulated.shape == (len(X_test),)
    np.testing.assert_allclose(simulated, model.predict(X_test, fhe="disable"))


def test_compile_with_rounding_threshold_keeps_simulation_exact(breast_cancer):
    X_train, X_test, y_train, _ = breast_cancer
    model = NeuralNetClassifier(hidden_layer_sizes=(8,), max_epochs=10, random_state=0).fit(X_train, y_train)
    model.compile(rounding_threshold_bits=4)
    X_all = np.vstack([X_test, adversarial_inputs(model)])
    np.testing.assert_array_equal(model.predict_proba(X_all, fhe="simulate"), model.predict_proba(X_all, fhe="disable"))
    with pytest.raises(ValueError, match="rounding_threshold_bits must be a positive integer"):
        model.compile(rounding_threshold_bits=0)


def test_our_simulation_loop_is_concrete_mls(compiled_classifier, breast_cancer, monkeypatch):
    # runtime.simulate reads the circuit's statistics once and builds Concrete's simulated programs
    # once per batch (runtime._row_simulator), instead of once per row through circuit.simulate:
    # the same outputs as Concrete ML's loop.
    from fhe_estimators import runtime

    _, X_test, _, _ = breast_cancer
    module = compiled_classifier.quantized_module_
    X = clip_to_bounds(X_test.astype(np.float32), compiled_classifier.input_bounds_)
    simulated_rows = []
    concrete_simulate = module.fhe_circuit.simulate
    monkeypatch.setattr(module.fhe_circuit, "simulate", lambda *q: simulated_rows.append(q) or concrete_simulate(*q))
    ours = runtime.simulate(module, X)
    assert ours.shape == (len(X_test), 2) and not simulated_rows  # not through circuit.simulate
    monkeypatch.undo()
    np.testing.assert_array_equal(ours, module.forward(X, fhe="simulate"))


def fit_tiny_network():
    """A 4-3-2 network at 2/2/6 bits: small enough to encrypt in seconds."""
    rng = np.random.RandomState(0)
    X = rng.randn(200, 4)
    y = (X[:, 0] - X[:, 1] > 0).astype(int)
    model = NeuralNetClassifier(
        hidden_layer_sizes=(3,), n_w_bits=2, n_a_bits=2, n_accum_bits=6, max_epochs=30, random_state=0
    )
    return model.fit(X, y), X


@pytest.mark.fhe_execute
def test_execute_equals_simulate_on_a_tiny_network():
    model, X = fit_tiny_network()
    model.compile()
    assert model.circuit_report_.max_bit_width <= 6
    samples = X[:3]
    np.testing.assert_array_equal(model.predict_proba(samples, fhe="execute"), model.predict_proba(samples, fhe="simulate"))
    np.testing.assert_array_equal(model.predict(samples, fhe="execute"), model.predict(samples, fhe="simulate"))


@pytest.mark.fhe_execute
def test_pickle_and_joblib_round_trips_keep_every_mode_and_no_keys():
    import io
    import pickle

    import joblib

    model, X = fit_tiny_network()
    fitted = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(fitted.predict_proba(X), model.predict_proba(X))

    model.compile()
    executed = model.predict_proba(X[:2], fhe="execute")  # generates the keys
    blob = pickle.dumps(model)
    assert len(blob) < 1_000_000  # evaluation keys alone are megabytes: none were pickled
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    buffer.seek(0)
    for loaded in (pickle.loads(blob), joblib.load(buffer)):
        for mode in ("disable", "simulate"):
            np.testing.assert_array_equal(loaded.predict_proba(X, fhe=mode), model.predict_proba(X, fhe=mode))
        np.testing.assert_array_equal(loaded.predict_proba(X[:2], fhe="execute"), executed)


@pytest.mark.parametrize("method", ["exact", "approximate"])
def test_rounding_threshold_bits_in_concrete_mls_dict_form(breast_cancer, method):
    X_train, X_test, y_train, y_test = breast_cancer
    # 30 epochs, all quantized: 0.979 in the clear. At 10 (0.909) the approximate method's random
    # off-by-one errors, which simulation reproduces, moved the score by two test rows run to run.
    quick = dict(hidden_layer_sizes=(8,), max_epochs=30, float_pretraining=0, random_state=0)
    model = NeuralNetClassifier(**quick).fit(X_train, y_train)
    unrounded = model.compile(rounding_threshold_bits=None).circuit_report_
    # Without the argument Concrete ML still drops the bits its power-of-two pass proves useless
    # (2 of this 7-bit accumulator); three bits under the accumulator asks it to round further.
    n_bits = compiled_accumulator_bits(model.quantized_module_)[0] - 3
    model.compile(rounding_threshold_bits={"n_bits": n_bits, "method": method})
    assert model.compile_arguments_["rounding_threshold_bits"] == {"n_bits": n_bits, "method": method}
    assert gemm_ops(model.quantized_module_)[0].lsbs_to_remove == {"matmul": 3}
    assert model.circuit_report_.pbs_by_parameters != unrounded.pbs_by_parameters  # a different circuit
    assert model.score(X_test, y_test, fhe="simulate") > 0.9
    # The guarantee still holds: every accumulator covers its exact worst case.
    assert all(have >= need for have, need in zip(compiled_accumulator_bits(model.quantized_module_), model.accumulator_bits_))


@pytest.mark.parametrize(
    "bad",
    [{"n_bits": 0}, {"bits": 6}, {"n_bits": 6, "method": "nearest"}, {"n_bits": "auto"}, 6.5, 17, True],
)
def test_bad_rounding_threshold_bits_are_refused(compiled_classifier, bad):
    with pytest.raises(ValueError, match="rounding_threshold_bits"):
        compiled_classifier.compile(rounding_threshold_bits=bad)
    with pytest.raises(ValueError, match="rounding_threshold_bits"):
        NeuralNetClassifier(rounding_threshold_bits=bad, max_epochs=1).fit(np.eye(4), [0, 1, 0, 1])
