"""scripts.utils.scores: the one-score-per-item shape contract, for numpy and torch shapes alike."""

import re

import numpy as np
import pytest
import torch

from scripts.utils.scores import check_one_score_per_item


def _shapes(shape):
    return [np.zeros(shape).shape, torch.zeros(shape).shape, shape]


@pytest.mark.parametrize("shape", [(5,), (5, 1), (1,), (1, 1)])
def test_one_score_per_item_passes(shape):
    for s in _shapes(shape):
        assert check_one_score_per_item(s, "pred") is None


def test_scalar_is_rejected():
    for s in _shapes(()):
        with pytest.raises(ValueError, match="pred must be a batch-first sequence of scores, got a scalar"):
            check_one_score_per_item(s, "pred")


@pytest.mark.parametrize("shape", [(5, 2), (1, 5), (5, 1, 2), (2, 3, 1)])
def test_more_than_one_score_per_item_is_rejected(shape):
    for s in _shapes(shape):
        with pytest.raises(ValueError, match="label must hold one score per item.*" + re.escape(f"got shape {shape}")):
            check_one_score_per_item(s, "label")
