"""Reading the deployment files under infra/ the way Docker Compose and kustomize read them.

The tests need no Docker engine, cluster or kustomize binary: `rendered_manifests` builds the same
objects `kubectl kustomize` would (the resources plus the generated ConfigMaps and Secrets, without
the hash suffixes), and `interpolate` expands `${NAME}`, `${NAME:-default}` and `${NAME:?message}`
as Compose does.
"""

import base64
import importlib.machinery
import importlib.util
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from services.cli.services import _SETTINGS_CLASSES
from services.kit.settings import SERVICE_NAMES

REPOSITORY = Path(__file__).resolve().parents[2]
INFRA = REPOSITORY / "infra"
KUBERNETES = INFRA / "kubernetes"
COMPOSE_FILE = INFRA / "compose.yaml"
PROBE_SCRIPT = INFRA / "image" / "nurture-probe"

Manifest = dict[str, Any]


def settings_class(service: str) -> type[BaseSettings]:
    """Import the pydantic-settings class the `nurture` command loads for a service."""
    module_name, _, class_name = _SETTINGS_CLASSES[service].partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)  # type: ignore[no-any-return]


def setting_names(service: str) -> set[str]:
    """Return every environment variable a service reads: prefixed field names and shared aliases."""
    cls = settings_class(service)
    prefix = str(cls.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice).upper() for choice in alias.choices)
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(f"{prefix}{field_name}".upper())
    return names


def load_settings_from(service: str, environment: Mapping[str, str]) -> Any:
    """Build a service's settings from exactly `environment`, as a container with only it would."""
    with mock.patch.dict(os.environ, dict(environment), clear=True):
        return settings_class(service)()


def read_env_file(path: Path) -> dict[str, str]:
    """Read KEY=VALUE lines as kustomize's env files have them: no quoting, `#` starts a comment line."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, separator, value = stripped.partition("=")
        if not separator:
            raise ValueError(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
        values[key.strip()] = value
    return values


def read_dotenv(path: Path) -> dict[str, str]:
    """Read a Compose .env file, where a value may be wrapped in double quotes."""
    return {key: value[1:-1] if value.startswith('"') and value.endswith('"') else value
            for key, value in read_env_file(path).items()}


_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<operator>:[-?])(?P<argument>[^}]*))?\}")


class MissingVariable(KeyError):
    """A `${NAME:?message}` whose variable is unset or empty."""


def interpolate(text: str, values: Mapping[str, str]) -> str:
    """Expand Compose variables in `text` from `values`; `:?` raises MissingVariable when empty."""

    def expand(match: re.Match[str]) -> str:
        name, operator, argument = match["name"], match["operator"], match["argument"]
        value = values.get(name, "")
        if value:
            return value
        if operator == ":?":
            raise MissingVariable(f"{name}: {argument}")
        if operator == ":-":
            return argument
        return ""

    return _VARIABLE.sub(expand, text)


def compose_variables(text: str, *, required_only: bool = False) -> set[str]:
    """Return the names of the variables that compose.yaml interpolates (or only the `:?` ones)."""
    return {
        match["name"] for match in _VARIABLE.finditer(text)
        if not required_only or match["operator"] == ":?"
    }


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())  # type: ignore[no-any-return]


def compose_environment(service_entry: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, str]:
    """Return one Compose service's container environment after interpolation."""
    return {key: interpolate(str(value), values) for key, value in service_entry.get("environment", {}).items()}


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())  # type: ignore[no-any-return]


def manifest_files() -> list[Path]:
    return sorted(path for path in KUBERNETES.rglob("*.yaml") if path.name != "kustomization.yaml")


def load_manifests(path: Path) -> list[Manifest]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def generated_objects() -> list[Manifest]:
    """Build the ConfigMaps and Secrets of the kustomization, Secrets from the committed examples."""
    objects: list[Manifest] = []
    for generator in kustomization().get("configMapGenerator", []):
        data: dict[str, str] = {}
        for env_file in generator["envs"]:
            data.update(read_env_file(KUBERNETES / env_file))
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]}, "data": data})
    for generator in kustomization().get("secretGenerator", []):
        data = {}
        for env_file in generator["envs"]:
            data.update(read_env_file(KUBERNETES / f"{env_file}.example"))
        encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
        objects.append({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": generator["name"]}, "data": encoded,
        })
    return objects


def rendered_manifests() -> list[Manifest]:
    """Return every object of the kustomization: its resources, then the generated ones."""
    objects: list[Manifest] = []
    for resource in kustomization()["resources"]:
        objects.extend(load_manifests(KUBERNETES / resource))
    return objects + generated_objects()


def find(objects: list[Manifest], kind: str, name: str) -> Manifest:
    matches = [item for item in objects if item["kind"] == kind and item["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name!r}, found {len(matches)}"
    return matches[0]


def generated_data(objects: list[Manifest], kind: str, name: str) -> dict[str, str]:
    """Return a generated ConfigMap's or Secret's values as text."""
    data: dict[str, str] = find(objects, kind, name)["data"]
    if kind == "Secret":
        return {key: base64.b64decode(value).decode() for key, value in data.items()}
    return dict(data)


def pod_environment(objects: list[Manifest], containers: list[Manifest]) -> dict[str, str]:
    """Merge the envFrom sources and env entries of containers into one environment."""
    environment: dict[str, str] = {}
    for container in containers:
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                environment.update(generated_data(objects, "ConfigMap", source["configMapRef"]["name"]))
            if "secretRef" in source:
                environment.update(generated_data(objects, "Secret", source["secretRef"]["name"]))
        for entry in container.get("env", []):
            environment[entry["name"]] = entry.get("value", "")
    return environment


def workloads(objects: list[Manifest]) -> list[Manifest]:
    return [item for item in objects if item["kind"] in ("Deployment", "Job")]


def service_of(workload: Manifest) -> str:
    service: str = workload["metadata"]["labels"]["app.kubernetes.io/name"]
    assert service in SERVICE_NAMES, f"{workload['metadata']['name']} is labelled with unknown service {service!r}"
    return service


def load_probe_module() -> ModuleType:
    """Import infra/image/nurture-probe, a script without a .py suffix, as a module."""
    loader = importlib.machinery.SourceFileLoader("nurture_probe", str(PROBE_SCRIPT))
    spec = importlib.util.spec_from_loader("nurture_probe", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@contextmanager
def no_network() -> Iterator[None]:
    """Fail any attempt to open a network connection inside the block."""
    import socket

    def reject_connection(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a network connection was attempted: {args!r}")

    with (
        mock.patch.object(socket.socket, "connect", reject_connection),
        mock.patch.object(socket, "create_connection", reject_connection),
    ):
        yield
