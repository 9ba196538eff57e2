"""`ownmail maildir sync`: numbering a large Maildir ahead of the first login shows progress
on a terminal and stays quiet otherwise (issue 9, "Progress")."""

import os
import pty
import select
import subprocess
import time

from conftest import run, world_tmpdir

N = 3000


def make_maildir(root):
    md = root / "Maildir"
    for sub in ("cur", "new", "tmp", ".Sent/cur", ".Sent/new", ".Sent/tmp"):
        (md / sub).mkdir(parents=True)
    for i in range(N):
        (md / "new" / f"{1_700_000_000 + i}.M{i}P1.bench,S=2").write_bytes(b"x\n")
    (md / ".Sent" / "cur" / "1700000000.M1P1.h,S=2:2,S").write_bytes(b"y\n")
    return md


def test_quiet_when_not_on_a_terminal(ownmail):
    with world_tmpdir() as root:
        md = make_maildir(root)
        rc, out, err = run([ownmail, "maildir", "sync", md])
        assert rc == 0, err
        assert err == "", f"progress drawn without a terminal: {err!r}"
        assert out.strip() == f"{md}: 2 folders, {N + 1} messages"
        uids = (md / "dovecot-uidlist").read_text().splitlines()
        assert len(uids) == N + 1  # the header and one line per message


def test_progress_on_a_terminal(ownmail):
    with world_tmpdir() as root:
        md = make_maildir(root)
        master, slave = pty.openpty()
        try:
            proc = subprocess.Popen([ownmail, "maildir", "sync", str(md)],
                                    stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL)
            os.close(slave)
            seen = b""
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                r, _, _ = select.select([master], [], [], 0.5)
                if r:
                    try:
                        chunk = os.read(master, 65536)
                    except OSError:  # the other side closed
                        break
                    if not chunk:
                        break
                    seen += chunk
                elif proc.poll() is not None:
                    break
            out, _ = proc.communicate(timeout=30)
        finally:
            os.close(master)
        assert proc.returncode == 0
        text = seen.decode("utf-8", "replace")
        assert f"INBOX: [" in text and f"{N}/{N} (100%)" in text, text[-500:]
        assert "Sent:" in text, text[-500:]
        assert out.decode().strip() == f"{md}: 2 folders, {N + 1} messages"


def test_not_a_maildir_is_an_error(ownmail):
    with world_tmpdir() as root:
        rc, out, err = run([ownmail, "maildir", "sync", root / "nope"])
        assert rc == 1
        assert "nope" in err and "panicked" not in err
