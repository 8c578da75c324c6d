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
  offcpu ...                    where a process's threads were off their
                                core, from `perf script` of sched_switch
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
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
            # What the lanes had delivered while the drain ran: the rest is
            # delivered after it, with the cores to themselves.
            commits = last.get("capi_cdc_spool_commits_total", 0)
            lane_commits = last.get("capi_cdc_ledger_commits_total", 0)
            lock_ms = last.get("capi_cdc_spool_lock_wait_ms_total", 0)
            turn_ms = last.get("capi_cdc_spool_lane_turn_wait_ms_total", 0)
            restart_ms = last.get("capi_cdc_spool_wal_restart_ms_total", 0)
            restarts = last.get("capi_cdc_spool_wal_restarts_total", 0)
            print(f"[wait] checkpoint reached after {t_cp:.3f} s with {delivered} delivered, {commits} spool commits, {lane_commits} lane commits, apply loop waited {lock_ms} ms for the write lock ({turn_ms} ms of it lanes' turns), {restart_ms} ms restarting the WAL ({restarts} restarts)", file=sys.stderr)
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


def cmd_wait_idle(args: argparse.Namespace) -> int:
    """Waits until the checkpoint is at --lsn (polling /metrics) and then
    until no destination has anything pending (polling /api/status, which
    counts the ledger). Prints "checkpoint_s idle_s" since --t0."""
    target = parse_lsn(args.lsn)
    deadline = time.time() + args.timeout
    t_cp = None
    last: dict[str, object] = {}
    last_status_at = time.time()
    while time.time() < deadline:
        if not alive(args.pid):
            print(f"wait-idle: capi-cdc (pid {args.pid}) exited; last status {last}", file=sys.stderr)
            return 1
        now = time.time()
        if t_cp is None:
            try:
                m = scrape(f"http://{args.admin}/metrics")
                if m.get("capi_cdc_checkpoint_lsn", 0) >= target:
                    t_cp = now - args.t0
                    print(f"[wait] checkpoint reached after {t_cp:.3f} s, {m.get('capi_cdc_spool_commits_total', 0)} spool commits, {m.get('capi_cdc_ledger_commits_total', 0)} lane commits, apply loop waited {m.get('capi_cdc_spool_lock_wait_ms_total', 0)} ms for the write lock ({m.get('capi_cdc_spool_lane_turn_wait_ms_total', 0)} ms of it lanes' turns), {m.get('capi_cdc_spool_wal_restart_ms_total', 0)} ms restarting the WAL ({m.get('capi_cdc_spool_wal_restarts_total', 0)} restarts)", file=sys.stderr)
            except (OSError, urllib.error.URLError, ValueError):
                pass
            time.sleep(0.01)
            continue
        # Settled when every destination's outcomes (delivered, skipped,
        # dead) add up to the events spooled, read from the cheap /metrics;
        # every 10 s /api/status (which counts the ledger, a full scan: 11 %
        # of capi-cdc's samples when polled every 2 s) confirms or catches a
        # destination that has no row for some events.
        try:
            m = scrape(f"http://{args.admin}/metrics")
        except (OSError, urllib.error.URLError, ValueError):
            time.sleep(0.05)
            continue
        spooled = m.get("capi_cdc_events_spooled_total", 0)
        done: dict[str, int] = {}
        for k, v in m.items():
            for name in ("capi_cdc_delivered_total{", "capi_cdc_skipped_total{", "capi_cdc_dead_lettered_total{"):
                if k.startswith(name) and 'destination="' in k:
                    dest = k.split('destination="', 1)[1].split('"', 1)[0]
                    done[dest] = done.get(dest, 0) + v
        settled = bool(done) and all(n >= spooled for n in done.values())
        if not settled and time.time() - last_status_at >= 10:
            last_status_at = time.time()
            try:
                last = json.loads(http_get(f"http://{args.admin}/api/status", timeout=60))
                dests = last.get("destinations", {})
                settled = bool(dests) and all(d.get("pending", 1) == 0 for d in dests.values())
            except (OSError, urllib.error.URLError, ValueError):
                pass
        if settled:
            print(f"{t_cp:.3f} {time.time() - args.t0:.3f}")
            return 0
        time.sleep(0.02)
    print(f"wait-idle: timed out after {args.timeout:.0f} s; checkpoint reached: {t_cp is not None}; last status {last}", file=sys.stderr)
    return 1


def msgpack(data: bytes, i: int = 0) -> tuple[object, int]:
    """One MessagePack value at data[i:] and the offset after it: enough of
    the format for the spool's payloads (spool/payload.rs), stdlib only."""
    import struct
    b = data[i]
    i += 1
    if b <= 0x7F:
        return b, i
    if b >= 0xE0:
        return b - 0x100, i
    if 0xA0 <= b <= 0xBF or b in (0xD9, 0xDA, 0xDB, 0xC4, 0xC5, 0xC6):
        if 0xA0 <= b <= 0xBF:
            n = b & 0x1F
        else:
            width = {0xD9: 1, 0xC4: 1, 0xDA: 2, 0xC5: 2, 0xDB: 4, 0xC6: 4}[b]
            n = int.from_bytes(data[i:i + width], "big")
            i += width
        raw = data[i:i + n]
        return (raw if b in (0xC4, 0xC5, 0xC6) else raw.decode()), i + n
    if 0x80 <= b <= 0x8F or b in (0xDE, 0xDF) or 0x90 <= b <= 0x9F or b in (0xDC, 0xDD):
        if 0x80 <= b <= 0x8F or 0x90 <= b <= 0x9F:
            n = b & 0x0F
        else:
            width = 2 if b in (0xDE, 0xDC) else 4
            n = int.from_bytes(data[i:i + width], "big")
            i += width
        if b in (0xDE, 0xDF) or 0x80 <= b <= 0x8F:
            out: dict[object, object] = {}
            for _ in range(n):
                k, i = msgpack(data, i)
                out[k], i = msgpack(data, i)
            return out, i
        items = []
        for _ in range(n):
            v, i = msgpack(data, i)
            items.append(v)
        return items, i
    fixed = {0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q", 0xD0: ">b", 0xD1: ">h",
             0xD2: ">i", 0xD3: ">q", 0xCA: ">f", 0xCB: ">d"}
    if b in fixed:
        size = struct.calcsize(fixed[b])
        return struct.unpack(fixed[b], data[i:i + size])[0], i + size
    if b in (0xC0, 0xC2, 0xC3):
        return {0xC0: None, 0xC2: False, 0xC3: True}[b], i
    raise ValueError(f"MessagePack type byte {b:#x} is not used by the spool's payloads")


def payload_field(payload: bytes | str, name: str) -> object:
    """A top-level field of a stored event: MessagePack blob, or the JSON
    text of a row spooled before schema version 5."""
    if isinstance(payload, str):
        return json.loads(payload).get(name)
    value, _ = msgpack(payload)
    return value.get(name) if isinstance(value, dict) else None


def cmd_shop_check(args: argparse.Namespace) -> int:
    """Workload C, read back. From the spool (read-only): each destination's
    states, the time of the last delivery of a backlog event, and for events
    committed in the live phase commit → accepted latency per destination and
    lane (the ledger's delivery time minus the commit timestamp pgoutput
    sent). From the sandbox: what Meta and Google received and how many
    copies were duplicates. Prints one JSON object."""
    import sqlite3
    db = sqlite3.connect(f"file:{args.spool}?mode=ro", uri=True)
    out: dict[str, object] = {}
    out["events"] = db.execute("SELECT count(*) FROM events").fetchone()[0]
    out["kinds"] = dict(db.execute("SELECT kind, count(*) FROM events GROUP BY kind ORDER BY kind").fetchall())
    states: dict[str, dict[str, int]] = {}
    for dest, state, n in db.execute("SELECT destination, state, count(*) FROM deliveries GROUP BY 1, 2"):
        states.setdefault(dest, {})[state] = n
    out["states"] = states
    live_from_ms = args.live_from_ms
    (last_ms,) = db.execute(
        "SELECT max(d.updated_at_ms) FROM deliveries d JOIN events e ON e.seq = d.seq "
        "WHERE d.state = 'delivered' AND e.spooled_at_ms < ?", (live_from_ms,)).fetchone()
    out["backlog_last_delivery_s"] = round(last_ms / 1000.0 - args.t0, 3) if last_ms else None
    lat: dict[str, list[float]] = {}
    spool_lat: dict[str, list[float]] = {}
    for dest, lane, at_ms, spooled_ms, payload in db.execute(
            "SELECT d.destination, d.lane, d.updated_at_ms, e.spooled_at_ms, e.payload "
            "FROM deliveries d JOIN events e ON e.seq = d.seq "
            "WHERE d.state = 'delivered' AND e.spooled_at_ms >= ?", (live_from_ms,)):
        commit_us = payload_field(payload, "commit_time_us")
        if commit_us:
            lat.setdefault(f"{dest}/{lane}", []).append(at_ms - commit_us / 1000.0)
            spool_lat.setdefault(f"{dest}/{lane}", []).append(spooled_ms - commit_us / 1000.0)
    live: dict[str, dict[str, float]] = {}
    for key, values in sorted(lat.items()):
        values.sort()
        to_spool = sorted(spool_lat[key])
        live[key] = {"n": len(values), **{f"p{p}": round(percentile(values, p), 1) for p in (50, 95, 99)},
                     "max": round(values[-1], 1),
                     # the part of it before the event was in the spool (receive, decode, derive, spool write)
                     "to_spool_p50": round(percentile(to_spool, 50), 1),
                     "to_spool_p99": round(percentile(to_spool, 99), 1)}
    out["live"] = live
    (live_events,) = db.execute("SELECT count(*) FROM events WHERE spooled_at_ms >= ?", (live_from_ms,)).fetchone()
    (first_ms, last_live_ms) = db.execute(
        "SELECT min(spooled_at_ms), max(spooled_at_ms) FROM events WHERE spooled_at_ms >= ?", (live_from_ms,)).fetchone()
    out["live_events"] = live_events
    if first_ms and last_live_ms and last_live_ms > first_ms:
        out["live_events_per_s"] = round(live_events / ((last_live_ms - first_ms) / 1000.0))
    meta = json.loads(http_get(f"{args.url}/_sandbox/meta/events", timeout=300))
    received = meta.get("received", [])
    keys = {(ev.get("event_name"), ev.get("event_id")) for ev in received}
    out["meta_received"] = len(received)
    out["meta_distinct"] = len(keys)
    out["meta_duplicates"] = len(received) - len(keys)
    out["meta_rejected_requests"] = meta.get("rejected", 0)
    google = json.loads(http_get(f"{args.url}/_sandbox/google/report", timeout=300))
    out["google_accepted"] = sum(len(v) for v in google.get("accepted", {}).values())
    out["google_duplicates"] = google.get("deduplicated", 0)
    out["google_rejections"] = len(google.get("rejections", []))
    print(json.dumps(out))
    return 0


def cmd_sandbox_alone(args: argparse.Namespace) -> int:
    """What the sandbox accepts on its own, with no capi-cdc in the way:
    --threads clients post pre-built, distinct, valid full-size requests
    (Meta 1,000 events, Google's Data Manager 2,000) over keep-alive
    connections as fast as answers come. Prints one JSON object with
    events/s per platform. A lower bound: the client is Python."""
    import concurrent.futures
    import http.client
    import urllib.parse
    host, port = urllib.parse.urlsplit(args.url).netloc.split(":")
    form = urllib.parse.urlencode({
        "grant_type": "refresh_token", "client_id": "sandbox-client-id.apps.googleusercontent.com",
        "client_secret": "sandbox-client-secret", "refresh_token": "sandbox-refresh-token"}).encode()
    req = urllib.request.Request(f"{args.url}/token", data=form, method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req, timeout=10) as r:
        token = json.load(r)["access_token"]
    report = json.loads(http_get(f"{args.url}/_sandbox/google/report", timeout=60))
    actions = report.get("conversion_actions") or []
    action = next(a["id"] for a in actions if a["name"] == "capi-cdc transaction.purchase")
    now = int(time.time()) - 60
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    hexid = "a" * 64

    def meta_body(i: int) -> bytes:
        data = [{"event_name": "Purchase", "event_time": now, "event_id": f"alone-{i}-{j}",
                 "action_source": "website", "event_source_url": "https://shop.example/checkout",
                 "user_data": {"em": [hexid], "ph": [hexid], "client_ip_address": "192.0.2.1",
                               "client_user_agent": "Mozilla/5.0 (bench)", "fbp": "fb.1.1596403881668.1116446470"},
                 "custom_data": {"currency": "USD", "value": 25.0, "content_ids": ["SKU-1"], "content_type": "product",
                                 "num_items": 2}} for j in range(1000)]
        return json.dumps({"data": data, "access_token": args.meta_token}).encode()

    def google_body(i: int) -> bytes:
        events = [{"transactionId": f"alone-{i}-{j}", "eventTimestamp": stamp, "conversionValue": 25.0,
                   "currency": "USD", "eventSource": "WEB", "adIdentifiers": {"gclid": f"Cj0-alone-{i}-{j}"},
                   "consent": {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"},
                   "userData": {"userIdentifiers": [{"emailAddress": hexid}, {"phoneNumber": hexid}]}}
                  for j in range(2000)]
        return json.dumps({"destinations": [{"operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": "1234567890"},
                                             "productDestinationId": action}],
                           "encoding": "HEX", "events": events}).encode()

    def blast(path: str, bodies: list[bytes], headers: dict[str, str]) -> float:
        def worker(chunk: list[bytes]) -> None:
            conn = http.client.HTTPConnection(host, int(port), timeout=120)
            for body in chunk:
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{path}: HTTP {resp.status}: {data[:300]!r}")
            conn.close()
        chunks = [bodies[k::args.threads] for k in range(args.threads)]
        t0 = time.time()
        with concurrent.futures.ThreadPoolExecutor(args.threads) as pool:
            for f in [pool.submit(worker, c) for c in chunks]:
                f.result()
        return time.time() - t0

    out: dict[str, object] = {}
    bodies = [meta_body(i) for i in range(args.meta_requests)]
    secs_m = blast(f"/v25.0/{args.pixel}/events", bodies, {"Content-Type": "application/json"})
    out["meta_events_per_s"] = round(args.meta_requests * 1000 / secs_m)
    bodies = [google_body(i) for i in range(args.google_requests)]
    secs_g = blast("/v1/events:ingest", bodies, {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    out["google_events_per_s"] = round(args.google_requests * 2000 / secs_g)
    out["threads"] = args.threads
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
        f"Workload C (storefront): {r.get('C_journeys')} journeys of `capi-cdc storefront` "
        f"({r.get('C_clients')} at once; {r.get('C_txns')} transactions, {r.get('C_wal_mb')} MB of WAL), every default "
        "rule and lookup on, to Meta and Google. "
        f"Workload D (large rows): one UPDATE of {r.get('D_rows')} rows setting a {r.get('D_kb')} kB value each. "
        "The readers drain the same WAL range from their own slots over a Unix socket, one after the other.",
        "",
        "| reader | workload | wall time | ratio capi-cdc / pg_recvlogical | peak RSS | p50 | p95 | p99 | max | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    def row(*cells: str) -> None:
        lines.append("| " + " | ".join(cells) + " |")

    if r.get("A_recv_s"):
        row("`pg_recvlogical`", f"A: {a_n} txns (backlog)", secs(r.get("A_recv_s")), "1.00×",
            mib(r.get("A_recv_rss_kb")), "—", "—", "—", "—",
            f"to `--endpos`; {rate(a_n, r.get('A_recv_s'), 'txn')}; proto 1, text, output to /dev/null")
        row("`capi-cdc`", f"A: {a_n} txns (backlog)", secs(r.get("A_capi_cp_s")),
            ratio(r.get("A_capi_cp_s"), r.get("A_recv_s")), mib(r.get("A_capi_rss_kb")), "—", "—", "—", "—",
            f"start → spool checkpoint ≥ end LSN; {rate(a_n, r.get('A_capi_cp_s'), 'txn')}")
        row("`capi-cdc`", f"A: {a_n} txns (backlog)", secs(r.get("A_capi_del_s")),
            ratio(r.get("A_capi_del_s"), r.get("A_recv_s")), "(same process)", "—", "—", "—", "—",
            f"start → all {a_n} events delivered to the sandbox")
        if r.get("A0_capi_cp_s"):
            row("`capi-cdc`", "A0: the same WAL, no destination", secs(r.get("A0_capi_cp_s")),
                ratio(r.get("A0_capi_cp_s"), r.get("A_recv_s")), mib(r.get("A0_capi_rss_kb")), "—", "—", "—", "—",
                "diagnostic: the apply loop with nothing beside it; start → spool checkpoint ≥ end LSN")
        row("`capi-cdc`", f"A live: {r.get('A_live_txns')} txns at {r.get('A_live_rate')}/s", "—", "—",
            "(same process)", ms(lat.get("p50_ms")), ms(lat.get("p95_ms")), ms(lat.get("p99_ms")),
            ms(lat.get("max_ms")),
            f"commit (`pg_xact_commit_timestamp`) → sandbox receipt, n = {lat.get('latency_n', 0)}")
    if r.get("B_recv_s"):
        row("`pg_recvlogical`", f"B: 1 txn × {b_n} rows", secs(r.get("B_recv_s")), "1.00×",
            mib(r.get("B_recv_rss_kb")), "—", "—", "—", "—", "to `--endpos`")
        row("`capi-cdc`", f"B: 1 txn × {b_n} rows", secs(r.get("B_capi_cp_s")),
            ratio(r.get("B_capi_cp_s"), r.get("B_recv_s")), mib(r.get("B_capi_rss_kb")), "—", "—", "—", "—",
            "start → spool checkpoint ≥ end LSN")
        row("`capi-cdc`", f"B: 1 txn × {b_n} rows", secs(r.get("B_capi_del_s")),
            ratio(r.get("B_capi_del_s"), r.get("B_recv_s")), "(same process)", "—", "—", "—", "—",
            f"start → all {r.get('B_events')} events delivered")
    c = json.loads(r.get("C_check", "{}") or "{}")
    c_n = r.get("C_txns")
    if c_n:
        del_s = c.get("backlog_last_delivery_s")
        row("`pg_recvlogical`", f"C: storefront, {c_n} txns", secs(r.get("C_recv_s")), "1.00×",
            mib(r.get("C_recv_rss_kb")), "—", "—", "—", "—", f"to `--endpos`; {rate(c_n, r.get('C_recv_s'), 'txn')}")
        row("`capi-cdc`", f"C: storefront, {c_n} txns", secs(r.get("C_capi_cp_s")),
            ratio(r.get("C_capi_cp_s"), r.get("C_recv_s")), mib(r.get("C_capi_rss_kb")), "—", "—", "—", "—",
            f"start → spool checkpoint ≥ end LSN; {rate(c_n, r.get('C_capi_cp_s'), 'txn')}; {c.get('events', 0)} events")
        row("`capi-cdc`", f"C: storefront, {c_n} txns", secs(str(del_s) if del_s is not None else None),
            ratio(str(del_s) if del_s is not None else None, r.get("C_recv_s")), "(same process)", "—", "—", "—", "—",
            "start → last backlog event accepted by Meta or Google")
        # Sampled once a second through the live phase (older results: one
        # reading at its end).
        if r.get("C_live_rss_median_kb"):
            live_rss = (f"{mib(r.get('C_live_rss_median_kb'))} median, {mib(r.get('C_live_rss_max_kb'))} max "
                        f"(anon {mib(r.get('C_live_rss_anon_kb'))}, code {mib(r.get('C_live_rss_file_kb'))})")
        else:
            live_rss = mib(r.get("C_steady_rss_kb")) + " (RSS at end)"
        for key, v in (c.get("live") or {}).items():
            row("`capi-cdc`", f"C live: {key}", "—", "—", live_rss,
                ms(v.get("p50")), ms(v.get("p95")), ms(v.get("p99")), ms(v.get("max")),
                f"commit → accepted, n = {v.get('n')}; {r.get('C_live_rate')} journeys/s ≈ {c.get('live_events_per_s', '?')} events/s")
    if r.get("E_replay_s"):
        e_s, e_n = float(r["E_replay_s"]), int(r.get("E_events") or 0)
        per_s = e_n / e_s if e_s else 0
        # A 1-hour outage at the live phase's 1,000 events/s leaves 3.6 M
        # events; they drain at per_s while 1,000/s keep arriving.
        backlog = 3600 * 1000
        catch = backlog / (per_s - 1000) if per_s > 1000 else math.inf
        row("`capi-cdc`", f"E: replay of C's {e_n} events", secs(r.get("E_replay_s")), "—", "—", "—", "—", "—", "—",
            f"Meta 10 req/s, Google 5 req/s (300/min): {per_s:,.0f} events/s per destination → a 1-hour backlog "
            f"at 1,000 events/s catches up in {catch / 60:.0f} min" if catch != math.inf else "slower than 1,000 events/s")
    if r.get("D_recv_s"):
        d_desc = f"D: 1 UPDATE × {r.get('D_rows')} rows of {r.get('D_kb')} kB"
        row("`pg_recvlogical`", d_desc, secs(r.get("D_recv_s")), "1.00×", mib(r.get("D_recv_rss_kb")),
            "—", "—", "—", "—", f"{r.get('D_decoded_mb')} MB decoded from {r.get('D_wal_mb')} MB of WAL")
        row("`capi-cdc`", d_desc, secs(r.get("D_new_capi_cp_s")), ratio(r.get("D_new_capi_cp_s"), r.get("D_recv_s")),
            mib(r.get("D_new_capi_rss_kb")), "—", "—", "—", "—", "default `receive_buffer_mb` (64)")
        row("`capi-cdc`", d_desc, secs(r.get("D_old_capi_cp_s")), ratio(r.get("D_old_capi_cp_s"), r.get("D_recv_s")),
            mib(r.get("D_old_capi_rss_kb")), "—", "—", "—", "—", "`receive_buffer_mb = 4096` (the largest allowed)")
    alone = json.loads(r.get("sandbox_alone", "{}") or "{}")
    if alone:
        row("sandbox alone", "full-size requests, 2 client threads", "—", "—", "—", "—", "—", "—", "—",
            f"Meta {alone.get('meta_events_per_s', 0):,} events/s, Google {alone.get('google_events_per_s', 0):,} events/s "
            "(a Python client: a lower bound)")
    lines.append("")
    checks = [
        f"A backlog: sandbox holds {r.get('A_backlog_found')} of {a_n} purchase events "
        f"(duplicates: {r.get('A_duplicates')}); live: {lat.get('latency_n', 0)} of {r.get('A_live_txns')} "
        f"(min latency {ms(lat.get('min_ms'))}).",
        f"B: sandbox holds {r.get('B_found')} of {r.get('B_events')} purchase events "
        f"(duplicates: {r.get('B_duplicates')}).",
        f"capi-cdc exit codes after SIGTERM: A {r.get('A_capi_exit')}"
        + (f" (A0 {r.get('A0_capi_exit')})" if r.get("A0_capi_exit") else "")
        + f", B {r.get('B_capi_exit')}, "
        f"C {r.get('C_capi_exit')}, D {r.get('D_new_capi_exit')} / {r.get('D_old_capi_exit')}.",
    ]
    if c_n:
        checks.append(
            f"C: spool states {c.get('states')}; Meta received {c.get('meta_received')} "
            f"({c.get('meta_distinct')} distinct, {c.get('meta_duplicates')} duplicates, "
            f"{c.get('meta_rejected_requests')} rejected requests); Google accepted {c.get('google_accepted')} "
            f"({c.get('google_duplicates')} duplicates, {c.get('google_rejections')} rejections); "
            f"events by kind {c.get('kinds')}.")
    lines.extend(f"- {c}" for c in checks)
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


SWITCH = re.compile(r"\s(\d+)\s+\[\d+\]\s+([\d.]+):\s+sched:sched_switch:\s+(.*)$")
HASH = re.compile(r"::h[0-9a-f]{16}$")


def frame_name(line: str) -> tuple[str, bool]:
    """(function, is_kernel) of one `perf script` stack line."""
    parts = line.strip().split(None, 1)
    rest = parts[1] if len(parts) > 1 else ""
    kernel = "kernel.kallsyms" in rest
    name = rest.rsplit(" (", 1)[0]
    name = re.sub(r"\+0x[0-9a-f]+$", "", name)
    return HASH.sub("", name), kernel


def cmd_offcpu(args: argparse.Namespace) -> int:
    """Off-CPU time per thread of one process and, for its busiest waiters,
    per stack: from `perf record -a -e sched:sched_switch -g` turned into
    text by `perf script`. A thread's time off its core runs from its
    switch-out (whose stack says why) to its next switch-in. "sleep" is a
    switch-out in state S or D (it waited for something), "preempted" one
    in state R (it was runnable, and waited for a core)."""
    tids: dict[int, str] = {}
    with open(args.tids) as f:
        for line in f:
            tid, _, comm = line.strip().partition(" ")
            if tid:
                tids[int(tid)] = comm
    out: dict[int, tuple[float, tuple[str, ...], str]] = {}
    per_thread: dict[int, dict[str, float]] = {}
    per_stack: dict[int, dict[tuple[str, ...], list[float]]] = {}
    first = last = None

    def events():
        header = None
        stack: list[str] = []
        with open(args.script, errors="replace") as f:
            for line in f:
                if not line.strip():
                    if header:
                        yield header, stack
                    header, stack = None, []
                elif line[0] in " \t" and header:
                    stack.append(line)
                else:
                    m = SWITCH.search(line)
                    if header:
                        yield header, stack
                    header, stack = m, []
        if header:
            yield header, stack

    for m, stack in events():
        ts = float(m.group(2))
        first = ts if first is None else first
        last = ts
        fields = dict(kv.split("=", 1) for kv in re.findall(r"(\w+=\S+)", m.group(3)))
        prev, nxt = int(fields.get("prev_pid", -1)), int(fields.get("next_pid", -1))
        if prev in tids:
            frames = [frame_name(l) for l in stack]
            syscall = next((n for n, k in frames if k and n.startswith("__x64_sys_")), "")
            user = [n for n, k in frames if not k][: args.depth]
            key = tuple(([syscall[len("__x64_sys_"):]] if syscall else []) + user)
            out[prev] = (ts, key, fields.get("prev_state", "?"))
        if nxt in out:
            t0, key, state = out.pop(nxt)
            ms = (ts - t0) * 1000.0
            kind = "preempted" if state.startswith("R") else "sleep"
            d = per_thread.setdefault(nxt, {"sleep": 0.0, "preempted": 0.0, "n": 0})
            d[kind] += ms
            d["n"] += 1
            st = per_stack.setdefault(nxt, {}).setdefault((kind,) + key, [0.0, 0])
            st[0] += ms
            st[1] += 1
    span = ((last or 0) - (first or 0)) * 1000.0
    print(f"off-CPU time of {len(tids)} threads over {span:.0f} ms of trace")
    print()
    print("| thread | tid | asleep ms | preempted ms | switches |")
    print("|---|---|---|---|---|")
    order = sorted(per_thread, key=lambda t: -(per_thread[t]["sleep"] + per_thread[t]["preempted"]))
    for tid in order:
        d = per_thread[tid]
        print(f"| {tids[tid]} | {tid} | {d['sleep']:.0f} | {d['preempted']:.0f} | {d['n']} |")
    wanted = [t for t in order if not args.thread or t == args.thread][: args.threads]
    for tid in wanted:
        print()
        print(f"thread {tids[tid]} ({tid}), top stacks by time off its core:")
        stacks = sorted(per_stack[tid].items(), key=lambda kv: -kv[1][0])[: args.top]
        for key, (ms, n) in stacks:
            print(f"  {ms:8.1f} ms {n:6d}x  {key[0]}: " + " <- ".join(key[1:]))
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
    s.add_argument("--interval", type=float, default=0.05)
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
    s = sub.add_parser("wait-idle")
    s.add_argument("--admin", required=True)
    s.add_argument("--pid", type=int, required=True)
    s.add_argument("--t0", type=float, required=True)
    s.add_argument("--lsn", required=True)
    s.add_argument("--timeout", type=float, default=600)
    s.set_defaults(fn=cmd_wait_idle)
    s = sub.add_parser("shop-check")
    s.add_argument("--url", required=True)
    s.add_argument("--spool", required=True)
    s.add_argument("--t0", type=float, required=True)
    s.add_argument("--live-from-ms", type=int, required=True)
    s.set_defaults(fn=cmd_shop_check)
    s = sub.add_parser("sandbox-alone")
    s.add_argument("--url", required=True)
    s.add_argument("--pixel", required=True)
    s.add_argument("--meta-token", required=True)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--meta-requests", type=int, default=100)
    s.add_argument("--google-requests", type=int, default=50)
    s.set_defaults(fn=cmd_sandbox_alone)
    s = sub.add_parser("render")
    s.add_argument("results")
    s.add_argument("--out")
    s.set_defaults(fn=cmd_render)
    s = sub.add_parser("offcpu")
    s.add_argument("--script", required=True, help="`perf script` output of sched:sched_switch")
    s.add_argument("--tids", required=True, help="file of 'tid comm' lines: the threads to account")
    s.add_argument("--thread", type=int, help="only this tid's stacks")
    s.add_argument("--threads", type=int, default=3, help="stacks of this many threads")
    s.add_argument("--top", type=int, default=15)
    s.add_argument("--depth", type=int, default=6, help="user-space frames per stack")
    s.set_defaults(fn=cmd_offcpu)
    args = p.parse_args()
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
