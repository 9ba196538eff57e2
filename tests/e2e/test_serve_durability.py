"""`ownmail serve` durability (SPEC §5.2) and clean stop (SPEC §3).

- kill -9 at a random moment while 8 clients send: every message that got its 250 is in
  the Maildir after a restart on the same spool (duplicates allowed), no Maildir file is
  partial (a killed delivery may leave a file in tmp/, never in new/), nothing is left in the queue;
- SIGTERM: sessions in progress get 421 4.3.2, the server exits 0 within 10 s, and what
  was accepted just before is delivered after a restart.

Each test runs its own server in its own network namespace (127.0.0.1:25 there).
"""

import email
import random
import re
import signal
import smtplib
import subprocess
import threading
import time
import uuid

import pytest

from conftest import (
    check_maildir_file,
    make_message,
    maildir_files,
    ns_smtp,
    smtp_send,
    wait_delivered,
    wait_queue_empty,
    write_vmail_conf,
)

THREADS = 8
PER_THREAD = 40
TOTAL = THREADS * PER_THREAD
SENDER = "load@client.test"


def body_lines(mark, n=30):
    # ~2 KiB per message, so that a torn write would show
    return [f"{mark} line {k:03d} " + "abcdefghij" * 5 for k in range(n)]


class Load:
    """THREADS clients, each sending PER_THREAD messages over one connection (a new one
    after a failure); records which got their 250 and every error with its time."""

    def __init__(self, server, run_id):
        self.server, self.run_id = server, run_id
        self.lock = threading.Lock()
        self.accepted = set()
        self.errors = []  # (monotonic time, marker, repr)
        self.threads = [threading.Thread(target=self._client, args=(t,), daemon=True)
                        for t in range(THREADS)]

    def start(self):
        for t in self.threads:
            t.start()

    def join(self, timeout):
        end = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, end - time.monotonic()))
        alive = [t.name for t in self.threads if t.is_alive()]
        assert not alive, f"client threads still running after {timeout}s: {alive}"

    def count(self):
        with self.lock:
            return len(self.accepted)

    def _client(self, t):
        smtp = None
        for i in range(PER_THREAD):
            mark = f"dur-{self.run_id}-{t:02d}-{i:03d}"
            msg = make_message(mark, sender=SENDER, body=body_lines(mark))
            try:
                if smtp is None:
                    smtp = ns_smtp("127.0.0.1", 25, ns=self.server.ns, timeout=10)
                smtp_send(smtp, SENDER, "m@example.org", msg)
            except (smtplib.SMTPException, OSError, AssertionError) as e:
                with self.lock:
                    self.errors.append((time.monotonic(), mark, repr(e)))
                if smtp is not None:
                    try:
                        smtp.close()
                    except OSError:
                        pass
                smtp = None
                if isinstance(e, ConnectionRefusedError):
                    return  # the server is gone: nothing more to send
                continue
            with self.lock:
                self.accepted.add(mark)
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                pass


def load_and_kill(server, rng, run_id):
    """Runs the load against server and SIGKILLs it at a random point in the stream (after
    a random number of 250s, plus a random fraction of a message's time, so that the point
    is mid-stream whatever the machine's speed). Returns the markers that got their 250."""
    load = Load(server, run_id)
    target = rng.randint(THREADS, int(TOTAL * 0.8))
    load.start()
    end = time.monotonic() + 120
    while load.count() < target:
        assert time.monotonic() < end, (
            f"only {load.count()} of {target} messages accepted in 120 s; errors: "
            f"{load.errors[:5]}\n{server.log_tail()}")
        assert server.alive(), f"ownmail died under load:\n{server.log_tail()}"
        time.sleep(0.005)
    time.sleep(rng.uniform(0, 0.05))
    killed_at = time.monotonic()
    server.kill()
    load.join(60)
    early = [e for e in load.errors if e[0] < killed_at]
    assert not early, f"errors while the server was running: {early[:5]}"
    print(f"run {run_id}: killed after {len(load.accepted)} accepted messages "
          f"({len(load.errors)} cut off)")
    return set(load.accepted)


def test_kill_9_during_load_loses_no_acknowledged_message(mail_root, netns_lo_only,
                                                           ownmail_server):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"random seed {seed}")
    setup = write_vmail_conf(mail_root)
    spool = mail_root / "spool"
    server = ownmail_server(setup.conf, spool=spool, ns=netns_lo_only)

    # Two rounds: the second one loads a server that is still recovering the first's queue.
    run_ids = [uuid.uuid4().hex[:8] for _ in range(2)]
    accepted = set()
    for run_id in run_ids:
        accepted |= load_and_kill(server, rng, run_id)
        server = ownmail_server(setup.conf, spool=spool, ns=netns_lo_only)
    wait_queue_empty(spool, timeout=120, server=server)
    time.sleep(0.5)  # anything still being written would show now

    md = setup.maildir
    found = {}
    mark_re = re.compile(rf"^dur-({'|'.join(run_ids)})-\d\d-\d\d\d$")
    for path in maildir_files(md):
        data = check_maildir_file(path)
        msg = email.message_from_bytes(data)
        subject = msg["Subject"]
        assert subject and mark_re.match(subject), f"{path.name}: Subject {subject!r}"
        head, sep, body = data.partition(b"\n\n")
        assert sep, f"{path.name}: no header/body separator"
        assert body.endswith(f"END {subject}\n".encode()), (
            f"{path.name} is partial or mixed: its body ends with {body[-120:]!r}")
        expected = make_message(subject, sender=SENDER, body=body_lines(subject))
        assert data.endswith(expected.replace(b"\r\n", b"\n")), f"{path.name} differs"
        found[subject] = found.get(subject, 0) + 1

    lost = sorted(accepted - set(found))
    assert not lost, (f"{len(lost)} acknowledged messages are missing after kill -9 and "
                      f"restart (seed {seed}): {lost[:10]}\n{server.log_tail()}")
    # A delivery killed mid-write may leave its file in the Maildir's tmp/: that is the
    # Maildir protocol working (readers never look in tmp/, and no such file ever appears in
    # new/ or cur/). Every file that is visible was checked complete above.
    visible = {p.name.split(":")[0] for p in maildir_files(md, "new") + maildir_files(md, "cur")}
    assert not visible & {p.name for p in maildir_files(md, "tmp")}, "a tmp/ file is also visible"
    dups = {k: v for k, v in found.items() if v > 1}
    print(f"{len(found)} distinct messages delivered, {len(dups)} duplicates")


def test_sigterm_mid_session_gets_421_and_exit_status_0(mail_root, netns_lo_only, ownmail_server):
    setup = write_vmail_conf(mail_root)
    server = ownmail_server(setup.conf, ns=netns_lo_only)

    busy = server.connect()
    busy.ehlo()
    busy.cmd(f"MAIL FROM:<{SENDER}>", 250)
    idle = server.connect()
    idle.ehlo()

    t0 = time.monotonic()
    server.signal(signal.SIGTERM)
    for c in (busy, idle):
        c.expect(421, "4.3.2", timeout=10)
        assert c.closed(10), f"the connection stays open after 421\n{c.dialogue()}"
        c.close()
    try:
        rc = server.proc.wait(max(0.1, 10 - (time.monotonic() - t0)))
    except subprocess.TimeoutExpired:
        pytest.fail(f"ownmail still runs 10 s after SIGTERM:\n{server.log_tail()}")
    assert rc == 0, f"exit status {rc} after SIGTERM:\n{server.log_tail()}"


def test_sigterm_right_after_acceptance_loses_nothing(mail_root, netns_lo_only, ownmail_server):
    setup = write_vmail_conf(mail_root)
    spool = mail_root / "spool"
    server = ownmail_server(setup.conf, spool=spool, ns=netns_lo_only)
    run_id = uuid.uuid4().hex[:8]
    marks = [f"term-{run_id}-{i:02d}" for i in range(20)]
    s = server.smtp()
    try:
        for m in marks:
            smtp_send(s, SENDER, "m@example.org", make_message(m, sender=SENDER))
        server.signal(signal.SIGTERM)  # the session is still open
        try:
            rc = server.proc.wait(10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"ownmail still runs 10 s after SIGTERM:\n{server.log_tail()}")
    finally:
        s.close()
    assert rc == 0, f"exit status {rc} after SIGTERM:\n{server.log_tail()}"

    restarted = ownmail_server(setup.conf, spool=spool, ns=netns_lo_only)
    wait_queue_empty(spool, timeout=60, server=restarted)
    for m in marks:
        wait_delivered(setup.maildir, f"END {m}", timeout=10, server=restarted)
