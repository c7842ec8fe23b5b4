"""The antivirus comparison of bench.py (issue 4): the shared signature
database, the zip-attachment message files for smtp-source -F, clamd +
clamav-milter under the harness, and peak RSS of a milter's processes.

Everything here is private to one bench run: a temp directory per database,
per message set and per clamd; processes are started by us and stopped by PID.
"""

import base64
import glob
import io
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import zipfile

import harness

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
SIGNAME = "Sekimori.Test.EICAR"
CLAMD = "/usr/sbin/clamd"
CLAMAV_MILTER = "/usr/sbin/clamav-milter"
OFFICIAL_DB = "/var/lib/clamav"


# -- signature database ----------------------------------------------------------

def make_database(copy_official=True):
    """A private database dir: sekimori-test.ndb (the EICAR string as a body
    signature) plus copies of /var/lib/clamav/*.cvd/*.cld when there are any.
    Returns (dir, note) where note says what it holds."""
    d = tempfile.mkdtemp(prefix="sekimori-bench-avdb-")
    os.chmod(d, 0o755)
    with open(os.path.join(d, "sekimori-test.ndb"), "w") as f:
        f.write("%s:0:*:%s\n" % (SIGNAME, EICAR.hex()))
    os.chmod(os.path.join(d, "sekimori-test.ndb"), 0o644)
    official = sorted(glob.glob(os.path.join(OFFICIAL_DB, "*.cvd")) + glob.glob(os.path.join(OFFICIAL_DB, "*.cld")))
    copied = []
    if copy_official:
        for p in official:
            shutil.copy(p, d)
            os.chmod(os.path.join(d, os.path.basename(p)), 0o644)
            copied.append(os.path.basename(p))
    if copied:
        note = "signatures: %s (EICAR .ndb) + %s copied from %s" % (SIGNAME, ", ".join(copied), OFFICIAL_DB)
    elif official:
        note = "signatures: only %s (EICAR .ndb); the official databases in %s were not copied" % (
            SIGNAME, OFFICIAL_DB)
    else:
        note = "signatures: only %s (EICAR .ndb); no official ClamAV database (%s/*.cvd) on this machine" % (
            SIGNAME, OFFICIAL_DB)
    return d, note


# -- messages with a zip attachment -------------------------------------------------

def _words(rng, n, vocab):
    out, line = [], []
    for _ in range(n):
        line.append(rng.choice(vocab))
        if len(line) >= 12:
            out.append(" ".join(line))
            line = []
    out.append(" ".join(line))
    return ("\n".join(out) + "\n").encode()


def _message(nwords, seed):
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 10))) for _ in range(3000)]
    report = _words(rng, nwords, vocab)
    numbers = ("\n".join("%d,%d,%.3f" % (i, rng.randint(0, 99999), rng.random()) for i in range(nwords // 20))
               + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("report.txt", report)
        z.writestr("data/numbers.csv", numbers)
    b64 = base64.encodebytes(buf.getvalue()).decode()  # 76-char lines, LF
    text = ("Hello,\n\nplease find the quarterly report attached (zip).\n\n"
            "Regards,\nSender\n")
    # LF line ends: smtp-source -F sends each line with CRLF.
    msg = ("From: <sender@example.org>\n"
           "To: <user@example.net>\n"
           "Subject: report with a zip attachment\n"
           "Date: Mon, 23 Nov 2026 10:00:00 +0900\n"
           "MIME-Version: 1.0\n"
           "Content-Type: multipart/mixed; boundary=\"=_sekimori_bench\"\n"
           "\n"
           "This is a multi-part message in MIME format.\n"
           "\n"
           "--=_sekimori_bench\n"
           "Content-Type: text/plain; charset=us-ascii\n"
           "Content-Transfer-Encoding: 7bit\n"
           "\n" + text + "\n"
           "--=_sekimori_bench\n"
           "Content-Type: application/zip; name=\"report.zip\"\n"
           "Content-Transfer-Encoding: base64\n"
           "Content-Disposition: attachment; filename=\"report.zip\"\n"
           "\n" + b64 +
           "--=_sekimori_bench--\n")
    return msg.encode(), len(report) + len(numbers), len(buf.getvalue())


def make_zip_message(size, seed=None):
    """A multipart/mixed message (text part + base64 zip of random-word text
    and a csv) of about `size` bytes (LF line ends; +1 byte per line on the
    wire). Returns (bytes, uncompressed bytes in the zip, zip bytes)."""
    seed = size if seed is None else seed
    lo, hi = 1, max(64, size)  # words; a word zips to well under one byte
    best = _message(lo, seed)
    while lo < hi:
        mid = (lo + hi) // 2
        m = _message(mid, seed)
        if len(m[0]) < size:
            best, lo = m, mid + 1
        else:
            hi = mid
    return best


def make_message_files(sizes):
    """{size: path} of zip messages in a private dir; (dir, files, notes)."""
    d = tempfile.mkdtemp(prefix="sekimori-bench-msgs-")
    os.chmod(d, 0o755)
    files, notes = {}, []
    for size in sizes:
        data, raw, zipped = make_zip_message(size)
        p = os.path.join(d, "zip-%d.eml" % size)
        with open(p, "wb") as f:
            f.write(data)
        files[size] = p
        notes.append("%d B: message %d B, zip %d B holding %d B of text" % (size, len(data), zipped, raw))
    return d, files, notes


# -- clamd + clamav-milter ------------------------------------------------------------

CLAMAV_MILTER_CONF = """\
MilterSocket {milter_sock}
MilterSocketMode 666
FixStaleSocket yes
ClamdSocket unix:{clamd_sock}
Foreground yes
OnClean Accept
OnInfected Reject
OnFail Defer
AddHeader Replace
LogFile {log}
LogTime yes
PidFile {pid}
TemporaryDirectory {tmp}
MaxFileSize 25M
ReadTimeout 120
"""


class ClamavMilter(harness.Milter):
    """clamav-milter backed by a private clamd (harness.Clamd, the same one
    the e2e tests of sekimori-antivirus's clamd backend use), as one harness
    milter: start() starts clamd and waits for it to answer PING, then
    clamav-milter and waits for the milter socket; stop() stops both by PID.
    Both run as root (no User: they keep the uid they were started with)."""

    def __init__(self, database_dir, transport="unix", threads=20, temp_dir=None):
        super().__init__("clamav-milter", "", transport=transport, binary=CLAMAV_MILTER)
        self.clamd = harness.Clamd(database_dir, threads=threads, temp_dir=temp_dir)
        self.private = None

    def setup(self, workdir):
        super().setup(workdir)
        self.private = os.path.join(workdir, "clamav")
        os.makedirs(os.path.join(self.private, "tmp"), exist_ok=True)
        os.chmod(self.private, 0o700)
        self.write_conf(CLAMAV_MILTER_CONF.format(
            milter_sock=self.socket_spec, clamd_sock=self.clamd.sock, log=self.log_path,
            pid=os.path.join(self.private, "clamav-milter.pid"), tmp=os.path.join(self.private, "tmp")))

    def start(self):
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        self.clamd.start()
        with open(self.log_path + ".out", "ab") as out:
            self.proc = subprocess.Popen([self.binary, "-c", self.conf_path], stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        harness.wait_until(self._ready, 30, "clamav-milter to listen on %s" % self.socket_spec)

    def stop(self, *a, **kw):
        super().stop(*a, **kw)
        self.clamd.cleanup()

    def clamd_log_text(self):
        return self.clamd.log()

    def log(self):
        return harness.read_text(self.log_path, self.log_path + ".out")

    def root_pids(self):
        return [p.pid for p in (self.proc, self.clamd.proc) if p is not None]


class SekimoriAntivirus(harness.Milter):
    """sekimori-antivirus as harness.Milter starts it (-f -c CONF -p SPEC),
    with more time to load the database than the harness' 15 s (official
    databases take a while)."""

    def __init__(self, conf, transport="unix", binary=None):
        super().__init__("antivirus", conf, transport=transport, binary=binary)

    def start(self):
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([self.binary, "-f", "-c", self.conf_path, "-p", self.socket_spec]
                                         + self.extra_args, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        harness.wait_until(self._ready, 120, "sekimori-antivirus to listen on %s" % self.socket_spec,
                           interval=0.1)


def antivirus_conf(database_dir, quarantine_dir, template_dir, workers=4, temp_dir=None):
    return """\
[milter]
socket_group = postfix
[policy]
local_domains = example.net
internal_networks =
[engine]
database_dir = {db}
workers = {workers}
temp_dir = {temp_dir}
[notify]
enabled = no
template_dir = {templates}
spool_dir =
[quarantine]
dir = {quarantine}
""".format(db=database_dir, workers=workers, templates=template_dir, quarantine=quarantine_dir,
           temp_dir=temp_dir or "")


# -- memory ----------------------------------------------------------------------------

def _children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    return kids


def _status(pid):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = v.strip()
    except OSError:
        return None
    return out


def _pss_kb(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _process_tree(root_pids):
    """root_pids and all their descendants, parents first."""
    kids = _children_map()
    seen, todo = [], list(root_pids)
    while todo:
        p = todo.pop(0)
        if p in seen:
            continue
        seen.append(p)
        todo.extend(kids.get(p, []))
    return seen


def process_tree_cpu(root_pids):
    """CPU seconds (user + system, all threads) the processes root_pids and
    their descendants have used, including their children that have exited
    and been waited for (a scanner worker replaced by its supervisor). The
    difference of two calls is what the tree used in between, less what a
    process that exited and was not yet waited for had used."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in _process_tree(root_pids):
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the name, 0-based from the state: utime stime cutime cstime at 11..14 (proc(5): fields 14-17)
        total += sum(int(x) for x in fields[11:15])
    return total / tick


def machine_cpu():
    """Busy CPU seconds of the whole machine since boot, all cores (the
    first line of /proc/stat without idle and iowait)."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest is inside user)
    return (sum(vals[:8]) - vals[3] - vals[4]) / os.sysconf("SC_CLK_TCK")


def process_tree_memory(root_pids):
    """The processes root_pids and all their descendants: each one's VmHWM
    (peak RSS), VmRSS and Pss in KiB, and the sums. VmHWM and VmRSS sums count
    pages shared between the processes (copy-on-write engine) once per
    process; Pss splits them."""
    procs = []
    for p in _process_tree(root_pids):
        st = _status(p)
        if not st or st.get("State", "").startswith(("Z", "X")):
            continue

        def kb(key):
            try:
                return int(st.get(key, "0 kB").split()[0])
            except (ValueError, IndexError):
                return 0
        procs.append({"pid": p, "name": st.get("Name", "?"), "vmhwm_kb": kb("VmHWM"), "vmrss_kb": kb("VmRSS"),
                      "pss_kb": _pss_kb(p)})
    return {"processes": procs, "count": len(procs),
            "vmhwm_kb_sum": sum(x["vmhwm_kb"] for x in procs),
            "vmrss_kb_sum": sum(x["vmrss_kb"] for x in procs),
            "pss_kb_sum": sum(x["pss_kb"] or 0 for x in procs)}


# -- does the scanner scan? ------------------------------------------------------------

def eicar_zip_message():
    """A message whose zip attachment holds the EICAR string (LF line ends)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("readme.txt", b"nothing to see\n")
        z.writestr("eicar.com", EICAR)
    b64 = base64.encodebytes(buf.getvalue()).decode()
    msg = ("From: <sender@example.org>\nTo: <user@example.net>\nSubject: zip with EICAR\n"
           "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"=_e\"\n\n"
           "--=_e\nContent-Type: text/plain\n\nsee attachment\n\n"
           "--=_e\nContent-Type: application/zip; name=\"x.zip\"\nContent-Transfer-Encoding: base64\n"
           "Content-Disposition: attachment; filename=\"x.zip\"\n\n" + b64 + "--=_e--\n")
    return msg.replace("\n", "\r\n").encode(), b64.splitlines()[0]


def check_scanner(site, name, clean_file):
    """Raises RuntimeError unless the milter in `site` (a) lets a clean zip
    message through with an X-Virus-* header added and (b) rejects the EICAR
    zip or delivers it with the attachment removed. Proves that the engine
    loaded the shared database and unpacks zips."""
    import smtplib
    site.sink.clear()
    with open(clean_file, "rb") as f:
        clean = f.read().replace(b"\n", b"\r\n")
    c = site.smtp()
    try:
        c.sendmail("sender@example.org", ["user@example.net"], clean)
    finally:
        c.quit()
    msg = site.sink.wait_for(b"report.zip", 20)
    if b"X-Virus-" not in msg.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]:
        raise RuntimeError("%s: the clean zip message arrived without an X-Virus-* header" % name)
    site.sink.clear()
    data, b64_first = eicar_zip_message()
    c = site.smtp()
    verdict = None
    try:
        c.sendmail("sender@example.org", ["user@example.net"], data)
        verdict = "accepted"
    except smtplib.SMTPDataError as e:
        verdict = "rejected %s %s" % (e.smtp_code, e.smtp_error.decode(errors="replace"))
    finally:
        try:
            c.quit()
        except smtplib.SMTPException:
            pass
    if verdict == "accepted":
        harness.wait_until(lambda: site.sink.count() > 0, 20, "the EICAR message at the sink")
        time.sleep(0.2)
        if any(b64_first.encode() in m for m in site.sink.messages()):
            raise RuntimeError("%s: the EICAR zip was delivered with the attachment" % name)
        verdict = "accepted with the attachment removed"
    elif not verdict.startswith("rejected 5"):
        raise RuntimeError("%s: the EICAR zip got %s" % (name, verdict))
    site.sink.clear()
    return verdict
