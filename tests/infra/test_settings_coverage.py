"""Every variable the deployment files set is a real setting, and the result loads in production.

Each service reads its settings with pydantic-settings, which ignores unknown variables, so a
misspelt name in a manifest would silently fall back to a default. These tests compare every
name with the fields and aliases of the settings class that `nurture` loads for the service.
"""

import secrets

import pytest
from sqlalchemy.engine import make_url

from services.kit.settings import SERVICE_NAMES
from tests.infra.support import (
    COMPOSE_FILE,
    INFRA,
    Manifest,
    compose_environment,
    compose_variables,
    find,
    load_compose,
    load_settings_from,
    pod_environment,
    read_dotenv,
    rendered_manifests,
    service_of,
    setting_names,
    workloads,
)

OBJECTS = rendered_manifests()

# Values a real deployment puts in place of the committed placeholders.
SECRETS = {
    "NURTURE_INTERNAL_TOKEN": secrets.token_hex(32),
    "NURTURE_TRACKING_SECRETS": f"{secrets.token_hex(32)},{secrets.token_hex(32)}",
}


def _containers(workload: Manifest) -> list[Manifest]:
    pod = workload["spec"]["template"]["spec"]
    return pod.get("initContainers", []) + pod["containers"]  # type: ignore[no-any-return]


def _kubernetes_environment(service: str) -> dict[str, str]:
    return pod_environment(OBJECTS, _containers(find(OBJECTS, "Deployment", f"{service}-api")))


def _fill_compose_values() -> dict[str, str]:
    """Return infra/.env.example with every required empty value filled, as an operator's infra/.env."""
    values = read_dotenv(INFRA / ".env.example")
    for name in compose_variables(COMPOSE_FILE.read_text(), required_only=True):
        values[name] = values.get(name) or secrets.token_hex(32)
    return {**values, **SECRETS}


COMPOSE_VALUES = _fill_compose_values()


def test_setting_names_include_known_variables() -> None:
    contacts = setting_names("contacts")

    assert "CONTACTS_DATABASE_URL" in contacts
    assert "REDIS_URL" in contacts
    assert "NURTURE_TRACKING_SECRETS" in contacts
    assert "CONTACTS_URL" in contacts
    assert "GATEWAY_MAX_BODY_BYTES" not in contacts
    assert "GATEWAY_MAX_BODY_BYTES" in setting_names("gateway")
    assert "SEQUENCER_SMTP_HOST" in setting_names("sequencer")


@pytest.mark.parametrize("workload", workloads(OBJECTS), ids=lambda item: item["metadata"]["name"])
def test_kubernetes_variables_are_settings(workload: Manifest) -> None:
    service = service_of(workload)
    environment = pod_environment(OBJECTS, _containers(workload))

    unknown = set(environment) - setting_names(service)
    assert not unknown, f"{workload['metadata']['name']} sets variables {service} does not read: {sorted(unknown)}"


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_kubernetes_placeholders_stop_production(service: str) -> None:
    environment = _kubernetes_environment(service)

    with pytest.raises(ValueError, match="NURTURE_INTERNAL_TOKEN must be set"):
        load_settings_from(service, environment)
    with pytest.raises(ValueError, match="NURTURE_TRACKING_SECRETS must be set"):
        load_settings_from(service, {**environment, "NURTURE_INTERNAL_TOKEN": SECRETS["NURTURE_INTERNAL_TOKEN"]})


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_kubernetes_settings_load_in_production(service: str) -> None:
    api = find(OBJECTS, "Deployment", f"{service}-api")
    port = api["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]

    settings = load_settings_from(service, {**_kubernetes_environment(service), **SECRETS})

    assert settings.environment == "production"
    assert settings.host == "0.0.0.0"
    assert settings.port == port
    assert settings.log_format == "json"
    database = make_url(settings.database_url)
    assert database.drivername == "postgresql+asyncpg"
    assert database.database == service
    assert database.username == service
    for other in SERVICE_NAMES:
        assert settings.url_of(other).startswith(f"http://{other}:")


def test_compose_sets_only_settings() -> None:
    services = load_compose()["services"]

    for name, entry in services.items():
        if name in ("postgres", "redis"):
            continue
        service = name.removesuffix("-migrate").removesuffix("-worker")
        unknown = set(entry["environment"]) - setting_names(service)
        assert not unknown, f"compose service {name} sets variables {service} does not read: {sorted(unknown)}"


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_compose_settings_load_in_production(service: str) -> None:
    entry = load_compose()["services"][service]
    environment = compose_environment(entry, COMPOSE_VALUES)

    settings = load_settings_from(service, environment)

    assert settings.environment == "production"
    assert settings.host == "0.0.0.0"
    assert settings.redis_url == "redis://redis:6379/0"
    database = make_url(settings.database_url)
    assert database.drivername == "postgresql+asyncpg"
    assert (database.host, database.port, database.database, database.username) == ("postgres", 5432, service, service)
    assert database.password == COMPOSE_VALUES[f"{service.upper()}_DB_PASSWORD"]
    for other in SERVICE_NAMES:
        assert settings.url_of(other).startswith(f"http://{other}:")
