"""A spec's [train] keys it does not give come from the family's recipe (`nas.training.family_recipe`)."""

from nas.data import mnist1d
from nas.runs import load_spec
from nas.training import family_recipe
from search_spaces.cnn1d import CNN1D


def _spec(train=None):
    spec = {"space": {"family": "cnn1d"}, "data": {"source": "mnist1d", "args": {"samples": 1000}}}
    if train is not None:
        spec["train"] = train
    return load_spec(spec)


def test_a_spec_without_train_values_gets_the_family_recipe():
    spec = _spec()
    recipe = family_recipe(CNN1D(), mnist1d("signal", samples=1000))
    assert spec["train.epochs"] == recipe["epochs"] != 40
    assert spec["train.lr"] == recipe["lr"] == CNN1D.recipe["lr"]
    assert spec["train.distill"] == "off"
    assert spec["train.strategy"] == "sandwich"
    assert spec["train.strategy_args"] == {"n": CNN1D.recipe["strategy_args"]["n"]}
    kwargs = spec.train_kwargs()
    assert kwargs["epochs"] == recipe["epochs"] and kwargs["distill"] is False and kwargs["strategy"].n == 2


def test_train_values_a_spec_gives_win_over_the_family_recipe():
    spec = _spec({"epochs": 3, "distill": "kl", "strategy": "sandwich"})
    assert spec["train.epochs"] == 3
    assert spec["train.distill"] == "kl"
    assert spec["train.strategy_args"] == {"n": 4}  # the strategy's own default, not the family's n
    assert spec["train.lr"] == CNN1D.recipe["lr"]  # not given: still the family's
    assert load_spec(_spec(), epochs=5)["train.epochs"] == 5  # a flag wins too
