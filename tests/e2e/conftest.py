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

Relay (test_relay_*.py; see the "relay" section below for the whole API):

- ``relay_net``        a RelayNet: a network namespace (lo only) with a test DNS server
                       (``.dns``, dnslib, UDP+TCP) and factories for SMTP sinks (aiosmtpd,
                       switchable accept/4xx/5xx, recording everything), misbehaving SMTP
                       servers, a private Postfix MX, ownmail servers and `ownmail queue`.
- ``write_relay_conf(root, resolver=..., relay=..., grammar=...)``, ``check_failure_dsn(...)``.

An OwnmailServer has ``pid``, ``proc``, ``spool``, ``ns``, ``log`` (stderr so far), ``mark()``,
``grep(rx)``, ``wait_for(rx)``, ``events(kind, **kv)`` / ``wait_event(kind, **kv)`` (key=value
log lines), ``wait_delivery(qid, result)``, ``hup()``, ``signal(sig)``, ``kill()``,
``terminate()``, ``connect(port)`` -> SmtpClient after the 220, ``smtp(port)`` -> smtplib.
"""

import asyncio
import contextlib
import ctypes
import email
import email.policy
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

try:  # only the relay tests (test_relay_*.py) need them; scripts/test installs both
    import aiosmtpd.smtp as _aiosmtpd
except ImportError:  # pragma: no cover
    _aiosmtpd = None
try:
    import dnslib as _dnslib
    import dnslib.server as _dnslib_server
except ImportError:  # pragma: no cover
    _dnslib = _dnslib_server = None

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


# =========================================================================== relay
#
# Peers for the relay tests (test_relay_*.py): a DNS server, SMTP sinks, misbehaving SMTP
# servers and a private Postfix, all inside one network namespace per test (RelayNet), so
# that MX hosts can be 127.0.0.2:25, 127.0.0.3:25, ... and nothing leaves the namespace.
#
# - ``DnsServer(ns=None, host="127.0.0.1", port=0, ttl=1)``: dnslib on UDP and TCP (same
#   port); ``.mx(domain, (10, "mx1.x.test"), ...)``, ``.null_mx(domain)``, ``.a(name, ip...)``,
#   ``.aaaa(name, ip...)``, ``.set(name, rtype, [values])``, ``.remove(name, rtype=None)``;
#   unknown names are NXDOMAIN, known names without that type NODATA (both with a SOA);
#   ``.queries`` [(name, type, "udp"|"tcp")]; ``.udp_limit = 512`` truncates big UDP answers
#   (TC bit) so that the client has to ask again over TCP; ``.resolver_line``.
# - ``SmtpSink(host, port=25, ns=None, ...)``: aiosmtpd in a thread of its own; records every
#   connection, accepted transaction (``.messages``: SinkMessage) and refusal (``.refusals``);
#   ``.set(mode, fail_at="rcpt", reply=None)`` switches between "accept", "tempfail" (4xx) and
#   "permfail" (5xx) at "mail", "rcpt" or "data"; ``.rcpt_replies[addr] = "550 ..."`` per
#   recipient; optional STARTTLS (tls_context), AUTH (auth={user: password}) and
#   ``on_message(SinkMessage) -> reply`` (run in a worker thread: the dkimproxy stand-in).
# - ``BadSmtpServer(host, behaviour, port=25, ns=None)``: "drop-in-data", "garbage-ehlo",
#   "garbage-greeting", "silent"; records connections and the bytes each one sent.
# - ``PostfixMx(root, host, domain, users, ns=None)``: a private Postfix (config, queue, data,
#   log and virtual Maildirs under root) listening on host:25, accepting USER@domain.
# - ``relay_net`` fixture -> RelayNet: ``.ns``, ``.root`` (0755), ``.dns`` (started, in the
#   namespace), ``.sink(...)``, ``.bad_server(...)``, ``.postfix(...)``, ``.start_ownmail(conf)``,
#   ``.queue(spool, *args)`` -> (rc, out, err) of `ownmail queue --spool SPOOL ARGS`,
#   ``.smtp(host, port)`` (smtplib in the namespace), ``.client(host, port)`` (SmtpClient).
#   Everything is stopped at teardown: ownmail servers first (by PID), then the peers.
# - ``write_relay_conf(root, ...)``: m@example.org is a local Maildir user (`action "local"`),
#   everything else from local clients is relayed (`action "out" relay ...`).
# - DSN helpers: ``parse_dsn(bytes) -> Dsn``, ``check_failure_dsn(...)``.

RELAY_PORT = 2525            # ownmail's own listener in the relay tests (127.0.0.1)


def _need(module, package):
    if module is None:
        pytest.fail(f"the relay tests need the Debian package {package} "
                    "(scripts/test installs it)", pytrace=False)


def _bound_socket(host, port, type_, ns):
    """A socket bound to host:port (in network namespace ns when given)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    def make():
        s = socket.socket(family, type_)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
        except BaseException:
            s.close()
            raise
        return s

    return in_netns(ns.name, make) if ns is not None else make()


def _listen_socket(host, port, ns):
    s = _bound_socket(host, port, socket.SOCK_STREAM, ns)
    s.listen(128)
    s.setblocking(False)
    return s


class _LoopThread:
    """An asyncio event loop running in a daemon thread of its own."""

    def __init__(self, name):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro, timeout=10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self):
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


class _Recorder:
    """Lists guarded by one condition, with bounded waits on their length."""

    def __init__(self):
        self.cond = threading.Condition()

    def _add(self, lst, item):
        with self.cond:
            lst.append(item)
            self.cond.notify_all()

    def _wait_len(self, getter, n, timeout, what):
        end = time.monotonic() + timeout
        with self.cond:
            while len(getter()) < n:
                left = end - time.monotonic()
                if left <= 0:
                    pytest.fail(f"{self!r}: {len(getter())} {what}, not {n}, after {timeout}s")
                self.cond.wait(min(left, 0.2))
            return list(getter())


# --------------------------------------------------------------------------- DNS


class DnsServer:
    """A test DNS server (dnslib) on host:port over UDP and TCP; records are changed live."""

    def __init__(self, ns=None, host="127.0.0.1", port=0, ttl=1, zone="test"):
        _need(_dnslib, "python3-dnslib")
        self.ns, self.host, self.port, self.ttl = ns, host, port, ttl
        self.zone = zone
        self.records = {}          # name (lower, no final dot) -> {rtype: [rdata]}
        self.queries = []          # (name, rtype, "udp"|"tcp")
        self.udp_limit = 0         # > 0: UDP answers longer than this are truncated (TC)
        self.lock = threading.Lock()
        self.servers = []

    @property
    def addr(self):
        return f"{self.host}:{self.port}"

    @property
    def resolver_line(self):
        return f"resolver {self.addr}"

    # ------------------------------------------------------------ records
    @staticmethod
    def _key(name):
        return name.lower().rstrip(".")

    def set(self, name, rtype, values):
        """Replaces NAME's records of type rtype ("MX", "A", "AAAA", "TXT", "CNAME") by
        values: for MX (preference, host) pairs, else strings."""
        D = _dnslib
        rdata = []
        for v in values:
            if rtype == "MX":
                pref, host = v
                rdata.append(D.MX(host if host != "." else ".", pref))
            elif rtype == "A":
                rdata.append(D.A(v))
            elif rtype == "AAAA":
                rdata.append(D.AAAA(v))
            elif rtype == "TXT":
                rdata.append(D.TXT(v))
            elif rtype == "CNAME":
                rdata.append(D.CNAME(v))
            else:
                raise ValueError(f"record type {rtype} not supported here")
        with self.lock:
            self.records.setdefault(self._key(name), {})[rtype] = rdata
        return self

    def mx(self, domain, *pairs):
        """mx("remote.test", (10, "mx1.remote.test"), (20, "mx2.remote.test"))."""
        return self.set(domain, "MX", pairs)

    def null_mx(self, domain):
        """RFC 7505: `MX 0 .` — the domain accepts no mail."""
        return self.set(domain, "MX", [(0, ".")])

    def a(self, name, *ips):
        return self.set(name, "A", ips)

    def aaaa(self, name, *ips):
        return self.set(name, "AAAA", ips)

    def remove(self, name, rtype=None):
        with self.lock:
            if rtype is None:
                self.records.pop(self._key(name), None)
            else:
                self.records.get(self._key(name), {}).pop(rtype, None)

    def queried(self, name, rtype=None, proto=None):
        with self.lock:
            return [q for q in self.queries
                    if q[0] == self._key(name) and rtype in (None, q[1])
                    and proto in (None, q[2])]

    # ------------------------------------------------------------ serving
    def resolve(self, request, handler):
        D = _dnslib
        reply = request.reply()
        qname = str(request.q.qname)
        key = self._key(qname)
        qtype = D.QTYPE.get(request.q.qtype, str(request.q.qtype))
        with self.lock:
            self.queries.append((key, qtype, handler.protocol))
            known = self.records.get(key)
            rrs = list(known.get(qtype, [])) if known is not None else []
        for rd in rrs:
            reply.add_answer(D.RR(qname, getattr(D.QTYPE, qtype), rdata=rd, ttl=self.ttl))
        if known is None or not rrs:
            if known is None:
                reply.header.rcode = D.RCODE.NXDOMAIN
            reply.add_auth(D.RR(
                self.zone + ".", D.QTYPE.SOA, ttl=self.ttl,
                rdata=D.SOA(f"ns.{self.zone}.", f"hostmaster.{self.zone}.",
                            (1, 60, 60, 3600, self.ttl))))
        return reply

    def start(self):
        D, S = _dnslib, _dnslib_server
        outer = self

        class Handler(S.DNSHandler):
            def get_reply(self, data):
                request = D.DNSRecord.parse(data)
                rdata = outer.resolve(request, self).pack()
                if self.protocol == "udp" and outer.udp_limit and len(rdata) > outer.udp_limit:
                    # as real servers do: the question stays, TC set, no records (dnslib's
                    # own truncate() drops the question, which resolvers reject)
                    short = request.reply()
                    short.header.tc = 1
                    rdata = short.pack()
                return rdata

        class Quiet(S.DNSLogger):
            def __init__(self):
                super().__init__(log="-request,-reply,-truncated,-error", prefix=False,
                                 logf=lambda s: None)

        def make(tcp, port):
            return S.DNSServer(self, address=self.host, port=port, tcp=tcp, logger=Quiet(),
                               handler=Handler)

        for _ in range(20):
            udp = tcp = None
            try:
                udp = in_netns(self.ns.name, lambda: make(False, self.port)) \
                    if self.ns is not None else make(False, self.port)
                port = udp.server.server_address[1]
                tcp = in_netns(self.ns.name, lambda: make(True, port)) \
                    if self.ns is not None else make(True, port)
            except OSError:
                if udp is not None:
                    udp.server.server_close()
                if self.port:
                    raise
                continue
            self.port = port
            self.servers = [udp, tcp]
            for s in self.servers:
                s.start_thread()
            return self
        pytest.fail("could not bind the test DNS server to one free UDP+TCP port")

    def stop(self):
        for s in self.servers:
            s.server.shutdown()
            s.server.server_close()
        self.servers = []

    def __repr__(self):
        return f"DnsServer({self.addr})"


# --------------------------------------------------------------------------- SMTP sink


class SinkMessage:
    """One transaction an SmtpSink accepted (250 after DATA)."""

    def __init__(self, *, mail_from, rcpt_tos, data, mail_options, rcpt_options, helo, tls,
                 auth, peer):
        self.mail_from = mail_from          # "" for the null sender
        self.rcpt_tos = rcpt_tos
        self.data = data                    # bytes, as received (dots unstuffed, CRLF)
        self.mail_options, self.rcpt_options = mail_options, rcpt_options
        self.helo, self.tls, self.auth, self.peer = helo, tls, auth, peer

    def message(self):
        return email.message_from_bytes(self.data, policy=email.policy.compat32)

    def __repr__(self):
        return f"SinkMessage(from=<{self.mail_from}>, to={self.rcpt_tos}, {len(self.data)} bytes)"


class _SinkHandler:
    def __init__(self, sink):
        self.sink = sink

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        address = "" if address == "<>" else address
        reply = self.sink._refusal("mail", address, None)
        if reply:
            return reply
        envelope.mail_from = address or "<>"
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.sink._refusal("rcpt", self._from(envelope), address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    @staticmethod
    def _from(envelope):
        return "" if envelope.mail_from in (None, "<>") else envelope.mail_from

    async def handle_DATA(self, server, session, envelope):
        sink = self.sink
        reply = sink._refusal("data", self._from(envelope), None)
        if reply:
            return reply
        auth = session.auth_data
        msg = SinkMessage(
            mail_from=self._from(envelope), rcpt_tos=list(envelope.rcpt_tos),
            data=bytes(envelope.original_content or b""),
            mail_options=list(envelope.mail_options), rcpt_options=list(envelope.rcpt_options),
            helo=session.host_name,
            tls=(session.ssl is not None
                 or server.transport.get_extra_info("ssl_object") is not None),
            auth=(auth.login.decode() if isinstance(auth, _aiosmtpd.LoginPassword) else None),
            peer=session.peer)
        reply = "250 2.0.0 Ok: accepted by the test sink"
        if sink.on_message is not None:
            loop = asyncio.get_running_loop()
            reply = await loop.run_in_executor(None, sink.on_message, msg)
        if reply.startswith("2"):
            sink._add(sink.messages, msg)
        else:
            sink._add(sink.refusals, ("data", msg.mail_from, None, reply))
        return reply


class SmtpSink(_Recorder):
    """An SMTP server (aiosmtpd) on host:port that records what it gets and answers as told."""

    TEMPFAIL = "451 4.3.0 {token} temporary failure, try again later"
    PERMFAIL = "550 5.1.1 {token} mailbox unavailable"

    def __init__(self, host, port=25, *, ns=None, hostname=None, tls_context=None, auth=None,
                 on_message=None, name=None, implicit_tls=False):
        _need(_aiosmtpd, "python3-aiosmtpd")
        super().__init__()
        self.host, self.port, self.ns = host, port, ns
        self.hostname = hostname or f"sink-{host}.test"   # never socket.getfqdn(): no DNS
        self.tls_context, self.auth, self.on_message = tls_context, auth, on_message
        self.implicit_tls = implicit_tls    # TLS from the first byte (smtps) with tls_context
        self.name = name or f"sink@{host}:{port}"
        self.token = f"sink-{host}-{os.urandom(4).hex()}"
        self.mode, self.fail_at, self.reply = "accept", "rcpt", None
        self.rcpt_replies = {}
        self.connections = 0
        self.messages = []       # SinkMessage
        self.refusals = []       # (stage, mail_from, rcpt or None, reply)
        self.auth_failures = 0
        self._protocols = []
        self._lt = None
        self._server = None

    # ------------------------------------------------------------ behaviour
    def set(self, mode, fail_at="rcpt", reply=None):
        """mode "accept" | "tempfail" | "permfail"; fail_at "mail" | "rcpt" | "data";
        reply: the whole reply line (default: 451 4.3.0 / 550 5.1.1 with .token)."""
        assert mode in ("accept", "tempfail", "permfail"), mode
        assert fail_at in ("mail", "rcpt", "data"), fail_at
        with self.cond:
            self.mode, self.fail_at, self.reply = mode, fail_at, reply

    def _refusal(self, stage, mail_from, rcpt):
        with self.cond:
            reply = None
            if stage == "rcpt" and rcpt is not None and rcpt.lower() in self.rcpt_replies:
                reply = self.rcpt_replies[rcpt.lower()]
            elif self.mode != "accept" and self.fail_at == stage:
                tmpl = self.TEMPFAIL if self.mode == "tempfail" else self.PERMFAIL
                reply = self.reply or tmpl.format(token=self.token)
            if reply:
                self.refusals.append((stage, mail_from, rcpt, reply))
                self.cond.notify_all()
            return reply

    # ------------------------------------------------------------ waits
    def wait_messages(self, n=1, timeout=20):
        return self._wait_len(lambda: self.messages, n, timeout, "messages accepted")

    def wait_refusals(self, n=1, timeout=20):
        return self._wait_len(lambda: self.refusals, n, timeout, "refusals")

    def wait_connections(self, n=1, timeout=20):
        return self._wait_len(lambda: [None] * self.connections, n, timeout, "connections")

    def messages_with(self, marker):
        needle = marker.encode() if isinstance(marker, str) else marker
        with self.cond:
            return [m for m in self.messages if needle in m.data]

    # ------------------------------------------------------------ running
    def _authenticator(self, server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, _aiosmtpd.LoginPassword) and self.auth is not None
              and self.auth.get(auth_data.login.decode("utf-8", "replace"))
              == auth_data.password.decode("utf-8", "replace"))
        if not ok:
            with self.cond:
                self.auth_failures += 1
        if ok:
            return _aiosmtpd.AuthResult(success=True, auth_data=auth_data)
        return _aiosmtpd.AuthResult(success=False, handled=False)   # aiosmtpd sends the 535

    def _protocol(self):
        with self.cond:
            self.connections += 1
            self.cond.notify_all()
        kw = {}
        if self.auth is not None:
            kw["authenticator"] = self._authenticator
        else:
            kw["auth_exclude_mechanism"] = ["LOGIN", "PLAIN"]
        if self.implicit_tls:
            kw["auth_require_tls"] = False      # TLS is there from the start
        p = _aiosmtpd.SMTP(_SinkHandler(self), hostname=self.hostname, ident="test sink",
                           tls_context=None if self.implicit_tls else self.tls_context,
                           enable_SMTPUTF8=True,
                           decode_data=False, timeout=120, loop=self._lt.loop, **kw)
        self._protocols.append(p)
        return p

    def start(self):
        sock = _listen_socket(self.host, self.port, self.ns)
        self._lt = _LoopThread(self.name)

        async def serve():
            ssl_ctx = self.tls_context if self.implicit_tls else None
            return await self._lt.loop.create_server(self._protocol, sock=sock, ssl=ssl_ctx)

        try:
            self._server = self._lt.call(serve())
        except BaseException:
            sock.close()
            self._lt.stop()
            raise
        return self

    def stop(self):
        if self._lt is None:
            return

        async def close():
            self._server.close()
            for p in self._protocols:
                if p.transport is not None:
                    p.transport.close()
            await asyncio.sleep(0)

        try:
            self._lt.call(close())
        finally:
            self._lt.stop()
            self._lt = None

    def __repr__(self):
        return f"SmtpSink({self.host}:{self.port}, mode={self.mode})"


def server_tls_context(pki, name="example.org"):
    """A server-side TLS context with the session pki's self-signed NAME certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(Path(pki) / f"{name}.crt", Path(pki) / f"{name}.key")
    return ctx


# --------------------------------------------------------------------------- bad servers


class BadSmtpServer(_Recorder):
    """A raw TCP server that misbehaves as an SMTP server:

    - "drop-in-data": a normal dialogue up to `354`, then, as soon as message data arrives,
      the connection is reset (no reply to the data, ever);
    - "garbage-ehlo": a normal `220`, then a line of garbage (not an SMTP reply) for EHLO/HELO;
    - "garbage-greeting": garbage instead of the 220 greeting;
    - "silent": accepts the connection and never says anything.

    The connection stays open afterwards (except for drop-in-data) until the client closes
    it or the server is stopped. ``connections`` counts them; ``received`` holds what each
    connection sent (bytes)."""

    BEHAVIOURS = ("drop-in-data", "garbage-ehlo", "garbage-greeting", "silent")
    GARBAGE = b"\x00\xffHELLO THERE this is not smtp \xc3\x28\r\n"

    def __init__(self, host, behaviour, port=25, *, ns=None):
        assert behaviour in self.BEHAVIOURS, behaviour
        super().__init__()
        self.host, self.port, self.ns, self.behaviour = host, port, ns, behaviour
        self.received = []       # bytearray per connection
        self.data_started = 0    # drop-in-data: connections that reached DATA
        self._writers = []
        self._lt = None
        self._server = None

    @property
    def connections(self):
        with self.cond:
            return len(self.received)

    def wait_connections(self, n=1, timeout=20):
        return self._wait_len(lambda: self.received, n, timeout, "connections")

    async def _serve(self, reader, writer):
        buf = bytearray()
        with self.cond:
            self.received.append(buf)
            self._writers.append(writer)
            self.cond.notify_all()
        try:
            await self._dialogue(reader, writer, buf)
            # keep the connection open (silently) until the peer or stop() closes it
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                with self.cond:
                    buf += chunk
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _readline(self, reader, buf):
        line = await reader.readline()
        with self.cond:
            buf += line
        if not line:
            raise ConnectionResetError("EOF")
        return line

    async def _dialogue(self, reader, writer, buf):
        b = self.behaviour
        if b == "silent":
            return
        if b == "garbage-greeting":
            writer.write(self.GARBAGE)
            await writer.drain()
            return
        writer.write(b"220 bad.test ESMTP test server\r\n")
        await writer.drain()
        while True:
            line = await self._readline(reader, buf)
            verb = line.split(b" ", 1)[0].strip().upper()
            if b == "garbage-ehlo" and verb in (b"EHLO", b"HELO"):
                writer.write(self.GARBAGE)
                await writer.drain()
                return
            if verb == b"EHLO":
                writer.write(b"250-bad.test\r\n250-8BITMIME\r\n250-SIZE 100000000\r\n"
                             b"250 ENHANCEDSTATUSCODES\r\n")
            elif verb in (b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                writer.write(b"250 2.0.0 Ok\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                chunk = await reader.read(1)     # the first byte of the message
                with self.cond:
                    buf += chunk
                    self.data_started += 1
                    self.cond.notify_all()
                await asyncio.sleep(0.2)
                try:
                    more = await asyncio.wait_for(reader.read(65536), 0.5)
                except asyncio.TimeoutError:
                    more = b""
                with self.cond:
                    buf += more
                writer.transport.abort()        # RST, mid-DATA, no reply
                raise ConnectionResetError("dropped in DATA")
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                await writer.drain()
                raise ConnectionResetError("QUIT")
            else:
                writer.write(b"502 5.5.1 unknown\r\n")
            await writer.drain()

    def start(self):
        sock = _listen_socket(self.host, self.port, self.ns)
        self._lt = _LoopThread(f"bad-{self.behaviour}@{self.host}")

        async def serve():
            return await asyncio.start_server(self._serve, sock=sock)

        try:
            self._server = self._lt.call(serve())
        except BaseException:
            sock.close()
            self._lt.stop()
            raise
        return self

    def stop(self):
        if self._lt is None:
            return

        async def close():
            self._server.close()
            for w in self._writers:
                w.close()
            await asyncio.sleep(0)

        try:
            self._lt.call(close())
        finally:
            self._lt.stop()
            self._lt = None

    def __repr__(self):
        return f"BadSmtpServer({self.host}:{self.port}, {self.behaviour})"


# --------------------------------------------------------------------------- Postfix


class PostfixMx:
    """A private Postfix instance (like shared/bench/lib.sh write_postfix_conf): config dir,
    queue, data, log and the virtual Maildirs all under ``root``; smtpd on host:port only
    (inside ns when given); USER@domain for each user goes to ``maildir(user)``
    (= root/vmail/USER/, Maildir, uid/gid 5000). No DNS, no chroot. `master` runs in the
    foreground and is stopped by its PID."""

    MASTER = "/usr/lib/postfix/sbin/master"

    def __init__(self, root, host, domain, users, *, port=25, ns=None):
        self.root, self.host, self.domain, self.users = Path(root), host, domain, list(users)
        self.port, self.ns = port, ns
        self.conf_dir = self.root / "etc"
        self.spool = self.root / "spool"
        self.data = self.root / "data"
        self.vmail = self.root / "vmail"
        self.log = self.root / "postfix.log"
        self.proc = None

    def maildir(self, user):
        return self.vmail / user

    def write_conf(self):
        if shutil.which("postfix") is None or not os.access(self.MASTER, os.X_OK):
            pytest.fail("postfix is not installed (scripts/test installs it)", pytrace=False)
        for d in (self.root, self.conf_dir, self.spool, self.data, self.vmail):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o755)
        shutil.chown(self.data, "postfix")
        os.chown(self.vmail, VMAIL_UID, VMAIL_GID)
        c = self.conf_dir
        (c / "main.cf").write_text(f"""\
# ownmail e2e: a private Postfix as a remote MX for {self.domain}
compatibility_level = 3.6
myhostname = mx.{self.domain}
mydomain = {self.domain}
myorigin = $myhostname
mydestination =
# `all`: in the test's namespace that is lo; 127.0.0.5 is not an interface address (so
# that ownmail does not take it for one of its own), the smtpd line of master.cf binds it
inet_interfaces = all
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
queue_directory = {self.spool}
data_directory = {self.data}
maillog_file = {self.log}
maillog_file_prefixes = {self.root}
shlib_directory = /usr/lib/postfix
smtpd_banner = $myhostname ESMTP
biff = no
alias_maps =
alias_database =
local_recipient_maps =
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
disable_dns_lookups = yes
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
virtual_mailbox_domains = {self.domain}
virtual_mailbox_base = {self.vmail}
virtual_mailbox_maps = texthash:{c}/vmailbox
virtual_uid_maps = static:{VMAIL_UID}
virtual_gid_maps = static:{VMAIL_GID}
virtual_mailbox_limit = 0
message_size_limit = 52428800
""", encoding="utf-8")
        (c / "vmailbox").write_text(
            "".join(f"{u}@{self.domain}  {u}/\n" for u in self.users), encoding="utf-8")
        # Debian's master.cf with chroot off and smtpd on HOST:PORT only (as lib.sh does)
        lines, skip = [], False
        for line in Path("/usr/share/postfix/master.cf.dist").read_text().splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            if line[0] in " \t":
                if not skip:
                    lines.append(line)
                continue
            f = line.split()
            skip = f[0] in ("maildrop", "uucp", "ifmail", "bsmtp", "scalemail-backend",
                            "mailman")
            if skip:
                continue
            if f[0] == "smtp" and f[1] == "inet":
                lines.append(f"{self.host}:{self.port}  inet  n  -  n  -  -  smtpd")
                continue
            if len(f) > 4 and f[4] == "y":
                f[4] = "n"
            lines.append("  ".join(f))
        (c / "master.cf").write_text("\n".join(lines) + "\n", encoding="utf-8")
        if Path("/usr/share/postfix/dynamicmaps.cf").exists():
            shutil.copy("/usr/share/postfix/dynamicmaps.cf", c / "dynamicmaps.cf")
        (c / "dynamicmaps.cf.d").mkdir(exist_ok=True)

    def start(self, timeout=30):
        self.write_conf()
        # `postfix check` makes the queue directories; it wants a tty for its errors
        cmd = ["script", "-qec", f"postfix -c {self.conf_dir} check", "/dev/null"]
        rc, out, err = self.ns(cmd, timeout=60) if self.ns is not None else run(cmd, timeout=60)
        if rc != 0:
            pytest.fail(f"postfix check failed ({rc}):\n{out}\n{err}")
        args = [self.MASTER, "-s", "-c", self.conf_dir, "-e", "3600"]
        with open(self.root / "master.stderr", "wb") as errf:
            if self.ns is not None:
                self.proc = self.ns.popen(args, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=errf)
            else:
                self.proc = subprocess.Popen([str(a) for a in args], stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=errf)
        for _ in deadline_loop(timeout, 0.1):
            if self.proc.poll() is not None:
                pytest.fail(f"postfix master exited ({self.proc.returncode}):\n{self.logs()}")
            if self._greets():
                return self
        self.stop()
        pytest.fail(f"postfix does not greet on {self.host}:{self.port} within {timeout}s:\n"
                    f"{self.logs()}")

    def _greets(self):
        try:
            if self.ns is not None:
                s = self.ns.connect(self.host, self.port, timeout=2)
            else:
                s = socket.create_connection((self.host, self.port), timeout=2)
        except OSError:
            return False
        try:
            s.settimeout(5)
            data = s.recv(512)
            s.sendall(b"QUIT\r\n")
            return data.startswith(b"220 ")
        except OSError:
            return False
        finally:
            s.close()

    def logs(self):
        out = []
        for f in (self.log, self.root / "master.stderr"):
            if f.exists():
                out.append(f"--- {f} ---\n{f.read_text(errors='replace')[-6000:]}")
        return "\n".join(out)

    def queue_files(self):
        out = []
        for sub in ("incoming", "active", "deferred", "hold", "maildrop"):
            d = self.spool / sub
            if d.is_dir():
                out += [p for p in d.rglob("*") if p.is_file()]
        return out

    def stop(self, timeout=STOP_TIMEOUT):
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)   # master passes it on to its children
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout)

    def __repr__(self):
        return f"PostfixMx({self.host}:{self.port}, {self.domain})"


# --------------------------------------------------------------------------- the world


def write_relay_conf(root, *, resolver, relay="relay", listens=None, grammar="modern",
                     extra=(), local_domain="example.org", user="m", name="smtpd.conf"):
    """An smtpd.conf where USER@LOCAL_DOMAIN is a local Maildir user (uid 5000, the DSN's
    destination) and everything else a local client sends is relayed: modern grammar
    `action "out" RELAY` + `match from local for any action "out"` (RELAY e.g. "relay",
    "relay host smtp://127.0.0.2:2526"), or legacy `accept for any RELAY` (RELAY e.g. "relay",
    "relay via smtp://..."). `resolver` is a DnsServer or an "ADDR:PORT" string."""
    root = Path(root)
    etc = root / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    etc.chmod(0o755)
    vmail = make_vmail_dir(root)
    virtual, vusers = etc / "virtual", etc / "vusers"
    virtual.write_text(f"# virtual addresses\n{user}@{local_domain}  {user}\n", encoding="utf-8")
    vusers.write_text(f"# the virtual user\n{user}  {VMAIL_UID}:{VMAIL_GID}:{vmail / user}\n",
                      encoding="utf-8")
    addr = resolver.addr if isinstance(resolver, DnsServer) else resolver
    listens = list(listens or (f"listen on 127.0.0.1 port {RELAY_PORT}",))
    head = [f"# ownmail e2e relay ({grammar} grammar)", f"resolver {addr}",
            f"table valiases file:{virtual}", f"table vusers file:{vusers}", *extra, *listens]
    if grammar == "modern":
        rules = [
            'action "local" maildir "~/" virtual <valiases> userbase <vusers>',
            f'action "out" {relay}',
            f'match from any for domain "{local_domain}" action "local"',
            'match from local for any action "out"',
        ]
    else:
        rules = [
            f'accept from any for domain {local_domain} virtual <valiases> userbase <vusers> '
            'deliver to maildir "~/"',
            f"accept for any {relay}",
        ]
    conf = root / name
    conf.write_text("\n".join(head + rules) + "\n", encoding="utf-8")
    return VmailSetup(conf, vmail / user, virtual, vusers)


class RelayNet:
    """One relay test's world: a network namespace (lo only, so 127.0.0.0/8 is all there
    is), a DNS server in it, a 0755 root directory, and whatever the test starts."""

    def __init__(self, ownmail, ns, root, pki):
        self.ownmail, self.ns, self.root, self.pki = ownmail, ns, Path(root), pki
        self.dns = DnsServer(ns=ns).start()
        self.peers = [self.dns]
        self.servers = []

    def sink(self, host, port=25, **kw):
        s = SmtpSink(host, port, ns=self.ns, **kw).start()
        self.peers.append(s)
        return s

    def bad_server(self, host, behaviour, port=25):
        s = BadSmtpServer(host, behaviour, port, ns=self.ns).start()
        self.peers.append(s)
        return s

    def postfix(self, host, domain, users, *, port=25, name="postfix"):
        p = PostfixMx(self.root / name, host, domain, users, port=port, ns=self.ns)
        self.peers.append(p)
        return p.start()

    def start_ownmail(self, conf, **kw):
        kw.setdefault("spool", Path(conf).parent / "spool")
        server = start_ownmail(self.ownmail, conf, ns=self.ns, **kw)
        self.servers.append(server)
        return server

    def stop_ownmail(self, server):
        if server in self.servers:
            self.servers.remove(server)
        stop_ownmail(server)

    def queue(self, spool, *args, timeout=30):
        """`ownmail queue --spool SPOOL ARGS...` (in the namespace) -> (rc, out, err)."""
        spool = spool.spool if isinstance(spool, OwnmailServer) else spool
        rc, out, err = self.ns([self.ownmail, "queue", "--spool", str(spool), *map(str, args)],
                               timeout=timeout)
        assert_no_panic(err)
        return rc, out, err

    def queue_ok(self, spool, *args, timeout=30):
        rc, out, err = self.queue(spool, *args, timeout=timeout)
        assert rc == 0, f"`ownmail queue {' '.join(map(str, args))}` exited {rc}:\n{out}\n{err}"
        return out

    def wait_queue_list(self, spool, *needles, absent=(), timeout=20, args=("list",)):
        """Polls `ownmail queue --spool SPOOL list` until its output (exit 0) contains every
        needle and none of `absent`; returns the output."""
        out = err = ""
        rc = None
        for _ in deadline_loop(timeout, 0.3):
            rc, out, err = self.queue(spool, *args)
            if rc == 0 and all(n in out for n in needles) and not any(a in out for a in absent):
                return out
        pytest.fail(f"`ownmail queue {' '.join(args)}` (exit {rc}) does not show {list(needles)}"
                    f"{' without ' + str(list(absent)) if absent else ''} within {timeout}s:\n"
                    f"--- stdout ---\n{out}\n--- stderr ---\n{err}")

    def smtp(self, host="127.0.0.1", port=RELAY_PORT, **kw):
        return ns_smtp(host, port, ns=self.ns, **kw)

    def client(self, host="127.0.0.1", port=RELAY_PORT, *, source=None, timeout=10):
        c = SmtpClient.connect(host, port, ns=self.ns, timeout=timeout, source=source)
        c.expect(220)
        return c

    def close(self):
        for server in reversed(self.servers):
            try:
                stop_ownmail(server)
            except Exception as e:  # keep stopping the others
                print(f"stopping {server}: {e}")
        self.servers = []
        for p in reversed(self.peers):
            try:
                p.stop()
            except Exception as e:
                print(f"stopping {p}: {e}")
        self.peers = []


@pytest.fixture
def relay_net(ownmail, pki):
    with world_tmpdir("om-relay-") as root, make_netns(eth0=False) as ns:
        net = RelayNet(ownmail, ns, root, pki)
        try:
            yield net
        finally:
            net.close()


# --------------------------------------------------------------------------- DSN


def _unfold(value):
    return re.sub(r"\s+", " ", str(value)).strip()


class Dsn:
    """A parsed RFC 3464 report: ``msg`` (the whole message), ``per_message`` (dict of the
    first group, lower-case field names), ``recipients`` (list of such dicts), ``original``
    (the returned part: a Message for message/rfc822, the header text for
    text/rfc822-headers), ``original_type``."""

    def __init__(self, data):
        self.data = data
        self.msg = email.message_from_bytes(data, policy=email.policy.compat32)
        self.per_message, self.recipients = {}, []
        self.original, self.original_type = None, None
        if self.msg.get_content_type() != "multipart/report":
            return
        for part in self.msg.get_payload():
            ctype = part.get_content_type()
            if ctype == "message/delivery-status":
                groups = part.get_payload()
                if isinstance(groups, list) and groups:
                    conv = [{k.lower(): _unfold(v) for k, v in g.items()} for g in groups]
                    self.per_message, self.recipients = conv[0], conv[1:]
            elif ctype in ("text/rfc822-headers", "message/rfc822") and self.original is None:
                self.original_type = ctype
                if ctype == "message/rfc822":
                    inner = part.get_payload()
                    self.original = inner[0] if isinstance(inner, list) else inner
                else:
                    self.original = part.get_payload(decode=True).decode("utf-8", "replace")

    def recipient(self, addr):
        """The per-recipient group whose Final-Recipient is addr (None if absent)."""
        for r in self.recipients:
            fr = r.get("final-recipient", "")
            if fr.split(";", 1)[-1].strip().strip("<>").lower() == addr.lower():
                return r
        return None

    def original_header(self, name):
        if self.original is None:
            return None
        if isinstance(self.original, str):
            hdrs = email.message_from_string(self.original + "\n\n",
                                             policy=email.policy.compat32)
            v = hdrs.get(name)
        else:
            v = self.original.get(name)
        return _unfold(v) if v is not None else None


def parse_dsn(data):
    return Dsn(data)


def check_failure_dsn(data, *, rcpt, subject, diagnostic=None, full=False, other_rcpts=()):
    """Asserts that data (a Maildir file's bytes) is an RFC 3464 failure report for rcpt:
    multipart/report; report-type=delivery-status, a message/delivery-status part with a
    Reporting-MTA and, for rcpt, Final-Recipient, Action: failed, Status: 5.x.x and a
    Diagnostic-Code containing `diagnostic`; the original's headers (with Subject: subject)
    as text/rfc822-headers or message/rfc822 (full=True: message/rfc822, whole message).
    other_rcpts must not be reported as failed. Returns the Dsn."""
    first = data.split(b"\n", 1)[0]
    assert first == b"Return-Path: <>", (
        f"a DSN must be sent with the null sender (RFC 5321 4.5.5), first line: {first!r}")
    d = parse_dsn(data)
    text = data.decode("utf-8", "replace")
    assert d.msg.get_content_type() == "multipart/report", (
        f"not multipart/report but {d.msg.get_content_type()}:\n{text[:3000]}")
    assert (d.msg.get_param("report-type") or "").lower() == "delivery-status", (
        f"report-type is {d.msg.get_param('report-type')!r}:\n{text[:3000]}")
    assert d.per_message, f"no message/delivery-status part with fields:\n{text[:4000]}"
    assert "reporting-mta" in d.per_message, f"no Reporting-MTA: {d.per_message}"
    r = d.recipient(rcpt)
    assert r is not None, f"no recipient group with Final-Recipient {rcpt}: {d.recipients}"
    assert r.get("action", "").lower() == "failed", f"Action is not failed: {r}"
    assert re.fullmatch(r"5\.\d{1,3}\.\d{1,3}", r.get("status", "")), f"Status not 5.x.x: {r}"
    if diagnostic is not None:
        assert diagnostic in r.get("diagnostic-code", ""), (
            f"Diagnostic-Code does not carry the remote's reply {diagnostic!r}: {r}")
    for other in other_rcpts:
        o = d.recipient(other)
        assert o is None or o.get("action", "").lower() != "failed", (
            f"{other} is reported as failed too: {o}")
    if full:
        assert d.original_type == "message/rfc822", (
            f"RET=FULL: the original should come back as message/rfc822, not "
            f"{d.original_type}:\n{text[:4000]}")
    else:
        assert d.original_type in ("text/rfc822-headers", "message/rfc822"), (
            f"no text/rfc822-headers or message/rfc822 part:\n{text[:4000]}")
    assert d.original_header("Subject") == subject, (
        f"the returned headers carry Subject {d.original_header('Subject')!r}, "
        f"not {subject!r}")
    return d


# =========================================================================== submission
#
# Helpers for the submission tests (test_submission_*.py, SPEC §5.5): SMTP AUTH over TLS,
# sender ownership, open-relay refusals, local submission with `ownmail sendmail`.
#
# - ``sha512_crypt(password)`` -> a `$6$` crypt(3) hash (Python's crypt, else openssl).
# - ``b64(data)``, ``sasl_plain(user, password, authzid="")`` -> base64 text (no newline).
# - ``tls_session(c, name=...)``: EHLO, STARTTLS, TLS handshake, EHLO again; returns the
#   second EHLO reply. ``auth_plain(c, user, password)`` (SASL-IR), ``auth_plain_prompted``
#   (`AUTH PLAIN`, `334 `, response), ``auth_login(c, user, password)``: each returns the
#   final reply, unchecked (the caller asserts 235 or 535).
# - ``send_data(c, msg)``: `DATA`, 354, the dot-stuffed message and `.`; returns the reply.
# - ``vm_rss_kib(pid)``: VmRSS of a process from /proc/PID/status.
# - ``submission_world(ownmail, pki, ...)``: a context manager -> SubmissionWorld: the
#   article's v3 configuration (aliases.v3, vusers.v3, smtpdauth.v3-fixed, made with
#   `ownmail makemap`; vusers pointing into <root>/var/vmail) running in a network namespace
#   with lo and eth0 (192.0.2.10), and a second namespace ("outside") holding eth0's veth
#   peer as 192.0.2.11 (plus ``extra_outside_addrs``): a client from another host;
#   ``fresh_addrs=N`` adds N more outside addresses (192.0.2.100 on) that
#   ``world.fresh_addr()`` hands out one by one, so that a test's failed logins do not
#   count against the address the other tests use (the brute-force defence). Hooks
#   ``edit(world_root, etc_dir, conf_path)`` change tables or config before makemap;
#   ``dns=True`` starts a test DnsServer in the server's namespace and writes
#   `resolver 127.0.0.1:PORT` at the top of the config; ``world.sink(host)`` starts an
#   SmtpSink in the server's namespace (127.0.0.2:25 is not a listen address of ownmail).

SUBMIT_LOGIN = "mayeu"                      # tests/e2e/article/smtpdauth.v3-fixed
SUBMIT_PASSWORD = "mysupersecretpassword"   # the article's perl crypt() example
SERVER_ETH0_ADDR = "192.0.2.10"
OUTSIDE_ADDR = "192.0.2.11"


def sha512_crypt(password):
    """A SHA-512-crypt (`$6$`) hash of password with a random salt."""
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt as _crypt
        h = _crypt.crypt(password, _crypt.mksalt(_crypt.METHOD_SHA512))
        if h and h.startswith("$6$"):
            return h
    except ImportError:  # Python 3.13+: no crypt module
        pass
    rc, out, err = run(["openssl", "passwd", "-6", "-stdin"], input=password + "\n")
    assert rc == 0 and out.startswith("$6$"), f"openssl passwd -6 failed: {err}"
    return out.strip()


def b64(data):
    import base64
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.b64encode(data).decode("ascii")


def sasl_plain(user, password, authzid=""):
    """The RFC 4616 PLAIN message `authzid NUL user NUL password`, base64-encoded."""
    return b64(f"{authzid}\0{user}\0{password}")


def tls_session(c, name="client.test"):
    """EHLO, STARTTLS (220), TLS handshake, EHLO again; returns the second EHLO reply."""
    kw = c.ehlo(name).keywords
    assert "STARTTLS" in kw, f"STARTTLS is not offered: {kw}\n{c.dialogue()}"
    c.cmd("STARTTLS", 220)
    c.starttls()
    return c.ehlo(name)


def auth_plain(c, user, password, authzid=""):
    """`AUTH PLAIN <initial response>` (RFC 4954 SASL-IR); returns the reply."""
    return c.cmd(f"AUTH PLAIN {sasl_plain(user, password, authzid)}")


def auth_plain_prompted(c, user, password):
    """`AUTH PLAIN`, the `334 ` prompt, then the response; returns the final reply."""
    c.cmd("AUTH PLAIN", 334)
    return c.cmd(sasl_plain(user, password))


def auth_login(c, user, password):
    """`AUTH LOGIN`, user name and password each after a `334` prompt; returns the reply."""
    c.cmd("AUTH LOGIN", 334)
    r = c.cmd(b64(user))
    if r.code != 334:
        return r
    return c.cmd(b64(password))


def dot_stuffed(msg):
    out = msg.replace(b"\r\n.", b"\r\n..")
    return b"." + out if out.startswith(b".") else out


def send_data(c, msg, timeout=None):
    """DATA (354 expected), the message dot-stuffed and `.`; returns the final reply."""
    c.cmd("DATA", 354)
    c.send(dot_stuffed(msg) + b".\r\n")
    return c.reply(timeout)


def vm_rss_kib(pid):
    """The resident set size (VmRSS, KiB) of process pid."""
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


class SubmissionWorld:
    """The article's v3 server in a namespace (``ns``) and a client namespace (``outside``).

    ``server`` (OwnmailServer), ``root``, ``etc``, ``conf``, ``maildir`` (m's Maildir),
    ``spool``, ``dns`` (DnsServer or None)."""

    def __init__(self, ownmail, root, ns, outside, conf, server, dns, peers, fresh=()):
        self.ownmail, self.root, self.ns, self.outside = ownmail, root, ns, outside
        self.etc = root / "etc"
        self.conf, self.server, self.dns, self.peers = conf, server, dns, peers
        self.spool = server.spool
        self.maildir = root / "var" / "vmail" / "m"
        self._fresh = list(fresh)
        self._fresh_lock = threading.Lock()

    def fresh_addr(self):
        """An outside address no earlier fresh_addr() call returned (see fresh_addrs=)."""
        with self._fresh_lock:
            assert self._fresh, "no fresh outside address left: raise fresh_addrs="
            return self._fresh.pop(0)

    def maildir_of(self, user):
        return self.root / "var" / "vmail" / user

    def client(self, port=587, *, source=OUTSIDE_ADDR, host=SERVER_ETH0_ADDR, timeout=10,
               greeting=True):
        """A raw SmtpClient from the outside namespace to host:port (220 read)."""
        c = SmtpClient.connect(host, port, ns=self.outside, timeout=timeout, source=source)
        if greeting:
            try:
                c.expect(220)
            except BaseException:
                c.close()
                raise
        return c

    def tls_client(self, port=587, **kw):
        """client() after EHLO, STARTTLS and EHLO again; ``.ehlo_reply`` holds the last EHLO."""
        c = self.client(port, **kw)
        try:
            c.ehlo_reply = tls_session(c)
        except BaseException:
            c.close()
            raise
        return c

    def auth_client(self, user=SUBMIT_LOGIN, password=SUBMIT_PASSWORD, **kw):
        """tls_client() authenticated with AUTH PLAIN (235 asserted)."""
        c = self.tls_client(**kw)
        try:
            r = auth_plain(c, user, password)
            assert r.code == 235, f"AUTH PLAIN as {user} -> {r}\n{c.dialogue()}"
        except BaseException:
            c.close()
            raise
        return c

    def local_client(self, port=25):
        """A raw SmtpClient from 127.0.0.1 inside the server's namespace (220 read)."""
        return self.server.connect(port)

    def sink(self, host, port=25, **kw):
        s = SmtpSink(host, port, ns=self.ns, **kw).start()
        self.peers.append(s)
        return s

    def queue(self, *args, timeout=30):
        """`ownmail queue --spool SPOOL ARGS...` in the server's namespace."""
        rc, out, err = self.ns([self.ownmail, "queue", "--spool", self.spool, *args],
                               timeout=timeout)
        assert_no_panic(err)
        return rc, out, err

    def wait_queue_list(self, *needles, timeout=20):
        out = err = ""
        rc = None
        for _ in deadline_loop(timeout, 0.3):
            rc, out, err = self.queue("list")
            if rc == 0 and all(n in out for n in needles):
                return out
        pytest.fail(f"`ownmail queue list` (exit {rc}) does not show {list(needles)} within "
                    f"{timeout}s:\n--- stdout ---\n{out}\n--- stderr ---\n{err}\n"
                    f"--- ownmail stderr tail ---\n{self.server.log_tail()}")

    def __repr__(self):
        return f"SubmissionWorld({self.root})"


def rewrite_vusers(root):
    """vusers.v3 says /var/vmail/m: make it <root>/var/vmail/m."""
    vusers = Path(root) / "etc" / "vusers"
    text = vusers.read_text(encoding="utf-8")
    assert "/var/vmail/" in text, text
    vusers.write_text(text.replace("/var/vmail/", f"{root}/var/vmail/"), encoding="utf-8")


@contextlib.contextmanager
def submission_world(ownmail, pki, *, conf_name="smtpd.conf.v3", tables=V3_TABLES, edit=None,
                     makemap=None, dns=False, verbose=False, extra_outside_addrs=(),
                     fresh_addrs=0, ready_timeout=READY_TIMEOUT):
    """See the section comment above. ``makemap`` (default: every file under etc/ that the
    config names as db:PATH.db) lists the etc/ file names to run `ownmail makemap` on."""
    with world_tmpdir("om-submit-") as root, make_netns(eth0=True) as ns, \
            make_netns(eth0=False) as outside:
        _ip("-n", ns.name, "link", "set", "eth0p", "netns", outside.name)
        _ip("-n", outside.name, "addr", "add", f"{OUTSIDE_ADDR}/24", "dev", "eth0p")
        for a in extra_outside_addrs:
            _ip("-n", outside.name, "addr", "add", f"{a}/24", "dev", "eth0p")
        assert fresh_addrs <= 150, fresh_addrs
        fresh = [f"192.0.2.{100 + i}" for i in range(fresh_addrs)]
        if fresh:
            rc, _, err = run(["ip", "-n", outside.name, "-batch", "-"],
                             input="".join(f"addr add {a}/24 dev eth0p\n" for a in fresh))
            assert rc == 0, f"ip -batch (outside addresses) failed: {err}"
        _ip("-n", outside.name, "link", "set", "eth0p", "up")

        conf = install_article(root, conf_name, tables)
        etc = root / "etc"
        etc.chmod(0o755)
        rewrite_vusers(root)
        make_vmail_dir(root)
        peers = []
        server = None
        try:
            dns_server = None
            if dns:
                dns_server = DnsServer(ns=ns).start()
                peers.append(dns_server)
                text = conf.read_text(encoding="utf-8")
                conf.write_text(f"# the test's DNS server\n{dns_server.resolver_line}\n\n"
                                + text, encoding="utf-8")
            if edit is not None:
                edit(root, etc, conf)
            text = conf.read_text(encoding="utf-8")
            if makemap is None:
                names = re.findall(r"\bdb:(\S+)\.db\b", text)
                makemap = [Path(n).name for n in names if Path(n).parent == etc]
            for name in makemap:
                rc, _, err = run([ownmail, "makemap", etc / name])
                assert_no_panic(err)
                assert rc == 0, f"ownmail makemap {etc / name} failed:\n{err}"
            server = start_ownmail(ownmail, conf, spool=root / "spool", pki_dir=pki, ns=ns,
                                   verbose=verbose, ready_timeout=ready_timeout)
            world = SubmissionWorld(ownmail, root, ns, outside, conf, server, dns_server, peers,
                                    fresh)
            yield world
        finally:
            if server is not None:
                stop_ownmail(server)
            for p in reversed(peers):
                try:
                    p.stop()
                except Exception as e:  # keep stopping the others
                    print(f"stopping {p}: {e}")
