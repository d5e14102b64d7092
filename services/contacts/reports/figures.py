"""Every figure of the nurturing reports, defined once; the SQL in `queries` computes these.

Funnel (`GET /reports/funnel`):
- current[stage]: contacts at the stage now, counting erased contacts at the stage their tombstone
  keeps.
- reached[stage] for a funnel stage (subscriber → lead → mql → sql → opportunity → customer):
  contacts whose stage history holds this stage or a later funnel stage. A contact that skipped a
  stage counts as having passed through it, so reached never grows along the funnel. An erased
  contact counts as having reached the stage on its tombstone and every funnel stage before it,
  because its history was erased with it.
- reached[disqualified]: contacts whose history holds disqualified, or whose tombstone does.
- conversion from a funnel stage to the next: reached[next] / reached[stage].
- mql_to_sql_rate: the conversion from mql to sql.

Stage times (`GET /reports/stage-times`), per stay: a stay begins with a history entry into the
stage and ends at the contact's next history entry. Median and 90th percentile cover completed
stays only. A stay still open counts in `open_stays` and nowhere else, so the figures do not move
as the clock runs and a stage nobody leaves (customer) shows no made-up duration. Percentiles
interpolate linearly between the closest ranks (PostgreSQL's percentile_cont, NumPy's default).

Nurture impact (`GET /reports/nurture-impact`):
- leads: contacts that reached lead (as in the funnel).
- customers: of those, contacts that reached customer.
- nurtured: the contact received an email of a sequence (an `email_sent` timeline event carrying a
  `sequence_id`, which the sequencer records for every email it sends) before it first reached
  customer, or at any time when it never did. Erased contacts are left out because their tombstone
  does not say.
- conversion rate of a group: customers / leads.

Windows: `since` and `until` pick the contacts created in [since, until), a cohort, and follow their
stages up to now (stage times: the stays that began in the window). Tombstones keep no creation
time, so a report with a window leaves erased contacts out and says how many it left out.

Every rate is None when its denominator is zero and otherwise within [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping

from services.contacts.stages.machine import FUNNEL, Stage

# The timeline event type that, with a `sequence_id` property, shows a sequence emailed the contact.
# NOTE: a contact enrolled in a sequence that has not emailed it yet counts as not nurtured, because
# the sequencer tells the contacts service about sends, not enrolments.
NURTURE_EVENT_TYPE = "email_sent"
# The percentiles of the stage-time report, in tenths, so SQL finds their ranks with integer maths.
PERCENTILE_TENTHS = {"median": 5, "p90": 9}


def funnel_rank(stage: Stage) -> int:
    return FUNNEL.index(stage)


def rate(numerator: int, denominator: int) -> float | None:
    """Return numerator / denominator, None when the denominator is zero.

    Raises ValueError when the numerator is outside 0..denominator, which would mean the two counts
    were built with different definitions.
    """
    if denominator == 0:
        return None
    if not 0 <= numerator <= denominator:
        raise ValueError(f"rate numerator {numerator} is outside 0..{denominator}")
    return numerator / denominator


def reached_by_stage(furthest_counts: Mapping[int, int], disqualified: int) -> dict[Stage, int]:
    """Return reached[stage] from the number of contacts per furthest funnel rank they reached."""
    reached = {stage: sum(count for rank, count in furthest_counts.items() if rank >= funnel_rank(stage)) for stage in FUNNEL}
    reached[Stage.DISQUALIFIED] = disqualified
    return reached


def percentile_ranks(count: int, tenths: int) -> tuple[int, int, float]:
    """Return the two 0-based ranks around the percentile and the weight of the upper one."""
    position_tenths = (count - 1) * tenths
    lower = position_tenths // 10
    fraction = (position_tenths % 10) / 10
    return lower, min(lower + 1, count - 1), fraction


def interpolate(lower_value: float, upper_value: float, fraction: float) -> float:
    return lower_value + (upper_value - lower_value) * fraction
