#!/usr/bin/env python3
"""Print every PromQL expression used in the Grafana dashboards, one per line.

    python3 extract_queries.py [DASHBOARD.json ...]   (default: ../grafana/dashboards/*.json)

Order: dashboards by file name; in each, the template variables' queries,
then every panel's targets (rows' nested panels included) in order. Each
expression is printed once (first occurrence). Grafana variables
($instance, $plugin, $service, $__rate_interval, $__interval, ...) are left
as they are. Variable queries contribute the PromQL inside them:
label_values(SELECTOR, label) -> SELECTOR, query_result(EXPR) -> EXPR;
label_values(label) has none. Newlines inside an expression become spaces.
dashboard_queries.txt must equal this output (check-dashboards.sh diffs them).
Standard library only.
"""
import glob
import json
import os
import re
import sys


def variable_expr(query):
    if isinstance(query, dict):
        query = query.get("query", "")
    if not isinstance(query, str):
        return None
    q = query.strip()
    m = re.fullmatch(r"label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)", q, re.S)
    if m:
        return m.group(1).strip()
    m = re.fullmatch(r"query_result\((.*)\)", q, re.S)
    if m:
        return m.group(1).strip()
    if re.fullmatch(r"label_values\(\s*[A-Za-z_][A-Za-z0-9_]*\s*\)|label_names\(.*\)|metrics\(.*\)", q, re.S):
        return None
    return q or None


def panels(items):
    for p in items or []:
        yield p
        if p.get("type") == "row":
            yield from panels(p.get("panels"))


def expressions(dashboard):
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query" and (var.get("datasource") or {}).get("type", "prometheus") == "prometheus":
            expr = variable_expr(var.get("query"))
            if expr:
                yield expr
    for panel in panels(dashboard.get("panels")):
        for target in panel.get("targets") or []:
            expr = target.get("expr")
            if isinstance(expr, str) and expr.strip() and not target.get("hide"):
                yield expr


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    files = argv or sorted(glob.glob(os.path.join(here, "..", "grafana", "dashboards", "*.json")))
    seen = set()
    for path in sorted(files, key=os.path.basename):
        with open(path, encoding="utf-8") as f:
            dashboard = json.load(f)
        for expr in expressions(dashboard):
            line = " ".join(expr.split())
            if line not in seen:
                seen.add(line)
                print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
