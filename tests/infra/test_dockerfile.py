"""infra/Dockerfile: a slim, non-root image whose command is the `nurture` CLI.

No Docker engine runs here, so the Dockerfile is parsed instead of built: the base image, the user,
every file it copies and the commands the deployment files give the image are checked.
"""

import fnmatch
import tomllib

import pytest
import typer
from dockerfile_parse import DockerfileParser

from services.cli.main import app as cli_app
from tests.infra.support import INFRA, REPOSITORY, load_compose, rendered_manifests, workloads

DOCKERFILE = INFRA / "Dockerfile"
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "git", "curl")


def _parser() -> DockerfileParser:
    return DockerfileParser(path=str(DOCKERFILE))


def _stages() -> list[list[dict[str, str]]]:
    """Split the instructions into build stages, each starting with its FROM."""
    stages: list[list[dict[str, str]]] = []
    for instruction in _parser().structure:
        if instruction["instruction"] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _final(instruction: str) -> list[str]:
    return [item["value"] for item in _stages()[-1] if item["instruction"] == instruction]


def _copy_sources(value: str) -> list[str]:
    parts = [part for part in value.split() if not part.startswith("--")]
    return parts[:-1]


def test_every_stage_uses_python_slim() -> None:
    assert _parser().parent_images == ["python:3.11-slim", "python:3.11-slim"]


def test_image_runs_as_non_root() -> None:
    users = _final("USER")

    assert users, "the final stage sets no USER and would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert int(user) == _pod_user()


def _pod_user() -> int:
    users = {
        workload["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
        for workload in workloads(rendered_manifests())
    }
    assert len(users) == 1
    return users.pop()  # type: ignore[no-any-return]


def test_final_stage_has_no_build_tools() -> None:
    for command in _final("RUN"):
        for tool in BUILD_TOOLS:
            assert f" {tool}" not in f" {command} ", f"the runtime stage installs {tool}: {command}"


def test_copied_paths_exist_and_are_sent() -> None:
    ignore_file = INFRA / "Dockerfile.dockerignore"
    patterns = [line for line in ignore_file.read_text().splitlines() if line and not line.startswith("#")]

    for stage in _stages():
        for instruction in stage:
            if instruction["instruction"] != "COPY" or "--from=" in instruction["value"]:
                continue
            for source in _copy_sources(instruction["value"]):
                assert (REPOSITORY / source).exists(), f"COPY {source}: no such path in the repository"
                assert _sent_to_builder(source, patterns), f"COPY {source}: excluded by {ignore_file.name}"


def _sent_to_builder(path: str, patterns: list[str]) -> bool:
    """Apply .dockerignore rules in order (the last match wins) to a path or any of its parents."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    sent = True
    for pattern in patterns:
        exception = pattern.startswith("!")
        cleaned = pattern.removeprefix("!").strip("/")
        if any(fnmatch.fnmatch(candidate, cleaned) for candidate in candidates):
            sent = exception
    return sent


def test_dockerignore_drops_local_state() -> None:
    patterns = [line for line in (INFRA / "Dockerfile.dockerignore").read_text().splitlines() if line and not line.startswith("#")]

    for path in (".venv", "data", ".git", "tests", "infra/.env", "infra/kubernetes/secrets/platform.env"):
        assert not _sent_to_builder(path, patterns), f"{path} would be sent to the image builder"


def test_command_is_project_entry_point() -> None:
    scripts = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]["scripts"]

    assert _final("CMD") == ['["nurture", "--help"]']
    assert scripts["nurture"] == "services.cli.main:app"
    assert "/opt/nurture/bin" in _final("ENV")[0].split("PATH=")[1].split(":")[0]


def test_probe_is_installed_on_path() -> None:
    copies = _final("COPY")

    assert "--chmod=0755 infra/image/nurture-probe /opt/nurture/bin/nurture-probe" in copies


def _cli_commands() -> set[str]:
    group = typer.main.get_command(cli_app)
    return set(group.commands)  # type: ignore[attr-defined]


def _deployment_commands() -> list[list[str]]:
    commands = [service["command"] for service in load_compose()["services"].values() if "command" in service]
    for workload in workloads(rendered_manifests()):
        commands.extend(container["command"] for container in workload["spec"]["template"]["spec"]["containers"])
    return commands


@pytest.mark.parametrize("command", ["serve", "worker", "migrate"])
def test_cli_has_deployment_command(command: str) -> None:
    assert command in _cli_commands()


def test_deployments_call_existing_commands() -> None:
    commands = _cli_commands()

    for command in _deployment_commands():
        if command[0] == "nurture":
            assert command[1] in commands, f"`nurture {command[1]}` does not exist"
