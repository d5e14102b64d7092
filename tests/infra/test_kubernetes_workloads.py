"""Each service has its full set of Kubernetes objects, wired to the right commands, ports and probes."""

import pytest

from services.kit.settings import SERVICE_NAMES
from tests.infra.support import Manifest, find, rendered_manifests, service_of, workloads

OBJECTS = rendered_manifests()

COMPONENT_COMMANDS = {"api": "serve", "worker": "worker", "migration": "migrate"}


def _pod_spec(workload: Manifest) -> Manifest:
    spec: Manifest = workload["spec"]["template"]["spec"]
    return spec


def _main_container(workload: Manifest) -> Manifest:
    containers = _pod_spec(workload)["containers"]
    assert len(containers) == 1, f"{workload['metadata']['name']} should run one container"
    return containers[0]  # type: ignore[no-any-return]


def _http_port(container: Manifest) -> int:
    ports = {port["name"]: port["containerPort"] for port in container.get("ports", [])}
    assert "http" in ports, f"container {container['name']} has no port named http"
    return ports["http"]  # type: ignore[no-any-return]


def _config_port(service: str) -> int:
    config = find(OBJECTS, "ConfigMap", f"{service}-config")["data"]
    return int(config[f"{service.upper()}_PORT"])


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_service_has_every_object(service: str) -> None:
    api = find(OBJECTS, "Deployment", f"{service}-api")
    worker = find(OBJECTS, "Deployment", f"{service}-worker")
    migration = find(OBJECTS, "Job", f"{service}-migrate")
    find(OBJECTS, "Service", service)
    find(OBJECTS, "HorizontalPodAutoscaler", f"{service}-api")
    find(OBJECTS, "HorizontalPodAutoscaler", f"{service}-worker")
    find(OBJECTS, "PodDisruptionBudget", f"{service}-api")

    assert api["metadata"]["labels"]["app.kubernetes.io/component"] == "api"
    assert worker["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
    assert migration["metadata"]["labels"]["app.kubernetes.io/component"] == "migration"


@pytest.mark.parametrize("workload", workloads(OBJECTS), ids=lambda item: item["metadata"]["name"])
def test_workload_runs_its_command(workload: Manifest) -> None:
    service = service_of(workload)
    component = workload["metadata"]["labels"]["app.kubernetes.io/component"]

    assert _main_container(workload)["command"] == ["nurture", COMPONENT_COMMANDS[component], service]


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_api_probes_use_health_paths(service: str) -> None:
    api = find(OBJECTS, "Deployment", f"{service}-api")
    container = _main_container(api)

    assert _http_port(container) == _config_port(service)
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_worker_probes_check_heartbeat(service: str) -> None:
    worker = find(OBJECTS, "Deployment", f"{service}-worker")
    container = _main_container(worker)

    assert "ports" not in container
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["exec"]["command"] == ["nurture-probe", "worker", service], probe


@pytest.mark.parametrize("workload", workloads(OBJECTS), ids=lambda item: item["metadata"]["name"])
def test_containers_have_requests_and_limits(workload: Manifest) -> None:
    pod = _pod_spec(workload)

    for container in pod.get("initContainers", []) + pod["containers"]:
        resources = container.get("resources", {})
        for bound in ("requests", "limits"):
            assert set(resources.get(bound, {})) == {"cpu", "memory"}, f"{container['name']} {bound}"


@pytest.mark.parametrize("workload", workloads(OBJECTS), ids=lambda item: item["metadata"]["name"])
def test_containers_read_own_config_and_secrets(workload: Manifest) -> None:
    service = service_of(workload)
    pod = _pod_spec(workload)
    expected = [
        {"configMapRef": {"name": "platform-config"}},
        {"configMapRef": {"name": f"{service}-config"}},
        {"secretRef": {"name": "platform-secrets"}},
        {"secretRef": {"name": f"{service}-secrets"}},
    ]

    for container in pod.get("initContainers", []) + pod["containers"]:
        assert container["envFrom"] == expected, container["name"]
        assert "env" not in container, f"{container['name']} sets env outside the ConfigMaps and Secrets"


@pytest.mark.parametrize("workload", workloads(OBJECTS), ids=lambda item: item["metadata"]["name"])
def test_pods_run_restricted(workload: Manifest) -> None:
    pod = _pod_spec(workload)

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    for container in pod.get("initContainers", []) + pod["containers"]:
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False, container["name"]
        assert security["readOnlyRootFilesystem"] is True, container["name"]
        assert security["capabilities"]["drop"] == ["ALL"], container["name"]
        assert container["image"] == "nurture", container["name"]


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_deployments_wait_for_migrations(service: str) -> None:
    for name in (f"{service}-api", f"{service}-worker"):
        deployment = find(OBJECTS, "Deployment", name)
        init = _pod_spec(deployment)["initContainers"]

        assert [container["command"][:3] for container in init] == [["nurture-probe", "migrations", service]]
        assert "replicas" not in deployment["spec"], f"{name}: the autoscaler owns the replica count"


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_migration_job_runs_once(service: str) -> None:
    job = find(OBJECTS, "Job", f"{service}-migrate")

    assert job["spec"]["parallelism"] == 1
    assert job["spec"]["completions"] == 1
    assert _pod_spec(job)["restartPolicy"] == "Never"


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_service_routes_to_api_pods(service: str) -> None:
    api = find(OBJECTS, "Deployment", f"{service}-api")
    kubernetes_service = find(OBJECTS, "Service", service)

    assert kubernetes_service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]
    assert kubernetes_service["spec"]["type"] == "ClusterIP"
    assert kubernetes_service["spec"]["ports"] == [{"name": "http", "port": _config_port(service), "targetPort": "http"}]


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_service_urls_reach_services(service: str) -> None:
    platform = find(OBJECTS, "ConfigMap", "platform-config")["data"]

    assert platform[f"{service.upper()}_URL"] == f"http://{service}:{_config_port(service)}"


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_autoscalers_target_deployments(service: str) -> None:
    for component in ("api", "worker"):
        autoscaler = find(OBJECTS, "HorizontalPodAutoscaler", f"{service}-{component}")
        target = autoscaler["spec"]["scaleTargetRef"]

        assert target["kind"] == "Deployment"
        find(OBJECTS, "Deployment", target["name"])
        assert 1 <= autoscaler["spec"]["minReplicas"] <= autoscaler["spec"]["maxReplicas"]


def test_only_gateway_is_exposed() -> None:
    ingresses = [item for item in OBJECTS if item["kind"] == "Ingress"]
    backends = [
        path["backend"]["service"]
        for ingress in ingresses
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]

    assert backends == [{"name": "gateway", "port": {"name": "http"}}]
    for item in OBJECTS:
        if item["kind"] == "Service":
            assert item["spec"].get("type", "ClusterIP") == "ClusterIP", item["metadata"]["name"]


def test_ingress_host_matches_public_url() -> None:
    ingress = find(OBJECTS, "Ingress", "gateway")
    public_url = find(OBJECTS, "ConfigMap", "platform-config")["data"]["NURTURE_PUBLIC_BASE_URL"]

    assert public_url == f"https://{ingress['spec']['rules'][0]['host']}"
    assert ingress["spec"]["tls"][0]["hosts"] == [ingress["spec"]["rules"][0]["host"]]


def test_ingress_accepts_largest_import() -> None:
    ingress = find(OBJECTS, "Ingress", "gateway")
    gateway = find(OBJECTS, "ConfigMap", "gateway-config")["data"]
    body_size = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]

    assert body_size.endswith("m")
    assert int(body_size[:-1]) * 1024 * 1024 >= int(gateway["GATEWAY_MAX_IMPORT_BYTES"])
