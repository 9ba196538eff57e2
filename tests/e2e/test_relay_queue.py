"""`ownmail queue --spool DIR list | show ID | flush [ID] | remove ID | pause | resume` and
`mailq` (SPEC §3), on messages that a remote MX keeps deferring (4xx).

Same world as test_relay_mx.py: one network namespace per test, a test DNS server, sinks on
127.0.0.x:25, ownmail on 127.0.0.1:2525 relaying for local clients and delivering
m@example.org to a Maildir (where any DSN would land). The control socket is SPOOL/control.sock;
`list` and `show` read the spool when the daemon is stopped.
"""

import os
import time
import uuid

import pytest

from conftest import (
    make_message,
    maildir_files,
    smtp_send,
    wait_queue_empty,
    write_relay_conf,
)

SENDER = "m@example.org"


def marker(what):
    return f"queue-{what}-{uuid.uuid4().hex[:12]}"


class World:
    def __init__(self, net):
        self.net, self.dns = net, net.dns
        self.setup = write_relay_conf(net.root, resolver=net.dns)
        self.server = net.start_ownmail(self.setup.conf)
        self.spool = self.server.spool

    def remote(self, domain, addr, mode="tempfail"):
        sink = self.net.sink(addr)
        sink.set(mode)
        self.dns.mx(domain, (10, f"mx.{domain}"))
        self.dns.a(f"mx.{domain}", addr)
        return sink

    def send(self, rcpt, mark, **kw):
        with self.net.smtp() as s:
            return smtp_send(s, SENDER, rcpt, make_message(mark, sender=SENDER, to=rcpt), **kw)

    def deferred(self, rcpt, sink, mark):
        """Sends one message that the sink refuses with 4xx; waits until `queue list` shows
        it with the sink's error; returns its queue id."""
        n = len(sink.refusals)
        qid = self.send(rcpt, mark)
        sink.wait_refusals(n + 1)
        self.net.wait_queue_list(self.spool, qid, rcpt)
        return qid

    def no_mail_for_sender(self):
        files = maildir_files(self.setup.maildir)
        assert files == [], f"unexpected mail (a DSN?) for {SENDER}: {files}"


@pytest.fixture
def world(relay_net):
    return World(relay_net)


def test_queue_list_on_an_empty_queue_exits_0(world, relay_net):
    rc, out, err = relay_net.queue(world.spool, "list")
    assert rc == 0, f"exit {rc}: {err}"


def test_queue_list_shows_id_sender_recipient_and_last_error(world, relay_net):
    sink = world.remote("remote.test", "127.0.0.2")
    qid = world.deferred("x@remote.test", sink, marker("list"))
    out = relay_net.wait_queue_list(world.spool, qid, sink.token)
    assert SENDER in out and "x@remote.test" in out, out
    assert "451" in out, f"the last error lacks the remote's reply code:\n{out}"


def test_mailq_is_queue_list(world, relay_net, tmp_path):
    sink = world.remote("remote.test", "127.0.0.2")
    qid = world.deferred("x@remote.test", sink, marker("mailq"))
    mailq = tmp_path / "mailq"
    os.symlink(relay_net.ownmail, mailq)
    rc, out, err = relay_net.ns([mailq, "--spool", world.spool])
    assert rc == 0, f"mailq exited {rc}:\n{out}\n{err}"
    assert qid in out and "x@remote.test" in out, f"mailq does not list {qid}:\n{out}"


def test_queue_show_prints_one_message(world, relay_net):
    sink = world.remote("remote.test", "127.0.0.2")
    other = world.remote("other.test", "127.0.0.3")
    qid = world.deferred("x@remote.test", sink, marker("show"))
    qid2 = world.deferred("y@other.test", other, marker("show2"))
    out = relay_net.queue_ok(world.spool, "show", qid)
    assert qid in out and SENDER in out and "x@remote.test" in out, out
    assert sink.token in out, f"`queue show` lacks the last error:\n{out}"
    assert qid2 not in out and "y@other.test" not in out, f"show {qid} shows {qid2} too:\n{out}"
    rc, out, err = relay_net.queue(world.spool, "show", "NOSUCHID0000")
    assert rc != 0, f"`queue show` of an unknown id exits 0:\n{out}"
    assert err.strip(), "no error message for an unknown id"


def test_queue_list_and_show_read_the_spool_with_the_daemon_stopped(world, relay_net):
    sink = world.remote("remote.test", "127.0.0.2")
    qid = world.deferred("x@remote.test", sink, marker("stopped"))
    relay_net.stop_ownmail(world.server)
    out = relay_net.queue_ok(world.spool, "list")
    assert qid in out and "x@remote.test" in out and SENDER in out, out
    out = relay_net.queue_ok(world.spool, "show", qid)
    assert qid in out and "x@remote.test" in out, out


def test_queue_flush_without_a_running_daemon_fails_clearly(world, relay_net):
    relay_net.stop_ownmail(world.server)
    rc, out, err = relay_net.queue(world.spool, "flush")
    assert rc != 0, f"`queue flush` with no daemon exits 0:\n{out}\n{err}"
    assert err.strip(), "no message saying the daemon is not running"


def test_queue_flush_id_retries_only_that_message(world, relay_net):
    a = world.remote("remote.test", "127.0.0.2")
    b = world.remote("other.test", "127.0.0.3")
    qa = world.deferred("x@remote.test", a, marker("flush-a"))
    qb = world.deferred("y@other.test", b, marker("flush-b"))
    a.set("accept")
    b.set("accept")
    nb = b.connections
    relay_net.queue_ok(world.spool, "flush", qa)
    a.wait_messages(1)
    relay_net.wait_queue_list(world.spool, qb, absent=(qa,))
    time.sleep(2)
    assert b.messages == [] and b.connections == nb, (
        f"`queue flush {qa}` retried {qb} too")
    relay_net.queue_ok(world.spool, "flush")
    b.wait_messages(1)
    wait_queue_empty(world.spool, server=world.server)
    assert len(a.messages) == 1 and len(b.messages) == 1
    world.no_mail_for_sender()


def test_queue_remove_drops_the_message_for_good_without_a_bounce(world, relay_net):
    sink = world.remote("remote.test", "127.0.0.2")
    mark = marker("remove")
    qid = world.deferred("x@remote.test", sink, mark)
    relay_net.queue_ok(world.spool, "remove", qid)
    relay_net.wait_queue_list(world.spool, absent=(qid,))
    wait_queue_empty(world.spool, server=world.server)
    sink.set("accept")
    relay_net.queue_ok(world.spool, "flush")
    time.sleep(2)
    assert sink.messages == [], "a removed message was delivered"
    world.no_mail_for_sender()
    rc, out, err = relay_net.queue(world.spool, "remove", qid)
    assert rc != 0, "removing an id that is no longer queued exits 0"


def test_queue_pause_holds_deliveries_until_resume(world, relay_net):
    sink = world.remote("remote.test", "127.0.0.2", mode="accept")
    relay_net.queue_ok(world.spool, "pause")
    mark = marker("pause")
    qid = world.send("x@remote.test", mark)         # still accepted while paused
    relay_net.wait_queue_list(world.spool, qid)
    time.sleep(3)
    assert sink.connections == 0, "a delivery was attempted while the queue was paused"
    relay_net.queue_ok(world.spool, "resume")
    (m,) = sink.wait_messages(1)
    assert mark.encode() in m.data
    wait_queue_empty(world.spool, server=world.server)
