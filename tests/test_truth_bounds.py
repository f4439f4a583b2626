"""A regression truth too large to learn from is refused before it is logged."""

from __future__ import annotations

import pytest

from model_wrappers.errors import InvalidInput
from model_wrappers.learning.model import MAX_TRUTH, ModelState


def test_a_truth_whose_square_overflows_is_refused_with_the_bound():
    check = ModelState(None, "regressor", [])
    assert check.check_truth([MAX_TRUTH, -MAX_TRUTH, 2.5], 3) == [MAX_TRUTH, -MAX_TRUTH, 2.5]
    with pytest.raises(InvalidInput, match=r"truth row 1: a regressor's truth must lie within ±1e\+100, got 1\.34"):
        check.check_truth([1.0, 1.3407807929945842e154], 2)
    with pytest.raises(InvalidInput, match="truth row 0: a regressor needs a finite number"):
        check.check_truth([float("inf")], 1)
    with pytest.raises(InvalidInput, match="truth row 0: a regressor needs a finite number"):
        check.check_truth([10 ** 400], 1)  # an int beyond any float (JSON allows it)
