"""deploy/k8s: the fleet manifests validate against the Kubernetes API schema and hold the deployment contract.

Validation is kubernetes-validate (PyPI), which checks each object against the OpenAPI schema of a
Kubernetes release, strictly (an unknown or misspelt field fails), offline. The contract tests read the
objects back: which nodes each DaemonSet selects, probes on the daemon's real endpoints and port, the
ConfigMap's config through the real config loader, secrets as files where the config reads them, the data
dir on the node's disk where the config keeps it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from edgeinfer.config import load_config

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
# the oldest Kubernetes minor still in K3s' support window when this was written, and the newest the
# validator knows: a field that exists in only one of them fails
VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]


def resources() -> list[Path]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    return [K8S / name for name in kustomization["resources"]]


def objects() -> dict[tuple[str, str], dict]:
    found = {}
    for path in resources():
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def daemonsets() -> dict[str, dict]:
    return {name: obj for (kind, name), obj in objects().items() if kind == "DaemonSet"}


def the_container(ds: dict) -> dict:
    (container,) = [c for c in ds["spec"]["template"]["spec"]["containers"] if c["name"] == "edgeinfer"]
    return container


def node_terms(ds: dict) -> dict[str, tuple[str, set[str]]]:
    affinity = ds["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    (term,) = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    return {e["key"]: (e["operator"], set(e["values"])) for e in term["matchExpressions"]}


def selects(ds: dict, labels: dict[str, str]) -> bool:
    for key, (op, values) in node_terms(ds).items():
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
    return True


def config_from_configmap(tmp_path: Path, secret_dir: str) -> object:
    """The ConfigMap's edgeinfer.yaml through load_config, its secret files pointed at the .example copies."""
    text = objects()[("ConfigMap", "edgeinfer-config")]["data"]["edgeinfer.yaml"]
    (tmp_path / "secrets").mkdir()
    for example in (ROOT / "containers" / "secrets").glob("*.example"):
        shutil.copyfile(example, tmp_path / "secrets" / example.stem)
    path = tmp_path / "edgeinfer.yaml"
    path.write_text(text.replace(secret_dir, str(tmp_path / "secrets")), encoding="utf-8")
    return load_config(path)


# --------------------------------------------------------------------------- schema


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_strictly_against_the_kubernetes_schema(version):
    for path in resources():
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            kubernetes_validate.validate(doc, version, strict=True)  # raises ValidationError on a bad field


def test_the_validator_does_reject_a_misspelt_field():
    ds = daemonsets()["edgeinfer"]
    broken = yaml.safe_load(yaml.safe_dump(ds))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[0], strict=True)


def test_the_kustomization_lists_every_manifest():
    listed = {p.name for p in resources()}
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


# --------------------------------------------------------------------------- contract


def test_each_node_runs_exactly_one_hardware_class():
    sets = daemonsets()
    assert set(sets) == {"edgeinfer", "edgeinfer-jetson"}
    nodes = {
        "pi": ({"kubernetes.io/os": "linux", "kubernetes.io/arch": "arm64"}, "edgeinfer"),
        "x86": ({"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}, "edgeinfer"),
        "jetson": (
            {"kubernetes.io/os": "linux", "kubernetes.io/arch": "arm64", "edgeinfer.dev/hardware": "jetson"},
            "edgeinfer-jetson",
        ),
        "opted-out": (
            {"kubernetes.io/os": "linux", "kubernetes.io/arch": "arm64", "edgeinfer.dev/hardware": "none"},
            None,
        ),
    }
    for node, (labels, expected) in nodes.items():
        chosen = [name for name, ds in sets.items() if selects(ds, labels)]
        assert chosen == ([expected] if expected else []), f"{node}: {chosen}"
    assert sets["edgeinfer-jetson"]["spec"]["template"]["spec"]["runtimeClassName"] == "nvidia"
    assert the_container(sets["edgeinfer-jetson"])["image"].endswith("-jetson")


@pytest.mark.parametrize("name", ["edgeinfer", "edgeinfer-jetson"])
def test_daemonset_probes_resources_security_and_rollout(name, tmp_path):
    ds = daemonsets()[name]
    spec = ds["spec"]["template"]["spec"]
    container = the_container(ds)
    config = config_from_configmap(tmp_path, "/run/secrets/edgeinfer")
    port = int(config.http.listen.rsplit(":", 1)[1])
    assert config.http.listen.startswith("0.0.0.0:")  # reachable by the kubelet's probes
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001  # the image's user (containers/Dockerfile)
    assert 44 in spec["securityContext"]["supplementalGroups"]  # video, for /dev/videoN
    assert container["securityContext"] == {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    env = {e["name"]: e for e in container["env"]}
    assert env["EDGEINFER_DEVICE"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}


@pytest.mark.parametrize("name", ["edgeinfer", "edgeinfer-jetson"])
def test_config_secrets_and_data_dir_are_mounted_where_the_config_reads_them(name, tmp_path):
    ds = daemonsets()[name]
    spec = ds["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in the_container(ds)["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}

    config_volume = volumes[mounts["/etc/edgeinfer"]]
    assert config_volume["configMap"]["name"] == "edgeinfer-config"
    assert the_container(ds)["args"] == ["run", "-c", "/etc/edgeinfer/edgeinfer.yaml"]

    secret_dir = "/run/secrets/edgeinfer"
    secret_volume = volumes[mounts[secret_dir]]["secret"]
    assert secret_volume["secretName"] == "edgeinfer-secrets"
    assert secret_volume["defaultMode"] == 0o440 and spec["securityContext"]["fsGroup"] == 10001
    config = config_from_configmap(tmp_path, secret_dir)
    text = objects()[("ConfigMap", "edgeinfer-config")]["data"]["edgeinfer.yaml"]
    assert f"password_file: {secret_dir}/mqtt_password" in text
    assert f"token_file: {secret_dir}/influx_token" in text
    assert config.mqtt is not None and config.mqtt.password is not None
    expected = (ROOT / "containers" / "secrets" / "mqtt_password.example").read_text().strip()
    assert config.mqtt.password.get_secret_value() == expected

    data_volume = volumes[mounts[str(config.data_dir)]]
    assert data_volume["hostPath"] == {"path": "/var/lib/edgeinfer", "type": "DirectoryOrCreate"}
    (init,) = spec["initContainers"]
    assert {m["mountPath"] for m in init["volumeMounts"]} == {str(config.data_dir)}
    assert "chown 10001:10001" in " ".join(init["command"])
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}


def test_the_service_covers_both_daemonsets_and_says_where_to_scrape():
    service = objects()[("Service", "edgeinfer")]
    selector = service["spec"]["selector"]
    for ds in daemonsets().values():
        labels = ds["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "metrics"
    notes = service["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true"
    assert int(notes["prometheus.io/port"]) == port["port"] == 9108
    assert notes["prometheus.io/path"] == "/metrics"
