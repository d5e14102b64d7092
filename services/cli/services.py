"""Loading a service's settings, app, worker and metadata by name."""

import importlib
from typing import Any

from services.kit.settings import SERVICE_NAMES, ServiceSettings

_SETTINGS_CLASSES = {
    "contacts": "services.contacts.settings:ContactsSettings",
    "scoring": "services.scoring.settings:ScoringSettings",
    "sequencer": "services.sequencer.settings:SequencerSettings",
    "gateway": "services.gateway.settings:GatewaySettings",
}


def _load(reference: str) -> Any:
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def check_service(name: str) -> str:
    if name not in SERVICE_NAMES:
        raise ValueError(f"unknown service {name!r}; choose one of {', '.join(SERVICE_NAMES)}")
    return name


def load_settings(name: str) -> ServiceSettings:
    return _load(_SETTINGS_CLASSES[check_service(name)])()  # type: ignore[no-any-return]


def create_app(name: str) -> Any:
    return _load(f"services.{check_service(name)}.app:create_app")(load_settings(name))


def worker_settings(name: str, settings: ServiceSettings | None = None) -> type:
    """Return the arq worker settings of a service, from `settings` or from the environment."""
    factory = _load(f"services.{check_service(name)}.worker:worker_settings")
    return factory(settings or load_settings(name))  # type: ignore[no-any-return]
