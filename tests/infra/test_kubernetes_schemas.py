"""Every Kubernetes object under infra/kubernetes/ is valid against the bundled Kubernetes schemas.

kubernetes-validate ships the OpenAPI schemas of each Kubernetes release in its wheel, so the
validation runs offline; `no_network` makes any attempt to fetch a schema fail the test.
"""

import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from tests.infra.support import (
    KUBERNETES,
    kustomization,
    load_manifests,
    manifest_files,
    no_network,
    rendered_manifests,
)

# The oldest release the manifests promise to work on, and the newest one the package knows.
OLDEST_SUPPORTED = "1.29.0"
KUBERNETES_VERSIONS = [OLDEST_SUPPORTED, latest_version()]


def _label(item: dict[str, object]) -> str:
    metadata = item["metadata"]
    assert isinstance(metadata, dict)
    return f"{item['kind']}/{metadata['name']}"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_objects_match_kubernetes_schemas(version: str) -> None:
    objects = rendered_manifests()
    assert len(objects) >= 40

    with no_network():
        for item in objects:
            try:
                kubernetes_validate.validate(item, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                path = ".".join(str(part) for part in error.path)
                pytest.fail(f"{_label(item)} is invalid for Kubernetes {version} at {path}: {error.message}")


def test_validation_rejects_broken_object() -> None:
    deployment = next(item for item in rendered_manifests() if item["kind"] == "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecond"] = 10

    with no_network(), pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, OLDEST_SUPPORTED, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    listed = {KUBERNETES / resource for resource in kustomization()["resources"]}

    assert listed == set(manifest_files())


def test_generators_read_existing_files() -> None:
    for generator in kustomization()["configMapGenerator"]:
        for env_file in generator["envs"]:
            assert (KUBERNETES / env_file).is_file(), f"{generator['name']} reads missing {env_file}"
    for generator in kustomization()["secretGenerator"]:
        for env_file in generator["envs"]:
            assert (KUBERNETES / f"{env_file}.example").is_file(), f"{env_file} has no committed example"


def test_real_secret_files_are_ignored_by_git() -> None:
    if shutil.which("git") is None or not (KUBERNETES.parents[1] / ".git").exists():
        pytest.skip("not a git checkout")

    for generator in kustomization()["secretGenerator"]:
        for env_file in generator["envs"]:
            secret_file = KUBERNETES / env_file
            ignored = subprocess.run(["git", "check-ignore", "--quiet", str(secret_file)], cwd=KUBERNETES, check=False)
            assert ignored.returncode == 0, f"{secret_file} would be committed; infra/.gitignore must ignore it"


def test_each_file_parses_to_named_objects() -> None:
    for path in manifest_files():
        objects = load_manifests(path)
        assert objects, f"{path} contains no object"
        for item in objects:
            assert item.get("metadata", {}).get("name"), f"{path}: an object has no name"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with its built-in kustomize) is not installed")
def test_kustomize_build_is_valid(tmp_path: Path) -> None:
    copy = tmp_path / "kubernetes"
    shutil.copytree(KUBERNETES, copy)
    for example in (copy / "secrets").glob("*.env.example"):
        shutil.copy(example, example.with_suffix(""))

    built = subprocess.run(["kubectl", "kustomize", str(copy)], capture_output=True, text=True, check=False, timeout=60)
    assert built.returncode == 0, built.stderr
    objects = [item for item in yaml.safe_load_all(built.stdout) if item]

    assert len(objects) == len(rendered_manifests())
    with no_network():
        for item in objects:
            kubernetes_validate.validate(item, OLDEST_SUPPORTED, strict=True)
    for item in objects:
        if item["kind"] in ("Deployment", "Job"):
            containers = item["spec"]["template"]["spec"]["containers"]
            assert all(container["image"].endswith("/nurture:0.1.0") for container in containers), _label(item)
