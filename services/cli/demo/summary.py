"""The nurturing summary: every figure is read back from the platform's report APIs, then printed.

`read_reports` fetches the documents, `summarise` turns them into a `Summary` without any other
input, so anyone who reads the same reports gets the same numbers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from services.cli.demo.client import DemoApiError, DemoClient
from services.cli.demo.playbook import OUTCOME_ATTRIBUTE
from services.scoring.rules.calibration import roc_auc

PARALLEL_SCORE_READS = 16

STAGES = ("subscriber", "lead", "mql", "sql", "opportunity", "customer", "disqualified")


@dataclass(frozen=True)
class Reports:
    """The report documents the summary is made of, as the API returned them."""

    funnel: dict[str, Any]
    stage_times: dict[str, Any]
    nurture_impact: dict[str, Any]
    sequence: dict[str, Any]
    calibration: dict[str, Any]


@dataclass(frozen=True)
class Summary:
    contacts: int
    history_events: int
    reached: dict[str, int]
    emails_sent: int
    emails_delivered: int
    unique_opens: int
    unique_clicks: int
    open_rate: float | None
    click_rate: float | None
    mql_to_sql_rate: float | None
    median_days: dict[str, float | None]
    nurtured_conversion: float | None
    not_nurtured_conversion: float | None
    auc: float | None
    auc_samples: int


@dataclass(frozen=True)
class Cohort:
    """The demo's contacts: those created from `since` (the start) until `until` (the import's end).

    The funnel and nurture impact follow that cohort. Stage times take the stays that began since the
    start, because the reports window stage times by when each stay began.
    """

    since: datetime
    until: datetime

    def contacts(self) -> dict[str, str]:
        return {"since": self.since.isoformat(), "until": self.until.isoformat()}

    def stays(self) -> dict[str, str]:
        return {"since": self.since.isoformat()}


async def read_reports(
    client: DemoClient, *, cohort: Cohort, sequence_id: str, model: str, outcomes: Mapping[str, bool]
) -> Reports:
    """Fetch the funnel, stage times, nurture impact, sequence report and calibration."""
    return Reports(
        funnel=await client.get("/v1/reports/funnel", **cohort.contacts()),
        stage_times=await client.get("/v1/reports/stage-times", **cohort.stays()),
        nurture_impact=await client.get("/v1/reports/nurture-impact", **cohort.contacts()),
        sequence=await client.get(f"/v1/sequences/{sequence_id}/report"),
        calibration=await calibrate(client, model, outcomes),
    )


async def calibrate(client: DemoClient, model: str, outcomes: Mapping[str, bool]) -> dict[str, Any]:
    """Return how well the model's scores rank the recorded outcome: ROC AUC and the sample size.

    The scoring service's calibration route computes it when the gateway offers that route. Without it, the
    AUC is computed here from each contact's score (`outcomes` maps the leads' emails to `y`).
    """
    body = {"outcome": {"attribute": OUTCOME_ATTRIBUTE, "equals": True}}
    try:
        answer: dict[str, Any] = await client.post(f"/v1/scoring/models/{model}/calibration", body)
        return {**answer, "source": "calibration"}
    except DemoApiError as error:
        if error.status not in (404, 405):
            raise
    return await _auc_from_scores(client, model, outcomes)


async def _auc_from_scores(client: DemoClient, model: str, outcomes: Mapping[str, bool]) -> dict[str, Any]:
    contacts = [contact for contact in await client.items("/v1/contacts") if contact["email"] in outcomes]
    gate = asyncio.Semaphore(PARALLEL_SCORE_READS)

    async def sample(contact: dict[str, Any]) -> tuple[float, bool]:
        async with gate:
            scores = await client.get(f"/v1/contacts/{contact['id']}/score")
        model_score = scores["models"].get(model)
        return (model_score["total"] if model_score else 0.0), outcomes[contact["email"]]

    samples = await asyncio.gather(*(sample(contact) for contact in contacts))
    return {"auc": roc_auc(samples), "samples": len(samples), "source": "scores"}


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def summarise(reports: Reports, *, history_events: int) -> Summary:
    """Turn the report documents into the summary's figures."""
    reached = {item["stage"]: item["reached"] for item in reports.funnel["stages"]}
    steps = reports.sequence["steps"]
    delivered = sum(step["delivered"] for step in steps)
    opens = sum(step["unique_opens"] for step in steps)
    clicks = sum(step["unique_clicks"] for step in steps)
    medians = {
        item["stage"]: item["median_seconds"] / 86_400 if item["median_seconds"] is not None else None
        for item in reports.stage_times["stages"]
    }
    impact = reports.nurture_impact
    return Summary(
        contacts=reports.funnel["contacts"],
        history_events=history_events,
        reached=reached,
        emails_sent=sum(step["sent"] for step in steps),
        emails_delivered=delivered,
        unique_opens=opens,
        unique_clicks=clicks,
        open_rate=_rate(opens, delivered),
        click_rate=_rate(clicks, delivered),
        mql_to_sql_rate=reports.funnel["mql_to_sql_rate"],
        median_days=medians,
        nurtured_conversion=impact["nurtured"]["conversion_rate"],
        not_nurtured_conversion=impact["not_nurtured"]["conversion_rate"],
        auc=reports.calibration.get("auc"),
        auc_samples=reports.calibration.get("samples", 0),
    )


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _days(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} days"


def print_summary(console: Console, summary: Summary) -> None:
    """Print the summary as two tables: the funnel and the nurturing figures."""
    funnel = Table(title="Funnel (contacts that reached each stage)", title_justify="left")
    funnel.add_column("stage")
    funnel.add_column("reached", justify="right")
    funnel.add_column("median time in stage", justify="right")
    for stage in STAGES:
        funnel.add_row(stage, f"{summary.reached.get(stage, 0):,}", _days(summary.median_days.get(stage)))
    console.print(funnel)

    figures = Table(title="Nurturing", title_justify="left", show_header=False)
    figures.add_column("figure")
    figures.add_column("value", justify="right")
    rows = [
        ("contacts", f"{summary.contacts:,}"),
        ("history events recorded", f"{summary.history_events:,}"),
        ("MQLs", f"{summary.reached.get('mql', 0):,}"),
        ("SQLs", f"{summary.reached.get('sql', 0):,}"),
        ("customers", f"{summary.reached.get('customer', 0):,}"),
        ("emails sent", f"{summary.emails_sent:,}"),
        ("open rate (unique opens / delivered)", _percent(summary.open_rate)),
        ("click-through rate (unique clicks / delivered)", _percent(summary.click_rate)),
        ("MQL → SQL rate", _percent(summary.mql_to_sql_rate)),
        ("lead → customer, nurtured", _percent(summary.nurtured_conversion)),
        ("lead → customer, held out of nurturing", _percent(summary.not_nurtured_conversion)),
        ("ROC AUC of the score for the real outcome", "n/a" if summary.auc is None else f"{summary.auc:.3f}"),
    ]
    for name, value in rows:
        figures.add_row(name, value)
    console.print(figures)
