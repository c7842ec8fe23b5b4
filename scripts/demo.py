"""Sample mails through Postfix + sekimori-sizelimit + sekimori-ratelimit,
with their verdicts.

Run by scripts/demo. Uses the same harness as the end-to-end tests.
"""

import io
import os
import sys
import zipfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import harness  # noqa: E402

CONF = """\
# The demo's sekimori-sizelimit.conf: defaults, plus who is local and inside.
[milter]
log_level = info
[policy]
local_domains = example.net
internal_networks = 10.0.0.0/8
[limits]
max_message_size = 1M
max_recipients = 5
[outbound]
max_message_size = 2M
"""


RATE_CONF = """\
# The demo's sekimori-ratelimit.conf: defaults, with a small sender limit so
# the demo reaches it, and a mailing list guarded against loops.
[milter]
log_level = info
[policy]
local_domains = example.net
internal_networks = 10.0.0.0/8
[limits]
sender_recipients = 3
[loop]
list_addresses = list@example.net
[control]
socket = {ctl}
"""


AV_CONF = """\
# The demo's sekimori-antivirus.conf: a test signature database made here
# (the EICAR test string), warnings off, quarantine in the demo's directory.
[milter]
log_level = info
[policy]
local_domains = example.net
internal_networks = 10.0.0.0/8
[engine]
database_dir = {db}
workers = 2
[notify]
enabled = no
template_dir = {templates}
spool_dir = {outbox}
[quarantine]
dir = {quarantine}
"""

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def zip_bomb():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("zeros.bin", "w", force_zip64=True) as f:
            for _ in range(150):
                f.write(b"\0" * (1 << 20))
    return buf.getvalue()


def zstd_of(data):
    import subprocess
    return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout


def attachment_message(payload, name, ctype="application/zip", subject="archive"):
    import base64
    b64 = base64.encodebytes(payload).decode().replace("\n", "\r\n")
    body = ("--b\r\nContent-Type: text/plain\r\n\r\nplease see the attachment\r\n"
            "--b\r\nContent-Type: %s; name=\"%s\"\r\nContent-Transfer-Encoding: base64\r\n"
            "Content-Disposition: attachment; filename=\"%s\"\r\n\r\n%s--b--\r\n" % (ctype, name, name, b64))
    return harness.make_message(subject=subject, body=body,
                                headers=["MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=b"])


def main():
    import tempfile
    ctl_dir = tempfile.mkdtemp(prefix="sekimori-demo-ctl-")
    milter = harness.Milter("sizelimit", CONF)
    rate = harness.Milter("ratelimit", RATE_CONF.format(ctl=os.path.join(ctl_dir, "ratelimit.ctl")))
    db = os.path.join(ctl_dir, "db")
    os.makedirs(db)
    with open(os.path.join(db, "demo.ndb"), "w") as f:
        f.write("Demo.EICAR:0:*:%s\n" % EICAR.hex())
    av = harness.Milter("antivirus", AV_CONF.format(
        db=db, quarantine=os.path.join(ctl_dir, "quarantine"), outbox=os.path.join(ctl_dir, "outbox"),
        templates=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "conf")))
    eicar_zip = (lambda b: (zipfile.ZipFile(b, "w").writestr("eicar.com", EICAR), b.getvalue())[1])(io.BytesIO())
    list_mail = harness.make_message(to="list@example.net", msgid="<loop-%s@example.org>" % os.urandom(4).hex())
    big = ("0123456789" * 10 + "\r\n") * 15000  # ~1.5 MB
    samples = [
        ("small inbound text mail", dict(data=harness.make_message(body="hello\r\n"))),
        ("1.5 MB inbound (limit 1M)", dict(data=harness.make_message(body=big))),
        ("1.5 MB outbound from 10.1.2.3 ([outbound] 2M)",
         dict(data=harness.make_message(body=big), to="friend@remote.example", xclient="ADDR=10.1.2.3")),
        ("1.5 MB outbound by SMTP AUTH user alice",
         dict(data=harness.make_message(body=big), to="friend@remote.example", xclient="LOGIN=alice")),
        ("51 Received: headers (mail loop)",
         dict(data=harness.make_message(headers=["Received: from h%d by h%d" % (i, i + 1) for i in range(51)]))),
        ("message/partial (split mail)",
         dict(data=harness.make_message(headers=["MIME-Version: 1.0", "Content-Type: message/partial; id=\"x\"; number=1"]))),
        ("zip bomb: 180 KB zip of 150 MB", dict(data=attachment_message(zip_bomb(), "report.zip"))),
        ("small zip attachment", dict(data=attachment_message(
            (lambda b: (zipfile.ZipFile(b, "w").writestr("a.txt", "hello"), b.getvalue())[1])(io.BytesIO()), "a.zip"))),
        ("7 recipients (max_recipients = 5)",
         dict(data=harness.make_message(), to=["user%d@example.net" % i for i in range(7)])),
        ("outbound, 4 recipients (sender_recipients = 3)",
         dict(data=harness.make_message(frm="carol@example.net"), frm="carol@example.net", xclient="ADDR=10.1.2.4",
              to=["r%d@remote.example" % i for i in range(4)])),
        ("to list@example.net", dict(data=list_mail, to="list@example.net")),
        ("same Message-ID to list@example.net again", dict(data=list_mail, to="list@example.net")),
        ("inbound, virus in a zip attachment", dict(data=attachment_message(eicar_zip, "invoice.zip"))),
        ("inbound HTML mail with <script>", dict(data=harness.make_message(
            subject="html with script", body="<p>hello</p><script>alert(1)</script>\r\n",
            headers=["MIME-Version: 1.0", "Content-Type: text/html; charset=us-ascii"]))),
        ("inbound .zst attachment (not unpackable)", dict(data=attachment_message(
            zstd_of(b"a report\n" * 500), "report.txt.zst", "application/zstd", subject="zstd attachment"))),
        ("inbound PGP/MIME mail inside a list's footer", dict(data=harness.make_message(
            subject="encrypted", headers=["MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=L"],
            body="--L\r\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=P\r\n\r\n"
                 "--P\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--P\r\n"
                 "Content-Type: application/octet-stream\r\n\r\n-----BEGIN PGP MESSAGE-----\r\nhQEMA\r\n"
                 "-----END PGP MESSAGE-----\r\n--P--\r\n--L\r\nContent-Type: text/plain\r\n\r\nlist footer\r\n"
                 "--L--\r\n"))),
        ("outbound from 10.1.2.3, virus in a zip attachment",
         dict(data=attachment_message(eicar_zip, "invoice.zip"), to="friend@remote.example", xclient="ADDR=10.1.2.3")),
    ]
    print("Starting a private Postfix on 127.0.0.1 with sekimori-sizelimit, -ratelimit and -antivirus in front ...")
    with harness.Site([milter, rate, av], name="demo") as site:
        print("Postfix smtpd on 127.0.0.1:%d, milters on %s, sink on 127.0.0.1:%d\n"
              % (site.port, ", ".join(m.socket_spec for m in (milter, rate, av)), site.sink.port))
        width = max(len(s[0]) for s in samples)
        for label, kw in samples:
            r = site.swaks(**kw)
            extra = ""
            rcpt = r.reply_to("RCPT")
            refused = [c for c in rcpt if c[0] != "250"]
            if refused:
                extra = "  (%d of %d RCPT refused: %s %s %s)" % (len(refused), len(rcpt), *refused[0])
            print("%-*s  ->  %s%s" % (width, label, r.final_text, extra))
        delivered = site.sink.messages()
        print("\nDelivered to the sink: %d message(s)" % len(delivered))
        for m in delivered:
            if b"X-Virus-Status: " not in m:
                continue
            status = m.split(b"X-Virus-Status: ")[1].split(b"\n")[0].decode()
            subject = m.split(b"\nSubject: ")[1].split(b"\n")[0].decode() if b"\nSubject: " in m else "?"
            if status != "clean":
                print("  %-20s X-Virus-Status: %s" % ("\"" + subject + "\"", status))
        print("\nThe milters' log lines (syslog, facility mail):")
        for m in (milter, rate, av):
            for line in m.log().splitlines():
                if "milter=" + m.name in line:
                    print("  " + line)
        print("\nThe quarantine, as the admin command lists it (sekimori quarantine list -c antivirus.conf):")
        r = harness.sekimori_cli("quarantine", "list", "-c", av.conf_path)
        for line in (r.stdout + r.stderr).splitlines():
            print("  " + line)
    import shutil
    shutil.rmtree(ctl_dir, ignore_errors=True)
    print("\nStopped Postfix, the milters and the sink.")


if __name__ == "__main__":
    main()
