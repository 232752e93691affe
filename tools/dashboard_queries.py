#!/usr/bin/env python3
"""Prints the PromQL of every panel target of a Grafana dashboard, one JSON object a line:

    {"panel": "<panel title>", "expr": "<PromQL>"}

in the dashboard's order, with Grafana's interval variables ($__rate_interval, $__interval,
$__range) replaced by --window and the dashboard's template variables by their values, so that
each line can be sent as is to Prometheus's /api/v1/query. Panels nested in collapsed rows are
included; targets that are hidden or have no expression are not.

Template variables resolve to --var NAME=VALUE when given, else to the variable's current value
(constant, custom and textbox variables). A variable left unresolved is an error: the output
would not be valid PromQL.

Usage: tools/dashboard_queries.py [--dashboard FILE] [--window 1m] [--var NAME=VALUE ...]
Exit status: 0, or 2 for a dashboard that cannot be read or a variable that cannot be resolved.
"""

import argparse
import json
import os
import re
import sys

DEFAULT_DASHBOARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                                 "deploy", "k8s", "grafana", "tandem-dashboard.json")

# Grafana's built-in interval variables, all standing for a duration in a range selector.
WINDOW_VARIABLES = ("__rate_interval", "__interval", "__range")

# $name, ${name}, ${name:format} and the deprecated [[name]].
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def panels_in_order(panels):
    """Yields every panel, the ones inside (collapsed) rows right after their row."""
    for panel in panels:
        yield panel
        yield from panels_in_order(panel.get("panels") or [])


def variable_values(dashboard, overrides):
    """Returns {name: value} for the dashboard's template variables (overrides win)."""
    values = {}
    for var in (dashboard.get("templating") or {}).get("list") or []:
        name = var.get("name")
        if not name or var.get("type") == "datasource":
            continue  # the data source is not part of the query text
        current = (var.get("current") or {}).get("value")
        if current is None and var.get("type") in ("constant", "textbox"):
            current = var.get("query")
        if isinstance(current, list):
            current = current[0] if len(current) == 1 else "(" + "|".join(current) + ")"
        if current == "$__all":
            current = var.get("allValue") or ".*"
        if current is not None:
            values[name] = str(current)
    values.update(overrides)
    return values


def resolve(expr, window, values):
    """Substitutes the variables of `expr`; raises KeyError naming one that has no value."""
    def substitute(match):
        name = match.group(1) or match.group(2) or match.group(3)
        if name in WINDOW_VARIABLES:
            return window
        if name in values:
            return values[name]
        raise KeyError(name)
    return VARIABLE.sub(substitute, expr)


def dashboard_queries(dashboard, window="1m", overrides=None):
    """Returns [{"panel": title, "expr": resolved PromQL}] for every visible target."""
    values = variable_values(dashboard, overrides or {})
    out = []
    for panel in panels_in_order(dashboard.get("panels") or []):
        for target in panel.get("targets") or []:
            expr = (target.get("expr") or "").strip()
            if not expr or target.get("hide"):
                continue
            out.append({"panel": panel.get("title", ""), "expr": resolve(expr, window, values)})
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dashboard", default=os.path.normpath(DEFAULT_DASHBOARD),
                        help="Grafana dashboard JSON (default: %(default)s)")
    parser.add_argument("--window", default="1m",
                        help="range for $__rate_interval, $__interval and $__range (default: %(default)s)")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                        help="value of a template variable (repeatable)")
    args = parser.parse_args(argv)

    if not re.fullmatch(r"(\d+(ms|s|m|h|d|w|y))+", args.window):
        parser.error(f"--window must be a Prometheus duration such as 30s or 1m, not '{args.window}'")
    overrides = {}
    for item in args.var:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--var takes NAME=VALUE, not '{item}'")
        overrides[name] = value

    try:
        with open(args.dashboard, encoding="utf-8") as f:
            dashboard = json.load(f)
    except (OSError, ValueError) as e:
        print(f"dashboard_queries: cannot read {args.dashboard}: {e}", file=sys.stderr)
        return 2
    try:
        queries = dashboard_queries(dashboard, args.window, overrides)
    except KeyError as e:
        print(f"dashboard_queries: template variable {e} has no value; pass --var {e.args[0]}=VALUE",
              file=sys.stderr)
        return 2
    for q in queries:
        print(json.dumps(q, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
