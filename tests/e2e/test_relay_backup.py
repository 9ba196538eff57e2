"""Backup MX (SPEC §5.4; the article's `accept from any for domain exemple.org relay backup
mx2.example.org`): a second ownmail that accepts mail for a domain while its primary is
down and hands it over when the primary is back.

One network namespace; the test DNS says

    example.test      MX 10 mx1.example.test    A 127.0.0.2   the primary (ownmail, Maildir)
                      MX 20 mx2.example.test    A 127.0.0.3   the backup (ownmail, this test)
                      MX 30 mx3.example.test    A 127.0.0.4   a sink: a worse MX than the backup

The backup listens on 127.0.0.3:25 and relays `backup mx mx2.example.test`: only to MXs of
strictly better preference than its own (20), i.e. to the primary alone.
"""

import re
import time
import uuid

import pytest

from conftest import (
    delivered,
    make_message,
    wait_delivered,
    wait_queue_empty,
    write_vmail_conf,
)

SENDER = "alice@client.test"
RCPT = "m@example.test"


def marker(what):
    return f"backup-{what}-{uuid.uuid4().hex[:12]}"


def backup_conf(root, dns, grammar):
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    if grammar == "modern":
        rules = ['action "backup" relay backup mx mx2.example.test',
                 'match from any for domain "example.test" action "backup"']
    else:   # the article's line, with the test's names
        rules = ["# Backup for example.test mail",
                 "accept from any for domain example.test relay backup mx2.example.test"]
    conf = root / "smtpd.conf"
    conf.write_text("\n".join([f"# ownmail e2e: backup MX ({grammar} grammar)",
                               dns.resolver_line, "listen on 127.0.0.3 port 25", *rules]) + "\n",
                    encoding="utf-8")
    return conf


class Mx:
    def __init__(self, net, grammar):
        self.net, self.dns = net, net.dns
        self.dns.mx("example.test", (10, "mx1.example.test"), (20, "mx2.example.test"),
                    (30, "mx3.example.test"))
        self.dns.a("mx1.example.test", "127.0.0.2")
        self.dns.a("mx2.example.test", "127.0.0.3")
        self.dns.a("mx3.example.test", "127.0.0.4")
        self.worse = net.sink("127.0.0.4")
        self.primary_setup = write_vmail_conf(
            net.root / "primary", listens=("listen on 127.0.0.2 port 25",),
            domains=("example.test",), extra=(self.dns.resolver_line,))
        self.maildir = self.primary_setup.maildir
        self.primary = None
        self.backup = net.start_ownmail(backup_conf(net.root / "backup", self.dns, grammar))

    def start_primary(self):
        self.primary = self.net.start_ownmail(self.primary_setup.conf)
        return self.primary

    def send_to_backup(self, mark, rcpt=RCPT):
        """One message from an outside-looking client (source 127.0.0.9) to the backup."""
        msg = make_message(mark, sender=SENDER, to=rcpt)
        with self.net.client("127.0.0.3", 25, source="127.0.0.9") as c:
            c.ehlo("client.test")
            c.cmd(f"MAIL FROM:<{SENDER}>", 250)
            c.cmd(f"RCPT TO:<{rcpt}>", 250)
            c.cmd("DATA", 354)
            c.send(msg.replace(b"\r\n.", b"\r\n..") + b".\r\n")
            r = c.expect(250)
            c.cmd("QUIT", 221)
        m = re.search(r"queued as ([0-9A-Za-z]+)", r.text)
        assert m, f"no `queued as QID` in {r.text!r}"
        return m.group(1)


@pytest.mark.parametrize("grammar", ["modern", "legacy"])
def test_backup_mx_keeps_mail_while_the_primary_is_down_and_hands_it_over_on_flush(
        relay_net, grammar):
    mx = Mx(relay_net, grammar)
    mark = marker(grammar)
    qid = mx.send_to_backup(mark)
    # it tried the primary (connection refused), not the worse MX, and kept the mail
    mx.backup.wait_delivery(qid, "tempfail", timeout=30)
    relay_net.wait_queue_list(mx.backup.spool, qid, RCPT)
    time.sleep(2)
    assert mx.worse.connections == 0, "the backup relayed to an MX worse than itself"
    relay_net.wait_queue_list(mx.backup.spool, qid)   # still there

    mx.start_primary()
    relay_net.queue_ok(mx.backup.spool, "flush")
    files = wait_delivered(mx.maildir, mark, timeout=30, server=mx.backup)
    wait_queue_empty(mx.backup.spool, server=mx.backup)
    time.sleep(1)
    files = delivered(mx.maildir, mark)
    assert len(files) == 1, f"{mark} is in the primary's Maildir {len(files)} times"
    assert mx.worse.connections == 0, "the backup relayed to an MX worse than itself"
    relay_net.wait_queue_list(mx.backup.spool, absent=(qid,))
    data = files[0].read_bytes()
    assert data.startswith(f"Return-Path: <{SENDER}>".encode()), data[:200]
    assert data.count(b"\nReceived: ") + data.startswith(b"Received: ") >= 2, (
        "the message does not carry the backup's and the primary's Received: headers")


def test_backup_mx_hands_over_at_once_when_the_primary_is_up(relay_net):
    mx = Mx(relay_net, "modern")
    mx.start_primary()
    mark = marker("up")
    mx.send_to_backup(mark)
    wait_delivered(mx.maildir, mark, timeout=30, server=mx.backup)
    wait_queue_empty(mx.backup.spool, server=mx.backup)
    time.sleep(1)
    assert len(delivered(mx.maildir, mark)) == 1
    assert mx.worse.connections == 0


def test_backup_mx_refuses_domains_it_does_not_back_up(relay_net):
    mx = Mx(relay_net, "modern")
    with relay_net.client("127.0.0.3", 25, source="127.0.0.9") as c:
        c.ehlo("client.test")
        c.cmd(f"MAIL FROM:<{SENDER}>", 250)
        c.cmd("RCPT TO:<x@other.test>", 550)
        c.cmd("RCPT TO:<postmaster@example.org>", 550)
        c.cmd(f"RCPT TO:<{RCPT}>", 250)
        c.cmd("RSET", 250)
        c.cmd("QUIT", 221)
    time.sleep(0.5)
    assert mx.worse.connections == 0
