#!/usr/bin/env python3
"""Turns the runs scripts/bench recorded into the markdown table it prints.

Input: a TSV with one line per wrk run (round, conns, config, rps, p50_us, p99_us,
non2xx, errors, rss_kib, and optionally cpu_us: the proxy process's CPU time per request). Every ratio is taken inside one round (same conns), against the
`none` route, against a plain nginx reverse proxy (the bare-proxy anchor) and against the
upstream measured directly, and only then is the median over
rounds taken: machines are shared and noisy, so ratios measured side by side are the
result, absolute numbers only context.
"""

import statistics
import sys
from collections import defaultdict

LABELS = {
    "direct": "upstream direct (nginx)",
    "nginx_proxy": "nginx reverse proxy (2 workers, keep-alive upstream)",
    "none": 'gateway `auth = "none"`',
    "oidc": "gateway `openid-connect` (session cookie)",
    "api": "gateway `oauth20` (cached token)",
    "apache": "Apache + mod_auth_openidc (client-cookie)",
    "oidc_redis": "gateway `openid-connect`, with `[redis]` (cookie store)",
}
ORDER = ["direct", "nginx_proxy", "none", "oidc", "api", "oidc_redis", "apache"]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, pattern):
    return "–" if value is None else pattern.format(value)


def load(path):
    runs = []
    with open(path) as f:
        for line in f:
            if not line.strip() or line.startswith("round"):
                continue
            fields = line.rstrip("\n").split("\t")
            r, conns, config, rps, p50, p99, non2xx, errors, rss = fields[:9]
            cpu = fields[9] if len(fields) > 9 else "-"
            runs.append(
                {
                    "round": int(r),
                    "conns": int(conns),
                    "config": config,
                    "rps": float(rps),
                    "p50": float(p50) / 1000.0,
                    "p99": float(p99) / 1000.0,
                    "non2xx": int(non2xx),
                    "errors": int(errors),
                    "rss": int(rss) / 1024.0 if rss not in ("", "-") else None,
                    "cpu": float(cpu) if cpu not in ("", "-") else None,
                }
            )
    return runs


def summarise(runs):
    by = defaultdict(dict)  # (conns, round) -> config -> run
    for run in runs:
        by[(run["conns"], run["round"])][run["config"]] = run
    rows = {}
    for conns in sorted({r["conns"] for r in runs}):
        rounds = sorted(rd for (c, rd) in by if c == conns)
        for config in ORDER:
            per = [by[(conns, rd)][config] for rd in rounds if config in by[(conns, rd)]]
            if not per:
                continue

            def ratio(field, base):
                out = []
                for rd in rounds:
                    same = by[(conns, rd)]
                    if config in same and base in same and (same[base][field] or 0) > 0:
                        if same[config][field] is not None:
                            out.append(same[config][field] / same[base][field])
                return median(out)

            rows[(conns, config)] = {
                "rounds": len(per),
                "rps": median([r["rps"] for r in per]),
                "x_none": ratio("rps", "none"),
                "x_direct": ratio("rps", "direct"),
                "x_nginx": ratio("rps", "nginx_proxy"),
                "p99_x_nginx": ratio("p99", "nginx_proxy"),
                "cpu_x_nginx": ratio("cpu", "nginx_proxy"),
                "p50": median([r["p50"] for r in per]),
                "p99": median([r["p99"] for r in per]),
                "p99_x_none": ratio("p99", "none"),
                "non2xx_median": median([r["non2xx"] for r in per]),
                "non2xx_total": sum(r["non2xx"] for r in per),
                "errors_total": sum(r["errors"] for r in per),
                "rss_max": max((r["rss"] for r in per if r["rss"] is not None), default=None),
                "x_apache": ratio("rps", "apache"),
                "x_oidc": ratio("rps", "oidc"),
                "cpu": median([r["cpu"] for r in per]),
                "cpu_x_none": ratio("cpu", "none"),
            }
    return rows


def table(rows):
    out = [
        "| conns | configuration | req/s | × none | × nginx proxy | × direct | p50 ms | p99 ms | p99 × none "
        "| non-2xx (median / total) | socket errors | RSS max MiB | CPU µs/req | CPU × none | CPU × nginx proxy |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (conns, config), s in sorted(rows.items(), key=lambda kv: (kv[0][0], ORDER.index(kv[0][1]))):
        out.append(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} | {} | {} | {} |".format(
                conns,
                LABELS.get(config, config),
                fmt(s["rps"], "{:,.0f}"),
                fmt(s["x_none"], "{:.2f}"),
                fmt(s["x_nginx"], "{:.2f}"),
                fmt(s["x_direct"], "{:.2f}"),
                fmt(s["p50"], "{:.2f}"),
                fmt(s["p99"], "{:.2f}"),
                fmt(s["p99_x_none"], "{:.2f}"),
                fmt(s["non2xx_median"], "{:.0f}"),
                s["non2xx_total"],
                s["errors_total"],
                fmt(s["rss_max"], "{:.1f}"),
                fmt(s["cpu"], "{:.1f}"),
                fmt(s["cpu_x_none"], "{:.2f}"),
                fmt(s["cpu_x_nginx"], "{:.2f}"),
            )
        )
    return "\n".join(out)


def targets(rows):
    """The issue's targets, each judged on the medians of same-round ratios."""
    lines = ["| target | conns | measured | verdict |", "|---|---:|---:|---|"]

    def check(name, conns, value, ok, pattern="{:.2f}"):
        if value is None:
            return
        lines.append(
            "| {} | {} | {} | {} |".format(name, conns, pattern.format(value), "met" if ok(value) else "MISSED")
        )

    for conns in sorted({c for (c, _) in rows}):
        oidc, api = rows.get((conns, "oidc")), rows.get((conns, "api"))
        # Issue 17: the proxy core against a plain nginx reverse proxy, authentication
        # almost free. A throughput goal is also judged as a cost (CPU per request), which
        # a shared machine moves less: 0.90 × the throughput is 1/0.90 × the CPU.
        none = rows.get((conns, "none"))
        if none and none.get("x_nginx") is not None:
            check('`auth = "none"` ≥ 0.90 × nginx proxy req/s', conns, none["x_nginx"], lambda v: v >= 0.90)
            if none.get("cpu_x_nginx") is not None:
                check('`auth = "none"` CPU/req ≤ 1.10 × nginx proxy', conns, none["cpu_x_nginx"], lambda v: v <= 1.10)
        if oidc:
            check("openid-connect ≥ 0.90 × none req/s", conns, oidc["x_none"], lambda v: v >= 0.90)
            if oidc.get("cpu_x_none") is not None:
                check("openid-connect CPU/req ≤ 1.11 × none (same goal, as cost)", conns, oidc["cpu_x_none"], lambda v: v <= 1 / 0.90)
            check("openid-connect ≥ 5 × Apache + mod_auth_openidc req/s", conns, oidc["x_apache"], lambda v: v >= 5)
            check("openid-connect p99 ≤ 1.5 × nginx proxy p99", conns, oidc["p99_x_nginx"], lambda v: v <= 1.5)
            check("openid-connect p99 ≤ 1.5 × none p99", conns, oidc["p99_x_none"], lambda v: v <= 1.5)
        if api:
            check("oauth20 (cached) ≥ 0.95 × none req/s", conns, api["x_none"], lambda v: v >= 0.95)
            if api.get("cpu_x_none") is not None:
                check("oauth20 CPU/req ≤ 1.05 × none (same goal, as cost)", conns, api["cpu_x_none"], lambda v: v <= 1 / 0.95)
        redis = rows.get((conns, "oidc_redis"))
        if redis:
            check("openid-connect with [redis] ≥ 0.95 × without req/s", conns, redis["x_oidc"], lambda v: v >= 0.95)
        gw_rss = [rows[(conns, c)]["rss_max"] for c in ("none", "oidc", "api") if (conns, c) in rows]
        gw_rss = [r for r in gw_rss if r is not None]
        if gw_rss and conns == 256:
            check("gateway RSS ≤ 64 MiB under 256 connections", conns, max(gw_rss), lambda v: v <= 64, "{:.1f} MiB")
        non2xx = sum(rows[(conns, c)]["non2xx_total"] for c in ("none", "oidc", "api", "oidc_redis") if (conns, c) in rows)
        check("zero non-2xx through the gateway", conns, non2xx, lambda v: v == 0, "{:.0f}")
    return "\n".join(lines)


def main():
    rows = summarise(load(sys.argv[1]))
    print(table(rows))
    print()
    print(targets(rows))


if __name__ == "__main__":
    main()
