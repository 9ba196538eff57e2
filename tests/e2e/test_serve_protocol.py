"""`ownmail serve` against bad and unusual SMTP input, over raw sockets (SPEC §5.1).

One server for the module, in its own network namespace: a modern-grammar config with
`smtp max-message-size 20K`, `smtp limit max-rcpt 3`, one Maildir user (m@example.org),
a plain listener on 127.0.0.1:25 and a `tls` listener on 127.0.0.1:2587. After every
refusal the tests check that nothing was queued and that the server still serves.
The SIGHUP tests start their own server.
"""

import os
import random
import re
import time
import uuid

import pytest

from conftest import (
    SmtpClosed,
    check_maildir_file,
    delivered,
    lf,
    make_message,
    make_netns,
    maildir_files,
    queue_files,
    start_ownmail,
    smtp_send,
    stop_ownmail,
    wait_delivered,
    wait_queue_empty,
    world_tmpdir,
    write_vmail_conf,
)

TLS_PORT = 2587
SENDER = "alice@client.test"


class Proto:
    def __init__(self, server, setup):
        self.server, self.setup = server, setup
        self.maildir = setup.maildir


@pytest.fixture(scope="module")
def proto(ownmail, pki):
    with world_tmpdir() as root, make_netns(eth0=False) as ns:
        setup = write_vmail_conf(
            root,
            listens=("listen on 127.0.0.1 port 25",
                     f"listen on 127.0.0.1 port {TLS_PORT} tls pki example.org"),
            extra=(f'pki example.org cert "{pki}/example.org.crt"',
                   f'pki example.org key "{pki}/example.org.key"',
                   "smtp max-message-size 20K",
                   "smtp limit max-rcpt 3"))
        server = start_ownmail(ownmail, setup.conf, spool=root / "spool", ns=ns)
        try:
            yield Proto(server, setup)
        finally:
            stop_ownmail(server)


def marker(what):
    return f"proto-{what}-{uuid.uuid4().hex[:12]}"


def session(p, port=25):
    """A raw client after the greeting and EHLO."""
    c = p.server.connect(port)
    c.ehlo()
    return c


class NothingQueued:
    """Snapshot before a refusal; check() asserts that nothing was accepted since."""

    def __init__(self, p):
        self.p = p
        # earlier tests' mail first out of the way, so that all that follows is this test's
        wait_queue_empty(p.server.spool, server=p.server)
        self.log_mark = p.server.mark()
        self.files = set(maildir_files(p.maildir))

    def check(self, *markers, wait=1.0):
        time.sleep(wait)  # a wrongly accepted message would be delivered by now
        srv = self.p.server
        accepted = srv.events("smtp", start=self.log_mark, event="accepted")
        assert not accepted, f"accepted although refused: {accepted}"
        new = set(maildir_files(self.p.maildir)) - self.files
        assert not new, f"delivered although refused: {sorted(new)}"
        for m in markers:
            assert not delivered(self.p.maildir, m), f"{m!r} was delivered"
        assert not queue_files(srv.spool), f"queued: {queue_files(srv.spool)}"
        assert srv.alive(), f"ownmail died:\n{srv.log_tail()}"


def assert_still_serves(p, port=25):
    """A complete transaction on a new connection: 250 queued, then in the Maildir."""
    mark = marker("after")
    msg = make_message(mark, sender=SENDER)
    with session(p, port) as c:
        c.cmd(f"MAIL FROM:<{SENDER}>", 250)
        c.cmd("RCPT TO:<m@example.org>", 250)
        c.cmd("DATA", 354)
        c.send(dot_stuff(msg) + b".\r\n")
        c.expect(250, "2.0.0")
        c.cmd("QUIT", 221)
    wait_delivered(p.maildir, mark, server=p.server)


def dot_stuff(msg):
    out = msg.replace(b"\r\n.", b"\r\n..")
    return b"." + out if out.startswith(b".") else out


def queued_id(reply):
    m = re.search(r"queued as ([0-9A-Za-z]+)", reply.text)
    assert m, f"no `queued as QID` in {reply}"
    return m.group(1)


# --------------------------------------------------------------------------- greeting, EHLO


def test_greeting_and_ehlo_list_the_extensions_and_the_size_limit(proto):
    c = proto.server.connect(greeting=False)
    g = c.expect(220)
    assert re.match(r"^220 \S+ ESMTP ownmail\b", g.lines[0]), g
    kw = c.ehlo().keywords
    for k in ("PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE", "ENHANCEDSTATUSCODES", "DSN",
              "CHUNKING"):
        assert k in kw, f"EHLO does not list {k}: {kw}"
    assert kw["SIZE"] in ("20480", "20000"), f"SIZE {kw['SIZE']!r} for max-message-size 20K"
    assert "STARTTLS" not in kw, "STARTTLS offered on a listener without tls"
    c.cmd("QUIT", 221)
    c.close()

    t = proto.server.connect(TLS_PORT)
    assert "STARTTLS" in t.ehlo().keywords, "no STARTTLS on the `tls` listener"
    t.close()


def test_commands_out_of_sequence_get_503(proto):
    with proto.server.connect() as c:
        c.cmd(f"MAIL FROM:<{SENDER}>", 503, "5.5.1")  # before EHLO
        c.ehlo()
        c.cmd("RCPT TO:<m@example.org>", 503, "5.5.1")
        c.cmd("DATA", 503, "5.5.1")
        c.cmd(f"MAIL FROM:<{SENDER}>", 250)
        c.cmd(f"MAIL FROM:<{SENDER}>", 503, "5.5.1")  # nested MAIL
        r = c.cmd("DATA")  # no recipient yet: RFC 5321 3.3 allows 503 or 554
        assert r.code in (503, 554) and r.enhanced == "5.5.1", f"DATA without RCPT: {r}"
        c.cmd("RSET", 250)
        c.cmd("QUIT", 221)


def test_relay_attempt_and_unknown_user_are_refused_at_rcpt(proto):
    with session(proto) as c:
        c.cmd(f"MAIL FROM:<{SENDER}>", 250)
        c.cmd("RCPT TO:<someone@elsewhere.test>", 550, "5.7.1")
        c.cmd("RCPT TO:<nobody-here@example.org>", 550, "5.1.1")
        c.cmd("RCPT TO:<m@example.org>", 250)
        c.cmd("QUIT", 221)


# --------------------------------------------------------------------------- smuggling

SMUGGLING = {
    "lf-dot-lf": b"\n.\n",
    "crlf-dot-lf": b"\r\n.\n",
    "lf-dot-crlf": b"\n.\r\n",
    "cr-dot-cr": b"\r.\r",
}


@pytest.mark.parametrize("seq", list(SMUGGLING.values()), ids=list(SMUGGLING))
def test_smuggling_sequence_in_data_is_refused_and_nothing_queued(proto, seq):
    outer, inner = marker("outer"), marker("smuggled")
    before = NothingQueued(proto)
    c = session(proto)
    c.cmd(f"MAIL FROM:<{SENDER}>", 250)
    c.cmd("RCPT TO:<m@example.org>", 250)
    c.cmd("DATA", 354)
    c.send(f"From: <{SENDER}>\r\nSubject: {outer}\r\n\r\nfirst part".encode() + seq
           + b"MAIL FROM:<evil@client.test>\r\nRCPT TO:<m@example.org>\r\nDATA\r\n"
           + f"Subject: {inner}\r\n\r\nsmuggled\r\n".encode()
           + b".\r\n")
    r = c.expect(5, "5.5.2")
    assert c.closed(5), f"the connection stays open after {r}\n{c.dialogue()}"
    extra = c.buf.decode("utf-8", "replace")
    assert not re.search(r"^2\d\d ", extra, re.M), f"more replies after the refusal: {extra!r}"
    c.close()
    before.check(outer, inner)
    assert_still_serves(proto)


# --------------------------------------------------------------------------- limits


def test_command_line_over_2048_bytes_gets_500_5_5_2(proto):
    before = NothingQueued(proto)
    with session(proto) as c:
        c.send("MAIL FROM:<" + "a" * 20000 + "@client.test>\r\n")
        c.expect(500, "5.5.2")
    before.check(wait=0.2)
    assert_still_serves(proto)


def test_message_over_max_message_size_gets_552_at_end_of_data(proto):
    mark = marker("big")
    big = make_message(mark, sender=SENDER, body=[f"{i:05d} " + "x" * 70 for i in range(400)])
    assert len(big) > 30000
    before = NothingQueued(proto)
    with session(proto) as c:
        c.cmd(f"MAIL FROM:<{SENDER}>", 250)
        c.cmd("RCPT TO:<m@example.org>", 250)
        c.cmd("DATA", 354)
        c.send(dot_stuff(big) + b".\r\n")
        c.expect(552, "5.3.4")
        before.check(mark)
        # the session goes on: a message under the limit is accepted
        small_mark = marker("small")
        small = make_message(small_mark, sender=SENDER,
                             body=[f"{i:05d} " + "y" * 70 for i in range(120)])
        assert 9000 < len(small) < 19000
        c.cmd(f"MAIL FROM:<{SENDER}>", 250)
        c.cmd("RCPT TO:<m@example.org>", 250)
        c.cmd("DATA", 354)
        c.send(dot_stuff(small) + b".\r\n")
        c.expect(250, "2.0.0")
        c.cmd("QUIT", 221)
    wait_delivered(proto.maildir, small_mark, server=proto.server)


def test_size_parameter_over_limit_gets_552_at_mail(proto):
    with session(proto) as c:
        c.cmd(f"MAIL FROM:<{SENDER}> SIZE=999999", 552, "5.3.4")
        c.cmd(f"MAIL FROM:<{SENDER}> SIZE=1000", 250)
        c.cmd("QUIT", 221)


def test_fourth_recipient_gets_452_and_the_transaction_goes_on(proto):
    mark = marker("rcpts")
    msg = make_message(mark, sender=SENDER)
    with session(proto) as c:
        c.cmd(f"MAIL FROM:<{SENDER}>", 250)
        for r in ("m@example.org", "m+one@example.org", "m+two@example.org"):
            c.cmd(f"RCPT TO:<{r}>", 250)
        c.cmd("RCPT TO:<m+three@example.org>", 452, "4.5.3")
        c.cmd("DATA", 354)
        c.send(dot_stuff(msg) + b".\r\n")
        qid = queued_id(c.expect(250, "2.0.0"))
        c.cmd("QUIT", 221)
    wait_delivered(proto.maildir, mark, server=proto.server)
    line = proto.server.wait_event("smtp", id=qid, event="accepted")
    assert re.search(r"(?:^|\s)rcpts=3(?:\s|$)", line), line


# --------------------------------------------------------------------------- garbage


def test_garbage_gets_500_then_421_after_10_errors_and_server_survives(proto):
    rng = random.Random(1234)
    before = NothingQueued(proto)
    c = proto.server.connect()
    replies = []
    closed = False
    for i in range(15):
        junk = bytes(rng.choice([0, 0xFF, 0x80, 0x01, 0x7F]) for _ in range(5)) + \
            bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        junk = junk.replace(b"\r", b"").replace(b"\n", b"")
        try:
            c.send(junk + b"\r\n")
        except OSError:
            pass  # closed: a last reply may still be waiting to be read
        try:
            r = c.reply()
        except SmtpClosed:
            closed = True
            break
        replies.append(r)
        if r.code == 421:
            break
    codes = [r.code for r in replies]
    assert replies and replies[-1].code == 421, f"no 421 after {len(codes)} errors: {codes}"
    assert replies[-1].enhanced == "4.7.0", replies[-1]
    errors = replies[:-1]
    assert all(r.code == 500 for r in errors), f"replies before the 421: {codes}"
    assert all(r.enhanced == "5.5.1" for r in errors), [str(r) for r in errors]
    # 10 errors are the limit: the 421 replaces the 10th 500, follows it, or follows the
    # 11th (the error that goes beyond the limit) -- never much earlier or later.
    assert 9 <= len(errors) <= 11, f"421 came after {len(errors)} errors, not 10: {codes}"
    assert closed or c.closed(5), "the connection stays open after 421"
    c.close()
    before.check(wait=0.2)
    assert_still_serves(proto)


def test_client_disconnect_mid_data_queues_nothing(proto):
    mark = marker("cut")
    msg = make_message(mark, sender=SENDER, body=[f"line {i} " + "z" * 60 for i in range(100)])
    before = NothingQueued(proto)
    c = session(proto)
    c.cmd(f"MAIL FROM:<{SENDER}>", 250)
    c.cmd("RCPT TO:<m@example.org>", 250)
    c.cmd("DATA", 354)
    c.send(dot_stuff(msg)[: len(msg) // 2])
    time.sleep(0.2)
    c.close()
    before.check(mark)
    tmp = proto.server.spool / "tmp"
    for _ in range(50):
        if not (tmp.exists() and os.listdir(tmp)):
            break
        time.sleep(0.1)
    assert not (tmp.exists() and os.listdir(tmp)), f"left in {tmp}: {os.listdir(tmp)}"
    assert_still_serves(proto)


# --------------------------------------------------------------------------- pipelining, BDAT


def test_pipelined_transaction_in_one_write(proto):
    mark = marker("pipe")
    msg = make_message(mark, sender=SENDER)
    with session(proto) as c:
        c.send(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<m@example.org>\r\n"
               "RCPT TO:<nobody-here@example.org>\r\nDATA\r\n")
        c.expect(250)
        c.expect(250)
        c.expect(550, "5.1.1")
        c.expect(354)
        # the message, its end, and the next transaction in one write
        mark2 = marker("pipe2")
        msg2 = make_message(mark2, sender=SENDER)
        c.send(dot_stuff(msg) + b".\r\n" + f"MAIL FROM:<{SENDER}>\r\n".encode()
               + b"RCPT TO:<m@example.org>\r\nDATA\r\n")
        c.expect(250, "2.0.0")
        c.expect(250)
        c.expect(250)
        c.expect(354)
        c.send(dot_stuff(msg2) + b".\r\nQUIT\r\n")
        c.expect(250, "2.0.0")
        c.expect(221)
    for m, body in ((mark, msg), (mark2, msg2)):
        files = wait_delivered(proto.maildir, m, server=proto.server)
        assert len(files) == 1
        assert check_maildir_file(files[0]).endswith(lf(body))


def test_bdat_chunks_make_the_message(proto):
    tag = uuid.uuid4().hex[:6]
    chunk1 = f"X:{tag}\r\n".encode()
    chunk2 = b"\r\nb\r\n"
    assert (len(chunk1), len(chunk2)) == (10, 5)
    with session(proto) as c:
        c.cmd(f"MAIL FROM:<{SENDER}>", 250)
        c.cmd("RCPT TO:<m@example.org>", 250)
        c.send(b"BDAT 10\r\n" + chunk1)
        c.expect(250)
        c.send(b"BDAT 5 LAST\r\n" + chunk2)
        c.expect(250, "2.0.0")
        c.cmd("QUIT", 221)
    files = wait_delivered(proto.maildir, f"X:{tag}\n", server=proto.server)
    data = check_maildir_file(files[0])
    assert data.endswith(lf(chunk1 + chunk2)), data
    assert data.startswith(f"Return-Path: <{SENDER}>\n".encode()), data[:200]
    assert b"\nReceived: " in data[: len(data) - 12], data


def test_bdat_pipelined_with_crlf_split_across_chunks_and_dot_lines_kept(proto):
    mark = marker("bdat")
    chunks = [f"X-Id: {mark}\r".encode(), b"\n\r\n.dot line\r", b"\nbody\r\n"]
    expected = f"X-Id: {mark}\n\n.dot line\nbody\n".encode()
    wire = f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<m@example.org>\r\n".encode()
    for ch in chunks:
        wire += f"BDAT {len(ch)}\r\n".encode() + ch
    wire += b"BDAT 0 LAST\r\n"
    with session(proto) as c:
        c.send(wire)
        c.expect(250)
        c.expect(250)
        for _ in chunks:
            c.expect(250)
        c.expect(250, "2.0.0")
        c.cmd("QUIT", 221)
    files = wait_delivered(proto.maildir, mark, server=proto.server)
    data = check_maildir_file(files[0])
    assert data.endswith(expected), data


# --------------------------------------------------------------------------- STARTTLS


def test_starttls_discards_pipelined_command_and_requires_ehlo_again(proto):
    mark = marker("tls")
    msg = make_message(mark, sender=SENDER)
    with session(proto, TLS_PORT) as c:
        c.send(f"STARTTLS\r\nMAIL FROM:<{SENDER}>\r\n")
        c.expect(220, "2.0.0")
        c.starttls()  # asserts that nothing came after the 220
        c.cmd(f"MAIL FROM:<{SENDER}>", 503)  # EHLO first, again
        kw = c.ehlo().keywords
        assert "STARTTLS" not in kw, f"STARTTLS offered after TLS: {kw}"
        c.cmd(f"MAIL FROM:<{SENDER}>", 250)
        c.cmd("RCPT TO:<m@example.org>", 250)
        c.cmd("DATA", 354)
        c.send(dot_stuff(msg) + b".\r\n")
        c.expect(250, "2.0.0")
        c.cmd("QUIT", 221)
        assert c.buf == b"", f"unexpected extra reply: {c.buf!r}"
    files = wait_delivered(proto.maildir, mark, server=proto.server)
    assert check_maildir_file(files[0]).endswith(lf(msg))


# --------------------------------------------------------------------------- SIGHUP


def rcpt_code(server, addr):
    with server.connect() as c:
        c.ehlo()
        c.cmd(f"MAIL FROM:<{SENDER}>", 250)
        r = c.cmd(f"RCPT TO:<{addr}>")
        c.cmd("QUIT", 221)
    return r.code


def wait_rcpt_code(server, addr, code, timeout=10):
    end = time.monotonic() + timeout
    while True:
        got = rcpt_code(server, addr)
        if got == code:
            return
        assert time.monotonic() < end, (
            f"RCPT TO:<{addr}> still gets {got}, not {code}, {timeout}s after SIGHUP\n"
            f"{server.log_tail()}")
        time.sleep(0.2)


def test_sighup_reloads_config_and_tables_and_keeps_running_config_on_error(
        mail_root, netns_lo_only, ownmail_server):
    setup = write_vmail_conf(mail_root)
    server = ownmail_server(setup.conf, ns=netns_lo_only)
    assert rcpt_code(server, "m@example.net") == 550

    # a second domain in the config (and in the virtual table)
    write_vmail_conf(mail_root, domains=("example.org", "example.net"))
    server.hup()
    wait_rcpt_code(server, "m@example.net", 250)

    # a table alone changes
    assert rcpt_code(server, "postmaster@example.org") == 550
    with open(setup.virtual, "a", encoding="utf-8") as f:
        f.write("postmaster@example.org  m\n")
    server.hup()
    wait_rcpt_code(server, "postmaster@example.org", 250)

    # a broken config: the running one stays
    good = setup.conf.read_text(encoding="utf-8")
    broken_line = good.count("\n") + 1
    setup.conf.write_text(good + "this is not a directive\n", encoding="utf-8")
    mark = server.mark()
    server.hup()
    server.wait_for(r"reload failed", start=mark, timeout=10)
    located = server.grep(rf"{re.escape(str(setup.conf))}:{broken_line}:\d+", start=mark)
    assert located, (f"no {setup.conf}:{broken_line}:COL in the log after the failed reload:\n"
                     f"{server.log_tail()}")
    assert server.alive()
    for addr in ("m@example.org", "m@example.net", "postmaster@example.org"):
        assert rcpt_code(server, addr) == 250, f"{addr} refused after a failed reload"

    mark_msg = marker("after-reload")
    with server.smtp() as s:
        smtp_send(s, SENDER, "m@example.net", make_message(mark_msg, sender=SENDER))
    wait_delivered(setup.maildir, mark_msg, server=server)
    wait_queue_empty(server.spool, server=server)
