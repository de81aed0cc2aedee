"""`metrics` against small cases computed by hand, and the `--fail-under` thresholds."""

import dataclasses
import json

import numpy as np
import pytest

from cnncli.errors import ConfigError, DataError, ModelError
from cnncli.infer import metrics

NAMES = ["ant", "bee", "cat"]

# Ten examples, three classes. Confusion matrix by hand (rows = true, columns = predicted):
#            ant bee cat   support
#   ant  [    3,  1,  0 ]    4
#   bee  [    0,  2,  1 ]    3
#   cat  [    2,  0,  1 ]    3
#   predicted: 5   3   2
Y_TRUE = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
Y_PRED = [0, 0, 0, 1, 1, 1, 2, 0, 0, 2]


def probs_for(predicted, n_classes, confidences=None):
    """Rows that put `confidence` on the predicted class and share the rest evenly."""
    confidences = confidences or [0.8] * len(predicted)
    rows = []
    for q, conf in zip(predicted, confidences, strict=True):
        row = np.full(n_classes, (1 - conf) / (n_classes - 1))
        row[q] = conf
        rows.append(row)
    return np.array(rows)


def missed(result, thresholds) -> list[str]:
    """What `--fail-under` says of each threshold `result` misses."""
    return [line for met, line in metrics.judge_thresholds(result, thresholds) if not met]


@pytest.fixture
def hand():
    return metrics.compute(Y_TRUE, probs_for(Y_PRED, 3), NAMES)


def test_confusion_matrix_matches_hand_count(hand):
    assert hand.confusion == [[3, 1, 0], [0, 2, 1], [2, 0, 1]]
    assert hand.count == 10


def test_accuracy_matches_hand_count(hand):
    assert hand.accuracy == pytest.approx(6 / 10)


def test_per_class_precision_recall_f1_match_hand_values(hand):
    # precision = diagonal / column sum, recall = diagonal / row sum, f1 = 2pr / (p + r);
    # "class" is the class's name, as in predict's JSON
    expected = [
        {"class": "ant", "index": 0, "precision": 3 / 5, "recall": 3 / 4, "f1": 2 / 3,
         "support": 4},
        {"class": "bee", "index": 1, "precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3,
         "support": 3},
        {"class": "cat", "index": 2, "precision": 1 / 2, "recall": 1 / 3, "f1": 2 / 5,
         "support": 3},
    ]
    assert [c.to_dict() for c in hand.per_class] == [pytest.approx(row) for row in expected]


def test_an_f1_of_three_quarters_is_exactly_three_quarters():
    # class 0: 5 images, 3 found, none wrongly: precision 1, recall 0.6, F1 3/4
    labels = [0] * 5 + [1] * 3
    probs = [[0.9, 0.1]] * 3 + [[0.1, 0.9]] * 5
    result = metrics.compute(labels, probs, ["four", "nine"])
    assert result.per_class[0].f1 == 0.75  # 2pr/(p+r) gave 0.7499999999999999
    assert missed(result, {"macro_f1": 0.75}) == []


def test_a_figure_that_is_its_threshold_but_for_floating_point_passes():
    result = metrics.compute([0, 1], [[0.9, 0.1], [0.4, 0.6]], ["a", "b"])
    result.macro_recall = (0.1 + 0.7) / 2  # 0.39999999999999997
    assert missed(result, {"macro_recall": 0.4}) == []
    result.loss = 0.1 + 0.2  # 0.30000000000000004
    assert missed(result, {"loss": 0.3}) == []
    assert missed(result, {"macro_recall": 0.40001}) != []


def test_macro_averages_are_plain_means_over_classes(hand):
    assert hand.macro_precision == pytest.approx((3 / 5 + 2 / 3 + 1 / 2) / 3)
    assert hand.macro_recall == pytest.approx((3 / 4 + 2 / 3 + 1 / 3) / 3)
    assert hand.macro_f1 == pytest.approx((2 / 3 + 2 / 3 + 2 / 5) / 3)


def test_most_confused_is_largest_first_then_by_true_and_predicted(hand):
    pairs = [(m.true, m.predicted, m.count) for m in hand.most_confused]
    assert pairs == [(2, 0, 2), (0, 1, 1), (1, 2, 1)]
    assert hand.most_confused[0].true_name == "cat"
    assert hand.most_confused[0].predicted_name == "ant"


def test_most_confused_keeps_at_most_ten_pairs():
    n = 6
    y_true = [t for t in range(n) for q in range(n) if t != q]
    y_pred = [q for t in range(n) for q in range(n) if t != q]
    result = metrics.compute(y_true, probs_for(y_pred, n), [str(i) for i in range(n)])
    assert len(result.most_confused) == 10
    assert all(m.count == 1 for m in result.most_confused)


def test_misclassified_are_sorted_by_wrong_confidence_worst_first():
    confidences = [0.9, 0.9, 0.9, 0.6, 0.9, 0.9, 0.95, 0.7, 0.99, 0.9]
    result = metrics.compute(Y_TRUE, probs_for(Y_PRED, 3, confidences), NAMES)
    # wrong predictions: index 3 (0.6), 6 (0.95), 7 (0.7), 8 (0.99)
    assert [m.index for m in result.misclassified] == [8, 6, 7, 3]
    assert [m.confidence for m in result.misclassified] == pytest.approx([0.99, 0.95, 0.7, 0.6])


def test_mistakes_equally_confident_come_in_the_order_of_the_images():
    """Which of them the picture's 32 keep depends on it: the first ones, as documented."""
    confidences = [0.9, 0.9, 0.9, 0.8, 0.9, 0.9, 0.8, 0.8, 0.8, 0.9]
    result = metrics.compute(Y_TRUE, probs_for(Y_PRED, 3, confidences), NAMES)
    assert [m.index for m in result.misclassified] == [3, 6, 7, 8]


def test_misclassified_record_names_and_probability_of_true_class():
    confidences = [0.9, 0.9, 0.9, 0.6, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]
    result = metrics.compute(Y_TRUE, probs_for(Y_PRED, 3, confidences), NAMES)
    worst_index_3 = next(m for m in result.misclassified if m.index == 3)
    assert dataclasses.asdict(worst_index_3) == pytest.approx({
        "index": 3, "id": 3, "true": 0, "predicted": 1, "true_name": "ant",
        "predicted_name": "bee", "confidence": 0.6, "true_probability": 0.2})


def test_a_mistakes_probabilities_have_six_significant_digits_as_predicts():
    """float32's 0.8700000047683716 in evaluation.json was noise, where predict says
    0.87."""
    probs = np.array(probs_for(Y_PRED, 3, [0.87] * len(Y_PRED)), np.float32)
    [first, *_] = metrics.compute(Y_TRUE, probs, NAMES).misclassified
    assert (first.confidence, first.true_probability) == (0.87, 0.065)


def test_misclassified_use_given_ids():
    ids = [f"img_{i}.png" for i in range(10)]
    result = metrics.compute(Y_TRUE, probs_for(Y_PRED, 3), NAMES, ids=ids)
    assert {m.id for m in result.misclassified} == {"img_3.png", "img_6.png", "img_7.png",
                                                         "img_8.png"}


def test_misclassified_are_capped_at_max_misclassified():
    result = metrics.compute(Y_TRUE, probs_for(Y_PRED, 3), NAMES, max_misclassified=2)
    assert len(result.misclassified) == 2


def test_class_never_predicted_and_class_without_examples_give_zero_not_nan():
    # class 2 has no examples and is never predicted; class 1 is never predicted.
    y_true = [0, 0, 1]
    y_pred = [0, 0, 0]
    result = metrics.compute(y_true, probs_for(y_pred, 3), NAMES)
    never_predicted, no_examples = result.per_class[1], result.per_class[2]
    assert (never_predicted.precision, never_predicted.recall, never_predicted.f1) == (
        0.0, 0.0, 0.0)
    assert (no_examples.precision, no_examples.recall, no_examples.support) == (0.0, 0.0, 0)
    assert result.macro_precision == pytest.approx((2 / 3) / 2)  # over classes 0 and 1


def test_macro_averages_leave_out_classes_neither_in_the_labels_nor_predicted():
    """A test set of some of the model's classes, all right: macro F1 1.0 (as
    scikit-learn's), not the share of the model's classes it holds."""
    result = metrics.compute([0, 2, 2], probs_for([0, 2, 2], 10), list("abcdefghij"))
    assert (result.macro_precision, result.macro_recall, result.macro_f1) == (1.0, 1.0, 1.0)
    assert result.macro_classes == 2
    wrong = metrics.compute([0, 2, 2], probs_for([0, 2, 5], 10), list("abcdefghij"))
    assert wrong.macro_classes == 3  # a class predicted counts, its precision 0
    assert wrong.macro_precision == pytest.approx((1 + 1 + 0) / 3)


def test_top5_accuracy_is_none_with_five_classes_or_fewer():
    result = metrics.compute([0, 4], probs_for([1, 4], 5), list("abcde"))
    assert result.top5_accuracy is None


def test_top5_accuracy_is_measured_with_more_than_five_classes():
    # Example 0: true class 5 has the lowest score of six, so it is not in the top five.
    probs = np.array([[0.3, 0.25, 0.2, 0.15, 0.07, 0.03],
                      [0.3, 0.25, 0.2, 0.15, 0.07, 0.03]])
    result = metrics.compute([5, 4], probs, list("abcdef"))
    assert result.top5_accuracy == 0.5


def test_top_k_accuracy_counts_true_class_among_k_highest():
    probs = [[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.2, 0.5, 0.3]]
    assert metrics.top_k_accuracy([1, 0, 0], probs, 1) == 0.0
    assert metrics.top_k_accuracy([1, 0, 0], probs, 2) == pytest.approx(1 / 3)
    assert metrics.top_k_accuracy([1, 0, 0], probs, 3) == 1.0


def test_top_k_breaks_ties_towards_the_lower_class_with_many_classes():
    # numpy's default sort is not stable above 16 elements: 41 classes, one tie of 40
    assert metrics.top_k([[0.1] * 20 + [0.5] + [0.1] * 20], 3).tolist() == [[20, 0, 1]]


@pytest.mark.parametrize("k", [1, 3, 5, 20, 40, 41, 50])
def test_top_k_is_the_stable_sorts_first_k_with_ties_and_blocks_of_rows(k, monkeypatch):
    """Only the k best of each row are sorted now, a block of rows at a time: the same
    order as the whole stable sort, ties at the k-th value included."""
    monkeypatch.setattr(metrics, "TOP_K_ROWS", 7)  # blocks of 7 rows, the last shorter
    rng = np.random.default_rng(0)
    probs = rng.integers(0, 6, (30, 41)) / 5  # ties everywhere, also at the k-th value
    expected = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    assert metrics.top_k(probs, k).tolist() == expected.tolist()
    assert metrics.top_k(probs[0], k).tolist() == expected[0].tolist()  # one row
    assert metrics.top_k(probs[:0], k).shape == (0, min(k, 41))


def test_to_dict_is_json_ready(hand):
    hand.loss = 0.5
    data = json.loads(json.dumps(hand.to_dict()))
    assert data["accuracy"] == pytest.approx(0.6)
    assert data["loss"] == 0.5
    assert data["confusion"] == [[3, 1, 0], [0, 2, 1], [2, 0, 1]]
    assert type(hand.to_dict()["per_class"][0]["precision"]) is float
    assert data["per_class"][2] == {"class": "cat", "index": 2, "precision": 0.5,
                                    "recall": pytest.approx(1 / 3), "f1": 0.4, "support": 3}
    assert set(data["misclassified"][0]) == {"index", "id", "true", "predicted", "true_name",
                                             "predicted_name", "confidence",
                                             "true_probability"}


def test_numpy_ids_become_plain_values_in_to_dict():
    ids = np.arange(100, 110)
    result = metrics.compute(Y_TRUE, probs_for(Y_PRED, 3), NAMES, ids=ids)
    assert json.loads(json.dumps(result.to_dict()))["misclassified"][0]["id"] >= 100


def test_model_with_wrong_number_of_outputs_is_a_model_error():
    with pytest.raises(ModelError, match="2 scores per image but the dataset has 3 classes"):
        metrics.compute([0, 1], [[0.5, 0.5], [0.5, 0.5]], NAMES)


def test_label_outside_the_classes_is_a_data_error():
    with pytest.raises(DataError, match="label 3 is outside"):
        metrics.compute([0, 3], probs_for([0, 1], 3), NAMES)


def test_empty_dataset_is_a_data_error():
    with pytest.raises(DataError, match="no examples"):
        metrics.compute([], np.zeros((0, 3)), NAMES)


def test_parse_thresholds_reads_name_value_pairs():
    assert metrics.parse_thresholds(["accuracy=0.99", "top5_accuracy=0.9", "loss=0.3"]) == {
        "accuracy": 0.99, "top5_accuracy": 0.9, "loss": 0.3}


def test_a_threshold_given_twice_with_two_values_is_refused_once_with_one_is_kept():
    with pytest.raises(ConfigError, match="accuracy is given twice, as 0.9 and 0.1"):
        metrics.parse_thresholds(["accuracy=0.9", "accuracy=0.1"])
    assert metrics.parse_thresholds(["accuracy=0.9,accuracy=0.90"]) == {"accuracy": 0.9}


def test_parse_thresholds_accepts_comma_separated_items_and_spaces():
    assert metrics.parse_thresholds(["macro_f1 = 0.8, accuracy=0.9"]) == {
        "macro_f1": 0.8, "accuracy": 0.9}


def test_unknown_threshold_name_suggests_the_closest_and_lists_valid_names():
    with pytest.raises(ConfigError) as info:
        metrics.parse_thresholds(["macro_f=0.8"])
    assert "unknown metric 'macro_f'" in str(info.value)
    assert "did you mean 'macro_f1'?" in info.value.hint
    assert "top5_accuracy" in info.value.hint
    assert info.value.exit_code == 2


def test_non_numeric_threshold_is_a_config_error():
    with pytest.raises(ConfigError, match="'high', not a number"):
        metrics.parse_thresholds(["accuracy=high"])


def test_threshold_without_equals_sign_is_a_config_error():
    with pytest.raises(ConfigError, match="not of the form name=value"):
        metrics.parse_thresholds(["accuracy"])


def test_percentage_given_as_threshold_suggests_a_fraction():
    with pytest.raises(ConfigError) as info:
        metrics.parse_thresholds(["accuracy=99"])
    assert "accuracy=0.99" in info.value.hint


def test_fail_under_reports_metrics_below_their_minimum(hand):
    failures = missed(hand, {"accuracy": 0.99, "macro_f1": 0.5})
    assert failures == ["accuracy 0.6000 is below 0.99"]


def test_fail_under_treats_loss_as_a_maximum(hand):
    hand.loss = 0.25
    assert missed(hand, {"loss": 0.3}) == []
    hand.loss = 0.35
    assert missed(hand, {"loss": 0.3}) == ["loss 0.3500 is above 0.3"]


def test_fail_under_passes_a_figure_equal_to_its_threshold(hand):
    hand.loss = 0.3
    assert hand.accuracy == 0.6
    assert missed(hand, {"accuracy": 0.6, "loss": 0.3}) == []


def test_fail_under_fails_a_metric_that_was_not_measured(hand):
    failures = missed(hand, {"loss": 0.3, "top5_accuracy": 0.9})
    assert len(failures) == 2
    assert all("was not measured" in line for line in failures)


def test_fail_under_fails_a_nan_loss(hand):
    hand.loss = float("nan")
    assert missed(hand, {"loss": 0.3}) == ["loss is NaN"]


def test_the_loss_scales_each_row_to_sum_to_1_as_keras_does():
    """A sigmoid's outputs: Keras' SparseCategoricalCrossentropy gives 0.819 here."""
    probs = np.array([[0.9, 0.8, 0.7], [0.6, 0.2, 0.1]])
    assert round(metrics.log_loss(probs, np.array([2, 0])), 3) == round(
        -(np.log(0.7 / 2.4) + np.log(0.6 / 0.9)) / 2, 3) == 0.819
