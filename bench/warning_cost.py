#!/usr/bin/env python3
"""What warning mails cost at end of data: sekimori-antivirus builds them
at end of data, one per addressee (each recipient of an inbound virus
mail, plus the admin), and a thread of its own sends them over one SMTP
session to the relay. Through a private Postfix on loopback (the relay is
the same Postfix, as in the e2e tests, so each warning is itself scanned),
one inbound message with an EICAR attachment is sent to N recipients,
--rounds times per N; printed: the median time from the end of DATA to the
server's reply, and from the end of DATA until all N + 1 warnings reached
the sink (and that per warning).

  SEKIMORI_BINDIR=build-bench python3 bench/warning_cost.py [--recipients 1,10,100] [--rounds 3]

Not a test; CI does not run it. Needs root (the private Postfix)."""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import harness  # noqa: E402
import test_antivirus as av  # noqa: E402  (the e2e test's database, conf and samples)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipients", default="1,10,100", help="comma-separated recipient counts")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    counts = [int(x) for x in args.recipients.split(",")]

    tmp = tempfile.mkdtemp(prefix="sekimori-warncost-")
    os.chmod(tmp, 0o755)
    db = av.make_database(tmp)

    def conf(port):
        return av.CONF.format(db=db, admin="av-admin@example.net", port=port, templates=os.path.join(ROOT, "conf"),
                              quarantine=os.path.join(tmp, "quarantine")).replace("log_level = debug",
                                                                                  "log_level = info")

    milter = harness.Milter("antivirus", conf(port=1))
    site = harness.Site([milter], name="warncost")
    try:
        site.start()
        milter.write_conf(conf(port=site.port))  # warnings go to this Postfix, now that its port is known
        milter.reload()
        print("%10s  %16s  %18s  %12s" % ("recipients", "end of data (s)", "all warnings (s)", "ms/warning"))
        for n in counts:
            rcpts = ["u%d@example.net" % i for i in range(n)]
            times, delivered = [], []
            for r in range(args.rounds):
                site.sink.clear()
                msgid = "<warncost-%d-%d-%s@example.org>" % (n, r, os.urandom(3).hex())
                raw = av.with_attachment(av.EICAR, "eicar.com", msgid=msgid)
                c = site.smtp()
                try:
                    c.mail("sender@example.org")
                    for a in rcpts:
                        c.rcpt(a)
                    start = time.monotonic()
                    code, text = c.data(raw)
                    times.append(time.monotonic() - start)
                finally:
                    c.quit()
                if code != 250:
                    sys.exit("end of data got %d %s" % (code, text))
                # The delivered message and every warning (N recipients + the admin).
                harness.wait_until(lambda: sum(b"X-Sekimori-Notice: antivirus" in m
                                               for m in site.sink.messages()) >= n + 1,
                                   60, "%d warning mails" % (n + 1), interval=0.01)
                delivered.append(time.monotonic() - start)
            med, all_in = statistics.median(times), statistics.median(delivered)
            print("%10d  %16.3f  %18.3f  %12.2f" % (n, med, all_in, 1000.0 * all_in / (n + 1)), flush=True)
    finally:
        site.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
