"""serving/k8s/: Kubernetes manifests for stock tensorflow/serving, checked offline.

`kubectl apply --dry-run=client` needs an API server even with `--validate=false` (it downloads the API
discovery and OpenAPI documents first), and no Kubernetes JSON schema is installed here for `jsonschema`.
What works without a cluster is kubectl's own typed decoding: `kubectl set ... --local` decodes each object
into the Go structs of its kind (a wrong type or a bad quantity fails), and for the Deployment and the
Service the typed round trip is compared with the file, so a misspelled field (which typed decoding drops)
fails too. The other kinds' fields are checked against the API reference's field lists below. Then the
objects are checked against each other (selectors, ports, names, mounted files), and our own server is
started with the Deployment's args and the ConfigMap's files, answering the probes' paths.
"""

from __future__ import annotations

import http.client
import json
import resource
import shutil
import subprocess
import sys

import grpc
import pytest
import yaml

from serving_utils import REPO_ROOT, free_port, stop_process

K8S = REPO_ROOT / "serving" / "k8s"
KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")
# Fields of the kinds kubectl has no offline round trip for (Kubernetes API reference, v1.32).
FIELDS = {
    "ConfigMap": {"apiVersion", "kind", "metadata", "data", "binaryData", "immutable"},
    "PersistentVolumeClaim": {"apiVersion", "kind", "metadata", "spec"},
    "PersistentVolumeClaim.spec": {
        "accessModes", "dataSource", "dataSourceRef", "resources", "selector", "storageClassName",
        "volumeAttributesClassName", "volumeMode", "volumeName",
    },
    "HorizontalPodAutoscaler": {"apiVersion", "kind", "metadata", "spec"},
    "HorizontalPodAutoscaler.spec": {"behavior", "maxReplicas", "metrics", "minReplicas", "scaleTargetRef"},
    "PodDisruptionBudget": {"apiVersion", "kind", "metadata", "spec"},
    "PodDisruptionBudget.spec": {"maxUnavailable", "minAvailable", "selector", "unhealthyPodEvictionPolicy"},
    "metadata": {"name", "namespace", "labels", "annotations"},
}  # fmt: skip


def _cap_memory():
    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))  # address space of the test server


def load_manifests() -> dict[str, dict]:
    objects = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                assert doc["kind"] not in objects, f"two {doc['kind']} objects"
                objects[doc["kind"]] = doc | {"_file": path}
    return objects


@pytest.fixture(scope="module")
def manifests():
    return load_manifests()


def kubectl(*args) -> subprocess.CompletedProcess:
    return subprocess.run([KUBECTL, *args], capture_output=True, text=True, timeout=60)


def strip(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k != "_file"}


def missing(expected, actual, where="") -> list[str]:
    """Paths of `expected` (the file) that are absent or different in `actual` (kubectl's typed round trip)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [where or "/"]
        return [p for k, v in expected.items() for p in missing(v, actual.get(k, KeyError), f"{where}.{k}")]
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [where]
        return [p for i, (e, a) in enumerate(zip(expected, actual)) for p in missing(e, a, f"{where}[{i}]")]
    return [] if expected == actual or str(expected) == str(actual) else [where]


def test_every_kind_is_there(manifests):
    kinds = {"ConfigMap", "PersistentVolumeClaim", "Deployment", "Service", "HorizontalPodAutoscaler"}
    assert kinds <= set(manifests)


@needs_kubectl
def test_kubectl_decodes_every_object_into_its_type(manifests):
    for kind, obj in manifests.items():
        result = kubectl("set", "selector", "--local", "-f", str(obj["_file"]), "kerasbert-check=1", "-o", "json")
        if kind == "Service":
            assert result.returncode == 0, result.stderr
        else:  # decoded fine, then refused because only Services have a settable selector
            assert "only supported for Services" in result.stderr, result.stderr
        assert "unable to decode" not in result.stderr


@needs_kubectl
def test_kubectl_typed_round_trip_keeps_every_field(manifests):
    deployment = manifests["Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "cpu" not in container["resources"].get("limits", {})  # no CPU limit: no throttling under load
    # kubectl prints nothing when nothing changes: add a CPU limit (the comparison ignores added fields)
    result = kubectl("set", "resources", "--local", "-f", str(deployment["_file"]), "-c", container["name"],
                     "--limits=cpu=7", "-o", "json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert missing(strip(deployment), json.loads(result.stdout)) == []
    service = manifests["Service"]
    selector = ",".join(f"{k}={v}" for k, v in service["spec"]["selector"].items())
    result = kubectl("set", "selector", "--local", "-f", str(service["_file"]), selector, "-o", "json")
    assert result.returncode == 0, result.stderr
    assert missing(strip(service), json.loads(result.stdout)) == []


@needs_kubectl
def test_round_trip_check_catches_a_misspelled_field(tmp_path, manifests):
    text = manifests["Deployment"]["_file"].read_text().replace("readinessProbe:", "readinesProbe:")
    broken = yaml.safe_load(text)
    (tmp_path / "d.yaml").write_text(text)
    result = kubectl("set", "resources", "--local", "-f", str(tmp_path / "d.yaml"), "-c", "tf-serving",
                     "--limits=cpu=7", "-o", "json")  # fmt: skip
    assert result.returncode == 0  # typed decoding alone drops unknown fields silently ...
    assert missing(broken, json.loads(result.stdout)) == [".spec.template.spec.containers[0].readinesProbe"]
    (tmp_path / "d.yaml").write_text(text.replace("replicas: 2", "replicas: two"))
    result = kubectl("set", "resources", "--local", "-f", str(tmp_path / "d.yaml"), "-c", "tf-serving",
                     "--limits=cpu=7", "-o", "json")  # fmt: skip
    assert "unable to decode" in result.stderr  # ... but rejects wrong types


def test_fields_of_the_other_kinds(manifests):
    for kind in ("ConfigMap", "PersistentVolumeClaim", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        if kind not in manifests:
            continue
        obj = strip(manifests[kind])
        assert set(obj) <= FIELDS[kind], kind
        assert set(obj["metadata"]) <= FIELDS["metadata"], kind
        if "spec" in obj:
            assert set(obj["spec"]) <= FIELDS[f"{kind}.spec"], kind


def test_objects_refer_to_each_other(manifests):
    deployment, service, hpa = manifests["Deployment"], manifests["Service"], manifests["HorizontalPodAutoscaler"]
    config, pvc = manifests["ConfigMap"], manifests["PersistentVolumeClaim"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    if "PodDisruptionBudget" in manifests:
        assert manifests["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (container,) = pod["spec"]["containers"]
    assert container["image"].startswith("tensorflow/serving:")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": 8500, "http": 8501}
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "kerasbert-serving"}
    assert hpa["spec"]["minReplicas"] <= deployment["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    assert "cpu" in container["resources"]["requests"]  # CPU utilisation needs a CPU request
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert volumes[mounts["/config"]]["configMap"]["name"] == config["metadata"]["name"]
    assert volumes[mounts["/models"]]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    args = dict(a.removeprefix("--").split("=", 1) for a in container["args"])
    for flag in ("model_config_file", "batching_parameters_file", "monitoring_config_file"):
        assert args[flag].startswith("/config/") and args[flag].removeprefix("/config/") in config["data"], flag
    assert args["enable_batching"] == "true" and args["enable_grpc_healthcheck_service"] == "true"
    # the probes ask for a model the config serves, on the container's ports
    probe_paths = {container[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe")}
    assert probe_paths == {"/v1/models/sst2"} and '"sst2"' in config["data"]["models.config"]
    assert container["livenessProbe"]["grpc"]["port"] == 8500
    assert "/models/sst2" in config["data"]["models.config"]


def test_our_server_accepts_the_configmap_files_and_answers_the_probes(manifests, tmp_path):
    """kerasbert.serve with the Deployment's args (paths moved to tmp_path): same flags, same files."""
    import tensorflow as tf
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from kerasbert.serving.metrics import CONTENT_TYPE

    class Upper(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve(self, text):
            return {"upper": tf.strings.upper(text)}

    module = Upper()
    tf.saved_model.save(module, str(tmp_path / "models" / "sst2" / "1"), signatures={"serving_default": module.serve})
    (tmp_path / "config").mkdir()
    for name, text in manifests["ConfigMap"]["data"].items():
        (tmp_path / "config" / name).write_text(text.replace('"/models/', f'"{tmp_path}/models/'))
    container = manifests["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    port, rest_port = free_port(), free_port()
    args = [a.replace("=/config/", f"={tmp_path}/config/") for a in container["args"]]
    args = [a for a in args if not a.startswith(("--port=", "--rest_api_port="))]
    args += [f"--port={port}", f"--rest_api_port={rest_port}"]
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "kerasbert.serve", *args], cwd=REPO_ROOT, stdout=out,
                                stderr=subprocess.STDOUT, preexec_fn=_cap_memory)  # fmt: skip
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        health = health_pb2_grpc.HealthStub(channel)
        try:
            grpc.channel_ready_future(channel).result(timeout=90)
        except grpc.FutureTimeoutError:
            pytest.fail(f"server did not start: {log.read_text()}")
        assert proc.poll() is None, log.read_text()
        # liveness: grpc.health.v1 (the server opens its ports after the initial load, like TF Serving)
        answer = health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        conn = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=10)
        for probe in ("startupProbe", "readinessProbe"):
            conn.request("GET", container[probe]["httpGet"]["path"])
            response = conn.getresponse()
            body = json.loads(response.read())
            assert response.status == 200 and body["model_version_status"][0]["state"] == "AVAILABLE"
        metrics_path = manifests["Deployment"]["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"]
        conn.request("GET", metrics_path)
        response = conn.getresponse()
        assert response.status == 200 and response.getheader("Content-Type") == CONTENT_TYPE
        assert b":tensorflow:serving:request_count" in response.read()
        conn.close()
        channel.close()
    finally:
        stop_process(proc)


def test_manifests_folder_holds_only_manifests():
    assert {p.suffix for p in K8S.iterdir()} <= {".yaml"}, "kubectl apply -f serving/k8s/ reads every file"
    assert all(isinstance(d, dict) and {"apiVersion", "kind", "metadata"} <= set(d) for p in K8S.glob("*.yaml")
               for d in yaml.safe_load_all(p.read_text()) if d)  # fmt: skip


def test_configmap_files_match_the_serving_folder(manifests):
    """The cluster runs the batching and monitoring settings of serving/ (compose, run_tf_serving.sh)."""
    from kerasbert.serving.monitoring import load_monitoring_config
    from kerasbert.serving.protos import BatchingParameters, MonitoringConfig, parse_text, read_text_file

    data = manifests["ConfigMap"]["data"]
    serving = REPO_ROOT / "serving"
    assert parse_text(data["batching_parameters.txt"], BatchingParameters) == read_text_file(
        str(serving / "batching_parameters.txt"), BatchingParameters
    )
    assert parse_text(data["monitoring.config"], MonitoringConfig) == read_text_file(
        str(serving / "monitoring.config"), MonitoringConfig
    )
    assert load_monitoring_config(str(serving / "monitoring.config")) == "/monitoring/prometheus/metrics"
