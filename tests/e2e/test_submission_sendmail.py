"""Local submission with `ownmail sendmail` (SPEC §3), as cron and scripts use it.

`ownmail sendmail --spool SPOOL [-t] [-f FROM] [-i] [RCPT...]` hands a message on standard
input to the running daemon through SPOOL/sendmail.sock; the binary behaves the same when
called through a symlink named `sendmail`. `-t` takes the recipients from To:/Cc:/Bcc: and
removes Bcc:. With no daemon to talk to it exits 75 (EX_TEMPFAIL), so that the caller
retries later.

The daemon runs the article's v3 configuration (see test_submission_article.py) with one
more virtual user, bob (`bob@tc2.fr bob`, Maildir <root>/var/vmail/bob), so that a Bcc:
recipient has a mailbox of its own. Commands run with `sh -c`, in the server's namespace.
"""

import os
import re
import shlex
import uuid
from pathlib import Path

import pytest

from conftest import (
    VMAIL_GID,
    VMAIL_UID,
    assert_no_panic,
    check_maildir_file,
    delivered,
    maildir_files,
    submission_world,
    wait_delivered,
    wait_queue_empty,
    write_vmail_conf,
)

EX_TEMPFAIL = 75


def add_bob(root, etc, conf):
    with open(etc / "aliases", "a", encoding="utf-8") as f:
        f.write("bob@tc2.fr      bob\n")
    with open(etc / "vusers", "a", encoding="utf-8") as f:
        f.write(f"bob             {VMAIL_UID}:{VMAIL_GID}:{root}/var/vmail/bob\n")


class World:
    def __init__(self, w):
        self.w = w
        self.server, self.spool, self.maildir = w.server, w.spool, w.maildir
        self.bob = w.maildir_of("bob")
        self.ownmail = w.ownmail

    def sh(self, script, timeout=60):
        """Runs `sh -c script` in the server's namespace; returns (rc, out, err)."""
        rc, out, err = self.w.ns(["sh", "-c", script], timeout=timeout)
        assert_no_panic(err)
        return rc, out, err

    def sendmail(self, message, *args, binary=None):
        """printf '%s' MESSAGE | ownmail sendmail --spool SPOOL ARGS... -> (rc, out, err)."""
        binary = binary or f"{shlex.quote(self.ownmail)} sendmail"
        cmd = (f"printf '%s' {shlex.quote(message)} | {binary} --spool "
               f"{shlex.quote(str(self.spool))} {' '.join(shlex.quote(a) for a in args)}")
        return self.sh(cmd)


@pytest.fixture(scope="module")
def world(ownmail, pki):
    with submission_world(ownmail, pki, edit=add_bob) as w:
        yield World(w)


def marker(what):
    return f"sendmail-{what}-{uuid.uuid4().hex[:12]}"


def header_block(data):
    return data.split(b"\n\n", 1)[0]


def assert_ok(rc, out, err, what):
    assert rc == 0, f"{what} exited {rc}:\n--- stdout ---\n{out}\n--- stderr ---\n{err}"


# --------------------------------------------------------------------------- delivery


def test_cron_style_printf_pipe_with_t_delivers_into_m_maildir(world):
    mark = marker("cron")
    rc, out, err = world.sh(
        f"printf 'To: m@tc2.fr\\nSubject: cron {mark}\\n\\nhello\\n' | "
        f"{shlex.quote(world.ownmail)} sendmail --spool {shlex.quote(str(world.spool))} -t")
    assert_ok(rc, out, err, "ownmail sendmail -t")
    files = wait_delivered(world.maildir, mark, server=world.server)
    assert len(files) == 1, files
    data = check_maildir_file(files[0])
    assert data.startswith(b"Return-Path: <"), data[:200]
    assert f"Subject: cron {mark}\n".encode() in data
    assert data.endswith(b"\n\nhello\n"), data[-200:]
    assert re.search(rb"(?mi)^Delivered-To: <?m@tc2\.fr>?$", header_block(data)), data[:600]


def test_t_removes_bcc_and_delivers_to_every_header_recipient(world):
    mark = marker("bcc")
    msg = (f"From: m@tc2.fr\nTo: m@tc2.fr\nBcc: bob@tc2.fr\nSubject: {mark}\n\n"
           f"secret copy for bob\n")
    assert_ok(*world.sendmail(msg, "-t"), "ownmail sendmail -t (Bcc)")
    for maildir in (world.maildir, world.bob):
        files = wait_delivered(maildir, mark, server=world.server)
        assert len(files) == 1, f"{maildir}: {files}"
        head = header_block(check_maildir_file(files[0]))
        assert not re.search(rb"(?mi)^bcc:", head), f"Bcc: left in {files[0]}:\n{head!r}"
    m_head = header_block(delivered(world.maildir, mark)[0].read_bytes())
    assert b"bob@tc2.fr" not in m_head, f"m's copy names the Bcc recipient:\n{m_head!r}"


def test_t_delivers_to_cc_and_keeps_the_cc_header(world):
    mark = marker("cc")
    msg = f"To: m@tc2.fr\nCc: Bob <bob@tc2.fr>\nSubject: {mark}\n\nhello both\n"
    assert_ok(*world.sendmail(msg, "-t"), "ownmail sendmail -t (Cc)")
    for maildir in (world.maildir, world.bob):
        files = wait_delivered(maildir, mark, server=world.server)
        assert b"Cc: Bob <bob@tc2.fr>" in files[0].read_bytes()


def test_recipients_on_the_command_line_are_the_only_recipients_without_t(world):
    mark = marker("args")
    msg = f"To: bob@tc2.fr\nSubject: {mark}\n\nonly for m\n"
    before_bob = set(maildir_files(world.bob))
    assert_ok(*world.sendmail(msg, "m@tc2.fr"), "ownmail sendmail m@tc2.fr")
    wait_delivered(world.maildir, mark, server=world.server)
    wait_queue_empty(world.spool, server=world.server)
    new = [p for p in set(maildir_files(world.bob)) - before_bob if mark.encode() in p.read_bytes()]
    assert not new, f"without -t the To: header was used as a recipient: {new}"


def test_f_sets_the_envelope_sender_seen_as_return_path(world):
    mark = marker("from")
    msg = f"To: m@tc2.fr\nSubject: {mark}\n\nwith -f\n"
    assert_ok(*world.sendmail(msg, "-f", "m+cron@tc2.fr", "-t"), "ownmail sendmail -f")
    files = wait_delivered(world.maildir, mark, server=world.server)
    first = files[0].read_bytes().split(b"\n", 1)[0]
    assert first == b"Return-Path: <m+cron@tc2.fr>", first


def test_f_attached_to_its_value_works(world):
    """`-fADDR` (no space), as many scripts pass it; -i with -t."""
    mark = marker("fattached")
    msg = f"To: m@tc2.fr\nSubject: {mark}\n\nattached -f\n"
    assert_ok(*world.sendmail(msg, "-i", "-fm+script@tc2.fr", "-t"), "ownmail sendmail -fADDR")
    files = wait_delivered(world.maildir, mark, server=world.server)
    first = files[0].read_bytes().split(b"\n", 1)[0]
    assert first == b"Return-Path: <m+script@tc2.fr>", first


def test_debian_cron_invocation_is_accepted(world):
    """Debian's cron runs `sendmail -FCronDaemon -i -B8BITMIME -oem -oi -t` (its MAILARGS):
    the sendmail-compatible flags it passes must not make the submission fail."""
    mark = marker("debian-cron")
    msg = (f"From: root (Cron Daemon)\nTo: m@tc2.fr\nSubject: Cron <root@host> run {mark}\n"
           f"MIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\n\noutput\n")
    assert_ok(*world.sendmail(msg, "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "-oi", "-t"),
              "sendmail as Debian's cron calls it")
    wait_delivered(world.maildir, mark, server=world.server)


def test_i_keeps_a_line_with_a_single_dot(world):
    mark = marker("dot")
    msg = f"To: m@tc2.fr\nSubject: {mark}\n\nbefore\n.\nafter the dot {mark}\n"
    assert_ok(*world.sendmail(msg, "-i", "-t"), "ownmail sendmail -i -t")
    files = wait_delivered(world.maildir, f"after the dot {mark}", server=world.server)
    assert b"\nbefore\n.\nafter the dot" in files[0].read_bytes()


def test_message_is_delivered_byte_for_byte_with_8bit_and_long_lines(world):
    mark = marker("bytes")
    body = "déjà vu, naïve façade\n" + ("x" * 900) + "\n..two dots\n.one dot\nEND\n"
    msg = f"To: m@tc2.fr\nSubject: {mark}\nContent-Type: text/plain; charset=utf-8\n\n{body}"
    assert_ok(*world.sendmail(msg, "-t", "-i"), "ownmail sendmail (8-bit)")
    files = wait_delivered(world.maildir, mark, server=world.server)
    data = files[0].read_bytes()
    assert data.endswith(body.encode("utf-8")), data[-1200:]


def test_symlink_named_sendmail_works(world):
    link_dir = Path(world.w.root) / "bin"
    link_dir.mkdir(exist_ok=True)
    link = link_dir / "sendmail"
    if not link.exists():
        os.symlink(world.ownmail, link)
    mark = marker("symlink")
    msg = f"To: m@tc2.fr\nSubject: {mark}\n\nvia the sendmail name\n"
    assert_ok(*world.sendmail(msg, "-t", binary=shlex.quote(str(link))), "sendmail (symlink)")
    wait_delivered(world.maildir, mark, server=world.server)


def test_sendmail_to_a_foreign_domain_is_queued_for_relay(world):
    """Local submission relays (the article's `accept for any relay` covers local mail);
    no resolver in the namespace, so it waits in the queue."""
    mark = marker("relay")
    rcpt = f"{mark}@elsewhere.test"
    msg = f"To: {rcpt}\nSubject: {mark}\n\nout\n"
    assert_ok(*world.sendmail(msg, "-f", "m@tc2.fr", "-t"), "ownmail sendmail (relay)")
    out = world.w.wait_queue_list(rcpt)
    line = next(l for l in out.splitlines() if rcpt in l)
    assert "relay" in line, out


def test_no_recipient_at_all_is_an_error_not_a_silent_success(world):
    rc, out, err = world.sendmail("Subject: nobody\n\nlost?\n", "-t")
    assert rc != 0, f"sendmail -t with no recipient header exited 0:\n{out}\n{err}"
    assert err.strip(), "no error message on stderr"


# --------------------------------------------------------------------------- no daemon


def test_exit_75_when_the_spool_has_no_daemon(ownmail, mail_root, run):
    spool = mail_root / "spool-never-started"
    spool.mkdir()
    rc, out, err = run(["sh", "-c",
                        f"printf 'To: m@tc2.fr\\nSubject: x\\n\\nx\\n' | "
                        f"{shlex.quote(ownmail)} sendmail --spool {shlex.quote(str(spool))} -t"])
    assert_no_panic(err)
    assert rc == EX_TEMPFAIL, f"exit {rc}, not 75:\n{out}\n{err}"
    assert err.strip(), "no explanation on stderr"


def test_exit_75_after_the_daemon_stopped_and_nothing_delivered(ownmail, mail_root, netns_lo_only,
                                                               ownmail_server, run):
    setup = write_vmail_conf(mail_root, domains=("tc2.fr",))
    server = ownmail_server(setup.conf, ns=netns_lo_only)
    mark = marker("stopped")
    send = (f"printf 'To: m@tc2.fr\\nSubject: {mark}\\n\\nx\\n' | "
            f"{shlex.quote(ownmail)} sendmail --spool {shlex.quote(str(server.spool))} -t")
    # while it runs, the same command delivers
    rc, out, err = run(["sh", "-c", send])
    assert rc == 0, f"sendmail with the daemon running exited {rc}:\n{err}"
    wait_delivered(setup.maildir, mark, server=server)
    assert server.terminate() == 0
    n = len(maildir_files(setup.maildir))
    rc, out, err = run(["sh", "-c", send])
    assert_no_panic(err)
    assert rc == EX_TEMPFAIL, f"exit {rc} with the daemon stopped, not 75:\n{out}\n{err}"
    assert err.strip(), "no explanation on stderr"
    assert len(maildir_files(setup.maildir)) == n
