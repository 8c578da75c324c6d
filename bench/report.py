#!/usr/bin/env python3
"""Helpers for bench/run.sh (standard library only).

Subcommands:
  freeport                      print a free TCP port on 127.0.0.1
  lsn LSN                       print an LSN ("16/B374D848") as a byte position
  wait ...                      poll capi-cdc's /metrics until the checkpoint
                                reaches an LSN and N events are delivered
  clear URL                     DELETE the sandbox's Meta events
  sandbox-check ...             read the sandbox back once: counts per id
                                range, and commit → delivery latency
  render RESULTS                print the Markdown results table
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import sys
import time
import urllib.error
import urllib.request


def parse_lsn(text: str) -> int:
    hi, lo = text.strip().split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def fmt_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def scrape(url: str) -> dict[str, int]:
    """The two gauges/counters we need from the Prometheus text."""
    out: dict[str, int] = {}
    for line in http_get(url, timeout=2.0).decode().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        out[name] = int(float(value))
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def cmd_freeport(_args: argparse.Namespace) -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])
    return 0


def cmd_lsn(args: argparse.Namespace) -> int:
    print(parse_lsn(args.lsn))
    return 0


def cmd_wait(args: argparse.Namespace) -> int:
    """Polls /metrics every --interval s. Prints "checkpoint_s delivered_s"
    (seconds since --t0) once both conditions held. Exits 1 on timeout or
    when the process dies, saying what it last saw."""
    url = f"http://{args.admin}/metrics"
    target = parse_lsn(args.lsn)
    deadline = time.time() + args.timeout
    t_cp = t_del = None
    last: dict[str, int] = {}
    while True:
        now = time.time()
        try:
            last = scrape(url)
        except (OSError, urllib.error.URLError, ValueError):
            pass  # not listening yet
        cp = last.get("capi_cdc_checkpoint_lsn", 0)
        # Delivered to Meta, summed over the event kinds' series.
        delivered = sum(v for k, v in last.items() if k.startswith('capi_cdc_delivered_total{destination="meta"'))
        if t_cp is None and cp >= target:
            t_cp = now - args.t0
        if t_del is None and delivered >= args.delivered:
            t_del = now - args.t0
        if t_cp is not None and t_del is not None:
            print(f"{t_cp:.3f} {t_del:.3f}")
            return 0
        if not alive(args.pid):
            why = "capi-cdc (pid %d) exited" % args.pid
            break
        if now > deadline:
            why = f"timed out after {args.timeout:.0f} s"
            break
        time.sleep(args.interval)
    def m(name: str) -> int:
        """A metric, summed over its labelled series."""
        return sum(v for k, v in last.items() if k == name or k.startswith(name + "{"))

    print(
        f"wait: {why}; last seen: checkpoint {fmt_lsn(m('capi_cdc_checkpoint_lsn'))} "
        f"(want {args.lsn}), delivered {m('capi_cdc_delivered_total')} (want {args.delivered}), "
        f"transactions {m('capi_cdc_transactions_total')}, "
        f"events spooled {m('capi_cdc_events_spooled_total')}, "
        f"requests {m('capi_cdc_requests_total')}, retries {m('capi_cdc_retries_total')}, "
        f"dead {m('capi_cdc_dead_lettered_total')}",
        file=sys.stderr,
    )
    return 1


def cmd_clear(args: argparse.Namespace) -> int:
    req = urllib.request.Request(f"{args.url}/_sandbox/meta/events", method="DELETE")
    with urllib.request.urlopen(req, timeout=30):
        pass
    return 0


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def cmd_sandbox_check(args: argparse.Namespace) -> int:
    """Reads GET /_sandbox/meta/events once. Checks that every order id in
    [--expect-from, --expect-to] arrived as purchase-{id} (duplicates are
    counted separately), and computes commit → receipt latency for the ids in
    --commits (TSV: id, commit epoch ms). Prints one JSON object."""
    report = json.loads(http_get(f"{args.url}/_sandbox/meta/events", timeout=300))
    received = report.get("received", [])
    first_seen: dict[int, int] = {}
    copies = 0
    for ev in received:
        eid = ev.get("event_id") or ""
        if not eid.startswith("purchase-"):
            continue
        try:
            oid = int(eid[len("purchase-"):])
        except ValueError:
            continue
        if oid in first_seen:
            copies += 1
            first_seen[oid] = min(first_seen[oid], ev["received_at_ms"])
        else:
            first_seen[oid] = ev["received_at_ms"]
    out: dict[str, object] = {
        "received": len(received),
        "distinct": len(first_seen),
        "duplicates": copies,
        "rejected": report.get("rejected", 0),
        "requests": report.get("requests", 0),
    }
    for spec in args.expect or []:
        name, lo, hi = spec.split(":")
        lo_i, hi_i = int(lo), int(hi)
        want = [i for i in range(lo_i, hi_i + 1) if i % args.modulus == 0] if args.modulus > 1 else range(lo_i, hi_i + 1)
        want = list(want)
        missing = [i for i in want if i not in first_seen]
        out[f"{name}_expected"] = len(want)
        out[f"{name}_missing"] = len(missing)
        if missing:
            out[f"{name}_missing_sample"] = missing[:10]
    if args.commits:
        lat: list[float] = []
        absent = 0
        with open(args.commits) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                oid_s, commit_ms_s = line.split("\t")
                oid = int(oid_s)
                if oid not in first_seen:
                    absent += 1
                    continue
                lat.append(first_seen[oid] - float(commit_ms_s))
        lat.sort()
        out["latency_n"] = len(lat)
        out["latency_missing"] = absent
        for p in (50, 95, 99):
            out[f"p{p}_ms"] = round(percentile(lat, p), 1)
        out["max_ms"] = round(lat[-1], 1) if lat else math.nan
        out["min_ms"] = round(lat[0], 1) if lat else math.nan
    print(json.dumps(out))
    return 0


# ------------------------------------------------------------------ rendering


def load_results(path: str) -> dict[str, str]:
    res: dict[str, str] = {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if "=" in line:
                k, v = line.split("=", 1)
                res[k] = v
    return res


def secs(v: str | None) -> str:
    return "—" if not v else f"{float(v):.2f} s"


def ratio(a: str | None, b: str | None) -> str:
    if not a or not b or float(b) == 0:
        return "—"
    return f"{float(a) / float(b):.2f}×"


def mib(kb: str | None) -> str:
    return "—" if not kb else f"{int(kb) / 1024:.0f} MiB"


def ms(v: object) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{float(v):.0f} ms"


def rate(count: str | None, seconds: str | None, unit: str) -> str:
    if not count or not seconds or float(seconds) == 0:
        return ""
    return f"≈ {int(count) / float(seconds) / 1000:.0f}k {unit}/s"


def cmd_render(args: argparse.Namespace) -> int:
    r = load_results(args.results)
    lat = json.loads(r.get("A_live_check", "{}") or "{}")
    a_n, b_n = r.get("A_txns"), r.get("B_rows")
    lines = [
        "# capi-cdc benchmark results",
        "",
        f"Machine: {r.get('nproc')} CPUs (`nproc`), {r.get('mem')} RAM, {r.get('kernel')}; "
        f"PostgreSQL {r.get('pg_version')}; capi-cdc {r.get('capi_version')} (release build); "
        f"run {r.get('date')}; load average at start {r.get('load')}.",
        "",
        f"Workload A (OLTP): {a_n} single-row INSERT transactions into `orders` (status 'paid'), "
        f"pgbench with {r.get('A_clients')} clients; {r.get('A_wal_mb')} MB of WAL. "
        f"Workload B (one big transaction): {b_n} rows in one INSERT, every 1000th 'paid' "
        f"({r.get('B_events')} events); {r.get('B_wal_mb')} MB of WAL. "
        "Both readers drain the same WAL range from their own slot over a Unix socket, one after the other.",
        "",
        "| reader | workload | wall time | ratio capi-cdc / pg_recvlogical | peak RSS | p50 | p95 | p99 | max | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    def row(*cells: str) -> None:
        lines.append("| " + " | ".join(cells) + " |")

    row("`pg_recvlogical`", f"A: {a_n} txns (backlog)", secs(r.get("A_recv_s")), "1.00×",
        mib(r.get("A_recv_rss_kb")), "—", "—", "—", "—",
        f"to `--endpos`; {rate(a_n, r.get('A_recv_s'), 'txn')}; proto 1, text, output to /dev/null")
    row("`capi-cdc`", f"A: {a_n} txns (backlog)", secs(r.get("A_capi_cp_s")),
        ratio(r.get("A_capi_cp_s"), r.get("A_recv_s")), mib(r.get("A_capi_rss_kb")), "—", "—", "—", "—",
        f"start → spool checkpoint ≥ end LSN; {rate(a_n, r.get('A_capi_cp_s'), 'txn')}")
    row("`capi-cdc`", f"A: {a_n} txns (backlog)", secs(r.get("A_capi_del_s")),
        ratio(r.get("A_capi_del_s"), r.get("A_recv_s")), "(same process)", "—", "—", "—", "—",
        f"start → all {a_n} events delivered to the sandbox")
    row("`capi-cdc`", f"A live: {r.get('A_live_txns')} txns at {r.get('A_live_rate')}/s", "—", "—",
        "(same process)", ms(lat.get("p50_ms")), ms(lat.get("p95_ms")), ms(lat.get("p99_ms")),
        ms(lat.get("max_ms")),
        f"commit (`pg_xact_commit_timestamp`) → sandbox receipt, n = {lat.get('latency_n', 0)}")
    row("`pg_recvlogical`", f"B: 1 txn × {b_n} rows", secs(r.get("B_recv_s")), "1.00×",
        mib(r.get("B_recv_rss_kb")), "—", "—", "—", "—", "to `--endpos`")
    row("`capi-cdc`", f"B: 1 txn × {b_n} rows", secs(r.get("B_capi_cp_s")),
        ratio(r.get("B_capi_cp_s"), r.get("B_recv_s")), mib(r.get("B_capi_rss_kb")), "—", "—", "—", "—",
        "start → spool checkpoint ≥ end LSN")
    row("`capi-cdc`", f"B: 1 txn × {b_n} rows", secs(r.get("B_capi_del_s")),
        ratio(r.get("B_capi_del_s"), r.get("B_recv_s")), "(same process)", "—", "—", "—", "—",
        f"start → all {r.get('B_events')} events delivered")
    lines.append("")
    checks = [
        f"A backlog: sandbox holds {r.get('A_backlog_found')} of {a_n} purchase events "
        f"(duplicates: {r.get('A_duplicates')}); live: {lat.get('latency_n', 0)} of {r.get('A_live_txns')} "
        f"(min latency {ms(lat.get('min_ms'))}).",
        f"B: sandbox holds {r.get('B_found')} of {r.get('B_events')} purchase events "
        f"(duplicates: {r.get('B_duplicates')}).",
        f"capi-cdc exit codes after SIGTERM: A {r.get('A_capi_exit')}, B {r.get('B_capi_exit')}.",
    ]
    lines.extend(f"- {c}" for c in checks)
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("freeport").set_defaults(fn=cmd_freeport)
    s = sub.add_parser("lsn")
    s.add_argument("lsn")
    s.set_defaults(fn=cmd_lsn)
    s = sub.add_parser("wait")
    s.add_argument("--admin", required=True, help="host:port of capi-cdc's admin listener")
    s.add_argument("--pid", type=int, required=True)
    s.add_argument("--t0", type=float, required=True, help="epoch seconds the process was started")
    s.add_argument("--lsn", required=True)
    s.add_argument("--delivered", type=int, required=True)
    s.add_argument("--timeout", type=float, default=600)
    s.add_argument("--interval", type=float, default=0.01)
    s.set_defaults(fn=cmd_wait)
    s = sub.add_parser("clear")
    s.add_argument("url")
    s.set_defaults(fn=cmd_clear)
    s = sub.add_parser("sandbox-check")
    s.add_argument("--url", required=True)
    s.add_argument("--expect", action="append", help="name:first_id:last_id")
    s.add_argument("--modulus", type=int, default=1, help="only ids divisible by this are expected")
    s.add_argument("--commits", help="TSV of id, commit epoch ms (latency sample)")
    s.set_defaults(fn=cmd_sandbox_check)
    s = sub.add_parser("render")
    s.add_argument("results")
    s.add_argument("--out")
    s.set_defaults(fn=cmd_render)
    args = p.parse_args()
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
