"""Helpers for the IMAP end-to-end tests (test_imap.py, SPEC §4.2 and §5.6).

An *IMAP world* is the article's v2 configuration (tests/e2e/article/smtpd.conf.v2) running
in a network namespace of its own, with the `vusers` table replaced by a Dovecot-style
passwd-file (`table vusers passwd:ROOT/etc/users`, one line for user m whose home is the
Maildir ROOT/var/vmail/m, `userdb_mail=maildir:~/`). ownmail delivers mail sent over SMTP
into that Maildir; the IMAP server on it is either

- ``ownmail`` itself (`imap listen on 127.0.0.1 port 10993 imaps ...`, a `tls-require`
  listener on 10143, `imap auth`/`imap userbase` = the same passwd table), or
- ``dovecot`` (from dovecot-imapd), started in the foreground in the same namespace with a
  config written here: passdb + userdb on the same users file, `mail_location = maildir:~/`,
  the test pki's certificate, the same two ports (imaps; STARTTLS with
  `disable_plaintext_auth`), and the special-use folders.

So the same test body runs against both. Clients: ``ImapConn`` (a raw IMAP dialogue with a
transcript, for exact replies and hostile input) and ``NsIMAP4`` / ``NsIMAP4_SSL`` (Python's
imaplib, its socket made inside the namespace).

Connections to the STARTTLS port come from 127.0.0.2: Dovecot treats a client whose address
equals the server's own as "secured" and would allow plain-text login from it.
"""

import contextlib
import imaplib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (
    VMAIL_GID,
    VMAIL_UID,
    assert_no_panic,
    deadline_loop,
    install_article,
    make_message,
    make_netns,
    make_vmail_dir,
    run,
    sha512_crypt,
    smtp_send,
    start_ownmail,
    stop_ownmail,
    vm_rss_kib,
    world_tmpdir,
)

IMAP_HOST = "127.0.0.1"
IMAPS_PORT = 10993
STARTTLS_PORT = 10143
CLIENT_SOURCE = "127.0.0.2"     # see the module doc: not the server's own address
USER = "m"
PASSWORD = "imap-test-pass-7Qw"
SENDER = "alice@client.test"
RCPT = "m@example.org"
CERT_NAME = "example.org"
SPECIAL_USE = {"Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash", "Junk": "\\Junk",
               "Archive": "\\Archive"}
KINDS = ("ownmail", "dovecot")
READY_TIMEOUT = 20
IO_TIMEOUT = 10


# =========================================================================== raw client


class ImapClosed(Exception):
    """The server closed the connection."""


class Untagged:
    """One server response line (untagged or continuation), literals taken out.

    ``text`` is the response with each literal's bytes replaced by ``{N}`` (as sent);
    ``literals`` holds the literals' bytes in order."""

    def __init__(self, text, literals):
        self.text, self.literals = text, literals

    def __repr__(self):
        return f"Untagged({self.text!r})"


class Tagged:
    """The tagged completion of a command plus the untagged responses read before it."""

    def __init__(self, tag, status, text, untagged):
        self.tag, self.status, self.text, self.untagged = tag, status, text, untagged

    @property
    def code(self):
        """The response code in brackets (`APPENDUID 1 2`), or None."""
        m = re.match(r"\[([^\]]*)\]", self.text)
        return m.group(1) if m else None

    def lines(self, rx):
        """Untagged responses whose text matches rx (re.search)."""
        r = re.compile(rx)
        return [u for u in self.untagged if r.search(u.text)]

    def __repr__(self):
        return f"{self.tag} {self.status} {self.text}"


_LITERAL_RX = re.compile(rb"~?\{(\d+)\+?\}$")


class Lit:
    """A synchronizing literal argument for ImapConn.command()."""

    def __init__(self, data, plus=False):
        self.data = data.encode("utf-8") if isinstance(data, str) else data
        self.plus = plus


class ImapConn:
    """A plain-socket IMAP client that records a transcript; every read has a deadline."""

    def __init__(self, sock, *, timeout=IO_TIMEOUT, label=""):
        self.sock, self.timeout, self.label = sock, timeout, label
        self.buf = b""
        self.transcript = []
        self._tags = iter(range(1, 1_000_000))
        self.greeting = None

    # ---------------------------------------------------------------- transport
    @classmethod
    def connect(cls, ns, host, port, *, tls=False, source=None, timeout=IO_TIMEOUT, cafile=None,
                label=""):
        sock = ns.connect(host, port, timeout=timeout, source=source)
        c = cls(sock, timeout=timeout, label=label or f"{host}:{port}")
        if tls:
            c._wrap(cafile)
        return c

    def _wrap(self, cafile):
        self.sock.settimeout(self.timeout)
        self.sock = client_tls_context(cafile).wrap_socket(self.sock,
                                                           server_hostname=IMAP_HOST)
        self._note("--", f"TLS established: {self.sock.version()}")

    def starttls(self, cafile):
        """The TLS handshake after a tagged OK to STARTTLS (nothing may be left unread)."""
        assert self.buf == b"", (
            f"the server sent {self.buf!r} after its STARTTLS OK, before the handshake\n"
            f"{self.dialogue()}")
        self._wrap(cafile)

    def _note(self, who, data):
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        if len(text) > 400:
            text = text[:400] + f"... ({len(text)} chars)"
        self.transcript.append(f"{who} {text!r}")

    def dialogue(self, n=40):
        return f"--- IMAP dialogue ({self.label}) ---\n" + "\n".join(self.transcript[-n:])

    def send(self, data, note=True):
        if isinstance(data, str):
            data = data.encode("utf-8")
        if note:
            self._note("C:", data)
        try:
            self.sock.sendall(data)
        except (ConnectionError, ssl.SSLError, BrokenPipeError) as e:
            raise ImapClosed(f"send failed: {e}") from e

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise
        except socket.timeout:
            raise TimeoutError from None
        except (ssl.SSLZeroReturnError, ConnectionError) as e:
            raise ImapClosed(str(e)) from e
        except ssl.SSLError as e:
            raise ImapClosed(f"TLS: {e}") from e
        if not data:
            raise ImapClosed("EOF")
        self.buf += data

    def _line(self, deadline):
        while b"\r\n" not in self.buf:
            if b"\n" in self.buf:       # a bare LF ends a line too (never expected)
                break
            self._fill(deadline)
        i = self.buf.find(b"\r\n")
        if i < 0:
            i = self.buf.find(b"\n")
            line, self.buf = self.buf[:i], self.buf[i + 1:]
        else:
            line, self.buf = self.buf[:i], self.buf[i + 2:]
        return line

    def _exact(self, n, deadline):
        while len(self.buf) < n:
            self._fill(deadline)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read(self, timeout=None):
        """One whole response (with its literals); raises TimeoutError / ImapClosed."""
        deadline = time.monotonic() + (timeout or self.timeout)
        parts, literals = [], []
        while True:
            line = self._line(deadline)
            m = _LITERAL_RX.search(line)
            parts.append(line)
            if not m:
                break
            lit = self._exact(int(m.group(1)), deadline)
            literals.append(lit)
        text = b"".join(parts).decode("utf-8", "replace")
        shown = text if not literals else text + f"  [+{len(literals)} literal(s), " \
            f"{sum(map(len, literals))} bytes]"
        self._note("S:", shown)
        return Untagged(text, literals)

    def read_greeting(self):
        try:
            g = self.read()
        except (TimeoutError, ImapClosed) as e:
            pytest.fail(f"no IMAP greeting ({e})\n{self.dialogue()}")
        assert g.text.startswith(("* OK", "* PREAUTH")), (
            f"greeting is not `* OK`: {g.text!r}\n{self.dialogue()}")
        self.greeting = g
        return g

    # ---------------------------------------------------------------- commands
    def next_tag(self):
        return f"t{next(self._tags)}"

    def _until_tagged(self, tag, untagged, timeout):
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            r = self.read(left)
            m = re.match(rf"^{re.escape(tag)} (OK|NO|BAD)\b ?(.*)$", r.text, re.I | re.S)
            if m:
                return Tagged(tag, m.group(1).upper(), m.group(2), untagged)
            untagged.append(r)

    def command(self, *parts, timeout=None, tag=None):
        """Sends `TAG parts...CRLF`; str/bytes parts go as they are, Lit(data) as a literal
        (synchronizing: waits for the `+`; a tagged answer instead ends the command).
        Returns the Tagged completion. A timeout or a closed connection fails the test
        with the transcript; use command_raw() to get those as exceptions."""
        try:
            return self.command_raw(*parts, timeout=timeout, tag=tag)
        except TimeoutError:
            pytest.fail(f"no tagged answer within {timeout or self.timeout}s\n"
                        f"{self.dialogue()}")
        except ImapClosed as e:
            pytest.fail(f"the server closed the connection ({e})\n{self.dialogue()}")

    def command_raw(self, *parts, timeout=None, tag=None):
        tag = tag or self.next_tag()
        untagged = []
        out = tag.encode() + b" "
        for p in parts:
            if isinstance(p, Lit):
                out += f"{{{len(p.data)}{'+' if p.plus else ''}}}\r\n".encode()
                if p.plus:
                    out += p.data
                    continue
                self.send(out)
                out = b""
                deadline = time.monotonic() + (timeout or self.timeout)
                while True:
                    r = self.read(max(0.01, deadline - time.monotonic()))
                    if r.text.startswith("+"):
                        break
                    m = re.match(rf"^{re.escape(tag)} (OK|NO|BAD)\b ?(.*)$", r.text, re.I)
                    if m:
                        return Tagged(tag, m.group(1).upper(), m.group(2), untagged)
                    untagged.append(r)
                out = p.data
            else:
                out += p.encode("utf-8") if isinstance(p, str) else p
        self.send(out + b"\r\n")
        return self._until_tagged(tag, untagged, timeout)

    def ok(self, *parts, timeout=None):
        """command() that must end in OK."""
        r = self.command(*parts, timeout=timeout)
        assert r.status == "OK", f"expected OK, got `{r}`\n{self.dialogue()}"
        return r

    def login(self, user=USER, password=PASSWORD):
        return self.ok(f"LOGIN {quote(user)} {quote(password)}")

    def capabilities(self):
        r = self.ok("CAPABILITY")
        caps = set()
        for u in r.lines(r"^\* CAPABILITY "):
            caps.update(w.upper() for w in u.text.split()[2:])
        return caps

    def select(self, folder="INBOX", examine=False):
        """SELECT/EXAMINE; returns a dict: exists, uidvalidity, uidnext, flags, resp."""
        r = self.ok(f"{'EXAMINE' if examine else 'SELECT'} {quote(folder)}")
        info = {"resp": r, "exists": None, "uidvalidity": None, "uidnext": None}
        for u in r.untagged:
            if m := re.match(r"^\* (\d+) EXISTS", u.text):
                info["exists"] = int(m.group(1))
            if m := re.search(r"\[UIDVALIDITY (\d+)\]", u.text):
                info["uidvalidity"] = int(m.group(1))
            if m := re.search(r"\[UIDNEXT (\d+)\]", u.text):
                info["uidnext"] = int(m.group(1))
        assert info["exists"] is not None, f"no `* N EXISTS` in SELECT\n{self.dialogue()}"
        assert info["uidvalidity"], f"no [UIDVALIDITY n] in SELECT\n{self.dialogue()}"
        return info

    def uid_search(self, criteria):
        r = self.ok(f"UID SEARCH {criteria}")
        uids = []
        for u in r.lines(r"^\* SEARCH\b"):
            uids += [int(x) for x in u.text.split()[2:] if x.isdigit()]
        return uids

    def uid_fetch(self, uids, items):
        """UID FETCH; returns {uid: Fetched}."""
        r = self.ok(f"UID FETCH {uids} ({items})")
        out = {}
        for u in r.lines(r"^\* \d+ FETCH "):
            f = Fetched(u)
            if f.uid is not None:
                out[f.uid] = f
        return out

    def list(self, ref='""', pattern='"*"'):
        """LIST; returns {name: (attributes set, delimiter)}."""
        r = self.ok(f"LIST {ref} {pattern}")
        return parse_list(r)

    def delimiter(self):
        r = self.ok('LIST "" ""')
        for u in r.lines(r"^\* LIST "):
            m = re.match(r'^\* LIST \([^)]*\) (NIL|"((?:[^"\\]|\\.)*)")', u.text)
            if m and m.group(2) is not None:
                return m.group(2).replace("\\\\", "\\").replace('\\"', '"')
        pytest.fail(f"no hierarchy delimiter in LIST \"\" \"\"\n{self.dialogue()}")

    def logout(self):
        try:
            self.command_raw("LOGOUT", timeout=5)
        except (TimeoutError, ImapClosed, OSError):
            pass
        self.close()

    def closed(self, timeout=5):
        """True once the server has closed the connection within timeout."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
        except TimeoutError:
            return False
        except (ImapClosed, OSError):
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Fetched:
    """The interesting items of one `* N FETCH (...)` response."""

    def __init__(self, u):
        self.text = u.text
        m = re.match(r"^\* (\d+) FETCH", u.text)
        self.seq = int(m.group(1))
        m = re.search(r"\bUID (\d+)", u.text)
        self.uid = int(m.group(1)) if m else None
        m = re.search(r"\bRFC822\.SIZE (\d+)", u.text)
        self.size = int(m.group(1)) if m else None
        m = re.search(r"\bFLAGS \(([^)]*)\)", u.text)
        self.flags = set(m.group(1).split()) if m else None
        self.body = u.literals[0] if re.search(r"\bBODY\[\] (~?\{\d+\})", u.text) else None


def quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_list(resp):
    out = {}
    for u in resp.untagged:
        m = re.match(r'^\* LIST \(([^)]*)\) (NIL|"(?:[^"\\]|\\.)*") (.*)$', u.text)
        if not m:
            continue
        attrs = {a.lower() for a in m.group(1).split()}
        delim = None if m.group(2) == "NIL" else m.group(2)[1:-1]
        name = m.group(3)
        if u.literals:
            name = u.literals[0].decode("utf-8", "replace")
        elif name.startswith('"'):
            name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out[name] = (attrs, delim)
    return out


def client_tls_context(cafile):
    """Verifies the server against the world's certificate (self-signed, subjectAltName
    DNS:example.org and IP:127.0.0.1), host name included; cafile None: no verification."""
    if cafile is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def make_world_pki(d):
    """d/example.org.crt and .key (PKCS#1 RSA, mode 600): self-signed, with a
    subjectAltName naming example.org and 127.0.0.1, so that clients that always check the
    host name (mbsync) can verify the IMAP server at 127.0.0.1. The session-wide `pki`
    fixture's certificates carry only a CN."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    key, crt = d / f"{CERT_NAME}.key", d / f"{CERT_NAME}.crt"
    rc, _, err = run(["openssl", "genrsa", "-traditional", "-out", key, "2048"])
    assert rc == 0, f"openssl genrsa failed: {err}"
    rc, _, err = run(["openssl", "req", "-new", "-x509", "-key", key, "-out", crt, "-days", "30",
                      "-subj", f"/CN={CERT_NAME}",
                      "-addext", f"subjectAltName=DNS:{CERT_NAME},IP:{IMAP_HOST}",
                      "-addext", "basicConstraints=critical,CA:FALSE"])
    assert rc == 0, f"openssl req failed: {err}"
    key.chmod(0o600)
    crt.chmod(0o600)
    return d


# =========================================================================== imaplib


class NsIMAP4(imaplib.IMAP4):
    """imaplib.IMAP4 whose socket is made in a network namespace (from `source`)."""

    def __init__(self, host, port, *, ns, source=None, timeout=IO_TIMEOUT):
        self._ns, self._source = ns, source
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout):
        return self._ns.connect(self.host, self.port, timeout=timeout or IO_TIMEOUT,
                                source=self._source)


class NsIMAP4_SSL(imaplib.IMAP4_SSL):
    """imaplib.IMAP4_SSL whose socket is made in a network namespace."""

    def __init__(self, host, port, *, ns, ssl_context, source=None, timeout=IO_TIMEOUT):
        self._ns, self._source = ns, source
        super().__init__(host, port, ssl_context=ssl_context, timeout=timeout)

    def _create_socket(self, timeout):
        sock = self._ns.connect(self.host, self.port, timeout=timeout or IO_TIMEOUT,
                                source=self._source)
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


# =========================================================================== Dovecot


DOVECOT_CONF = """\
# ownmail e2e: Dovecot on the Maildir that ownmail's SMTP delivers into
base_dir = {base}
state_dir = {base}/state
log_path = {log}
protocols = imap
listen = {host}
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
# LOGINDISABLED before STARTTLS on the plain port (tls-require in ownmail's terms)
disable_plaintext_auth = yes
auth_mechanisms = plain login
mail_location = maildir:~/
first_valid_uid = 1
mail_max_userip_connections = 200
passdb {{
  driver = passwd-file
  args = scheme=CRYPT {users}
}}
userdb {{
  driver = passwd-file
  args = {users}
}}
namespace inbox {{
  inbox = yes
{special}
}}
# COMPRESS=DEFLATE (RFC 4978), as ownmail offers it
protocol imap {{
  mail_plugins = $mail_plugins imap_zlib
}}
service imap-login {{
  inet_listener imap {{
    address = {host}
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = {host}
    port = {imaps_port}
    ssl = yes
  }}
}}
"""


class Dovecot:
    """`dovecot -F -c CONF` in the world's namespace; stopped by its PID."""

    def __init__(self, root, ns, users, pki):
        self.root, self.ns, self.users, self.pki = Path(root), ns, Path(users), Path(pki)
        self.base = self.root / "dv"            # short: Unix socket paths live here
        self.conf = self.root / "dovecot.conf"
        self.logfile = self.root / "dovecot.log"
        self.outfile = self.root / "dovecot.out"
        self.proc = None

    def write_conf(self):
        special = "\n".join(
            f"  mailbox {name} {{\n    special_use = {use}\n    auto = subscribe\n  }}"
            for name, use in SPECIAL_USE.items())
        self.conf.write_text(DOVECOT_CONF.format(
            base=self.base, log=self.logfile, host=IMAP_HOST,
            cert=self.pki / f"{CERT_NAME}.crt", key=self.pki / f"{CERT_NAME}.key",
            users=self.users, special=special, imap_port=STARTTLS_PORT,
            imaps_port=IMAPS_PORT), encoding="utf-8")
        rc, _, err = run(["doveconf", "-c", self.conf, "-n"])
        assert rc == 0, f"doveconf rejects the test's Dovecot config {self.conf}:\n{err}"

    def start(self):
        if not shutil.which("dovecot"):
            pytest.fail("`dovecot` is missing: scripts/test installs dovecot-imapd",
                        pytrace=False)
        self.write_conf()
        out = open(self.outfile, "ab")
        try:
            self.proc = self.ns.popen(["dovecot", "-F", "-c", self.conf], stdin=subprocess.DEVNULL,
                                      stdout=out, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        finally:
            out.close()
        self.pid = self.proc.pid
        wait_imap_ready(self.ns, lambda: self.proc.poll() is None, self.log_tail)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log_tail(self, n=40):
        text = ""
        for f in (self.outfile, self.logfile):
            try:
                lines = f.read_text(encoding="utf-8", errors="replace").splitlines()
                text += f"--- {f.name} ---\n" + "\n".join(lines[-n:]) + "\n"
            except FileNotFoundError:
                pass
        return text


def wait_imap_ready(ns, alive, log_tail, timeout=READY_TIMEOUT):
    """Waits until both IMAP ports greet with `* OK` (bounded)."""
    last = None
    for _ in deadline_loop(timeout, 0.1):
        if not alive():
            pytest.fail(f"the IMAP server exited before listening\n{log_tail()}")
        try:
            for port, tls in ((STARTTLS_PORT, False), (IMAPS_PORT, True)):
                with ImapConn.connect(ns, IMAP_HOST, port, tls=tls, timeout=3) as c:
                    g = c.read()
                    if not g.text.startswith("* OK"):
                        raise OSError(f"greeting {g.text!r}")
            return
        except (OSError, TimeoutError, ImapClosed) as e:
            last = e
    pytest.fail(f"no IMAP greeting on {IMAP_HOST}:{STARTTLS_PORT} and :{IMAPS_PORT} within "
                f"{timeout}s (last: {last!r})\n{log_tail()}")


# =========================================================================== the world


IMAP_LINES = f"""
# IMAP (SPEC §4.2), on the same passwd: table as the SMTP userbase
imap listen on {IMAP_HOST} port {IMAPS_PORT} imaps certificate {CERT_NAME}
imap listen on {IMAP_HOST} port {STARTTLS_PORT} tls-require certificate {CERT_NAME}
imap auth <vusers>
imap userbase <vusers>
imap mailbox "~/"
"""


class ImapWorld:
    """One IMAP server (``kind``: ownmail | dovecot) over the article's Maildir.

    ``smtp`` is the ownmail server delivering mail (for kind ownmail, also the IMAP server),
    ``maildir`` user m's Maildir, ``cafile`` the certificate to trust."""

    def __init__(self, kind, ownmail, pki, root, ns, conf, users):
        self.kind, self.ownmail, self.pki = kind, ownmail, Path(pki)
        self.root, self.ns, self.conf, self.users = root, ns, conf, users
        self.maildir = root / "var" / "vmail" / USER
        self.cafile = self.pki / f"{CERT_NAME}.crt"
        self.smtp = None
        self.dovecot = None

    # ---------------------------------------------------------------- servers
    def start(self):
        self.smtp = start_ownmail(self.ownmail, self.conf, spool=self.root / "spool",
                                  pki_dir=self.pki, ns=self.ns)
        if self.kind == "dovecot":
            self.dovecot = Dovecot(self.root, self.ns, self.users, self.pki)
            self.dovecot.start()
        else:
            wait_imap_ready(self.ns, self.smtp.alive, self.smtp.log_tail)

    def stop(self):
        try:
            if self.dovecot is not None:
                self.dovecot.stop()
        finally:
            if self.smtp is not None:
                server, self.smtp = self.smtp, None
                stop_ownmail(server)

    def restart_imap(self):
        """Stops and starts the IMAP server (for ownmail: the whole `ownmail serve`)."""
        if self.kind == "dovecot":
            self.dovecot.stop()
            self.dovecot.start()
        else:
            server, self.smtp = self.smtp, None
            stop_ownmail(server)
            self.start()

    def server_log(self):
        if self.kind == "dovecot":
            return self.dovecot.log_tail()
        return f"--- ownmail stderr tail ---\n{self.smtp.log_tail()}"

    def server_rss_kib(self):
        """ownmail's resident set size (KiB); None for Dovecot (a tree of processes)."""
        if self.kind == "dovecot":
            return None
        return vm_rss_kib(self.smtp.pid)

    def assert_no_panic(self):
        if self.smtp is not None:
            assert_no_panic(self.smtp.log)

    # ---------------------------------------------------------------- clients
    def conn(self, port=IMAPS_PORT, *, tls=None, source=None, timeout=IO_TIMEOUT):
        """A raw ImapConn, greeting read: imaps (TLS) on IMAPS_PORT, plain text (from
        CLIENT_SOURCE) on STARTTLS_PORT by default."""
        if tls is None:
            tls = port == IMAPS_PORT
        if source is None and port == STARTTLS_PORT:
            source = CLIENT_SOURCE
        try:
            c = ImapConn.connect(self.ns, IMAP_HOST, port, tls=tls, source=source,
                                 timeout=timeout, cafile=self.cafile,
                                 label=f"{self.kind} {IMAP_HOST}:{port}")
        except OSError as e:
            pytest.fail(f"cannot connect to the {self.kind} IMAP server on port {port}: {e}\n"
                        f"{self.server_log()}")
        c.read_greeting()
        return c

    def session(self, folder=None):
        """A logged-in ImapConn over imaps (SELECTing folder when given)."""
        c = self.conn()
        c.login()
        if folder is not None:
            c.select(folder)
        return c

    def imaplib_ssl(self):
        return NsIMAP4_SSL(IMAP_HOST, IMAPS_PORT, ns=self.ns,
                           ssl_context=client_tls_context(self.cafile))

    def imaplib_plain(self):
        return NsIMAP4(IMAP_HOST, STARTTLS_PORT, ns=self.ns, source=CLIENT_SOURCE)

    def assert_alive(self):
        """The server is up and a new session logs in and SELECTs INBOX; no panic logged."""
        if self.kind == "dovecot":
            assert self.dovecot.proc.poll() is None, f"Dovecot exited\n{self.server_log()}"
        assert self.smtp.alive(), f"ownmail exited\n{self.smtp.log_tail()}"
        self.assert_no_panic()
        with self.session() as c:
            c.select("INBOX")
            c.logout()

    # ---------------------------------------------------------------- mail
    def deliver(self, marker, *, rcpt=RCPT, **kw):
        """Sends a message over SMTP (port 25, article v2 `listen on lo`) and waits for it
        in m's Maildir (new/ or cur/: an IMAP server may have moved it). Returns
        (message bytes as sent, path)."""
        msg = make_message(marker, sender=SENDER, to=rcpt, **kw)
        with self.smtp.smtp() as s:
            smtp_send(s, SENDER, rcpt, msg)
        path = wait_in_maildir(self.maildir, marker, server=self.smtp)
        return msg, path


def maildir_find(maildir, marker):
    """Files in maildir/{new,cur} whose bytes contain marker."""
    needle = marker.encode() if isinstance(marker, str) else marker
    out = []
    for sub in ("new", "cur"):
        d = Path(maildir) / sub
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            continue
        for n in names:
            try:
                if needle in (d / n).read_bytes():
                    out.append(d / n)
            except (FileNotFoundError, IsADirectoryError):
                pass
    return out


def wait_in_maildir(maildir, marker, timeout=30, server=None):
    for _ in deadline_loop(timeout, 0.05):
        files = maildir_find(maildir, marker)
        if files:
            return files[0]
    tail = f"\n--- ownmail stderr tail ---\n{server.log_tail()}" if server else ""
    pytest.fail(f"{marker!r} not delivered to {maildir} (new/ or cur/) within {timeout}s{tail}")


def tree_outside(root, inside):
    """Every path under root that is not under one of `inside` (a snapshot for the
    "nothing created outside the Maildir" checks)."""
    inside = [Path(p) for p in inside]
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        dirnames[:] = [n for n in dirnames if not any(d / n == p for p in inside)]
        for n in dirnames + filenames:
            out.add(d / n)
    return out


@contextlib.contextmanager
def imap_world(kind, ownmail):
    """See the module doc. Yields a started ImapWorld; stops everything by PID."""
    assert kind in KINDS, kind
    with world_tmpdir("om-imap-") as root, make_netns(eth0=True) as ns:
        pki = make_world_pki(root / "pki")
        conf = install_article(root, "smtpd.conf.v2", ("aliases.v2",))
        etc = root / "etc"
        etc.chmod(0o755)
        make_vmail_dir(root)
        users = etc / "users"
        users.write_text(
            f"{USER}:{{SHA512-CRYPT}}{sha512_crypt(PASSWORD)}:{VMAIL_UID}:{VMAIL_GID}::"
            f"{root}/var/vmail/{USER}::userdb_mail=maildir:~/\n", encoding="utf-8")
        users.chmod(0o644)     # Dovecot's auth process reads it as user dovecot
        text = conf.read_text(encoding="utf-8")
        text, n = re.subn(r"(?m)^table vusers .*$", f"table vusers passwd:{users}", text)
        assert n == 1, f"no `table vusers` line in the article's v2 config:\n{text}"
        if kind == "ownmail":
            text += IMAP_LINES
        conf.write_text(text, encoding="utf-8")
        world = ImapWorld(kind, ownmail, pki, root, ns, conf, users)
        try:
            world.start()
            yield world
        finally:
            world.stop()


# mbsync (isync 1.4) against the world's IMAP server: a local Maildir <-> the account.
MBSYNCRC = """\
IMAPAccount om
Host {host}
Port {port}
User {user}
Pass "{password}"
SSLType IMAPS
CertificateFile {ca}
AuthMechs LOGIN
Timeout 20

IMAPStore om-remote
Account om

MaildirStore om-local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel om
Far :om-remote:
Near :om-local:
Patterns *
Create Both
Expunge None
SyncState *
Sync All
"""

# Lines of `mbsync -Dn` that move mail or flags: a second run must have none.
_TRANSFER_RX = re.compile(r"^>>> \d+ (APPEND|UID STORE|STORE|UID FETCH \S+ \(.*BODY)", re.M)
