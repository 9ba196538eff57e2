"""`ownmail serve` with the article's v2 configuration, unchanged but for paths.

The article's "current state" smtpd.conf (aliases.v2 + vusers.v2) runs in a network
namespace that has `lo` (127.0.0.1) and `eth0` (192.0.2.10). The vusers file is rewritten
so that m's Maildir is <tmp>/var/vmail/m instead of /var/vmail/m. eth0's veth peer is
moved into a second namespace as 192.0.2.11: a client from outside, neither loopback nor
one of the server's own addresses (the MX role, and the open-relay check).
"""

import email
import email.policy
import os
import re
import uuid

import pytest

from conftest import (
    VMAIL_GID,
    VMAIL_UID,
    SmtpClient,
    _ip,
    check_maildir_file,
    install_article,
    lf,
    make_message,
    make_netns,
    make_vmail_dir,
    smtp_send,
    start_ownmail,
    stop_ownmail,
    wait_delivered,
    wait_queue_empty,
    world_tmpdir,
)

SERVER_ETH0 = "192.0.2.10"
OUTSIDE = "192.0.2.11"
SENDER = "alice@client.test"


class Article:
    def __init__(self, server, ns, outside, root):
        self.server, self.ns, self.outside, self.root = server, ns, outside, root
        self.maildir = root / "var" / "vmail" / "m"


@pytest.fixture(scope="module")
def article(ownmail, pki):
    with world_tmpdir() as root, make_netns(eth0=True) as ns, \
            make_netns(eth0=False) as outside:
        _ip("-n", ns.name, "link", "set", "eth0p", "netns", outside.name)
        _ip("-n", outside.name, "addr", "add", f"{OUTSIDE}/24", "dev", "eth0p")
        _ip("-n", outside.name, "link", "set", "eth0p", "up")

        conf = install_article(root, "smtpd.conf.v2", ("aliases.v2", "vusers.v2"))
        vusers = root / "etc" / "vusers"
        text = vusers.read_text(encoding="utf-8")
        assert "/var/vmail/" in text
        vusers.write_text(text.replace("/var/vmail/", f"{root}/var/vmail/"), encoding="utf-8")
        make_vmail_dir(root)

        server = start_ownmail(ownmail, conf, spool=root / "spool", pki_dir=pki, ns=ns)
        try:
            yield Article(server, ns, outside, root)
        finally:
            stop_ownmail(server)


def marker(what):
    return f"article-{what}-{uuid.uuid4().hex[:12]}"


def added_headers(data, msg):
    """Splits a Maildir file into (the header block ownmail added, parsed) and asserts
    that the rest is exactly the message sent, with LF line endings."""
    body = lf(msg)
    assert data.endswith(body), (
        "the Maildir file does not end with the message as sent (LF-normalised):\n"
        f"--- file ---\n{data[:3000]!r}\n--- expected tail ---\n{body[:3000]!r}")
    prefix = data[: len(data) - len(body)]
    assert prefix.endswith(b"\n"), f"added headers do not end with a newline: {prefix!r}"
    for line in prefix.decode("utf-8", "replace").splitlines():
        assert re.match(r"^([!-9;-~]+:|[ \t])", line), (
            f"not a header line in what ownmail added before the message: {line!r}")
    return prefix, email.message_from_bytes(prefix + b"\n", policy=email.policy.compat32)


def check_delivery(a, rcpt, msg, mark, *, delivered_to=None):
    files = wait_delivered(a.maildir, mark, server=a.server)
    assert len(files) == 1, f"{mark} delivered {len(files)} times: {files}"
    data = check_maildir_file(files[0])
    prefix, hdrs = added_headers(data, msg)
    first = prefix.split(b"\n", 1)[0]
    assert first == f"Return-Path: <{SENDER}>".encode(), (
        f"the first line is {first!r}, not Return-Path: <{SENDER}>")
    got = [v.strip() for v in hdrs.get_all("Delivered-To", [])]
    assert len(got) == 1, f"Delivered-To headers added: {got}\n{prefix!r}"
    allowed = {x.lower() for x in (delivered_to or [rcpt])}
    assert got[0].strip("<>").lower() in allowed, f"Delivered-To: {got[0]}, expected {allowed}"
    assert hdrs.get_all("Received"), f"no Received: header added:\n{prefix!r}"
    return files[0]


# --------------------------------------------------------------------------- delivery


@pytest.mark.parametrize(
    "rcpt", ["m@example.org", "mayeu@example.org", "m+tag@example.org", "MaYeU@Example.ORG"])
def test_mail_for_m_addresses_lands_in_m_maildir_owned_by_vmail_with_bytes_intact(article, rcpt):
    a = article
    mark = marker(rcpt.split("@")[0])
    msg = make_message(mark, sender=SENDER, to=rcpt)
    with a.server.smtp() as s:
        qid = smtp_send(s, SENDER, rcpt, msg, mail_options=["BODY=8BITMIME"])
    path = check_delivery(a, rcpt, msg, mark)

    # The Maildir ~/ = <tmp>/var/vmail/m, made by the delivery, owned by vmail.
    for d in (a.maildir, a.maildir / "new", a.maildir / "cur", a.maildir / "tmp"):
        st = os.stat(d)
        assert (st.st_uid, st.st_gid) == (VMAIL_UID, VMAIL_GID), f"{d} owned by {st.st_uid}"
    assert path.parent == a.maildir / "new"

    a.server.wait_delivery(qid, "delivered")
    wait_queue_empty(a.server.spool, server=a.server)


def test_root_at_localhost_goes_through_the_aliases_to_m_maildir(article):
    a = article
    mark = marker("root")
    msg = make_message(mark, sender=SENDER, to="root@localhost")
    with a.server.smtp() as s:
        smtp_send(s, SENDER, "root@localhost", msg)
    # aliases: `root: m+root@example.org`, which the first rule delivers to m's Maildir.
    check_delivery(a, "root@localhost", msg, mark,
                   delivered_to=["root@localhost", "m+root@example.org"])


def test_log_lines_carry_session_and_queue_ids_from_connect_to_delivery(article):
    a = article
    mark = marker("log")
    msg = make_message(mark, sender=SENDER)
    start = a.server.mark()
    with a.server.smtp() as s:
        qid = smtp_send(s, SENDER, "m@example.org", msg)
    wait_delivered(a.maildir, mark, server=a.server)

    srv = a.server
    accepted = srv.wait_event("smtp", start=start, id=qid, event="accepted")
    sid = re.search(r"(?:^|\s)session=(\S+)", accepted)
    assert sid, f"no session= in {accepted!r}"
    assert srv.events("smtp", start=start, session=sid.group(1), event="connect",
                      client="127.0.0.1"), (
        f"no `smtp session={sid.group(1)} event=connect client=127.0.0.1` line:\n{srv.log_tail()}")
    assert re.search(rf"(?:^|\s)from=<{re.escape(SENDER)}>(?:\s|$)", accepted), accepted
    assert re.search(r"(?:^|\s)rcpts=1(?:\s|$)", accepted), accepted
    size = re.search(r"(?:^|\s)size=(\d+)(?:\s|$)", accepted)
    assert size and int(size.group(1)) >= len(lf(msg)), accepted
    line = srv.wait_delivery(qid, "delivered")
    assert re.search(r"(?:^|\s)rcpt=\S+@\S+", line), line


# --------------------------------------------------------------------------- refusals


def test_unknown_user_in_served_domain_is_refused_at_rcpt(article):
    with article.server.connect() as c:
        c.ehlo()
        c.cmd(f"MAIL FROM:<{SENDER}>", 250)
        c.cmd("RCPT TO:<nobody-here@example.org>", 550, "5.1.1")
        # the transaction goes on with the other recipients
        c.cmd("RCPT TO:<m@example.org>", 250)
        c.cmd("RSET", 250)
        c.cmd("QUIT", 221)


def test_relay_from_outside_unauthenticated_is_refused(article):
    a = article
    with SmtpClient.connect(SERVER_ETH0, 25, ns=a.outside, source=OUTSIDE) as c:
        c.expect(220)
        c.ehlo()
        c.cmd("MAIL FROM:<spammer@elsewhere.test>", 250)
        c.cmd("RCPT TO:<someone@elsewhere.test>", 550, "5.7.1")
        # `accept for local ...` has no `from`: local clients only
        r = c.cmd("RCPT TO:<root@localhost>")
        assert 500 <= r.code < 600, f"root@localhost from outside: {r}"
        c.cmd("QUIT", 221)
    assert a.server.events("smtp", event="connect", client=OUTSIDE), a.server.log_tail()


def test_outside_client_delivers_to_served_domain_like_an_mx(article):
    a = article
    mark = marker("mx")
    msg = make_message(mark, sender=SENDER)
    with SmtpClient.connect(SERVER_ETH0, 25, ns=a.outside, source=OUTSIDE) as c:
        c.expect(220)
        c.ehlo("mx.client.test")
        c.cmd(f"MAIL FROM:<{SENDER}>", 250)
        c.cmd("RCPT TO:<mayeu@example.org>", 250)
        c.cmd("DATA", 354)
        c.send(msg.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        c.expect(250, "2.0.0")
        c.cmd("QUIT", 221)
    check_delivery(a, "mayeu@example.org", msg, mark)


def test_starttls_is_offered_on_eth0_tls_listener_and_not_on_lo(article):
    a = article
    with a.server.connect() as c:
        kw = c.ehlo().keywords
        assert "STARTTLS" not in kw, f"STARTTLS offered on `listen on lo`: {kw}"
        for k in ("PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE", "ENHANCEDSTATUSCODES", "DSN",
                  "CHUNKING"):
            assert k in kw, f"EHLO does not list {k}: {kw}"
    with SmtpClient.connect(SERVER_ETH0, 25, ns=a.outside, source=OUTSIDE) as c:
        c.expect(220)
        kw = c.ehlo().keywords
        assert "STARTTLS" in kw, f"no STARTTLS on `listen on eth0 tls`: {kw}"
        c.cmd("STARTTLS", 220, "2.0.0")
        c.starttls()
        kw = c.ehlo().keywords
        assert "STARTTLS" not in kw, f"STARTTLS offered again after TLS: {kw}"
        c.cmd("QUIT", 221)


# --------------------------------------------------------------------------- swaks


def test_swaks_delivers_a_message(article):
    a = article
    mark = marker("swaks")
    rc, out, err = a.ns(
        ["swaks", "--server", "127.0.0.1", "--port", "25", "--helo", "client.test",
         "--from", SENDER, "--to", "m@example.org", "--header", f"Subject: {mark}",
         "--body", f"sent by swaks\nEND {mark}\n", "--timeout", "20"],
        timeout=60)
    assert rc == 0, f"swaks failed (status {rc}):\n{out}\n{err}"
    files = wait_delivered(a.maildir, f"END {mark}", server=a.server)
    assert len(files) == 1
    data = check_maildir_file(files[0])
    assert data.startswith(f"Return-Path: <{SENDER}>\n".encode()), data[:200]
    assert f"Subject: {mark}\n".encode() in data
    assert b"\r\n" not in data, "CRLF left in the Maildir file"
