"""sekimori-sizelimit through a real Postfix (R-SIZE-1 … R-SIZE-6, R-OPS-4).

One private Postfix for the whole module; each test writes the milter's conf
and reloads it with SIGUSR1 (which is itself under test), then sends mail
with swaks (or smtplib where swaks cannot send SIZE=) and checks the exact
reply and, for accepted mail, what reached the sink.
"""

import gzip
import io
import lzma
import os
import re
import signal
import smtplib
import time
import unittest
import zipfile

import harness

BASE_CONF = """\
[milter]
log_level = debug
[policy]
local_domains = example.net big.example
internal_networks = 10.0.0.0/8
[limits]
max_message_size = {size}
{limits}
{extra}
"""


def brief(transcript, keep=1500):
    """The SMTP dialogue without the message text, for failure messages."""
    lines = [l for l in transcript.splitlines() if not l.startswith(" -> ") or len(l) < 60]
    text = "\n".join(l for l in lines if not l.startswith(" -> ") or l[4:8].isupper())
    return text[-keep:]


def conf(size="100k", limits="", extra=""):
    return BASE_CONF.format(size=size, limits=limits, extra=extra)


def zip_bytes(entries):
    """A zip held in memory: entries = [(name, bytes or nested-zip bytes)]."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            z.writestr(name, data)
    return buf.getvalue()


def lzma_alone(data, dictionary, lc=3):
    """`data` as a .lzma file (xz --format=lzma) written with `lc`, whose
    header declares `dictionary` bytes of dictionary (any size decodes it:
    a match never reaches back further than the bytes written)."""
    packed = bytearray(lzma.compress(data, format=lzma.FORMAT_ALONE,
                                     filters=[{"id": lzma.FILTER_LZMA1, "lc": lc, "lp": 0}]))
    packed[1:5] = dictionary.to_bytes(4, "little")
    return bytes(packed)


def mime_with_attachment(payload, filename="a.zip", ctype="application/zip", msgid=None, extra_parts=0):
    import base64
    boundary = "=_sekimori_boundary"
    b64 = base64.encodebytes(payload).decode().replace("\n", "\r\n")
    parts = ["--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nsee attachment\r\n" % boundary]
    for i in range(1 + extra_parts):
        name = filename if i == 0 else "extra%d.bin" % i
        parts.append("--%s\r\nContent-Type: %s; name=\"%s\"\r\nContent-Transfer-Encoding: base64\r\n"
                     "Content-Disposition: attachment; filename=\"%s\"\r\n\r\n%s" % (boundary, ctype, name, name, b64))
    body = "".join(parts) + "--%s--\r\n" % boundary
    return harness.make_message(subject="attachment", msgid=msgid, body=body,
                                headers=["MIME-Version: 1.0",
                                         "Content-Type: multipart/mixed; boundary=\"%s\"" % boundary])


class SizeLimitE2E(unittest.TestCase):
    site = None
    milter = None

    @classmethod
    def setUpClass(cls):
        cls.milter = harness.Milter("sizelimit", conf())
        cls.site = harness.Site([cls.milter], name="sizelimit")
        cls.site.start()

    @classmethod
    def tearDownClass(cls):
        cls.site.stop()

    def configure(self, text):
        self.milter.write_conf(text)
        self.milter.reload()
        self.assertIn("configuration reloaded", self.milter.log().splitlines()[-1])

    def setUp(self):
        if self.milter.proc is None or self.milter.proc.poll() is not None:
            self.milter.start()
        self.configure(conf())

    def assertReply(self, result, code, xcode, text=None):
        self.assertEqual(result.final, (code, xcode), brief(result.transcript))
        if text:
            self.assertIn(text, result.final_text)

    def send_raw(self, data, **kw):
        return self.site.swaks(data=data, **kw)

    # -- R-SIZE-1: size ---------------------------------------------------
    def test_small_message_is_delivered_unchanged(self):
        msgid = "<small-%s@sekimori.test>" % os.urandom(4).hex()
        body = "line one\r\nこんにちは is not ASCII but 8-bit passes\r\n"
        raw = harness.make_message(msgid=msgid, body=body)
        r = self.send_raw(raw)
        self.assertReply(r, "250", "2.0.0")
        delivered = self.site.sink.wait_for(msgid).replace(b"\r\n", b"\n")
        # smtp-sink's dump adds blank lines after the message; everything the
        # client sent (headers and body) must follow Postfix's Received: as is.
        sent = raw.replace(b"\r\n", b"\n")
        self.assertEqual(delivered.rstrip(b"\n")[-len(sent.rstrip(b"\n")):], sent.rstrip(b"\n"))

    def test_declared_size_is_refused_at_mail_from(self):
        limit = 100 * 1024
        c = self.site.smtp()
        try:
            code, msg = c.mail("sender@example.org", ["SIZE=%d" % (limit + 1)])
            self.assertEqual(code, 552, msg)
            self.assertTrue(msg.startswith(b"5.3.4 Message size exceeds fixed maximum message size"), msg)
            c.rset()
            code, msg = c.mail("sender@example.org", ["SIZE=%d" % limit])
            self.assertEqual(code, 250, msg)
        finally:
            c.close()
        self.assertTrue(self.milter.log_lines(r"action=reject stage=mail reason=size value=%d limit=%d" % (limit + 1, limit)))

    def _size_of_last_accept(self):
        lines = self.milter.log_lines(r"action=accept stage=eom")
        return int(re.search(r" size=(\d+)", lines[-1]).group(1))

    def test_received_bytes_boundary(self):
        """limit accepted, limit+1 refused, on the bytes actually received
        (no SIZE= declared). The header bytes Postfix adds are measured with
        a probe, then each message is sized to land exactly on the boundary;
        the milter's own log line proves where it landed."""
        limit = 100 * 1024
        line = b"x" * 78 + b"\r\n"
        def message(body_len):
            body = (line * (body_len // len(line) + 1))[:body_len - 2] + b"\r\n"
            return harness.make_message(subject="boundary", msgid="<b-%s@sekimori.test>" % os.urandom(4).hex(),
                                        body=body)
        probe_body = 1000
        r = self.send_raw(message(probe_body))
        self.assertReply(r, "250", "2.0.0")
        header_bytes = self._size_of_last_accept() - probe_body
        for attempt in range(3):
            r = self.send_raw(message(limit - header_bytes))
            self.assertReply(r, "250", "2.0.0")
            got = self._size_of_last_accept()
            if got == limit:
                break
            header_bytes += got - limit  # the queue ID grew or shrank by a character
        self.assertEqual(got, limit)
        for attempt in range(3):
            r = self.send_raw(message(limit - header_bytes + 1))
            rejected = self.milter.log_lines(r"action=reject stage=eom reason=size value=(\d+) limit=%d" % limit)
            value = int(re.search(r"value=(\d+)", rejected[-1]).group(1)) if rejected and r.final[0] == "552" else None
            if value == limit + 1:
                break
            header_bytes += (value or limit + 1) - (limit + 1)
        self.assertReply(r, "552", "5.3.4", "Message size exceeds fixed maximum message size")
        self.assertEqual(value, limit + 1)

    # -- R-SIZE-2: direction and domain overrides -------------------------
    def test_outbound_and_domain_overrides(self):
        self.configure(conf(size="100k", extra="[outbound]\nmax_message_size = 300k\n"
                                              "[domain big.example]\nmax_message_size = 300k\n"))
        body = ("y" * 98 + "\r\n") * 1500  # ~150 KB
        raw = harness.make_message(body=body)
        # Inbound to an ordinary local domain: the global 100k.
        r = self.send_raw(raw, to="user@example.net", xclient="ADDR=203.0.113.5")
        self.assertReply(r, "552", "5.3.4")
        # Inbound to the domain with its own limit.
        r = self.send_raw(raw, to="user@big.example", xclient="ADDR=203.0.113.5")
        self.assertReply(r, "250", "2.0.0")
        # Outbound from an internal network.
        r = self.send_raw(raw, to="someone@remote.example", xclient="ADDR=10.1.2.3")
        self.assertReply(r, "250", "2.0.0")
        # Outbound from an authenticated user (XCLIENT LOGIN sets {auth_authen}).
        r = self.send_raw(raw, to="someone@remote.example", xclient="ADDR=203.0.113.9 LOGIN=alice")
        self.assertReply(r, "250", "2.0.0")
        self.assertTrue(self.milter.log_lines(r"action=accept .*direction=outbound"))
        # One message to both a 100k and a 300k recipient must fit both.
        r = self.send_raw(raw, to=["user@big.example", "user@example.net"], xclient="ADDR=203.0.113.5")
        self.assertReply(r, "552", "5.3.4")

    def test_idn_domain_section_applies_to_its_a_labels(self):
        # Written in U-labels (例え.jp) as an administrator types it; without
        # SMTPUTF8 the envelope carries the A-labels.
        self.configure(conf(size="100k", extra="[domain \u4f8b\u3048.jp]\nmax_message_size = 300k\n"))
        raw = harness.make_message(body=("y" * 98 + "\r\n") * 1500)  # ~150 KB
        r = self.send_raw(raw, to="user@XN--R8JZ45G.jp", xclient="ADDR=203.0.113.5")
        self.assertReply(r, "250", "2.0.0")
        r = self.send_raw(raw, to="user@xn--fsq.jp", xclient="ADDR=203.0.113.5")  # 例.jp: the global 100k
        self.assertReply(r, "552", "5.3.4")

    # -- R-SIZE-4: hops ---------------------------------------------------
    def test_fifty_received_headers_pass_fifty_one_are_refused(self):
        def hops(n):
            return ["Received: from hop%d.example by hop%d.example; Mon, 23 Nov 2026 10:00:00 +0900" % (i, i + 1)
                    for i in range(n)]
        # Postfix does not pass milters the Received: header it adds, so
        # these are the hops the client sent.
        r = self.send_raw(harness.make_message(headers=hops(50)))
        self.assertReply(r, "250", "2.0.0")
        self.assertTrue(self.milter.log_lines(r"action=accept stage=eom"))
        r = self.send_raw(harness.make_message(headers=hops(51)))
        self.assertReply(r, "554", "5.4.6", "Too many hops")
        self.assertTrue(self.milter.log_lines(r"reason=hops value=51 limit=50"))

    # -- R-SIZE-3: message/partial ----------------------------------------
    def test_message_partial_refused_at_top_and_nested(self):
        top = harness.make_message(headers=["MIME-Version: 1.0",
                                            "Content-Type: message/partial; id=\"abc@x\"; number=1; total=2"],
                                   body="From: a@b\r\nSubject: part\r\n\r\nfirst half\r\n")
        r = self.send_raw(top)
        self.assertReply(r, "554", "5.6.1", "Partial messages are not accepted")
        nested_body = ("--outer\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
                       "--outer\r\nContent-Type: message/rfc822\r\n\r\n"
                       "Subject: inner\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=inner\r\n\r\n"
                       "--inner\r\nContent-Type: message/partial; id=\"x@y\"; number=2; total=2\r\n\r\nsecond half\r\n"
                       "--inner--\r\n--outer--\r\n")
        nested = harness.make_message(headers=["MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=outer"],
                                      body=nested_body)
        r = self.send_raw(nested)
        self.assertReply(r, "554", "5.6.1")
        self.configure(conf(limits="reject_partial = no"))
        r = self.send_raw(nested)
        self.assertReply(r, "250", "2.0.0")

    # -- R-SIZE-5: archive expansion --------------------------------------
    def test_archive_expansion_boundary(self):
        self.configure(conf(size="10M", limits="max_archive_expansion = 1M"))
        exact = zip_bytes([("a.bin", b"\0" * (512 * 1024)), ("b.bin", b"\0" * (512 * 1024))])
        r = self.send_raw(mime_with_attachment(exact))
        self.assertReply(r, "250", "2.0.0")
        over = zip_bytes([("a.bin", b"\0" * (512 * 1024)), ("b.bin", b"\0" * (512 * 1024 + 1))])
        r = self.send_raw(mime_with_attachment(over))
        self.assertReply(r, "552", "5.3.4", "Attachment expands beyond the permitted size")

    def test_zip_bomb_and_nested_archives(self):
        self.configure(conf(size="10M"))
        # 200 MB of zeros deflates to about 200 KB; the 100M default refuses it
        # without ever holding it.
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            with z.open("zeros.bin", "w", force_zip64=True) as f:
                chunk = b"\0" * (1 << 20)
                for _ in range(200):
                    f.write(chunk)
        r = self.send_raw(mime_with_attachment(buf.getvalue()))
        self.assertReply(r, "552", "5.3.4", "Attachment expands")
        # 60 MB inside a zip inside a zip, twice: 120 MB in total.
        inner = zip_bytes([("zeros.bin", b"\0" * (60 << 20))])
        outer = zip_bytes([("one.zip", inner), ("two.zip", inner)])
        r = self.send_raw(mime_with_attachment(outer))
        self.assertReply(r, "552", "5.3.4")
        # Nesting: 8 levels are followed, a 9th is refused as unknowable.
        def nest(levels):
            data = b"hello"
            for i in range(levels):
                data = zip_bytes([("level%d.zip" % i if i else "hello.txt", data)])
            return data
        r = self.send_raw(mime_with_attachment(nest(8)))
        self.assertReply(r, "250", "2.0.0")
        r = self.send_raw(mime_with_attachment(nest(9)))
        self.assertReply(r, "552", "5.3.4")

    def test_lzma_files_count_whatever_dictionary_they_declare(self):
        # A .lzma file may declare any dictionary up to 4 GiB, and xz and
        # 7-Zip unpack it; libarchive's reader takes 4 KiB-128 MiB only, and
        # to it the others were plain data, their expansion not counted.
        self.configure(conf(size="10M", limits="max_archive_expansion = 1M"))
        for dictionary in (8 << 20, 256 << 20, 3 << 30):
            for zeros, verdict in (((2 << 20), ("552", "5.3.4")), ((512 << 10), ("250", "2.0.0"))):
                with self.subTest(dictionary=dictionary, zeros=zeros):
                    r = self.send_raw(mime_with_attachment(lzma_alone(b"\0" * zeros, dictionary),
                                                           filename="zeros.lzma", ctype="application/x-lzma"))
                    self.assertReply(r, *verdict)

    def test_compressions_inside_compressions_count(self):
        # A .lzma inside a .gz was left to libarchive's .lzma reader, which
        # takes dictionaries of 4 KiB-128 MiB only: the .gz of one declaring
        # 256 MiB counted its few hundred bytes. One written with lc=4 was
        # no .lzma at all. xz and 7-Zip unpack both.
        self.configure(conf(size="10M", limits="max_archive_expansion = 1M"))
        makers = (("gz-of-lzma", lambda d: gzip.compress(lzma_alone(d, 256 << 20)), "zeros.lzma.gz"),
                  ("lc4-lzma", lambda d: lzma_alone(d, 256 << 20, lc=4), "zeros.lzma"),
                  ("gz-of-xz", lambda d: gzip.compress(lzma.compress(d)), "zeros.xz.gz"),
                  ("xz-of-gz", lambda d: lzma.compress(gzip.compress(d)), "zeros.gz.xz"))
        for label, make, name in makers:
            for zeros, verdict in (((2 << 20), ("552", "5.3.4")), ((512 << 10), ("250", "2.0.0"))):
                with self.subTest(label=label, zeros=zeros):
                    r = self.send_raw(mime_with_attachment(make(b"\0" * zeros), filename=name,
                                                           ctype="application/octet-stream"))
                    self.assertReply(r, *verdict)

    def test_a_boundary_with_the_word_boundary_hides_nothing(self):
        # .NET's System.Net.Mail writes boundary="--boundary_0_GUID". Such a
        # boundary was taken for a second boundary parameter (ambiguous), so
        # the MIME walk read only the first MiB of the body: a zip bomb
        # after 1.5 MB of photos was delivered.
        import base64
        self.configure(conf(size="10M"))
        boundary = "--boundary_0_%s" % os.urandom(8).hex()
        photo = base64.encodebytes(os.urandom(1536 * 1024)).decode().replace("\n", "\r\n")
        bomb = base64.encodebytes(zip_bytes([("zeros.bin", b"\0" * (120 << 20))])).decode().replace("\n", "\r\n")
        def message(*attachments, params=""):
            body = "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nsee attachments\r\n" % boundary
            for name, b64 in attachments:
                body += ("--%s\r\nContent-Type: application/octet-stream; name=\"%s\"\r\n"
                         "Content-Transfer-Encoding: base64\r\n\r\n%s" % (boundary, name, b64))
            ctype = "Content-Type: multipart/mixed; boundary=\"%s\"%s" % (boundary, params)
            return harness.make_message(subject="photos", body=body + "--%s--\r\n" % boundary,
                                        headers=["MIME-Version: 1.0", ctype])
        r = self.send_raw(message(("photo.jpg", photo), ("photos.zip", bomb)))
        self.assertReply(r, "552", "5.3.4", "Attachment expands")
        r = self.send_raw(message(("photo.jpg", photo), ("photo2.jpg", photo)))
        self.assertReply(r, "250", "2.0.0")
        # "multipart" in an attachment's name made that attachment a
        # multipart without a boundary (all preface): the walk stopped after
        # its first MiB, and the bomb after it went unmeasured.
        r = self.send_raw(message(("multipart_guide.pdf", photo), ("photos.zip", bomb)))
        self.assertReply(r, "552", "5.3.4", "Attachment expands")
        # A second boundary parameter is ambiguous (which one a mail program
        # takes is a guess): the walk cannot read past its first MiB, and
        # what it cannot read is refused (it was delivered), bomb or not.
        r = self.send_raw(message(("photo.jpg", photo), ("photos.zip", bomb), params="; boundary=other"))
        self.assertReply(r, "554", "5.6.0", "structure")
        self.assertTrue(self.milter.log_lines(r"reason=structure .*of=\"MIME header bytes or fields\""))

    # -- R-SIZE-6: recipients and attachments -----------------------------
    def test_recipient_limit_refuses_only_the_excess(self):
        self.configure(conf(limits="max_recipients = 3"))
        msgid = "<rcpts-%s@sekimori.test>" % os.urandom(4).hex()
        rcpts = ["u%d@example.net" % i for i in range(4)]
        r = self.send_raw(harness.make_message(msgid=msgid), to=rcpts)
        replies = r.reply_to("RCPT")
        self.assertEqual([x[:2] for x in replies], [("250", "2.1.5")] * 3 + [("452", "4.5.3")], brief(r.transcript))
        self.assertEqual(r.final, ("250", "2.0.0"))
        delivered = self.site.sink.wait_for(msgid)
        self.assertIn(msgid.encode(), delivered)

    def test_attachment_count(self):
        self.configure(conf(limits="max_attachments = 2"))
        payload = b"not an archive at all"
        r = self.send_raw(mime_with_attachment(payload, "a.txt", "application/octet-stream", extra_parts=1))
        self.assertReply(r, "250", "2.0.0")
        r = self.send_raw(mime_with_attachment(payload, "a.txt", "application/octet-stream", extra_parts=2))
        self.assertReply(r, "552", "5.3.4", "Too many attachments")

    # -- bad input: a verdict, no crash, no hang ---------------------------
    def test_bad_input_gets_a_deterministic_verdict(self):
        self.configure(conf(size="20M"))
        cases = {
            "broken-boundary": harness.make_message(
                headers=["MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=never"],
                body="--never\r\nContent-Type: application/zip\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!notbase64***\r\n"),
            "nul-and-bare-lf": harness.make_message(body=b"a\0b\nbare lf\nline\r\n"),
            "invalid-base64": mime_with_attachment(b"x")[:-40] + b"@@@@====\r\n--=_sekimori_boundary--\r\n",
            "many-headers": harness.make_message(headers=["X-H%d: v" % i for i in range(100000)]),
            "deep-multipart": harness.make_message(
                headers=["MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=b0"],
                body="".join("--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1) for i in range(1000))
                + "--b1000\r\nContent-Type: text/plain\r\n\r\nbottom\r\n"
                + "".join("--b%d--\r\n" % i for i in range(1000, -1, -1))),
        }
        expected = {"broken-boundary": "250", "nul-and-bare-lf": "250", "invalid-base64": "250",
                    "many-headers": "250", "deep-multipart": "554"}
        for name, raw in cases.items():
            with self.subTest(name):
                first = self.send_raw(raw)
                second = self.send_raw(raw)
                self.assertEqual(first.final, second.final, "verdict must be deterministic")
                self.assertEqual(first.final[0], expected[name], brief(first.transcript))
                self.assertIsNone(self.milter.proc.poll(), "milter died on " + name)
        self.assertTrue(self.milter.log_lines(r"reason=structure"))

    # -- operating it -----------------------------------------------------
    def test_broken_reload_keeps_old_config(self):
        self.configure(conf(size="1k"))
        r = self.send_raw(harness.make_message(body="z" * 2000 + "\r\n"))
        self.assertReply(r, "552", "5.3.4")
        self.milter.write_conf(conf(size="lots"))
        self.milter.reload()
        self.assertTrue(self.milter.log_lines(r"reload refused: .*sizelimit.conf:\d+: max_message_size"))
        r = self.send_raw(harness.make_message(body="z" * 2000 + "\r\n"))
        self.assertReply(r, "552", "5.3.4")  # still the old 1k limit

    def test_sigterm_lets_an_open_session_finish(self):
        # SIGTERM: new connections are tempfailed, the open one still gets
        # its verdicts, then a clean exit (status 0, "stopped"). Until this
        # test, a thread of ours with SIGTERM unblocked took the default
        # action and the daemon died on the spot; and libmilter's own stop
        # abandons open connections (the MTA waits 30 s, then tempfails).
        self.configure(conf(size="1k"))
        milter = self.milter.proc
        c = self.site.smtp()
        try:
            code, _ = c.mail("sender@example.org")
            self.assertEqual(code, 250)
            milter.send_signal(signal.SIGTERM)
            time.sleep(1)
            self.assertIsNone(milter.poll(), "the daemon must wait for the open session:\n" +
                              self.milter.log()[-1000:])
            r = self.send_raw(harness.make_message())
            self.assertEqual(r.final, ("451", "4.7.1"), brief(r.transcript))
            self.assertIn("milter-reject: CONNECT", self.site.postfix_log()[-3000:])
            t0 = time.monotonic()
            code, _ = c.rcpt("user@example.net")
            self.assertEqual(code, 250)
            code, msg = c.data(harness.make_message(body="z" * 2000 + "\r\n"))
            self.assertEqual((code, msg[:5]), (552, b"5.3.4"), "still checked by the draining milter")
            self.assertLess(time.monotonic() - t0, 5, "served at once, not after a timeout")
            c.quit()
            harness.wait_until(lambda: milter.poll() is not None, 20, "the daemon to exit")
            self.assertEqual(milter.returncode, 0, self.milter.log()[-1000:])
            lines = [l for l in self.milter.log().splitlines() if not l.startswith("ThreadSanitizer: reported")]
            self.assertIn("sekimori-sizelimit stopped", lines[-1])  # (TSan's closing count aside: tsan_reports)
        finally:
            try:
                c.close()
            except Exception:
                pass
            self.milter.stop()  # whatever happened above: setUp starts a fresh one

    def test_milter_killed_means_tempfail_not_loss(self):
        # Mid-transaction: the milter dies after MAIL FROM was accepted.
        c = self.site.smtp()
        try:
            code, _ = c.mail("sender@example.org")
            self.assertEqual(code, 250)
            self.milter.kill()
            code, msg = c.rcpt("user@example.net")
            if code == 250:
                code, msg = c.data(harness.make_message())
            self.assertIn(code, (421, 451), msg)
        finally:
            try:
                c.close()
            except Exception:
                pass
        # A new connection while the milter is down.
        msgid = "<down-%s@sekimori.test>" % os.urandom(4).hex()
        r = self.send_raw(harness.make_message(msgid=msgid))
        self.assertIn(r.final[0], ("421", "451"), brief(r.transcript))
        self.assertFalse(self.site.sink.find(msgid), "nothing may be delivered unchecked")
        self.assertFalse(self.site.queue_ids(), "nothing may sit in Postfix's queue unchecked")
        # The sender still has it and retries once the milter is back.
        self.milter.start()
        r = self.send_raw(harness.make_message(msgid=msgid))
        self.assertReply(r, "250", "2.0.0")
        self.site.sink.wait_for(msgid)


if __name__ == "__main__":
    unittest.main()
