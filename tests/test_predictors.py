"""Predictors learn a known function of the config, rank unseen configs, and fail clearly."""

from __future__ import annotations

import doctest
import importlib
import math

import networkx as nx
import numpy as np
import pytest
from scipy.stats import kendalltau

import predictors
from nas.space import Choice, InvalidConfig, SearchSpace

OPS = ("relu", "silu", "gelu")
OP_BONUS = {"relu": 0.0, "silu": 0.4, "gelu": 0.8}


def block_graph(config):
    """input -> per block: a low-rank linear node (width, rank) then an activation node -> output."""
    graph = nx.DiGraph()
    graph.add_node("input", op="input")
    previous = "input"
    for i in range(config["depth"]):
        graph.add_node(f"b{i}", op="lowrank", width=config[f"b{i}.width"], rank=config[f"b{i}.rank"])
        graph.add_node(f"b{i}.act", op=config["act"])
        graph.add_edges_from([(previous, f"b{i}"), (f"b{i}", f"b{i}.act")])
        previous = f"b{i}.act"
    graph.add_node("output", op="output")
    graph.add_edge(previous, "output")
    return graph


def make_space(graph=block_graph) -> SearchSpace:
    dims = [Choice("depth", [1, 2, 3]), Choice("act", list(OPS))]
    for i in range(3):
        dims.append(Choice(f"b{i}.width", [16, 32, 64, 128], when=("depth", [d for d in (1, 2, 3) if d > i])))
        dims.append(Choice(f"b{i}.rank", [2, 4, 8], when=(f"b{i}.width", [16, 32, 64, 128])))
    return SearchSpace(dims, graph=graph)


def known_function(config, rng) -> float:
    """Sum over blocks of log widths and half log ranks, plus an op bonus, plus small noise."""
    total = sum(
        math.log2(config[f"b{i}.width"]) + 0.5 * math.log2(config[f"b{i}.rank"]) for i in range(config["depth"])
    )
    return total + OP_BONUS[config["act"]] + rng.normal(0, 0.05)


@pytest.fixture(scope="module")
def space():
    return make_space()


@pytest.fixture(scope="module")
def data(space):
    """150 training and 300 held-out configs (distinct), with the known function's values."""
    rng = np.random.default_rng(0)
    configs = list(space.enumerate())
    order = rng.permutation(len(configs))
    chosen = [configs[i] for i in order[:450]]
    values = np.array([known_function(c, rng) for c in chosen])
    return chosen[:150], values[:150], chosen[150:], values[150:]


@pytest.fixture(scope="module")
def fitted(space, data):
    train, y, _, _ = data
    return {name: predictors.get(name, space, seed=0).fit(train, y) for name in predictors.names()}


# -- learning ------------------------------------------------------------------------------
def test_registry_lists_every_predictor():
    assert predictors.names() == ["boosting", "ensemble", "forest", "gp", "graph", "mlp", "ridge"]


@pytest.mark.parametrize("name", predictors.names())
def test_every_predictor_ranks_held_out_configs_of_a_known_function(name, fitted, data):
    _, _, test, y_test = data
    predicted = fitted[name].predict(test)
    assert predicted.shape == (len(test),) and predicted.dtype == float
    tau = kendalltau(y_test, predicted).statistic
    assert tau >= 0.7, f"{name}: Kendall tau {tau:.3f} on held-out configs"


@pytest.mark.parametrize("name", predictors.names())
def test_same_seed_gives_same_predictions(name, space, data, fitted):
    train, y, test, _ = data
    again = predictors.get(name, space, seed=0).fit(train, y)
    np.testing.assert_array_equal(again.predict(test), fitted[name].predict(test))


def test_different_seed_gives_a_different_mlp(space, data, fitted):
    train, y, test, _ = data
    other = predictors.get("mlp", space, seed=1).fit(train, y)
    assert not np.allclose(other.predict(test), fitted["mlp"].predict(test))


@pytest.mark.parametrize("name", ["gp", "forest", "ensemble", "graph"])
def test_predict_std_gives_one_positive_spread_per_config(name, fitted, data):
    _, _, test, _ = data
    std = fitted[name].predict_std(test[:20])
    assert std.shape == (20,)
    assert np.all(std >= 0) and np.all(np.isfinite(std)) and std.max() > 0


@pytest.mark.parametrize("name", ["gp", "forest", "ensemble", "graph"])
def test_predict_mean_std_is_exactly_predict_and_predict_std(name, fitted, data):
    _, _, test, _ = data
    mean, std = fitted[name].predict_mean_std(test)
    assert np.array_equal(mean, fitted[name].predict(test)) and np.array_equal(std, fitted[name].predict_std(test))
    empty = fitted[name].predict_mean_std([])
    assert empty[0].shape == empty[1].shape == (0,)


@pytest.mark.parametrize("name", ["ridge", "boosting", "mlp"])
def test_predict_std_without_uncertainty_names_the_predictors_that_have_it(name, fitted, data):
    with pytest.raises(NotImplementedError, match="does not estimate uncertainty.*ensemble, forest, gp, graph"):
        fitted[name].predict_std(data[2][:3])
    with pytest.raises(NotImplementedError, match="does not estimate uncertainty"):
        fitted[name].predict_mean_std(data[2][:3])


def test_graph_ridge_has_no_predict_std(space, data):
    train, y, test, _ = data
    model = predictors.GraphPredictor(space, regressor="ridge").fit(train, y)
    assert model.predict(test).shape == (len(test),)
    with pytest.raises(NotImplementedError, match="does not estimate uncertainty"):
        model.predict_std(test)


def test_predict_of_no_configs_is_an_empty_array(fitted):
    assert fitted["ridge"].predict([]).shape == (0,)
    assert fitted["gp"].predict_std([]).shape == (0,)


def test_ridge_degree_two_fits_an_interaction_the_linear_one_cannot(space):
    rng = np.random.default_rng(1)
    configs = [space.sample(rng) for _ in range(200)]
    y = [math.log2(c["b0.width"]) * math.log2(c["b0.rank"]) for c in configs]  # a product
    linear = predictors.RidgePredictor(space, alpha=1e-3).fit(configs, y)
    quadratic = predictors.RidgePredictor(space, alpha=1e-3, degree=2).fit(configs, y)
    error = lambda m: np.abs(m.predict(configs) - y).mean()  # noqa: E731
    assert error(quadratic) < 0.01 < error(linear)


# -- features ------------------------------------------------------------------------------
def test_featuriser_codes_equal_encode_many(space, data):
    configs = data[0] + data[2]
    featuriser = predictors.Featuriser(space)
    np.testing.assert_array_equal(featuriser.codes(configs), space.encode_many(configs))
    X = featuriser.transform(configs)
    assert X.shape == (len(configs), featuriser.n_features) == (len(configs), len(featuriser.names))
    assert X.min() >= 0 and X.max() <= 1


def test_featuriser_gives_absent_blocks_zero_and_one_hot_ops(space):
    featuriser = predictors.Featuriser(space)
    config = {"depth": 1, "act": "gelu", "b0.width": 128, "b0.rank": 2}
    row = dict(zip(featuriser.names, featuriser.transform([config])[0]))
    assert row["act=gelu"] == 1 and row["act=relu"] == row["act=silu"] == 0
    assert row["b0.width"] == 1 and row["b0.rank"] == 0
    assert row["b1.width"] == row["b1.rank"] == row["active(depth in [2, 3])"] == 0
    assert row["active(depth in [1, 2, 3])"] == 1


@pytest.mark.parametrize(
    "config, message",
    [
        ({"depth": 1, "act": "tanh", "b0.width": 16, "b0.rank": 2}, "'act' must be one of"),
        ({"depth": 1, "act": "relu", "b0.width": 16}, "missing dimension 'b0.rank'"),
        ({"depth": 1, "act": "relu", "b0.width": 16, "b0.rank": 2, "b1.width": 16}, "'b1.width' is inactive"),
        ({"depth": 1, "act": "relu", "b0.width": 16, "b0.rank": 2, "colour": "red"}, "unknown dimension 'colour'"),
    ],
)
def test_predicting_an_invalid_config_raises_the_space_error(fitted, config, message):
    with pytest.raises(InvalidConfig, match=message):
        fitted["ridge"].predict([config])
    with pytest.raises(InvalidConfig, match=message):
        fitted["graph"].predict([config])


def test_graph_features_come_from_the_space_graph_and_are_cached(space):
    model = predictors.GraphPredictor(space, h=1)
    config = {"depth": 2, "act": "gelu", "b0.width": 16, "b0.rank": 2, "b1.width": 64, "b1.rank": 8}
    first = model.features([config])[0]
    assert first["0:gelu()"] == 2 and first["0:lowrank(rank=8,width=64)"] == 1
    assert first["0:lowrank.width=64"] == 1
    assert model.features([dict(config)])[0] is first  # cached by space.key(config)
    other = model.features([{**config, "act": "relu"}])[0]
    assert other != first


def test_graph_predictor_works_on_the_default_chain_graph(data):
    space = make_space(graph=None)
    train, y, test, y_test = data
    model = predictors.GraphPredictor(space).fit(train, y)
    assert kendalltau(y_test, model.predict(test)).statistic >= 0.7


# -- parameters and registry ---------------------------------------------------------------
def test_unknown_name_lists_the_known_ones(space):
    with pytest.raises(ValueError, match="unknown predictor 'svm'; known predictors: boosting, ensemble, forest"):
        predictors.get("svm", space)


def test_unknown_keyword_lists_the_parameters(space):
    with pytest.raises(TypeError, match="'ridge' .* has no parameter 'depth'; its parameters are: alpha, degree, seed"):
        predictors.get("ridge", space, depth=3)


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("ridge", {"alpha": -1.0}, "The 'alpha' parameter of RidgePredictor must be a float > 0, got -1.0"),
        ("ridge", {"degree": 3}, "The 'degree' parameter of RidgePredictor must be 1 or 2, got 3"),
        ("gp", {"nu": 2.0}, "The 'nu' parameter of GPPredictor must be one of 0.5, 1.5, 2.5, inf"),
        ("forest", {"kind": "gbm"}, "The 'kind' parameter of ForestPredictor must be 'extra' or 'random'"),
        ("forest", {"n_estimators": 0}, "'n_estimators' parameter of ForestPredictor must be an int >= 1"),
        ("boosting", {"learning_rate": 2.0}, "'learning_rate' parameter of BoostingPredictor must be a float in"),
        ("mlp", {"hidden": ()}, "'hidden' parameter of MLPPredictor must be a non-empty sequence"),
        ("graph", {"h": -1}, "The 'h' parameter of GraphPredictor must be an int >= 0, got -1"),
        ("graph", {"regressor": "svm"}, "'regressor' parameter of GraphPredictor must be 'gp' or 'ridge'"),
        ("ensemble", {"members": ["ridge", "svm"]}, "'members' parameter of EnsemblePredictor must name"),
        ("ensemble", {"members": []}, "'members' parameter of EnsemblePredictor must be a non-empty"),
        ("mlp", {"seed": -3}, "The 'seed' parameter of MLPPredictor must be an int >= 0 or None, got -3"),
    ],
)
def test_bad_hyper_parameters_are_refused_naming_parameter_value_and_allowed(space, name, kwargs, message):
    with pytest.raises(predictors.InvalidParameterError, match=message):
        predictors.get(name, space, **kwargs)


def test_space_must_be_a_search_space():
    with pytest.raises(predictors.InvalidParameterError, match="'space' parameter of GPPredictor must be a nas"):
        predictors.GPPredictor({"depth": [1, 2]})


def test_params_are_stored_as_given_and_clone_keeps_them(space):
    model = predictors.ForestPredictor(space, n_estimators=7, kind="random", seed=3)
    assert model.get_params() == {
        "space": space, "n_estimators": 7, "kind": "random", "max_features": 0.5, "min_samples_leaf": 1, "seed": 3,
    }
    assert repr(model) == "ForestPredictor(n_estimators=7, kind='random', seed=3)"
    copy = model.clone()
    assert copy.get_params() == model.get_params() and copy.space is space
    assert not hasattr(copy, "model_")
    with pytest.raises(predictors.InvalidParameterError, match="'kind' parameter"):
        model.set_params(kind="boosted")


def test_ensemble_accepts_configured_member_objects(space, data):
    train, y, test, _ = data
    members = [predictors.RidgePredictor(space, degree=2), "forest"]
    model = predictors.EnsemblePredictor(space, members=members).fit(train, y)
    assert [type(m).__name__ for m in model.members_] == ["RidgePredictor", "ForestPredictor"]
    assert model.members_[0].degree == 2 and model.members_[0] is not members[0]
    expected = np.mean([m.predict(test) for m in model.members_], axis=0)
    np.testing.assert_allclose(model.predict(test), expected)
    with pytest.raises(predictors.InvalidParameterError, match="built on another search space"):
        predictors.EnsemblePredictor(space, members=[predictors.RidgePredictor(make_space())])


@pytest.mark.parametrize("name", ["ridge", "gp", "forest", "ensemble", "graph"])
def test_given_feature_rows_give_exactly_the_predictions_of_featurising_the_configs(name, space, data):
    train, y, test, _ = data
    featuriser = predictors.Featuriser(space)
    X_train, X_test = featuriser.transform(train), featuriser.transform(test)
    plain = predictors.get(name, space, seed=0).fit(train, y)
    given = predictors.get(name, space, seed=0).fit(train, y, features=X_train)
    assert np.array_equal(given.predict(test, features=X_test), plain.predict(test))
    if plain.supports_std:
        assert np.array_equal(given.predict_std(test, features=X_test), plain.predict_std(test))


def test_given_feature_rows_are_used_instead_of_featurising(space, data):
    train, y, test, _ = data
    X_train = predictors.Featuriser(space).transform(train)
    model = predictors.RidgePredictor(space).fit(train, y, features=X_train)
    X_test = predictors.Featuriser(space).transform(test)
    shifted = model.predict(test, features=X_test + 1.0)  # the rows given, not the configs' own
    assert not np.allclose(shifted, model.predict(test))
    members = predictors.EnsemblePredictor(space, members=("ridge", "forest")).fit(train, y, features=X_train)
    assert not np.allclose(members.predict(test, features=X_test + 1.0), members.predict(test))  # passed on to the members


def test_feature_rows_of_the_wrong_shape_are_refused_naming_the_shape(space, data):
    train, y, _, _ = data
    X = predictors.Featuriser(space).transform(train)
    with pytest.raises(ValueError, match=r"'features' parameter must have shape \(150, 16\) .* got \(149, 16\)"):
        predictors.RidgePredictor(space).fit(train, y, features=X[:-1])
    model = predictors.RidgePredictor(space).fit(train, y)
    with pytest.raises(ValueError, match=r"must have shape \(150, 16\) .* got \(150, 15\)"):
        model.predict(train, features=X[:, :-1])
    assert model.predict(train).shape == (150,)  # a refused call leaves nothing behind


# -- data validation -----------------------------------------------------------------------
def test_fit_and_predict_refuse_bad_data_clearly(space, data):
    train, y, _, _ = data
    model = predictors.RidgePredictor(space)
    with pytest.raises(predictors.NotFittedError, match="not fitted yet; call fit"):
        model.predict(train)
    with pytest.raises(ValueError, match="got 150 configs but 149 values"):
        model.fit(train, y[:-1])
    with pytest.raises(ValueError, match="empty"):
        model.fit([], [])
    with pytest.raises(ValueError, match="at least 2"):
        model.fit(train[:1], y[:1])
    bad = y.copy()
    bad[7] = np.nan
    with pytest.raises(ValueError, match="value 7 is nan"):
        model.fit(train, bad)
    with pytest.raises(TypeError, match="single dict; wrap it in a list"):
        model.fit(train[0], y[:1])
    with pytest.raises(ValueError, match="1-D"):
        model.fit(train, np.stack([y, y], axis=1))
    assert not hasattr(model, "n_fitted_")


# -- validate and auto ---------------------------------------------------------------------
def test_validate_reports_cross_validated_ranking(space, data):
    train, y, _, _ = data
    scores = predictors.validate("gp", space, train, y, folds=5, seed=0)
    assert set(scores) == {"kendall_tau", "spearman_rho", "mae", "kendall_tau_std", "folds", "n", "predictor"}
    assert scores["folds"] == 5 and scores["n"] == 150 and scores["predictor"] == "gp"
    assert scores["kendall_tau"] >= 0.7 and scores["spearman_rho"] >= scores["kendall_tau"]
    assert scores["mae"] < 0.5
    assert predictors.validate("gp", space, train, y, folds=5, seed=0) == scores


def test_validate_accepts_a_configured_predictor(space, data):
    train, y, _, _ = data
    model = predictors.RidgePredictor(space, degree=2)
    scores = predictors.validate(model, space, train, y, folds=3)
    assert scores["predictor"] == "RidgePredictor(degree=2)" and not hasattr(model, "n_fitted_")
    with pytest.raises(ValueError, match="another search space"):
        predictors.validate(model, make_space(), train, y)


def test_validate_refuses_bad_folds_and_names(space, data):
    train, y, _, _ = data
    with pytest.raises(ValueError, match=r"folds must be an int in \[2, 150\]"):
        predictors.validate("ridge", space, train, y, folds=1)
    with pytest.raises(ValueError, match="unknown predictor 'svm'"):
        predictors.validate("svm", space, train, y)


def test_ranking_scores_of_a_constant_prediction_are_zero():
    scores = predictors.ranking_scores(np.array([1.0, 2.0, 3.0]), np.array([5.0, 5.0, 5.0]))
    assert scores == {"kendall_tau": 0.0, "spearman_rho": 0.0, "mae": 3.0}


def test_auto_returns_the_best_candidate_fitted_on_all_data(space, data):
    train, y, test, y_test = data
    model = predictors.auto(space, train, y, candidates=["forest", "ridge", "gp"], seed=0)
    taus = [s["kendall_tau"] for s in model.auto_scores_]
    assert taus == sorted(taus, reverse=True) and len(taus) == 3
    assert model.name == model.auto_scores_[0]["predictor"]
    assert model.n_fitted_ == len(train)
    assert kendalltau(y_test, model.predict(test)).statistic >= 0.7


def test_auto_with_default_candidates_on_few_configs(space, data):
    train, y, _, _ = data
    model = predictors.auto(space, train[:40], y[:40], folds=3)
    assert model.name in predictors.names() and hasattr(model, "n_fitted_")
    assert {s["predictor"] for s in model.auto_scores_} == {"ridge", "gp", "forest", "boosting", "mlp", "graph"}


def test_auto_refuses_empty_candidates(space, data):
    with pytest.raises(ValueError, match="candidates must be a non-empty list"):
        predictors.auto(space, data[0], data[1], candidates=[])


# -- documentation -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "module",
    ["predictors", "_base", "_features", "_registry", "_ridge", "_gp", "_forest", "_boosting", "_mlp",
     "_ensemble", "_graph", "_selection"],
)
def test_docstring_examples_run(module):
    mod = importlib.import_module(module if module == "predictors" else f"predictors.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
