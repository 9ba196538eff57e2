"""`ownmail serve` delivering over LMTP to Dovecot (SPEC §5.3 "works with Dovecot's LMTP").

The test starts its own Dovecot (`dovecot -F -c <tmp>/dovecot.conf`, LMTP only, on
127.0.0.1:24 and on a Unix socket in the temp dir) inside the test's network namespace,
with a static userdb (uid/gid 5000) and `mail_location = maildir:<tmp>/dovecot/%n/Maildir`
(%n: the user part, so `m` and `m@example.org` are both user m's mailbox). ownmail runs in
the same namespace and listens on 127.0.0.1:25 there.
"""

import os
import signal
import subprocess
import time
import uuid

import pytest

from conftest import (
    VMAIL_GID,
    VMAIL_UID,
    check_maildir_file,
    deadline_loop,
    make_message,
    smtp_send,
    wait_delivered,
    wait_queue_empty,
)

LMTP_PORT = 24
SENDER = "alice@client.test"


class Dovecot:
    def __init__(self, root, ns):
        self.root, self.ns = root, ns
        self.dir = root / "dovecot"
        self.mail = self.dir / "mail"
        self.socket = self.dir / "lmtp.sock"
        self.log = self.dir / "dovecot.log"
        self.conf = self.dir / "dovecot.conf"
        self.proc = None

    def maildir(self, user):
        return self.mail / user / "Maildir"

    def write_conf(self):
        self.dir.mkdir(parents=True)
        self.dir.chmod(0o755)
        self.mail.mkdir()
        os.chown(self.mail, VMAIL_UID, VMAIL_GID)
        self.conf.write_text(f"""\
# ownmail e2e: Dovecot's LMTP only, everything under {self.dir}
protocols = lmtp
base_dir = {self.dir}/run
state_dir = {self.dir}/state
log_path = {self.log}
ssl = no
listen = 127.0.0.1
postmaster_address = postmaster@example.org
mail_location = maildir:{self.mail}/%n/Maildir
first_valid_uid = {VMAIL_UID}
userdb {{
  driver = static
  args = uid={VMAIL_UID} gid={VMAIL_GID} home={self.mail}/%n allow_all_users=yes
}}
passdb {{
  driver = static
  args = nopassword=y
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {LMTP_PORT}
  }}
  unix_listener {self.socket} {{
    mode = 0666
  }}
}}
""", encoding="utf-8")

    def start(self):
        self.write_conf()
        with open(self.dir / "dovecot.stderr", "wb") as err:
            self.proc = self.ns.popen(["dovecot", "-F", "-c", self.conf],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=err)
        for _ in deadline_loop(15, 0.1):
            if self.proc.poll() is not None:
                pytest.fail(f"dovecot exited with status {self.proc.returncode}:\n"
                            f"{self.logs()}")
            if self._answers():
                return
        pytest.fail(f"dovecot's LMTP does not answer on 127.0.0.1:{LMTP_PORT} and "
                    f"{self.socket} within 15 s:\n{self.logs()}")

    def _answers(self):
        """True when the TCP listener greets (`220 HOST Dovecot ready.`) and the socket exists."""
        try:
            sock = self.ns.connect("127.0.0.1", LMTP_PORT, timeout=2)
        except OSError:
            return False
        try:
            greeting = sock.recv(512)
        except OSError:
            return False
        finally:
            sock.close()
        return greeting.startswith(b"220 ") and self.socket.exists()

    def logs(self):
        out = []
        for f in (self.log, self.dir / "dovecot.stderr"):
            if f.exists():
                out.append(f"--- {f.name} ---\n{f.read_text(errors='replace')}")
        return "\n".join(out)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        print(self.logs())


@pytest.fixture
def dovecot(mail_root, netns_lo_only):
    d = Dovecot(mail_root, netns_lo_only)
    try:
        d.start()
        yield d
    finally:
        d.stop()


def lmtp_conf(root, dest, *, virtual=False):
    """ownmail: example.org over LMTP to `dest`. The user m is declared in a userbase, as
    the article declares its users (like OpenSMTPD, a recipient whose user is in no
    userbase -- here not in /etc/passwd either -- is unknown). With virtual=True the
    addresses go through a virtual table first (mayeu@example.org -> m)."""
    etc = root / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "vusers").write_text(f"m  {VMAIL_UID}:{VMAIL_GID}:{root}/home/m\n")
    lines = ["# ownmail e2e: example.org to Dovecot over LMTP",
             f"table vusers file:{etc / 'vusers'}"]
    opts = " userbase <vusers>"
    if virtual:
        (etc / "virtual").write_text("m@example.org  m\nmayeu@example.org  m\n")
        lines.append(f"table valiases file:{etc / 'virtual'}")
        opts = " virtual <valiases>" + opts
    lines += [
        "listen on 127.0.0.1 port 25",
        f'action "lmtp" lmtp "{dest}"{opts}',
        'match from any for domain "example.org" action "lmtp"',
    ]
    conf = root / "smtpd.conf"
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return conf


def deliver_and_check(server, dovecot, rcpt):
    mark = f"lmtp-{uuid.uuid4().hex[:12]}"
    msg = make_message(mark, sender=SENDER, to=rcpt)
    with server.smtp() as s:
        qid = smtp_send(s, SENDER, rcpt, msg)
    maildir = dovecot.maildir("m")
    files = wait_delivered(maildir, f"END {mark}", server=server)
    assert len(files) == 1, files
    data = check_maildir_file(files[0])
    assert data.endswith(msg.replace(b"\r\n", b"\n")), f"message altered:\n{data!r}"
    head = data[: len(data) - len(msg.replace(b"\r\n", b"\n"))]
    # Dovecot writes Return-Path from the LMTP MAIL FROM ownmail gave it
    assert f"Return-Path: <{SENDER}>".encode() in head, head
    server.wait_delivery(qid, "delivered")
    wait_queue_empty(server.spool, server=server)
    return data


def test_lmtp_over_tcp_delivers_into_dovecot_maildir(mail_root, dovecot, ownmail_server):
    conf = lmtp_conf(mail_root, f"127.0.0.1:{LMTP_PORT}")
    server = ownmail_server(conf, ns=dovecot.ns)
    deliver_and_check(server, dovecot, "m@example.org")


def test_lmtp_over_unix_socket_delivers_into_dovecot_maildir(mail_root, dovecot, ownmail_server):
    conf = lmtp_conf(mail_root, dovecot.socket)
    server = ownmail_server(conf, ns=dovecot.ns)
    deliver_and_check(server, dovecot, "m@example.org")


def test_lmtp_is_given_the_expanded_user_not_the_alias(mail_root, dovecot, ownmail_server):
    conf = lmtp_conf(mail_root, f"127.0.0.1:{LMTP_PORT}", virtual=True)
    server = ownmail_server(conf, ns=dovecot.ns)
    deliver_and_check(server, dovecot, "mayeu@example.org")
    assert not dovecot.maildir("mayeu").exists(), (
        "Dovecot got the alias mayeu@example.org as the LMTP recipient, not the user m")


def test_lmtp_server_down_is_a_temporary_failure_and_the_message_stays_queued(
        mail_root, netns_lo_only, ownmail_server):
    # nothing listens on 127.0.0.1:24 in this namespace
    conf = lmtp_conf(mail_root, f"127.0.0.1:{LMTP_PORT}")
    server = ownmail_server(conf, ns=netns_lo_only)
    mark = f"lmtp-down-{uuid.uuid4().hex[:12]}"
    with server.smtp() as s:
        qid = smtp_send(s, SENDER, "m@example.org", make_message(mark, sender=SENDER))
    server.wait_delivery(qid, "tempfail", timeout=30)
    time.sleep(0.5)
    queued = os.listdir(server.spool / "queue")
    assert qid in queued, f"the message left the queue although LMTP is down: {queued}"
    assert not server.deliveries(qid, "failed"), server.log_tail()
