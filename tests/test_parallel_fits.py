"""n_jobs for the hold-out's candidate networks: trained in parallel processes, the same networks."""

import os

import joblib
import numpy as np
import pytest

from fhe_estimators import NeuralNetClassifier
from fhe_estimators.parallel_fits import candidate_processes, fit_all

SMALL = dict(hidden_layer_sizes=(8,), max_epochs=6, random_state=0, tighten=False, optimizer__weight_decay="auto")


def _process_id(offset):
    return os.getpid() + offset


def _plus(value, increment):
    return value + increment


def test_processes_follow_n_jobs_and_never_outnumber_the_fits():
    assert candidate_processes(None, 4) == 1
    assert candidate_processes(1, 4) == 1
    assert candidate_processes(2, 4) == 2
    assert candidate_processes(8, 3) == 3
    assert candidate_processes(-1, 100) == joblib.effective_n_jobs(-1)
    with pytest.raises(ValueError, match="n_jobs must be None, a positive integer"):
        candidate_processes(0, 4)


@pytest.mark.parametrize("backend", ["threading", "loky"])
def test_inside_a_joblib_worker_the_candidates_train_one_at_a_time(backend):
    # A GridSearchCV(n_jobs=...) already uses the cores: no processes within its workers.
    inside = joblib.Parallel(n_jobs=2, backend=backend)(joblib.delayed(candidate_processes)(2, 4) for _ in range(2))
    assert inside == [1, 1]


def test_fit_all_runs_in_other_processes_and_keeps_the_order():
    results = fit_all(_process_id, [{"offset": 0}, {"offset": 0}, {"offset": 0}], n_jobs=2)
    assert os.getpid() not in results
    assert fit_all(_process_id, [{"offset": 0}], n_jobs=2) == [os.getpid()]  # one fit: no process
    ordered = fit_all(_plus, [{"value": i, "increment": 1} for i in range(5)], n_jobs=2)
    assert ordered == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("n_jobs", [None, 2, 3])
def test_fits_stop_at_the_first_prefix_the_rule_stops_whatever_n_jobs(n_jobs):
    import torch

    seen = []

    def reached_three(results):
        seen.append(list(results))
        return results[-1] >= 3

    torch.manual_seed(0)
    torch.randint(0, 2**31 - 1, (5,))  # what fit_all draws: one seed per argument
    after_five_draws = torch.get_rng_state()
    torch.manual_seed(0)
    stopped = fit_all(_plus, [{"value": i, "increment": 1} for i in range(5)], n_jobs, stop_after=reached_three)
    assert stopped == [1, 2, 3]  # a fit run past the stop in the same batch is dropped
    assert seen[-1] == [1, 2, 3] and all(prefix[-1] < 3 for prefix in seen[:-1])
    assert torch.equal(torch.get_rng_state(), after_five_draws)  # what follows draws the same
    never = fit_all(_plus, [{"value": i, "increment": 1} for i in range(5)], n_jobs, stop_after=lambda results: False)
    assert never == [1, 2, 3, 4, 5]


def test_parallel_candidates_choose_and_train_the_same_network(breast_cancer):
    X_train, X_test, y_train, _ = breast_cancer
    sequential = NeuralNetClassifier(**SMALL, n_init=2).fit(X_train, y_train)
    parallel = NeuralNetClassifier(**SMALL, n_init=2, n_jobs=2).fit(X_train, y_train)
    # Penalties, sparse first layers and a second initialization were compared.
    assert any(density < 1 for _, density in sequential.regularization_scores_)
    assert len(sequential.regularization_scores_) > 2 and len(sequential.initialization_scores_) == 2
    assert parallel.regularization_scores_ == sequential.regularization_scores_
    assert parallel.initialization_scores_ == sequential.initialization_scores_
    assert (parallel.weight_decay_, parallel.first_layer_density_, parallel.initialization_) == (
        sequential.weight_decay_,
        sequential.first_layer_density_,
        sequential.initialization_,
    )
    np.testing.assert_array_equal(parallel.predict_proba(X_test), sequential.predict_proba(X_test))


def test_the_search_derives_the_same_candidates_in_parallel(breast_cancer):
    # Shuffled batches draw from torch's generator in the fine-tunes, which do not seed themselves.
    X_train, _, y_train, _ = breast_cancer
    params = dict(SMALL, tighten=True, optimizer__weight_decay=1e-4, first_layer_density=1.0)
    params["iterator_train__shuffle"] = True
    sequential = NeuralNetClassifier(**params).fit(X_train, y_train)
    parallel = NeuralNetClassifier(**params, n_jobs=2).fit(X_train, y_train)
    derived = [c for c in sequential.tightening_candidates_ if c["accumulator_bits"] < 10 or c["neuron_fraction"]]
    assert len(derived) >= 4  # narrower accumulators and fewer neurons were derived
    assert parallel.tightening_candidates_ == sequential.tightening_candidates_
    assert parallel.accumulator_bits_ == sequential.accumulator_bits_


def test_an_unseeded_parallel_fit_follows_numpys_global_generator(iris):
    # random_state=None: one seed drawn for the whole fit, so the workers do not draw from their own.
    X_train, _, y_train, _ = iris
    params = dict(SMALL, random_state=None, n_jobs=2)
    fits = []
    for _ in range(2):
        np.random.seed(0)
        fits.append(NeuralNetClassifier(**params).fit(X_train, y_train))
    assert fits[0]._unseeded_fit_seed == fits[1]._unseeded_fit_seed is not None
    assert fits[0].regularization_scores_ == fits[1].regularization_scores_
    np.testing.assert_array_equal(fits[0].calibration_X_, fits[1].calibration_X_)
    np.testing.assert_array_equal(fits[0].predict_proba(X_train), fits[1].predict_proba(X_train))
