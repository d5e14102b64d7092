"""Scenario sizes per scale. The targets are stated for `full`."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    """Sizes of one benchmark run."""

    name: str
    # Contacts imported before any scenario runs; rescore and memory are measured with all of them.
    contacts: int
    # Events posted as fast as the gateway takes them, one per contact, in batches of `batch_size`.
    ingest_events: int
    batch_size: int
    # The steady offered rate of the lag measurement, in events per second, and for how long.
    lag_rate: int
    lag_seconds: float
    # Contacts whose next step falls due within `schedule_spread_s` seconds.
    schedule_contacts: int
    schedule_spread_s: int
    # Emails that fall due at one instant.
    send_contacts: int

    @property
    def is_full(self) -> bool:
        return self.name == "full"


SCALES = {
    "full": Scale("full", contacts=100_000, ingest_events=100_000, batch_size=1000, lag_rate=500, lag_seconds=30,
                  schedule_contacts=10_000, schedule_spread_s=60, send_contacts=10_000),
    "small": Scale("small", contacts=5_000, ingest_events=5_000, batch_size=1000, lag_rate=500, lag_seconds=10,
                   schedule_contacts=1_000, schedule_spread_s=20, send_contacts=1_000),
    "tiny": Scale("tiny", contacts=60, ingest_events=60, batch_size=20, lag_rate=40, lag_seconds=1,
                  schedule_contacts=20, schedule_spread_s=2, send_contacts=20),
}
