"""Linear pipelines answered for a whole table from their weights give river's per-row answers."""

from __future__ import annotations

import dill
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river import compose, linear_model, optim, preprocessing, tree

from model_wrappers.learning.linear_table import LinearTable
from model_wrappers.learning.challengers import PromotionRule
from model_wrappers.learning.model import MANY_FROM, ModelState
from support import phishing_pipeline, phishing_stream

NAMES = ["a", "b", "c", "d"]


def stream(n: int, seed: int, regression: bool = False):
    """Rows of four features; ``d`` never varies, so the scaler's variance for it stays 0."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        x = {"a": float(rng.normal(0, 3)), "b": float(rng.normal(100, 50)), "c": float(rng.uniform(-1, 1)), "d": 7.0}
        signal = x["a"] - 0.02 * x["b"] + 2 * x["c"]
        yield x, (signal + float(rng.normal(0, 0.5)) if regression else signal + float(rng.normal(0, 1)) > -2)


def trained(pipeline, regression: bool = False, n: int = 400):
    for x, y in stream(n, seed=1, regression=regression):
        pipeline.learn_one(x, y)
    return pipeline


def table_of(rows):
    return [[x[n] for n in NAMES] for x in rows]


def per_row(pipeline, rows, columns):
    if columns == ["prediction"]:
        return [[pipeline.predict_one(x)] for x in rows]
    return [[pipeline.predict_proba_one(x)[c] for c in columns] for x in rows]


SHAPES = {
    "scaler-logistic": lambda: preprocessing.StandardScaler() | linear_model.LogisticRegression(),
    "scaler-without-std-logistic": lambda: preprocessing.StandardScaler(with_std=False) | linear_model.LogisticRegression(),
    "logistic": lambda: linear_model.LogisticRegression(optimizer=optim.SGD(0.001)),
    "logistic-l2": lambda: preprocessing.StandardScaler() | linear_model.LogisticRegression(l2=0.01, intercept_lr=0.1),
    "scaler-linear": lambda: preprocessing.StandardScaler() | linear_model.LinearRegression(),
    "linear-absolute-loss": lambda: preprocessing.StandardScaler() | linear_model.LinearRegression(
        loss=optim.losses.Absolute()),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_a_table_gets_the_per_row_answers(shape):
    pipeline = trained(SHAPES[shape](), regression="linear" in shape and "logistic" not in shape)
    rows = [x for x, _ in stream(64, seed=2)]
    found = LinearTable.of(pipeline)
    assert found is not None
    got = found.outputs(NAMES, table_of(rows))
    assert got.shape == (64, len(found.columns))
    np.testing.assert_allclose(got, per_row(pipeline, rows, found.columns), rtol=1e-12, atol=1e-9)


def test_a_feature_without_variance_scales_to_zero_as_river_does_row_by_row():
    pipeline = trained(phishing_pipeline())
    assert pipeline["StandardScaler"].vars["d"] == 0
    rows = [{**x, "d": 1e6} for x, _ in stream(40, seed=3)]  # far from d's only value
    got = LinearTable.of(pipeline).outputs(NAMES, table_of(rows))
    np.testing.assert_allclose(got, per_row(pipeline, rows, [False, True]), rtol=0, atol=1e-12)


def test_logits_beyond_thirty_give_exactly_zero_or_one_as_river_does():
    pipeline = trained(linear_model.LogisticRegression(optimizer=optim.SGD(0.1)))
    rows = [{"a": s * 1e3, "b": 0.0, "c": 0.0, "d": 0.0} for s in (-1, 1)] + [x for x, _ in stream(40, seed=4)]
    got = LinearTable.of(pipeline).outputs(NAMES, table_of(rows)).tolist()
    expected = per_row(pipeline, rows, [False, True])
    assert {tuple(got[0]), tuple(got[1])} == {(1.0, 0.0), (0.0, 1.0)}
    assert got[:2] == expected[:2]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_an_overflowing_table_is_left_to_the_per_row_path():
    pipeline = trained(phishing_pipeline())
    rows = [{"a": 0.0, "b": 100.0, "c": 1.7e308, "d": 7.0}] * 3  # c scaled by its deviation (~0.58): inf
    assert LinearTable.of(pipeline).outputs(NAMES, table_of(rows)) is None


@pytest.mark.parametrize("make", [
    lambda: tree.HoeffdingTreeClassifier(),
    lambda: preprocessing.StandardScaler() | preprocessing.MinMaxScaler() | linear_model.LogisticRegression(),
    lambda: preprocessing.MinMaxScaler() | linear_model.LogisticRegression(),
    lambda: preprocessing.StandardScaler() | linear_model.LogisticRegression(loss=optim.losses.Hinge()),
    lambda: preprocessing.StandardScaler() | linear_model.LinearRegression(loss=optim.losses.Poisson()),
    lambda: preprocessing.StandardScaler() | linear_model.PAClassifier(),
    lambda: preprocessing.StandardScaler() | type("Calibrated", (linear_model.LogisticRegression,), {})(),
], ids=["tree", "three-steps", "other-scaler", "hinge-loss", "poisson-loss", "other-linear", "subclass"])
def test_other_pipelines_are_not_taken_for_linear_ones(make):
    assert LinearTable.of(make()) is None


def test_no_table_while_the_scaler_learns_from_what_it_predicts():
    pipeline = trained(phishing_pipeline())
    with compose.learn_during_predict():
        assert LinearTable.of(pipeline) is None
    assert LinearTable.of(pipeline) is not None


def test_an_unlearned_feature_leaves_the_table_to_river_and_the_state_untouched():
    pipeline = phishing_pipeline()
    pipeline.learn_one({"a": 1.0, "b": 2.0}, True)
    before = dill.dumps(pipeline)
    rows = [{"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}]
    assert LinearTable.of(pipeline).outputs(NAMES, table_of(rows)) is None
    assert dill.dumps(pipeline) == before


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.floats(-1e12, 1e12, allow_nan=False), min_size=4, max_size=4), min_size=1, max_size=50))
def test_any_table_of_finite_numbers_gives_probabilities_or_none_and_learns_nothing(table):
    pipeline = trained(phishing_pipeline(), n=60)
    before = dill.dumps(pipeline)
    got = LinearTable.of(pipeline).outputs(NAMES, table)
    assert dill.dumps(pipeline) == before
    if got is not None:
        assert got.shape == (len(table), 2)
        assert ((got >= 0) & (got <= 1)).all()
        assert np.abs(got.sum(axis=1) - 1).max() <= 1e-12


def state_of(pipeline, task: str, learn: int = 300, **options) -> ModelState:
    state = ModelState(pipeline, task, [False, True] if task == "classifier" else [], **options)
    for x, y in stream(learn, seed=5, regression=task == "regressor"):
        state.apply({"type": "learn", "rows": [x], "truth": [y]})
    return state


def test_a_regressor_answers_a_batch_at_once_with_its_per_row_predictions():
    state = state_of(preprocessing.StandardScaler() | linear_model.LinearRegression(), "regressor")
    rows = [x for x, _ in stream(MANY_FROM + 5, seed=6)]
    expected = state.predict(rows)
    for _ in range(2):  # the first batch checks the batch path, the second is answered by it
        names, values = state.predict_table(NAMES, table_of(rows))
        assert names == expected[0] == ["prediction"]
        np.testing.assert_allclose(values, expected[1], rtol=1e-12, atol=1e-9)
    assert state._many is True


def test_a_promoted_challenger_has_its_batch_path_checked_again():
    state = state_of(phishing_pipeline(), "classifier", challengers={"tree": tree.HoeffdingTreeClassifier()},
                     rule=PromotionRule("classifier", promote_after=0))
    rows = [x for x, _ in stream(MANY_FROM, seed=7)]
    state.predict_table(NAMES, table_of(rows))
    assert state._many is True
    state.apply({"type": "promote", "candidate": "tree"})
    assert state.name == "tree" and state._many is None
    assert state.predict_table(NAMES, table_of(rows)) == state.predict(rows)
    assert not state._many  # no batch path for a tree: row by row


def test_the_phishing_model_takes_the_table_path():
    pipeline = phishing_pipeline()
    data = list(phishing_stream(300))
    for x, y in data:
        pipeline.learn_one(x, y)
    names = list(data[0][0])
    rows = [x for x, _ in data[:MANY_FROM]]
    got = LinearTable.of(pipeline).outputs(names, [[x[n] for n in names] for x in rows])
    expected = [[pipeline.predict_proba_one(x)[c] for c in (False, True)] for x in rows]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
