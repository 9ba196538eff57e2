"""OpenSMTPD filters (`filter NAME proc-exec "CMD"`, `filter NAME chain { A, B }`,
`listen on … filter NAME`) run by `ownmail serve` in real SMTP sessions.

The Debian OpenSMTPD filters are used unchanged:

- filter-dkimsign signs with a fresh RSA key; the public key is published as a TXT record on a
  loopback DnsServer and dkimpy verifies what reached the Maildir (and rejects a tampered copy);
- filter-rspamd talks to a real, private rspamd on loopback (tests/e2e/rspamd_world.py, with
  the "add header" threshold at -100 so that clean mail gets rspamd's headers too); GTUBE is
  refused with a 5xx at the end of DATA and never reaches the queue;
- a chain { rs, dk } has both effects on one message.

Misbehaving filters are a small Python script (crates/filter/tests/scripted_filter.py, shared
with the crate's tests) that does the handshake and then crash, hang, write garbage or reject at a chosen phase: the client must get a 4xx (421/451),
nothing may be delivered or left in the queue, the server must keep running and restart the
filter, and never answer 250 for a message the filter did not see; a broken filter process
is killed (crates/filter: "is killed and is restarted"), not left running. A filter's
`reject|550 …` reaches the client verbatim, `reject|421 …` closes the session. A filter
command that does not exist stops `ownmail serve` at start, naming the filter.

Everything runs on 127.0.0.1 in the default network namespace (rspamd and ownmail must reach
each other), on free high ports.
"""

import base64
import contextlib
import os
import re
import shlex
import smtplib
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import (
    ROOT,
    DnsServer,
    SmtpClient,
    SmtpClosed,
    assert_no_panic,
    deadline_loop,
    delivered,
    make_message,
    queue_files,
    send_data,
    smtp_send,
    start_ownmail,
    stop_ownmail,
    wait_delivered,
    wait_queue_empty,
    world_tmpdir,
    write_vmail_conf,
)
from rspamd_world import Rspamd

FILTER_DIR = Path("/usr/libexec/opensmtpd")
DKIMSIGN = FILTER_DIR / "filter-dkimsign"
RSPAMD_FILTER = FILTER_DIR / "filter-rspamd"
PYTHON = "/usr/bin/python3"
RCPT = "m@example.org"
SENDER = "someone@example.org"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def need(path, package):
    if not (Path(path).is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"{path} is missing: install {package} (a prerequisite, not optional)",
                    pytrace=False)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mark(what="filt"):
    return f"{what}-{uuid.uuid4().hex[:12]}"


def smtp(port, timeout=40):
    return smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=timeout)


def client(port, timeout=15):
    return SmtpClient.connect("127.0.0.1", port, timeout=timeout)


def headers_of(data):
    """The header block of a message (LF or CRLF), unfolded lines kept as they are."""
    data = data.replace(b"\r\n", b"\n")
    return data.split(b"\n\n", 1)[0].decode("utf-8", "replace")


def header_names(data):
    return [l.split(":", 1)[0] for l in headers_of(data).split("\n")
            if l and not l[0].isspace() and ":" in l]


def crlf(data):
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def sig_tags(data):
    head = headers_of(data)
    fields = re.findall(r"^DKIM-Signature:(.*(?:\n[ \t].*)*)", head, re.M | re.I)
    assert len(fields) == 1, f"expected one DKIM-Signature, got {len(fields)}:\n{head}"
    flat = re.sub(r"\s+", "", fields[0])
    return dict(t.split("=", 1) for t in flat.split(";") if "=" in t)


def dns_txt(dns, name):
    """The TXT strings of `name`, asked of the loopback DnsServer over UDP."""
    from dnslib import DNSRecord
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(DNSRecord.question(name, "TXT").pack(), (dns.host, dns.port))
        reply = DNSRecord.parse(s.recv(65535))
    return [b"".join(rr.rdata.data) for rr in reply.rr if rr.rtype == 16]


def dkim_verify(dns, data):
    """dkimpy's verdict, the key looked up in the loopback DnsServer."""
    import dkim

    def dnsfunc(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        records = dns_txt(dns, name.rstrip("."))
        return records[0] if records else b""
    return dkim.verify(crlf(data), dnsfunc=dnsfunc)


# --------------------------------------------------------------------------- a scripted filter

# Shared with crates/filter/tests (its docstring lists the options).
FILTER = ROOT / "crates" / "filter" / "tests" / "scripted_filter.py"


class Scripted:
    """The FILTER script, its log and marker files in `root`; `command(...)` is the proc-exec
    command line."""

    def __init__(self, root):
        self.root = Path(root)
        self.log = self.root / "filter.log"
        self.once = self.root / "once"

    def command(self, **opts):
        """Options (FILTER's `key=value` arguments, a list value giving the key once per
        item), e.g. phases="a,b", mode="crash", at="commit", once=PATH,
        act="mail-from=if:bad@client.test:reject|550 5.7.1 no". The log is always kept."""
        args = [PYTHON, str(FILTER), f"log={self.log}"]
        for key, value in opts.items():
            for v in value if isinstance(value, list) else [value]:
                args.append(f"{key}={v}")
        # The command goes into `proc-exec "…"`: quoted for the shell, then for smtpd.conf.
        return shlex.join(args).replace("\\", "\\\\").replace('"', '\\"')

    def lines(self):
        try:
            return self.log.read_bytes().split(b"\n")
        except FileNotFoundError:
            return []

    def saw(self, needle):
        needle = needle.encode() if isinstance(needle, str) else needle
        return any(needle in l for l in self.lines())

    def pids(self):
        return [int(l.split(b"|")[1]) for l in self.lines() if l.startswith(b"pid|")]

    def count(self, line):
        return sum(1 for l in self.lines() if l == line.encode())


class BadWorld:
    """One ownmail server whose listener runs one scripted filter."""

    def __init__(self, root, server, setup, port, filt):
        self.root, self.server, self.setup, self.port, self.filt = \
            root, server, setup, port, filt

    def assert_nothing_queued_or_delivered(self, marker):
        # Give a wrongly accepted message the time to show up before saying it did not.
        time.sleep(1.0)
        assert queue_files(self.server.spool) == [], (
            f"the queue holds {queue_files(self.server.spool)} after a filter failure\n"
            f"{self.server.log_tail()}")
        assert delivered(self.setup.maildir, marker) == [], \
            f"{marker} was delivered although the filter failed"

    def assert_running(self):
        assert self.server.alive(), f"ownmail exited:\n{self.server.log_tail()}"
        assert_no_panic(self.server.log)


@pytest.fixture
def bad_world(ownmail):
    """bad_world(**filter_opts) -> BadWorld (Scripted.command's options; once=True points
    once= into the world); its server is stopped and its directory removed after the test."""
    with contextlib.ExitStack() as stack:
        def _make(**opts):
            root = stack.enter_context(world_tmpdir("om-e2e-filter-"))
            filt = Scripted(root)
            if opts.pop("once", False):
                opts["once"] = filt.once
            port = free_port()
            setup = write_vmail_conf(
                root, listens=[f"listen on 127.0.0.1 port {port} filter bad"],
                extra=[f'filter bad proc-exec "{filt.command(**opts)}"'])
            server = start_ownmail(ownmail, setup.conf)
            stack.callback(stop_ownmail, server)
            # (start_ownmail's `\bready\b` also matched the "filter ready" lines of earlier versions)
            server.wait_for(r"ownmail ready", 15)
            return BadWorld(root, server, setup, port, filt)

        yield _make


def transaction(port, marker, *, timeout=15):
    """One raw transaction: (reply, stage, dialogue), the reply being the first one that is
    not the expected 220/250/354, or the final one; stage the command it answered ("banner",
    "EHLO", "MAIL", "RCPT", "DATA", "dot"). A connection closed without a reply gives None."""
    c = client(port, timeout)
    stage = "banner"
    try:
        try:
            r = c.reply()
            if r.code != 220:
                return r, stage, c.dialogue()
            for stage, cmd, want in (("EHLO", "EHLO client.test", 250),
                                     ("MAIL", f"MAIL FROM:<{SENDER}>", 250),
                                     ("RCPT", f"RCPT TO:<{RCPT}>", 250),
                                     ("DATA", "DATA", 354)):
                r = c.cmd(cmd, timeout=timeout)
                if r.code != want:
                    return r, stage, c.dialogue()
            stage = "dot"
            c.send(make_message(marker, sender=SENDER) + b".\r\n")
            return c.reply(timeout), stage, c.dialogue()
        except SmtpClosed:
            return None, stage, c.dialogue()
    finally:
        c.close()


def eventually_accepted(world, timeout=20):
    """Sends new messages until one gets 250 (the restarted filter works); every refusal
    before must be a 4xx. Returns the marker of the accepted message."""
    refusals = []
    for _ in deadline_loop(timeout, 0.5):
        m = mark("retry")
        r, _, dialogue = transaction(world.port, m)
        if r is not None and r.code == 250:
            return m, refusals
        assert r is None or 400 <= r.code < 500, \
            f"a broken filter must give 4xx, got {r}\n{dialogue}"
        assert not delivered(world.setup.maildir, m)
        refusals.append(str(r))
    pytest.fail(f"no message accepted within {timeout}s after the filter failed: "
                f"{refusals[-5:]}\n{world.server.log_tail()}")


# --------------------------------------------------------------------------- real filters


class GoodWorld:
    def __init__(self, **kw):
        self.__dict__.update(kw)

    def send(self, port, marker, **kw):
        with smtp(port) as s:
            qid = smtp_send(s, SENDER, [RCPT], make_message(marker, sender=SENDER, **kw))
        files = wait_delivered(self.setup.maildir, marker, server=self.server)
        assert len(files) == 1
        return qid, files[0].read_bytes()

    def send_new(self, listener, what):
        """A new message through listener `listener` (a key of `ports`), its headers printed
        as "delivered through `what`": (marker, delivered bytes, header block, header names)."""
        m = mark(listener)
        _, data = self.send(self.ports[listener], m)
        head = headers_of(data)
        print(f"headers delivered through {what}:\n{head}")
        return m, data, head, header_names(data)


@pytest.fixture(scope="module")
def good_world(ownmail):
    """One rspamd, one key, one DNS server and one ownmail with three listeners:
    dk (filter-dkimsign), rs (filter-rspamd), both (chain { rs, dk })."""
    need(DKIMSIGN, "opensmtpd-filter-dkimsign")
    need(RSPAMD_FILTER, "opensmtpd-filter-rspamd")
    with world_tmpdir("om-e2e-filters-") as root:
        key = root / "sel.key"
        r = subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"],
                           capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        der = subprocess.run(["openssl", "rsa", "-pubout", "-outform", "DER", "-in", str(key)],
                             capture_output=True, timeout=60)
        assert der.returncode == 0, der.stderr
        txt = "v=DKIM1; k=rsa; p=" + base64.b64encode(der.stdout).decode()
        dns = DnsServer().start()
        rs = Rspamd(root, add_header_score=-100)
        server = None
        try:
            dns.set("sel._domainkey.example.org", "TXT",
                    [[txt[i:i + 250] for i in range(0, len(txt), 250)]])
            url = rs.start()
            ports = {"dk": free_port(), "rs": free_port(), "both": free_port()}
            setup = write_vmail_conf(root, listens=[
                f"listen on 127.0.0.1 port {ports['dk']} filter dk",
                f"listen on 127.0.0.1 port {ports['rs']} filter rs",
                f"listen on 127.0.0.1 port {ports['both']} filter both",
            ], extra=[
                f'filter dk proc-exec "{DKIMSIGN} -d example.org -s sel -k {key}"',
                f'filter rs proc-exec "{RSPAMD_FILTER} -url {url}"',
                "filter both chain { rs, dk }",
            ])
            server = start_ownmail(ownmail, setup.conf)
            # (start_ownmail's `\bready\b` also matched the "filter ready" lines of earlier versions)
            server.wait_for(r"ownmail ready", 15)
            yield GoodWorld(root=root, key=key, txt=txt, dns=dns, rspamd=rs, url=url,
                            setup=setup, server=server, ports=ports)
        finally:
            try:
                if server is not None:
                    stop_ownmail(server)
            finally:
                rs.stop()
                dns.stop()


def test_filter_dkimsign_signature_verifies_with_dkimpy(good_world):
    w = good_world
    assert dns_txt(w.dns, "sel._domainkey.example.org") == [w.txt.encode()]
    m = mark("dk")
    _, data = w.send(w.ports["dk"], m)
    tags = sig_tags(data)
    assert (tags["d"], tags["s"]) == ("example.org", "sel"), tags
    assert tags["a"] == "rsa-sha256", tags
    assert "from" in tags["h"].lower().split(":"), tags
    # The body came through the filter unchanged (dots unstuffed, 8-bit intact).
    body = data.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1]
    assert body.startswith(f"This is {m}.\n".encode())
    assert b"\n.a line that starts with a dot\n..two dots\n" in body
    assert "déjà vu".encode() in body
    assert dkim_verify(w.dns, data), f"dkimpy rejects filter-dkimsign's signature:\n{data[:3000]!r}"
    # The check is real: a changed body or Subject fails.
    body_changed = data.replace(f"This is {m}.".encode(), f"This is {m}!".encode())
    subject_changed = data.replace(f"Subject: {m}".encode(), f"Subject: {m} (edited)".encode())
    assert body_changed != data and subject_changed != data
    assert not dkim_verify(w.dns, body_changed)
    assert not dkim_verify(w.dns, subject_changed)
    # Only the dk listener signs; no rspamd headers there.
    assert not any(h.lower().startswith("x-spam") for h in header_names(data)), headers_of(data)


def test_filter_rspamd_adds_its_headers_to_clean_mail(good_world):
    w = good_world
    m, data, head, names = w.send_new("rs", "filter-rspamd")
    # Observed (Debian 12): "X-Spam-Score: 0.9 / 15" and
    # "X-Spam-Status: Yes, score=0.900 required=15.000\n\ttests=[...]".
    assert re.search(r"^X-Spam-Score: -?\d+(\.\d+)? / \d+(\.\d+)?$", head, re.M), head
    assert re.search(r"^X-Spam-Status: Yes, score=-?\d", head, re.M), head
    # add header = -100: rspamd's action is "add header", filter-rspamd marks the mail.
    assert names.count("X-Spam") == 1, f"one X-Spam header expected:\n{head}"
    assert re.search(r"^X-Spam: yes$", head, re.M), head
    assert not any(n.lower() == "dkim-signature" for n in names), head
    assert f"END {m}".encode() in data


def test_filter_rspamd_refuses_gtube_with_5xx_and_queues_nothing(good_world):
    w = good_world
    m = mark("gtube")
    ok = mark("after-gtube")
    c = client(w.ports["rs"], timeout=40)
    try:
        c.expect(220)
        c.ehlo()
        c.cmd(f"MAIL FROM:<{SENDER}>", 250)
        c.cmd(f"RCPT TO:<{RCPT}>", 250)
        # GTUBE not on the last line (see rspamd_world.py).
        r = send_data(c, make_message(m, sender=SENDER, body=["Hello,", GTUBE, "-- ", "a"]),
                      timeout=40)
        assert 500 <= r.code < 600, f"GTUBE must get a 5xx, got {r}\n{c.dialogue()}"
        # Observed: "550 Gtube pattern" (rspamd's message, passed on by filter-rspamd).
        assert r.lines == ["550 Gtube pattern"], f"{r}\n{c.dialogue()}"
        # The session goes on: a clean message in the same session is accepted.
        c.cmd(f"MAIL FROM:<{SENDER}>", 250)
        c.cmd(f"RCPT TO:<{RCPT}>", 250)
        r = send_data(c, make_message(ok, sender=SENDER), timeout=40)
        assert r.code == 250, f"{r}\n{c.dialogue()}"
        c.cmd("QUIT", 221)
    finally:
        c.close()
    w.server.wait_for(r'event=filter-reject reply="550 Gtube pattern"', 5)
    wait_delivered(w.setup.maildir, ok, server=w.server)
    wait_queue_empty(w.server.spool, server=w.server)
    assert delivered(w.setup.maildir, m) == [], "the GTUBE message was delivered"


def test_chain_rspamd_then_dkimsign_has_both_effects(good_world):
    w = good_world
    m, data, head, names = w.send_new("both", "the chain { rs, dk }")
    assert "X-Spam-Score" in names and "X-Spam-Status" in names, head
    assert names.count("X-Spam") == 1, head
    assert sig_tags(data)["d"] == "example.org"
    assert dkim_verify(w.dns, data), f"dkimpy rejects the chain's signature:\n{data[:3000]!r}"
    # dk ran after rs: it saw (and prepended its signature above) rspamd's headers.
    assert names.index("DKIM-Signature") < names.index("X-Spam-Status"), head
    tampered = data.replace(f"END {m}".encode(), f"END {m}?".encode())
    assert not dkim_verify(w.dns, tampered)


def test_chain_passes_a_large_message_intact(good_world):
    # ~2 MB in 40000 lines: more lines than any per-line queue between ownmail and a filter.
    w = good_world
    m = mark("large")
    body = [f"line {i:06d} " + "x" * 40 for i in range(40000)] + [".dot line", "..two dots"]
    t0 = time.monotonic()
    _, data = w.send(w.ports["both"], m, body=body)
    print(f"large message through the chain: {time.monotonic() - t0:.1f}s")
    got = data.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1]
    want = ("\n".join(body) + f"\nEND {m}\n").encode()
    assert got == want, f"the body changed in the chain ({len(got)} vs {len(want)} bytes)"
    assert "X-Spam-Status" in header_names(data)
    assert dkim_verify(w.dns, data), "dkimpy rejects the large message's signature"


def test_concurrent_sessions_share_the_filter_processes(good_world):
    w = good_world
    markers = [mark(f"conc{i}") for i in range(8)]
    errors = []

    def one(m):
        try:
            with smtp(w.ports["both"]) as s:
                smtp_send(s, SENDER, [RCPT], make_message(m, sender=SENDER))
        except Exception as e:  # reported below, with the marker
            errors.append(f"{m}: {e!r}")

    threads = [threading.Thread(target=one, args=(m,)) for m in markers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a session hung"
    assert not errors, errors
    for m in markers:
        data = wait_delivered(w.setup.maildir, m, server=w.server)[0].read_bytes()
        head = headers_of(data)
        # Each message got its own verdict and signature (no mixing of sessions).
        assert re.search(rf"^Subject: {m}$", head, re.M)
        assert "X-Spam-Score" in header_names(data), head
        assert dkim_verify(w.dns, data), f"{m}: bad signature"
    assert len(w.server.grep(r"filter started filter=rs\b")) == 1, \
        "filter-rspamd was restarted:\n" + w.server.log_tail()
    assert not w.server.grep(r"filter broken|event=filter-failed"), w.server.log_tail()


# --------------------------------------------------------------------------- bad filters


def wait_gone(pid, timeout=5):
    """True once process pid no longer exists (or is a zombie) within timeout."""
    for _ in deadline_loop(timeout, 0.1):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
    return False


def ps_tree(server_pid, pid):
    """ps lines of ownmail's children and of pid (for failure messages)."""
    r = subprocess.run(["ps", "-o", "pid,ppid,stat,etimes,cmd", "--ppid", str(server_pid),
                        "-p", str(pid)], capture_output=True, text=True, timeout=10)
    return r.stdout


def assert_tempfail(r, dialogue, what):
    assert r is not None, f"{what}: the connection was closed without a reply\n{dialogue}"
    assert r.code in (421, 451), f"{what}: expected 421 or 451, got {r}\n{dialogue}"


@pytest.mark.parametrize("at", ["data-line", "commit"])
def test_filter_crashing_after_the_dot_gives_4xx_then_is_restarted(bad_world, at):
    w = bad_world(phases="data-line,commit", mode="crash", at=at, once=True)
    m = mark("crash")
    r, stage, dialogue = transaction(w.port, m)
    assert stage == "dot", f"the filter only runs after the final dot:\n{dialogue}"
    assert_tempfail(r, dialogue, f"filter crashed at {at}")
    if at == "commit":
        # It had the whole message (data-line) and died at commit.
        assert w.filt.saw(f"Subject: {m}"), w.filt.lines()[-10:]
    w.assert_nothing_queued_or_delivered(m)
    w.assert_running()
    w.server.wait_for(r"event=filter-failed", 5)
    # After the restart backoff the new process filters again, and what gets 250 it has seen.
    ok, _ = eventually_accepted(w)
    assert w.filt.saw(f"Subject: {ok}"), f"250 for a message the filter did not see: {ok}"
    assert w.filt.count("config|ready") >= 2, "the filter was not restarted"
    wait_delivered(w.setup.maildir, ok, server=w.server)
    wait_queue_empty(w.server.spool, server=w.server)
    assert delivered(w.setup.maildir, m) == []
    w.assert_running()


def test_filter_crashing_every_time_never_lets_mail_through(bad_world):
    w = bad_world(phases="mail-from,data-line", mode="crash")
    markers = []
    end = time.monotonic() + 4
    while time.monotonic() < end or len(markers) < 3:
        m = mark("crash-always")
        markers.append(m)
        r, stage, dialogue = transaction(w.port, m)
        assert_tempfail(r, dialogue, f"attempt {len(markers)}")
        assert stage == "MAIL", dialogue
        time.sleep(0.3)
    # It was restarted (and crashed again at its first request each time).
    for _ in deadline_loop(5, 0.2):
        if w.filt.count("config|ready") >= 2:
            break
    assert w.filt.count("config|ready") >= 2, w.server.log_tail()
    time.sleep(1.0)
    assert queue_files(w.server.spool) == []
    for m in markers:
        assert delivered(w.setup.maildir, m) == []
    w.assert_running()


def test_hanging_filter_gives_4xx_within_the_request_timeout(bad_world):
    w = bad_world(phases="mail-from", mode="hang", once=True)
    c = client(w.port, timeout=20)
    try:
        c.expect(220)
        c.ehlo()
        t0 = time.monotonic()
        try:
            r = c.cmd(f"MAIL FROM:<{SENDER}>", timeout=20)
        except SmtpClosed:
            pytest.fail(f"closed without a reply after {time.monotonic() - t0:.1f}s\n"
                        f"{c.dialogue()}")
        took = time.monotonic() - t0
    finally:
        c.close()
    print(f"hanging filter: {r} after {took:.1f}s")
    assert r.code in (421, 451), f"{r}\n{c.dialogue()}"
    assert took < 14, f"the 4xx took {took:.1f}s (request timeout is 10 s)"
    assert w.filt.saw("|mail-from|"), w.filt.lines()[-5:]
    w.server.wait_for(r"filter broken.*filter=bad", 5)
    w.assert_running()
    ok, _ = eventually_accepted(w)
    wait_delivered(w.setup.maildir, ok, server=w.server)
    pids = w.filt.pids()
    assert w.filt.count("config|ready") >= 2 and len(pids) >= 2 and pids[-1] != pids[0]
    w.assert_running()
    # The hung process was killed, not left behind (crate invariant: "is killed").
    hung = pids[0]
    assert wait_gone(hung, 3), (
        f"the hung filter process (pid {hung}) still runs after its restart:\n"
        + ps_tree(w.server.pid, hung))


@pytest.mark.parametrize("mode", ["garbage", "binary", "nonsense", "badtoken"])
def test_filter_writing_garbage_gives_4xx_and_no_panic(bad_world, mode):
    w = bad_world(phases="mail-from", mode=mode, once=True)
    m = mark(mode)
    t0 = time.monotonic()
    r, stage, dialogue = transaction(w.port, m)
    took = time.monotonic() - t0
    assert stage == "MAIL", dialogue
    assert_tempfail(r, dialogue, f"filter writing {mode}")
    assert took < 5, f"{mode}: the 4xx took {took:.1f}s"
    first = w.filt.pids()[0]
    assert wait_gone(first), \
        f"the {mode} filter (pid {first}) was not killed\n" + ps_tree(w.server.pid, first)
    w.assert_nothing_queued_or_delivered(m)
    w.assert_running()
    ok, _ = eventually_accepted(w)
    wait_delivered(w.setup.maildir, ok, server=w.server)
    w.assert_running()


def test_filter_reject_at_mail_from_is_replied_verbatim(bad_world):
    w = bad_world(phases="mail-from",
                  act="mail-from=if:bad@client.test:reject|550 5.7.1 go away")
    ok = mark("ok")
    c = client(w.port)
    try:
        c.expect(220)
        c.ehlo()
        r = c.cmd("MAIL FROM:<bad@client.test>")
        assert r.lines == ["550 5.7.1 go away"], f"{r}\n{c.dialogue()}"
        # A refused MAIL: no transaction; the session goes on.
        r = c.cmd(f"RCPT TO:<{RCPT}>")
        assert r.code == 503, f"{r}\n{c.dialogue()}"
        c.cmd(f"MAIL FROM:<{SENDER}>", 250)
        c.cmd(f"RCPT TO:<{RCPT}>", 250)
        r = send_data(c, make_message(ok, sender=SENDER))
        assert r.code == 250, f"{r}\n{c.dialogue()}"
        c.cmd("QUIT", 221)
    finally:
        c.close()
    wait_delivered(w.setup.maildir, ok, server=w.server)
    assert w.filt.saw(b"|mail-from|") and w.filt.saw(b"|bad@client.test")
    w.server.wait_for(r'event=filter-reject reply="550 5\.7\.1 go away"', 5)
    w.assert_running()


def test_filter_reject_with_421_closes_the_session(bad_world):
    w = bad_world(phases="mail-from",
                  act="mail-from=if:bad@client.test:reject|421 4.7.0 closing now")
    c = client(w.port)
    try:
        c.expect(220)
        c.ehlo()
        r = c.cmd("MAIL FROM:<bad@client.test>")
        assert r.lines == ["421 4.7.0 closing now"], f"{r}\n{c.dialogue()}"
        assert c.closed(5), f"a 421 from a filter must close the session\n{c.dialogue()}"
    finally:
        c.close()
    w.server.wait_for(r'event=filter-disconnect reply="421 4\.7\.0 closing now"', 5)
    # Not a broken filter: it is not restarted, and the next session goes through.
    ok = mark("after-421")
    r, _, dialogue = transaction(w.port, ok)
    assert r is not None and r.code == 250, dialogue
    wait_delivered(w.setup.maildir, ok, server=w.server)
    assert w.filt.count("config|ready") == 1
    w.assert_running()


@pytest.mark.parametrize("command,checked", [
    # A program that is not there: `check` (which `serve` runs first) names the line.
    ("/nonexistent/filter-nope -x", True),
    # A program that exits before its handshake: `serve` stops when starting it.
    ("/bin/sh -c 'echo not a filter; exit 3'", False),
])
def test_filter_that_cannot_start_stops_serve_at_start(ownmail, om, command, checked):
    with world_tmpdir("om-e2e-filter-") as root:
        port = free_port()
        setup = write_vmail_conf(root, listens=[f"listen on 127.0.0.1 port {port} filter nope"],
                                 extra=[f'filter nope proc-exec "{command}"'])
        spool = root / "spool"
        spool.mkdir()
        rc, out, err = om("check", "-f", str(setup.conf))
        print(f"ownmail check: rc={rc}\n{err}")
        if checked:
            assert rc != 0 and "/nonexistent/filter-nope does not exist" in err, err
            assert re.search(rf"{re.escape(str(setup.conf))}:\d+:\d+: .*filter \"nope\"", err), err
        else:
            assert rc == 0, err
        t0 = time.monotonic()
        try:
            p = subprocess.run([ownmail, "serve", "-f", str(setup.conf), "--spool", str(spool)],
                               capture_output=True, text=True, errors="replace", timeout=25,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            pytest.fail("`ownmail serve` kept running with a filter command that does not "
                        f"exist (killed after 25 s); stderr:\n{e.stderr}")
        took = time.monotonic() - t0
        print(f"ownmail serve: rc={p.returncode} after {took:.1f}s\n{p.stderr}")
        assert_no_panic(p.stderr)
        assert p.returncode != 0, p.stderr
        assert '"nope"' in p.stderr or "nope" in p.stderr, \
            f"the error must name the filter:\n{p.stderr}"
        assert not re.search(r"\bready\b", p.stderr.replace("register|ready", "")), p.stderr
        assert took < 15, f"it took {took:.1f}s to give up"
        # Nothing listens on the port.
        with socket.socket() as s:
            s.settimeout(2)
            assert s.connect_ex(("127.0.0.1", port)) != 0


def test_filter_rewrites_of_mail_from_and_rcpt_to_are_routed_and_delivered(bad_world):
    """A `rewrite` of RCPT TO is routed as if the client had given it (an address we would
    refuse becomes the mailbox it names), one of MAIL FROM is the envelope sender
    (Return-Path:); a rewrite that is not an address gets 451 and nothing is accepted."""
    w = bad_world(phases="mail-from,rcpt-to", act=[
        "mail-from=if:alias@client.test:rewrite|<real@client.test>",
        "rcpt-to=if:nobody@example.org:rewrite|m@example.org",
        "rcpt-to=if:broken@example.org:rewrite|not an address",
    ])
    ok = mark("rewritten")
    c = client(w.port)
    try:
        c.expect(220)
        c.ehlo()
        c.cmd("MAIL FROM:<alias@client.test>", 250)
        c.cmd("RCPT TO:<nobody@example.org>", 250)
        r = send_data(c, make_message(ok, sender="alias@client.test", to="nobody@example.org"))
        assert r.code == 250, f"{r}\n{c.dialogue()}"
        # Control: without its rewrite, nobody@ is not a recipient of ours.
        c.cmd("MAIL FROM:<real@client.test>", 250)
        r = c.cmd("RCPT TO:<other@example.org>")
        assert r.code == 550, f"{r}\n{c.dialogue()}"
        r = c.cmd("RCPT TO:<broken@example.org>")
        assert r.code == 451, f"{r}\n{c.dialogue()}"
        c.cmd("QUIT", 221)
    finally:
        c.close()
    [path] = wait_delivered(w.setup.maildir, ok, server=w.server)
    head = open(path, "rb").read().split(b"\n\n", 1)[0]
    assert b"Return-Path: <real@client.test>" in head, head
    assert b"Delivered-To: m@example.org" in head, head
    w.server.wait_for(r'event=filter-bad-rewrite value="not an address"', 5)
    w.assert_running()


def test_reload_that_changes_the_filters_says_so_and_keeps_the_running_ones(bad_world):
    w = bad_world(phases="mail-from")
    conf = w.setup.conf
    text = conf.read_text(encoding="utf-8")
    assert "filter bad proc-exec" in text, text
    conf.write_text(text.replace("filter bad proc-exec",
                                 'filter spare proc-exec "/bin/cat"\nfilter bad proc-exec', 1),
                    encoding="utf-8")
    w.server.hup()
    w.server.wait_for(r"reload event=filters-changed", 10)
    w.server.wait_for(r"configuration reloaded", 10)
    ok = mark("after-reload")
    r, _, dialogue = transaction(w.port, ok)
    assert r is not None and r.code == 250, dialogue
    wait_delivered(w.setup.maildir, ok, server=w.server)
    # The filter that was running saw it (one process since the start), nothing new started.
    assert w.filt.saw(b"|mail-from|") and w.filt.count("config|ready") == 1
    assert len(w.server.grep(r"filter started")) == 1
    w.assert_running()


def test_filters_are_told_the_clients_reverse_dns_at_connect(bad_world):
    """`link-connect` and the `connect` phase carry the client's PTR name and whether it is
    forward-confirmed, looked up by the server (127.0.0.1 is `localhost`, confirmed)."""
    w = bad_world(reports="link-connect", phases="connect")
    ok = mark("rdns")
    r, _, dialogue = transaction(w.port, ok)
    assert r is not None and r.code == 250, dialogue
    wait_delivered(w.setup.maildir, ok, server=w.server)
    connects = [l for l in w.filt.lines() if b"|link-connect|" in l]
    assert connects and b"|localhost|pass|127.0.0.1:" in connects[-1], connects
    phases = [l for l in w.filt.lines() if b"|connect|" in l and l.startswith(b"filter|")]
    assert phases and phases[-1].endswith(b"|localhost|127.0.0.1"), phases


# --------------------------------------------------------------------------- built-in filters

ARTICLE_BUILTINS = r"""filter check_dyndns phase connect match rdns regex { '.*\.dyn\..*', '.*\.dsl\..*' } disconnect "550 no residential connections"
filter check_rdns phase connect match !rdns disconnect "550 no rDNS is so 80s"
filter check_fcrdns phase connect match !fcrdns disconnect "550 no FCrDNS is so 80s"
filter rspamd proc-exec "/usr/libexec/opensmtpd/filter-rspamd"
listen on 127.0.0.1 port 2525 filter { check_dyndns, check_rdns, check_fcrdns, rspamd }
"""


def test_check_accepts_builtin_filters_and_inline_filter_lists(ownmail, tmp_path):
    conf = tmp_path / "smtpd.conf"
    conf.write_text(ARTICLE_BUILTINS)
    r = subprocess.run([ownmail, "check", "-f", conf], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([ownmail, "check", "--print", "-f", conf], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "filter { check_dyndns, check_rdns, check_fcrdns, rspamd }" in r.stdout, r.stdout
    # A condition that does not fit the phase is an error at its line and column.
    conf.write_text('filter f phase connect match mail-from regex { ".*" } reject "550 no"\n'
                    "listen on lo filter { f }\n")
    r = subprocess.run([ownmail, "check", "-f", conf], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0
    assert f"{conf}:1:30:" in r.stderr and "cannot be tested at phase connect" in r.stderr, \
        r.stderr


def test_builtin_filters_before_a_proc_exec_filter(ownmail):
    """listen … filter { bad_sender, evil_helo, scripted }: the built-ins refuse a sender and
    a HELO name (no DNS needed); what they pass reaches the scripted filter and is delivered."""
    with contextlib.ExitStack() as stack:
        root = stack.enter_context(world_tmpdir("om-e2e-builtin-"))
        filt = Scripted(root)
        port = free_port()
        setup = write_vmail_conf(
            root, listens=[f"listen on 127.0.0.1 port {port} "
                           "filter { bad_sender, evil_helo, scripted }"],
            extra=[r"filter bad_sender phase mail-from match mail-from regex { '.*@bad\.test' }"
                   ' reject "550 5.7.1 bad sender"',
                   "filter evil_helo phase helo match helo { 'evil.test' }"
                   ' disconnect "421 4.7.0 go away"',
                   f'filter scripted proc-exec "{filt.command(phases="mail-from")}"'])
        server = start_ownmail(ownmail, setup.conf)
        stack.callback(stop_ownmail, server)
        server.wait_for(r"ownmail ready", 15)

        # mail-from regex: 550 at MAIL FROM, the scripted filter never sees the sender.
        c = client(port)
        try:
            assert c.reply().code == 220
            assert c.cmd("EHLO client.test").code == 250
            r = c.cmd("MAIL FROM:<spammer@bad.test>")
            assert r.code == 550 and "bad sender" in str(r), c.dialogue()
            r = c.cmd(f"MAIL FROM:<{SENDER}>")
            assert r.code == 250, c.dialogue()
        finally:
            c.close()
        assert not filt.saw("spammer@bad.test")
        assert filt.saw(SENDER)

        # helo table: HELO evil.test is answered 421 and the connection closed.
        c = client(port)
        try:
            assert c.reply().code == 220
            r = c.cmd("HELO evil.test")
            assert r.code == 421 and "go away" in str(r), c.dialogue()
            with pytest.raises(SmtpClosed):
                c.cmd("NOOP")
        finally:
            c.close()

        # Everything else is delivered.
        m = mark("builtin")
        with smtp(port) as s:
            smtp_send(s, SENDER, [RCPT], make_message(m, sender=SENDER))
        assert len(wait_delivered(setup.maildir, m, server=server)) == 1
        assert_no_panic(server.log)
