"""The metrics against values computed by hand, ties included."""

import math

import numpy as np
import pytest

from edgerec.evaluation.metrics import rank_metrics, top_k


def test_distinct_scores_give_the_textbook_values():
    # target (column 2) ranks 3rd: two items score higher
    scores = np.array([[-np.inf, 0.9, 0.5, 0.7, 0.3, 0.1]])
    m = rank_metrics(scores, np.array([2]), ks=(2, 10))
    assert m["hr@10"][0] == 1.0
    assert m["hr@2"][0] == 0.0
    assert m["ndcg@10"][0] == pytest.approx(1 / math.log2(4))
    assert m["mrr@10"][0] == pytest.approx(1 / 3)
    assert m["ndcg@2"][0] == 0.0 and m["mrr@2"][0] == 0.0


def test_ties_average_over_every_position_the_target_could_take():
    # one item above, target tied with two others: rank 2, 3 or 4 with equal odds
    scores = np.array([[-np.inf, 0.9, 0.5, 0.5, 0.5, 0.1]])
    m = rank_metrics(scores, np.array([3]), ks=(3, 10))
    assert m["hr@10"][0] == pytest.approx(1.0)
    assert m["hr@3"][0] == pytest.approx(2 / 3)
    assert m["ndcg@10"][0] == pytest.approx(
        (1 / math.log2(3) + 1 / math.log2(4) + 1 / math.log2(5)) / 3
    )
    assert m["ndcg@3"][0] == pytest.approx((1 / math.log2(3) + 1 / math.log2(4)) / 3)
    assert m["mrr@3"][0] == pytest.approx((1 / 2 + 1 / 3) / 3)


def test_a_constant_scorer_gets_the_expected_rank_not_a_lucky_one():
    scores = np.zeros((1, 101))
    scores[0, 0] = -np.inf
    m = rank_metrics(scores, np.array([57]), ks=(10,))
    assert m["hr@10"][0] == pytest.approx(10 / 100)


def test_target_below_the_cutoff_scores_zero():
    scores = np.array([[-np.inf] + list(np.linspace(1, 0, 30))])
    m = rank_metrics(scores, np.array([25]), ks=(10, 20))
    assert all(m[name][0] == 0.0 for name in ("hr@10", "ndcg@20", "mrr@20"))


def test_top_k_orders_best_first_and_breaks_ties_by_index():
    scores = np.array([[0.1, 0.9, 0.5, 0.9, 0.2]])
    assert top_k(scores, 3).tolist() == [[1, 3, 2]]
    assert top_k(scores, 10).shape == (1, 5)
