"""sekimori-ratelimit through a real Postfix (R-RATE-1 … R-RATE-7).

The default limits (100 per 5 minutes) are used as shipped, so the
boundaries tested are the real ones: 100 accepted, the 101st refused. Every
scenario runs with the memory backend and again with Redis (a private
redis-server on a loopback port). Redis-only cases: two milters (two MX
hosts) sharing one limit, and Redis going away with redis_failure accept
and tempfail.
"""

import os
import shutil
import smtplib
import tempfile
import threading
import time
import unittest

import harness

CONF = """\
[milter]
log_level = debug
[policy]
local_domains = example.net
internal_networks = 10.0.0.0/8
[control]
socket = {ctl}
[loop]
list_addresses = list@example.net
[store]
backend = {backend}
redis_address = {redis}
redis_failure = {failure}
redis_timeout = 300ms
{extra}
"""


class Session:
    """One SMTP session with smtplib: exact replies per command."""

    def __init__(self, site, xclient=None):
        self.c = smtplib.SMTP("127.0.0.1", site.port, local_hostname="client.example.org", timeout=60)
        self.c.ehlo()
        if xclient:
            code, msg = self.c.docmd("XCLIENT", xclient)
            assert code == 220, (code, msg)
            self.c.ehlo()

    def mail(self, sender):
        return self.c.mail(sender)

    def rcpt(self, r):
        code, msg = self.c.rcpt(r)
        return code, msg.decode(errors="replace")

    def data(self, msg):
        try:
            code, text = self.c.data(msg)
            return code, text.decode(errors="replace")
        except smtplib.SMTPDataError as e:
            return e.smtp_code, e.smtp_error.decode(errors="replace")

    def rset(self):
        self.c.rset()

    def close(self):
        try:
            self.c.quit()
        except Exception:
            self.c.close()

    def send(self, sender, rcpts, msg=None):
        """MAIL, RCPTs, DATA; returns (mail reply, [rcpt replies], data reply or None)."""
        m = self.mail(sender)
        replies = [self.rcpt(r) for r in rcpts]
        d = None
        if m[0] == 250 and any(code == 250 for code, _ in replies):
            d = self.data(msg or harness.make_message(frm=sender, to=rcpts[0]))
        else:
            self.rset()
        return m, replies, d


class RateLimitE2EBase:
    backend = "memory"
    failure = "accept"

    @classmethod
    def setUpClass(cls):
        # Class cleanups run even when setUpClass raises half way.
        cls.tmp = tempfile.mkdtemp(prefix="sekimori-rl-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        os.chmod(cls.tmp, 0o755)
        cls.ctl = os.path.join(cls.tmp, "ratelimit.ctl")
        cls.redis = None
        if cls.backend == "redis":
            cls.redis = harness.Redis()
            cls.addClassCleanup(cls.redis.cleanup)
            cls.redis.start()
        cls.milter = harness.Milter("ratelimit", cls.conf())
        cls.site = harness.Site([cls.milter], name="ratelimit")
        cls.site.start()
        cls.addClassCleanup(cls.site.stop)

    @classmethod
    def conf(cls, extra="", ctl=None, failure=None):
        return CONF.format(ctl=ctl or cls.ctl, backend=cls.backend,
                           redis=cls.redis.address if cls.redis else "127.0.0.1:6379",
                           failure=failure or cls.failure, extra=extra)

    def setUp(self):
        # A fresh start for every case: counters reset, default conf.
        self.configure(self.conf())
        self.uniq = os.urandom(3).hex()

    def configure(self, text):
        self.milter.write_conf(text)
        self.milter.reload()
        self.assertIn("configuration reloaded", self.milter.log().splitlines()[-1])

    def session(self, xclient=None):
        s = Session(self.site, xclient)
        self.addCleanup(s.close)
        return s

    # -- R-RATE-1 ----------------------------------------------------------
    def test_sender_101st_recipient_in_5_minutes_is_refused(self):
        sender = "alice-%s@example.net" % self.uniq
        for batch in range(2):  # 2 sessions x 50: under the session limit
            s = self.session("LOGIN=alice%s ADDR=203.0.113.7" % self.uniq)
            rcpts = ["r%d-%d@remote.example" % (batch, i) for i in range(50)]
            m, replies, d = s.send(sender, rcpts)
            self.assertEqual([c for c, _ in replies], [250] * 50)
            self.assertEqual(d[0], 250, d)
        s = self.session("LOGIN=alice%s ADDR=203.0.113.7" % self.uniq)
        s.mail(sender)
        code, text = s.rcpt("one-more@remote.example")
        self.assertEqual(code, 451)
        self.assertTrue(text.startswith("4.7.1 Service unavailable - try again later"), text)
        self.assertTrue(self.milter.log_lines(r"reason=sender key=s:%s count=100 limit=100 window=5m" % sender))
        # The admin command sees the same count, for either backend.
        r = harness.sekimori_cli("ratelimit", "status", "sender:" + sender, "-s", self.ctl)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("count=100 limit=100 window=5m", r.stdout)
        r = harness.sekimori_cli("ratelimit", "reset", "sender:" + sender, "-s", self.ctl)
        self.assertEqual(r.returncode, 0, r.stderr)
        s2 = self.session("LOGIN=alice%s ADDR=203.0.113.7" % self.uniq)
        m, replies, d = s2.send(sender, ["after-reset@remote.example"])
        self.assertEqual(replies[0][0], 250)

    def test_aborted_transaction_gives_its_count_back(self):
        sender = "bob-%s@example.net" % self.uniq
        self.configure(self.conf("[limits]\nsender_recipients = 3\n"))
        s = self.session("ADDR=10.9.9.9")
        s.mail(sender)
        for i in range(3):
            self.assertEqual(s.rcpt("x%d@remote.example" % i)[0], 250)
        s.rset()  # abort: the three come back
        m, replies, d = s.send(sender, ["y%d@remote.example" % i for i in range(3)])
        self.assertEqual([c for c, _ in replies], [250, 250, 250])
        self.assertEqual(d[0], 250)

    # -- R-RATE-2 ----------------------------------------------------------
    def test_recipient_101st_message_is_refused_for_that_recipient_only(self):
        hot = "hot-%s@example.net" % self.uniq
        for batch in range(2):
            s = self.session()
            for i in range(50):
                m, replies, d = s.send("s%d@example.org" % i, [hot])
                self.assertEqual(replies[0][0], 250, (batch, i, replies))
                self.assertEqual(d[0], 250)
        s = self.session()
        msgid = "<both-%s@example.org>" % self.uniq
        cold = "cold-%s@example.net" % self.uniq
        m, replies, d = s.send("late@example.org", [hot, cold],
                               harness.make_message(frm="late@example.org", to=cold, msgid=msgid))
        self.assertEqual(replies[0][0], 451)
        self.assertTrue(replies[0][1].startswith("4.0.0 Rate limit exceeded"), replies[0])
        self.assertEqual(replies[1][0], 250)
        self.assertEqual(d[0], 250)
        delivered = self.site.sink.wait_for(msgid)
        self.assertIn(cold.encode(), delivered)
        self.assertNotIn(("X-Rcpt-Args: <%s>" % hot).encode(), delivered)

    # -- R-RATE-4 ----------------------------------------------------------
    def test_101st_rcpt_in_a_session_is_refused(self):
        s = self.session()
        rcpts = ["u%d-%s@example.net" % (i, self.uniq) for i in range(101)]
        s.mail("many@example.org")
        replies = [s.rcpt(r) for r in rcpts]
        self.assertEqual([c for c, _ in replies[:100]], [250] * 100)
        self.assertEqual(replies[100][0], 452)
        self.assertTrue(replies[100][1].startswith("4.5.3 Too many recipients"), replies[100])

    # -- R-RATE-3 ----------------------------------------------------------
    def test_client_penalty_and_admin_reset(self):
        self.configure(self.conf("[limits]\nclient_messages = 3\nclient_penalty = 2h\n"))
        client = "198.51.100.%d" % (int(self.uniq, 16) % 200 + 20)
        for i in range(3):
            s = self.session("ADDR=%s" % client)
            m, replies, d = s.send("c@example.org", ["u@example.net"])
            self.assertEqual(d[0], 250)
        s = self.session("ADDR=%s" % client)
        code, text = s.mail("c@example.org")
        self.assertEqual(code, 450)
        self.assertTrue(text.startswith(b"4.7.1 Too many messages, try again later"), text)
        r = harness.sekimori_cli("ratelimit", "status", "client:" + client, "-s", self.ctl)
        self.assertIn("penalised=yes", r.stdout)
        self.assertEqual(harness.sekimori_cli("ratelimit", "reset", "client:" + client, "-s", self.ctl).returncode, 0)
        s = self.session("ADDR=%s" % client)
        m, replies, d = s.send("c@example.org", ["u@example.net"])
        self.assertEqual(m[0], 250)

    # -- R-RATE-5 ----------------------------------------------------------
    def test_duplicate_message_id_to_a_list_is_refused(self):
        msgid = "<list-%s@example.org>" % self.uniq
        raw = harness.make_message(to="list@example.net", msgid=msgid)
        r = self.site.swaks(to="list@example.net", data=raw)
        self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-800:])
        r = self.site.swaks(to="list@example.net", data=raw)
        self.assertEqual(r.final, ("554", "5.4.6"), r.transcript[-800:])
        self.assertIn("Duplicate message to mailing list", r.final_text)
        # The same Message-ID to an ordinary address is not a loop.
        r = self.site.swaks(to="someone@example.net", data=raw)
        self.assertEqual(r.final, ("250", "2.0.0"))

    # -- sessions at once ----------------------------------------------------
    def test_sessions_at_once_share_one_limit_exactly(self):
        """Six sessions at once, one sender, 60 recipients against a limit
        of 30, with a reload under way: exactly 30 are taken (a count that
        lost an update would let more through, one counted twice fewer),
        and the control socket says so."""
        self.configure(self.conf("[limits]\nsender_recipients = 30\n"))
        sender = "together-%s@example.net" % self.uniq
        codes, lock = [], threading.Lock()

        def client(k):
            s = Session(self.site, "ADDR=10.4.4.%d" % (k + 1))
            try:
                for i in range(10):
                    m, replies, d = s.send(sender, ["t%d-%d@remote.example" % (k, i)])
                    with lock:
                        codes.append(replies[0][0])
            finally:
                s.close()

        threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        try:
            self.milter.reload()  # the same conf: counters are kept
        finally:
            for t in threads:
                t.join()
        self.assertEqual((codes.count(250), codes.count(451), len(codes)), (30, 30, 60), codes)
        r = harness.sekimori_cli("ratelimit", "status", "sender:" + sender, "-s", self.ctl)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(" count=30 limit=30 ", r.stdout)

    # -- bad input ---------------------------------------------------------
    def test_admin_command_errors_are_clear(self):
        r = harness.sekimori_cli("ratelimit", "status", "nonsense", "-s", self.ctl)
        self.assertEqual(r.returncode, 1)
        self.assertIn("KIND:VALUE", r.stderr)
        r = harness.sekimori_cli("ratelimit", "status", "sender:a@b.example", "-s", self.tmp + "/nope.ctl")
        self.assertEqual(r.returncode, 2)
        self.assertIn("cannot connect", r.stderr)


class RateLimitMemoryE2E(RateLimitE2EBase, unittest.TestCase):
    backend = "memory"

    def test_reload_keeps_memory_counters(self):
        sender = "keep-%s@example.net" % self.uniq
        self.configure(self.conf("[limits]\nsender_recipients = 2\n"))
        s = self.session("ADDR=10.1.1.1")
        m, replies, d = s.send(sender, ["a@remote.example", "b@remote.example"])
        self.assertEqual(d[0], 250)
        self.configure(self.conf("[limits]\nsender_recipients = 2\nrecipient_messages = 99\n"))
        s = self.session("ADDR=10.1.1.1")
        s.mail(sender)
        self.assertEqual(s.rcpt("c@remote.example")[0], 451)


class RateLimitRedisE2E(RateLimitE2EBase, unittest.TestCase):
    backend = "redis"

    def test_two_milters_share_one_limit(self):
        """Two MX hosts (two Postfix + two milters) on one Redis: 3 + 3 > 5."""
        other_ctl = os.path.join(self.tmp, "other.ctl")
        limits = "[limits]\nsender_recipients = 5\n"
        self.configure(self.conf(limits))
        other = harness.Milter("ratelimit", self.conf(limits, ctl=other_ctl))
        site2 = harness.Site([other], name="ratelimit-mx2")
        site2.start()
        self.addCleanup(site2.stop)
        sender = "shared-%s@example.net" % self.uniq
        s = self.session("ADDR=10.2.2.2")
        m, replies, d = s.send(sender, ["a%d@remote.example" % i for i in range(3)])
        self.assertEqual([c for c, _ in replies], [250] * 3)
        s2 = Session(site2, "ADDR=10.2.2.2")
        self.addCleanup(s2.close)
        m, replies, d = s2.send(sender, ["b%d@remote.example" % i for i in range(3)])
        self.assertEqual([c for c, _ in replies], [250, 250, 451])

    def test_redis_down_accept_then_recovers(self):
        self.configure(self.conf("[limits]\nsender_recipients = 2\n"))
        sender = "down-%s@example.net" % self.uniq
        outages = len(self.milter.log_lines(r"redis .* unavailable"))
        self.redis.stop()
        try:
            for i in range(3):  # over the limit, but Redis is gone: mail flows
                s = self.session("ADDR=10.3.3.3")
                m, replies, d = s.send(sender, ["d%d@remote.example" % i])
                self.assertEqual(d[0], 250, d)
            # Logged once per outage, not per message.
            self.assertEqual(len(self.milter.log_lines(r"redis .* unavailable")), outages + 1,
                             self.milter.log()[-2000:])
        finally:
            self.redis.start()
        time.sleep(1.2)  # past the retry interval
        s = self.session("ADDR=10.3.3.3")
        m, replies, d = s.send(sender, ["e1@remote.example", "e2@remote.example", "e3@remote.example"])
        self.assertEqual([c for c, _ in replies], [250, 250, 451])
        self.assertTrue(self.milter.log_lines(r"reachable again"))

    def test_redis_down_tempfail(self):
        self.configure(self.conf("[limits]\nsender_recipients = 2\n", failure="tempfail"))
        self.redis.stop()
        try:
            # The first counters are hit at MAIL FROM (client, domain): the
            # tempfail comes there.
            s = self.session("ADDR=10.4.4.4")
            code, text = s.mail("t-%s@example.net" % self.uniq)
            self.assertEqual(code, 451)
            self.assertTrue(text.startswith(b"4.3.0 Rate limit service unavailable"), text)
        finally:
            self.redis.start()
        time.sleep(1.2)
        s = self.session("ADDR=10.4.4.4")
        m, replies, d = s.send("t-%s@example.net" % self.uniq, ["y@remote.example"])
        self.assertEqual(d[0], 250)


if __name__ == "__main__":
    unittest.main()
