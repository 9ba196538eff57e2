"""Relay to remote MXs that misbehave (SPEC §5.4): a dropped connection in the middle of
DATA, garbage instead of an SMTP reply, a server that never says anything.

Whatever the remote does, the message stays queued (`queue list` shows it), nothing is
delivered twice, and ownmail goes on serving: it accepts new mail, delivers locally and
relays to other, healthy MXs. When a healthy server takes over the bad one's address,
`queue flush` delivers the message exactly once.

Same world as test_relay_mx.py (one network namespace, test DNS, ownmail on 127.0.0.1:2525,
m@example.org local). remote.test's MX is 127.0.0.2:25 (the bad server), other.test's is a
healthy sink on 127.0.0.3:25. The silent server's test is bounded: ownmail's relay command
timeouts are minutes long, so it only checks a few seconds of behaviour and then stops.
"""

import time
import uuid

import pytest

from conftest import (
    make_message,
    maildir_files,
    smtp_send,
    wait_delivered,
    wait_queue_empty,
    write_relay_conf,
)

SENDER = "m@example.org"
RCPT = "x@remote.test"


def marker(what):
    return f"bad-{what}-{uuid.uuid4().hex[:12]}"


class World:
    def __init__(self, net, behaviour):
        self.net, self.dns = net, net.dns
        self.bad = net.bad_server("127.0.0.2", behaviour)
        self.dns.mx("remote.test", (10, "mx.remote.test"))
        self.dns.a("mx.remote.test", "127.0.0.2")
        self.healthy = net.sink("127.0.0.3")
        self.dns.mx("other.test", (10, "mx.other.test"))
        self.dns.a("mx.other.test", "127.0.0.3")
        self.setup = write_relay_conf(net.root, resolver=net.dns)
        self.server = net.start_ownmail(self.setup.conf)
        self.spool = self.server.spool

    def send(self, rcpt, mark, sender=SENDER):
        msg = make_message(mark, sender=sender, to=rcpt)
        with self.net.smtp() as s:
            return smtp_send(s, sender, rcpt, msg), msg

    def still_serving(self):
        """New mail is accepted, delivered locally and relayed to a healthy MX."""
        mark = marker("local")
        self.send("m@example.org", mark, sender="alice@client.test")
        wait_delivered(self.setup.maildir, mark, server=self.server)
        mark = marker("healthy")
        n = len(self.healthy.messages)
        self.send("y@other.test", mark)
        self.healthy.wait_messages(n + 1)
        assert self.healthy.messages_with(mark), "the healthy MX did not get its mail"
        assert self.server.alive(), "ownmail exited"

    def dsn_files(self):
        return [f for f in maildir_files(self.setup.maildir)
                if b"multipart/report" in f.read_bytes()]


@pytest.mark.parametrize("behaviour", ["drop-in-data", "garbage-ehlo", "garbage-greeting"])
def test_bad_mx_leaves_the_message_queued_and_a_good_one_gets_it_exactly_once(
        relay_net, behaviour):
    w = World(relay_net, behaviour)
    mark = marker(behaviour)
    qid, msg = w.send(RCPT, mark)
    w.bad.wait_connections(1)
    if behaviour == "drop-in-data":
        for _ in range(100):
            if w.bad.data_started:
                break
            time.sleep(0.1)
        assert w.bad.data_started >= 1, "ownmail never reached DATA with the dropping server"
    relay_net.wait_queue_list(w.spool, qid, RCPT)
    w.still_serving()
    time.sleep(1)
    relay_net.wait_queue_list(w.spool, qid, RCPT)     # still queued
    assert w.dsn_files() == [], "a DSN for a temporary failure"

    # a healthy server takes the bad one's address
    w.bad.stop()
    good = relay_net.sink("127.0.0.2")
    relay_net.queue_ok(w.spool, "flush")
    (m,) = good.wait_messages(1)
    assert m.data.endswith(msg) and m.rcpt_tos == [RCPT]
    wait_queue_empty(w.spool, server=w.server)
    relay_net.queue_ok(w.spool, "flush")
    time.sleep(2)
    assert len(good.messages_with(mark)) == 1, "delivered more than once"
    assert not w.healthy.messages_with(mark), "sent to another domain's MX"
    assert w.dsn_files() == []


def test_silent_mx_leaves_the_message_queued_and_does_not_block_the_server(relay_net):
    w = World(relay_net, "silent")
    mark = marker("silent")
    qid, msg = w.send(RCPT, mark)
    w.bad.wait_connections(1)
    time.sleep(3)
    out = relay_net.wait_queue_list(w.spool, qid, RCPT)
    assert w.bad.received[0] == b"", f"ownmail talked first to a silent server: {out}"
    w.still_serving()
    assert w.dsn_files() == []

    # SIGTERM ends serve promptly even with a relay connection hanging, and loses nothing
    t0 = time.monotonic()
    rc = w.server.terminate(timeout=15)
    took = time.monotonic() - t0
    assert rc == 0, f"ownmail exited with {rc} (None: had to be SIGKILLed) after SIGTERM"
    assert took < 10, f"SIGTERM took {took:.1f}s with a silent remote"
    out = relay_net.queue_ok(w.spool, "list")
    assert qid in out and RCPT in out, f"the message is gone after a stop:\n{out}"
