"""A private Postfix on loopback with sekimori milters in front of it.

Shared by the end-to-end tests (tests/e2e/test_*.py), the demo
(scripts/demo) and the benchmark (bench/bench.py), so there is one place that
knows how to run Postfix privately on these machines (see
shared/TESTING-NOTES.md):

    with harness.Site(milters=[harness.Milter("sizelimit", conf)]) as site:
        r = site.swaks(to="rcpt@example.net", body="hello")
        assert r.final == ("250", "2.0.0")
        msg = site.sink.wait_for(r.queue_id)

Every process is started by us and stopped by PID; the work directory is
removed afterwards (kept when SEKIMORI_KEEP=1, for debugging).
"""

import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def bindir():
    """Where the built milters are: $SEKIMORI_BINDIR or build/."""
    d = os.environ.get("SEKIMORI_BINDIR")
    if d:
        return d
    for cand in ("build/milters", "build"):
        p = os.path.join(ROOT, cand)
        if os.path.isdir(p):
            return p
    raise RuntimeError("set SEKIMORI_BINDIR to the build directory")


def milter_binary(name):
    """Path of sekimori-NAME below bindir()."""
    base = bindir()
    for cand in (os.path.join(base, name, "sekimori-" + name), os.path.join(base, "milters", name, "sekimori-" + name),
                 os.path.join(base, "sekimori-" + name)):
        if os.path.exists(cand):
            return cand
    raise RuntimeError("sekimori-%s not found below %s" % (name, base))


def sanitized(binary):
    """Whether `binary` was built with AddressSanitizer (SEKIMORI_SANITIZE)
    or ThreadSanitizer (SEKIMORI_TSAN), whose allocators abort where malloc
    would fail."""
    with open(binary, "rb") as f:
        data = f.read()
    return b"__asan_init" in data or b"__tsan_init" in data


def tsan_reports(log):
    """The ThreadSanitizer reports in a milter's log, but for libmilter's
    own: a report whose memory is one of libmilter's globals. Its stop
    (sendmail 8.17, Debian's build with the pool of workers) destroys the
    listener's and the pool's mutexes while smfi_stop() and idle workers may
    still wait on them (glibc lets them; the process is ending). Our code
    never touches libmilter's globals, so nothing of ours is passed over,
    which tests/tsan.supp could not promise: libmilter is stripped, and a
    suppression by its module would also pass over every race in a
    callback, all of which run below mi_engine."""
    reports = re.findall(r"WARNING: ThreadSanitizer:.*?(?=\n=================|\Z)", log, re.S)
    theirs = re.compile(r"\n  Location is global '[^']*' at 0x[0-9a-f]+ \(libmilter\.so[^)]*\)")
    return [r for r in reports if not theirs.search(r)]


def sekimori_cli(*args, text=True):
    """Runs the admin command (bindir()/cli/sekimori) with ARGS; the
    CompletedProcess, output captured (bytes when text=False)."""
    binary = os.path.join(bindir(), "cli", "sekimori")
    return subprocess.run([binary] + list(args), capture_output=True, text=text)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_text(*paths):
    """The files' text one after the other (undecodable bytes replaced);
    a file that cannot be read adds nothing: a log not written yet."""
    out = []
    for p in paths:
        try:
            with open(p, errors="replace") as f:
                out.append(f.read())
        except OSError:
            pass
    return "".join(out)


def wait_until(pred, timeout=15.0, what="condition", interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise TimeoutError("timed out waiting for " + what)


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def process_alive(pid):
    """True while pid runs; a zombie counts as dead (PID 1 here may reap late)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return False


def stop_pid(pid, timeout=10.0, sig=signal.SIGTERM):
    if pid is None or not process_alive(pid):
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    try:
        wait_until(lambda: not process_alive(pid), timeout, "pid %d to exit" % pid)
    except TimeoutError:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def stop_child(proc, timeout=15.0):
    """Stops a subprocess.Popen child of ours: SIGTERM, then SIGKILL after
    `timeout`; reaps it either way."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Milter:
    """One sekimori milter process: `conf` is the conf file text (its
    [milter] socket is set by the Site)."""

    def __init__(self, name, conf="", transport="unix", binary=None, extra_args=(), env=None, wrapper=()):
        self.name = name
        self.env = env  # extra environment variables for the process
        self.wrapper = list(wrapper)  # a command that execs the rest of its arguments (unshare ...)
        self.conf = conf
        self.transport = transport
        self.binary = binary or milter_binary(name)
        self.extra_args = list(extra_args)
        self.proc = None
        self.socket_spec = None     # the milter's own syntax
        self.postfix_spec = None    # as smtpd_milters names it
        self.conf_path = None
        self.log_path = None
        self.workdir = None

    def setup(self, workdir):
        self.workdir = workdir
        if self.transport == "unix":
            path = os.path.join(workdir, "sock", self.name + ".sock")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.chmod(os.path.dirname(path), 0o755)
            self.socket_spec = "unix:" + path
            self.postfix_spec = "unix:" + path
        else:
            port = free_port()
            self.socket_spec = "inet:%d@127.0.0.1" % port
            self.postfix_spec = "inet:127.0.0.1:%d" % port
        self.conf_path = os.path.join(workdir, self.name + ".conf")
        self.log_path = os.path.join(workdir, "log", self.name + ".log")
        self.write_conf(self.conf)

    def write_conf(self, conf):
        self.conf = conf
        with open(self.conf_path, "w", encoding="utf-8") as f:
            f.write(conf)

    def start(self):
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        log = open(self.log_path, "ab")
        # A ThreadSanitizer build's reports are judged from the log at stop
        # (tsan_reports), not from the exit status.
        env = dict(os.environ, **(self.env or {}))
        env["TSAN_OPTIONS"] = (env.get("TSAN_OPTIONS", "") + " exitcode=0").strip()
        self.proc = subprocess.Popen(
            self.wrapper + [self.binary, "-f", "-c", self.conf_path, "-p", self.socket_spec] + self.extra_args,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        log.close()
        wait_until(self._ready, 15, "sekimori-%s to listen on %s" % (self.name, self.socket_spec))

    def _ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError("sekimori-%s exited with %s:\n%s" % (self.name, self.proc.returncode, self.log()))
        if self.socket_spec.startswith("unix:"):
            path = self.socket_spec[5:]
            if not os.path.exists(path):
                return False
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                try:
                    s.connect(path)
                    return True
                except OSError:
                    return False
        port = int(self.socket_spec.split(":")[1].split("@")[0])
        return port_open(port)

    def reload(self):
        """SIGUSR1, then wait for the log line that says how it went."""
        before = self.log().count("configuration reloaded") + self.log().count("reload refused, keeping")
        os.kill(self.proc.pid, signal.SIGUSR1)
        wait_until(lambda: self.log().count("configuration reloaded") +
                   self.log().count("reload refused, keeping") > before, 10, "reload")

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        """Stops the daemon; a SIGTERM stop must end cleanly (status 0, not
        killed by the signal), so every test's teardown checks it."""
        if self.proc is None:
            return
        unclean = None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
                if sig == signal.SIGTERM and self.proc.returncode != 0:
                    unclean = "exited with %s" % self.proc.returncode
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                unclean = "did not stop within %.0f s of SIGTERM" % timeout
        self.proc = None
        log = self.log()
        tail = log[-1500:]
        races = tsan_reports(log)  # the daemon's or a child's (SEKIMORI_TSAN builds)
        if races:
            unclean = (unclean + ", and " if unclean else "") + "reported %d ThreadSanitizer warning(s)" % len(races)
            tail = races[0][:6000]
        if unclean:
            raise AssertionError("sekimori-%s %s:\n%s" % (self.name, unclean, tail))

    def kill(self):
        """SIGKILL: a crash, as far as Postfix can tell."""
        self.stop(signal.SIGKILL, 5)

    def log(self):
        return read_text(self.log_path)

    def log_lines(self, pattern):
        return [l for l in self.log().splitlines() if re.search(pattern, l)]


class Sink:
    """Postfix's smtp-sink as the final destination: one file per message."""

    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "sink")
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o777)
        self.port = free_port()
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["/usr/sbin/smtp-sink", "-u", "nobody", "-R", "/", "-d", os.path.join(self.dir, "%Y%m%d%H%M%S."),
             "127.0.0.1:%d" % self.port, "256"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        wait_until(lambda: port_open(self.port), 10, "smtp-sink")

    def stop(self):
        if self.proc:
            stop_pid(self.proc.pid)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            self.proc = None

    def messages(self):
        out = []
        for name in sorted(os.listdir(self.dir)):
            p = os.path.join(self.dir, name)
            try:
                with open(p, "rb") as f:
                    out.append(f.read())
            except OSError:
                pass
        return out

    def count(self):
        return len(os.listdir(self.dir))

    def find(self, needle):
        if isinstance(needle, str):
            needle = needle.encode()
        return [m for m in self.messages() if needle in m]

    def wait_for(self, needle, timeout=20.0):
        """The delivered message containing `needle` (e.g. a Message-ID)."""
        found = wait_until(lambda: self.find(needle), timeout, "delivery of %r" % needle)
        return found[0]

    def clear(self):
        for name in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, name))


REPLY_RE = re.compile(r"^<[-~*]+\s+(\d{3})([ -])(?:(\d\.\d{1,3}\.\d{1,3}) )?(.*)$")
SENT_RE = re.compile(r"^\s*[-~*]+>\s(.*)$")


class SmtpResult:
    """What swaks saw: every command and the server's reply to it."""

    def __init__(self, transcript, returncode):
        self.transcript = transcript
        self.returncode = returncode
        self.steps = []  # [(command, code, xcode, text)]
        command = "CONNECT"
        for line in transcript.splitlines():
            m = SENT_RE.match(line)
            if m:
                cmd = m.group(1)
                # Only SMTP verbs start a step; the message text itself does not.
                verb = cmd.split(":")[0].split(" ")[0].upper()
                if verb in ("EHLO", "HELO", "MAIL", "RCPT", "DATA", "QUIT", "RSET", "XCLIENT", "AUTH", "STARTTLS"):
                    command = cmd
                elif cmd == ".":
                    command = "."
                continue
            m = REPLY_RE.match(line)
            if m and m.group(2) == " ":  # the last line of a (multi-line) reply
                self.steps.append((command, m.group(1), m.group(3) or "", m.group(4)))

    def reply_to(self, verb):
        """Replies to commands starting with verb ("RCPT", "MAIL", "."), in order."""
        return [(c, x, t) for (cmd, c, x, t) in self.steps if cmd.upper().startswith(verb.upper())]

    @property
    def final(self):
        """(code, xcode) of the last reply before QUIT: the message's verdict."""
        for cmd, c, x, t in reversed(self.steps):
            if not cmd.upper().startswith("QUIT"):
                return (c, x)
        return ("", "")

    @property
    def final_text(self):
        for cmd, c, x, t in reversed(self.steps):
            if not cmd.upper().startswith("QUIT"):
                return "%s %s %s" % (c, x, t)
        return ""

    @property
    def queue_id(self):
        for cmd, c, x, t in self.steps:
            m = re.search(r"queued as ([0-9A-Za-z]+)", t)
            if m:
                return m.group(1)
        return None

    def __repr__(self):
        return "SmtpResult(final=%r, steps=%r)" % (self.final_text, self.steps)


class Redis:
    """A private redis-server on a loopback TCP port (no persistence), for
    the shared-counter backend. stop() and start() again reuse the port, so
    a test can take Redis away and bring it back."""

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="sekimori-redis-")
        self.proc = None

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--protected-mode", "yes"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        wait_until(lambda: port_open(self.port), 15, "redis-server on port %d" % self.port)

    def stop(self):
        stop_child(self.proc)
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def cli(self, *args):
        r = subprocess.run(["redis-cli", "-p", str(self.port)] + list(args), capture_output=True, text=True)
        return r.stdout.strip()


CLAMD_CONF = """\
LocalSocket {sock}
LocalSocketMode 600
FixStaleSocket yes
DatabaseDirectory {db}
Foreground yes
LogFile {log}
PidFile {pid}
TemporaryDirectory {tmp}
MaxThreads {threads}
ScanArchive yes
ScanMail yes
AlertExceedsMax yes
AlertEncrypted yes
SelfCheck 3600
"""


class Clamd:
    """A private clamd on a unix socket in its own directory, for the clamd
    backend of sekimori-antivirus and for clamav-milter in the bench. Runs
    as the user that starts it (no User line). Its temp files go to
    `temp_dir` (default: a dir beside its socket)."""

    def __init__(self, database_dir, threads=20, temp_dir=None):
        self.database_dir = database_dir
        self.threads = threads
        self.dir = tempfile.mkdtemp(prefix="sekimori-clamd-")
        os.makedirs(os.path.join(self.dir, "tmp"))
        self.temp_dir = temp_dir or os.path.join(self.dir, "tmp")
        self.sock = os.path.join(self.dir, "clamd.sock")
        self.log_path = os.path.join(self.dir, "clamd.log")
        self.conf = os.path.join(self.dir, "clamd.conf")
        self.proc = None

    def start(self):
        with open(self.conf, "w") as f:
            f.write(CLAMD_CONF.format(sock=self.sock, db=self.database_dir, log=self.log_path,
                                      pid=os.path.join(self.dir, "clamd.pid"), tmp=self.temp_dir,
                                      threads=self.threads))
        with open(self.log_path + ".out", "ab") as out:
            self.proc = subprocess.Popen(["/usr/sbin/clamd", "-c", self.conf], stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        wait_until(self._ready, 120, "clamd to answer PING on %s" % self.sock, interval=0.1)

    def _ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError("clamd exited with %s:\n%s" % (self.proc.returncode, self.log()))
        if not os.path.exists(self.sock):
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.settimeout(2)
                s.connect(self.sock)
                s.sendall(b"zPING\0")
                return s.recv(16).startswith(b"PONG")
            except OSError:
                return False

    def log(self):
        return read_text(self.log_path, self.log_path + ".out")

    def stop(self):
        stop_child(self.proc)
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Site:
    """Postfix + sink + milters in one work directory."""

    def __init__(self, milters=(), main_cf=None, name="e2e"):
        self.milters = list(milters)
        self.extra_main_cf = dict(main_cf or {})
        self.name = name
        self.dir = None
        self.port = None
        self.sink = None

    # -- life cycle ------------------------------------------------------
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        if os.geteuid() != 0:
            raise RuntimeError("the private Postfix needs root (postfix -c DIR start)")
        self.dir = tempfile.mkdtemp(prefix="sekimori-%s-" % self.name)
        os.chmod(self.dir, 0o755)
        for d in ("conf", "queue", "data", "log"):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        # Postfix's master writes its lock and state here as the mail owner.
        import pwd
        pw = pwd.getpwnam("postfix")
        os.chown(os.path.join(self.dir, "data"), pw.pw_uid, pw.pw_gid)
        # A start that fails half way stops what it started (a test's
        # tearDown does not run when its setUp raises).
        try:
            self.sink = Sink(self.dir)
            self.sink.start()
            for m in self.milters:
                m.setup(self.dir)
                m.start()
            self.port = free_port()
            self._write_postfix_conf()
            self._postfix("start")
            wait_until(lambda: port_open(self.port), 30, "postfix smtpd on port %d" % self.port)
        except BaseException:
            self.stop()
            raise

    def stop(self):
        if self.dir is None:
            return
        try:
            self._postfix("stop", check=False)
            pid = self._master_pid()
            if pid:
                wait_until(lambda: not process_alive(pid), 15, "postfix master to exit")
        except Exception:
            pid = self._master_pid()
            if pid:
                stop_pid(pid, sig=signal.SIGKILL)
        unclean = None
        for m in self.milters:
            try:
                m.stop()
            except AssertionError as e:  # everything is still cleaned up
                unclean = unclean or e
        if self.sink:
            self.sink.stop()
        if os.environ.get("SEKIMORI_KEEP") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print("kept", self.dir)
        self.dir = None
        if unclean:
            raise unclean

    def _master_pid(self):
        try:
            with open(os.path.join(self.dir, "queue", "pid", "master.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def _postfix(self, *args, check=True):
        r = subprocess.run(["/usr/sbin/postfix", "-c", os.path.join(self.dir, "conf")] + list(args),
                           capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError("postfix %s failed: %s%s\n%s" % (" ".join(args), r.stdout, r.stderr, self.postfix_log()))
        return r

    def main_cf(self):
        d = self.dir
        cf = {
            "compatibility_level": "3.6",
            "queue_directory": d + "/queue",
            "data_directory": d + "/data",
            "command_directory": "/usr/sbin",
            "daemon_directory": "/usr/lib/postfix/sbin",
            "meta_directory": "/etc/postfix",
            "shlib_directory": "/usr/lib/postfix",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "myhostname": "mx.sekimori.test",
            "mydomain": "sekimori.test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "local_recipient_maps": "",
            "relay_domains": "",
            "mynetworks": "127.0.0.0/8",
            # Loopback only, into a sink: relaying anywhere is what the
            # tests need (XCLIENT plays clients from other networks).
            # smtpd refuses to start (fatal) unless one of the two lists
            # names reject_unauth_destination (or the like) before any
            # bare `permit`; static:OK permits every client first.
            "smtpd_relay_restrictions": "check_client_access static:OK, reject_unauth_destination",
            "smtpd_recipient_restrictions": "permit",
            "relayhost": "[127.0.0.1]:%d" % self.sink.port,
            "smtp_dns_support_level": "disabled",
            "smtputf8_enable": "no",
            "alias_maps": "",
            "alias_database": "",
            "maillog_file": d + "/log/postfix.log",
            "maillog_file_prefixes": d,
            "smtpd_authorized_xclient_hosts": "127.0.0.0/8",
            # Postfix's own limits act before a milter sees the mail: raise
            # them so the milter makes the decisions under test.
            "message_size_limit": "0",
            "mailbox_size_limit": "0",
            "hopcount_limit": "500",
            "header_size_limit": "4096000",
            "smtpd_recipient_limit": "10000",
            "milter_default_action": "tempfail",
            "milter_protocol": "6",
            "smtpd_milters": " ".join(m.postfix_spec for m in self.milters),
            "non_smtpd_milters": " ".join(m.postfix_spec for m in self.milters),
            "smtp_connection_cache_on_demand": "yes",
            "delay_warning_time": "0",
            "bounce_queue_lifetime": "0",
            "maximal_queue_lifetime": "1h",
            "smtpd_client_connection_count_limit": "0",
            "smtpd_client_connection_rate_limit": "0",
            "default_process_limit": "200",
        }
        cf.update(self.extra_main_cf)
        return cf

    def _write_postfix_conf(self):
        conf = os.path.join(self.dir, "conf")
        with open(os.path.join(conf, "main.cf"), "w") as f:
            for k, v in self.main_cf().items():
                f.write("%s = %s\n" % (k, v))
        with open(os.path.join(conf, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(port=self.port))

    def postconf(self, **settings):
        """Changes main.cf and reloads Postfix."""
        self.extra_main_cf.update(settings)
        self._write_postfix_conf()
        self._postfix("reload")
        time.sleep(1.0)

    def postfix_log(self):
        return read_text(os.path.join(self.dir, "log", "postfix.log"))

    def queue_ids(self):
        """Queue IDs of messages still in Postfix's queue."""
        r = subprocess.run(["/usr/sbin/postqueue", "-c", os.path.join(self.dir, "conf"), "-j"],
                           capture_output=True, text=True)
        ids = re.findall(r'"queue_id": "([0-9A-Za-z]+)"', r.stdout)
        return ids

    # -- sending ---------------------------------------------------------
    def swaks(self, to="user@example.net", frm="sender@example.org", *, body=None, headers=(), data=None,
              attach=(), xclient=None, ehlo="client.example.org", extra=(), timeout=60):
        """Sends one message with swaks; returns SmtpResult.

        to: one address or a list. headers: ["Subject: x", ...]. data: a whole
        raw message (str or bytes) instead of body/headers. attach: [(path, type)].
        xclient: e.g. "ADDR=203.0.113.5" or "LOGIN=alice" (Postfix XCLIENT,
        authorised for loopback) to play another client or an authenticated user.
        """
        if isinstance(to, (list, tuple)):
            to = ",".join(to)
        cmd = ["swaks", "--server", "127.0.0.1", "--port", str(self.port), "--to", to, "--from", frm,
               "--ehlo", ehlo, "--timeout", str(timeout)]
        tmp = None
        if data is not None:
            if isinstance(data, str):
                data = data.encode()
            fd, tmp = tempfile.mkstemp(dir=self.dir, suffix=".eml")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            cmd += ["--data", "@" + tmp]
        else:
            if body is not None:
                cmd += ["--body", body]
            for h in headers:
                cmd += ["--add-header", h]
            for path, ctype in attach:
                cmd += ["--attach-type", ctype, "--attach", "@" + path]
        if xclient:
            cmd += ["--xclient", xclient]
        cmd += list(extra)
        r = subprocess.run(cmd, capture_output=True, timeout=timeout + 30)
        if tmp:
            os.unlink(tmp)
        return SmtpResult(r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace"), r.returncode)

    def smtp(self):
        """A Python smtplib client connected to the private Postfix, for what
        swaks cannot send (MAIL FROM parameters such as SIZE=)."""
        c = smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.example.org", timeout=60)
        c.ehlo()
        return c


MASTER_CF = """\
{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def make_message(*, subject="test", body="hello\r\n", headers=(), msgid=None, frm="sender@example.org",
                 to="user@example.net"):
    """A raw RFC 5322 message with CRLF line ends."""
    msgid = msgid or "<%s@sekimori.test>" % os.urandom(8).hex()
    lines = ["From: <%s>" % frm, "To: <%s>" % to, "Subject: %s" % subject, "Message-ID: %s" % msgid,
             "Date: Mon, 23 Nov 2026 10:00:00 +0900"]
    lines += list(headers)
    text = "\r\n".join(lines) + "\r\n\r\n"
    if isinstance(body, bytes):
        return text.encode() + body
    return (text + body).encode()
