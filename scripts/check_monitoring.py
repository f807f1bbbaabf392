#!/usr/bin/env python3
"""The logic behind scripts/check-monitoring.sh (Python 3 standard library only).

  traffic setup|burst|reads --base URL --state FILE
      Drives Coop's API through nginx: a co-op, a log-in, families enrolled,
      read, listed and updated (setup); many concurrent writes and lists
      (burst); reads of known families (reads).
  wait-scrapes --prometheus URL [--scrapes 2]
      Waits until every active target has been scraped successfully that many
      more times, and fails naming any target that is down.
  check --prometheus URL --dashboard FILE --rule-file FILE... [--query EXPR...]
      Evaluates every panel query and template-variable query of the dashboard
      and every recording and alerting rule loaded in Prometheus through
      /api/v1/query, and fails naming each query that errors or that names a
      metric Prometheus does not have (/api/v1/label/__name__/values).
  alerts --prometheus URL
      Lists the alerts pending or firing (for information).
  selftest --prometheus URL --dashboard FILE
      Proves `check` can fail: a query with an unknown metric and one with a
      syntax error must each be reported, and the metric-name extraction must
      give the expected names on a table of expressions.
"""

import argparse
import concurrent.futures
import http.cookiejar
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

# ----------------------------------------------------------------------------
# PromQL: the metric names an expression reads.

TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<duration>\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*(?![\w.]))
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^(){}\[\],=<>@])
    """,
    re.VERBOSE,
)

# Followed by a parenthesised list of label names.
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = GROUPING | {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}
AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
    "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}


class PromQLSyntax(ValueError):
    pass


def tokenize(expr):
    tokens, pos = [], 0
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m:
            raise PromQLSyntax(f"unexpected {expr[pos:pos + 10]!r} at offset {pos}")
        pos = m.end()
        kind = m.lastgroup
        if kind not in ("ws", "comment"):
            tokens.append((kind, m.group()))
    return tokens


def metric_names(expr):
    """The metric names an expression selects, in order of appearance.

    Label names (inside {...} and in by/without/on/ignoring/group_* lists),
    functions, aggregations, keywords, strings, numbers and durations are not
    metric names; {__name__="x"} is the name x.
    """
    tokens = tokenize(expr)
    names = []
    i = 0

    def skip_to(closing, opening, start):
        depth, j = 0, start
        while j < len(tokens):
            if tokens[j] == ("op", opening):
                depth += 1
            elif tokens[j] == ("op", closing):
                depth -= 1
                if depth == 0:
                    return j
            j += 1
        raise PromQLSyntax(f"unbalanced {opening!r}")

    while i < len(tokens):
        kind, text = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else (None, None)
        if (kind, text) == ("op", "["):
            i = skip_to("]", "[", i) + 1
            continue
        if (kind, text) == ("op", "{"):
            end = skip_to("}", "{", i)
            inner = tokens[i + 1:end]
            for k in range(len(inner) - 2):
                if inner[k] == ("ident", "__name__") and inner[k + 1] == ("op", "=") \
                        and inner[k + 2][0] == "string":
                    names.append(inner[k + 2][1][1:-1])
            i = end + 1
            continue
        if kind == "ident":
            low = text.lower()
            if nxt == ("op", "("):
                if low in GROUPING:
                    i = skip_to(")", "(", i + 1) + 1
                    continue
                i += 1  # a function or an aggregation: its arguments follow
                continue
            if low in AGGREGATIONS and nxt[0] == "ident" and nxt[1].lower() in ("by", "without"):
                i += 1
                continue
            if low in KEYWORDS:
                i += 1
                if low == "offset":  # offset [-]duration
                    if i < len(tokens) and tokens[i] == ("op", "-"):
                        i += 1
                    i += 1
                continue
            names.append(text)
        i += 1
    return names


# Grafana's template variables, as the dashboard uses them, and what stands in
# for each during the check.
def substitute(expr, variables):
    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in variables:
            raise PromQLSyntax(f"unknown template variable ${name}")
        return variables[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", repl, expr)


GRAFANA_VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "30s",
    "__range": "5m",
    "instance": ".+",
    "datasource": "prometheus",
}


# ----------------------------------------------------------------------------
# HTTP helpers

def http_json(url, data=None, timeout=10):
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as err:
        # Prometheus answers a bad query with 400 and a JSON error body.
        try:
            return json.load(err)
        except ValueError:
            raise err from None


# ----------------------------------------------------------------------------
# check

def dashboard_queries(path):
    """(where, expr) for every panel target and every query variable."""
    with open(path) as f:
        dash = json.load(f)
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((f"dashboard panel {p.get('title')!r} target {t.get('refId')}", t["expr"]))
            walk(p.get("panels", []))

    walk(dash.get("panels", []))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if not q:
            continue
        m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", q, re.S)
        if m:
            q = m.group(1)  # the series selector; the label is not a query
        elif re.fullmatch(r"\s*label_values\(\s*\w+\s*\)\s*", q):
            continue  # every series: nothing to check
        elif re.match(r"\s*(label_names|metrics|query_result)\(", q):
            q = re.sub(r"^\s*query_result\((.*)\)\s*$", r"\1", q, flags=re.S)
        out.append((f"dashboard variable ${v.get('name')}", q))
    return out


def dashboard_structure(path):
    """What Grafana needs of the dashboard model beyond its queries."""
    with open(path) as f:
        dash = json.load(f)
    problems, ids = [], set()
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problems.append("no `datasource` variable of type datasource for Prometheus")
    if "instance" not in variables:
        problems.append("no `instance` variable")

    def walk(panels):
        for p in panels:
            title = p.get("title")
            if p.get("id") in ids:
                problems.append(f"panel {title!r}: id {p.get('id')} used twice")
            ids.add(p.get("id"))
            g = p.get("gridPos", {})
            if not all(k in g for k in "hwxy") or g["x"] + g["w"] > 24:
                problems.append(f"panel {title!r}: bad gridPos {g}")
            if p.get("type") != "row":
                if (p.get("datasource") or {}).get("uid") != "${datasource}":
                    problems.append(f"panel {title!r}: datasource is not ${{datasource}}")
                for t in p.get("targets", []):
                    if (t.get("datasource") or {}).get("uid") != "${datasource}":
                        problems.append(f"panel {title!r} target {t.get('refId')}: datasource is not ${{datasource}}")
                if not p.get("targets"):
                    problems.append(f"panel {title!r}: no query")
            walk(p.get("panels", []))

    walk(dash.get("panels", []))
    return [f"FAIL  dashboard: {x}" for x in problems]


def loaded_rules(prom):
    answer = http_json(f"{prom}/api/v1/rules")
    if answer.get("status") != "success":
        raise SystemExit(f"check: /api/v1/rules failed: {answer}")
    rules = []
    for group in answer["data"]["groups"]:
        for r in group["rules"]:
            rules.append((group["name"], r))
    return rules


def rule_count_in_files(paths):
    count = 0
    for path in paths:
        with open(path) as f:
            count += len(re.findall(r"^\s*-\s*(?:record|alert):", f.read(), re.M))
    return count


def wait_rules_evaluated(prom, timeout=30):
    deadline = time.time() + timeout
    while True:
        rules = loaded_rules(prom)
        pending = [r["name"] for _, r in rules if r.get("health") == "unknown"]
        if not pending or time.time() > deadline:
            return rules
        time.sleep(0.5)


def evaluate(prom, where, expr, known, variables):
    """Returns (ok, message)."""
    try:
        q = substitute(expr, variables)
        names = metric_names(q)
    except PromQLSyntax as err:
        return False, f"FAIL  {where}: {err}\n      {expr}"
    answer = http_json(f"{prom}/api/v1/query", {"query": q, "time": f"{time.time():.3f}"})
    if answer.get("status") != "success":
        return False, (f"FAIL  {where}: Prometheus: {answer.get('errorType')}: {answer.get('error')}\n"
                       f"      {q}")
    missing = sorted({n for n in names if n not in known})
    if missing:
        return False, (f"FAIL  {where}: no such metric in Prometheus: {', '.join(missing)}\n"
                       f"      {q}")
    if not names:
        return False, f"FAIL  {where}: names no metric at all\n      {q}"
    result = answer["data"]["result"]
    n = len(result) if isinstance(result, list) else 1
    return True, f"ok    {where}: {n} series [{', '.join(dict.fromkeys(names))}]"


def run_check(prom, dashboard, rule_files, extra, quiet=False, structure=True):
    known = set(http_json(f"{prom}/api/v1/label/__name__/values")["data"])
    failures, total, empty = [], 0, 0
    lines, empty_data = [], []

    queries = dashboard_queries(dashboard) if dashboard else []
    if dashboard and structure:
        failures.extend(dashboard_structure(dashboard))
    if rule_files:
        expected = rule_count_in_files(rule_files)
        rules = wait_rules_evaluated(prom)
        if len(rules) != expected:
            failures.append(f"FAIL  rules: the files hold {expected} rules, Prometheus loaded {len(rules)}")
        for group, r in rules:
            kind = "alert" if r["type"] == "alerting" else "recording rule"
            where = f"{kind} {r['name']} ({group})"
            if r.get("health") != "ok":
                failures.append(f"FAIL  {where}: health {r.get('health')}: {r.get('lastError', '')}")
            queries.append((where, r["query"]))
    for i, q in enumerate(extra):
        queries.append((f"extra query {i + 1}", q))

    for where, expr in queries:
        total += 1
        ok, msg = evaluate(prom, where, expr, known, GRAFANA_VARIABLES)
        if ok and msg.split(": ")[-1].startswith("0 series"):
            empty += 1
            if not where.startswith("alert "):
                empty_data.append(where)
        lines.append(msg)
        if not ok:
            failures.append(msg)
    if not quiet:
        for line in lines:
            print(line)
        for f in failures:
            if f not in lines:
                print(f)
        for where in empty_data:
            print(f"note: {where} returned no series (valid, but nothing to show in this run)")
    passed = total - sum(1 for line in lines if line.startswith("FAIL"))
    return failures, total, passed, empty


def cmd_check(args):
    failures, total, passed, empty = run_check(
        args.prometheus, args.dashboard, args.rule_file, args.query)
    print(f"check: {total} queries against {len(set(http_json(args.prometheus + '/api/v1/label/__name__/values')['data']))} "
          f"metric names; {total - empty} returned series, {empty} returned none (alerts not firing, or no data)")
    print(f"check: {passed} passed, {len(failures)} failed")
    if failures:
        print("check: FAILED:", file=sys.stderr)
        for f in failures:
            print("  " + f.splitlines()[0], file=sys.stderr)
        return 1
    return 0


# ----------------------------------------------------------------------------
# selftest

EXTRACTION_CASES = [
    ('sum by (instance) (rate(http_requests_total{instance=~".+", route!~"/health|/ready"}[1m]))',
     ["http_requests_total"]),
    ('histogram_quantile(0.95, sum by (job, le) (rate(http_request_duration_seconds_bucket[5m])))',
     ["http_request_duration_seconds_bucket"]),
    ('sum by (endpoint) (rate(db_reads_total[1m])) / ignoring (endpoint) group_left () sum(rate(db_reads_total[1m]))',
     ["db_reads_total", "db_reads_total"]),
    ('max by (breaker) (breaker_state == 1)', ["breaker_state"]),
    ('up{job=~"coop-serve|coop-worker"} == 0', ["up"]),
    ('sum without (instance) (x:y:rate5m) > bool 0 and on (job) z offset 5m', ["x:y:rate5m", "z"]),
    ('{__name__="jobs", state="dead"}', ["jobs"]),
    ('max_over_time(jobs_oldest_ready_age_seconds[10m:1m]) > 1e3', ["jobs_oldest_ready_age_seconds"]),
    ('label_replace(cache_subscribed, "x", "$1", "instance", "(.*):.*")', ["cache_subscribed"]),
    ('count(max by (kind) (jobs))', ["jobs"]),
]


def cmd_selftest(args):
    failed = 0
    for expr, want in EXTRACTION_CASES:
        got = metric_names(expr)
        if got != want:
            print(f"selftest: FAIL extraction of {expr!r}: got {got}, want {want}")
            failed += 1
    print(f"selftest: metric-name extraction, {len(EXTRACTION_CASES) - failed} of {len(EXTRACTION_CASES)} cases right")

    # A known metric passes, so the failures below are the check's own.
    good, *_ = run_check(args.prometheus, None, [], ["sum(rate(http_requests_total[1m]))"], quiet=True)
    if good:
        print(f"selftest: FAIL a query on a known metric was rejected: {good}")
        failed += 1
    for label, query, needle in [
        ("an unknown metric", "sum(rate(coop_no_such_metric_total[1m]))", "no such metric"),
        ("a syntax error", "sum(rate(http_requests_total[1m])", "Prometheus: bad_data"),
        ("an unknown template variable", "rate(http_requests_total[$__no_such_variable])", "unknown template variable"),
    ]:
        failures, *_ = run_check(args.prometheus, None, [], [query], quiet=True)
        if failures and needle in failures[0]:
            print(f"selftest: ok, {label} is reported: {failures[0].splitlines()[0]}")
        else:
            print(f"selftest: FAIL {label} ({query}) was not reported as expected: {failures}")
            failed += 1
    # The same through a dashboard: a copy with one more panel on an unknown metric.
    with open(args.dashboard) as f:
        dash = json.load(f)
    dash["panels"].append({"type": "timeseries", "title": "selftest: invented metric", "id": 9999,
                           "targets": [{"refId": "A", "expr": 'sum(rate(coop_invented_total{instance=~"$instance"}[$__rate_interval]))'}]})
    broken = args.dashboard + ".selftest.json" if args.scratch is None else args.scratch
    with open(broken, "w") as f:
        json.dump(dash, f)
    failures, *_ = run_check(args.prometheus, broken, [], [], quiet=True, structure=False)
    if len(failures) == 1 and "coop_invented_total" in failures[0]:
        print(f"selftest: ok, a dashboard panel on an unknown metric is reported: {failures[0].splitlines()[0]}")
    else:
        print(f"selftest: FAIL the broken dashboard gave {len(failures)} failures, expected exactly the invented metric: {failures}")
        failed += 1
    print("selftest: " + ("passed" if not failed else f"{failed} FAILED"))
    return 1 if failed else 0


# ----------------------------------------------------------------------------
# wait-scrapes

def cmd_wait_scrapes(args):
    seen = {}
    deadline = time.time() + args.timeout
    while True:
        targets = http_json(f"{args.prometheus}/api/v1/targets?state=active")["data"]["activeTargets"]
        done = bool(targets)
        for t in targets:
            key = (t["labels"].get("job"), t["labels"].get("instance"))
            if t["health"] == "up":
                seen.setdefault(key, set()).add(t["lastScrape"])
            if len(seen.get(key, ())) < args.scrapes + 1:  # +1: the scrape already there when we began
                done = False
        if done:
            for t in targets:
                print(f"scraped: {t['labels'].get('job'):<13} {t['labels'].get('instance')}  up")
            return 0
        if time.time() > deadline:
            for t in targets:
                print(f"target {t['labels'].get('job')} {t['labels'].get('instance')}: {t['health']} "
                      f"{t.get('lastError', '')}", file=sys.stderr)
            print(f"wait-scrapes: not every target was scraped {args.scrapes} times in {args.timeout} s", file=sys.stderr)
            return 1
        time.sleep(0.25)


# ----------------------------------------------------------------------------
# alerts

def cmd_alerts(args):
    alerts = http_json(f"{args.prometheus}/api/v1/alerts")["data"]["alerts"]
    for a in sorted(alerts, key=lambda a: (a["labels"]["alertname"], sorted(a["labels"].items()))):
        labels = ", ".join(f"{k}={v}" for k, v in sorted(a["labels"].items())
                           if k not in ("alertname", "severity"))
        print(f"  {a['state']:<8} {a['labels']['alertname']:<26} {a['labels'].get('severity', ''):<9} {labels}")
    print(f"  ({len(alerts)} in all)")
    return 0


# ----------------------------------------------------------------------------
# traffic

class Client:
    def __init__(self, base, jar=None):
        self.base = base.rstrip("/")
        self.jar = jar if jar is not None else http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def call(self, method, path, body=None, headers=None, expect=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with self.opener.open(req, timeout=30) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        if expect is not None and status not in expect:
            raise SystemExit(f"traffic: {method} {path} answered {status}, expected {expect}: {raw[:300]!r}")
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw


def save_state(path, client, state):
    state["cookies"] = [{"name": c.name, "value": c.value, "domain": c.domain, "path": c.path}
                        for c in client.jar]
    with open(path, "w") as f:
        json.dump(state, f)


def load_state(path, base):
    with open(path) as f:
        state = json.load(f)
    client = Client(base)
    for c in state["cookies"]:
        client.jar.set_cookie(http.cookiejar.Cookie(
            0, c["name"], c["value"], None, False, c["domain"], True, c["domain"].startswith("."),
            c["path"], True, False, None, False, None, None, {}))
    return client, state


def traffic_setup(args):
    c = Client(args.base)
    stamp = int(time.time() * 1000)
    email = f"coordinator-{stamp}@example.org"
    password = "monitoring-check-password"
    c.call("POST", "/api/v1/coops", {"name": "Monitoring Check Co-op",
                                     "coordinator": {"name": "Ada Check", "email": email, "password": password}},
           expect={202})
    c.call("POST", "/api/v1/auth/login", {"email": email, "password": password}, expect={200})
    c.call("GET", "/api/v1/auth/me", expect={200})
    # Emails to the founder are not held while the co-op is unconfirmed (its
    # families' are): password resets reach the failing SMTP relay, so the
    # breaker opens (two failures) and, as resets keep coming during the
    # second it stays open, rejects calls.
    for _ in range(8):
        c.call("POST", "/api/v1/auth/password-reset", {"email": email}, expect={202})
        time.sleep(0.15)
    families = []
    for i in range(args.families):
        _, fam = c.call("POST", "/api/v1/families",
                        {"family_name": f"Family {i}", "email": f"family{i}-{stamp}@example.org"},
                        expect={201})
        families.append(fam["family_id"])
    statuses = {}
    for _ in range(3):
        for fid in families:
            s, _ = c.call("GET", f"/api/v1/families/{fid}", expect={200})
            statuses[s] = statuses.get(s, 0) + 1
        c.call("GET", "/api/v1/families?limit=50", expect={200})
    # An update: its invalidation goes to every instance.
    _, fam = c.call("GET", f"/api/v1/families/{families[0]}", expect={200})
    c.call("PUT", f"/api/v1/families/{families[0]}",
           {"family_name": "Family 0, renamed", "email": fam["email"]},
           headers={"If-Match": str(fam["version"])}, expect={200})
    c.call("GET", f"/api/v1/families/{families[0]}", expect={200})
    c.call("GET", f"/api/v1/families/{families[0]}/calendar.ics", expect={200})
    c.call("GET", "/api/v1/no-such-route", expect={404})
    save_state(args.state, c, {"families": families, "email": email})
    print(f"traffic: a co-op, a coordinator logged in, {len(families)} families enrolled, "
          f"each read 3 times, listed, one updated")


def traffic_burst(args):
    c, state = load_state(args.state, args.base)
    stamp = int(time.time() * 1000)

    def one(i):
        if i % 2:
            s, _ = c.call("POST", "/api/v1/families",
                          {"family_name": f"Burst {i}", "email": f"burst{i}-{stamp}@example.org"})
        else:
            s, _ = c.call("GET", "/api/v1/families?limit=200")
        return s

    with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
        statuses = list(pool.map(one, range(args.requests)))
    counts = {s: statuses.count(s) for s in sorted(set(statuses))}
    print(f"traffic: burst of {args.requests} requests, {args.concurrency} at a time: "
          + ", ".join(f"{n} × {s}" for s, n in counts.items()))


def traffic_reads(args):
    c, state = load_state(args.state, args.base)
    counts = {}
    for _ in range(args.rounds):
        for fid in state["families"]:
            s, _ = c.call("GET", f"/api/v1/families/{fid}")
            counts[s] = counts.get(s, 0) + 1
    print(f"traffic: {sum(counts.values())} reads of known families: "
          + ", ".join(f"{n} × {s}" for s, n in sorted(counts.items())))
    if set(counts) - {200}:
        print("traffic: warning: some reads of existing families did not answer 200", file=sys.stderr)
    return 0


def cmd_traffic(args):
    return {"setup": traffic_setup, "burst": traffic_burst, "reads": traffic_reads}[args.phase](args) or 0


# ----------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    t = sub.add_parser("traffic")
    t.add_argument("phase", choices=["setup", "burst", "reads"])
    t.add_argument("--base", required=True)
    t.add_argument("--state", required=True)
    t.add_argument("--families", type=int, default=8)
    t.add_argument("--requests", type=int, default=120)
    t.add_argument("--concurrency", type=int, default=40)
    t.add_argument("--rounds", type=int, default=2)

    w = sub.add_parser("wait-scrapes")
    w.add_argument("--prometheus", required=True)
    w.add_argument("--scrapes", type=int, default=2)
    w.add_argument("--timeout", type=float, default=60)

    c = sub.add_parser("check")
    c.add_argument("--prometheus", required=True)
    c.add_argument("--dashboard")
    c.add_argument("--rule-file", action="append", default=[])
    c.add_argument("--query", action="append", default=[])

    s = sub.add_parser("selftest")
    s.add_argument("--prometheus", required=True)
    s.add_argument("--dashboard", required=True)
    s.add_argument("--scratch", help="where to write the broken dashboard copy")

    a = sub.add_parser("alerts")
    a.add_argument("--prometheus", required=True)

    args = ap.parse_args()
    handler = {"traffic": cmd_traffic, "wait-scrapes": cmd_wait_scrapes, "check": cmd_check,
               "selftest": cmd_selftest, "alerts": cmd_alerts}[args.command]
    sys.exit(handler(args))


if __name__ == "__main__":
    main()
