#!/usr/bin/env bash
# Type-checks every deploy/grafana/dashboards/*.json against @grafana/schema
# and checks that dashboard_queries.txt lists exactly the dashboards' queries.
#
#   cd deploy/check && npm ci && ./check-dashboards.sh
#
# For each dashboard, gen/<name>.ts is generated:
#   import { Dashboard } from '@grafana/schema';
#   const d: Json<Dashboard> = <json>;          // whole dashboard
#   const panel_N: PanelOf<'<type>'> = <panel>; // each panel, with its plugin's options type
# (Json<> only lets string enums be written as their string values; see
# schema-json.ts) and tsc --strict must accept them. Exit 1 on any error.
set -euo pipefail
cd "$(dirname "$0")"
dashboards=(../grafana/dashboards/*.json)
if [[ ! -e ${dashboards[0]} ]]; then
  echo "no dashboards in ../grafana/dashboards" >&2
  exit 1
fi
if [[ ! -d node_modules/@grafana/schema || ! -d node_modules/typescript ]]; then
  echo "missing node_modules: run 'npm ci' in $(pwd)" >&2
  exit 1
fi

rm -rf gen
mkdir gen
node gen-dashboard-ts.mjs gen "${dashboards[@]}"
echo "type-checking ${#dashboards[@]} dashboard(s) with @grafana/schema $(node -p 'require("@grafana/schema/package.json").version')"
npx --no-install tsc --noEmit --strict --skipLibCheck --module esnext --moduleResolution bundler \
  --target es2022 gen/*.ts
echo "dashboards: OK"

# The query list another test parses must match the dashboards.
if ! diff -u dashboard_queries.txt <(python3 extract_queries.py "${dashboards[@]}"); then
  echo "dashboard_queries.txt is stale: python3 extract_queries.py > dashboard_queries.txt" >&2
  exit 1
fi
echo "dashboard_queries.txt: OK"
