"""ownmail relaying to Postfix as the remote MX (SPEC §5.4, against an established peer).

A private Postfix instance (config, queue and virtual Maildirs in the test's directory) runs
in the test's network namespace on 127.0.0.5:25 and accepts x@remote.test into a Maildir;
the test DNS gives remote.test MX 10 mx.remote.test, A 127.0.0.5. ownmail (127.0.0.1:2525,
m@example.org local) relays by MX. Postfix refuses unknown users in remote.test with 550,
which must come back to the sender as a DSN carrying Postfix's own words.
"""

import time
import uuid

import pytest

from conftest import (
    VMAIL_GID,
    VMAIL_UID,
    check_failure_dsn,
    check_maildir_file,
    make_message,
    maildir_files,
    smtp_send,
    wait_delivered,
    wait_maildir,
    wait_queue_empty,
    write_relay_conf,
)

SENDER = "m@example.org"
RCPT = "x@remote.test"


def marker(what):
    return f"postfix-{what}-{uuid.uuid4().hex[:12]}"


class World:
    def __init__(self, net):
        self.net = net
        self.postfix = net.postfix("127.0.0.5", "remote.test", ["x"])
        net.dns.mx("remote.test", (10, "mx.remote.test"))
        net.dns.a("mx.remote.test", "127.0.0.5")
        self.setup = write_relay_conf(net.root / "ownmail", resolver=net.dns)
        self.server = net.start_ownmail(self.setup.conf)

    def send(self, rcpts, mark):
        rcpts = [rcpts] if isinstance(rcpts, str) else rcpts
        msg = make_message(mark, sender=SENDER, to=rcpts[0])
        with self.net.smtp() as s:
            return smtp_send(s, SENDER, rcpts, msg), msg


@pytest.fixture
def world(relay_net):
    return World(relay_net)


def test_relay_to_postfix_mx_lands_in_its_maildir(world):
    mark = marker("deliver")
    qid, msg = world.send(RCPT, mark)
    (f,) = wait_delivered(world.postfix.maildir("x"), mark, timeout=30, server=world.server)
    wait_queue_empty(world.server.spool, server=world.server)
    data = f.read_bytes()     # Postfix's Maildir names carry no ,S=
    st = f.stat()
    assert (st.st_uid, st.st_gid) == (VMAIL_UID, VMAIL_GID), "Postfix's virtual_uid_maps"
    assert data.startswith(f"Return-Path: <{SENDER}>\n".encode()), (
        f"Postfix did not get the envelope sender:\n{data[:300]!r}")
    assert data.endswith(msg.replace(b"\r\n", b"\n")), (
        f"the message changed between ownmail and Postfix's Maildir:\n{data[-2000:]!r}")
    assert data.count(b"\nReceived: ") >= 2, "ownmail's and Postfix's Received: headers"
    time.sleep(1)
    assert len(maildir_files(world.postfix.maildir("x"))) == 1
    assert maildir_files(world.setup.maildir) == [], "a DSN for a delivered message"


def test_postfix_refusing_an_unknown_user_bounces_with_postfix_reply(world):
    mark = marker("unknown")
    qid, msg = world.send(["nobody@remote.test", RCPT], mark)
    wait_delivered(world.postfix.maildir("x"), mark, timeout=30, server=world.server)
    (f,) = wait_maildir(world.setup.maildir, 1, timeout=30)
    check_failure_dsn(check_maildir_file(f), rcpt="nobody@remote.test", subject=mark,
                      diagnostic="User unknown in virtual mailbox table",
                      other_rcpts=(RCPT,))
    wait_queue_empty(world.server.spool, server=world.server)
