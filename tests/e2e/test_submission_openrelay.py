"""ownmail is never an open relay (SPEC §5.5, §4.1), tried from another host.

The article's v3 configuration (see test_submission_article.py) with one ownmail line added
at the top, `resolver 127.0.0.1:PORT`: a test DNS server in the server's namespace that says
`foreign.test MX 10 mx.foreign.test`, `mx.foreign.test A 127.0.0.2`, where an SMTP sink
listens (port 25, in the server's namespace; not one of ownmail's listen addresses). Clients
come from a second namespace (192.0.2.11) through eth0's veth peer.

Its rule `accept for any relay` has no `from`: it matches local and authenticated sessions
only. An unauthenticated client from outside may deliver to the served domain tc2.fr and to
nothing else, whatever it writes in MAIL FROM or RCPT TO, with or without STARTTLS; with
STARTTLS and AUTH on the submission port, it may relay.
"""

import time
import uuid

import pytest

from conftest import (
    SUBMIT_LOGIN,
    SUBMIT_PASSWORD,
    auth_plain,
    make_message,
    send_data,
    submission_world,
    wait_delivered,
)

SINK_ADDR = "127.0.0.2"
FOREIGN = "foreign.test"


class World:
    def __init__(self, w):
        self.w = w
        self.server, self.dns = w.server, w.dns
        self.dns.mx(FOREIGN, (10, f"mx.{FOREIGN}"))
        self.dns.a(f"mx.{FOREIGN}", SINK_ADDR)
        self.sink = w.sink(SINK_ADDR)

    def assert_nothing_relayed(self, token, wait=1.0):
        """Nothing whose recipient contains `token` reached the sink or the queue."""
        time.sleep(wait)  # a wrongly accepted message would be relayed by now
        got = [m for m in list(self.sink.messages)
               if any(token in r for r in m.rcpt_tos) or token.encode() in m.data]
        assert not got, f"relayed to the sink: {got}"
        tried = [r for r in list(self.sink.refusals) if token in str(r)]
        assert not tried, f"ownmail tried to relay to the sink: {tried}"
        rc, out, err = self.w.queue("list")
        assert rc == 0, err
        assert token not in out, f"mail for {token} in the queue:\n{out}"
        assert self.server.alive()


@pytest.fixture(scope="module")
def world(ownmail, pki):
    with submission_world(ownmail, pki, dns=True) as w:
        yield World(w)


def marker(what):
    return f"openrelay-{what}-{uuid.uuid4().hex[:12]}"


# --------------------------------------------------------------------------- unauthenticated

# (MAIL FROM, RCPT TO with X for a unique local part, expected enhanced code prefix or
# None for any 5.x.x). The refusal of a RCPT to a foreign domain is 550 5.7.1; the tricks
# that name a local domain (`%`, quotes, `!`) may also be refused as unknown users (5.1.1).
RELAY_ATTEMPTS = {
    "plain": ("spammer@elsewhere.test", f"X@{FOREIGN}", "5.7.1"),
    "local-sender": ("m@tc2.fr", f"X@{FOREIGN}", "5.7.1"),
    "local-sender-subaddress": ("m+x@tc2.fr", f"X@{FOREIGN}", "5.7.1"),
    "null-sender": ("", f"X@{FOREIGN}", "5.7.1"),
    "upper-case-domain": ("spammer@elsewhere.test", f"X@{FOREIGN.upper()}", "5.7.1"),
    "source-route": ("spammer@elsewhere.test", f"@tc2.fr:X@{FOREIGN}", "5.7.1"),
    "percent-hack": ("spammer@elsewhere.test", f"X%{FOREIGN}@tc2.fr", None),
    "quoted-local-part": ("spammer@elsewhere.test", f'"X@{FOREIGN}"@tc2.fr', None),
    "bang-path": ("spammer@elsewhere.test", f"{FOREIGN}!X@tc2.fr", None),
    "address-literal": ("spammer@elsewhere.test", f"X@[{SINK_ADDR}]", None),
}


def attempt_of(name):
    """(sender, rcpt, enhanced, token): X in the recipient replaced by a unique token."""
    sender, rcpt, enhanced = RELAY_ATTEMPTS[name]
    token = f"relay{uuid.uuid4().hex[:10]}"
    return sender, rcpt.replace("X", token), enhanced, token


def try_relay(c, sender, rcpt, code, enhanced):
    c.cmd(f"MAIL FROM:<{sender}>", 250)
    r = c.cmd(f"RCPT TO:<{rcpt}>")
    assert r.code == code, f"RCPT TO:<{rcpt}> from outside, unauthenticated: {r}\n{c.dialogue()}"
    if enhanced is not None:
        assert r.enhanced and r.enhanced.startswith(enhanced), (
            f"RCPT TO:<{rcpt}>: expected {enhanced}, got {r}")
    c.cmd("RSET", 250)


@pytest.mark.parametrize("attempt", list(RELAY_ATTEMPTS))
def test_unauthenticated_relay_from_outside_is_refused_550_on_port_25(world, attempt):
    sender, rcpt, enhanced, token = attempt_of(attempt)
    with world.w.client(25) as c:
        c.ehlo("mx.elsewhere.test")
        try_relay(c, sender, rcpt, 550, enhanced)
        c.cmd("QUIT", 221)
    world.assert_nothing_relayed(token, wait=0.3)


@pytest.mark.parametrize("attempt", ["plain", "local-sender", "source-route", "percent-hack",
                                     "quoted-local-part"])
def test_unauthenticated_relay_after_starttls_is_refused_550(world, attempt):
    sender, rcpt, enhanced, token = attempt_of(attempt)
    with world.w.tls_client(25) as c:
        try_relay(c, sender, rcpt, 550, enhanced)
        c.cmd("QUIT", 221)
    world.assert_nothing_relayed(token, wait=0.3)


def test_unauthenticated_client_on_submission_port_cannot_send_at_all(world):
    token = f"sub{uuid.uuid4().hex[:10]}"
    with world.w.tls_client(587) as c:
        c.cmd("MAIL FROM:<m@tc2.fr>", 530, "5.7.0")
        r = c.cmd(f"RCPT TO:<{token}@{FOREIGN}>")
        assert 500 <= r.code < 600, f"RCPT after a refused MAIL: {r}"
        c.cmd("QUIT", 221)
    world.assert_nothing_relayed(token, wait=0.3)


def test_relay_attempt_among_good_recipients_is_refused_and_only_local_mail_delivered(world):
    mark = marker("mixed")
    token = f"mixed{uuid.uuid4().hex[:10]}"
    msg = make_message(mark, sender="spammer@elsewhere.test", to="m@tc2.fr")
    with world.w.client(25) as c:
        c.ehlo("mx.elsewhere.test")
        c.cmd("MAIL FROM:<spammer@elsewhere.test>", 250)
        c.cmd("RCPT TO:<m@tc2.fr>", 250)
        c.cmd(f"RCPT TO:<{token}@{FOREIGN}>", 550, "5.7.1")
        c.cmd(f"RCPT TO:<{token}%{FOREIGN}@tc2.fr>", 550)
        r = send_data(c, msg)
        assert r.code == 250, f"end of DATA: {r}"
        c.cmd("QUIT", 221)
    files = wait_delivered(world.w.maildir, mark, server=world.server)
    assert len(files) == 1, files
    world.assert_nothing_relayed(token)


def test_outside_client_still_delivers_to_the_served_domain(world):
    mark = marker("inbound")
    msg = make_message(mark, sender="friend@elsewhere.test", to="mayeu@tc2.fr")
    with world.w.client(25) as c:
        c.ehlo("mx.elsewhere.test")
        c.cmd("MAIL FROM:<friend@elsewhere.test>", 250)
        c.cmd("RCPT TO:<mayeu@tc2.fr>", 250)
        r = send_data(c, msg)
        assert r.code == 250, f"end of DATA: {r}"
        c.cmd("QUIT", 221)
    wait_delivered(world.w.maildir, mark, server=world.server)


# --------------------------------------------------------------------------- authenticated


def test_starttls_and_auth_relay_to_the_foreign_mx(world):
    mark = marker("auth-relay")
    rcpt = f"friend@{FOREIGN}"
    msg = make_message(mark, sender="m@tc2.fr", to=rcpt)
    n = len(world.sink.messages)
    with world.w.tls_client(587) as c:
        r = auth_plain(c, SUBMIT_LOGIN, SUBMIT_PASSWORD)
        assert r.code == 235, r
        c.cmd("MAIL FROM:<m@tc2.fr>", 250)
        c.cmd(f"RCPT TO:<{rcpt}>", 250)
        r = send_data(c, msg)
        assert r.code == 250 and r.enhanced == "2.0.0", f"end of DATA: {r}"
        c.cmd("QUIT", 221)
    got = world.sink.wait_messages(n + 1, timeout=30)
    mine = [m for m in got if mark.encode() in m.data]
    assert len(mine) == 1, f"the sink got {got}"
    m = mine[0]
    assert m.mail_from == "m@tc2.fr", m
    assert m.rcpt_tos == [rcpt], m
    assert m.data.endswith(msg), "the relayed message does not end with the message as sent"
    assert m.message().get_all("Received"), "no Received: header added"
    # delivered: the message leaves the queue
    for _ in range(50):
        rc, out, _ = world.w.queue("list")
        if rc == 0 and rcpt not in out:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"{rcpt} is still queued after the sink accepted it:\n{out}")


def test_authentication_does_not_leak_into_the_next_connection(world):
    """An authenticated session on 587, then a new unauthenticated one from the same
    address on 25: the second must not relay."""
    with world.w.auth_client() as c:
        c.cmd("MAIL FROM:<m@tc2.fr>", 250)
        c.cmd(f"RCPT TO:<y@{FOREIGN}>", 250)
        c.cmd("RSET", 250)
        c.cmd("QUIT", 221)
    token = f"leak{uuid.uuid4().hex[:10]}"
    with world.w.client(25) as c:
        c.ehlo("client.test")
        try_relay(c, "m@tc2.fr", f"{token}@{FOREIGN}", 550, "5.7.1")
        c.cmd("QUIT", 221)
    world.assert_nothing_relayed(token, wait=0.5)


def test_failed_auth_does_not_allow_relay(world):
    with world.w.tls_client(587) as c:
        r = auth_plain(c, SUBMIT_LOGIN, "guess")
        assert r.code == 535, r
        r = c.cmd("MAIL FROM:<m@tc2.fr>")
        assert r.code == 530, f"MAIL after a failed AUTH: {r}"
        c.cmd("QUIT", 221)
