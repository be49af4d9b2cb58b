"""A logistic regression as exchanged arrays: shapes, round trips, warm starts, files."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from fedsilo.examples.fraud.model import (
    PENALTIES,
    fit_proximal,
    get_model_parameters,
    load_model,
    new_model,
    save_model,
    set_initial_params,
    set_model_params,
)

RNG = np.random.default_rng(0)
X = RNG.normal(size=(200, 4))
Y = (X @ np.array([1.0, -2.0, 0.5, 0.0]) + RNG.normal(scale=0.5, size=200) > 0).astype(int)


def test_new_model_warm_starts_with_the_given_iterations() -> None:
    model = new_model("l2", max_iter=7)
    assert model.warm_start is True and model.max_iter == 7


@pytest.mark.parametrize("penalty", PENALTIES)
def test_every_penalty_fits_without_deprecation_warnings(penalty: str) -> None:
    model = new_model(penalty, max_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)  # ConvergenceWarning: few iterations
        model.fit(X, Y)
    assert model.coef_.shape == (1, 4)


def test_unknown_penalty_is_refused() -> None:
    with pytest.raises(ValueError, match="l2"):
        new_model("ridge")


def test_zero_initial_parameters_have_fit_shapes() -> None:
    model = set_initial_params(new_model(), n_features=15)
    coef, intercept = get_model_parameters(model)
    assert coef.shape == (1, 15) and intercept.shape == (1,)
    assert not coef.any() and not intercept.any()
    fitted = LogisticRegression().fit(X, Y)
    assert [a.shape for a in get_model_parameters(fitted)] == [(1, 4), (1,)]


def test_zero_initial_parameters_for_three_classes() -> None:
    model = set_initial_params(new_model(), n_features=5, n_classes=3)
    assert [a.shape for a in get_model_parameters(model)] == [(3, 5), (3,)]
    assert list(model.classes_) == [0, 1, 2]


def test_zero_model_predicts_even_odds() -> None:
    model = set_initial_params(new_model(), n_features=4)
    np.testing.assert_allclose(model.predict_proba(X), 0.5)


def test_parameters_round_trip() -> None:
    source = LogisticRegression().fit(X, Y)
    target = set_model_params(new_model(), get_model_parameters(source))
    for a, b in zip(get_model_parameters(target), get_model_parameters(source), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(target.predict_proba(X), source.predict_proba(X))


def test_returned_parameters_are_copies() -> None:
    model = LogisticRegression().fit(X, Y)
    params = get_model_parameters(model)
    params[0][:] = 99.0
    assert not np.any(model.coef_ == 99.0)


def test_without_intercept_only_coef_is_exchanged() -> None:
    model = LogisticRegression(fit_intercept=False).fit(X, Y)
    params = get_model_parameters(model)
    assert len(params) == 1 and params[0].shape == (1, 4)
    with pytest.raises(ValueError, match="expected 1 arrays"):
        set_model_params(LogisticRegression(fit_intercept=False), [params[0], np.zeros(1)])


def test_fit_continues_from_the_parameters_it_was_given() -> None:
    converged = LogisticRegression(max_iter=1000).fit(X, Y)
    model = set_model_params(new_model(max_iter=1), get_model_parameters(converged))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, Y)
    np.testing.assert_allclose(model.coef_, converged.coef_, atol=1e-2)
    cold = new_model(max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cold.fit(X, Y)
    assert np.abs(cold.coef_ - converged.coef_).max() > 0.1


def test_save_and_load(tmp_path: Path) -> None:
    model = LogisticRegression().fit(X, Y)
    path = save_model(tmp_path / "out", model)
    assert path == tmp_path / "out" / "model.joblib"
    for where in (path, tmp_path / "out"):
        np.testing.assert_array_equal(load_model(where).coef_, model.coef_)
    assert save_model(tmp_path / "m.joblib", model) == tmp_path / "m.joblib"


def test_loading_something_else_is_refused(tmp_path: Path) -> None:
    import joblib

    joblib.dump({"not": "a model"}, tmp_path / "model.joblib")
    with pytest.raises(TypeError, match="dict"):
        load_model(tmp_path)


def prox_objective(theta: np.ndarray, anchor: np.ndarray, mu: float, c: float) -> float:
    """FedProx's local objective written out: mean log loss + L2 / (2 C n) + prox term."""
    w, b = theta[:-1], theta[-1]
    z = X @ w + b
    log_loss_mean = float(np.mean(np.logaddexp(0.0, z) - Y * z))
    return (log_loss_mean + float(w @ w) / (2 * c * len(X))
            + mu / 2 * float(np.sum((theta - anchor) ** 2)))


def as_theta(model: LogisticRegression) -> np.ndarray:
    return np.concatenate([model.coef_[0], model.intercept_])


def test_fit_proximal_without_the_term_reaches_sklearns_l2_optimum() -> None:
    reference = LogisticRegression(C=1.0, max_iter=1000, tol=1e-10).fit(X, Y)
    model = set_initial_params(new_model("l2", max_iter=1), n_features=4)
    fit_proximal(model, X, Y, [np.zeros((1, 4)), np.zeros(1)], proximal_mu=0.0,
                 max_iter=20_000)
    np.testing.assert_allclose(as_theta(model), as_theta(reference), atol=1e-4)


def test_fit_proximal_stops_at_the_prox_objectives_minimum() -> None:
    anchor = np.array([0.5, 0.5, -1.0, 2.0, 0.3])
    model = set_initial_params(new_model("l2", max_iter=1), n_features=4)
    fit_proximal(model, X, Y, [anchor[:4].reshape(1, 4), anchor[4:]], proximal_mu=0.5,
                 max_iter=5000)
    theta = as_theta(model)
    # Central finite differences of the objective vanish at its minimum.
    eps = 1e-6
    grad = [(prox_objective(theta + eps * e, anchor, 0.5, 1.0)
             - prox_objective(theta - eps * e, anchor, 0.5, 1.0)) / (2 * eps)
            for e in np.eye(5)]
    np.testing.assert_allclose(grad, 0.0, atol=1e-6)


def test_a_larger_proximal_mu_keeps_the_model_nearer_the_global_one() -> None:
    anchor = [np.array([[2.0, 2.0, 2.0, 2.0]]), np.array([1.0])]
    distances = []
    for mu in (0.0, 0.1, 1.0, 10.0, 1e4):
        model = set_initial_params(new_model("l2", max_iter=200), n_features=4)
        fit_proximal(model, X, Y, anchor, proximal_mu=mu)
        distances.append(float(np.linalg.norm(as_theta(model) - np.array([2, 2, 2, 2, 1.0]))))
    assert distances == sorted(distances, reverse=True) and distances[0] > 1.0
    assert distances[-1] < 1e-3


def test_fit_proximal_refuses_l1_penalties() -> None:
    model = set_initial_params(new_model("l1", max_iter=5), n_features=4)
    with pytest.raises(ValueError, match="l2 and none"):
        fit_proximal(model, X, Y, get_model_parameters(model), proximal_mu=0.1)
