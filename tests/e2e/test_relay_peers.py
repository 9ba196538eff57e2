"""The relay tests' own peers, checked without ownmail: the test DNS server, the SMTP sink,
the misbehaving SMTP servers and the private Postfix (conftest.py, "relay" section).

If one of these fails, the relay tests' failures say nothing about ownmail. Everything runs
in a network namespace of its own (lo only); clients are Python's (dnslib, smtplib, sockets).
"""

import smtplib
import socket
import ssl
import struct
import uuid

import pytest

from conftest import (
    BadSmtpServer,
    DnsServer,
    PostfixMx,
    SmtpSink,
    check_failure_dsn,
    deadline_loop,
    make_message,
    make_netns,
    ns_smtp,
    server_tls_context,
    wait_delivered,
    world_tmpdir,
    write_relay_conf,
)
from conftest import _dnslib as dnslib  # None when python3-dnslib is missing: DnsServer says so


@pytest.fixture
def ns():
    with make_netns(eth0=False) as n:
        yield n


@pytest.fixture
def peers():
    started = []
    yield started
    for p in reversed(started):
        p.stop()


# --------------------------------------------------------------------------- DNS


def dns_ask(ns, dns, name, qtype, *, tcp=False):
    """One query to the test server from inside ns; returns the parsed reply."""
    q = dnslib.DNSRecord.question(name, qtype).pack()
    if tcp:
        s = ns.connect(dns.host, dns.port, timeout=5)
        try:
            s.sendall(struct.pack("!H", len(q)) + q)
            data = b""
            while len(data) < 2 or len(data) < 2 + struct.unpack("!H", data[:2])[0]:
                chunk = s.recv(65536)
                assert chunk, "the DNS server closed the TCP connection early"
                data += chunk
            return dnslib.DNSRecord.parse(data[2:])
        finally:
            s.close()
    s = ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(5)
        s.sendto(q, (dns.host, dns.port))
        return dnslib.DNSRecord.parse(s.recv(65536))
    finally:
        s.close()


def test_dns_server_answers_mx_a_null_mx_nodata_and_nxdomain_over_udp_and_tcp(ns, peers):
    dns = DnsServer(ns=ns).start()
    peers.append(dns)
    dns.mx("remote.test", (20, "mx2.remote.test"), (10, "mx1.remote.test"))
    dns.a("mx1.remote.test", "127.0.0.2")
    dns.null_mx("nomail.test")
    dns.a("nomail.test", "127.0.0.3")
    for tcp in (False, True):
        r = dns_ask(ns, dns, "remote.test", "MX", tcp=tcp)
        assert r.header.rcode == dnslib.RCODE.NOERROR
        assert sorted((rr.rdata.preference, str(rr.rdata.label)) for rr in r.rr) == [
            (10, "mx1.remote.test."), (20, "mx2.remote.test.")]
        r = dns_ask(ns, dns, "MX1.Remote.Test", "A", tcp=tcp)
        assert [str(rr.rdata) for rr in r.rr] == ["127.0.0.2"]
        r = dns_ask(ns, dns, "nomail.test", "MX", tcp=tcp)
        assert [(rr.rdata.preference, str(rr.rdata.label)) for rr in r.rr] == [(0, ".")]
        r = dns_ask(ns, dns, "mx1.remote.test", "AAAA", tcp=tcp)    # NODATA
        assert r.header.rcode == dnslib.RCODE.NOERROR and not r.rr and r.auth
        r = dns_ask(ns, dns, "unknown.test", "MX", tcp=tcp)         # NXDOMAIN
        assert r.header.rcode == dnslib.RCODE.NXDOMAIN and not r.rr and r.auth
    assert ("remote.test", "MX", "udp") in dns.queries
    assert ("remote.test", "MX", "tcp") in dns.queries
    # changed live
    dns.remove("remote.test", "MX")
    assert not dns_ask(ns, dns, "remote.test", "MX").rr


def test_dns_server_truncates_big_udp_answers_and_serves_them_whole_over_tcp(ns, peers):
    dns = DnsServer(ns=ns).start()
    peers.append(dns)
    dns.udp_limit = 512
    dns.mx("big.test", *[(10 + i, f"mx{i:02d}.{'a-long-label-' * 3}big.test") for i in range(30)])
    r = dns_ask(ns, dns, "big.test", "MX")
    assert r.header.tc == 1 and not r.rr
    assert str(r.q.qname) == "big.test." and r.q.qtype == dnslib.QTYPE.MX, "question dropped"
    r = dns_ask(ns, dns, "big.test", "MX", tcp=True)
    assert r.header.tc == 0 and len(r.rr) == 30


# --------------------------------------------------------------------------- sink


def test_sink_records_accepted_mail_and_switches_between_accept_4xx_and_5xx(ns, peers):
    sink = SmtpSink("127.0.0.2", 25, ns=ns).start()
    peers.append(sink)
    msg = make_message("peers-sink-1", to="x@remote.test")
    with ns_smtp("127.0.0.2", 25, ns=ns) as s:
        assert s.sendmail("a@client.test", ["x@remote.test"], msg) == {}
    (m,) = sink.wait_messages(1)
    assert m.mail_from == "a@client.test" and m.rcpt_tos == ["x@remote.test"]
    assert m.data == msg, "the sink does not keep the bytes as sent (dots unstuffed)"
    assert not m.tls and m.auth is None

    sink.set("tempfail")
    with ns_smtp("127.0.0.2", 25, ns=ns) as s:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
            s.sendmail("a@client.test", ["x@remote.test"], msg)
    code, text = e.value.recipients["x@remote.test"]
    assert code == 451 and sink.token.encode() in text

    sink.set("permfail", fail_at="data")
    with ns_smtp("127.0.0.2", 25, ns=ns) as s:
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail("", ["x@remote.test"], msg)     # the null sender is fine at MAIL
    assert e.value.smtp_code == 550

    sink.set("accept")
    sink.rcpt_replies["bad@remote.test"] = "550 5.1.1 bad-user-here"
    with ns_smtp("127.0.0.2", 25, ns=ns) as s:
        refused = s.sendmail("", ["bad@remote.test", "x@remote.test"], msg)
    assert refused == {"bad@remote.test": (550, b"5.1.1 bad-user-here")}
    m = sink.wait_messages(2)[-1]
    assert m.mail_from == "" and m.rcpt_tos == ["x@remote.test"]
    assert [r[0] for r in sink.refusals] == ["rcpt", "data", "rcpt"]
    assert sink.connections == 4


def test_sink_offers_starttls_and_auth_after_it(ns, peers, pki):
    sink = SmtpSink("127.0.0.2", 587, ns=ns, tls_context=server_tls_context(pki),
                    auth={"relayuser": "s3cret"}).start()
    peers.append(sink)
    with ns_smtp("127.0.0.2", 587, ns=ns) as s:
        s.ehlo()
        assert s.has_extn("starttls") and not s.has_extn("auth")
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        s.starttls(context=ctx)
        s.ehlo()
        assert s.has_extn("auth")
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login("relayuser", "wrong")
        s.login("relayuser", "s3cret")
        s.sendmail("a@client.test", ["x@remote.test"], make_message("peers-tls"))
    (m,) = sink.wait_messages(1)
    assert m.tls and m.auth == "relayuser"
    assert sink.auth_failures >= 1      # smtplib tries PLAIN, then LOGIN


def test_sink_without_tls_offers_neither_starttls_nor_auth(ns, peers):
    sink = SmtpSink("127.0.0.3", 25, ns=ns).start()
    peers.append(sink)
    with ns_smtp("127.0.0.3", 25, ns=ns) as s:
        s.ehlo()
        assert not s.has_extn("starttls") and not s.has_extn("auth")
        assert s.has_extn("8bitmime")


def test_sink_on_message_hook_decides_the_reply(ns, peers):
    seen = []

    def hook(m):
        seen.append(m)
        return "451 4.7.0 hook says later" if len(seen) == 1 else "250 2.0.0 hook ok"

    sink = SmtpSink("127.0.0.1", 10027, ns=ns, on_message=hook).start()
    peers.append(sink)
    for expect in (451, 250):
        with ns_smtp("127.0.0.1", 10027, ns=ns) as s:
            s.ehlo()
            s.mail("a@client.test")
            s.rcpt("x@remote.test")
            code, _ = s.data(make_message("peers-hook"))
            assert code == expect
    assert len(seen) == 2 and len(sink.messages) == 1


# --------------------------------------------------------------------------- bad servers


def raw(ns, host, port):
    s = ns.connect(host, port, timeout=5)
    s.settimeout(3)
    return s


def test_bad_server_silent_never_greets(ns, peers):
    bad = BadSmtpServer("127.0.0.2", "silent", ns=ns).start()
    peers.append(bad)
    s = raw(ns, "127.0.0.2", 25)
    try:
        s.settimeout(1.5)
        with pytest.raises(socket.timeout):
            s.recv(100)
    finally:
        s.close()
    assert bad.wait_connections(1)


@pytest.mark.parametrize("behaviour", ["garbage-ehlo", "garbage-greeting"])
def test_bad_server_garbage_is_not_an_smtp_reply(ns, peers, behaviour):
    bad = BadSmtpServer("127.0.0.2", behaviour, ns=ns).start()
    peers.append(bad)
    s = raw(ns, "127.0.0.2", 25)
    try:
        first = s.recv(100)
        if behaviour == "garbage-ehlo":
            assert first.startswith(b"220 ")
            s.sendall(b"EHLO client.test\r\n")
            first = s.recv(100)
        assert first == BadSmtpServer.GARBAGE
    finally:
        s.close()


def test_bad_server_drop_in_data_resets_after_the_first_message_bytes(ns, peers):
    bad = BadSmtpServer("127.0.0.2", "drop-in-data", ns=ns).start()
    peers.append(bad)
    with ns_smtp("127.0.0.2", 25, ns=ns) as s:
        s.ehlo()
        assert s.mail("a@client.test")[0] == 250
        assert s.rcpt("x@remote.test")[0] == 250
        with pytest.raises((smtplib.SMTPServerDisconnected, ConnectionError)):
            s.data(make_message("peers-drop"))
    for _ in deadline_loop(5):
        if bad.data_started == 1:
            break
    assert bad.data_started == 1
    assert b"Subject: peers-drop" in bytes(bad.received[0])


# --------------------------------------------------------------------------- Postfix


def test_postfix_mx_delivers_to_its_virtual_maildir(ns):
    with world_tmpdir("om-relay-peers-") as root:
        pf = PostfixMx(root / "postfix", "127.0.0.5", "remote.test", ["x"], ns=ns).start()
        try:
            mark = f"peers-postfix-{uuid.uuid4().hex[:8]}"
            with ns_smtp("127.0.0.5", 25, ns=ns) as s:
                assert s.sendmail("a@client.test", ["x@remote.test"],
                                  make_message(mark, to="x@remote.test")) == {}
            (f,) = wait_delivered(pf.maildir("x"), mark, timeout=30)
            data = f.read_bytes()          # Postfix's Maildir names carry no ,S=
            assert data.startswith(b"Return-Path: <a@client.test>")
            with ns_smtp("127.0.0.5", 25, ns=ns) as s:
                with pytest.raises(smtplib.SMTPRecipientsRefused):
                    s.sendmail("a@client.test", ["nobody@remote.test"], make_message(mark))
        finally:
            pf.stop()
            logs = pf.logs()
        assert pf.proc.poll() is not None, "postfix master still running after stop()"
        print(logs)


# --------------------------------------------------------------------------- helpers


def test_write_relay_conf_writes_both_grammars(tmp_path):
    modern = write_relay_conf(tmp_path / "a", resolver="127.0.0.1:5353")
    text = modern.conf.read_text()
    assert "resolver 127.0.0.1:5353" in text and 'action "out" relay' in text
    assert 'match from local for any action "out"' in text
    legacy = write_relay_conf(tmp_path / "b", resolver="127.0.0.1:5353", grammar="legacy",
                              relay="relay via smtp://127.0.0.1:10027")
    assert "accept for any relay via smtp://127.0.0.1:10027" in legacy.conf.read_text()


def test_check_failure_dsn_accepts_a_well_formed_report_and_refuses_a_plain_message():
    dsn = (
        "Return-Path: <>\n"
        "From: MAILER-DAEMON@mx.example.org\n"
        "To: m@example.org\n"
        "Subject: Delivery failure\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n'
        "\n"
        "--B\nContent-Type: text/plain\n\nYour message could not be delivered.\n"
        "--B\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx.example.org\n\n"
        "Final-Recipient: rfc822; x@remote.test\nAction: failed\nStatus: 5.1.1\n"
        "Diagnostic-Code: smtp; 550 5.1.1 the-token\n  mailbox unavailable\n\n"
        "--B\nContent-Type: text/rfc822-headers\n\n"
        "From: m@example.org\nSubject: the subject\n\n"
        "--B--\n").encode()
    d = check_failure_dsn(dsn, rcpt="x@remote.test", subject="the subject",
                          diagnostic="550 5.1.1 the-token mailbox unavailable")
    assert d.recipient("x@remote.test")["status"] == "5.1.1"
    with pytest.raises(AssertionError):
        check_failure_dsn(dsn, rcpt="x@remote.test", subject="the subject", full=True)
    with pytest.raises(AssertionError):
        check_failure_dsn(b"Return-Path: <>\nSubject: hi\n\nbody\n", rcpt="x@remote.test",
                          subject="hi")
