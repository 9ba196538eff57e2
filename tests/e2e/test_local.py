"""`ownmail serve --local`: a newcomer's first command, run as an unprivileged user.

The server runs as `nobody` (setpriv), in a fresh directory: it must set everything up under
--dir, print the login, accept a message through submission with that login and serve it
back over IMAP; a second start reuses the same login. Bad input — a file as --dir, a
directory it cannot write, ports in use — is a clear message and exit 1 with nothing
half-made left behind.
"""

import imaplib
import os
import pwd
import re
import shutil
import smtplib
import ssl
import uuid
from pathlib import Path

import pytest

from conftest import OwnmailServer, assert_no_panic, deadline_loop, run, stop_ownmail, world_tmpdir

NOBODY = pwd.getpwnam("nobody")


def as_nobody(*args):
    return ["setpriv", f"--reuid={NOBODY.pw_uid}", f"--regid={NOBODY.pw_gid}",
            "--clear-groups", *map(str, args)]


@pytest.fixture(scope="module")
def nobody_bin(ownmail):
    """A copy of the binary that `nobody` can run wherever the checkout is."""
    with world_tmpdir("om-local-bin-") as root:
        copy = root / "ownmail"
        shutil.copy2(ownmail, copy)
        copy.chmod(0o755)
        yield str(copy)


@pytest.fixture
def playground():
    """A directory `nobody` may write in, under a root-owned temp dir."""
    with world_tmpdir("om-local-") as root:
        root.chmod(0o755)
        play = root / "play"
        play.mkdir()
        os.chown(play, NOBODY.pw_uid, NOBODY.pw_gid)
        yield play


def start_local(nobody_bin, d):
    server = OwnmailServer(as_nobody(nobody_bin, "serve", "--local", "--dir", d),
                           conf=d / "smtpd.conf", spool=d / "spool")
    try:
        server.wait_ready(20)
    except BaseException:
        stop_ownmail(server)
        raise
    return server


def facts(server):
    """The `key: value` lines printed on stdout before the server started."""
    out = {}
    for line in server.stdout_lines:
        m = re.match(r"^([a-z]+): (.*)$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def port(value):
    m = re.match(r"^127\.0\.0\.1:(\d+)", value)
    assert m, f"not a loopback address: {value!r}"
    return int(m.group(1))


def test_serve_local_as_a_new_user_would(nobody_bin, playground):
    d = playground / "ownmail-local"
    server = start_local(nobody_bin, d)
    try:
        f = facts(server)
        for key in ("smtp", "submission", "imap", "user", "password", "certificate"):
            assert key in f, f"`{key}:` not printed:\n" + "\n".join(server.stdout_lines)
        assert f["submission"].endswith("(STARTTLS)")
        assert f["imap"].endswith("(implicit TLS)")
        user, password = f["user"], f["password"]
        assert user == "nobody"
        assert len(password) >= 12
        # Everything under --dir, owned by the unprivileged user, secrets not world-readable.
        assert (d / "smtpd.conf").is_file()
        for secret in ("users", "password", "certs/localhost.key"):
            st = (d / secret).stat()
            assert st.st_uid == NOBODY.pw_uid, secret
            assert st.st_mode & 0o077 == 0, f"{secret} is readable by others"

        cafile = f["certificate"].split(" ")[0]
        ctx = ssl.create_default_context(cafile=cafile)
        mark = f"local-{uuid.uuid4().hex[:12]}"
        msg = (f"From: {user}@localhost\r\nTo: {user}@localhost\r\nSubject: {mark}\r\n"
               f"Message-ID: <{mark}@localhost>\r\n\r\nhello from serve --local\r\n")
        with smtplib.SMTP("127.0.0.1", port(f["submission"]), timeout=20) as s:
            s.starttls(context=ctx)
            s.login(user, password)
            s.sendmail(f"{user}@localhost", [f"{user}@localhost"], msg.encode())

        found = None
        for _ in deadline_loop(20, 0.2):
            with imaplib.IMAP4_SSL("127.0.0.1", port(f["imap"]), ssl_context=ctx,
                                   timeout=20) as m:
                m.login(user, password)
                m.select("INBOX")
                typ, data = m.search(None, "SUBJECT", mark)
                assert typ == "OK"
                ids = data[0].split()
                if ids:
                    typ, got = m.fetch(ids[0], "(BODY.PEEK[])")
                    assert typ == "OK"
                    found = got[0][1]
                    break
        assert found is not None, "the message never appeared over IMAP"
        assert found.endswith(b"\r\n\r\nhello from serve --local\r\n"), found[-200:]
        assert f"Subject: {mark}".encode() in found
        # A wrong password is refused.
        with imaplib.IMAP4_SSL("127.0.0.1", port(f["imap"]), ssl_context=ctx, timeout=20) as m:
            with pytest.raises(imaplib.IMAP4.error):
                m.login(user, password + "x")
    finally:
        stop_ownmail(server)

    # A second start reuses the user, the password and the ports.
    again = start_local(nobody_bin, d)
    try:
        assert facts(again) == f
    finally:
        stop_ownmail(again)


def test_ports_in_use_is_a_clear_error(nobody_bin, playground):
    d = playground / "ownmail-local"
    server = start_local(nobody_bin, d)
    try:
        rc, _, err = run(as_nobody(nobody_bin, "serve", "--local", "--dir", d), timeout=30)
        assert rc == 1, err
        assert_no_panic(err)
        assert re.search(r"cannot listen on 127\.0\.0\.1:\d+|in use", err), err
    finally:
        stop_ownmail(server)


def test_dir_that_is_a_file_is_refused(nobody_bin, playground):
    f = playground / "afile"
    f.write_text("not a directory\n")
    os.chown(f, NOBODY.pw_uid, NOBODY.pw_gid)
    rc, _, err = run(as_nobody(nobody_bin, "serve", "--local", "--dir", f), timeout=30)
    assert rc == 1
    assert_no_panic(err)
    assert "not a directory" in err, err
    assert f.read_text() == "not a directory\n"


def test_read_only_parent_is_refused_and_nothing_is_left(nobody_bin, playground):
    ro = playground / "ro"
    ro.mkdir()
    os.chown(ro, NOBODY.pw_uid, NOBODY.pw_gid)
    ro.chmod(0o555)
    rc, _, err = run(as_nobody(nobody_bin, "serve", "--local", "--dir", ro / "sub"), timeout=30)
    assert rc == 1
    assert_no_panic(err)
    assert "Permission denied" in err or "cannot create" in err, err
    assert list(ro.iterdir()) == []


def test_a_foreign_directory_is_not_taken_over(nobody_bin, playground):
    d = playground / "mine"
    d.mkdir()
    (d / "notes.txt").write_text("keep me\n")
    os.chown(d, NOBODY.pw_uid, NOBODY.pw_gid)
    rc, _, err = run(as_nobody(nobody_bin, "serve", "--local", "--dir", d), timeout=30)
    assert rc == 1
    assert "not empty" in err, err
    assert sorted(p.name for p in d.iterdir()) == ["notes.txt"]
