#!/usr/bin/env python3
"""What libclamav costs per message in sekimori-antivirus's scanner pool,
without Postfix: CPU and wall time per scan (one worker, one file after the
other, bench/scan_cost.cpp), for zip-attachment messages of one size:

  same attachment   every message carries the same zip and differs only in
                    a header, as bench.py's smtp-source -F messages do once
                    Postfix has added its Received line. libclamav's cache
                    of clean files (keyed by MD5) then skips the zip and its
                    members from the second message on: only the raw mail
                    and its MIME parse cost anything.
  distinct          every message carries a zip of its own, as real mail
                    does: libclamav decodes, unzips and scans everything.

Each set is scanned with the temp files in each --temp-dirs directory.

  SEKIMORI_BINDIR=build-bench python3 bench/scan_cost.py [--size 102400] [--count 300]

Not a test; CI does not run it."""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))  # clamav_peer imports harness
sys.path.insert(0, os.path.join(ROOT, "bench"))
import clamav_peer  # noqa: E402


def write_sets(d, size, count):
    same = os.path.join(d, "same")
    distinct = os.path.join(d, "distinct")
    os.makedirs(same)
    os.makedirs(distinct)
    base = clamav_peer.make_zip_message(size)[0]
    for i in range(count):
        with open(os.path.join(same, "m%05d.eml" % i), "wb") as f:
            f.write(b"Received: from client%d.example by mx.example with ESMTP id Q%08d\n" % (i, i) + base)
        with open(os.path.join(distinct, "m%05d.eml" % i), "wb") as f:
            f.write(clamav_peer.make_zip_message(size, seed=100000 + i)[0])
    return [("same attachment", same), ("distinct", distinct)]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=102400, help="message size in bytes [102400]")
    p.add_argument("--count", type=int, default=300, help="messages per set [300]")
    p.add_argument("--temp-dirs", default="/tmp,/dev/shm",
                   help="comma-separated directories for libclamav's temp files [/tmp,/dev/shm]")
    args = p.parse_args()
    tool = os.path.join(os.environ.get("SEKIMORI_BINDIR", os.path.join(ROOT, "build")), "bench", "sekimori-scan-cost")
    if not os.access(tool, os.X_OK):
        sys.exit("%s missing: cmake --build BUILD --target sekimori-scan-cost" % tool)
    work = tempfile.mkdtemp(prefix="sekimori-scan-cost-")
    db, note = clamav_peer.make_database()
    try:
        sets = write_sets(work, args.size, args.count)
        print("%d messages of %d B per set; %s" % (args.count, args.size, note))
        print("%-16s %-10s %14s %15s  %s" % ("set", "temp dir", "CPU ms/scan", "wall ms/scan", "verdicts"))
        for label, d in sets:
            files = sorted(os.path.join(d, f) for f in os.listdir(d))
            for temp_base in args.temp_dirs.split(","):
                temp = tempfile.mkdtemp(prefix="sekimori-scan-cost-tmp-", dir=temp_base)
                try:
                    out = subprocess.run([tool, db, temp] + files, check=True, capture_output=True,
                                         text=True).stdout.split()
                finally:
                    shutil.rmtree(temp, ignore_errors=True)
                fields = dict(zip(out[0::2], out[1::2]))
                verdicts = " ".join(out[out.index("verdicts") + 1:])
                print("%-16s %-10s %14s %15s  %s" % (label, temp_base, fields["cpu_ms_per_scan"],
                                                     fields["wall_ms_per_scan"], verdicts))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(db, ignore_errors=True)


if __name__ == "__main__":
    main()
