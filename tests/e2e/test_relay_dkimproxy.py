"""The article's dkimproxy loop (SPEC §5.4 "Tags"), legacy grammar as the article writes it:

    listen on 127.0.0.1 port 2587 tag TO_DKIM          # the submission listener's stand-in
    listen on 127.0.0.1 port 10029 tag FROM_DKIM       # where the filter hands mail back
    accept tagged TO_DKIM for any relay via smtp://127.0.0.1:10027
    accept for any relay

The filter on 127.0.0.1:10027 stands in for dkimproxy: an aiosmtpd server that adds the
header `X-Filtered: yes` and re-injects the message, same envelope, to 127.0.0.1:10029 with
smtplib (it answers its client with the re-injection's reply, as a proxy does). The remote
MX for remote.test is a sink on 127.0.0.2:25 (test DNS). Everything in one network namespace.
"""

import time
import uuid

import pytest

from conftest import (
    make_message,
    ns_smtp,
    smtp_send,
    wait_queue_empty,
)

SUBMIT_PORT = 2587
FILTER_PORT = 10027
RETURN_PORT = 10029
SENDER = "alice@example.org"
RCPT = "x@remote.test"


def marker(what):
    return f"dkimproxy-{what}-{uuid.uuid4().hex[:12]}"


class Loop:
    def __init__(self, net):
        self.net = net
        self.reinjected = []

        def reinject(m):
            data = b"X-Filtered: yes\r\n" + m.data
            try:
                with ns_smtp("127.0.0.1", RETURN_PORT, ns=net.ns) as s:
                    refused = s.sendmail(m.mail_from, m.rcpt_tos, data)
            except Exception as e:    # the filter's client sees a 4xx, as with dkimproxy
                return f"451 4.3.0 re-injection failed: {e}"
            self.reinjected.append((m, refused))
            return "250 2.0.0 re-injected"

        self.filter = net.sink("127.0.0.1", FILTER_PORT, on_message=reinject,
                               hostname="dkimproxy.test")
        self.remote = net.sink("127.0.0.2")
        net.dns.mx("remote.test", (10, "mx.remote.test"))
        net.dns.a("mx.remote.test", "127.0.0.2")
        conf = net.root / "smtpd.conf"
        conf.write_text(f"""\
# ownmail e2e: the article's dkimproxy loop (legacy grammar)
{net.dns.resolver_line}
listen on 127.0.0.1 port {SUBMIT_PORT} tag TO_DKIM
listen on 127.0.0.1 port {RETURN_PORT} tag FROM_DKIM

# Send to dkim
accept tagged TO_DKIM for any relay via smtp://127.0.0.1:{FILTER_PORT}

# Relay every other mail
accept for any relay
""", encoding="utf-8")
        self.server = net.start_ownmail(conf)

    def send(self, port, mark):
        msg = make_message(mark, sender=SENDER, to=RCPT)
        with self.net.smtp("127.0.0.1", port) as s:
            smtp_send(s, SENDER, RCPT, msg)
        return msg


@pytest.fixture
def loop(relay_net):
    return Loop(relay_net)


def test_tagged_submission_goes_through_the_filter_once_and_out_to_the_mx(loop):
    mark = marker("once")
    msg = loop.send(SUBMIT_PORT, mark)
    (out,) = loop.remote.wait_messages(1, timeout=30)
    wait_queue_empty(loop.server.spool, server=loop.server)
    time.sleep(2)   # a loop would show as more copies by now
    assert len(loop.filter.messages) == 1, (
        f"the filter got {len(loop.filter.messages)} copies (a tag loop?)")
    assert len(loop.remote.messages) == 1, f"the MX got {len(loop.remote.messages)} copies"
    seen = loop.filter.messages[0]
    assert b"X-Filtered" not in seen.data, "the filter got an already filtered message"
    assert seen.mail_from == SENDER and seen.rcpt_tos == [RCPT]
    assert out.mail_from == SENDER and out.rcpt_tos == [RCPT]
    assert out.message().get_all("X-Filtered") == ["yes"], (
        f"the MX copy lacks the filter's header:\n{out.data[:2000]!r}")
    assert out.data.endswith(msg), "the message body changed on the way"
    assert loop.reinjected and loop.reinjected[0][1] == {}


def test_mail_handed_back_on_the_from_dkim_port_is_not_sent_to_the_filter_again(loop):
    mark = marker("direct")
    msg = loop.send(RETURN_PORT, mark)
    (out,) = loop.remote.wait_messages(1, timeout=30)
    wait_queue_empty(loop.server.spool, server=loop.server)
    time.sleep(1)
    assert loop.filter.connections == 0, "untagged mail went to the filter"
    assert len(loop.remote.messages) == 1
    assert out.message().get_all("X-Filtered") is None
    assert out.data.endswith(msg)
