"""`ownmail serve` delivering to mbox (SPEC §5.3): /var/mail/USER in the mboxrd form.

/var/mail is the machine's: ownmail runs in a private mount namespace with a tmpfs on
/var/mail (`unshare -m sh -c 'mount -t tmpfs ...; exec ownmail serve ...'`), and the test
reads the mbox through /proc/PID/root.
"""

import os
import re
import uuid
from pathlib import Path

from conftest import deadline_loop, lf, make_message, smtp_send, wait_queue_empty

SENDER = "alice@client.test"
PRIVATE_VAR_MAIL = ["unshare", "-m", "--", "sh", "-c",
                    'mount -t tmpfs -o mode=2775 tmpfs /var/mail && exec "$@"', "sh"]


def mboxrd_quote(data):
    """mboxrd: every line that is `>*From ` gets one more `>`."""
    return re.sub(rb"(?m)^(>*From )", rb">\1", data)


def test_mbox_delivery_appends_from_lines_and_quotes_from(mail_root, netns_lo_only,
                                                          ownmail_server):
    conf = mail_root / "smtpd.conf"
    conf.write_text("# ownmail e2e: local mail to mbox\n"
                    "listen on 127.0.0.1 port 25\n"
                    'action "local" mbox\n'
                    'match from local for local action "local"\n', encoding="utf-8")
    server = ownmail_server(conf, ns=netns_lo_only, wrap=PRIVATE_VAR_MAIL)
    mbox = Path(f"/proc/{server.pid}/root/var/mail/root")

    marks = [f"mbox-{uuid.uuid4().hex[:12]}" for _ in range(2)]
    msgs = [make_message(m, sender=SENDER, to="root@localhost",
                         body=["From the start of a line", ">From already quoted", "x"])
            for m in marks]
    with server.smtp() as s:
        for msg in msgs:
            smtp_send(s, SENDER, "root@localhost", msg)
    wait_queue_empty(server.spool, server=server)

    for _ in deadline_loop(10, 0.1):
        if mbox.exists() and all(f"END {m}".encode() in mbox.read_bytes() for m in marks):
            break
    data = mbox.read_bytes()
    for m in marks:
        assert f"END {m}".encode() in data, f"{m} not in /var/mail/root:\n{data[:2000]!r}"

    st = os.stat(mbox)
    assert st.st_uid == 0, f"/var/mail/root owned by uid {st.st_uid}"
    from_lines = [l for l in data.split(b"\n") if l.startswith(b"From ")]
    assert len(from_lines) == 2, f"From_ lines: {from_lines}"
    assert all(l.startswith(f"From {SENDER} ".encode()) for l in from_lines), from_lines
    assert data.startswith(b"From "), data[:200]
    for msg in msgs:
        body = mboxrd_quote(lf(msg))
        assert body in data, f"message not stored mboxrd-quoted:\n{data!r}"
        assert body + b"\n" in data, "no blank line after the message"
    assert b"\n>From the start of a line\n" in data
    assert b"\n>>From already quoted\n" in data
