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
"""

import contextlib
import itertools
import os
import re
import shutil
import subprocess
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
