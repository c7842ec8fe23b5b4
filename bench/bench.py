#!/usr/bin/env python3
"""Messages per second through a private Postfix, with and without milters.

    python3 bench/bench.py [--messages 2000] [--sessions 20] [--sizes 10240,102400]
                           [--latency-messages 200] [--rounds 3] [--variants ...]
                           [--antivirus [--antivirus-tcp]] [--zip] [--quick] [--json FILE]

Variants (see bench/README.md): Postfix alone; sekimori-nullmilter (a
do-nothing milter on libmilter in C, bench/nullmilter.c) on a unix socket, on
a TCP socket, and on a TCP socket with TCP_NODELAY; sekimori-sizelimit on a
unix and on a TCP socket (sekimori sets TCP_NODELAY on TCP by itself).

The antivirus comparison (issue 4, --antivirus, bench/clamav_peer.py): with
messages that carry a zip attachment (smtp-source -F, files generated here),
Postfix alone, the do-nothing milter, sekimori-antivirus and clamd +
clamav-milter, both engines on the same private signature database; plus the
peak RSS of each milter's processes.

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
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import harness  # noqa: E402
import clamav_peer  # noqa: E402

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
    # The antivirus comparison: these always send the zip messages (-F).
    "av-postfix": ("Postfix alone", "-", None, False),
    "null-unix-zip": ("nullmilter", "unix", "null", False),
    "null-tcp-zip": ("nullmilter", "tcp", "null", False),
    "antivirus-unix": ("sekimori-antivirus", "unix", "antivirus", False),
    "antivirus-tcp": ("sekimori-antivirus", "tcp", "antivirus", True),
    "clamav-milter-unix": ("clamd+clamav-milter", "unix", "clamav", False),
    "clamav-milter-tcp": ("clamd+clamav-milter", "tcp", "clamav", False),
}
# Variants that send the messages with a zip attachment whatever --zip says.
ZIP_VARIANTS = {"av-postfix", "null-unix-zip", "null-tcp-zip", "antivirus-unix", "antivirus-tcp",
                "clamav-milter-unix", "clamav-milter-tcp"}
# --antivirus selects these (--antivirus-tcp adds the TCP ones).
ANTIVIRUS_SET = ["av-postfix", "null-unix-zip", "antivirus-unix", "clamav-milter-unix"]
ANTIVIRUS_TCP_SET = ["null-tcp-zip", "antivirus-tcp", "clamav-milter-tcp"]
# sekimori-antivirus vs clamd + clamav-milter on the same socket type: the
# issue expects ~1.2x on a unix socket.
PEER_TARGETS = [("antivirus-unix", "clamav-milter-unix", 1.20), ("antivirus-tcp", "clamav-milter-tcp", 1.20)]
# Throughput targets: (variant, minimum ratio to the do-nothing milter on the
# same socket type). Latency targets apply to the sizelimit variants.
THROUGHPUT_TARGETS = [("sizelimit-unix", 0.95), ("sizelimit-tcp", 0.95), ("ratelimit-mem-unix", 0.95),
                      ("ratelimit-redis-unix", 0.90), ("antivirus-unix", 0.90), ("antivirus-tcp", 0.90)]
LATENCY_TARGETS = ["sizelimit-unix", "sizelimit-tcp"]
ORDER = list(VARIANTS)
# The default --variants: everything but the antivirus comparison.
DEFAULT_ORDER = [v for v in ORDER if v not in ZIP_VARIANTS]

# Set by main(): {size: path} of the zip message files when some variant
# uses them, and whether --zip applies them to every variant.
ZIP_FILES = {}
ZIP_ALL = False
# The antivirus comparison's shared database dir and private dirs, removed at
# the end.
AV = {"db": None, "db_note": None, "dirs": [], "temp_base": None}

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
    if kind == "antivirus":
        binary = harness.milter_binary("antivirus")
        q = tempfile.mkdtemp(prefix="sekimori-bench-quarantine-")
        os.chmod(q, 0o700)
        AV["dirs"].append(q)
        conf = clamav_peer.antivirus_conf(av_database(), q, os.path.join(ROOT, "conf"), temp_dir=av_temp_dir())
        return clamav_peer.SekimoriAntivirus(conf, transport=transport, binary=binary)
    if kind == "clamav":
        for b in (clamav_peer.CLAMD, clamav_peer.CLAMAV_MILTER):
            if not os.access(b, os.X_OK):
                raise RuntimeError("%s not installed" % b)
        return clamav_peer.ClamavMilter(av_database(), transport=transport, temp_dir=av_temp_dir())
    if kind == "ratelimit-redis":
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server not installed")
        r = harness.Redis()
        r.start()
        REDIS.append(r)
        return harness.Milter("ratelimit", RATELIMIT_CONF.format(backend="redis", redis=r.address),
                              transport=transport)
    return None


def av_temp_dir():
    """A private dir under --av-temp-dir for one engine's temp files, or None
    (each engine's default: ours $TMPDIR or /tmp, clamd a dir under /tmp)."""
    if AV["temp_base"] is None:
        return None
    d = tempfile.mkdtemp(prefix="sekimori-bench-avtmp-", dir=AV["temp_base"])
    os.chmod(d, 0o700)
    AV["dirs"].append(d)
    return d


def av_database():
    """The signature database both engines use, made on first use."""
    if AV["db"] is None:
        AV["db"], AV["db_note"] = clamav_peer.make_database()
        AV["dirs"].append(AV["db"])
        log(AV["db_note"])
    return AV["db"]


def uses_zip(name):
    return ZIP_ALL or name in ZIP_VARIANTS


def msgfile(name, size):
    """The -F message file for variant `name` at `size`, or None for -l."""
    return ZIP_FILES.get(size) if uses_zip(name) else None


def milter_pids(site):
    """The pids whose process trees are the site's milters (clamd and
    clamav-milter for ClamAV)."""
    pids = []
    for m in site.milters:
        if hasattr(m, "root_pids"):
            pids += m.root_pids()
        elif m.proc is not None:
            pids.append(m.proc.pid)
    return pids


def milter_memory(site):
    """Peak RSS etc. of the site's milter processes and their descendants."""
    if not site.milters:
        return None
    return clamav_peer.process_tree_memory(milter_pids(site))


def cpu_now(site):
    """(machine busy CPU s, the milters' CPU s or None): read before and
    after a run, their differences are what the run cost."""
    return clamav_peer.machine_cpu(), clamav_peer.process_tree_cpu(milter_pids(site)) if site.milters else None


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


def smtp_source(site, sessions, messages, size, timeout, msgfile=None):
    """smtp-source with a generated body of `size` bytes (-l), or with the
    pre-formatted message in `msgfile` (-F) when given."""
    body = ["-F", msgfile] if msgfile else ["-l", str(size)]
    cmd = [SMTP_SOURCE, "-s", str(sessions), "-m", str(messages)] + body + ["-M", HELO, "-f", FROM,
                                                                            "-t", TO, "127.0.0.1:%d" % site.port]
    t0 = time.time()
    m0 = time.monotonic()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        rc, err = r.returncode, (r.stdout + r.stderr).strip()
    except subprocess.TimeoutExpired as e:
        rc, err = "timeout", ("%s" % (e.stderr or "")).strip()
    return t0, time.monotonic() - m0, rc, err


def run_throughput(site, messages, sessions, size, settle, msgfile=None):
    wait_quiet(site)
    site.sink.clear()
    cpu0 = cpu_now(site)
    t0, elapsed, rc, err = smtp_source(site, sessions, messages, size, timeout=max(120, messages), msgfile=msgfile)
    arrived, last = wait_arrivals(site, messages, settle)
    cpu1 = cpu_now(site)
    span = (last - t0) if (last is not None and arrived) else None
    rate = arrived / span if span and span > 0 else 0.0

    def per_msg(a, b):  # CPU ms per arrived message
        return round((b - a) * 1000.0 / arrived, 3) if arrived and a is not None and b is not None else None
    return {"sent": messages, "arrived": arrived, "smtp_source_seconds": round(elapsed, 4),
            "seconds_to_last_arrival": round(span, 4) if span else None, "msgs_per_s": round(rate, 2),
            "machine_cpu_ms_per_msg": per_msg(cpu0[0], cpu1[0]), "milter_cpu_ms_per_msg": per_msg(cpu0[1], cpu1[1]),
            "smtp_source_rc": rc, "smtp_source_output": err[-2000:] if err else ""}


def run_latency(site, messages, size, settle, msgfile=None):
    wait_quiet(site)
    site.sink.clear()
    t0, elapsed, rc, err = smtp_source(site, 1, messages, size, timeout=max(120, messages * 2), msgfile=msgfile)
    arrived, _ = wait_arrivals(site, messages, settle)
    return {"sent": messages, "arrived": arrived, "smtp_source_seconds": round(elapsed, 4),
            "ms_per_msg": round(elapsed * 1000.0 / messages, 3), "smtp_source_rc": rc,
            "smtp_source_output": err[-2000:] if err else ""}


def check_site(site, name, msgfile=None):
    """One message must get through before anything is timed: a Postfix that
    cannot start smtpd or a milter that tempfails would otherwise only show up
    as smtp-source hanging or a rate of 0."""
    site.sink.clear()
    t0, elapsed, rc, err = smtp_source(site, 1, 1, 1024, timeout=30, msgfile=msgfile)
    arrived, _ = wait_arrivals(site, 1, 10)
    if rc != 0 or arrived != 1:
        tail = "\n".join(site.postfix_log().splitlines()[-15:])
        mlog = "\n".join(site.milters[0].log().splitlines()[-10:]) if site.milters else ""
        raise RuntimeError("%s: a test message did not get through (smtp-source rc=%s %s; arrived %d)\n"
                           "Postfix log:\n%s\nmilter log:\n%s" % (name, rc, err, arrived, tail, mlog))
    site.sink.clear()


def warm_up(site, messages, sessions, size, settle, msgfile=None):
    if messages <= 0:
        return
    wait_quiet(site)
    site.sink.clear()
    smtp_source(site, sessions, messages, size, timeout=max(120, messages), msgfile=msgfile)
    wait_arrivals(site, messages, settle)


# -- reporting ------------------------------------------------------------------

def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def per_round(runs, a, b, size, field, op):
    """op(a's value, b's value) within each round, in round order."""
    vals = []
    for r in sorted({x["round"] for x in runs}):
        va = [x[field] for x in runs if x["variant"] == a and x["size"] == size and x["round"] == r]
        vb = [x[field] for x in runs if x["variant"] == b and x["size"] == size and x["round"] == r]
        if va and vb and va[0] is not None and vb[0] is not None:
            v = op(va[0], vb[0])
            if v is not None:
                vals.append(v)
    return vals


def paired(runs, a, b, size, field, op):
    """Median over rounds of op(a's value, b's value) within the same round."""
    return median(per_round(runs, a, b, size, field, op))


def ratio(x, y):
    return x / y if y else None


def fmt(v, spec, none="-"):
    return none if v is None else format(v, spec)


def _same_messages(name, cands, variants):
    """The first of cands that sends the same messages as `name` and is among
    variants (or the first that sends the same messages at all)."""
    same = [c for c in cands if uses_zip(c) == uses_zip(name)]
    for c in same:
        if variants is None or c in variants:
            return c
    return same[0] if same else None


def null_ref(name, variants=None):
    """The plain do-nothing milter on the same socket type (no NODELAY), with
    the same messages (-l or the zip files)."""
    sock = VARIANTS[name][1]
    cands = {"unix": ["null-unix-zip", "null-unix"], "tcp": ["null-tcp-zip", "null-tcp"]}.get(sock)
    return _same_messages(name, cands, variants) if cands else None


def null_nd_ref(name, variants=None):
    """The do-nothing milter on the same socket type with TCP_NODELAY where
    that applies (a unix socket has no Nagle)."""
    sock = VARIANTS[name][1]
    cands = {"unix": ["null-unix-zip", "null-unix"], "tcp": ["null-tcp-nd"]}.get(sock)
    return _same_messages(name, cands, variants) if cands else None


def postfix_ref(name, variants=None):
    return _same_messages(name, ["av-postfix", "postfix"], variants)


def summarize(tp, lat, variants, sizes):
    rows = []
    for size in sizes:
        for v in variants:
            rates = [x["msgs_per_s"] for x in tp if x["variant"] == v and x["size"] == size]
            lats = [x["ms_per_msg"] for x in lat if x["variant"] == v and x["size"] == size]
            row = {"variant": v, "label": VARIANTS[v][0], "socket": VARIANTS[v][1], "size": size,
                   "msgs_per_s": median(rates), "msgs_per_s_runs": rates,
                   "machine_cpu_ms_per_msg": median([x.get("machine_cpu_ms_per_msg") for x in tp
                                                     if x["variant"] == v and x["size"] == size]),
                   "milter_cpu_ms_per_msg": median([x.get("milter_cpu_ms_per_msg") for x in tp
                                                    if x["variant"] == v and x["size"] == size]),
                   "ms_per_msg": median(lats), "ms_per_msg_runs": lats,
                   "vs_postfix": None, "vs_null": None, "vs_null_nodelay": None}
            row["messages"] = "zip" if uses_zip(v) else "generated"
            ref = postfix_ref(v, variants)
            if ref in variants and ref != v:
                row["vs_postfix"] = paired(tp, v, ref, size, "msgs_per_s", ratio)
            ref = null_ref(v, variants)
            if ref and ref in variants and ref != v:
                row["vs_null"] = paired(tp, v, ref, size, "msgs_per_s", ratio)
            ref = null_nd_ref(v, variants)
            if VARIANTS[v][1] == "tcp" and ref in variants and ref != v:
                row["vs_null_nodelay"] = paired(tp, v, ref, size, "msgs_per_s", ratio)
            rows.append(row)
    return rows


def checks(tp, lat, variants, sizes):
    out = []
    for v, target in THROUGHPUT_TARGETS:
        ref = null_ref(v, variants)
        for size in sizes:
            c = {"check": "throughput", "variant": v, "reference": ref, "size": size, "value": None,
                 "target": ">= %.2fx" % target, "min": target, "result": "SKIP"}
            if v in variants and ref in variants:
                c["rounds"] = per_round(tp, v, ref, size, "msgs_per_s", ratio)
                c["value"] = median(c["rounds"])
                c["result"] = "PASS" if c["value"] is not None and c["value"] >= target else "FAIL"
            out.append(c)
    for v, peer, target in PEER_TARGETS:
        for size in sizes:
            c = {"check": "peer", "variant": v, "reference": peer, "size": size, "value": None,
                 "target": ">= %.2fx (expected, issue 4)" % target, "min": target, "result": "SKIP"}
            if v in variants and peer in variants:
                c["rounds"] = per_round(tp, v, peer, size, "msgs_per_s", ratio)
                c["value"] = median(c["rounds"])
                c["result"] = "PASS" if c["value"] is not None and c["value"] >= target else "FAIL"
            out.append(c)
    for v in LATENCY_TARGETS:
        ref = null_nd_ref(v, variants)
        for size in sizes:
            c = {"check": "latency", "variant": v, "reference": ref, "size": size, "value": None,
                 "target": "<= +1 ms", "result": "SKIP"}
            if v in variants and ref in variants:
                c["value"] = paired(lat, v, ref, size, "ms_per_msg", lambda a, b: a - b)
                c["result"] = "PASS" if c["value"] is not None and c["value"] <= 1.0 else "FAIL"
            out.append(c)
    for c in out:
        if c["value"] is None:
            c["result"] = "SKIP"  # not measured (e.g. --latency-messages 0), neither met nor missed
    return out


def spread(check):
    """The per-round ratios behind a median, when there is more than one:
    how far apart the rounds were tells whether a target is met or within
    this machine's noise."""
    rounds = check.get("rounds") or []
    return " (rounds: %s)" % " ".join("%.2f" % r for r in rounds) if len(rounds) > 1 else ""


def size_label(size, zipped=False):
    s = "%dK" % (size // 1024) if size % 1024 == 0 else str(size)
    return s + " zip" if zipped else s


def print_cpu(rows):
    """Where the CPU goes: on two cores the throughput runs are CPU-bound, so
    every millisecond a milter spends per message is taken from Postfix."""
    if not any(r["machine_cpu_ms_per_msg"] is not None for r in rows):
        return
    print()
    print("CPU per message in the throughput runs (medians over rounds): the whole machine (Postfix, "
          "smtp-source, smtp-sink, milter), and the milter's processes alone")
    fmtline = "%-20s %-6s %8s %11s %10s %10s %10s"
    print(fmtline % ("variant", "socket", "size", "machine ms", "+vs null", "budget", "milter ms"))
    targets = dict(THROUGHPUT_TARGETS)
    last_size = None
    for r in rows:
        if last_size is not None and r["size"] != last_size:
            print()
        last_size = r["size"]
        ref = null_ref(r["variant"], [x["variant"] for x in rows])
        ref_row = next((x for x in rows if x["variant"] == ref and x["size"] == r["size"]), None)
        machine, milter = r["machine_cpu_ms_per_msg"], r["milter_cpu_ms_per_msg"]
        extra = budget = None
        if ref_row is not None and ref_row is not r and None not in (machine, ref_row["machine_cpu_ms_per_msg"]):
            extra = machine - ref_row["machine_cpu_ms_per_msg"]
            if r["variant"] in targets:  # x the rate takes 1/x the CPU per message
                budget = ref_row["machine_cpu_ms_per_msg"] * (1.0 / targets[r["variant"]] - 1.0)
        print(fmtline % (r["label"], r["socket"], size_label(r["size"], r["messages"] == "zip"),
                         fmt(machine, ".2f"), fmt(extra, "+.2f"), fmt(budget, "+.2f"), fmt(milter, ".2f")))
    print("machine = busy CPU of all cores (/proc/stat, without idle and iowait) / messages arrived; "
          "+vs null = more than the do-nothing milter")
    print("budget = what +vs null may be for the variant's throughput target, where the run is CPU-bound "
          "(its rate x its machine CPU per message = the cores: at 0.90x, 1/0.90 - 1 of the do-nothing milter's)")
    print("milter = user + system CPU of the milter's processes and their children (/proc/PID/stat)")


def print_table(rows, chk, args, memory=None, notes=()):
    print()
    print("Postfix + milters: %d messages per run, %d sessions, one message per connection; "
          "latency: 1 session, %d messages; median of %d interleaved rounds"
          % (args.messages, args.sessions, args.latency_messages, args.rounds))
    print("ratios are medians of per-round ratios (each variant vs the reference in the same round)")
    for n in notes:
        print(n)
    print()
    hdr = ("variant", "socket", "size", "msgs/s", "xPostfix", "xnull", "xnull+ND", "ms/msg")
    fmtline = "%-20s %-6s %8s %8s %9s %7s %9s %8s"
    print(fmtline % hdr)
    print("-" * 80)
    last_size = None
    for r in rows:
        if last_size is not None and r["size"] != last_size:
            print()
        last_size = r["size"]
        print(fmtline % (r["label"], r["socket"], size_label(r["size"], r["messages"] == "zip"),
                         fmt(r["msgs_per_s"], ".1f"), fmt(r["vs_postfix"], ".2f"), fmt(r["vs_null"], ".2f"),
                         fmt(r["vs_null_nodelay"], ".2f"), fmt(r["ms_per_msg"], ".2f")))
    print()
    print("xnull: vs the do-nothing libmilter milter on the same socket type (TCP: without NODELAY, "
          "the plain libmilter floor)")
    print("xnull+ND: vs the do-nothing milter on TCP with TCP_NODELAY (sekimori sets NODELAY on TCP)")
    if any(r["messages"] == "zip" for r in rows):
        print("zip: smtp-source -F with a message carrying a zip attachment of about that total size "
              "(xPostfix and xnull against the variants sending the same messages)")
    print_cpu(rows)
    mem = [(v, m) for v, m in (memory or {}).items() if m]
    if mem:
        print()
        print("Milter memory at the end of the run: the milter process and all its descendants "
              "(clamd + clamav-milter for ClamAV)")
        print("%-20s %-6s %6s %14s %12s %12s" % ("variant", "socket", "procs", "peak RSS sum", "RSS sum", "PSS sum"))
        for v, m in mem:
            print("%-20s %-6s %6d %10.1f MiB %8.1f MiB %8.1f MiB" % (
                VARIANTS[v][0], VARIANTS[v][1], m["count"], m["vmhwm_kb_sum"] / 1024.0, m["vmrss_kb_sum"] / 1024.0,
                m["pss_kb_sum"] / 1024.0))
        print("peak RSS sum = sum of VmHWM over the processes (pages shared copy-on-write between them "
              "counted once per process); PSS splits shared pages")
    print()
    print("Targets:")
    shown = [c for c in chk if c["result"] != "SKIP" or c["variant"] in args.variants]
    if not shown:
        print("  (none for the selected variants)")
    for c in shown:
        size = "%dK" % (c["size"] // 1024) if c["size"] % 1024 == 0 else str(c["size"])
        if c["check"] == "throughput":
            what = "%s %s msgs/s >= %.2fx %s" % (c["variant"], size, c["min"], c["reference"])
            val = fmt(c["value"], ".2f") + "x" + spread(c)
        elif c["check"] == "peer":
            what = "%s %s msgs/s >= %.2fx %s (expected)" % (c["variant"], size, c["min"], c["reference"])
            val = fmt(c["value"], ".2f") + "x" + spread(c)
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
    p.add_argument("--variants", default=None,
                   help="comma-separated subset of: %s (default: %s)" % (", ".join(ORDER), ", ".join(DEFAULT_ORDER)))
    p.add_argument("--antivirus", action="store_true",
                   help="the antivirus comparison: %s (plus any --variants)" % ", ".join(ANTIVIRUS_SET))
    p.add_argument("--antivirus-tcp", action="store_true",
                   help="with --antivirus: also %s" % ", ".join(ANTIVIRUS_TCP_SET))
    p.add_argument("--av-temp-dir", metavar="DIR",
                   help="both engines (sekimori-antivirus engine.temp_dir, clamd TemporaryDirectory) write a "
                        "scan's temp files to private dirs under DIR, e.g. /dev/shm for a tmpfs; default: "
                        "each engine's own (/tmp)")
    p.add_argument("--zip", action="store_true",
                   help="send the messages with a zip attachment (smtp-source -F) in every variant, not "
                        "only in the antivirus ones")
    p.add_argument("--quick", action="store_true",
                   help="a quick look while developing: 400 messages, 50 for latency, 2 rounds, 100 warm-up")
    p.add_argument("--json", metavar="FILE", help="write the raw results as JSON here")
    args = p.parse_args(argv)
    if args.quick:
        args.messages, args.latency_messages, args.rounds, args.warmup, args.prewarm = 400, 50, 2, 100, 20
    args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    given = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else []
    if args.antivirus or args.antivirus_tcp:
        av = ANTIVIRUS_SET + (ANTIVIRUS_TCP_SET if args.antivirus_tcp else [])
        args.variants = av + [v for v in given if v not in av]
    else:
        args.variants = given or list(DEFAULT_ORDER)
    bad = [v for v in args.variants if v not in VARIANTS]
    if bad:
        p.error("unknown variant(s): %s (known: %s)" % (", ".join(bad), ", ".join(ORDER)))
    return args


def main(argv=None):
    global ZIP_ALL
    args = parse_args(argv)
    ZIP_ALL = args.zip
    if args.av_temp_dir:
        if not os.path.isdir(args.av_temp_dir):
            sys.exit("--av-temp-dir %s: not a directory" % args.av_temp_dir)
        AV["temp_base"] = args.av_temp_dir
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
    memory = {}
    notes = []
    msg_dir = None
    started = time.time()
    try:
        if any(uses_zip(v) for v in args.variants):
            msg_dir, files, mnotes = clamav_peer.make_message_files(args.sizes)
            ZIP_FILES.update(files)
            notes.append("zip messages: " + "; ".join(mnotes))
            if AV["temp_base"]:
                notes.append("scan temp files (both engines): under %s" % AV["temp_base"])
            log(notes[-1])
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
            check_site(site, v, msgfile(v, args.sizes[0]))
            if VARIANTS[v][2] in ("antivirus", "clamav"):
                verdict = clamav_peer.check_scanner(site, v, ZIP_FILES[args.sizes[0]])
                log("  %s: clean zip delivered with X-Virus-*; EICAR in a zip %s" % (v, verdict))
            variants.append(v)
        if AV["db_note"]:
            notes.append(AV["db_note"] + " (both engines use the same dir)")
        for v in variants:
            log("warming up %s (%d messages) ..." % (v, args.warmup))
            warm_up(sites[v], args.warmup, args.sessions, args.sizes[0], args.settle, msgfile(v, args.sizes[0]))
        for rnd in range(args.rounds):
            k = rnd % len(variants)
            order = variants[k:] + variants[:k]  # rotate: no variant always runs first
            for size in args.sizes:
                for v in order:
                    site = sites[v]
                    warm_up(site, args.prewarm, args.sessions, size, args.settle, msgfile(v, size))
                    res = run_throughput(site, args.messages, args.sessions, size, args.settle, msgfile(v, size))
                    res.update(round=rnd, variant=v, size=size)
                    tp.append(res)
                    note = "" if res["arrived"] == res["sent"] and res["smtp_source_rc"] == 0 else \
                        "  (!) rc=%s %s" % (res["smtp_source_rc"], res["smtp_source_output"][-200:])
                    log("round %d  %-18s %7d B  %8.1f msgs/s  %d/%d arrived%s" % (
                        rnd + 1, v, size, res["msgs_per_s"], res["arrived"], res["sent"], note))
            if args.latency_messages > 0:
                for size in args.sizes:
                    for v in order:
                        site = sites[v]
                        warm_up(site, min(args.prewarm, 10), 1, size, args.settle, msgfile(v, size))
                        res = run_latency(site, args.latency_messages, size, args.settle, msgfile(v, size))
                        res.update(round=rnd, variant=v, size=size)
                        lat.append(res)
                        note = "" if res["arrived"] == res["sent"] and res["smtp_source_rc"] == 0 else \
                            "  (!) rc=%s %s" % (res["smtp_source_rc"], res["smtp_source_output"][-200:])
                        log("round %d  %-18s %7d B  %8.2f ms/msg (1 session)%s" % (
                            rnd + 1, v, size, res["ms_per_msg"], note))

        for v in variants:
            memory[v] = milter_memory(sites[v])
            if memory[v]:
                log("%s: milter processes %d, peak RSS sum %.1f MiB" % (v, memory[v]["count"],
                                                                        memory[v]["vmhwm_kb_sum"] / 1024.0))
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
        if os.environ.get("SEKIMORI_KEEP") != "1":
            for d in AV["dirs"] + ([msg_dir] if msg_dir else []):
                shutil.rmtree(d, ignore_errors=True)

    rows = summarize(tp, lat, variants, args.sizes)
    chk = checks(tp, lat, variants, args.sizes)
    print_table(rows, chk, args, memory, notes)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": {k: getattr(args, k) for k in ("messages", "sessions", "sizes", "latency_messages",
                                                              "rounds", "warmup", "prewarm", "settle", "variants",
                                                              "zip")},
                       "notes": notes, "milter_memory": memory,
                       "started": started, "seconds": round(time.time() - started, 1),
                       "machine": {"nproc": os.cpu_count(), "loadavg_at_end": os.getloadavg()},
                       "throughput_runs": tp, "latency_runs": lat, "summary": rows, "checks": chk,
                       "postfix_warnings": problems}, f, indent=2)
        log("raw results written to %s" % args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
