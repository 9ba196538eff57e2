"""Submission on the article's v3 configuration (SPEC §5.5, §4.3, §6.1).

The article's last smtpd.conf, unchanged but for paths:

    table in_auth db:/etc/smtpdauth.db
    listen on lo
    listen on eth0 tls certificate shoggoth.tc2.fr
    listen on eth0 port 587 tls-require certificate shoggoth.tc2.fr auth <in_auth>
    accept from any for domain tc2.fr virtual <aliases> userbase <vusers> deliver to maildir "~/"
    accept for local virtual <aliases> deliver to mbox
    accept for any relay

with aliases.v3, vusers.v3 (m's Maildir moved under the test's root) and smtpdauth.v3-fixed
(`mayeu  mayeu:$6$thesupersalt$...`, the article's hash of `mysupersecretpassword`), all made
with `ownmail makemap`. The server runs in a namespace with lo and eth0 (192.0.2.10); the
clients come from a second namespace (192.0.2.11), through eth0's veth peer: another host.

The login `mayeu` owns the addresses that the tables deliver to the virtual user m
(`mayeu@tc2.fr` -> m): m@tc2.fr, mayeu@tc2.fr, m+tag@tc2.fr. The config has no `resolver`
line, so mail relayed for an authenticated user stays in the queue (no DNS in the namespace);
`ownmail queue list` shows it with its relay destination.
"""

import re
import time
import uuid

import pytest

from conftest import (
    OUTSIDE_ADDR,
    SERVER_ETH0_ADDR,
    SUBMIT_LOGIN,
    SUBMIT_PASSWORD,
    auth_login,
    auth_plain,
    auth_plain_prompted,
    b64,
    check_maildir_file,
    delivered,
    make_message,
    maildir_files,
    queue_files,
    sasl_plain,
    send_data,
    submission_world,
    wait_delivered,
)


@pytest.fixture(scope="module")
def world(ownmail, pki):
    with submission_world(ownmail, pki, fresh_addrs=24) as w:
        yield w


def marker(what):
    return f"submit-{what}-{uuid.uuid4().hex[:12]}"


def queued_id(reply):
    m = re.search(r"queued as ([0-9A-Za-z]+)", reply.text)
    assert m, f"no `queued as QID` in {reply}"
    return m.group(1)


def assert_5_7(r, what):
    assert 500 <= r.code < 600 and r.enhanced and r.enhanced.startswith("5.7."), (
        f"{what}: expected a 5xx reply with an enhanced code 5.7.x, got {r}")


class NothingAccepted:
    """Snapshot of the spool's queue and m's Maildir; check() asserts nothing new since."""

    def __init__(self, world):
        self.world = world
        self.log_mark = world.server.mark()
        self.queue = set(queue_files(world.spool))
        self.files = set(maildir_files(world.maildir))

    def check(self, mark):
        time.sleep(1.0)  # a wrongly accepted message would be delivered by now
        w = self.world
        new_q = set(queue_files(w.spool)) - self.queue
        assert not new_q, f"queued although refused: {sorted(new_q)}"
        new = set(maildir_files(w.maildir)) - self.files
        assert not new, f"delivered although refused: {sorted(new)}"
        assert not w.server.events("smtp", start=self.log_mark, event="accepted"), (
            f"an `event=accepted` line although refused:\n{w.server.log_tail()}")
        assert not delivered(w.maildir, mark), f"{mark} was delivered"
        assert w.server.alive()


# --------------------------------------------------------------------------- before TLS


def test_ehlo_on_587_before_tls_offers_starttls_but_not_auth(world):
    with world.client(587) as c:
        kw = c.ehlo().keywords
        assert "STARTTLS" in kw, f"no STARTTLS on the tls-require listener: {kw}"
        assert "AUTH" not in kw, f"AUTH offered before TLS: {kw}"
        c.cmd("QUIT", 221)


@pytest.mark.parametrize("command", [
    f"AUTH PLAIN {sasl_plain(SUBMIT_LOGIN, SUBMIT_PASSWORD)}",
    "AUTH PLAIN",
    "AUTH LOGIN",
])
def test_auth_before_starttls_on_587_is_refused_with_5_7_x(world, command):
    with world.client(587, source=world.fresh_addr()) as c:
        c.ehlo()
        r = c.cmd(command)
        assert r.code != 334, f"{command.split()[0:2]} before TLS gets a SASL prompt: {r}"
        assert_5_7(r, "AUTH before STARTTLS")
        # nothing was authenticated: mail is still refused, and STARTTLS still works
        r = c.cmd("MAIL FROM:<m@tc2.fr>")
        assert r.code == 530 and r.enhanced == "5.7.0", f"MAIL after refused AUTH: {r}"
        c.cmd("STARTTLS", 220)
        c.starttls()
        c.ehlo()
        c.cmd("QUIT", 221)


def test_mail_before_starttls_on_587_is_refused_530_5_7_0(world):
    with world.client(587) as c:
        c.ehlo()
        c.cmd("MAIL FROM:<m@tc2.fr>", 530, "5.7.0")
        r = c.cmd("RCPT TO:<m@tc2.fr>")
        assert 500 <= r.code < 600, f"RCPT without an accepted MAIL: {r}"
        c.cmd("QUIT", 221)


def test_mail_after_starttls_without_auth_on_587_is_refused_530_5_7_0(world):
    with world.tls_client(587) as c:
        c.cmd("MAIL FROM:<m@tc2.fr>", 530, "5.7.0")
        c.cmd("QUIT", 221)


def test_port_25_listener_without_auth_never_offers_auth(world):
    with world.client(25, source=world.fresh_addr()) as c:
        assert "AUTH" not in c.ehlo().keywords
        r = c.cmd(f"AUTH PLAIN {sasl_plain(SUBMIT_LOGIN, SUBMIT_PASSWORD)}")
        assert 500 <= r.code < 600, f"AUTH on a listener without `auth`: {r}"
        c.cmd("STARTTLS", 220)
        c.starttls()
        kw = c.ehlo().keywords
        assert "AUTH" not in kw, f"AUTH offered on `listen on eth0 tls` (no auth): {kw}"
        r = c.cmd(f"AUTH PLAIN {sasl_plain(SUBMIT_LOGIN, SUBMIT_PASSWORD)}")
        assert 500 <= r.code < 600, f"AUTH on a listener without `auth`, after TLS: {r}"
        c.cmd("QUIT", 221)


# --------------------------------------------------------------------------- AUTH after TLS


def test_ehlo_after_starttls_on_587_offers_auth_plain_and_login(world):
    with world.tls_client(587) as c:
        kw = c.ehlo_reply.keywords
        assert "AUTH" in kw, f"no AUTH after STARTTLS on the submission listener: {kw}"
        mechs = kw["AUTH"].upper().split()
        assert "PLAIN" in mechs and "LOGIN" in mechs, f"AUTH mechanisms: {mechs}"
        assert "STARTTLS" not in kw
        c.cmd("QUIT", 221)


def test_starttls_then_auth_plain_with_initial_response_succeeds_235(world):
    with world.tls_client(587) as c:
        r = auth_plain(c, SUBMIT_LOGIN, SUBMIT_PASSWORD)
        assert r.code == 235 and r.enhanced == "2.7.0", f"AUTH PLAIN: {r}\n{c.dialogue()}"
        c.cmd("MAIL FROM:<m@tc2.fr>", 250)
        c.cmd("RSET", 250)
        c.cmd("QUIT", 221)


def test_starttls_then_auth_plain_after_334_prompt_succeeds_235(world):
    with world.tls_client(587) as c:
        r = auth_plain_prompted(c, SUBMIT_LOGIN, SUBMIT_PASSWORD)
        assert r.code == 235 and r.enhanced == "2.7.0", f"AUTH PLAIN (prompted): {r}"
        c.cmd("QUIT", 221)


def test_starttls_then_auth_login_succeeds_235(world):
    with world.tls_client(587) as c:
        r = auth_login(c, SUBMIT_LOGIN, SUBMIT_PASSWORD)
        assert r.code == 235 and r.enhanced == "2.7.0", f"AUTH LOGIN: {r}\n{c.dialogue()}"
        c.cmd("MAIL FROM:<mayeu@tc2.fr>", 250)
        c.cmd("QUIT", 221)


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
@pytest.mark.parametrize("user,password", [
    (SUBMIT_LOGIN, "not-the-password"),
    (SUBMIT_LOGIN, SUBMIT_PASSWORD.upper()),
    ("nosuchuser", SUBMIT_PASSWORD),
    ("m", SUBMIT_PASSWORD),                 # a mailbox, not a login of in_auth
], ids=["bad-password", "password-case", "unknown-user", "mailbox-name"])
def test_bad_user_or_password_gets_535_5_7_8_and_mail_stays_refused(world, mech, user,
                                                                    password):
    # a fresh client address each: failed logins must not slow down the other tests
    with world.tls_client(587, source=world.fresh_addr()) as c:
        r = (auth_plain if mech == "PLAIN" else auth_login)(c, user, password)
        assert r.code == 535 and r.enhanced == "5.7.8", f"AUTH {mech} {user}: {r}"
        c.cmd("MAIL FROM:<m@tc2.fr>", 530, "5.7.0")
        c.cmd("QUIT", 221)


# --------------------------------------------------------------------------- sending


def submit(world, sender, rcpts, msg, *, mech="PLAIN"):
    """Authenticated submission from outside; returns the reply to the end of DATA."""
    rcpts = [rcpts] if isinstance(rcpts, str) else rcpts
    with world.tls_client(587) as c:
        r = (auth_plain if mech == "PLAIN" else auth_login)(c, SUBMIT_LOGIN, SUBMIT_PASSWORD)
        assert r.code == 235, r
        c.cmd(f"MAIL FROM:<{sender}>", 250)
        for rcpt in rcpts:
            c.cmd(f"RCPT TO:<{rcpt}>", 250)
        r = send_data(c, msg)
        c.cmd("QUIT", 221)
    return r


def test_authenticated_mail_to_own_domain_is_delivered_to_maildir(world):
    mark = marker("local")
    msg = make_message(mark, sender="mayeu@tc2.fr", to="m@tc2.fr")
    r = submit(world, "mayeu@tc2.fr", "m@tc2.fr", msg)
    assert r.code == 250, f"end of DATA: {r}"
    files = wait_delivered(world.maildir, mark, server=world.server)
    data = check_maildir_file(files[0])
    assert data.startswith(b"Return-Path: <mayeu@tc2.fr>\n"), data[:200]


def test_authenticated_mail_from_m_to_foreign_domain_is_queued_for_relay(world):
    mark = marker("relay")
    rcpt = f"friend-{uuid.uuid4().hex[:8]}@elsewhere.test"
    msg = make_message(mark, sender="m@tc2.fr", to=rcpt)
    r = submit(world, "m@tc2.fr", rcpt, msg, mech="LOGIN")
    assert r.code == 250 and r.enhanced == "2.0.0", f"end of DATA: {r}"
    qid = queued_id(r)
    # no resolver in the article's namespace: the message waits in the queue for relay
    out = world.wait_queue_list(qid, rcpt)
    block = out.split(qid, 1)[1].split("\n\n", 1)[0]
    assert "<m@tc2.fr>" in block, f"sender not shown for {qid}:\n{out}"
    line = next(l for l in block.splitlines() if rcpt in l)
    assert "relay" in line, f"{rcpt} is not queued with a relay destination:\n{out}"
    assert not delivered(world.maildir, mark), "relayed mail was delivered locally"


def swaks(world, *args, source=OUTSIDE_ADDR):
    rc, out, err = world.outside(
        ["swaks", "--server", SERVER_ETH0_ADDR, "--port", "587", "--helo", "client.test",
         "--local-interface", source, "--tls", *args, "--timeout", "20"], timeout=60)
    assert "requires Net::SSLeay" not in out + err, (
        "swaks --tls needs the Debian package libnet-ssleay-perl (scripts/test should "
        f"install it):\n{out}\n{err}")
    return rc, out, err


def test_swaks_submits_with_starttls_and_auth_plain(world):
    """swaks as a person would run it against the article's submission port."""
    mark = marker("swaks")
    rc, out, err = swaks(
        world, "--auth", "PLAIN", "--auth-user", SUBMIT_LOGIN,
        "--auth-password", SUBMIT_PASSWORD, "--from", "m@tc2.fr", "--to", "mayeu@tc2.fr",
        "--header", "From: m@tc2.fr", "--header", f"Subject: {mark}",
        "--body", f"sent by swaks\nEND {mark}\n")
    assert rc == 0, f"swaks failed (status {rc}):\n{out}\n{err}"
    assert "235" in out, f"no 235 in swaks' transcript:\n{out}"
    files = wait_delivered(world.maildir, f"END {mark}", server=world.server)
    data = check_maildir_file(files[0])
    assert data.startswith(b"Return-Path: <m@tc2.fr>\n"), data[:200]


def test_swaks_submits_with_starttls_and_auth_login(world):
    mark = marker("swaks-login")
    rc, out, err = swaks(
        world, "--auth", "LOGIN", "--auth-user", SUBMIT_LOGIN,
        "--auth-password", SUBMIT_PASSWORD, "--from", "mayeu@tc2.fr", "--to", "m@tc2.fr",
        "--header", "From: mayeu@tc2.fr", "--header", f"Subject: {mark}",
        "--body", f"sent by swaks\nEND {mark}\n")
    assert rc == 0, f"swaks failed (status {rc}):\n{out}\n{err}"
    wait_delivered(world.maildir, f"END {mark}", server=world.server)


def test_swaks_with_a_wrong_password_fails(world):
    rc, out, err = swaks(
        world, "--auth", "PLAIN", "--auth-user", SUBMIT_LOGIN,
        "--auth-password", "wrong-password", "--from", "m@tc2.fr", "--to", "m@tc2.fr",
        source=world.fresh_addr())
    assert rc != 0, f"swaks succeeded with a wrong password:\n{out}"
    assert "535" in out + err, f"no 535 in swaks' transcript:\n{out}\n{err}"


# --------------------------------------------------------------------------- who may send


@pytest.mark.parametrize("sender", ["m@tc2.fr", "mayeu@tc2.fr", "m+tag@tc2.fr",
                                    "MaYeU@Tc2.Fr"])
def test_addresses_delivered_to_m_are_owned_by_login_mayeu(world, sender):
    with world.auth_client() as c:
        c.cmd(f"MAIL FROM:<{sender}>", 250)
        c.cmd("RCPT TO:<m@tc2.fr>", 250)
        c.cmd("RSET", 250)
        c.cmd("QUIT", 221)


@pytest.mark.parametrize("sender", ["someone-else@tc2.fr", "x@other.test", "mayeu@other.test",
                                    "postmaster@tc2.fr", "m@tc2.fr.evil.test"])
def test_forged_mail_from_is_refused_550_5_7_1(world, sender):
    with world.auth_client() as c:
        c.cmd(f"MAIL FROM:<{sender}>", 550, "5.7.1")
        # the session goes on: an owned address is accepted afterwards
        c.cmd("MAIL FROM:<m@tc2.fr>", 250)
        c.cmd("QUIT", 221)


def test_root_at_localhost_is_not_mayeus_in_v3_since_aliases_v3_send_root_to_6x9_fr(world):
    """aliases.v3 has `root: m+piroot@6x9.fr`: root@localhost is delivered to an address on
    a domain this host does not serve, not to the user m, so mayeu does not own it."""
    with world.auth_client() as c:
        c.cmd("MAIL FROM:<root@localhost>", 550, "5.7.1")
        c.cmd("QUIT", 221)


@pytest.mark.parametrize("header", [
    "From: <someone-else@tc2.fr>",
    "From: Mayeu <x@other.test>",
    "From: \"m@tc2.fr\" <boss@other.test>",
    "From: <m@tc2.fr>, <ceo@other.test>",
], ids=["other-local", "foreign", "display-name-trick", "two-authors"])
def test_forged_from_header_is_refused_550_5_7_1_at_end_of_data_nothing_queued(world, header):
    mark = marker("forged-from")
    msg = make_message(mark, sender="m@tc2.fr", to="m@tc2.fr")
    msg = msg.replace(b"From: <m@tc2.fr>\r\n", header.encode() + b"\r\n", 1)
    assert header.encode() in msg
    before = NothingAccepted(world)
    with world.auth_client() as c:
        c.cmd("MAIL FROM:<m@tc2.fr>", 250)
        c.cmd("RCPT TO:<m@tc2.fr>", 250)
        r = send_data(c, msg)
        assert r.code == 550 and r.enhanced == "5.7.1", f"forged {header!r}: {r}"
        c.cmd("QUIT", 221)
    before.check(mark)


def test_owned_from_header_with_display_name_is_accepted(world):
    mark = marker("display")
    msg = make_message(mark, sender="m@tc2.fr", to="m@tc2.fr")
    msg = msg.replace(b"From: <m@tc2.fr>\r\n", b"From: \"M. Mayeu\" <Mayeu@tc2.fr>\r\n", 1)
    r = submit(world, "m@tc2.fr", "m@tc2.fr", msg)
    assert r.code == 250, f"end of DATA: {r}"
    wait_delivered(world.maildir, mark, server=world.server)


def test_sessions_are_logged_with_the_login_but_not_the_password(world):
    mark = world.server.mark()
    with world.auth_client() as c:
        c.cmd("QUIT", 221)
    line = world.server.wait_for(r"\bmayeu\b", start=mark)
    assert SUBMIT_PASSWORD not in world.server.log
    assert b64(SUBMIT_PASSWORD) not in world.server.log
    assert sasl_plain(SUBMIT_LOGIN, SUBMIT_PASSWORD) not in world.server.log
    assert world.server.events("smtp", start=mark, event="connect", client=OUTSIDE_ADDR), line
