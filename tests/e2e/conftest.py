"""End-to-end tests: the real `ownmail` binary, driven as a person or a script would.

Fixtures (all plain stdlib + Debian's python3-pytest):

- ``ownmail``          path (str) of the binary: $OWNMAIL_BIN, default target/debug/ownmail.
                       Missing binary is a failure, never a skip.
- ``run``              run(args, *, input=None, timeout=60, cwd=None, env=None)
                       -> (returncode, stdout, stderr), text mode.
- ``om``               om(*args, ns=None, **kw) -> run([ownmail, *args]) — inside the
                       network namespace ``ns`` (a NetNs) when given.
- ``pki``              session-wide directory with NAME.crt / NAME.key (PKCS#1 RSA key,
                       self-signed, mode 600) for every certificate name the article uses.
- ``netns``            a fresh network namespace with ``lo`` up and a veth ``eth0``
                       (192.0.2.10/24); a NetNs: ``netns(args, **kw)`` runs a command in it,
                       ``netns.name`` is its name. Deleted after the test.
- ``netns_lo_only``    same, without eth0 (to prove what happens when eth0 is absent).
- ``article``          article(setup) -> Path of an installed article config (tables
                       copied, /etc/ paths rewritten, makemap run where the config
                       uses db: tables); setups are the keys of ARTICLE_SETUPS.
- ``install_article``  install_article(tmpdir, conf_name, files) -> Path of the config.

Plus module-level helpers: ``article_text(name)``, ``error_lines(stderr, path, line)``,
``assert_no_panic(stderr)``, ``make_netns(eth0=True)`` (a context manager).

`ownmail serve` (the test_serve_*.py modules):

- ``mail_root``        a fresh world-traversable (0755) directory under /tmp, removed after
                       the test (kept when $OM_E2E_KEEP is set). Mail for uid 5000 lives
                       here: pytest's own tmp_path sits under a 0700 directory.
- ``ownmail_server``   ownmail_server(conf, *, spool=None, pki_dir=None, ns=None, ...)
                       -> a started OwnmailServer (``ready`` seen on stderr); every server
                       still running at teardown gets SIGTERM, then SIGKILL after 10 s, by
                       PID. Module-scoped fixtures use ``start_ownmail(binary, conf, ...)``.
- ``NetNs.connect(host, port)`` / ``NetNs.popen(args)`` reach into a namespace from here
                       (a socket is made by a thread that joined the namespace).
- ``SmtpClient``       a raw SMTP dialogue: ``c.send(b"MAIL FROM:<a@b>\r\n"); c.expect(250)``.
- ``ns_smtp(host, port, ns=...)`` an smtplib.SMTP whose socket lives in the namespace.
- ``wait_maildir(maildir, n)``, ``wait_delivered(maildir, marker)``, ``wait_queue_empty(spool)``,
  ``check_maildir_file(path)``, ``make_message(marker)``, ``smtp_send(smtp, from, rcpts, msg)``
  -> queue id, ``write_vmail_conf(root, ...)`` (modern grammar, one Maildir user, uid 5000).

An OwnmailServer has ``pid``, ``proc``, ``spool``, ``ns``, ``log`` (stderr so far), ``mark()``,
``grep(rx)``, ``wait_for(rx)``, ``events(kind, **kv)`` / ``wait_event(kind, **kv)`` (key=value
log lines), ``wait_delivery(qid, result)``, ``hup()``, ``signal(sig)``, ``kill()``,
``terminate()``, ``connect(port)`` -> SmtpClient after the 220, ``smtp(port)`` -> smtplib.
"""

import contextlib
import ctypes
import itertools
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

E2E_DIR = Path(__file__).resolve().parent
ROOT = E2E_DIR.parent.parent
ARTICLE_DIR = E2E_DIR / "article"

# Certificate names the article's configurations use (`certificate NAME`).
CERT_NAMES = ("example.org", "mail.example.com", "shoggoth.tc2.fr")

DEFAULT_TIMEOUT = 60

# The article's configurations, each with the table files it needs (the part of
# the name before the first '.' is the name under <tmp>/etc/), and whether it
# names db: tables (then `ownmail makemap` is run on each table file first).
V3_TABLES = ("aliases.v3", "vusers.v3", "smtpdauth.v3-fixed")
ARTICLE_SETUPS = {
    "v1": ("smtpd.conf.v1", ("aliases.v1",), False),
    "v1b": ("smtpd.conf.v1b", ("aliases.v1b",), False),
    "v2": ("smtpd.conf.v2", ("aliases.v2", "vusers.v2"), False),
    "v3": ("smtpd.conf.v3", V3_TABLES, True),
    "v3-dkimproxy": ("smtpd.conf.v3-dkimproxy", V3_TABLES, True),
    "v3-backup": ("smtpd.conf.v3-backup", V3_TABLES, True),
}


# --------------------------------------------------------------------------- running


def run(args, *, input=None, timeout=DEFAULT_TIMEOUT, cwd=None, env=None):
    """Runs args; returns (returncode, stdout, stderr) as text. A hang is a failure."""
    args = [str(a) for a in args]
    try:
        proc = subprocess.run(
            args,
            input=input,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            cwd=cwd,
            env=env,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"timed out after {timeout}s: {' '.join(args)}\nstderr so far: {e.stderr!r}")
    except FileNotFoundError as e:
        pytest.fail(f"cannot run {args[0]}: {e}")
    return proc.returncode, proc.stdout, proc.stderr


def assert_no_panic(stderr):
    assert "panicked" not in stderr, f"ownmail panicked:\n{stderr}"


def error_lines(stderr, path, line, *, col=r"\d+"):
    """The stderr lines `PATH:LINE:COL: ...` (LINE may be a regex such as '[12]')."""
    pat = re.compile(rf"^{re.escape(str(path))}:{line}:{col}: ")
    return [l for l in stderr.splitlines() if pat.match(l)]


# --------------------------------------------------------------------------- binary


@pytest.fixture(scope="session")
def ownmail():
    env = os.environ.get("OWNMAIL_BIN")
    path = Path(env) if env else ROOT / "target" / "debug" / "ownmail"
    if not path.is_absolute():
        path = (Path.cwd() / path).resolve()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"ownmail binary not found at {path}: run `cargo build --bin ownmail` "
            "(scripts/test does) or set OWNMAIL_BIN",
            pytrace=False,
        )
    return str(path)


@pytest.fixture(name="run")
def run_fixture():
    return run


@pytest.fixture
def om(ownmail):
    """om(*args, ns=None, **kw): runs ownmail, in network namespace ns when given."""

    def _om(*args, ns=None, **kw):
        cmd = [ownmail, *args]
        if ns is not None:
            return ns(cmd, **kw)
        return run(cmd, **kw)

    return _om


# --------------------------------------------------------------------------- pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A directory with NAME.crt and NAME.key for each name in CERT_NAMES.

    Keys are PKCS#1 ("BEGIN RSA PRIVATE KEY"), as the article's 2013 openssl wrote
    them; made once per session, since RSA key generation is the slow part.
    """
    d = tmp_path_factory.mktemp("pki")
    for name in CERT_NAMES:
        key, crt = d / f"{name}.key", d / f"{name}.crt"
        rc, _, err = run(["openssl", "genrsa", "-traditional", "-out", key, "2048"])
        assert rc == 0, f"openssl genrsa failed: {err}"
        rc, _, err = run(
            ["openssl", "req", "-new", "-x509", "-key", key, "-out", crt,
             "-days", "365", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:FALSE"]
        )
        assert rc == 0, f"openssl req failed: {err}"
        key.chmod(0o600)
        crt.chmod(0o600)
    return d


# --------------------------------------------------------------------------- netns

_netns_counter = itertools.count(1)


class NetNs:
    """A network namespace this test run created; call it to run a command inside."""

    def __init__(self, name):
        self.name = name

    def __call__(self, args, **kw):
        return run(["ip", "netns", "exec", self.name, *args], **kw)

    def popen(self, args, **kw):
        """subprocess.Popen of args inside the namespace (`ip netns exec` execs in place,
        so the Popen's pid is the command's own)."""
        return subprocess.Popen(["ip", "netns", "exec", self.name, *map(str, args)], **kw)

    def socket(self, family=socket.AF_INET, type=socket.SOCK_STREAM):
        """A socket that belongs to this namespace (usable from any thread)."""
        return in_netns(self.name, lambda: socket.socket(family, type))

    def connect(self, host, port, *, timeout=10, source=None):
        """A TCP connection to host:port made from inside the namespace."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = self.socket(family)
        try:
            s.settimeout(timeout)
            if source is not None:
                s.bind(source if isinstance(source, tuple) else (source, 0))
            s.connect((host, port))
        except BaseException:
            s.close()
            raise
        return s

    def __repr__(self):
        return f"NetNs({self.name!r})"


def _ip(*args):
    rc, out, err = run(["ip", *args])
    if rc != 0:
        pytest.fail(
            f"`ip {' '.join(map(str, args))}` failed (status {rc}): {err.strip()}\n"
            "the e2e tests need root and network namespaces (iproute2)",
            pytrace=False,
        )
    return out


@contextlib.contextmanager
def make_netns(eth0=True):
    """Creates om-test-<pid>-<n> with lo up and, if eth0, a veth `eth0` at 192.0.2.10/24.

    Always deletes the namespace (by the name made here) afterwards.
    """
    if os.geteuid() != 0:
        pytest.fail("the e2e tests must run as root (they create network namespaces)",
                    pytrace=False)
    if shutil.which("ip") is None:
        pytest.fail("`ip` (iproute2) is missing: scripts/test installs it", pytrace=False)
    name = f"om-test-{os.getpid()}-{next(_netns_counter)}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        if eth0:
            # No `dummy` link type on this kernel: a veth pair whose both ends live
            # in the namespace gives an `eth0` with an address and carrier.
            _ip("-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
            _ip("-n", name, "addr", "add", "192.0.2.10/24", "dev", "eth0")
            _ip("-n", name, "link", "set", "eth0p", "up")
            _ip("-n", name, "link", "set", "eth0", "up")
        yield NetNs(name)
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


@pytest.fixture
def netns():
    with make_netns(eth0=True) as ns:
        yield ns


@pytest.fixture
def netns_lo_only():
    with make_netns(eth0=False) as ns:
        yield ns


# --------------------------------------------------------------------------- article


def _article_lines(name):
    return (ARTICLE_DIR / name).read_text(encoding="utf-8").rstrip("\n").split("\n")


def _insert_before_rule(lines, rule, block):
    """Inserts block before `rule` (and before the comment line just above it)."""
    i = lines.index(rule)
    if i > 0 and lines[i - 1].startswith("#"):
        i -= 1
    return lines[:i] + block + lines[i:]


def _v3_dkimproxy():
    """v3 with the article's dkimproxy loop: the submission listener tagged TO_DKIM,
    the `listen ... tag FROM_DKIM` after the other listens, and the
    `accept tagged TO_DKIM ...` rule before `accept for any relay`."""
    lines = _article_lines("smtpd.conf.v3")
    snippet = _article_lines("dkimproxy.snippet")
    blank = snippet.index("")
    send, listen = snippet[:blank], snippet[blank + 1:]
    assert send[-1].startswith("accept tagged TO_DKIM") and listen[-1].startswith("listen on lo")

    sub = [i for i, l in enumerate(lines) if l.startswith("listen on eth0 port 587 ")]
    assert len(sub) == 1
    lines[sub[0]] += " tag TO_DKIM"
    last_listen = max(i for i, l in enumerate(lines) if l.startswith("listen "))
    lines = lines[: last_listen + 1] + listen + lines[last_listen + 1:]
    lines = _insert_before_rule(lines, "accept for any relay", send + [""])
    return "\n".join(lines) + "\n"


def _v3_backup():
    """v3 with the article's backup-MX rule before the final `accept for any relay`."""
    lines = _article_lines("smtpd.conf.v3")
    snippet = _article_lines("backup.snippet")
    lines = _insert_before_rule(lines, "accept for any relay", snippet + [""])
    return "\n".join(lines) + "\n"


_DERIVED = {
    "smtpd.conf.v3-dkimproxy": _v3_dkimproxy,
    "smtpd.conf.v3-backup": _v3_backup,
}


def article_text(name):
    """The bytes of an article file, or of a config derived from v3 (see _DERIVED)."""
    if name in _DERIVED:
        return _DERIVED[name]().encode("utf-8")
    return (ARTICLE_DIR / name).read_bytes()


def install_article(tmpdir, conf_name, files):
    """Installs an article config into tmpdir as `smtpd.conf`; returns its path.

    Only absolute `/etc/` paths are rewritten, to `<tmpdir>/etc/`. Each of `files`
    (e.g. "aliases.v3", "smtpdauth.v3-fixed") is copied to `<tmpdir>/etc/` under its
    article name (the part before the first '.': aliases, vusers, smtpdauth).
    """
    tmpdir = Path(tmpdir).resolve()
    etc = tmpdir / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    text = article_text(conf_name)
    text = re.sub(rb"(?<=[\s:\"<])/etc/", (etc.as_posix() + "/").encode(), text)
    conf = tmpdir / "smtpd.conf"
    conf.write_bytes(text)
    for f in files:
        shutil.copyfile(ARTICLE_DIR / f, etc / f.split(".", 1)[0])
    return conf


@pytest.fixture(name="install_article")
def install_article_fixture():
    return install_article


@pytest.fixture
def article(tmp_path, om):
    """article(setup) -> Path of the installed config, tables made with makemap if needed."""

    def _article(setup, tables=None):
        conf_name, files, uses_db = ARTICLE_SETUPS[setup]
        files = tables if tables is not None else files
        conf = install_article(tmp_path, conf_name, files)
        if uses_db:
            for f in files:
                src = tmp_path / "etc" / f.split(".", 1)[0]
                rc, _, err = om("makemap", src)
                assert_no_panic(err)
                assert rc == 0, f"ownmail makemap {src} failed:\n{err}"
                assert Path(f"{src}.db").is_file(), f"makemap did not write {src}.db"
        return conf

    return _article


# =========================================================================== serve
#
# Helpers for the `ownmail serve` tests (test_serve_*.py). Everything a test starts is
# stopped by its PID; every wait has a deadline.

VMAIL_UID = 5000
VMAIL_GID = 5000
READY_TIMEOUT = 15
STOP_TIMEOUT = 10

_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000


def in_netns(name, fn):
    """Runs fn() in a short-lived thread that joined network namespace `name`; returns
    its result. A socket made there stays in that namespace for good, and the change of
    namespace dies with the thread (setns affects the calling thread only)."""
    box = {}

    def target():
        try:
            fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({name}): {os.strerror(err)}")
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as e:  # handed to the caller
            box["error"] = e

    t = threading.Thread(target=target, name=f"netns-{name}")
    t.start()
    t.join(30)
    if t.is_alive():
        pytest.fail(f"could not enter network namespace {name} within 30 s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def deadline_loop(timeout, interval=0.05):
    """Yields until `timeout` seconds have passed (at least once)."""
    end = time.monotonic() + timeout
    while True:
        yield
        if time.monotonic() >= end:
            return
        time.sleep(interval)


# --------------------------------------------------------------------------- directories


@contextlib.contextmanager
def world_tmpdir(prefix="om-e2e-"):
    """A fresh 0755 directory under /tmp (uid 5000 and Dovecot's users can traverse it)."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp")).resolve()
    d.chmod(0o755)
    try:
        yield d
    finally:
        if os.environ.get("OM_E2E_KEEP"):
            print(f"kept {d} (OM_E2E_KEEP)")
        else:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def mail_root():
    with world_tmpdir() as d:
        yield d


def make_vmail_dir(root):
    """<root>/var/vmail owned by vmail (5000:5000), as the article makes /var/vmail; the
    user's own directory (<root>/var/vmail/m) is left for the delivery to create."""
    vmail = Path(root) / "var" / "vmail"
    vmail.mkdir(parents=True, exist_ok=True)
    for d in (Path(root) / "var", vmail):
        d.chmod(0o755)
    os.chown(vmail, VMAIL_UID, VMAIL_GID)
    return vmail


class VmailSetup:
    """What write_vmail_conf made: conf, maildir (of user m), virtual and vusers tables."""

    def __init__(self, conf, maildir, virtual, vusers):
        self.conf, self.maildir, self.virtual, self.vusers = conf, maildir, virtual, vusers

    def __repr__(self):
        return f"VmailSetup({self.conf})"


def write_vmail_conf(root, *, listens=("listen on 127.0.0.1 port 25",), domains=("example.org",),
                     extra=(), user="m", name="smtpd.conf"):
    """A modern-grammar smtpd.conf (like shared/bench/lib.sh write_smtpd_conf): `USER@DOMAIN`
    for each domain goes to the Maildir <root>/var/vmail/USER through a virtual table and a
    userbase (uid/gid 5000). `extra` lines go before the listen lines."""
    root = Path(root)
    etc = root / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    etc.chmod(0o755)
    vmail = make_vmail_dir(root)
    virtual = etc / "virtual"
    virtual.write_text(
        "# virtual addresses\n" + "".join(f"{user}@{d}  {user}\n" for d in domains),
        encoding="utf-8")
    vusers = etc / "vusers"
    vusers.write_text(f"# the virtual user\n{user}  {VMAIL_UID}:{VMAIL_GID}:{vmail / user}\n",
                      encoding="utf-8")
    lines = [
        "# ownmail e2e: inbound to one Maildir (modern grammar)",
        f"table valiases file:{virtual}",
        f"table vusers file:{vusers}",
        *extra,
        *listens,
        'action "vmail" maildir "~/" virtual <valiases> userbase <vusers>',
        *(f'match from any for domain "{d}" action "vmail"' for d in domains),
    ]
    conf = root / name
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return VmailSetup(conf, vmail / user, virtual, vusers)


# --------------------------------------------------------------------------- the server


class OwnmailServer:
    """A running `ownmail serve`; its stderr is read by a thread into ``lines``."""

    def __init__(self, args, *, conf, spool, ns=None):
        self.args = [str(a) for a in args]
        self.conf, self.spool, self.ns = Path(conf), Path(spool), ns
        self.lines = []
        self.stdout_lines = []
        self._cond = threading.Condition()
        self._eof = False
        self.proc = subprocess.Popen(
            self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True)
        self.pid = self.proc.pid
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.lines, True),
                             daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout_lines, False),
                             daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _pump(self, stream, into, is_stderr):
        for raw in iter(stream.readline, b""):
            with self._cond:
                into.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            if is_stderr:
                self._eof = True
            self._cond.notify_all()

    # ---------------------------------------------------------------- log
    @property
    def log(self):
        with self._cond:
            return "\n".join(self.lines)

    def mark(self):
        """Number of stderr lines so far: pass as `start` to only look at later lines."""
        with self._cond:
            return len(self.lines)

    def log_tail(self, n=60):
        with self._cond:
            return "\n".join(self.lines[-n:])

    def grep(self, pattern, start=0):
        rx = re.compile(pattern)
        with self._cond:
            return [l for l in self.lines[start:] if rx.search(l)]

    def wait_for(self, pattern, timeout=10, start=0):
        """Waits until a stderr line (from index `start`) matches; returns the line."""
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        with self._cond:
            i = start
            while True:
                while i < len(self.lines):
                    if rx.search(self.lines[i]):
                        return self.lines[i]
                    i += 1
                left = end - time.monotonic()
                if left <= 0 or self._eof:
                    break
                self._cond.wait(min(left, 0.2))
        status = self.proc.poll()
        why = "ownmail exited (status %s)" % status if status is not None else f"{timeout}s passed"
        pytest.fail(f"no stderr line matching {pattern!r}: {why}\n--- stderr tail ---\n"
                    f"{self.log_tail()}")

    @staticmethod
    def _event_rx(kind, kv):
        rx = rf"^(?=.*\b{re.escape(kind)}\b)"
        for k, v in kv.items():
            rx += rf"(?=.*(?:^|\s){re.escape(k)}={re.escape(str(v))}(?:\s|$))"
        return rx

    def events(self, kind, start=0, **kv):
        """Log lines of the event `kind` (`smtp`, `delivery`) carrying every key=value
        given (exact value tokens, any order): events("delivery", id=qid, result="delivered")."""
        return self.grep(self._event_rx(kind, kv), start)

    def wait_event(self, kind, timeout=10, start=0, **kv):
        return self.wait_for(self._event_rx(kind, kv), timeout, start)

    # The delivery result lines (SPEC §5.8): `delivery id=QID rcpt=ADDR result=RESULT ...`,
    # RESULT one of delivered, tempfail, failed. Only these two methods know the format.
    def deliveries(self, qid, result, start=0):
        return self.events("delivery", start=start, id=qid, result=result)

    def wait_delivery(self, qid, result="delivered", timeout=10, start=0):
        return self.wait_event("delivery", timeout=timeout, start=start, id=qid, result=result)

    # ---------------------------------------------------------------- process
    def alive(self):
        return self.proc.poll() is None

    def wait_ready(self, timeout=READY_TIMEOUT):
        self.wait_for(r"\bready\b", timeout)

    def signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def hup(self):
        self.signal(signal.SIGHUP)

    def kill(self):
        """SIGKILL (the crash in the durability tests); waits for the exit."""
        self.signal(signal.SIGKILL)
        self.proc.wait(STOP_TIMEOUT)
        self._join()

    def terminate(self, timeout=STOP_TIMEOUT):
        """SIGTERM; returns the exit status, or None if it had to be SIGKILLed after timeout."""
        if self.proc.poll() is not None:
            self._join()
            return self.proc.returncode
        os.kill(self.pid, signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT)
            rc = None
        self._join()
        return rc

    def _join(self):
        for t in self._threads:
            t.join(5)

    # ---------------------------------------------------------------- clients
    def connect(self, port=25, host="127.0.0.1", *, timeout=10, source=None, greeting=True):
        """A raw SmtpClient (in the server's namespace); reads the 220 greeting."""
        c = SmtpClient.connect(host, port, ns=self.ns, timeout=timeout, source=source)
        if greeting:
            c.expect(220)
        return c

    def smtp(self, port=25, host="127.0.0.1", **kw):
        return ns_smtp(host, port, ns=self.ns, **kw)

    def __repr__(self):
        return f"OwnmailServer(pid={self.pid}, conf={self.conf})"


def start_ownmail(ownmail, conf, *, spool=None, pki_dir=None, ns=None, verbose=False,
                  wrap=(), ready_timeout=READY_TIMEOUT, check=True):
    """Starts `ownmail serve -f CONF --spool SPOOL [--pki-dir DIR] [-v]` (inside `ns` when
    given, behind the `wrap` command prefix when given: it must exec the rest in place) and
    waits for `ready` on stderr. With check=True, `ownmail check` must pass on CONF first,
    so that a config the tests got wrong is told apart from a server that fails."""
    conf = Path(conf)
    spool = Path(spool) if spool is not None else conf.parent / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    pki = ["--pki-dir", str(pki_dir)] if pki_dir is not None else []
    if check:
        cmd = [ownmail, "check", "-f", conf, *pki]
        rc, _, err = ns(cmd) if ns is not None else run(cmd)
        assert rc == 0, f"`ownmail check` rejects the test's config {conf}:\n{err}"
    args = [*wrap, ownmail, "serve", "-f", conf, "--spool", spool, *pki]
    if verbose:
        args.append("-v")
    if ns is not None:
        args = ["ip", "netns", "exec", ns.name, *args]
    server = OwnmailServer(args, conf=conf, spool=spool, ns=ns)
    try:
        server.wait_ready(ready_timeout)
    except BaseException:
        stop_ownmail(server)
        raise
    return server


def stop_ownmail(server, *, report=True):
    """SIGTERM, SIGKILL after 10 s (by PID); prints its stderr (pytest shows it on failure)."""
    server.terminate()
    if report:
        print(f"--- ownmail (pid {server.pid}) stderr ---\n{server.log}")
        if server.stdout_lines:
            print(f"--- ownmail (pid {server.pid}) stdout ---\n" + "\n".join(server.stdout_lines))
    assert_no_panic(server.log)


@pytest.fixture
def ownmail_server(ownmail):
    """ownmail_server(conf, *, spool=None, pki_dir=None, ns=None, verbose=False, wrap=(),
    ready_timeout=15, check=True) -> OwnmailServer. Stopped (by PID) after the test."""
    started = []

    def _start(conf, **kw):
        server = start_ownmail(ownmail, conf, **kw)
        started.append(server)
        return server

    yield _start
    for server in started:
        stop_ownmail(server)


# --------------------------------------------------------------------------- raw SMTP


class SmtpClosed(Exception):
    """The server closed the connection."""


class SmtpReply:
    def __init__(self, code, lines):
        self.code, self.lines = code, lines

    @property
    def text(self):
        return "\n".join(self.lines)

    @property
    def enhanced(self):
        """The enhanced status code of the first line (`5.5.2`), or None."""
        m = re.match(r"^\d{3}[ -]([245]\.\d{1,3}\.\d{1,3})(?:\s|$)", self.lines[0])
        return m.group(1) if m else None

    @property
    def keywords(self):
        """EHLO keywords: {"SIZE": "20480", "PIPELINING": "", ...} (upper-case names)."""
        out = {}
        for line in self.lines[1:]:
            words = line[4:].split(None, 1)
            if words:
                out[words[0].upper()] = words[1] if len(words) > 1 else ""
        return out

    def __str__(self):
        return self.text

    __repr__ = __str__


class SmtpClient:
    """A plain-socket SMTP client for dialogues a library would not allow:
    ``c.send("MAIL FROM:<a@b>\\r\\n"); c.expect(250)``. Every read has a deadline."""

    def __init__(self, sock, timeout=10):
        self.sock = sock
        self.timeout = timeout
        self.buf = b""
        self.transcript = []

    @classmethod
    def connect(cls, host, port, *, ns=None, timeout=10, source=None):
        if ns is not None:
            sock = ns.connect(host, port, timeout=timeout, source=source)
        else:
            sock = socket.create_connection((host, port), timeout=timeout,
                                            source_address=source and (source, 0))
        return cls(sock, timeout)

    def _note(self, who, data):
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        if len(text) > 300:
            text = text[:300] + f"... ({len(text)} chars)"
        self.transcript.append(f"{who} {text!r}")

    def dialogue(self):
        return "\n".join(self.transcript[-40:])

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self._note("C:", data)
        self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise
        except (ssl.SSLZeroReturnError, ConnectionError) as e:
            raise SmtpClosed(str(e)) from e
        except ssl.SSLError as e:
            raise SmtpClosed(f"TLS: {e}") from e
        if not data:
            raise SmtpClosed("EOF")
        self.buf += data

    def readline(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\n" not in self.buf:
            self._fill(deadline)
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def reply(self, timeout=None):
        """Reads one (possibly multi-line) reply."""
        timeout = timeout or self.timeout
        lines = []
        try:
            while True:
                line = self.readline(timeout)
                self._note("S:", line)
                if not re.match(r"^\d{3}([ -]|$)", line):
                    pytest.fail(f"malformed reply line {line!r}\n{self.dialogue()}")
                lines.append(line)
                if len(line) == 3 or line[3] == " ":
                    return SmtpReply(int(line[:3]), lines)
        except TimeoutError:
            pytest.fail(f"no complete reply within {timeout}s\n{self.dialogue()}")
        except SmtpClosed as e:
            if lines:
                pytest.fail(f"connection closed within a reply ({e})\n{self.dialogue()}")
            raise

    def expect(self, code, enhanced=None, timeout=None):
        """Reads a reply and asserts its code starts with `code` (250, "25", "5") and, when
        given, its enhanced status code starts with `enhanced` ("5.5.2")."""
        try:
            r = self.reply(timeout)
        except SmtpClosed as e:
            pytest.fail(f"expected {code}, the server closed the connection ({e})\n"
                        f"{self.dialogue()}")
        assert str(r.code).startswith(str(code)), (
            f"expected {code}, got:\n{r}\n--- dialogue ---\n{self.dialogue()}")
        if enhanced is not None:
            assert r.enhanced and r.enhanced.startswith(enhanced), (
                f"expected enhanced code {enhanced}, got:\n{r}\n--- dialogue ---\n"
                f"{self.dialogue()}")
        return r

    def cmd(self, line, code=None, enhanced=None, timeout=None):
        """Sends one command line (CRLF added); returns the reply (checked when code given)."""
        self.send(line + "\r\n")
        if code is None:
            return self.reply(timeout)
        return self.expect(code, enhanced, timeout)

    def ehlo(self, name="client.test"):
        return self.cmd(f"EHLO {name}", 250)

    def closed(self, timeout=5):
        """True once the server has closed the connection (EOF or reset) within timeout;
        anything it sends meanwhile is kept in buf."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
        except TimeoutError:
            return False
        except SmtpClosed:
            return True
        except OSError:
            return True

    def starttls(self, server_hostname=None):
        """TLS handshake on the connection, no certificate verification (the test's pki is
        self-signed). Nothing may be left unread before it."""
        assert self.buf == b"", (
            f"the server sent {self.buf!r} before the TLS handshake\n{self.dialogue()}")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock.settimeout(self.timeout)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)
        self._note("--", f"TLS established: {self.sock.version()}")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------- smtplib


class NsSMTP(smtplib.SMTP):
    """smtplib.SMTP whose connection is made inside a network namespace."""

    def __init__(self, host="", port=0, *, ns=None, **kw):
        self._ns = ns
        super().__init__(host, port, **kw)

    def _get_socket(self, host, port, timeout):
        if self._ns is None:
            return super()._get_socket(host, port, timeout)
        return self._ns.connect(host, port, timeout=timeout, source=self.source_address)


def ns_smtp(host="127.0.0.1", port=25, *, ns=None, timeout=20, **kw):
    return NsSMTP(host, port, ns=ns, timeout=timeout, local_hostname="client.test", **kw)


QUEUED_RE = re.compile(r"queued as ([0-9A-Za-z]+)")


def smtp_send(smtp, sender, rcpts, msg, *, mail_options=()):
    """One transaction over an smtplib connection; every reply must be 2xx/354.
    Returns the queue id from `250 2.0.0 Ok: queued as QID`."""
    if isinstance(rcpts, str):
        rcpts = [rcpts]
    smtp.ehlo_or_helo_if_needed()
    code, resp = smtp.mail(sender, list(mail_options))
    assert code == 250, f"MAIL FROM:<{sender}> -> {code} {resp!r}"
    for r in rcpts:
        code, resp = smtp.rcpt(r)
        assert code == 250, f"RCPT TO:<{r}> -> {code} {resp!r}"
    code, resp = smtp.data(msg)
    assert code == 250, f"end of DATA -> {code} {resp!r}"
    text = resp.decode("utf-8", "replace")
    m = QUEUED_RE.search(text)
    assert m, f"no `queued as QID` in the 250 reply: {text!r}"
    return m.group(1)


# --------------------------------------------------------------------------- messages


def make_message(marker, *, sender="alice@client.test", to="m@example.org", body=None,
                 extra_headers=()):
    """A message (CRLF line endings) whose Subject is `marker`, with a unique Message-ID
    and a body whose last line is `END <marker>`."""
    if body is None:
        body = [f"This is {marker}.", "", "Second paragraph, with a 8-bit word: déjà vu.",
                ".a line that starts with a dot", "..two dots", "From the start of a line"]
    lines = [
        f"From: <{sender}>", f"To: <{to}>", f"Subject: {marker}",
        f"Message-ID: <{marker}@client.test>", "Date: Sun, 26 May 2013 00:33:59 +0200",
        "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit", *extra_headers, "", *body, f"END {marker}", "",
    ]
    return "\r\n".join(lines).encode("utf-8")


def lf(data):
    """CRLF -> LF (how a message is stored in a Maildir file)."""
    return data.replace(b"\r\n", b"\n")


# --------------------------------------------------------------------------- Maildir / spool


def maildir_files(maildir, sub="new"):
    d = Path(maildir) / sub
    try:
        return sorted(p for p in d.iterdir() if p.is_file())
    except FileNotFoundError:
        return []


def wait_maildir(maildir, n, timeout=30):
    """Waits until <maildir>/new holds at least n files; returns them."""
    for _ in deadline_loop(timeout):
        files = maildir_files(maildir)
        if len(files) >= n:
            return files
    pytest.fail(f"{maildir}/new holds {len(maildir_files(maildir))} files, not {n}, "
                f"after {timeout}s")


def delivered(maildir, marker):
    """The files in <maildir>/new whose bytes contain `marker`."""
    needle = marker.encode() if isinstance(marker, str) else marker
    out = []
    for p in maildir_files(maildir):
        try:
            if needle in p.read_bytes():
                out.append(p)
        except FileNotFoundError:
            pass
    return out


def wait_delivered(maildir, marker, n=1, timeout=30, server=None):
    """Waits until n files in <maildir>/new contain `marker`; returns them."""
    for _ in deadline_loop(timeout, 0.1):
        files = delivered(maildir, marker)
        if len(files) >= n:
            return files
    tail = f"\n--- ownmail stderr tail ---\n{server.log_tail()}" if server else ""
    pytest.fail(f"{marker!r} is in {len(delivered(maildir, marker))} file(s) of {maildir}/new, "
                f"not {n}, after {timeout}s{tail}")


def queue_files(spool):
    d = Path(spool) / "queue"
    try:
        return sorted(p.name for p in d.iterdir())
    except FileNotFoundError:
        return []


def wait_queue_empty(spool, timeout=30, server=None):
    """Waits until SPOOL/queue/ holds nothing (every message delivered or failed)."""
    for _ in deadline_loop(timeout, 0.1):
        left = queue_files(spool)
        if not left:
            return
    tail = f"\n--- ownmail stderr tail ---\n{server.log_tail()}" if server else ""
    pytest.fail(f"{spool}/queue still holds {left[:10]} ({len(left)} entries) after "
                f"{timeout}s{tail}")


MAILDIR_SIZE_RE = re.compile(r",S=(\d+)(?:[,:]|$)")


def check_maildir_file(path, *, uid=VMAIL_UID, gid=VMAIL_GID):
    """Asserts the Maildir conventions of SPEC §5.3 for one file; returns its bytes."""
    st = os.stat(path)
    assert (st.st_uid, st.st_gid) == (uid, gid), (
        f"{path} is owned by {st.st_uid}:{st.st_gid}, not {uid}:{gid}")
    m = MAILDIR_SIZE_RE.search(path.name)
    assert m, f"no ,S=<size> in the Maildir file name {path.name!r}"
    assert int(m.group(1)) == st.st_size, (
        f"{path.name}: S={m.group(1)} but the file has {st.st_size} bytes")
    return path.read_bytes()
