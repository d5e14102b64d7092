"""infra/compose.yaml: every service's migration, API and worker, started in the right order."""

import re
import shutil
import subprocess

import pytest

from services.kit.settings import DEFAULT_PORTS, SERVICE_NAMES
from tests.infra.support import (
    COMPOSE_FILE,
    INFRA,
    MissingVariable,
    compose_environment,
    compose_variables,
    interpolate,
    load_compose,
    read_dotenv,
)

COMPOSE = load_compose()
SERVICES = COMPOSE["services"]
SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "DATABASE_URL", "KEYS", "CREDENTIALS", "HEADER_VALUES")


def test_compose_defines_every_process() -> None:
    expected = {"postgres", "redis"}
    for service in SERVICE_NAMES:
        expected.update({f"{service}-migrate", service, f"{service}-worker"})

    assert set(SERVICES) == expected


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_processes_run_their_commands(service: str) -> None:
    assert SERVICES[f"{service}-migrate"]["command"] == ["nurture", "migrate", service]
    assert SERVICES[service]["command"] == ["nurture", "serve", service]
    assert SERVICES[f"{service}-worker"]["command"] == ["nurture", "worker", service]
    for name in (f"{service}-migrate", service, f"{service}-worker"):
        assert SERVICES[name]["image"] == "${NURTURE_IMAGE:-nurture:local}", name
        assert SERVICES[name]["build"] == {"context": "..", "dockerfile": "infra/Dockerfile"}, name


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_processes_start_after_migration(service: str) -> None:
    migration = SERVICES[f"{service}-migrate"]

    assert migration["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert migration["restart"] == "no"
    for name in (service, f"{service}-worker"):
        depends_on = SERVICES[name]["depends_on"]
        assert depends_on[f"{service}-migrate"] == {"condition": "service_completed_successfully"}, name
        assert depends_on["redis"] == {"condition": "service_healthy"}, name


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_health_checks_use_probe(service: str) -> None:
    assert SERVICES[service]["healthcheck"]["test"] == ["CMD", "nurture-probe", "ready", service]
    assert SERVICES[f"{service}-worker"]["healthcheck"]["test"] == ["CMD", "nurture-probe", "worker", service]


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_processes_share_service_environment(service: str) -> None:
    environment = SERVICES[service]["environment"]

    assert SERVICES[f"{service}-migrate"]["environment"] == environment
    assert SERVICES[f"{service}-worker"]["environment"] == environment
    assert environment["NURTURE_ENVIRONMENT"] == "production"
    assert environment[f"{service.upper()}_HOST"] == "0.0.0.0"
    assert environment[f"{service.upper()}_PORT"] == str(DEFAULT_PORTS[service])


def test_secrets_come_from_env_file() -> None:
    for name, entry in SERVICES.items():
        for key, value in entry.get("environment", {}).items():
            if any(word in key for word in SECRET_WORDS):
                assert "${" in str(value), f"{name} sets {key} to a literal; read it from infra/.env"


def test_required_secrets_stop_compose() -> None:
    environment = SERVICES["contacts"]["environment"]

    with pytest.raises(MissingVariable, match="NURTURE_INTERNAL_TOKEN"):
        compose_environment(SERVICES["contacts"], {})
    assert "NURTURE_INTERNAL_TOKEN:?" in environment["NURTURE_INTERNAL_TOKEN"]
    assert "CONTACTS_DB_PASSWORD:?" in environment["CONTACTS_DATABASE_URL"]


def test_interpolation_follows_compose_rules() -> None:
    assert interpolate("${A:-x}", {}) == "x"
    assert interpolate("${A:-x}", {"A": "y"}) == "y"
    assert interpolate("a${A}b", {}) == "ab"
    with pytest.raises(MissingVariable):
        interpolate("${A:?set A}", {"A": ""})


def test_env_example_covers_every_variable() -> None:
    example = read_dotenv(INFRA / ".env.example")

    assert compose_variables(COMPOSE_FILE.read_text()) <= set(example)
    for name in compose_variables(COMPOSE_FILE.read_text(), required_only=True):
        if any(word in name for word in ("PASSWORD", "TOKEN", "SECRET")):
            assert example[name] == "", f"infra/.env.example must leave {name} empty, not a usable value"


def test_env_file_is_ignored_by_git() -> None:
    if shutil.which("git") is None or not (INFRA.parent / ".git").exists():
        pytest.skip("not a git checkout")

    ignored = subprocess.run(["git", "check-ignore", "--quiet", str(INFRA / ".env")], cwd=INFRA, check=False)
    example = subprocess.run(["git", "check-ignore", "--quiet", str(INFRA / ".env.example")], cwd=INFRA, check=False)

    assert ignored.returncode == 0, "infra/.env would be committed"
    assert example.returncode == 1, "infra/.env.example must be committed"


def test_only_gateway_publishes_port() -> None:
    published = {name for name, entry in SERVICES.items() if entry.get("ports")}

    assert published == {"gateway"}
    assert SERVICES["gateway"]["ports"] == ["${NURTURE_GATEWAY_BIND:-127.0.0.1}:${NURTURE_GATEWAY_PORT:-8000}:8000"]


def test_postgres_creates_each_database() -> None:
    postgres = SERVICES["postgres"]
    script_mount = "./postgres/create-databases.sh:/docker-entrypoint-initdb.d/10-create-databases.sh:ro"
    script = (INFRA / "postgres" / "create-databases.sh").read_text()

    assert script_mount in postgres["volumes"]
    assert re.search(r"^for service in (.+); do$", script, re.MULTILINE)[1].split() == list(SERVICE_NAMES)  # type: ignore[index]
    for service in SERVICE_NAMES:
        assert f"{service.upper()}_DB_PASSWORD" in postgres["environment"]
    assert "--host" in postgres["healthcheck"]["test"], "a socket check passes while the init script still runs"


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX shell")
def test_database_script_is_valid_shell() -> None:
    checked = subprocess.run(["sh", "-n", str(INFRA / "postgres" / "create-databases.sh")], capture_output=True, text=True, check=False)

    assert checked.returncode == 0, checked.stderr


def test_database_script_rejects_missing_password() -> None:
    # With no <SERVICE>_DB_PASSWORD the script stops before it calls psql.
    result = subprocess.run(
        ["sh", str(INFRA / "postgres" / "create-databases.sh")],
        capture_output=True, text=True, check=False, env={"PATH": "/usr/bin:/bin"},
    )

    assert result.returncode == 1
    assert "CONTACTS_DB_PASSWORD is missing" in result.stderr
