"""SMTP AUTH under bad input and brute force (SPEC §5.1, §5.5, §5.8), on the article's v3
submission listener (see test_submission_article.py), from another host (192.0.2.11).

- malformed base64, a 100 kB AUTH line, AUTH twice, `*` to cancel: clear replies, the
  session or at least the server goes on;
- a thousand failed logins from one client address, over a few parallel connections, for at
  most ~45 s: the replies stay 535 (or a temporary refusal, 421/454 4.7.0, once that address
  is being refused), the server stays up, answers other clients (another address logs in
  at once, a local client delivers) and its memory stays bounded;
- the password never appears in the log, not even base64-encoded and with `-v`.
"""

import threading
import time
import uuid

import pytest

from conftest import (
    SUBMIT_LOGIN,
    SUBMIT_PASSWORD,
    SmtpClosed,
    auth_login,
    auth_plain,
    auth_plain_prompted,
    b64,
    make_message,
    sasl_plain,
    send_data,
    submission_world,
    vm_rss_kib,
    wait_delivered,
)

OTHER_ADDR = "192.0.2.12"        # a second address of the outside namespace


@pytest.fixture(scope="module")
def world(ownmail, pki):
    with submission_world(ownmail, pki, verbose=True, extra_outside_addrs=(OTHER_ADDR,),
                          fresh_addrs=40) as w:
        yield w


def marker(what):
    return f"abuse-{what}-{uuid.uuid4().hex[:12]}"


def assert_still_serves(world):
    """A new client (another address) logs in, and a local client delivers to m."""
    with world.auth_client(source=OTHER_ADDR) as c:
        c.cmd("MAIL FROM:<m@tc2.fr>", 250)
        c.cmd("QUIT", 221)
    mark = marker("after")
    msg = make_message(mark, sender="friend@elsewhere.test", to="m@tc2.fr")
    with world.local_client(25) as c:
        c.ehlo()
        c.cmd("MAIL FROM:<friend@elsewhere.test>", 250)
        c.cmd("RCPT TO:<m@tc2.fr>", 250)
        r = send_data(c, msg)
        assert r.code == 250, r
        c.cmd("QUIT", 221)
    wait_delivered(world.maildir, mark, server=world.server)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("command", [
    "AUTH PLAIN !!!not-base64!!!",
    "AUTH PLAIN bWF5ZXU",            # truncated: no padding, not a multiple of 4
    "AUTH PLAIN ====",
])
def test_malformed_base64_initial_response_gets_501_5_5_2_and_session_goes_on(world, command):
    with world.tls_client(source=world.fresh_addr()) as c:
        c.cmd(command, 501, "5.5.2")
        r = auth_plain(c, SUBMIT_LOGIN, SUBMIT_PASSWORD)
        assert r.code == 235, f"AUTH after a malformed one: {r}"
        c.cmd("QUIT", 221)


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_malformed_base64_continuation_gets_501_5_5_2(world, mech):
    with world.tls_client(source=world.fresh_addr()) as c:
        c.cmd(f"AUTH {mech}", 334)
        c.cmd("%%% this is not base64 %%%", 501, "5.5.2")
        c.cmd("NOOP", 250)
        c.cmd("QUIT", 221)


def test_plain_response_without_two_nul_separators_is_refused(world):
    with world.tls_client(source=world.fresh_addr()) as c:
        r = c.cmd(f"AUTH PLAIN {b64(SUBMIT_LOGIN + ' ' + SUBMIT_PASSWORD)}")
        assert r.code in (501, 535), f"PLAIN without NULs: {r}"
        c.cmd("MAIL FROM:<m@tc2.fr>", 530, "5.7.0")
        c.cmd("QUIT", 221)


def test_unknown_mechanism_gets_504(world):
    with world.tls_client(source=world.fresh_addr()) as c:
        r = c.cmd("AUTH CRAM-MD5")
        assert r.code == 504, f"unknown mechanism: {r}"
        r = c.cmd("AUTH XYZZY")
        assert r.code == 504, f"unknown mechanism: {r}"
        c.cmd("QUIT", 221)


@pytest.mark.parametrize("where", ["plain", "login-user", "login-password"])
def test_star_cancels_the_exchange_with_501_5_7_0(world, where):
    with world.tls_client(source=world.fresh_addr()) as c:
        if where == "plain":
            c.cmd("AUTH PLAIN", 334)
        else:
            c.cmd("AUTH LOGIN", 334)
            if where == "login-password":
                c.cmd(b64(SUBMIT_LOGIN), 334)
        c.cmd("*", 501, "5.7.0")
        c.cmd("MAIL FROM:<m@tc2.fr>", 530, "5.7.0")
        # a cancelled exchange does not count as having authenticated
        r = auth_login(c, SUBMIT_LOGIN, SUBMIT_PASSWORD)
        assert r.code == 235, f"AUTH after a cancelled one: {r}"
        c.cmd("QUIT", 221)


@pytest.mark.parametrize("second", ["PLAIN", "LOGIN", "PLAIN-bad"])
def test_auth_twice_in_a_session_gets_503_5_5_1(world, second):
    with world.tls_client(source=world.fresh_addr()) as c:
        r = auth_plain(c, SUBMIT_LOGIN, SUBMIT_PASSWORD)
        assert r.code == 235, r
        if second == "PLAIN":
            r = c.cmd(f"AUTH PLAIN {sasl_plain(SUBMIT_LOGIN, SUBMIT_PASSWORD)}")
        elif second == "LOGIN":
            r = c.cmd("AUTH LOGIN")
        else:
            r = c.cmd(f"AUTH PLAIN {sasl_plain('root', 'x')}")
        assert r.code == 503 and r.enhanced == "5.5.1", f"second AUTH: {r}"
        # still authenticated as before
        c.cmd("MAIL FROM:<m@tc2.fr>", 250)
        c.cmd("QUIT", 221)


def test_auth_during_a_transaction_gets_503(world):
    with world.auth_client(source=world.fresh_addr()) as c:
        c.cmd("MAIL FROM:<m@tc2.fr>", 250)
        r = c.cmd(f"AUTH PLAIN {sasl_plain(SUBMIT_LOGIN, SUBMIT_PASSWORD)}")
        assert r.code == 503, f"AUTH inside a transaction: {r}"
        c.cmd("QUIT", 221)


def send_long(c, data):
    try:
        c.send(data)
    except OSError:
        pass  # closed while sending: a reply may still be waiting


@pytest.mark.parametrize("where", ["initial-response", "continuation"])
def test_100_kb_auth_line_gets_500_5_5_2_and_server_survives(world, where):
    huge = "A" * 100_000
    c = world.tls_client(source=world.fresh_addr())
    try:
        if where == "initial-response":
            send_long(c, f"AUTH PLAIN {huge}\r\n")
        else:
            c.cmd("AUTH PLAIN", 334)
            send_long(c, f"{huge}\r\n")
        r = c.reply(timeout=15)
        assert r.code == 500 and r.enhanced == "5.5.2", f"100 kB AUTH line: {r}"
        # then the session goes on, or is closed: never authenticated either way
        try:
            r = c.cmd("MAIL FROM:<m@tc2.fr>")
            assert r.code in (530, 421), f"MAIL after the long line: {r}"
        except (SmtpClosed, OSError):
            pass
    finally:
        c.close()
    assert world.server.alive()
    assert_still_serves(world)


def test_auth_lines_split_across_writes_and_pipelined_quit_work(world):
    """The response split into several TCP writes is one line; QUIT pipelined after it."""
    with world.tls_client(source=world.fresh_addr()) as c:
        resp = sasl_plain(SUBMIT_LOGIN, SUBMIT_PASSWORD)
        c.send("AUTH PL")
        time.sleep(0.1)
        c.send(f"AIN {resp[:7]}")
        time.sleep(0.1)
        c.send(f"{resp[7:]}\r\n")
        r = c.reply()
        assert r.code == 235, r
        c.cmd("QUIT", 221)


# --------------------------------------------------------------------------- brute force


BRUTE_LIMIT = 1000
BRUTE_SECONDS = 45
BRUTE_THREADS = 6
WRONG = "bruteforce-guess-Zq7"


class Brute:
    """Counts what the server answers to failed logins from one address."""

    def __init__(self, world, deadline):
        self.world, self.deadline = world, deadline
        self.lock = threading.Lock()
        self.attempts = 0
        self.codes = {}           # reply code -> count (AUTH replies)
        self.latencies = []       # (start time, seconds) of each AUTH reply
        self.refusals = 0         # 421/454 anywhere, connection refused or closed early
        self.bad = []             # replies that are none of the allowed ones
        self.errors = []

    def more(self):
        with self.lock:
            if self.attempts >= BRUTE_LIMIT or time.monotonic() >= self.deadline:
                return False
            self.attempts += 1
            return True

    def note(self, r, t0, dt):
        with self.lock:
            self.codes[r.code] = self.codes.get(r.code, 0) + 1
            self.latencies.append((t0, dt))
            if r.code == 535:
                if r.enhanced != "5.7.8":
                    self.bad.append(str(r))
            elif r.code in (421, 454):
                self.refusals += 1
                if not (r.enhanced or "").startswith("4.7."):
                    self.bad.append(str(r))
            else:
                self.bad.append(str(r))

    def refused(self):
        with self.lock:
            self.refusals += 1

    def worker(self, n):
        i = 0
        while time.monotonic() < self.deadline:
            with self.lock:
                if self.attempts >= BRUTE_LIMIT:
                    return
            try:
                c = self.world.client(timeout=20, greeting=False)
            except OSError:
                self.refused()
                time.sleep(0.2)
                continue
            try:
                r = c.reply(timeout=20)
                if r.code != 220:
                    self.refused()        # e.g. 421 at the greeting
                    time.sleep(0.2)
                    continue
                c.ehlo()
                r = c.cmd("STARTTLS")
                if r.code != 220:
                    self.refused()
                    time.sleep(0.2)
                    continue
                c.starttls()
                c.ehlo()
                while self.more():
                    i += 1
                    user = SUBMIT_LOGIN if i % 2 else f"user{n}x{i}"
                    t0 = time.monotonic()
                    r = c.cmd(f"AUTH PLAIN {sasl_plain(user, WRONG + str(i % 3))}",
                              timeout=20)
                    self.note(r, t0, time.monotonic() - t0)
                    if r.code != 535:
                        break             # refused for a while: a new connection
            except (SmtpClosed, OSError):
                self.refused()
                time.sleep(0.05)
            except BaseException as e:  # pytest.fail from a reply timeout
                with self.lock:
                    self.errors.append(repr(e))
                return
            finally:
                c.close()


def test_thousand_failed_logins_keep_the_server_alive_responsive_and_bounded(world):
    srv = world.server
    # warm up: a few sessions, so that lazily made buffers and TLS state are counted
    for _ in range(3):
        with world.auth_client(source=OTHER_ADDR) as c:
            c.cmd("QUIT", 221)
    rss_before = vm_rss_kib(srv.pid)
    started = time.monotonic()
    brute = Brute(world, started + BRUTE_SECONDS)
    threads = [threading.Thread(target=brute.worker, args=(n,), daemon=True)
               for n in range(BRUTE_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(BRUTE_SECONDS + 30)
    took = time.monotonic() - started
    assert not any(t.is_alive() for t in threads), "brute-force clients still running"
    summary = (f"{brute.attempts} attempts in {took:.1f}s, replies {brute.codes}, "
               f"{brute.refusals} refusals")
    print(summary)

    assert not brute.errors, f"{summary}\n{brute.errors[:5]}\n{srv.log_tail(20)}"
    assert not brute.bad, f"unexpected replies to failed logins: {brute.bad[:10]}\n{summary}"
    assert brute.codes.get(535, 0) >= 3, f"hardly any 535 before refusals: {summary}"
    assert srv.alive(), f"ownmail died: {summary}\n{srv.log_tail()}"

    # the server answers other clients at once: another address logs in without delay
    t0 = time.monotonic()
    with world.tls_client(source=OTHER_ADDR) as c:
        r = auth_plain(c, SUBMIT_LOGIN, SUBMIT_PASSWORD)
        assert r.code == 235, f"login from another address after the brute force: {r}"
        c.cmd("QUIT", 221)
    assert time.monotonic() - t0 < 5, "a good login from another address is slowed down"
    assert_still_serves(world)

    rss_after = vm_rss_kib(srv.pid)
    grew = (rss_after - rss_before) / 1024
    assert grew < 50, f"RSS grew by {grew:.1f} MB ({rss_before} -> {rss_after} KiB): {summary}"

    # the defence engaged: refusals, or replies slowed down (SPEC §5.5)
    lat = [dt for _, dt in sorted(brute.latencies)]
    late = sorted(lat[-100:])
    median_late = late[len(late) // 2] if late else 0
    assert brute.refusals or median_late >= 0.25 or brute.attempts < BRUTE_LIMIT, (
        f"1000 failed logins were neither slowed down nor refused: {summary}, median of the "
        f"last 100 replies {median_late:.3f}s")

    log = srv.log
    for needle in (WRONG, b64(WRONG + "0"), sasl_plain(SUBMIT_LOGIN, WRONG + "1")):
        assert needle not in log, f"a guessed password ({needle}) is in the log"


# --------------------------------------------------------------------------- logs


def test_passwords_never_appear_in_the_verbose_log(world):
    srv = world.server
    start = srv.mark()
    wrong = "Wr0ng-" + uuid.uuid4().hex
    with world.tls_client(source=OTHER_ADDR) as c:
        assert auth_plain(c, SUBMIT_LOGIN, SUBMIT_PASSWORD).code == 235
        c.cmd("QUIT", 221)
    with world.tls_client(source=OTHER_ADDR) as c:
        assert auth_plain_prompted(c, SUBMIT_LOGIN, SUBMIT_PASSWORD).code == 235
        c.cmd("QUIT", 221)
    with world.tls_client(source=OTHER_ADDR) as c:
        assert auth_login(c, SUBMIT_LOGIN, SUBMIT_PASSWORD).code == 235
        c.cmd("QUIT", 221)
    with world.tls_client(source=OTHER_ADDR) as c:
        assert auth_login(c, SUBMIT_LOGIN, wrong).code == 535
        assert auth_plain(c, SUBMIT_LOGIN, wrong).code in (535, 421, 454)
        c.cmd("QUIT")
    # -v traces the dialogue: wait until the last session's end is logged
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if len(srv.grep(r"event=disconnect", start)) >= 4:
            break
        time.sleep(0.1)
    log = srv.log + "\n" + "\n".join(srv.stdout_lines)
    assert "auth" in log.lower(), "no trace of AUTH at all with -v?"
    secrets = {
        "password": SUBMIT_PASSWORD,
        "base64 password": b64(SUBMIT_PASSWORD),
        "PLAIN response": sasl_plain(SUBMIT_LOGIN, SUBMIT_PASSWORD),
        "wrong password": wrong,
        "base64 wrong password": b64(wrong),
        "PLAIN response with the wrong password": sasl_plain(SUBMIT_LOGIN, wrong),
        "article hash": "NTH5FbDaiFCq93bQbvuBnf8tP",
    }
    for what, s in secrets.items():
        assert s not in log, f"the {what} ({s}) is in ownmail's output"
    # ...but the login name may be (and the sessions are there)
    assert srv.events("smtp", start=start, event="connect", client=OTHER_ADDR)
