"""The gateway's arq worker."""

from services.gateway.db import ProcessedEvent
from services.gateway.settings import GatewaySettings
from services.kit.consumer import EventConsumer
from services.kit.worker import build_worker_settings


def worker_settings(settings: GatewaySettings | None = None) -> type:
    settings = settings or GatewaySettings()
    consumer = EventConsumer(ProcessedEvent, {})
    return build_worker_settings(
        settings,
        functions=[consumer.function()],
        clients=["contacts"],
    )
