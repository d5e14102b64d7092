"""Calibration maths on a small labelled sample whose numbers were worked out by hand."""

import pytest

from services.scoring.rules import (
    DecileStat,
    ScoringInputError,
    calibrate,
    decile_conversion,
    roc_auc,
    youden_threshold,
)

# Ten leads: six converted. The two leads at 30 tie across outcomes.
SAMPLE = [
    (10, False),
    (20, False),
    (30, True),
    (30, False),
    (40, True),
    (50, False),
    (60, True),
    (70, True),
    (80, True),
    (90, True),
]


class TestRocAuc:
    def test_hand_checked_auc_with_tie(self) -> None:
        # Average ranks of converters: 3.5, 5, 7, 8, 9, 10 = 42.5. U = 42.5 - 6 * 7 / 2 = 21.5.
        # AUC = U / (6 * 4) = 21.5 / 24. Pair count agrees: 2.5 + 3 + 4 + 4 + 4 + 4 = 21.5.
        assert roc_auc(SAMPLE) == pytest.approx(21.5 / 24)

    def test_perfect_and_inverted_separation(self) -> None:
        assert roc_auc([(1, False), (2, False), (3, True)]) == 1.0
        assert roc_auc([(1, True), (2, False), (3, False)]) == 0.0

    def test_all_tied_is_chance(self) -> None:
        assert roc_auc([(5, True), (5, False), (5, True), (5, False)]) == 0.5

    def test_order_of_samples_does_not_matter(self) -> None:
        assert roc_auc(list(reversed(SAMPLE))) == roc_auc(SAMPLE)

    @pytest.mark.parametrize("samples", [[], [(1, True), (2, True)], [(1, False)]])
    def test_one_outcome_has_no_auc(self, samples: list[tuple[float, bool]]) -> None:
        assert roc_auc(samples) is None


class TestDeciles:
    def test_hand_checked_deciles_with_tie(self) -> None:
        deciles = decile_conversion(SAMPLE)

        # With n = 10 each rank is its own decile; the tie at 30 (average rank 3.5) shares decile 3.
        assert [(stat.decile, stat.count, stat.conversions) for stat in deciles] == [
            (1, 1, 0),
            (2, 1, 0),
            (3, 2, 1),
            (4, 0, 0),
            (5, 1, 1),
            (6, 1, 0),
            (7, 1, 1),
            (8, 1, 1),
            (9, 1, 1),
            (10, 1, 1),
        ]
        assert [stat.conversion_rate for stat in deciles] == [
            0.0,
            0.0,
            0.5,
            None,
            1.0,
            0.0,
            1.0,
            1.0,
            1.0,
            1.0,
        ]
        assert deciles[2] == DecileStat(
            decile=3, count=2, conversions=1, conversion_rate=0.5, min_score=30.0, max_score=30.0
        )
        assert deciles[3].min_score is None

    def test_twenty_samples_two_per_decile(self) -> None:
        samples = [(score, score >= 15) for score in range(20)]

        deciles = decile_conversion(samples)

        assert [stat.count for stat in deciles] == [2] * 10
        assert [stat.conversion_rate for stat in deciles] == [0, 0, 0, 0, 0, 0, 0, 0.5, 1, 1]
        assert (deciles[0].min_score, deciles[0].max_score) == (0.0, 1.0)

    def test_no_samples(self) -> None:
        deciles = decile_conversion([])

        assert [stat.count for stat in deciles] == [0] * 10


class TestYoudenThreshold:
    def test_hand_checked_threshold(self) -> None:
        # score >= 60 catches 4 of 6 converters and none of 4 others: J = 4/6 + 4/4 - 1 = 0.667,
        # better than >= 40 (5/6 + 3/4 - 1 = 0.583) and >= 30 (1 + 2/4 - 1 = 0.5).
        choice = youden_threshold(SAMPLE)

        assert choice is not None
        assert choice.threshold == 60.0
        assert choice.sensitivity == pytest.approx(4 / 6)
        assert choice.specificity == 1.0
        assert choice.youden_j == pytest.approx(4 / 6)

    def test_tie_on_j_picks_higher_threshold(self) -> None:
        # >= 2 gives J = 1 - 1/2 = 0.5 and >= 3 gives J = 1/2 - 0 = 0.5.
        choice = youden_threshold([(1, False), (2, True), (2, False), (3, True)])

        assert choice is not None
        assert choice.threshold == 3.0
        assert choice.youden_j == 0.5

    def test_one_outcome_has_no_threshold(self) -> None:
        assert youden_threshold([(1, True), (2, True)]) is None


class TestCalibrate:
    def test_report_combines_measures(self) -> None:
        report = calibrate(SAMPLE)

        assert report.samples == 10
        assert report.conversions == 6
        assert report.auc == pytest.approx(0.8958333)
        assert report.best_threshold is not None
        assert report.best_threshold.threshold == 60.0
        assert len(report.deciles) == 10

    def test_accepts_zero_and_one_outcomes_and_generators(self) -> None:
        report = calibrate((score, int(outcome)) for score, outcome in SAMPLE)  # type: ignore[misc]

        assert report.auc == pytest.approx(21.5 / 24)

    @pytest.mark.parametrize(
        ("samples", "field"),
        [
            ([(1, True), (float("nan"), False)], "samples[1].score"),
            ([(True, True)], "samples[0].score"),
            ([(1, "yes")], "samples[0].outcome"),
            ([(1, 2)], "samples[0].outcome"),
            ([(1,)], "samples[0]"),
            ([5], "samples[0]"),
        ],
    )
    def test_bad_sample_names_index(self, samples: list[object], field: str) -> None:
        with pytest.raises(ScoringInputError) as raised:
            calibrate(samples)  # type: ignore[arg-type]

        assert raised.value.field == field
