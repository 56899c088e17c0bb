#!/usr/bin/env bash
# Validate relbank's Prometheus files: the scrape config, the rules, and the rule unit tests.
#   deploy/prometheus/check.sh        (from anywhere; exits non-zero on any failure)
# Needs promtool; when it is not on PATH, installs Debian's `prometheus` package, which ships it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if ! command -v promtool >/dev/null 2>&1; then
    echo "check.sh: promtool not found; installing Debian's prometheus package" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    command -v promtool >/dev/null 2>&1 || { echo "check.sh: promtool still missing" >&2; exit 1; }
fi

cd "$here"
promtool --version 2>&1 | head -n 1
promtool check config prometheus.yml
promtool check rules --lint=all --lint-fatal rules.yml
promtool test rules rules_test.yml

# The Grafana dashboard's queries must parse too: check them as recording rules.
dashboard="$here/../grafana/relbank.json"
if [ -f "$dashboard" ]; then
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    python3 - "$dashboard" >"$tmp/dashboard_rules.yml" <<'PY'
import json, sys
exprs = []
def walk(panels):
    for panel in panels:
        exprs.extend(t["expr"] for t in panel.get("targets", []) if t.get("expr"))
        walk(panel.get("panels", []))
walk(json.load(open(sys.argv[1]))["panels"])
print("groups:\n  - name: dashboard\n    rules:")
for i, expr in enumerate(exprs):
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
    print(f"      - record: dashboard:query_{i}\n        expr: {json.dumps(expr)}")
PY
    echo "Checking the dashboard queries of $(basename "$dashboard")"
    promtool check rules "$tmp/dashboard_rules.yml"
fi

echo "check.sh: prometheus config, rules, rule tests and dashboard queries OK"
