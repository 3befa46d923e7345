#!/usr/bin/env bash
# Validates the monitoring stack's configuration files:
#   prometheus/prometheus.yml + every rule file in prometheus/rules/ (promtool)
#   alertmanager/alertmanager.yml                                      (amtool)
#   docker-compose.monitoring.yml                                      (docker-compose / docker compose)
#   grafana/provisioning/**/*.yml parse as YAML                        (python3 + PyYAML)
# Needs: promtool + amtool (Debian: apt-get install -y prometheus
# prometheus-alertmanager), docker-compose (apt-get install -y docker-compose;
# no Docker engine needed). Exit 1 on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# prometheus.yml loads rules from the container path /etc/prometheus/rules/*.yml,
# which does not exist here (promtool accepts a glob that matches nothing). Check
# a copy pointed at this checkout's rules/ so the rule files are checked as well.
sed "s#/etc/prometheus/rules/#$PWD/prometheus/rules/#" prometheus/prometheus.yml > "$tmp/prometheus.yml"
grep -q "$PWD/prometheus/rules/" "$tmp/prometheus.yml" || {
  echo "prometheus.yml no longer reads /etc/prometheus/rules/: update check-configs.sh" >&2
  exit 1
}
promtool check config "$tmp/prometheus.yml"

amtool check-config alertmanager/alertmanager.yml

if command -v docker-compose >/dev/null; then
  docker-compose -f docker-compose.monitoring.yml config -q
elif docker compose version >/dev/null 2>&1; then
  docker compose -f docker-compose.monitoring.yml config -q
else
  echo "neither docker-compose nor 'docker compose' is installed" >&2
  exit 1
fi
echo "docker-compose.monitoring.yml: OK"

"${HOMECONSOLE_PYTHON:-python3}" - grafana/provisioning/*/*.yml <<'PY'
import sys, yaml
for path in sys.argv[1:]:
    with open(path) as f:
        doc = yaml.safe_load(f)
    assert isinstance(doc, dict) and doc.get("apiVersion") == 1, f"{path}: expected apiVersion: 1"
    print(f"{path}: OK")
PY
