"""Relay by MX (SPEC §5.4), failures and bounces (RFC 3464 DSN), smarthosts, TLS.

Each test has its own network namespace (lo only) with a test DNS server (dnslib, UDP+TCP)
that ownmail is told to ask (`resolver 127.0.0.1:PORT`). Remote MXs are SMTP sinks
(aiosmtpd) on port 25 of 127.0.0.2, 127.0.0.3, ...; ownmail listens on 127.0.0.1:2525.
Its configuration (modern grammar unless said otherwise):

    action "local" maildir "~/" virtual <valiases> userbase <vusers>   # m@example.org
    action "out" relay [...]
    match from any for domain "example.org" action "local"
    match from local for any action "out"

so the local sender m@example.org gets any DSN in its Maildir, delivered by the same ownmail.
"""

import time
import uuid

import pytest

from conftest import (
    check_failure_dsn,
    check_maildir_file,
    maildir_files,
    make_message,
    queue_files,
    server_tls_context,
    smtp_send,
    wait_maildir,
    wait_queue_empty,
    write_relay_conf,
)

SENDER = "m@example.org"
RCPT = "x@remote.test"


def marker(what):
    return f"relay-{what}-{uuid.uuid4().hex[:12]}"


class World:
    def __init__(self, net, setup, server):
        self.net, self.setup, self.server = net, setup, server
        self.dns = net.dns
        self.maildir = setup.maildir          # the local sender's (m@example.org) Maildir

    def send(self, rcpts, mark, *, sender=SENDER, mail_options=(), msg=None):
        """Submits one message from a local client; returns (queue id, message bytes)."""
        rcpts = [rcpts] if isinstance(rcpts, str) else list(rcpts)
        msg = msg if msg is not None else make_message(mark, sender=sender or "mailer@x.test",
                                                       to=rcpts[0])
        with self.net.smtp() as s:
            qid = smtp_send(s, sender, rcpts, msg, mail_options=mail_options)
        return qid, msg

    def one_remote(self, domain="remote.test", addr="127.0.0.2", **sink_kw):
        """domain MX 10 mx.DOMAIN, mx.DOMAIN A addr, and a sink there."""
        sink = self.net.sink(addr, **sink_kw)
        self.dns.mx(domain, (10, f"mx.{domain}"))
        self.dns.a(f"mx.{domain}", addr)
        return sink

    def no_dsn(self, settle=1.0):
        time.sleep(settle)
        files = maildir_files(self.maildir)
        assert files == [], (f"unexpected mail in the sender's Maildir: "
                             f"{[f.read_bytes()[:2000] for f in files]}")

    def dsn(self, timeout=30):
        (f,) = wait_maildir(self.maildir, 1, timeout=timeout)
        time.sleep(0.5)
        files = maildir_files(self.maildir)
        assert len(files) == 1, f"{len(files)} messages in the sender's Maildir, not one DSN"
        return check_maildir_file(files[0])


def start(relay_net, *, relay="relay", grammar="modern", extra=()):
    setup = write_relay_conf(relay_net.root, resolver=relay_net.dns, relay=relay,
                             grammar=grammar, extra=extra)
    server = relay_net.start_ownmail(setup.conf)
    return World(relay_net, setup, server)


@pytest.fixture
def world(relay_net):
    return start(relay_net)


def assert_relayed_intact(m, msg, *, sender=SENDER, rcpts=(RCPT,)):
    """The sink got the message as sent, with only header lines (Received: first) before it."""
    assert m.mail_from == sender, f"envelope sender {m.mail_from!r}, not {sender!r}"
    assert sorted(r.lower() for r in m.rcpt_tos) == sorted(r.lower() for r in rcpts)
    assert m.data.endswith(msg), (
        f"the relayed message does not end with the message as submitted:\n{m.data[:3000]!r}")
    added = m.data[: len(m.data) - len(msg)]
    assert added.startswith(b"Received: "), f"no Received: header added on top: {added[:500]!r}"
    for line in added.split(b"\r\n")[:-1]:
        assert line[:1] in (b" ", b"\t") or b":" in line, f"not a header line: {line!r}"


# --------------------------------------------------------------------------- MX choice


def test_relay_delivers_to_the_lowest_preference_mx_only(world, relay_net):
    best = relay_net.sink("127.0.0.2")
    worse = relay_net.sink("127.0.0.3")
    # listed worst first: the order of the answer must not matter
    world.dns.mx("remote.test", (20, "mx2.remote.test"), (10, "mx1.remote.test"))
    world.dns.a("mx1.remote.test", "127.0.0.2")
    world.dns.a("mx2.remote.test", "127.0.0.3")
    mark = marker("best")
    qid, msg = world.send(RCPT, mark)
    (m,) = best.wait_messages(1)
    assert_relayed_intact(m, msg)
    wait_queue_empty(world.server.spool, server=world.server)
    time.sleep(0.5)
    assert worse.connections == 0, "the MX with the higher preference was contacted"
    assert len(best.messages) == 1
    world.no_dsn(settle=0)


def test_relay_skips_a_dead_best_mx_and_delivers_to_the_next(world, relay_net):
    second = relay_net.sink("127.0.0.3")
    # nothing listens on 127.0.0.6:25: connection refused
    world.dns.mx("remote.test", (10, "mx1.remote.test"), (20, "mx2.remote.test"))
    world.dns.a("mx1.remote.test", "127.0.0.6")
    world.dns.a("mx2.remote.test", "127.0.0.3")
    qid, msg = world.send(RCPT, marker("next"))
    (m,) = second.wait_messages(1)
    assert_relayed_intact(m, msg)
    wait_queue_empty(world.server.spool, server=world.server)
    assert len(second.messages) == 1
    world.no_dsn()


def test_relay_tries_every_address_of_an_mx_host(world, relay_net):
    sink = relay_net.sink("127.0.0.2")
    world.dns.mx("remote.test", (10, "mx.remote.test"))
    world.dns.a("mx.remote.test", "127.0.0.6", "127.0.0.2")     # the first one is dead
    qid, msg = world.send(RCPT, marker("addrs"))
    (m,) = sink.wait_messages(1)
    assert_relayed_intact(m, msg)
    wait_queue_empty(world.server.spool, server=world.server)


def test_relay_without_mx_falls_back_to_the_a_record(world, relay_net):
    sink = relay_net.sink("127.0.0.2")
    world.dns.a("remote.test", "127.0.0.2")                     # no MX at all (NODATA)
    qid, msg = world.send(RCPT, marker("a-record"))
    (m,) = sink.wait_messages(1)
    assert_relayed_intact(m, msg)
    wait_queue_empty(world.server.spool, server=world.server)
    assert world.dns.queried("remote.test", "MX"), "ownmail never asked for the MX"


def test_relay_reads_an_mx_answer_too_big_for_udp_over_tcp(world, relay_net):
    sink = relay_net.sink("127.0.0.2")
    world.dns.udp_limit = 512
    filler = [(20 + i, f"mx{i:02d}.a-rather-long-label-for-padding.remote.test")
              for i in range(30)]
    world.dns.mx("remote.test", *filler, (10, "mx.remote.test"))
    world.dns.a("mx.remote.test", "127.0.0.2")
    qid, msg = world.send(RCPT, marker("tcp-dns"))
    (m,) = sink.wait_messages(1)
    assert_relayed_intact(m, msg)
    assert world.dns.queried("remote.test", "MX", "tcp"), (
        f"the truncated MX answer was not asked again over TCP: {world.dns.queries}")


def test_relay_splits_recipients_by_domain_one_copy_per_mx(world, relay_net):
    a = world.one_remote("remote.test", "127.0.0.2")
    b = world.one_remote("other.test", "127.0.0.3")
    mark = marker("split")
    qid, msg = world.send(["x@remote.test", "y@other.test", "z@remote.test"], mark)
    (ma,) = a.wait_messages(1)
    (mb,) = b.wait_messages(1)
    assert_relayed_intact(ma, msg, rcpts=("x@remote.test", "z@remote.test"))
    assert_relayed_intact(mb, msg, rcpts=("y@other.test",))
    wait_queue_empty(world.server.spool, server=world.server)
    assert len(a.messages) == 1 and len(b.messages) == 1


# --------------------------------------------------------------------------- permanent failures


def test_null_mx_fails_permanently_without_connecting_to_the_a_record(world, relay_net):
    a_host = relay_net.sink("127.0.0.2")
    world.dns.null_mx("remote.test")
    world.dns.a("remote.test", "127.0.0.2")
    mark = marker("null-mx")
    qid, msg = world.send(RCPT, mark)
    data = world.dsn()
    check_failure_dsn(data, rcpt=RCPT, subject=mark)
    wait_queue_empty(world.server.spool, server=world.server)
    assert a_host.connections == 0, "a null MX domain's A record was contacted"


def test_nonexistent_domain_bounces(world, relay_net):
    mark = marker("nxdomain")
    qid, msg = world.send("x@no-such-domain.test", mark)        # NXDOMAIN for every type
    data = world.dsn()
    check_failure_dsn(data, rcpt="x@no-such-domain.test", subject=mark)
    wait_queue_empty(world.server.spool, server=world.server)


@pytest.mark.parametrize("fail_at", ["rcpt", "data"])
def test_5xx_from_the_mx_bounces_a_dsn_with_the_remote_reply_to_the_local_sender(
        world, fail_at):
    sink = world.one_remote()
    sink.set("permfail", fail_at=fail_at)
    mark = marker(f"5xx-{fail_at}")
    qid, msg = world.send(RCPT, mark)
    sink.wait_refusals(1)
    data = world.dsn()
    d = check_failure_dsn(data, rcpt=RCPT, subject=mark,
                          diagnostic=f"{sink.token} mailbox unavailable")
    assert "550" in d.recipient(RCPT)["diagnostic-code"]
    wait_queue_empty(world.server.spool, server=world.server)
    assert sink.messages == []
    assert len(sink.refusals) == 1, f"the 5xx was retried: {sink.refusals}"


@pytest.mark.parametrize("ret", ["FULL", "HDRS"])
def test_dsn_returns_full_message_or_headers_only_as_ret_asks(world, ret):
    sink = world.one_remote()
    sink.set("permfail")
    mark = marker(f"ret-{ret.lower()}")
    qid, msg = world.send(RCPT, mark, mail_options=[f"RET={ret}", "ENVID=env-" + mark])
    data = world.dsn()
    d = check_failure_dsn(data, rcpt=RCPT, subject=mark, full=(ret == "FULL"))
    body_line = f"END {mark}".encode()
    if ret == "FULL":
        assert body_line in data, "RET=FULL: the original body is not in the DSN"
    else:
        assert body_line not in data, "RET=HDRS: the original body came back in the DSN"
    assert d.per_message.get("original-envelope-id") == "env-" + mark, (
        f"ENVID not returned as Original-Envelope-Id: {d.per_message}")


def test_partial_failure_bounces_only_the_refused_recipient(world):
    sink = world.one_remote()
    bad, good = "bad@remote.test", "good@remote.test"
    sink.rcpt_replies[bad] = f"550 5.1.1 <{bad}> unknown-user-{sink.token}"
    mark = marker("partial")
    qid, msg = world.send([bad, good], mark)
    (m,) = sink.wait_messages(1)
    assert_relayed_intact(m, msg, rcpts=(good,))
    data = world.dsn()
    check_failure_dsn(data, rcpt=bad, subject=mark, diagnostic=f"unknown-user-{sink.token}",
                      other_rcpts=(good,))
    wait_queue_empty(world.server.spool, server=world.server)
    assert len(sink.messages) == 1


def test_null_sender_5xx_produces_no_dsn_anywhere(world):
    sink = world.one_remote()
    sink.set("permfail")
    mark = marker("null-sender")
    qid, msg = world.send(RCPT, mark, sender="")
    sink.wait_refusals(1)
    wait_queue_empty(world.server.spool, server=world.server)
    world.no_dsn(settle=2)
    assert queue_files(world.server.spool) == [], "something was queued after the failure"
    assert sink.messages == [], "a bounce of a bounce was sent"
    assert len(sink.refusals) == 1


# --------------------------------------------------------------------------- temporary failures


def test_4xx_keeps_the_message_queued_with_the_error_until_flush(world, relay_net):
    sink = world.one_remote()
    sink.set("tempfail")
    mark = marker("4xx")
    qid, msg = world.send(RCPT, mark)
    sink.wait_refusals(1)
    spool = world.server.spool
    out = relay_net.wait_queue_list(spool, qid, sink.token)
    assert RCPT in out and SENDER in out, f"`queue list` lacks the envelope:\n{out}"
    world.no_dsn()
    assert sink.messages == []

    sink.set("accept")
    relay_net.queue_ok(spool, "flush")
    (m,) = sink.wait_messages(1)
    assert_relayed_intact(m, msg)
    wait_queue_empty(spool, server=world.server)
    relay_net.wait_queue_list(spool, absent=(qid,))
    time.sleep(1)
    assert len(sink.messages) == 1, "delivered more than once"
    world.no_dsn(settle=0)


# --------------------------------------------------------------------------- TLS


def test_relay_uses_starttls_when_the_mx_offers_it_even_with_a_self_signed_cert(
        world, relay_net, pki):
    sink = world.one_remote(tls_context=server_tls_context(pki))
    qid, msg = world.send(RCPT, marker("starttls"))
    (m,) = sink.wait_messages(1)
    assert m.tls, "the MX offered STARTTLS and the message came in clear text"
    assert_relayed_intact(m, msg)


def test_relay_with_tls_required_never_sends_in_clear_text(relay_net):
    w = start(relay_net, relay="relay tls")
    sink = w.one_remote()                          # offers no STARTTLS
    qid, msg = w.send(RCPT, marker("tls-required"))
    sink.wait_connections(1)
    time.sleep(2)
    assert sink.messages == [] and sink.refusals == [], (
        f"a transaction was made without TLS: {sink.messages} {sink.refusals}")


# --------------------------------------------------------------------------- smarthosts


@pytest.mark.parametrize("grammar", ["modern", "legacy"])
def test_smarthost_gets_everything_without_any_mx_lookup(relay_net, grammar):
    sink = relay_net.sink("127.0.0.2", 2526)
    relay = ("relay host smtp://127.0.0.2:2526" if grammar == "modern"
             else "relay via smtp://127.0.0.2:2526")
    w = start(relay_net, relay=relay, grammar=grammar)
    qid, msg = w.send(["x@remote.test", "y@other.test"], marker(f"smarthost-{grammar}"))
    (m,) = sink.wait_messages(1)
    assert_relayed_intact(m, msg, rcpts=("x@remote.test", "y@other.test"))
    wait_queue_empty(w.server.spool, server=w.server)
    assert not [q for q in w.dns.queries if q[1] == "MX"], (
        f"MX lookups despite the smarthost: {w.dns.queries}")


def test_smarthost_with_starttls_and_auth_logs_in_with_the_secrets_table(relay_net, pki):
    sink = relay_net.sink("127.0.0.2", 587, tls_context=server_tls_context(pki),
                          auth={"relayuser": "s3cret-pw"})
    secrets = relay_net.root / "etc" / "secrets"
    secrets.parent.mkdir(parents=True, exist_ok=True)
    secrets.write_text("# relay secrets\nsmarthost relayuser:s3cret-pw\n", encoding="utf-8")
    secrets.chmod(0o600)
    w = start(relay_net, extra=(f"table secrets file:{secrets}",),
              relay="relay host smtp+tls://smarthost@127.0.0.2:587 auth <secrets> tls no-verify")
    qid, msg = w.send(RCPT, marker("smarthost-auth"))
    (m,) = sink.wait_messages(1)
    assert m.tls, "smtp+tls:// relayed without STARTTLS"
    assert m.auth == "relayuser", f"not authenticated as relayuser: {m.auth!r}"
    assert_relayed_intact(m, msg)
    assert "s3cret-pw" not in w.server.log, "the relay password appears in the log"


def test_smarthost_over_implicit_tls(relay_net, pki):
    sink = relay_net.sink("127.0.0.2", 465, tls_context=server_tls_context(pki),
                          implicit_tls=True)
    w = start(relay_net, relay="relay host smtps://127.0.0.2:465 tls no-verify")
    qid, msg = w.send(RCPT, marker("smtps"))
    (m,) = sink.wait_messages(1)
    assert m.tls
    assert_relayed_intact(m, msg)
