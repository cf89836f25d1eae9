"""Validate the ProAct Helm chart without a cluster.

For each values file (defaults, production-like, minimal) this lints and renders the chart
with Helm's own library (helm-python-sdk binds Helm v4's Go SDK), validates every rendered
manifest against the Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown
fields are errors), and asserts the chart's rules: probes and resources on every
container, nothing runs as root, every Service selects pods of the chart, env names are
the DESIGN.md contract, credentials never come from values or ConfigMaps. Then it checks
that deliberately bad values files are refused by values.schema.json, as `helm install`
would refuse them. It prints one line per check and exits non-zero on any failure.

Run it through validate.sh, which prepares the virtualenv.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import helm_python as helm
import kubernetes_validate
import yaml
from jsonschema import Draft202012Validator
from kubernetes_validate.utils import all_versions

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CHART = REPO / "k8s" / "proact"
VALUES_FILES = ["values.yaml", "values-production.yaml", "values-minimal.yaml", "values-redis-cluster.yaml"]
BAD_VALUES_DIR = HERE / "bad-values"
DEPLOY_DOC = REPO / "docs" / "deploy.md"
RELEASE, NAMESPACE = "proact", "proact"

# Oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest the schemas know.
KUBE_MIN = "1.27.0"
KUBE_MAX = all_versions()[-1]

# The environment contract: DESIGN.md's connection settings plus the per-service settings
# every binary reads. Names outside this set are a typo or an undocumented knob.
CONNECTION_ENV = {"PROACT_MQTT_URL", "PROACT_REDIS_URL", "PROACT_DATABASE_URL"}
CONTRACT_ENV = CONNECTION_ENV | {
    "PROACT_ADMIN_ADDR",
    "PROACT_GRPC_ADDR",
    "PROACT_HTTP_ADDR",
    "PROACT_LOG_FORMAT",
    "PROACT_SHARDS",
    "PROACT_REDIS_CONNECT_TIMEOUT_SECS",
    "PROACT_ARCHIVE_GRPC_URL",
    "PROACT_REGISTRY_GRPC_URL",
    "PROACT_GATEWAY_TOKEN",
    "PROACT_INGEST_GRPC_TOKEN",
    "PROACT_GRPC_TOKEN",
    "PROACT_MQTT_USERNAME",
    "PROACT_MQTT_PASSWORD",
    "PROACT_TRAIN_SCHEDULE",
    "PROACT_INGEST_ALLOWLIST",
    "PROACT_MQTT_CA_FILE",
    "PROACT_MODEL_SIGNING_KEY",
    "PROACT_MODEL_VERIFY_KEY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "RUST_LOG",
}
# Standard OpenTelemetry SDK variables are allowed too (OTEL_SERVICE_NAME, ...).
ALLOWED_ENV_PREFIXES = ("OTEL_",)
# Must come from a Secret, never a literal value or a ConfigMap.
SECRET_ENV = {
    "PROACT_DATABASE_URL",
    "PROACT_GATEWAY_TOKEN",
    "PROACT_INGEST_GRPC_TOKEN",
    "PROACT_GRPC_TOKEN",
    "PROACT_MQTT_USERNAME",
    "PROACT_MQTT_PASSWORD",
    "PROACT_MODEL_SIGNING_KEY",
    "PROACT_MODEL_VERIFY_KEY",
}
# What each component must receive (DESIGN.md data flow).
REQUIRED_ENV = {
    "ingest": {"PROACT_MQTT_URL", "PROACT_REDIS_URL", "PROACT_INGEST_GRPC_TOKEN"},
    "archive": {"PROACT_REDIS_URL", "PROACT_DATABASE_URL", "PROACT_GRPC_TOKEN"},
    "anomaly-detector": {
        "PROACT_REDIS_URL",
        "PROACT_DATABASE_URL",
        "PROACT_REGISTRY_GRPC_URL",
        "PROACT_GRPC_TOKEN",
        "PROACT_MODEL_VERIFY_KEY",
    },
    "alert-gateway": {
        "PROACT_REDIS_URL",
        "PROACT_DATABASE_URL",
        "PROACT_HTTP_ADDR",
        "PROACT_ARCHIVE_GRPC_URL",
        "PROACT_REGISTRY_GRPC_URL",
        "PROACT_GATEWAY_TOKEN",
        "PROACT_GRPC_TOKEN",
    },
    "trainer": {"PROACT_REDIS_URL", "PROACT_DATABASE_URL", "PROACT_GRPC_TOKEN", "PROACT_MODEL_SIGNING_KEY"},
    "trainer-train": {"PROACT_REDIS_URL", "PROACT_DATABASE_URL", "PROACT_MODEL_SIGNING_KEY"},
}
COMMON_ENV = {"PROACT_ADMIN_ADDR", "PROACT_GRPC_ADDR", "PROACT_LOG_FORMAT", "PROACT_SHARDS"}
COMPONENTS = ["ingest", "archive", "anomaly-detector", "alert-gateway", "trainer"]

# Custom resources have no schema in kubernetes-validate: check the fields the chart sets.
CRD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): {
        "type": "object",
        "required": ["metadata", "spec"],
        "properties": {
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["scaleTargetRef", "triggers"],
                "properties": {
                    "scaleTargetRef": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}, "kind": {"type": "string"},
                                       "apiVersion": {"type": "string"}},
                    },
                    "minReplicaCount": {"type": "integer", "minimum": 0},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "pollingInterval": {"type": "integer", "minimum": 1},
                    "cooldownPeriod": {"type": "integer", "minimum": 0},
                    "triggers": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["type", "metadata"],
                            # One Redis: `address`; a Redis Cluster: `addresses` (KEDA's
                            # redis-cluster-streams), a comma list of its nodes.
                            "oneOf": [
                                {
                                    "properties": {
                                        "type": {"const": "redis-streams"},
                                        "metadata": {"required": ["address"], "not": {"required": ["addresses"]}},
                                    }
                                },
                                {
                                    "properties": {
                                        "type": {"const": "redis-cluster-streams"},
                                        "metadata": {"required": ["addresses"], "not": {"required": ["address"]}},
                                    }
                                },
                            ],
                            "properties": {
                                "metadata": {
                                    "type": "object",
                                    "required": ["stream", "consumerGroup", "lagCount"],
                                    "additionalProperties": {"type": "string"},
                                    "properties": {
                                        "address": {"pattern": "^[^:/]+:[0-9]+$"},
                                        "addresses": {"pattern": "^[^:/,]+:[0-9]+(,[^:/,]+:[0-9]+)*$"},
                                        "stream": {"pattern": r"^proact:telemetry:\{[0-9]+\}$"},
                                    },
                                },
                                "authenticationRef": {"type": "object", "required": ["name"]},
                            },
                        },
                    },
                },
            }
        },
    },
    ("monitoring.coreos.com/v1", "PrometheusRule"): {
        "type": "object",
        "required": ["metadata", "spec"],
        "properties": {
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["groups"],
                "properties": {
                    "groups": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["name", "rules"],
                            "properties": {
                                "name": {"type": "string"},
                                "rules": {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": {
                                        "type": "object",
                                        "required": ["alert", "expr", "labels", "annotations"],
                                        "additionalProperties": False,
                                        "properties": {
                                            "alert": {"type": "string", "pattern": "^ProAct[A-Za-z]+$"},
                                            "expr": {"type": "string", "minLength": 1},
                                            "for": {"type": "string", "pattern": "^[0-9]+(s|m|h)$"},
                                            "labels": {
                                                "type": "object",
                                                "required": ["severity"],
                                                "properties": {"severity": {"enum": ["critical", "warning", "info"]}},
                                            },
                                            "annotations": {
                                                "type": "object",
                                                "required": ["summary", "description"],
                                                "additionalProperties": {"type": "string"},
                                            },
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            }
        },
    },
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "type": "object",
        "required": ["metadata", "spec"],
        "properties": {
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "properties": {
                    "selector": {"type": "object", "required": ["matchLabels"]},
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["port", "path"],
                            "properties": {"port": {"type": "string"}, "path": {"const": "/metrics"},
                                           "interval": {"type": "string"},
                                           "scrapeTimeout": {"type": "string"}},
                            "additionalProperties": False,
                        },
                    },
                },
            }
        },
    },
}

CREDENTIAL_KEY = re.compile(r"(password|passwd|token|secret|apikey|api_key|databaseurl|credential)", re.I)
# A URL carrying a password: scheme://user:password@host
URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s@:]*:[^/\s@]+@", re.I)


@dataclass
class Report:
    passed: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)

    def check(self, name: str, problems: list[str]) -> None:
        if problems:
            self.failed += 1
            self.failures.append(name)
            print(f"FAIL {name}")
            for p in problems[:25]:
                print(f"     - {p}")
            if len(problems) > 25:
                print(f"     - ... and {len(problems) - 25} more")
        else:
            self.passed += 1
            print(f"ok   {name}")


def load_values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def render(chart: helm.Chart, values: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """Render like `helm install`: returns (objects, NOTES.txt)."""
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects: list[dict[str, Any]] = []
    notes = ""
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("__source__", path)
                objects.append(doc)
    return objects, notes


def clean(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != "__source__"}


def kn(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj.get('metadata', {}).get('name', '?')}"


def pod_templates(objects: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any], str]]:
    """(owner, pod template, 'service' | 'batch') for every workload."""
    for o in objects:
        kind = o["kind"]
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
            yield o, o["spec"]["template"], "service"
        elif kind == "Job":
            yield o, o["spec"]["template"], "batch"
        elif kind == "CronJob":
            yield o, o["spec"]["jobTemplate"]["spec"]["template"], "batch"
        elif kind == "Pod":
            yield o, o, "service"


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod["spec"]
    return list(spec.get("initContainers", [])) + list(spec.get("containers", []))


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# ---------------------------------------------------------------- checks on one rendering

def check_schemas(objects: list[dict[str, Any]]) -> list[str]:
    problems = []
    for o in objects:
        body = clean(o)
        key = (o.get("apiVersion"), o.get("kind"))
        if key in CRD_SCHEMAS:
            for err in Draft202012Validator(CRD_SCHEMAS[key]).iter_errors(body):
                problems.append(f"{kn(o)}: {err.json_path}: {err.message}")
            continue
        for version in (KUBE_MIN, KUBE_MAX):
            try:
                kubernetes_validate.validate(body, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = "/".join(str(p) for p in e.path)
                problems.append(f"{kn(o)} (k8s {version}): {path}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError:
                problems.append(f"{kn(o)}: no schema for {o.get('apiVersion')} in k8s {version}")
    return problems


def check_probes_and_resources(objects: list[dict[str, Any]]) -> list[str]:
    problems = []
    for owner, pod, kind in pod_templates(objects):
        for c in containers(pod):
            where = f"{kn(owner)} container {c['name']}"
            res = c.get("resources") or {}
            req, lim = res.get("requests") or {}, res.get("limits") or {}
            for k in ("cpu", "memory"):
                if k not in req:
                    problems.append(f"{where}: no resources.requests.{k}")
            if "memory" not in lim:
                problems.append(f"{where}: no resources.limits.memory")
            if kind == "service":
                for probe in ("livenessProbe", "readinessProbe"):
                    if probe not in c:
                        problems.append(f"{where}: no {probe}")
                paths = {p: (c.get(p) or {}).get("httpGet", {}).get("path") for p in
                         ("livenessProbe", "readinessProbe")}
                if paths["livenessProbe"] not in (None, "/healthz"):
                    problems.append(f"{where}: liveness should probe /healthz, not {paths['livenessProbe']}")
                if paths["readinessProbe"] not in (None, "/readyz"):
                    problems.append(f"{where}: readiness should probe /readyz, not {paths['readinessProbe']}")
        if kind == "service":
            grace = pod["spec"].get("terminationGracePeriodSeconds")
            if grace is None or not 10 <= grace <= 120:
                problems.append(f"{kn(owner)}: terminationGracePeriodSeconds {grace} (services drain within ~30 s)")
        else:
            # A batch container has no liveness probe; its bound is the Job's deadline.
            job = owner["spec"]["jobTemplate"]["spec"] if owner["kind"] == "CronJob" else owner["spec"]
            if "activeDeadlineSeconds" not in job:
                problems.append(f"{kn(owner)}: batch job without activeDeadlineSeconds")
    return problems


def check_security(objects: list[dict[str, Any]]) -> list[str]:
    problems = []
    for owner, pod, _ in pod_templates(objects):
        spec = pod["spec"]
        psc = spec.get("securityContext") or {}
        if psc.get("runAsNonRoot") is not True:
            problems.append(f"{kn(owner)}: pod securityContext.runAsNonRoot is not true")
        if psc.get("runAsUser") == 0:
            problems.append(f"{kn(owner)}: pod runs as UID 0")
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(flag):
                problems.append(f"{kn(owner)}: {flag}")
        for v in spec.get("volumes", []):
            if "hostPath" in v:
                problems.append(f"{kn(owner)}: hostPath volume {v['name']}")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{kn(owner)}: mounts a service-account token it does not need")
        for c in containers(pod):
            where = f"{kn(owner)} container {c['name']}"
            sc = c.get("securityContext") or {}
            non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
            uid = sc.get("runAsUser", psc.get("runAsUser"))
            if non_root is not True or uid == 0:
                problems.append(f"{where}: may run as root (runAsNonRoot={non_root}, runAsUser={uid})")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: readOnlyRootFilesystem is not true")
            if sc.get("privileged"):
                problems.append(f"{where}: privileged")
            caps = sc.get("capabilities") or {}
            if "ALL" not in (caps.get("drop") or []):
                problems.append(f"{where}: capabilities.drop lacks ALL")
            if caps.get("add"):
                problems.append(f"{where}: adds capabilities {caps['add']}")
            image = c.get("image", "")
            if image.endswith(":latest") or ":" not in image.rsplit("/", 1)[-1]:
                problems.append(f"{where}: image {image!r} has no pinned tag")
    return problems


def check_services_select_pods(objects: list[dict[str, Any]]) -> list[str]:
    problems = []
    workloads = [(o, pod) for o, pod, kind in pod_templates(objects) if kind == "service"]
    batch = [(o, pod) for o, pod, kind in pod_templates(objects) if kind == "batch"]
    for svc in (o for o in objects if o["kind"] == "Service"):
        sel = svc["spec"].get("selector") or {}
        if not sel:
            problems.append(f"{kn(svc)}: no selector")
            continue
        matched = [(o, pod) for o, pod in workloads if selects(sel, pod["metadata"].get("labels", {}))]
        if not matched:
            problems.append(f"{kn(svc)}: selector {sel} matches no pod of the chart")
        for o, pod in batch:
            if selects(sel, pod["metadata"].get("labels", {})):
                problems.append(f"{kn(svc)}: selector also matches the batch pods of {kn(o)}")
        for o, pod in matched:
            names = {p.get("name") for c in containers(pod) for p in c.get("ports", [])}
            numbers = {p.get("containerPort") for c in containers(pod) for p in c.get("ports", [])}
            for port in svc["spec"].get("ports", []):
                target = port.get("targetPort", port.get("port"))
                if target not in names and target not in numbers:
                    problems.append(f"{kn(svc)} port {port.get('name')}: targetPort {target} is not a port of {kn(o)}")
    # The other selectors of the chart must hit something too.
    for o in objects:
        sel = None
        if o["kind"] == "PodDisruptionBudget":
            sel = o["spec"]["selector"]["matchLabels"]
        elif o["kind"] == "NetworkPolicy":
            sel = o["spec"]["podSelector"].get("matchLabels")
        if sel is None:
            continue
        pods = [pod for _, pod, _ in pod_templates(objects)]
        if not any(selects(sel, p["metadata"].get("labels", {})) for p in pods):
            problems.append(f"{kn(o)}: selector {sel} matches no pod of the chart")
    return problems


def env_of(container: dict[str, Any], configmaps: dict[str, dict[str, str]]) -> dict[str, tuple[str, Any]]:
    """name -> (source, value) with source in value | configmap | secret | field."""
    env: dict[str, tuple[str, Any]] = {}
    for ef in container.get("envFrom", []):
        if "configMapRef" in ef:
            for k, v in configmaps.get(ef["configMapRef"]["name"], {}).items():
                env[k] = ("configmap", v)
        elif "secretRef" in ef:
            env[f"<all keys of Secret {ef['secretRef']['name']}>"] = ("secret", None)
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = ("value", e["value"])
        elif "secretKeyRef" in e.get("valueFrom", {}):
            env[e["name"]] = ("secret", e["valueFrom"]["secretKeyRef"])
        else:
            env[e["name"]] = ("field", e.get("valueFrom"))
    return env


def check_env(objects: list[dict[str, Any]], doc_text: str) -> list[str]:
    problems = []
    configmaps = {o["metadata"]["name"]: o.get("data") or {} for o in objects if o["kind"] == "ConfigMap"}
    secrets = {o["metadata"]["name"]: set((o.get("data") or {}) | (o.get("stringData") or {}))
               for o in objects if o["kind"] == "Secret"}
    shards = set()
    seen_components = set()
    for owner, pod, _ in pod_templates(objects):
        component = pod["metadata"].get("labels", {}).get("app.kubernetes.io/component", "?")
        seen_components.add(component)
        for c in containers(pod):
            where = f"{kn(owner)} container {c['name']}"
            for ef in c.get("envFrom", []):
                ref = ef.get("configMapRef", {}).get("name")
                if ref and ref not in configmaps:
                    problems.append(f"{where}: envFrom ConfigMap {ref} is not rendered")
            env = env_of(c, configmaps)
            for name, (source, value) in env.items():
                if name not in CONTRACT_ENV and not name.startswith(ALLOWED_ENV_PREFIXES):
                    problems.append(f"{where}: env {name} is not in the environment contract")
                if name in SECRET_ENV and source != "secret":
                    problems.append(f"{where}: {name} comes from a {source}, not a Secret")
                if source == "secret" and isinstance(value, dict):
                    sname, skey = value.get("name"), value.get("key")
                    if sname in secrets and skey not in secrets[sname] and not value.get("optional"):
                        problems.append(f"{where}: {name} needs key {skey} that Secret {sname} lacks")
                if name not in doc_text and name.startswith("PROACT_"):
                    problems.append(f"{where}: {name} is not documented in docs/deploy.md")
                if name == "PROACT_SHARDS":
                    shards.add(str(value))
                if source in ("configmap", "value") and isinstance(value, str) and URL_WITH_PASSWORD.search(value):
                    problems.append(f"{where}: {name} carries a password outside a Secret")
            required = REQUIRED_ENV.get(component, set()) | COMMON_ENV
            for name in sorted(required - set(env)):
                problems.append(f"{where}: missing {name}")
    missing = set(COMPONENTS) - seen_components
    if missing:
        problems.append(f"no workload for {sorted(missing)}")
    if len(shards) > 1:
        problems.append(f"PROACT_SHARDS differs between services: {sorted(shards)}")
    return problems


def check_wiring(objects: list[dict[str, Any]], values: dict[str, Any]) -> list[str]:
    """Autoscalers, service accounts and NetworkPolicies point at what exists."""
    problems = []
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    accounts = {o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"}
    scaled: dict[str, str] = {}
    for o in objects:
        target = None
        if o["kind"] == "HorizontalPodAutoscaler":
            target = o["spec"]["scaleTargetRef"]["name"]
        elif o["kind"] == "ScaledObject":
            target = o["spec"]["scaleTargetRef"]["name"]
        if target is None:
            continue
        if target not in deployments:
            problems.append(f"{kn(o)}: targets missing Deployment {target}")
        if target in scaled:
            problems.append(f"{kn(o)} and {scaled[target]} both scale {target}")
        scaled[target] = kn(o)
        if "replicas" in deployments.get(target, {}).get("spec", {}):
            problems.append(f"Deployment/{target}: sets replicas although {kn(o)} scales it")
    for owner, pod, _ in pod_templates(objects):
        sa = pod["spec"].get("serviceAccountName", "default")
        if sa != "default" and sa not in accounts:
            problems.append(f"{kn(owner)}: ServiceAccount {sa} is not rendered (serviceAccount.create=false needs it to exist)")
    netpols = [o for o in objects if o["kind"] == "NetworkPolicy"]
    if (values.get("networkPolicy") or {}).get("enabled", True):
        for owner, pod, _ in pod_templates(objects):
            labels = pod["metadata"].get("labels", {})
            mine = [n for n in netpols if selects(n["spec"]["podSelector"].get("matchLabels", {}), labels)]
            if not mine:
                problems.append(f"{kn(owner)}: no NetworkPolicy selects its pods")
            elif not all(set(n["spec"].get("policyTypes", [])) >= {"Ingress", "Egress"} for n in mine):
                problems.append(f"{kn(owner)}: a NetworkPolicy does not restrict both directions")
    kinds = {o["kind"] for o in objects}
    trainer = values.get("trainer", {}).get("training", {})
    if trainer.get("enabled", True) and "CronJob" not in kinds:
        problems.append("trainer.training.enabled but no CronJob rendered")
    cron = [o for o in objects if o["kind"] == "CronJob"]
    for o in cron:
        args = o["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0].get("args")
        if args != ["train"]:
            problems.append(f"{kn(o)}: runs {args}, expected ['train']")
    return problems


def check_hardening(objects: list[dict[str, Any]], values: dict[str, Any]) -> list[str]:
    """What a neighbour pod or a spoofing sensor could do (issue #21): client ports open to
    any source, the equipment allow-list off, an mqtts:// broker without its CA, a gateway
    without the registry it shows, model signatures required but a key that may be missing."""
    problems = []
    for o in objects:
        if o["kind"] != "NetworkPolicy":
            continue
        for rule in o["spec"].get("ingress") or []:
            ports = {p.get("port") for p in rule.get("ports") or []}
            if ports and not rule.get("from"):
                problems.append(f"{kn(o)}: ports {sorted(ports)} admit any source (no `from`)")
    configmaps = {o["metadata"]["name"]: o.get("data") or {} for o in objects if o["kind"] == "ConfigMap"}
    ingest_values = values.get("ingest") or {}
    mqtt_url = (values.get("config") or {}).get("mqttUrl", "")
    for owner, pod, _ in pod_templates(objects):
        component = pod["metadata"].get("labels", {}).get("app.kubernetes.io/component", "?")
        for c in containers(pod):
            env = env_of(c, configmaps)
            if component == "ingest":
                if ingest_values.get("allowlist", "db") == "db":
                    if env.get("PROACT_INGEST_ALLOWLIST", ("", ""))[1] != "db":
                        problems.append(f"{kn(owner)}: the equipment allow-list is not on (PROACT_INGEST_ALLOWLIST=db)")
                    if "PROACT_DATABASE_URL" not in env:
                        problems.append(f"{kn(owner)}: allow-list `db` without PROACT_DATABASE_URL")
                if mqtt_url.startswith("mqtts://"):
                    ca = env.get("PROACT_MQTT_CA_FILE", ("", ""))[1]
                    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
                    secrets = {v["name"] for v in pod["spec"].get("volumes", []) if "secret" in v}
                    mounted = any(ca.startswith(path + "/") and name in secrets for path, name in mounts.items())
                    if not ca or not mounted:
                        problems.append(f"{kn(owner)}: mqtts:// but PROACT_MQTT_CA_FILE ({ca!r}) is not a mounted Secret")
            if (values.get("modelSigning") or {}).get("required"):
                for name in ("PROACT_MODEL_SIGNING_KEY", "PROACT_MODEL_VERIFY_KEY"):
                    source, ref = env.get(name, ("", None))
                    if source == "secret" and isinstance(ref, dict) and ref.get("optional"):
                        problems.append(f"{kn(owner)}: modelSigning.required but {name}'s Secret key is optional")
            if component == "alert-gateway" and "PROACT_REGISTRY_GRPC_URL" not in env:
                problems.append(f"{kn(owner)}: no PROACT_REGISTRY_GRPC_URL (the page shows the models in use)")
    gateway_egress = [o for o in objects if o["kind"] == "NetworkPolicy"
                      and o["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/component") == "alert-gateway"]
    trainer_port = (values.get("trainer") or {}).get("ports", {}).get("grpc", 50055)
    for o in gateway_egress:
        to_trainer = [r for r in o["spec"].get("egress") or []
                      if trainer_port in {p.get("port") for p in r.get("ports") or []}
                      and any((t.get("podSelector") or {}).get("matchLabels", {}).get("app.kubernetes.io/component") == "trainer"
                              for t in r.get("to") or [])]
        if not to_trainer:
            problems.append(f"{kn(o)}: no egress to the trainer's gRPC port {trainer_port}")
    return problems


def credential_leaks(values: Any, path: str = "") -> list[str]:
    """Non-empty credential-looking keys, and URLs with a password, in a values tree."""
    leaks = []
    if isinstance(values, dict):
        for k, v in values.items():
            p = f"{path}.{k}" if path else str(k)
            is_credential = CREDENTIAL_KEY.search(str(k)) and not re.search(r"(existingSecret|secretName|FromSecret)$", str(k))
            if path == "credentials" and k != "existingSecret":
                is_credential = True
            if is_credential and isinstance(v, (str, int, float)) and str(v) != "":
                leaks.append(f"{p} is set (credentials go in a Secret: existingSecret or --set-string)")
            leaks.extend(credential_leaks(v, p))
    elif isinstance(values, list):
        for i, v in enumerate(values):
            leaks.extend(credential_leaks(v, f"{path}[{i}]"))
    elif isinstance(values, str) and URL_WITH_PASSWORD.search(values):
        leaks.append(f"{path} is a URL with a password")
    return leaks


# ---------------------------------------------------------------- whole-repo checks

def check_compose_and_dockerfile() -> list[str]:
    problems = []
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    for needle, why in [
        (r"^FROM rust:\$\{RUST_VERSION\}", "builder from the rust image"),
        (r"^ARG RUST_VERSION=1\.95\b", "Rust 1.95"),
        (r"^ARG SERVICE\b", "SERVICE build argument"),
        (r"cargo chef cook", "dependency caching layer"),
        (r"^USER 10001", "non-root runtime user 10001"),
    ]:
        if not re.search(needle, dockerfile, re.M):
            problems.append(f"deploy/Dockerfile: no {why} ({needle})")
    if re.search(r"protoc|protobuf-compiler", dockerfile.replace("no protoc", "").replace("No protoc", "")):
        problems.append("deploy/Dockerfile installs protoc, which the build does not need")
    compose = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())
    services = compose.get("services", {})
    for name in ["mosquitto", "redis", "postgres", *COMPONENTS, "simulator"]:
        if name not in services:
            problems.append(f"deploy/compose.yaml: no service {name}")
    for name, svc in services.items():
        for var in (svc.get("environment") or {}):
            if var.startswith("PROACT_") and var not in CONTRACT_ENV:
                problems.append(f"deploy/compose.yaml {name}: env {var} is not in the contract")
        build = svc.get("build") or {}
        if build and build.get("args", {}).get("SERVICE") not in [*COMPONENTS, "simulator"]:
            problems.append(f"deploy/compose.yaml {name}: unknown SERVICE build arg")
    redis_conf = (REPO / "deploy" / "docker" / "redis.conf").read_text()
    if not re.search(r"^appendonly yes", redis_conf, re.M):
        problems.append("deploy/docker/redis.conf: appendonly is off")
    mosq = (REPO / "deploy" / "docker" / "mosquitto.conf").read_text()
    if not re.search(r"^persistence true", mosq, re.M):
        problems.append("deploy/docker/mosquitto.conf: persistence is off")
    for name, svc in services.items():
        for port in svc.get("ports") or []:
            if not str(port).startswith("127.0.0.1:"):
                problems.append(f"deploy/compose.yaml {name}: port {port} is published on every interface, not 127.0.0.1")
    token = (services.get("alert-gateway", {}).get("environment") or {}).get("PROACT_GATEWAY_TOKEN", "")
    default = re.search(r":-([^}]*)\}", str(token))
    if default and len(default.group(1)) < 16:
        problems.append(f"deploy/compose.yaml: the gateway's default token {default.group(1)!r} is shorter than the 16 characters it requires")
    if not re.search(r"^message_size_limit \d+", mosq, re.M):
        problems.append("deploy/docker/mosquitto.conf: no message_size_limit")
    if services.get("postgres", {}).get("environment", {}).get("POSTGRES_DB") != "proact":
        problems.append("deploy/compose.yaml: PostgreSQL database is not `proact`")
    return problems


def check_design_names() -> list[str]:
    """The connection variables named in DESIGN.md are the ones the chart uses."""
    candidates = [Path(p) for p in [os.environ.get("PROACT_DESIGN_MD", ""),
                                    REPO.parent / "shared" / "DESIGN.md",
                                    REPO / "docs" / "DESIGN.md"] if p]
    design = next((p for p in candidates if p.is_file()), None)
    if design is None:
        print("     (DESIGN.md not found beside the repo; checked the built-in contract only)")
        return []
    named = set(re.findall(r"\bPROACT_[A-Z0-9_]+\b", design.read_text()))
    problems = [f"DESIGN.md names {n}, which the chart's contract lacks" for n in sorted(named - CONTRACT_ENV)]
    problems += [f"DESIGN.md no longer names {n}" for n in sorted(CONNECTION_ENV - named)]
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dump", type=Path, help="write each rendering to this directory")
    parser.add_argument("--chart", type=Path, default=CHART, help="chart directory (default k8s/proact)")
    args = parser.parse_args()
    chart_dir = args.chart.resolve()

    started = time.monotonic()
    report = Report()
    print(f"helm-python-sdk: libhelm_c {helm.helm_c_version()}, Helm SDK {helm.helm_sdk_version()}; "
          f"kubernetes-validate {kubernetes_validate.__version__}: schemas k8s {KUBE_MIN} and {KUBE_MAX}")
    doc_text = DEPLOY_DOC.read_text() if DEPLOY_DOC.is_file() else ""
    report.check("docs/deploy.md exists", [] if doc_text else ["docs/deploy.md is missing"])
    report.check("env names in DESIGN.md match the chart's contract", check_design_names())
    report.check("deploy/: Dockerfile and compose stack", check_compose_and_dockerfile())

    with helm.Chart.load(chart_dir) as chart:
        report.check("chart has values.schema.json", [] if chart.schema else ["no values.schema.json"])
        for values_file in VALUES_FILES:
            path = chart_dir / values_file
            values = load_values(path)
            label = f"[{values_file}]"
            report.check(f"{label} no credentials in values", credential_leaks(values))
            try:
                chart.validate_schema(values)
                problems = []
            except helm.HelmError as e:
                problems = [str(e)]
            report.check(f"{label} values.schema.json accepts it", problems)

            lint = helm.lint(chart_dir, values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_MIN}")
            report.check(f"{label} helm lint --strict (kube v{KUBE_MIN})",
                         [f"{m['path']}: {m['error']}" for m in lint.get("messages", []) if m.get("severity", 0) >= 2]
                         + list(lint.get("errors") or []))
            try:
                objects, notes = render(chart, values)
            except helm.HelmError as e:
                report.check(f"{label} renders", [str(e)])
                continue
            kinds: dict[str, int] = {}
            for o in objects:
                kinds[o["kind"]] = kinds.get(o["kind"], 0) + 1
            summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
            report.check(f"{label} renders {len(objects)} objects ({summary})", [] if objects else ["nothing rendered"])
            if args.dump:
                args.dump.mkdir(parents=True, exist_ok=True)
                out = args.dump / f"{path.stem}.yaml"
                out.write_text("".join("---\n" + yaml.safe_dump(clean(o), sort_keys=False) for o in objects))
            report.check(f"{label} every manifest valid against Kubernetes schemas (strict)", check_schemas(objects))
            report.check(f"{label} probes and resources on every container", check_probes_and_resources(objects))
            report.check(f"{label} nothing runs as root; read-only, no capabilities", check_security(objects))
            report.check(f"{label} every Service (and PDB, NetworkPolicy) selects pods of the chart",
                         check_services_select_pods(objects))
            report.check(f"{label} env names match the contract; credentials only from Secrets",
                         check_env(objects, doc_text))
            report.check(f"{label} autoscalers, accounts, NetworkPolicies and CronJob wired",
                         check_wiring(objects, values))
            report.check(f"{label} client ports closed to strangers, allow-list on, broker CA mounted, gateway reaches the registry, model keys",
                         check_hardening(objects, values))
            leaks = [f"ConfigMap {o['metadata']['name']}: {p}" for o in objects if o["kind"] == "ConfigMap"
                     for p in credential_leaks(o.get("data") or {})]
            report.check(f"{label} no credentials in ConfigMaps", leaks)

        bad_files = sorted(BAD_VALUES_DIR.glob("*.yaml"))
        report.check("bad values fixtures present", [] if bad_files else [f"no *.yaml in {BAD_VALUES_DIR}"])
        for bad in bad_files:
            text = bad.read_text()
            expect = re.findall(r"^# expect: (.+)$", text, re.M)
            values = yaml.safe_load(text) or {}
            problems = []
            try:
                chart.validate_schema(values)
                problems.append("values.schema.json accepted it")
            except helm.HelmValuesError as e:
                message = str(e)
                for fragment in expect:
                    if fragment.strip() not in message:
                        problems.append(f"refused, but not for {fragment.strip()!r}: {message.strip()}")
            try:
                chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
                problems.append("an install would render it")
            except helm.HelmError:
                pass
            report.check(f"[bad-values/{bad.name}] refused at install time", problems)

    elapsed = time.monotonic() - started
    print()
    if report.failures:
        print("Failed checks:")
        for name in report.failures:
            print(f"  - {name}")
    print(f"validated in {elapsed:.1f} s")
    print(f"validate: {report.passed} passed, {report.failed} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
