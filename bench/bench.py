#!/usr/bin/env python3
"""Messages per second through a private Postfix, with and without milters.

    python3 bench/bench.py [--messages 2000] [--sessions 20] [--sizes 10240,102400]
                           [--latency-messages 200] [--rounds 3] [--variants ...]
                           [--quick] [--json FILE]

Variants (see bench/README.md): Postfix alone; sekimori-nullmilter (a
do-nothing milter on libmilter in C, bench/nullmilter.c) on a unix socket, on
a TCP socket, and on a TCP socket with TCP_NODELAY; sekimori-sizelimit on a
unix and on a TCP socket (sekimori sets TCP_NODELAY on TCP by itself).

Each variant gets its own private Postfix + smtp-sink from tests/e2e/harness.py,
all started at once and warmed up; then the timed runs are interleaved (every
variant once per round, the order rotated each round) so that the machine's
drift hits all variants alike. Throughput: Postfix's smtp-source, SESSIONS
parallel sessions, one message per connection, into Postfix, which relays to
smtp-sink; msgs/s = messages that arrived at the sink / (time from the start of
smtp-source until the last arrived). Latency: smtp-source with one session,
wall time per message as the client sees it (ms/message).

Needs root (the harness runs `postfix -c DIR start`), Postfix's smtp-source
and smtp-sink, sekimori-nullmilter and sekimori-sizelimit built (below
$SEKIMORI_BINDIR, default build/). Not a test; CI does not run it.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import harness  # noqa: E402

SMTP_SOURCE = "/usr/sbin/smtp-source"
FROM = "sender@example.org"
TO = "user@example.net"
HELO = "client.example.org"

# The conf of sekimori-sizelimit for the bench: defaults, except that mail
# from loopback counts as coming from outside to a local domain (inbound), so
# the milter judges it the way it judges mail from the Internet. The socket
# comes from -p.
SIZELIMIT_CONF = """\
[milter]
socket_group = postfix
[policy]
local_domains = example.net
internal_networks =
"""

# sekimori-ratelimit for the bench: every counter checked for every message
# (all directions), none ever reached, so each message pays the full lookup
# cost (client, domain at MAIL; sender, recipient at RCPT) and none is
# refused. The store is memory or a private redis-server.
RATELIMIT_CONF = """\
[milter]
socket_group = postfix
[policy]
local_domains = example.net
internal_networks =
[control]
socket =
[limits]
sender_recipients = 1000000000
sender_directions = all
recipient_messages = 1000000000
recipient_directions = all
client_messages = 1000000000
client_directions = all
domain_messages = 1000000000
domain_directions = all
[store]
backend = {backend}
redis_address = {redis}
"""

# Redis servers started for ratelimit-redis variants, stopped at the end.
REDIS = []

# name: (label, socket, kind, nodelay). kind None = no milter.
VARIANTS = {
    "postfix": ("Postfix alone", "-", None, False),
    "null-unix": ("nullmilter", "unix", "null", False),
    "null-tcp": ("nullmilter", "tcp", "null", False),
    "null-tcp-nd": ("nullmilter+NODELAY", "tcp", "null", True),
    "sizelimit-unix": ("sekimori-sizelimit", "unix", "sizelimit", False),
    "sizelimit-tcp": ("sekimori-sizelimit", "tcp", "sizelimit", True),
    "ratelimit-mem-unix": ("sekimori-ratelimit memory", "unix", "ratelimit-memory", False),
    "ratelimit-redis-unix": ("sekimori-ratelimit redis", "unix", "ratelimit-redis", False),
}
# Throughput targets: (variant, minimum ratio to the do-nothing milter on the
# same socket type). Latency targets apply to the sizelimit variants.
THROUGHPUT_TARGETS = [("sizelimit-unix", 0.95), ("sizelimit-tcp", 0.95), ("ratelimit-mem-unix", 0.95),
                      ("ratelimit-redis-unix", 0.90)]
LATENCY_TARGETS = ["sizelimit-unix", "sizelimit-tcp"]
ORDER = list(VARIANTS)

# Bench-only Postfix settings: keep the processes a warm-up started alive
# while the other variants run (default max_idle is 100s).
BENCH_MAIN_CF = {"max_idle": "3600s"}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def nullmilter_binary():
    env = os.environ.get("SEKIMORI_NULLMILTER")
    if env:
        return env
    base = harness.bindir()
    for cand in (os.path.join(base, "bench", "sekimori-nullmilter"), os.path.join(base, "sekimori-nullmilter"),
                 os.path.join(os.path.dirname(base), "bench", "sekimori-nullmilter")):
        if os.path.exists(cand):
            return cand
    raise RuntimeError("sekimori-nullmilter not found below %s (cmake --build BUILD --target sekimori-nullmilter, "
                       "or set SEKIMORI_NULLMILTER)" % base)


class NullMilter(harness.Milter):
    """bench/nullmilter.c under the harness: it takes -p SPEC (and -n, -H),
    but no conf file (-f -c)."""

    def start(self):
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen([self.binary, "-p", self.socket_spec] + self.extra_args,
                                         stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        harness.wait_until(self._ready, 15, "nullmilter to listen on %s" % self.socket_spec)


def make_milter(name):
    label, sock, kind, nodelay = VARIANTS[name]
    transport = "unix" if sock == "unix" else "tcp"
    if kind == "null":
        return NullMilter("nullmilter", transport=transport, binary=nullmilter_binary(),
                          extra_args=["-n"] if nodelay else [])
    if kind == "sizelimit":
        return harness.Milter("sizelimit", SIZELIMIT_CONF, transport=transport)
    if kind == "ratelimit-memory":
        return harness.Milter("ratelimit", RATELIMIT_CONF.format(backend="memory", redis="127.0.0.1:6379"),
                              transport=transport)
    if kind == "ratelimit-redis":
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server not installed")
        r = harness.Redis()
        r.start()
        REDIS.append(r)
        return harness.Milter("ratelimit", RATELIMIT_CONF.format(backend="redis", redis=r.address),
                              transport=transport)
    return None


# -- measuring ------------------------------------------------------------------

def sink_files(site):
    """[(path, mtime)] of the messages in the sink."""
    out = []
    with os.scandir(site.sink.dir) as it:
        for e in it:
            try:
                out.append((e.path, e.stat().st_mtime))
            except OSError:
                pass
    return out


def wait_arrivals(site, expected, settle):
    """Waits until `expected` messages are in the sink or the count has not
    grown for `settle` seconds. Returns (count, mtime of the last arrival)."""
    last, changed = -1, time.monotonic()
    while True:
        n = site.sink.count()
        if n >= expected:
            break
        if n != last:
            last, changed = n, time.monotonic()
        elif time.monotonic() - changed > settle:
            break
        time.sleep(0.05)
    files = sink_files(site)
    return len(files), max((m for _, m in files), default=None)


def wait_quiet(site, timeout=60.0):
    """Until Postfix's queue is empty and the sink stops growing."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        n = site.sink.count()
        if n == last and not site.queue_ids():
            return True
        last = n
        time.sleep(0.3)
    log("  warning: %s: queue not empty after %.0fs: %s" % (site.name, timeout, site.queue_ids()[:5]))
    return False


def smtp_source(site, sessions, messages, size, timeout):
    cmd = [SMTP_SOURCE, "-s", str(sessions), "-m", str(messages), "-l", str(size), "-M", HELO, "-f", FROM,
           "-t", TO, "127.0.0.1:%d" % site.port]
    t0 = time.time()
    m0 = time.monotonic()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        rc, err = r.returncode, (r.stdout + r.stderr).strip()
    except subprocess.TimeoutExpired as e:
        rc, err = "timeout", ("%s" % (e.stderr or "")).strip()
    return t0, time.monotonic() - m0, rc, err


def run_throughput(site, messages, sessions, size, settle):
    wait_quiet(site)
    site.sink.clear()
    t0, elapsed, rc, err = smtp_source(site, sessions, messages, size, timeout=max(120, messages))
    arrived, last = wait_arrivals(site, messages, settle)
    span = (last - t0) if (last is not None and arrived) else None
    rate = arrived / span if span and span > 0 else 0.0
    return {"sent": messages, "arrived": arrived, "smtp_source_seconds": round(elapsed, 4),
            "seconds_to_last_arrival": round(span, 4) if span else None, "msgs_per_s": round(rate, 2),
            "smtp_source_rc": rc, "smtp_source_output": err[-2000:] if err else ""}


def run_latency(site, messages, size, settle):
    wait_quiet(site)
    site.sink.clear()
    t0, elapsed, rc, err = smtp_source(site, 1, messages, size, timeout=max(120, messages * 2))
    arrived, _ = wait_arrivals(site, messages, settle)
    return {"sent": messages, "arrived": arrived, "smtp_source_seconds": round(elapsed, 4),
            "ms_per_msg": round(elapsed * 1000.0 / messages, 3), "smtp_source_rc": rc,
            "smtp_source_output": err[-2000:] if err else ""}


def check_site(site, name):
    """One message must get through before anything is timed: a Postfix that
    cannot start smtpd or a milter that tempfails would otherwise only show up
    as smtp-source hanging or a rate of 0."""
    site.sink.clear()
    t0, elapsed, rc, err = smtp_source(site, 1, 1, 1024, timeout=30)
    arrived, _ = wait_arrivals(site, 1, 10)
    if rc != 0 or arrived != 1:
        tail = "\n".join(site.postfix_log().splitlines()[-15:])
        mlog = "\n".join(site.milters[0].log().splitlines()[-10:]) if site.milters else ""
        raise RuntimeError("%s: a test message did not get through (smtp-source rc=%s %s; arrived %d)\n"
                           "Postfix log:\n%s\nmilter log:\n%s" % (name, rc, err, arrived, tail, mlog))
    site.sink.clear()


def warm_up(site, messages, sessions, size, settle):
    if messages <= 0:
        return
    wait_quiet(site)
    site.sink.clear()
    smtp_source(site, sessions, messages, size, timeout=max(120, messages))
    wait_arrivals(site, messages, settle)


# -- reporting ------------------------------------------------------------------

def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def paired(runs, a, b, size, field, op):
    """Median over rounds of op(a's value, b's value) within the same round."""
    vals = []
    for r in sorted({x["round"] for x in runs}):
        va = [x[field] for x in runs if x["variant"] == a and x["size"] == size and x["round"] == r]
        vb = [x[field] for x in runs if x["variant"] == b and x["size"] == size and x["round"] == r]
        if va and vb and va[0] is not None and vb[0] is not None:
            v = op(va[0], vb[0])
            if v is not None:
                vals.append(v)
    return median(vals)


def ratio(x, y):
    return x / y if y else None


def fmt(v, spec, none="-"):
    return none if v is None else format(v, spec)


def null_ref(name):
    """The plain do-nothing milter on the same socket type (no NODELAY)."""
    sock = VARIANTS[name][1]
    return {"unix": "null-unix", "tcp": "null-tcp"}.get(sock)


def null_nd_ref(name):
    """The do-nothing milter on the same socket type with TCP_NODELAY where
    that applies (a unix socket has no Nagle)."""
    sock = VARIANTS[name][1]
    return {"unix": "null-unix", "tcp": "null-tcp-nd"}.get(sock)


def summarize(tp, lat, variants, sizes):
    rows = []
    for size in sizes:
        for v in variants:
            rates = [x["msgs_per_s"] for x in tp if x["variant"] == v and x["size"] == size]
            lats = [x["ms_per_msg"] for x in lat if x["variant"] == v and x["size"] == size]
            row = {"variant": v, "label": VARIANTS[v][0], "socket": VARIANTS[v][1], "size": size,
                   "msgs_per_s": median(rates), "msgs_per_s_runs": rates,
                   "ms_per_msg": median(lats), "ms_per_msg_runs": lats,
                   "vs_postfix": None, "vs_null": None, "vs_null_nodelay": None}
            if "postfix" in variants and v != "postfix":
                row["vs_postfix"] = paired(tp, v, "postfix", size, "msgs_per_s", ratio)
            ref = null_ref(v)
            if ref and ref in variants and ref != v:
                row["vs_null"] = paired(tp, v, ref, size, "msgs_per_s", ratio)
            ref = null_nd_ref(v)
            if VARIANTS[v][1] == "tcp" and ref in variants and ref != v:
                row["vs_null_nodelay"] = paired(tp, v, ref, size, "msgs_per_s", ratio)
            rows.append(row)
    return rows


def checks(tp, lat, variants, sizes):
    out = []
    for v, target in THROUGHPUT_TARGETS:
        ref = null_ref(v)
        for size in sizes:
            c = {"check": "throughput", "variant": v, "reference": ref, "size": size, "value": None,
                 "target": ">= %.2fx" % target, "min": target, "result": "SKIP"}
            if v in variants and ref in variants:
                c["value"] = paired(tp, v, ref, size, "msgs_per_s", ratio)
                c["result"] = "PASS" if c["value"] is not None and c["value"] >= target else "FAIL"
            out.append(c)
    for v in LATENCY_TARGETS:
        ref = null_nd_ref(v)
        for size in sizes:
            c = {"check": "latency", "variant": v, "reference": ref, "size": size, "value": None,
                 "target": "<= +1 ms", "result": "SKIP"}
            if v in variants and ref in variants:
                c["value"] = paired(lat, v, ref, size, "ms_per_msg", lambda a, b: a - b)
                c["result"] = "PASS" if c["value"] is not None and c["value"] <= 1.0 else "FAIL"
            out.append(c)
    return out


def print_table(rows, chk, args):
    print()
    print("Postfix + milters: %d messages per run, %d sessions, one message per connection; "
          "latency: 1 session, %d messages; median of %d interleaved rounds"
          % (args.messages, args.sessions, args.latency_messages, args.rounds))
    print("ratios are medians of per-round ratios (each variant vs the reference in the same round)")
    print()
    hdr = ("variant", "socket", "size", "msgs/s", "xPostfix", "xnull", "xnull+ND", "ms/msg")
    fmtline = "%-20s %-6s %7s %8s %9s %7s %9s %8s"
    print(fmtline % hdr)
    print("-" * 80)
    last_size = None
    for r in rows:
        if last_size is not None and r["size"] != last_size:
            print()
        last_size = r["size"]
        print(fmtline % (r["label"], r["socket"], "%dK" % (r["size"] // 1024) if r["size"] % 1024 == 0 else r["size"],
                         fmt(r["msgs_per_s"], ".1f"), fmt(r["vs_postfix"], ".2f"), fmt(r["vs_null"], ".2f"),
                         fmt(r["vs_null_nodelay"], ".2f"), fmt(r["ms_per_msg"], ".2f")))
    print()
    print("xnull: vs the do-nothing libmilter milter on the same socket type (TCP: without NODELAY, "
          "the plain libmilter floor)")
    print("xnull+ND: vs the do-nothing milter on TCP with TCP_NODELAY (sekimori sets NODELAY on TCP)")
    print()
    print("Targets:")
    for c in chk:
        size = "%dK" % (c["size"] // 1024) if c["size"] % 1024 == 0 else str(c["size"])
        if c["check"] == "throughput":
            what = "%s %s msgs/s >= %.2fx %s" % (c["variant"], size, c["min"], c["reference"])
            val = fmt(c["value"], ".2f") + "x"
        else:
            what = "%s %s ms/msg within 1 ms of %s" % (c["variant"], size, c["reference"])
            val = fmt(c["value"], "+.2f") + " ms"
        print("  %-4s %-62s %s" % (c["result"], what, val if c["value"] is not None else "(not measured)"))


# -- main -------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=2000, help="messages per throughput run (default 2000)")
    p.add_argument("--sessions", type=int, default=20, help="parallel smtp-source sessions (default 20)")
    p.add_argument("--sizes", default="10240,102400", help="message body sizes in bytes (default 10240,102400)")
    p.add_argument("--latency-messages", type=int, default=200,
                   help="messages per one-session latency run (default 200; 0 skips latency)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians over them (default 3)")
    p.add_argument("--warmup", type=int, default=300, help="untimed messages per site after start (default 300)")
    p.add_argument("--prewarm", type=int, default=40, help="untimed messages before each timed run (default 40)")
    p.add_argument("--settle", type=float, default=10.0,
                   help="seconds without a new arrival after which a run is over (default 10)")
    p.add_argument("--variants", default=",".join(ORDER),
                   help="comma-separated subset of: %s (default all)" % ", ".join(ORDER))
    p.add_argument("--quick", action="store_true",
                   help="a quick look while developing: 400 messages, 50 for latency, 2 rounds, 100 warm-up")
    p.add_argument("--json", metavar="FILE", help="write the raw results as JSON here")
    args = p.parse_args(argv)
    if args.quick:
        args.messages, args.latency_messages, args.rounds, args.warmup, args.prewarm = 400, 50, 2, 100, 20
    args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in args.variants if v not in VARIANTS]
    if bad:
        p.error("unknown variant(s): %s (known: %s)" % (", ".join(bad), ", ".join(ORDER)))
    return args


def main(argv=None):
    args = parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("bench.py needs root (the private Postfix runs with postfix -c DIR start)")
    if not os.access(SMTP_SOURCE, os.X_OK):
        sys.exit("%s not found (Postfix's smtp-source)" % SMTP_SOURCE)

    # Stopped from outside (timeout, kill): stop the sites all the same.
    signal.signal(signal.SIGTERM, lambda *a: sys.exit("bench.py: terminated"))
    signal.signal(signal.SIGHUP, lambda *a: sys.exit("bench.py: hung up"))
    sites = {}
    problems = {}
    variants = []
    tp, lat = [], []
    started = time.time()
    try:
        for v in args.variants:
            try:
                m = make_milter(v)
            except RuntimeError as e:
                log("skipping %s: %s" % (v, e))
                continue
            site = harness.Site([m] if m else [], main_cf=BENCH_MAIN_CF, name="bench-" + v)
            log("starting %s ..." % v)
            sites[v] = site
            site.start()
            check_site(site, v)
            variants.append(v)
        for v in variants:
            log("warming up %s (%d messages) ..." % (v, args.warmup))
            warm_up(sites[v], args.warmup, args.sessions, args.sizes[0], args.settle)
        for rnd in range(args.rounds):
            k = rnd % len(variants)
            order = variants[k:] + variants[:k]  # rotate: no variant always runs first
            for size in args.sizes:
                for v in order:
                    site = sites[v]
                    warm_up(site, args.prewarm, args.sessions, size, args.settle)
                    res = run_throughput(site, args.messages, args.sessions, size, args.settle)
                    res.update(round=rnd, variant=v, size=size)
                    tp.append(res)
                    note = "" if res["arrived"] == res["sent"] and res["smtp_source_rc"] == 0 else \
                        "  (!) rc=%s %s" % (res["smtp_source_rc"], res["smtp_source_output"][-200:])
                    log("round %d  %-15s %7d B  %8.1f msgs/s  %d/%d arrived%s" % (
                        rnd + 1, v, size, res["msgs_per_s"], res["arrived"], res["sent"], note))
            if args.latency_messages > 0:
                for size in args.sizes:
                    for v in order:
                        site = sites[v]
                        warm_up(site, min(args.prewarm, 10), 1, size, args.settle)
                        res = run_latency(site, args.latency_messages, size, args.settle)
                        res.update(round=rnd, variant=v, size=size)
                        lat.append(res)
                        note = "" if res["arrived"] == res["sent"] and res["smtp_source_rc"] == 0 else \
                            "  (!) rc=%s %s" % (res["smtp_source_rc"], res["smtp_source_output"][-200:])
                        log("round %d  %-15s %7d B  %8.2f ms/msg (1 session)%s" % (
                            rnd + 1, v, size, res["ms_per_msg"], note))

        for v in variants:
            warn = [l for l in sites[v].postfix_log().splitlines()
                    if ("milter" in l and ("warning" in l or "error" in l)) or " fatal:" in l or " panic:" in l]
            if warn:
                problems[v] = warn[:20]
                log("(!) %s: %d Postfix warnings about the milter, first: %s" % (v, len(warn), warn[0]))
    finally:
        for v, site in sites.items():
            log("stopping %s ..." % v)
            try:
                site.stop()
            except Exception as e:  # keep stopping the others
                log("  error stopping %s: %s" % (v, e))
        for r in REDIS:
            r.cleanup()

    rows = summarize(tp, lat, variants, args.sizes)
    chk = checks(tp, lat, variants, args.sizes)
    print_table(rows, chk, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": {k: getattr(args, k) for k in ("messages", "sessions", "sizes", "latency_messages",
                                                              "rounds", "warmup", "prewarm", "settle", "variants")},
                       "started": started, "seconds": round(time.time() - started, 1),
                       "machine": {"nproc": os.cpu_count(), "loadavg_at_end": os.getloadavg()},
                       "throughput_runs": tp, "latency_runs": lat, "summary": rows, "checks": chk,
                       "postfix_warnings": problems}, f, indent=2)
        log("raw results written to %s" % args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
