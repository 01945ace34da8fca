"""The Helm chart (helm/audio-gateway): linted and rendered by real Helm engines, checked as Kubernetes
objects.

Two PyPI wheels bundle the Go Helm library:

- ``helm-sdkpy`` lints (``Lint``, the rules of ``helm lint``). It takes no values, so the chart is linted with
  other values by staging a copy whose values.yaml is the defaults coalesced with them, as Helm coalesces.
- ``helm-python-sdk`` renders templates offline (``Chart.render``: what ``helm template`` does, with
  values.schema.json) and lints with values, returning the messages' text, which helm-sdkpy's results lack.

Each engine runs in a child process (this file, run as a script): each carries its own Go runtime, which Go
does not support twice in one process, and neither belongs in the pytest process next to grpc's threads.

The Bitnami Redis dependency cannot be fetched offline. Staged copies get a metadata-only ``charts/redis``, so
lint's dependency rule passes and every other rule must be clean; one test checks that the missing dependency
is the only thing lint says about the chart as committed. Rendered objects are validated against the
Kubernetes OpenAPI schemas shipped in ``kubernetes-validate`` (strict: unknown fields are errors), for the
chart's oldest supported Kubernetes and the newest the package knows. ServiceMonitor, a CRD, is checked field
by field.
"""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "audio-gateway"
FULL_VALUES = CHART / "ci" / "full-values.yaml"
RELEASE, NAMESPACE = "ag", "speech"
FULLNAME = f"{RELEASE}-audio-gateway"
ENGINES = ("helm_sdkpy", "helm_python", "kubernetes_validate")
# Oldest Kubernetes the chart supports (Chart.yaml kubeVersion); the newest comes from kubernetes-validate.
MIN_KUBE = "1.30"

# -- the child process: Helm engines only ----------------------------------------------------------------


def _child_sdkpy(request: dict[str, Any]) -> dict[str, Any]:
    import helm_sdkpy

    config = helm_sdkpy.Configuration(namespace=NAMESPACE)
    lint = helm_sdkpy.Lint(config)
    results = {}
    for name, chart_dir in request["lint"].items():
        report = asyncio.run(lint.run(chart_dir))
        results[name] = [{"severity": m["Severity"], "path": m["Path"]} for m in report.get("Messages") or []]
    return {"lint": results}


def _child_helm_python(request: dict[str, Any]) -> dict[str, Any]:
    import helm_python

    lints = {
        name: helm_python.lint(job["chart"], job["values"], strict=True, namespace=NAMESPACE)["messages"]
        for name, job in request["lint"].items()
    }
    chart = helm_python.Chart.load(request["chart"])
    renders: dict[str, dict[str, Any]] = {}
    for name, values in request["render"].items():
        try:
            manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
            renders[name] = {"manifests": manifests}
        except helm_python.HelmError as exc:
            renders[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return {"lint": lints, "render": renders}


# -- scenarios --------------------------------------------------------------------------------------------


def _full_values() -> dict[str, Any]:
    return yaml.safe_load(FULL_VALUES.read_text())


SINGLE_PROVIDER = {
    "providers": [
        {
            "name": "openai-whisper",
            "kind": "openai",
            "operation": "transcribe",
            "model": "whisper-1",
            "api_key_env": "OPENAI_API_KEY",
        }
    ]
}

RENDERED: dict[str, dict[str, Any]] = {
    "default": {},
    "full": _full_values(),
    "headless": {"service": {"headless": True}},
    "pdb-and-metrics-off": {"podDisruptionBudget": {"enabled": False}, "metrics": {"enabled": False}},
    "external-secrets": {
        "secret": {
            "existingSecret": "provider-keys",
            "policies": {"enabled": True, "existingSecret": "tenants", "key": "tenants.yaml"},
        },
        "redis": {"url": "rediss://:pw@redis.example.internal:6380/0"},
    },
    "bitnami-redis": {"redis": {"enabled": True}},
    "bitnami-sentinel": {
        "redis": {
            "enabled": True,
            "architecture": "replication",
            "sentinel": {"enabled": True, "masterService": {"enabled": True}},
        }
    },
    "long-grace": {"gateway": {"shutdownGraceSeconds": 120.5, "preStopSleepSeconds": 0}},
    "config-changed": {"config": {"providers": SINGLE_PROVIDER}},
    "replicas-changed": {"replicaCount": 5},
    "http-off": {"http": {"enabled": False}},
    "ingress-minimal": {"ingress": {"enabled": True}, "http": {"port": 9000}},
    "models-by-init-container": {
        "models": {"initContainer": {"enabled": True, "image": {"repository": "busybox", "tag": "1.37"}}}
    },
}

# Values the chart must refuse, and a fragment of the refusal: schema errors name the path, template checks
# the rule.
REJECTED: dict[str, tuple[dict[str, Any], str]] = {
    "replicaCount-not-a-number": ({"replicaCount": "three"}, "/replicaCount"),
    "unknown-top-level-key": ({"replicas": 3}, "'replicas' not allowed"),
    "setting-the-chart-owns": ({"gateway": {"settings": {"SERVER__PORT": "8080"}}}, "SERVER__PORT"),
    "http-setting-the-chart-owns": ({"gateway": {"settings": {"HTTP__PORT": "9000"}}}, "HTTP__PORT"),
    "ingress-without-http": (
        {"http": {"enabled": False}, "ingress": {"enabled": True}},
        "needs http.enabled",
    ),
    "http-on-the-grpc-port": ({"http": {"port": 50051}}, "http.port must differ"),
    "ingress-path-not-absolute": (
        {"ingress": {"enabled": True, "hosts": [{"host": "a.example", "paths": [{"path": "v1"}]}]}},
        "/ingress/hosts/0/paths/0/path",
    ),
    "headless-load-balancer": ({"service": {"headless": True, "type": "LoadBalancer"}}, "/service/type"),
    "relative-voice-path": (
        {"engines": {"piper": {"voices": ["voices/amy.onnx"]}}},
        "/engines/piper/voices/0",
    ),
    "grace-margin-too-short": (
        {"gateway": {"terminationGraceMarginSeconds": 1}},
        "/gateway/terminationGraceMarginSeconds",
    ),
    "redis-url-without-scheme": ({"redis": {"url": "localhost:6379"}}, "/redis/url"),
    "bad-env-var-name": ({"secret": {"env": {"1KEY": "x"}}}, "1KEY"),
    "redis-twice": ({"redis": {"enabled": True, "url": "redis://r:6379/0"}}, "not both"),
    "sentinel-without-master-service": (
        {"redis": {"enabled": True, "sentinel": {"enabled": True}}},
        "masterService",
    ),
    "servicemonitor-without-metrics": (
        {"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}},
        "needs metrics.enabled",
    ),
    "keys-twice": ({"secret": {"env": {"OPENAI_API_KEY": "x"}, "existingSecret": "keys"}}, "not both"),
    "policies-secret-with-nothing-in-it": (
        {"secret": {"policies": {"enabled": True}}},
        "needs config.policies",
    ),
}


def coalesce(defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing: maps merge recursively, anything else replaces, and null deletes the default."""
    merged = copy.deepcopy(defaults)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = coalesce(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _stage(root: Path, name: str, overrides: dict[str, Any] | None) -> Path:
    chart = root / name / "audio-gateway"
    shutil.copytree(CHART, chart)
    # Stands in for the Bitnami chart, which cannot be fetched here; disabled, it renders nothing.
    stub = chart / "charts" / "redis"
    stub.mkdir(parents=True)
    (stub / "Chart.yaml").write_text("apiVersion: v2\nname: redis\nversion: 22.0.0\n")
    if overrides is not None:
        defaults = yaml.safe_load((CHART / "values.yaml").read_text())
        (chart / "values.yaml").write_text(yaml.safe_dump(coalesce(defaults, overrides), sort_keys=False))
    return chart


def _run_child(engine: str, request: dict[str, Any], workdir: Path) -> subprocess.Popen[str]:
    job = workdir / f"{engine}-job.json"
    job.write_text(json.dumps(request))
    return subprocess.Popen(
        [sys.executable, __file__, engine, str(job)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )


def _collect(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, f"helm engine child failed:\n{err}"
    return json.loads(out)


# -- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    missing = [name for name in ENGINES if importlib.util.find_spec(name) is None]
    if missing:
        message = f"chart tests need {', '.join(missing)} (see docs/deploy.md, 'Testing the chart')"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("charts")
    staged = {
        "default": _stage(root, "default", None),
        "full": _stage(root, "full", _full_values()),
        "bad": _stage(root, "bad", {"replicaCount": "three"}),
    }
    # Both engines at once: each child spends most of its time loading its Go library.
    sdkpy = _run_child("sdkpy", {"lint": {name: str(path) for name, path in staged.items()}}, root)
    renders = dict(RENDERED)
    renders.update({f"rejected:{name}": values for name, (values, _) in REJECTED.items()})
    texts = _run_child(
        "helm_python",
        {
            "chart": str(CHART),
            "render": renders,
            "lint": {
                "committed-default": {"chart": str(CHART), "values": None},
                "committed-full": {"chart": str(CHART), "values": _full_values()},
                "staged-default": {"chart": str(staged["default"]), "values": None},
                "staged-full": {"chart": str(staged["full"]), "values": None},
            },
        },
        root,
    )
    sdkpy_result, texts_result = _collect(sdkpy), _collect(texts)
    return {"sdkpy": sdkpy_result["lint"], "lint": texts_result["lint"], "render": texts_result["render"]}


class _UniqueKeyLoader(yaml.SafeLoader):
    """Refuses duplicate mapping keys, which the API server would resolve silently (last one wins)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            assert key not in seen, f"duplicate key {key!r} at line {key_node.start_mark.line + 1}"
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def objects(helm: dict[str, Any], scenario: str) -> list[dict[str, Any]]:
    result = helm["render"][scenario]
    assert "manifests" in result, result.get("error")
    docs = []
    for path, text in sorted(result["manifests"].items()):
        if not path.endswith(".yaml"):
            continue
        for doc in yaml.load_all(text, Loader=_UniqueKeyLoader):
            if doc:
                doc.setdefault("__template__", path)
                docs.append(doc)
    return docs


def notes(helm: dict[str, Any], scenario: str) -> str:
    return helm["render"][scenario]["manifests"]["audio-gateway/templates/NOTES.txt"]


def only(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> set[str]:
    return {d["kind"] for d in docs if "helm.sh/hook" not in d["metadata"].get("annotations", {})}


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return only(docs, "Deployment")["spec"]["template"]["spec"]


def gateway_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = [c for c in pod_spec(docs)["containers"] if c["name"] == "gateway"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    names = [e["name"] for e in container.get("env", [])]
    assert len(names) == len(set(names)), (
        f"duplicate env vars: {sorted(n for n in names if names.count(n) > 1)}"
    )
    return {e["name"]: e for e in container.get("env", [])}


def env_values(container: dict[str, Any]) -> dict[str, str]:
    return {name: e["value"] for name, e in env_of(container).items() if "value" in e}


# -- lint -------------------------------------------------------------------------------------------------


def _explain(helm: dict[str, Any], name: str) -> str:
    return "; ".join(f"[{m['severity']}] {m['path']}: {m['error'].strip()}" for m in helm["lint"][name])


@pytest.mark.parametrize("values", ["default", "full"])
def test_helm_sdkpy_lints_clean(helm, values):
    """No warning or error (severity 2 or 3) from Helm's lint rules, for the defaults and every feature on."""
    findings = [m for m in helm["sdkpy"][values] if m["severity"] >= 2]
    assert not findings, (
        f"{findings}; the same chart per helm-python-sdk: {_explain(helm, f'staged-{values}')}"
    )
    # helm-sdkpy drops the messages' text; the other engine, on the same staged chart, must agree.
    assert not [m for m in helm["lint"][f"staged-{values}"] if m["severity"] >= 2], _explain(
        helm, f"staged-{values}"
    )


@pytest.mark.parametrize("values", ["default", "full"])
def test_the_chart_as_committed_lacks_only_the_downloadable_dependency(helm, values):
    problems = [m for m in helm["lint"][f"committed-{values}"] if m["severity"] >= 2]
    assert [m["error"] for m in problems] == ["chart directory is missing these dependencies: redis"], (
        _explain(helm, f"committed-{values}")
    )


def test_helm_sdkpy_lint_fails_values_the_schema_refuses(helm):
    findings = helm["sdkpy"]["bad"]
    assert any(m["severity"] == 3 and m["path"] == "values.yaml" for m in findings), findings


# -- rendering: valid Kubernetes objects ------------------------------------------------------------------

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def _check_service_monitor(doc: dict[str, Any], docs: list[dict[str, Any]]) -> None:
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    spec = doc["spec"]
    assert set(spec) <= {"namespaceSelector", "selector", "endpoints", "jobLabel", "targetLabels"}
    service = only(docs, "Service")
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in spec["endpoints"]:
        allowed = {
            "port",
            "path",
            "interval",
            "scrapeTimeout",
            "relabelings",
            "metricRelabelings",
            "honorLabels",
        }
        assert set(endpoint) <= allowed, set(endpoint) - allowed
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"
        for key in ("interval", "scrapeTimeout"):
            assert re.fullmatch(r"[0-9]+(ms|s|m|h)", endpoint[key]), endpoint[key]
        for relabel in endpoint.get("relabelings", []) + endpoint.get("metricRelabelings", []):
            assert isinstance(relabel, dict)


@pytest.mark.parametrize("scenario", sorted(RENDERED))
def test_renders_valid_kubernetes_objects(helm, scenario):
    import kubernetes_validate
    from kubernetes_validate.utils import latest_version

    docs = objects(helm, scenario)
    assert docs
    newest = ".".join(latest_version().split(".")[:2])
    for doc in docs:
        template = doc.pop("__template__")
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), template
        name = doc["metadata"]["name"]
        assert len(name) <= 63 and _DNS_SUBDOMAIN.match(name), (template, name)
        assert doc["metadata"]["namespace"] in (NAMESPACE, "monitoring"), template
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/name"] == "audio-gateway"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"].startswith("audio-gateway-")
        if doc["kind"] == "ServiceMonitor":
            _check_service_monitor(doc, docs)
            continue
        for version in (MIN_KUBE, newest):
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(
                    f"{template}: {doc['kind']} {name} is invalid for Kubernetes {version}: {exc.message}"
                )


# -- the workload -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["default", "full"])
def test_probes_use_grpc_health(helm, scenario):
    from gateway.api.v1 import audio_gateway_pb2

    service_name = audio_gateway_pb2.DESCRIPTOR.services_by_name["AudioGateway"].full_name
    container = gateway_container(objects(helm, scenario))
    (grpc_port,) = [p["containerPort"] for p in container["ports"] if p["name"] == "grpc"]
    assert env_values(container)["GATEWAY_SERVER__PORT"] == str(grpc_port)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        spec = container[probe]
        assert set(spec) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"grpc"}, probe
        assert spec["grpc"]["port"] == grpc_port, probe
    # NOT_SERVING until every engine is warm: readiness keeps the pod out of the Service until then.
    assert container["readinessProbe"]["grpc"]["service"] == service_name
    assert container["livenessProbe"]["grpc"]["service"] == ""
    assert container["startupProbe"]["grpc"]["service"] == ""
    startup, liveness = container["startupProbe"], container["livenessProbe"]
    # Models load under the startup probe, for minutes; liveness only tolerates a busy pod for a while.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 60
    assert liveness["timeoutSeconds"] >= 5


@pytest.mark.parametrize("scenario", ["default", "full", "long-grace"])
def test_termination_grace_covers_the_gateways_drain(helm, scenario):
    docs = objects(helm, scenario)
    container = gateway_container(docs)
    grace = float(env_values(container)["GATEWAY_SERVER__SHUTDOWN_GRACE_S"])
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    period = pod_spec(docs)["terminationGracePeriodSeconds"]
    values = coalesce(yaml.safe_load((CHART / "values.yaml").read_text()), RENDERED[scenario])
    assert grace == values["gateway"]["shutdownGraceSeconds"]
    # The ledger still flushes and replays its spool for up to 5 s after the drain.
    assert period >= math.ceil(grace) + pre_stop + 5
    assert period == math.ceil(grace) + pre_stop + values["gateway"]["terminationGraceMarginSeconds"]


def test_no_prestop_hook_when_disabled(helm):
    assert "lifecycle" not in gateway_container(objects(helm, "long-grace"))


@pytest.mark.parametrize("scenario", ["default", "full", "models-by-init-container"])
def test_pods_run_locked_down(helm, scenario):
    docs = objects(helm, scenario)
    pods = [pod_spec(docs)] + [d["spec"] for d in docs if d["kind"] == "Pod"]
    for spec in pods:
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in spec["containers"] + spec.get("initContainers", []):
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, mount
    # Everything the gateway writes is a volume, since its root filesystem is read-only.
    container = gateway_container(docs)
    env = env_values(container)
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert {"/tmp", env["GATEWAY_LEDGER__SPOOL_DIR"], env["HOME"]} <= writable
    read_only = {m["mountPath"] for m in container["volumeMounts"] if m.get("readOnly")}
    assert "/etc/audio-gateway/config" in read_only


@pytest.mark.parametrize("scenario", ["default", "full", "bitnami-redis", "external-secrets"])
def test_every_setting_the_chart_sets_is_one_the_gateway_reads(helm, scenario, monkeypatch):
    """Each GATEWAY_* variable names a real setting, and the gateway's settings model accepts its value."""
    from pydantic import BaseModel

    from gateway.settings import Settings

    container = gateway_container(objects(helm, scenario))
    env = env_of(container)
    for name in env:
        if not name.startswith("GATEWAY_"):
            continue
        model: type[BaseModel] = Settings
        parts = name.removeprefix("GATEWAY_").lower().split("__")
        for depth, part in enumerate(parts):
            assert part in model.model_fields, f"{name}: no setting {'.'.join(parts[: depth + 1])}"
            annotation = model.model_fields[part].annotation
            if depth < len(parts) - 1:
                assert isinstance(annotation, type) and issubclass(annotation, BaseModel), name
                model = annotation
    for key in [k for k in os.environ if k.startswith("GATEWAY_")]:
        monkeypatch.delenv(key)
    for name, value in env_values(container).items():
        if name.startswith("GATEWAY_"):
            monkeypatch.setenv(name, value)
    if "GATEWAY_REDIS__URL" in env and "value" not in env["GATEWAY_REDIS__URL"]:
        monkeypatch.setenv("GATEWAY_REDIS__URL", "redis://from-a-secret:6379/0")
    settings = Settings()
    assert settings.server.port == 50051
    assert str(settings.ledger.spool_dir) == "/var/lib/audio-gateway/spool"
    if scenario == "full":
        assert settings.server.shutdown_grace_s == 45
        assert settings.server.max_message_bytes == 64 * 1024 * 1024
        assert [str(p) for p in settings.piper.voices] == [
            "/models/piper/en_US-amy-medium.onnx",
            "/models/piper/de_DE-thorsten-medium.onnx",
        ]
        assert settings.llama.model_path == "/models/llm/qwen2.5-3b-instruct-q4_k_m.gguf"
        assert str(settings.policies_file) == "/etc/audio-gateway/policies/policies.yaml"
        assert str(settings.providers_file) == "/etc/audio-gateway/config/providers.yaml"
        assert str(settings.price_book_file) == "/etc/audio-gateway/config/pricebook.yaml"
        assert [str(p) for p in settings.limits.uri_roots] == ["/data/uploads"]
        assert str(settings.pricing.local_usd_per_hour) == "0.35"
        assert settings.redis.key_prefix == "gw:prod:"
    if scenario == "default":
        # No Redis in the values: no Redis at all, not a private store per pod.
        assert settings.redis.url == "none"
        # Unset files mean the gateway's shipped defaults.
        assert settings.policies_file is None and settings.providers_file is None
        assert settings.price_book_file is None


def test_config_files_load_with_the_gateways_own_loaders(helm, tmp_path):
    from gateway.money.pricing import PriceList
    from policies.loader import load_policy_file
    from providers.config import load_providers_file

    docs = objects(helm, "full")
    config = only(docs, "ConfigMap", f"{FULLNAME}-config")["data"]
    env_secret = only(docs, "Secret", f"{FULLNAME}-env")["stringData"]
    policies_secret = only(docs, "Secret", f"{FULLNAME}-policies")["stringData"]
    # Tenants carry key hashes: with secret.policies.enabled they stay out of the ConfigMap.
    assert "policies.yaml" not in config
    for name, text in {**config, **policies_secret}.items():
        (tmp_path / name).write_text(text)
    # Every key the providers file asks for is in the Secret the pod loads with envFrom.
    providers = load_providers_file(tmp_path / "providers.yaml", environ=dict(env_secret))
    assert {p.name for p in providers} >= {"openai-whisper", "speaches-large-v3"}
    book = load_policy_file(tmp_path / "policies.yaml")
    assert book.auth_required and {"default", "private"} <= set(book.policies)
    prices = PriceList.load(tmp_path / "pricebook.yaml")
    assert "deepgram/nova-3" in prices.prices
    # Verbatim text keeps its comments.
    assert config["pricebook.yaml"].startswith("# Negotiated prices")

    container = gateway_container(docs)
    assert {"secretRef": {"name": f"{FULLNAME}-env"}} in container["envFrom"]
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    # A directory mount, not subPath: the gateway re-reads a changed policies file without a restart.
    assert all("subPath" not in m for m in container["volumeMounts"])
    assert volumes["config"]["configMap"]["name"] == f"{FULLNAME}-config"
    assert volumes["policies"]["secret"]["secretName"] == f"{FULLNAME}-policies"


def test_default_config_map_is_empty(helm):
    config = only(objects(helm, "default"), "ConfigMap", f"{FULLNAME}-config")
    assert config["data"] == {}


def test_checksum_annotation_rolls_pods_only_when_config_changes(helm):
    def annotations(scenario: str) -> dict[str, str]:
        return only(objects(helm, scenario), "Deployment")["spec"]["template"]["metadata"]["annotations"]

    default = annotations("default")
    assert re.fullmatch(r"[0-9a-f]{64}", default["checksum/config"])
    assert re.fullmatch(r"[0-9a-f]{64}", default["checksum/secret"])
    assert annotations("config-changed")["checksum/config"] != default["checksum/config"]
    assert annotations("replicas-changed")["checksum/config"] == default["checksum/config"]
    assert annotations("full")["checksum/secret"] != default["checksum/secret"]


def test_existing_secrets_are_used_as_given(helm):
    docs = objects(helm, "external-secrets")
    assert "Secret" not in kinds(docs)
    container = gateway_container(docs)
    assert container["envFrom"] == [{"secretRef": {"name": "provider-keys"}}]
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    assert volumes["policies"]["secret"] == {
        "secretName": "tenants",
        "items": [{"key": "tenants.yaml", "path": "tenants.yaml"}],
    }
    env = env_values(container)
    assert env["GATEWAY_POLICIES_FILE"] == "/etc/audio-gateway/policies/tenants.yaml"
    assert env["GATEWAY_REDIS__URL"] == "rediss://:pw@redis.example.internal:6380/0"


def test_redis_from_a_secret(helm):
    env = env_of(gateway_container(objects(helm, "full")))
    assert env["GATEWAY_REDIS__URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "audio-gateway-redis", "key": "url"}
    }


@pytest.mark.parametrize("scenario", ["bitnami-redis", "bitnami-sentinel"])
def test_bitnami_redis_wiring(helm, scenario):
    env = env_of(gateway_container(objects(helm, scenario)))
    names = list(env)
    # Kubernetes expands $(VAR) only from variables declared earlier in the list.
    assert names.index("REDIS_PASSWORD") < names.index("GATEWAY_REDIS__URL")
    assert env["REDIS_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": f"{RELEASE}-redis", "key": "redis-password"}
    }
    # Standalone and Sentinel (with its master Service) both put the current master behind <name>-master.
    assert env["GATEWAY_REDIS__URL"]["value"] == (
        f"redis://:$(REDIS_PASSWORD)@{RELEASE}-redis-master.{NAMESPACE}.svc:6379/0"
    )


def test_no_redis_warns_in_the_notes(helm):
    assert "WARNING: no Redis is configured" in notes(helm, "default")
    assert "WARNING" not in notes(helm, "full")


def test_models_volume(helm):
    docs = objects(helm, "full")
    spec = pod_spec(docs)
    (init,) = spec["initContainers"]
    assert {"name": "models", "mountPath": "/models"} in init["volumeMounts"]
    models = [m for m in gateway_container(docs)["volumeMounts"] if m["name"] == "models"]
    assert models == [{"name": "models", "mountPath": "/models", "readOnly": True}]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == f"{FULLNAME}-models"
    claims = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PersistentVolumeClaim"}
    assert set(claims) == {f"{FULLNAME}-models", f"{FULLNAME}-spool"}
    # The spool may hold the only copy of ledger records: uninstalling the release keeps it.
    assert claims[f"{FULLNAME}-spool"]["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert volumes["spool"]["persistentVolumeClaim"]["claimName"] == f"{FULLNAME}-spool"

    docs = objects(helm, "models-by-init-container")
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    assert "emptyDir" in volumes["models"] and "PersistentVolumeClaim" not in kinds(docs)
    assert pod_spec(docs)["initContainers"][0]["image"] == "busybox:1.37"


def test_default_has_no_models_volume_and_an_empty_dir_spool(helm):
    spec = pod_spec(objects(helm, "default"))
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "models" not in volumes and "initContainers" not in spec
    assert "emptyDir" in volumes["spool"]


# -- networking, scaling, monitoring -----------------------------------------------------------------------


def test_optional_objects_appear_only_when_enabled(helm):
    default = objects(helm, "default")
    assert kinds(default) == {"Deployment", "Service", "ServiceAccount", "ConfigMap", "PodDisruptionBudget"}
    assert only(default, "Deployment")["spec"]["replicas"] == 2

    full = objects(helm, "full")
    assert kinds(full) == {
        "Deployment",
        "Service",
        "ServiceAccount",
        "ConfigMap",
        "Secret",
        "PersistentVolumeClaim",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ServiceMonitor",
        "Ingress",
    }
    # The HPA owns the replica count; a fixed one would be reset on every upgrade.
    assert "replicas" not in only(full, "Deployment")["spec"]
    hpa = only(full, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": FULLNAME}
    cpu = hpa["spec"]["metrics"][0]
    assert cpu["resource"]["name"] == "cpu" and cpu["resource"]["target"]["type"] == "Utilization"
    assert only(full, "PodDisruptionBudget")["spec"]["minAvailable"] == 2
    assert only(full, "ServiceMonitor")["metadata"]["labels"]["release"] == "kube-prometheus-stack"

    off = objects(helm, "pdb-and-metrics-off")
    assert "PodDisruptionBudget" not in kinds(off)
    assert [p["name"] for p in only(off, "Service")["spec"]["ports"]] == ["grpc", "http"]
    assert [p["name"] for p in gateway_container(off)["ports"]] == ["grpc", "http"]
    assert env_values(gateway_container(off))["GATEWAY_METRICS__ENABLED"] == "false"


@pytest.mark.parametrize("scenario", ["default", "headless", "full"])
def test_service_exposes_grpc_and_metrics(helm, scenario):
    docs = objects(helm, scenario)
    service = only(docs, "Service")
    container = gateway_container(docs)
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["grpc"]["port"] == 50051 and ports["grpc"]["targetPort"] == "grpc"
    assert ports["metrics"]["port"] == 9464 and ports["metrics"]["targetPort"] == "metrics"
    assert ports["http"]["port"] == 8080 and ports["http"]["targetPort"] == "http"
    assert container_ports == {"grpc": 50051, "http": 8080, "metrics": 9464}
    assert env_values(container)["GATEWAY_HTTP__PORT"] == "8080"
    assert env_values(container)["GATEWAY_METRICS__PORT"] == "9464"
    selector = service["spec"]["selector"]
    assert selector.items() <= only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"].items()
    # The helm test pod must never receive traffic.
    for pod in [d for d in docs if d["kind"] == "Pod"]:
        assert not selector.items() <= pod["metadata"]["labels"].items()
    if scenario == "default":
        assert "clusterIP" not in service["spec"]
        assert f"dns:///{FULLNAME}" not in notes(helm, scenario)
    else:
        assert service["spec"]["clusterIP"] == "None"
        assert f"dns:///{FULLNAME}.{NAMESPACE}.svc.cluster.local:50051" in notes(helm, scenario)
        assert "round_robin" in notes(helm, scenario)


def test_the_http_api_is_served_and_exposed_unless_turned_off(helm):
    off = objects(helm, "http-off")
    container = gateway_container(off)
    assert env_values(container)["GATEWAY_HTTP__ENABLED"] == "false"
    assert "GATEWAY_HTTP__PORT" not in env_values(container)
    assert "http" not in {p["name"] for p in container["ports"]}
    assert "http" not in {p["name"] for p in only(off, "Service")["spec"]["ports"]}
    assert "Ingress" not in kinds(off) and "OPENAI_BASE_URL" not in notes(helm, "http-off")
    text = notes(helm, "default")
    assert f"port-forward service/{FULLNAME} 8080:8080" in text
    assert "OPENAI_BASE_URL=http://localhost:8080/v1" in text
    assert f"http://{FULLNAME}.{NAMESPACE}.svc.cluster.local:8080/v1" in text
    # Probes stay on gRPC health, whichever doors are open.
    for scenario in ("default", "http-off"):
        probe = gateway_container(objects(helm, scenario))["readinessProbe"]
        assert probe["grpc"]["port"] == 50051 and "httpGet" not in probe


def test_ingress_routes_the_http_api(helm):
    full = only(objects(helm, "full"), "Ingress")
    assert full["apiVersion"] == "networking.k8s.io/v1" and full["spec"]["ingressClassName"] == "nginx"
    assert full["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "32m"
    assert full["metadata"]["labels"]["exposure"] == "public"
    assert full["spec"]["tls"] == [{"hosts": ["speech.example.com"], "secretName": "speech-example-com-tls"}]
    [rule] = full["spec"]["rules"]
    assert rule["host"] == "speech.example.com"
    assert [(p["path"], p["pathType"]) for p in rule["http"]["paths"]] == [
        ("/v1", "Prefix"),
        ("/openapi.json", "Exact"),
    ]
    backend = {"service": {"name": FULLNAME, "port": {"name": "http"}}}
    assert all(p["backend"] == backend for p in rule["http"]["paths"])
    assert "https://speech.example.com/v1" in notes(helm, "full")

    minimal = objects(helm, "ingress-minimal")
    ingress = only(minimal, "Ingress")
    assert "ingressClassName" not in ingress["spec"] and "tls" not in ingress["spec"]
    assert [p["path"] for p in ingress["spec"]["rules"][0]["http"]["paths"]] == ["/"]
    service_ports = {p["name"]: p for p in only(minimal, "Service")["spec"]["ports"]}
    assert service_ports["http"]["port"] == 9000
    assert {p["name"]: p["containerPort"] for p in gateway_container(minimal)["ports"]}["http"] == 9000
    assert "http://audio-gateway.example.com/v1" in notes(helm, "ingress-minimal")


def test_grafana_dashboard_config_map(helm):
    docs = objects(helm, "full")
    dashboard = only(docs, "ConfigMap", f"{FULLNAME}-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "Speech"}
    published = json.loads((ROOT / "docs" / "dashboards" / "audio-gateway.json").read_text())
    assert json.loads(dashboard["data"]["audio-gateway.json"]) == published
    assert not [d for d in objects(helm, "default") if d["metadata"]["name"].endswith("-dashboard")]


def test_notes_tell_how_to_call_the_service(helm):
    text = notes(helm, "default")
    assert f"port-forward service/{FULLNAME} 50051:50051" in text
    assert "grpcurl -plaintext localhost:50051 list" in text
    assert "grpc.health.v1.Health/Check" in text
    assert "audio-gateway health --wait" in text and "audio-gateway transcribe" in text
    assert f"{FULLNAME}.{NAMESPACE}.svc.cluster.local:50051" in text


# -- values the chart refuses ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_bad_values_fail_at_install(helm, case):
    _, fragment = REJECTED[case]
    result = helm["render"][f"rejected:{case}"]
    assert "error" in result, f"{case} rendered: the chart accepted values it should refuse"
    assert fragment in result["error"], result["error"]


# -- the dashboard copy (no Helm engine needed) -------------------------------------------------------------


def test_chart_dashboard_is_an_exact_copy_of_the_published_one():
    """A chart can only read files inside itself, so it carries a copy; this keeps the two from drifting."""
    published = ROOT / "docs" / "dashboards" / "audio-gateway.json"
    copy_in_chart = CHART / "dashboards" / "audio-gateway.json"
    assert copy_in_chart.read_bytes() == published.read_bytes(), (
        f"cp {published.relative_to(ROOT)} {copy_in_chart.relative_to(ROOT)}"
    )


if __name__ == "__main__":
    handler = {"sdkpy": _child_sdkpy, "helm_python": _child_helm_python}[sys.argv[1]]
    sys.stdout.write(json.dumps(handler(json.loads(Path(sys.argv[2]).read_text()))))
