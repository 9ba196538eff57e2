"""IMAP with real clients over real sockets (issue 7; SPEC §4.2 imap directives, §5.6).

Every test runs twice, against ownmail's IMAP server and against Dovecot, both serving the
Maildir that ownmail's SMTP side delivers into with the article's v2 configuration (the
`vusers` table being a Dovecot-style passwd-file used as the userbase); see imap_world.py.
Clients: Python's imaplib, a raw IMAP dialogue (ImapConn: exact replies, hostile input),
and mbsync (isync).

The worlds are module-scoped (one per server kind), so tests find each other's mail in the
mailbox: they use unique markers and UIDs, never absolute message counts.
"""

import datetime
import imaplib
import os
import re
import shutil
import time
import uuid
from pathlib import Path

import pytest

from conftest import lf
from imap_world import (
    MBSYNCRC,
    _TRANSFER_RX,
    IMAP_HOST,
    IMAPS_PORT,
    KINDS,
    PASSWORD,
    SPECIAL_USE,
    STARTTLS_PORT,
    USER,
    ImapClosed,
    Lit,
    client_tls_context,
    imap_world,
    maildir_find,
    quote,
    tree_outside,
    wait_in_maildir,
)


@pytest.fixture(scope="module", params=KINDS)
def world(request, ownmail):
    with imap_world(request.param, ownmail) as w:
        yield w


def marker(what):
    return f"imap-{what}-{uuid.uuid4().hex[:12]}"


def crlf_message(mark, body="Hello from the APPEND test.\r\n"):
    return (f"From: <alice@client.test>\r\nTo: <m@example.org>\r\nSubject: {mark}\r\n"
            f"Message-ID: <{mark}@client.test>\r\nDate: Tue, 14 Jul 2026 02:44:25 +0200\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"{body}END {mark}\r\n").encode("utf-8")


def not_ok(r, c, what):
    assert r.status in ("NO", "BAD"), (
        f"{what}: expected a tagged NO or BAD, got `{r}`\n{c.dialogue()}")


# =========================================================================== login


def test_imaps_login_with_imaplib_and_bad_password_gets_no(world):
    m = world.imaplib_ssl()
    try:
        typ, data = m.login(USER, PASSWORD)
        assert typ == "OK", (typ, data)
        assert "IMAP4REV1" in m.capabilities, m.capabilities
        typ, data = m.select("INBOX")
        assert typ == "OK", (typ, data)
    finally:
        m.logout()

    # imaplib turns a tagged NO into IMAP4.error (a BAD would say "command error")
    m = world.imaplib_ssl()
    try:
        with pytest.raises(imaplib.IMAP4.error) as e:
            m.login(USER, PASSWORD + "x")
        assert "command error" not in str(e.value), f"BAD, not NO: {e.value}"
    finally:
        m.shutdown()

    # the same over a raw dialogue: exactly NO, and the session goes on (not authenticated)
    with world.conn() as c:
        r = c.command(f"LOGIN {USER} {quote('wrong-' + PASSWORD)}", timeout=15)
        assert r.status == "NO", f"bad password: expected NO, got `{r}`\n{c.dialogue()}"
        not_ok(c.command("SELECT INBOX"), c, "SELECT after a failed LOGIN")
        c.login()
        c.select("INBOX")
        c.logout()


def test_starttls_login_with_imaplib(world):
    m = world.imaplib_plain()
    try:
        assert "STARTTLS" in m.capabilities, m.capabilities
        typ, data = m.starttls(ssl_context=client_tls_context(world.cafile))
        assert typ == "OK", (typ, data)
        typ, data = m.login(USER, PASSWORD)
        assert typ == "OK", (typ, data)
        typ, data = m.select("INBOX")
        assert typ == "OK", (typ, data)
        typ, data = m.noop()
        assert typ == "OK", (typ, data)
    finally:
        m.logout()


def test_logindisabled_before_tls_and_login_refused_there(world):
    with world.conn(STARTTLS_PORT) as c:
        caps = c.capabilities()
        assert "LOGINDISABLED" in caps, (
            f"no LOGINDISABLED before TLS on the TLS-only port: {sorted(caps)}\n{c.dialogue()}")
        assert "STARTTLS" in caps, f"no STARTTLS: {sorted(caps)}"
        r = c.command(f"LOGIN {USER} {quote(PASSWORD)}", timeout=15)
        assert r.status in ("NO", "BAD"), (
            f"LOGIN with the right password before TLS must be refused, got `{r}`\n"
            f"{c.dialogue()}")
        r = c.command("AUTHENTICATE PLAIN " + _sasl_plain(USER, PASSWORD), timeout=15)
        assert r.status in ("NO", "BAD"), (
            f"AUTHENTICATE PLAIN before TLS must be refused, got `{r}`\n{c.dialogue()}")
        not_ok(c.command("SELECT INBOX"), c, "SELECT after the refused LOGIN")

        c.ok("STARTTLS")
        c.starttls(world.cafile)
        caps = c.capabilities()
        assert "LOGINDISABLED" not in caps, f"LOGINDISABLED after STARTTLS: {sorted(caps)}"
        assert "STARTTLS" not in caps, f"STARTTLS offered again after TLS: {sorted(caps)}"
        c.login()
        c.select("INBOX")
        c.logout()

    with world.conn(IMAPS_PORT) as c:
        caps = c.capabilities()
        assert "LOGINDISABLED" not in caps and "STARTTLS" not in caps, (
            f"imaps: {sorted(caps)}\n{c.dialogue()}")


def _sasl_plain(user, password):
    import base64
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


# Issue 7's list. CONDSTORE, QRESYNC and COMPRESS=DEFLATE (also in SPEC §5.6) are issue 11's.
COMMON_CAPS = {"IMAP4REV1", "IDLE", "UIDPLUS", "MOVE", "SPECIAL-USE", "LITERAL+", "NAMESPACE",
               "ENABLE", "UNSELECT", "ID", "CHILDREN", "SASL-IR", "ESEARCH", "LIST-STATUS"}
# Asked of ownmail too (Dovecot needs plugins or a quota for them)
SPEC_ONLY_CAPS = {"IMAP4REV2", "APPENDLIMIT"}


def test_capabilities_after_login(world):
    with world.session() as c:
        caps = c.capabilities()
        caps_names = {x.split("=")[0] if x.startswith("APPENDLIMIT") else x for x in caps}
        want = COMMON_CAPS | (SPEC_ONLY_CAPS if world.kind == "ownmail" else set())
        missing = want - caps_names
        assert not missing, f"CAPABILITY lacks {sorted(missing)}: {sorted(caps)}"
        c.logout()


# =========================================================================== SMTP -> IMAP


def test_smtp_delivery_appears_in_select_with_the_sent_bytes(world):
    with world.session() as c:
        before = c.select("INBOX")
        mark = marker("smtp")
        msg, path = world.deliver(mark)

        after = c.select("INBOX")
        assert after["exists"] >= before["exists"] + 1, (
            f"EXISTS {before['exists']} -> {after['exists']} after a delivery\n{c.dialogue()}")
        assert after["uidvalidity"] == before["uidvalidity"]
        uids = c.uid_search(f"SUBJECT {quote(mark)}")
        assert len(uids) == 1, f"UID SEARCH SUBJECT {mark} -> {uids}\n{c.dialogue()}"
        uid = uids[0]
        assert uid >= (before["uidnext"] or 1), f"UID {uid} < UIDNEXT {before['uidnext']}"

        f = c.uid_fetch(uid, "UID RFC822.SIZE FLAGS BODY.PEEK[]").get(uid)
        assert f is not None and f.body is not None, f"no BODY[] for UID {uid}\n{c.dialogue()}"
        body = f.body
        assert b"\n" not in body.replace(b"\r\n", b""), (
            "BODY[] has bare LF line endings: the Maildir file (LF) must be served with CRLF "
            f"(RFC 9051 2.3.4/6.4.5, RFC 5322 2.1; RFC822.SIZE {f.size}, len {len(body)}):\n"
            f"{body[:600]!r}")
        assert body.endswith(msg), (
            "BODY[] does not end with the message as sent over SMTP (CRLF):\n"
            f"--- BODY[] ---\n{body[:3000]!r}\n--- sent ---\n{msg[:3000]!r}")
        added = body[: len(body) - len(msg)]
        assert added.endswith(b"\r\n"), added
        names = [ln.split(b":", 1)[0].lower() for ln in added.split(b"\r\n")
                 if ln and ln[:1] not in (b" ", b"\t")]
        assert b"received" in names, f"no Received: among the added headers: {added!r}"
        assert b"return-path" in names and b"delivered-to" in names, added
        assert f.size == len(body), f"RFC822.SIZE {f.size} != len(BODY[]) {len(body)}"
        assert "\\Seen" not in (f.flags or set()), f"BODY.PEEK[] set \\Seen: {f.flags}"
        # the file on disk is the same message with LF line endings
        assert Path(wait_in_maildir(world.maildir, mark)).read_bytes() == lf(body)

        # a plain BODY[] fetch sets \Seen (RFC 3501 6.4.5)
        f = c.uid_fetch(uid, "UID BODY[]").get(uid)
        assert f is not None and f.body == body
        f = c.uid_fetch(uid, "UID FLAGS").get(uid)
        assert f and "\\Seen" in f.flags, f"FETCH BODY[] did not set \\Seen\n{c.dialogue()}"
        c.logout()


def _maildir_flags(path):
    name = Path(path).name
    return name.split(":2,", 1)[1] if ":2," in name else None


def test_flags_uids_and_uidvalidity_survive_a_restart_and_are_in_file_names(world):
    m1, m2 = marker("flags1"), marker("flags2")
    world.deliver(m1)
    world.deliver(m2)
    with world.session() as c:
        info = c.select("INBOX")
        (uid1,) = c.uid_search(f"SUBJECT {quote(m1)}")
        (uid2,) = c.uid_search(f"SUBJECT {quote(m2)}")
        assert uid2 > uid1
        r = c.ok(f"UID STORE {uid1} +FLAGS (\\Seen \\Flagged)")
        got = [u for u in r.lines(r"FETCH") if "FLAGS" in u.text]
        assert got and "\\Flagged" in got[0].text and "\\Seen" in got[0].text, (
            f"UID STORE without .SILENT must answer with the new FLAGS\n{c.dialogue()}")
        c.ok(f"UID STORE {uid2} +FLAGS.SILENT (\\Answered)")
        c.logout()

    def on_disk(mark):
        files = maildir_find(world.maildir, mark)
        assert len(files) == 1, f"{mark}: {files}"
        return files[0]

    p1, p2 = on_disk(m1), on_disk(m2)
    assert p1.parent.name == "cur" and _maildir_flags(p1) == "FS", (
        f"\\Seen \\Flagged should be `:2,FS` in cur/: {p1}")
    assert p2.parent.name == "cur" and _maildir_flags(p2) == "R", f"\\Answered: {p2}"

    world.restart_imap()

    with world.session() as c:
        again = c.select("INBOX")
        assert again["uidvalidity"] == info["uidvalidity"], (
            f"UIDVALIDITY changed over a restart: {info['uidvalidity']} -> "
            f"{again['uidvalidity']}")
        assert again["uidnext"] is None or again["uidnext"] > uid2
        assert c.uid_search(f"SUBJECT {quote(m1)}") == [uid1]
        assert c.uid_search(f"SUBJECT {quote(m2)}") == [uid2]
        fl = c.uid_fetch(f"{uid1},{uid2}", "UID FLAGS")
        assert {"\\Seen", "\\Flagged"} <= fl[uid1].flags, fl[uid1].text
        assert "\\Answered" in fl[uid2].flags and "\\Seen" not in fl[uid2].flags, fl[uid2].text
        assert set(c.uid_search("FLAGGED")) >= {uid1}

        # new mail after the restart gets a UID above every old one
        m3 = marker("flags3")
        world.deliver(m3)
        c.ok("NOOP")
        (uid3,) = c.uid_search(f"SUBJECT {quote(m3)}")
        assert uid3 > uid2

        c.ok(f"UID STORE {uid1} -FLAGS.SILENT (\\Flagged)")
        c.logout()
    assert _maildir_flags(on_disk(m1)) == "S"


# =========================================================================== APPEND


def _internaldate(text):
    m = re.search(r'INTERNALDATE "([^"]+)"', text)
    assert m, text
    return datetime.datetime.strptime(m.group(1).strip(), "%d-%b-%Y %H:%M:%S %z")


def test_append_round_trips_with_appenduid(world):
    mark = marker("append")
    msg = crlf_message(mark)
    with world.session() as c:
        st = c.ok('STATUS "Drafts" (UIDVALIDITY UIDNEXT MESSAGES)')
        m = re.search(r"UIDVALIDITY (\d+)", " ".join(u.text for u in st.untagged))
        assert m, c.dialogue()
        validity = int(m.group(1))
        r = c.ok('APPEND "Drafts" (\\Seen \\Draft) "14-Jul-2026 02:44:25 +0200" ', Lit(msg))
        m = re.match(r"APPENDUID (\d+) (\d+)$", r.code or "")
        assert m, f"no [APPENDUID v uid] in `{r}`\n{c.dialogue()}"
        assert int(m.group(1)) == validity, f"APPENDUID {m.group(1)} != UIDVALIDITY {validity}"
        uid = int(m.group(2))

        c.select("Drafts")
        f = c.uid_fetch(uid, "UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[]").get(uid)
        assert f is not None, f"UID {uid} from APPENDUID is not in Drafts\n{c.dialogue()}"
        assert f.body == msg, f"APPENDed {msg!r}\nfetched {f.body!r}"
        assert f.size == len(msg)
        assert {"\\Seen", "\\Draft"} <= f.flags, f.flags
        want = datetime.datetime(2026, 7, 14, 0, 44, 25, tzinfo=datetime.timezone.utc)
        assert _internaldate(f.text) == want, f"INTERNALDATE: {f.text}"

        files = maildir_find(world.maildir / ".Drafts", mark)
        assert len(files) == 1 and _maildir_flags(files[0]) == "DS", (
            f"the APPENDed message on disk: {files} (expected .Drafts/cur/...:2,DS)")
        on_disk = files[0].read_bytes()
        c.logout()

    # imaplib's append (a synchronizing literal) into INBOX
    mark2 = marker("append-imaplib")
    msg2 = crlf_message(mark2, body="Appended by imaplib.\r\n")
    im = world.imaplib_ssl()
    try:
        im.login(USER, PASSWORD)
        typ, data = im.append("INBOX", "(\\Flagged)", imaplib.Time2Internaldate(time.time()),
                              msg2)
        assert typ == "OK", (typ, data)
        m = re.search(rb"\[APPENDUID (\d+) (\d+)\]", data[0] or b"")
        assert m, f"no APPENDUID in {data}"
        uid2 = int(m.group(2))
        im.select("INBOX")
        typ, data = im.uid("FETCH", str(uid2), "(BODY.PEEK[] FLAGS)")
        assert typ == "OK" and isinstance(data[0], tuple), (typ, data)
        assert data[0][1] == msg2, data
        assert b"\\Flagged" in data[0][0] or b"\\Flagged" in (data[1] or b""), data
    finally:
        im.logout()

    assert on_disk == lf(msg), (
        "the APPENDed message is not stored with LF line endings like delivered mail and "
        f"Dovecot's APPEND (the Maildir convention):\n{on_disk[:300]!r}")


# =========================================================================== folders


def test_create_rename_delete_and_list(world):
    tag = uuid.uuid4().hex[:8]
    with world.session() as c:
        d = c.delimiter()
        assert d in ("/", "."), f"hierarchy delimiter {d!r}"
        a, b, cnew = f"Proj{tag}", f"Proj{tag}{d}Sub", f"Moved{tag}"
        c.ok(f"CREATE {quote(a)}")
        c.ok(f"CREATE {quote(b)}")
        not_ok(c.command(f"CREATE {quote(a)}"), c, "CREATE of an existing folder")
        names = c.list('""', quote(f"Proj{tag}*"))
        assert set(names) == {a, b}, f"LIST Proj{tag}*: {names}\n{c.dialogue()}"
        assert "\\haschildren" in names[a][0], f"{a} should be \\HasChildren: {names[a]}"
        assert (world.maildir / f".Proj{tag}").is_dir()
        assert (world.maildir / f".Proj{tag}.Sub").is_dir(), sorted(os.listdir(world.maildir))

        mark = marker("folder")
        c.ok(f"APPEND {quote(b)} ", Lit(crlf_message(mark)))

        c.ok(f"RENAME {quote(a)} {quote(cnew)}")
        names = c.list()
        assert a not in names and b not in names, f"old names still listed: {sorted(names)}"
        assert cnew in names and f"{cnew}{d}Sub" in names, (
            f"RENAME must move the inferior folders too (RFC 3501 6.3.5): {sorted(names)}")
        assert not (world.maildir / f".Proj{tag}").exists()
        assert (world.maildir / f".Moved{tag}.Sub").is_dir()
        c.select(f"{cnew}{d}Sub")
        assert c.uid_search(f"SUBJECT {quote(mark)}"), "the message did not follow the RENAME"
        c.ok("UNSELECT")

        c.ok(f"DELETE {quote(cnew + d + 'Sub')}")
        c.ok(f"DELETE {quote(cnew)}")
        names = c.list()
        assert not [n for n in names if tag in n], f"deleted folders still listed: {names}"
        assert not [n for n in os.listdir(world.maildir) if tag in n], (
            f"deleted folders left on disk: {sorted(os.listdir(world.maildir))}")
        not_ok(c.command(f"SELECT {quote(cnew)}"), c, "SELECT of a deleted folder")
        not_ok(c.command("DELETE INBOX"), c, "DELETE INBOX")
        c.logout()


def test_special_use_folders_are_listed(world):
    with world.session() as c:
        names = c.list()
        for name, use in SPECIAL_USE.items():
            assert name in names, f"{name} missing from LIST: {sorted(names)}\n{c.dialogue()}"
            assert use.lower() in names[name][0], (
                f"{name} lacks {use}: {names[name]}\n{c.dialogue()}")
            c.ok(f"STATUS {quote(name)} (MESSAGES)")
        assert "INBOX" in names
        c.logout()


def test_uid_move_and_expunge(world):
    tag = uuid.uuid4().hex[:8]
    folder = f"MoveTo{tag}"
    m1, m2 = marker("move"), marker("expunge")
    msg1, msg2 = crlf_message(m1), crlf_message(m2)
    with world.session() as c:
        c.ok(f"CREATE {quote(folder)}")
        c.ok("APPEND INBOX ", Lit(msg1))
        c.ok("APPEND INBOX ", Lit(msg2))
        c.select("INBOX")
        (u1,) = c.uid_search(f"SUBJECT {quote(m1)}")
        (u2,) = c.uid_search(f"SUBJECT {quote(m2)}")

        r = c.ok(f"UID MOVE {u1} {quote(folder)}")
        codes = [r.code or ""] + [u.text for u in r.untagged]
        assert any("COPYUID" in x for x in codes), f"no COPYUID for UID MOVE\n{c.dialogue()}"
        assert r.lines(r"^\* \d+ EXPUNGE"), f"no `* N EXPUNGE` for UID MOVE\n{c.dialogue()}"
        assert c.uid_search(f"SUBJECT {quote(m1)}") == []
        assert not maildir_find(world.maildir, m1), "moved message still in INBOX on disk"
        assert len(maildir_find(world.maildir / f".{folder}", m1)) == 1

        c.ok(f"UID STORE {u2} +FLAGS.SILENT (\\Deleted)")
        r = c.ok("EXPUNGE")
        assert r.lines(r"^\* \d+ EXPUNGE"), f"no `* N EXPUNGE`\n{c.dialogue()}"
        assert c.uid_search(f"SUBJECT {quote(m2)}") == []
        assert not maildir_find(world.maildir, m2), "expunged message still on disk"

        c.select(folder)
        (u,) = c.uid_search(f"SUBJECT {quote(m1)}")
        assert c.uid_fetch(u, "UID BODY.PEEK[]")[u].body == msg1
        c.ok("UNSELECT")
        c.ok(f"DELETE {quote(folder)}")
        c.logout()


# =========================================================================== IDLE


def test_idle_reports_new_mail_within_two_seconds_of_delivery(world):
    with world.session() as c:
        n0 = c.select("INBOX")["exists"]
        tag = c.next_tag()
        c.send(f"{tag} IDLE\r\n")
        r = c.read(5)
        assert r.text.startswith("+"), f"IDLE not accepted: {r.text}\n{c.dialogue()}"

        mark = marker("idle")
        world.deliver(mark)
        delivered_at = time.monotonic()
        got = None
        while got is None:
            left = delivered_at + 2.0 - time.monotonic()
            try:
                r = c.read(max(left, 0.01))
            except TimeoutError:
                pytest.fail(f"no `* N EXISTS` within 2 s of the delivery (IDLE)\n"
                            f"{c.dialogue()}\n{world.server_log()}")
            m = re.match(r"^\* (\d+) EXISTS", r.text)
            if m and int(m.group(1)) > n0:
                got = int(m.group(1))
        c.send("DONE\r\n")
        r = c._until_tagged(tag, [], 5)
        assert r.status == "OK", f"IDLE ended with `{r}`\n{c.dialogue()}"
        assert c.uid_search(f"SUBJECT {quote(mark)}"), c.dialogue()
        c.logout()


# =========================================================================== mbsync





def _local_files(local):
    out = set()
    for dirpath, _, files in os.walk(local):
        for f in files:
            if not f.startswith("."):
                out.add(os.path.relpath(os.path.join(dirpath, f), local))
    return out


def test_mbsync_syncs_both_ways_and_a_second_run_transfers_nothing(world):
    if shutil.which("mbsync") is None:
        pytest.fail("mbsync is missing: scripts/test installs the Debian package isync",
                    pytrace=False)
    local = world.root / f"mbsync-{uuid.uuid4().hex[:8]}"
    (local / "INBOX").mkdir(parents=True)
    for sub in ("new", "cur", "tmp"):
        (local / "INBOX" / sub).mkdir()
    up = marker("mbsync-up")
    (local / "INBOX" / "new" / f"{int(time.time())}.om{os.getpid()}_1.client").write_bytes(
        lf(crlf_message(up, body="Written to the local Maildir, pushed by mbsync.\r\n")))
    down = marker("mbsync-down")
    msg, _ = world.deliver(down)

    rc_file = local.parent / f"{local.name}.rc"
    rc_file.write_text(MBSYNCRC.format(host=IMAP_HOST, port=IMAPS_PORT, user=USER,
                                       password=PASSWORD, ca=world.cafile, local=local),
                       encoding="utf-8")

    def mbsync():
        rc, out, err = world.ns(["mbsync", "-c", rc_file, "-Dn", "om"], timeout=90)
        text = out + err
        assert rc == 0, f"mbsync failed (status {rc}):\n{text[-6000:]}\n{world.server_log()}"
        return text

    first = mbsync()
    # down: the SMTP-delivered message is in the local INBOX, bytes intact
    got = [p for p in (local / "INBOX").rglob("*") if p.is_file() and down.encode() in
           p.read_bytes()]
    assert len(got) == 1, f"{down} pulled {len(got)} times:\n{first[-4000:]}"
    # mbsync adds an X-TUID: header to the copies it writes (its own tracking)
    pulled = re.sub(rb"(?m)^X-TUID: \S*\n", b"", got[0].read_bytes().replace(b"\r\n", b"\n"))
    assert pulled.endswith(lf(msg)), (
        f"the pulled copy does not end with the message sent:\n{pulled!r}\n---\n{lf(msg)!r}")
    for name in SPECIAL_USE:
        assert (local / name / "cur").is_dir(), f"mbsync did not create {name} locally"
    # up: the local message is on the server
    with world.session("INBOX") as c:
        assert len(c.uid_search(f"SUBJECT {quote(up)}")) == 1, (
            f"{up} was not pushed by mbsync\n{first[-4000:]}")
        n_server = c.select("INBOX")["exists"]
        c.logout()

    before = _local_files(local)
    second = mbsync()
    transfers = _TRANSFER_RX.findall(second)
    assert not transfers, (
        f"the second mbsync run transferred something ({transfers}):\n{second[-6000:]}")
    assert _local_files(local) == before, (
        f"the second run changed the local Maildir: +{_local_files(local) - before} "
        f"-{before - _local_files(local)}")
    with world.session() as c:
        assert c.select("INBOX")["exists"] == n_server
        assert len(c.uid_search(f"SUBJECT {quote(up)}")) == 1
        c.logout()


# =========================================================================== bad input


def test_commands_before_login_are_refused(world):
    for cmd in ("SELECT INBOX", "EXAMINE INBOX", 'LIST "" "*"', "FETCH 1 (FLAGS)",
                "UID FETCH 1:* (FLAGS)", 'CREATE "x"', "STATUS INBOX (MESSAGES)", "IDLE",
                "EXPUNGE", 'DELETE "Trash"'):
        with world.conn() as c:
            try:
                r = c.command_raw(cmd)
            except ImapClosed:
                pytest.fail(f"`{cmd}` before login closed the connection\n{c.dialogue()}")
            not_ok(r, c, f"{cmd} before login")
    with world.conn() as c:
        r = c.command("APPEND INBOX ", Lit(b"Subject: x\r\n\r\nx\r\n"))
        not_ok(r, c, "APPEND before login")
    world.assert_alive()


def test_unbalanced_and_malformed_syntax_gets_bad(world):
    pre = ["LOGIN {5", "LOGIN {abc}", 'LOGIN "m', "LOGIN m", "LOGIN", 'LOGIN "m" "x" "y"',
           "NOSUCHCOMMAND", "\x01\x02", "LOGIN m {-1}"]
    for line in pre:
        with world.conn() as c:
            r = c.command_raw(line)
            not_ok(r, c, repr(line))
    post = ['SELECT "INBOX', "FETCH 1 (FLAGS", "FETCH 1 FLAGS)", "STORE 1 +FLAGS (\\Seen",
            'LIST "" "*', 'SEARCH SUBJECT "x', "UID FETCH 1 (BODY[HEADER.FIELDS (Subject)",
            "SELECT {abc}", 'STATUS INBOX (MESSAGES']
    with world.session() as c:
        c.ok("APPEND INBOX ", Lit(crlf_message(marker("syntax"))))
        c.select("INBOX")
        for line in post:
            not_ok(c.command(line), c, repr(line))
        c.logout()
    # a literal cut short: announced 20 bytes, 3 sent, then the client goes away
    with world.session() as c:
        tag = c.next_tag()
        c.send(f"{tag} SELECT {{20}}\r\n")
        r = c.read(5)
        assert r.text.startswith("+"), c.dialogue()
        c.send(b"INB")
        c.close()
    # LITERAL+ cut short
    with world.session() as c:
        c.send(b"x1 APPEND INBOX {500+}\r\nSubject: cut short\r\n")
        c.close()
    world.assert_alive()


GB2 = 2147483648


def _appendlimit(c):
    caps = c.capabilities()
    limit = [int(x.split("=")[1]) for x in caps if re.fullmatch(r"APPENDLIMIT=\d+", x)]
    return limit[0] if limit else None


def test_a_2gb_literal_before_login_is_refused_not_awaited(world):
    with world.conn() as c:
        tag = c.next_tag()
        c.send(f"{tag} LOGIN {{{GB2}}}\r\n")
        try:
            r = c.read(10)
            assert not r.text.startswith("+"), (
                f"the server asks for a 2 GB literal before login\n{c.dialogue()}")
            assert re.match(rf"^({tag} (NO|BAD)|\* BYE)\b", r.text), c.dialogue()
        except ImapClosed:
            pass       # closing the connection is a refusal too
        except TimeoutError:
            pytest.fail(f"no answer within 10 s to a 2 GB literal before login: the server "
                        f"waits for the bytes\n{c.dialogue()}")
    world.assert_alive()


def test_a_2gb_append_over_appendlimit_is_refused_with_toobig(world):
    with world.session() as c:
        limit = _appendlimit(c)
        tag = c.next_tag()
        c.send(f"{tag} APPEND INBOX {{{GB2}}}\r\n")
        try:
            r = c.read(10)
        except (TimeoutError, ImapClosed) as e:
            pytest.fail(f"APPEND of 2 GB: no continuation and no answer ({e})\n{c.dialogue()}")
        # (Dovecot advertises no APPENDLIMIT without a quota and may ask for the bytes)
        if limit is not None and limit < GB2:
            assert not r.text.startswith("+"), (
                f"APPENDLIMIT={limit} but a 2 GB APPEND gets a continuation\n{c.dialogue()}")
            assert re.match(rf"^{tag} (NO|BAD)\b", r.text), c.dialogue()
            assert "[TOOBIG]" in r.text.upper(), (
                f"an APPEND over APPENDLIMIT should be refused with the TOOBIG response code "
                f"(RFC 7889 3, RFC 9051 7.1)\n{c.dialogue()}")
    world.assert_alive()


def test_a_2gb_nonsynchronizing_literal_is_refused_or_drained_in_bounded_memory(world):
    """LITERAL+ `{2147483648+}`: the bytes follow without waiting. The server may answer
    BAD/NO (or BYE and close) early, or read and discard the literal; it must not hold it
    in memory (ownmail's RSS is measured; Dovecot spools APPENDs to a file)."""
    chunk = b"X-Filler: " + b"x" * 1000 + b"\r\n"
    chunk *= (1 << 20) // len(chunk)
    with world.session() as c:
        rss0 = world.server_rss_kib()
        tag = c.next_tag()
        c.send(f"{tag} APPEND INBOX {{{GB2}+}}\r\n")
        sent, end = 0, time.monotonic() + 20
        c.sock.settimeout(5)
        try:
            while sent < (96 << 20) and time.monotonic() < end:
                c.sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass        # the server stopped reading or closed: look at its answer
        c._note("C:", f"... {sent >> 20} MiB of the literal sent")
        try:
            r = c.read(3)
            assert re.match(rf"^({tag} (NO|BAD)|\* BYE)\b", r.text), c.dialogue()
        except (ImapClosed, TimeoutError):
            pass
        rss1 = world.server_rss_kib()
        if rss0 is not None:
            assert rss1 - rss0 < 48 * 1024, (
                f"the server's RSS grew by {(rss1 - rss0) >> 10} MiB while {sent >> 20} MiB "
                f"of a 2 GB literal came in: it buffers the literal\n{c.dialogue()}")
        c.close()
    world.assert_alive()


def test_ten_thousand_nested_parentheses(world):
    deep = 10_000
    with world.session() as c:
        c.ok("APPEND INBOX ", Lit(crlf_message(marker("nested"))))
        c.select("INBOX")
        r = c.command("FETCH 1 " + "(" * deep + "FLAGS" + ")" * deep, timeout=20)
        not_ok(r, c, "FETCH with 10,000 nested parentheses")
        # valid syntax (RFC 3501 search-key "(" search-key ")"): any answer, but an answer
        r = c.command("SEARCH " + "(" * deep + "ALL" + ")" * deep, timeout=20)
        r = c.command("APPEND INBOX " + "(" * deep + ")" * deep + " ",
                      Lit(b"Subject: x\r\n\r\nx\r\n"), timeout=20)
        not_ok(r, c, "APPEND with 10,000 nested flag lists")
        c.ok("NOOP")
        c.logout()
    world.assert_alive()


# Dovecot (2.3) takes `1,` as `1`, and a UID beyond 2^32 in UID FETCH as "no such UID"
DOVECOT_LENIENT_SETS = {"1,", "99999999999999999999"}
BAD_SETS = ["0", "0:*", "1:0", "a", "1,,2", "1:", ":1", ",1", "1,", "4294967296",
            "99999999999999999999", "-1", "1:2:3", "*:*:*", "1.5", "1 :2", "%", "$$"]


def test_invalid_sequence_sets(world):
    with world.session() as c:
        c.ok("APPEND INBOX ", Lit(crlf_message(marker("seq"))))
        c.logout()
    cmds = []
    for s in BAD_SETS:
        cmds += [(s, f"FETCH {s} (FLAGS)"), (s, f"UID FETCH {s} (FLAGS)"),
                 (s, f"STORE {s} +FLAGS.SILENT (\\Seen)"), (s, f"COPY {s} Trash")]
    # a fresh session every 8 commands: servers may hang up after many BADs (both do at ~20)
    accepted = []
    for i in range(0, len(cmds), 8):
        with world.session("INBOX") as c:
            for s, cmd in cmds[i:i + 8]:
                r = c.command(cmd)
                if world.kind == "dovecot" and s in DOVECOT_LENIENT_SETS:
                    continue
                if r.status not in ("NO", "BAD"):
                    accepted.append(f"{cmd} -> {r}")
            c.logout()
    assert not accepted, "invalid sequence sets accepted:\n" + "\n".join(accepted)
    world.assert_alive()


class _Attempts:
    """Runs commands in one session, reconnecting when the server drops it; records
    (label, name, Tagged or None for a lost connection)."""

    PER_SESSION = 10    # both servers hang up after ~20 errors in one session

    def __init__(self, world):
        self.world = world
        self.c = world.session()
        self.n = 0
        self.results, self.dialogues = [], []

    def run(self, label, name, *parts):
        self.n += 1
        if self.n % self.PER_SESSION == 0:
            self.c.logout()
            self.c = self.world.session()
        try:
            r = self.c.command_raw(*parts, timeout=15)
        except (ImapClosed, TimeoutError) as e:
            self.dialogues.append(f"({label} {name[:40]!r}: {e})\n{self.c.dialogue(12)}")
            self.results.append((label, name, None))
            self.c.close()
            self.c = self.world.session()
            return None
        self.results.append((label, name, r))
        if r.status == "OK" and label in ("SELECT", "EXAMINE"):
            self.setup("UNSELECT")
        return r

    def setup(self, line):
        try:
            self.c.command_raw(line, timeout=15)
        except (ImapClosed, TimeoutError):
            self.c.close()
            self.c = self.world.session()

    def close(self):
        self.c.logout()


def test_hostile_folder_names_stay_inside_the_maildir(world):
    tag = uuid.uuid4().hex[:10]
    esc = f"om-esc-{tag}"
    root = world.root
    vmail = world.maildir.parent
    # canaries outside m's Maildir that a path escape would touch
    (vmail / "canary").mkdir(exist_ok=True)
    (vmail / "canary" / "keep").write_text("keep\n")
    (vmail / ".canary").mkdir(exist_ok=True)
    (root / "canary-file").write_text("keep\n")
    with world.session() as c:
        c.ok("APPEND INBOX ", Lit(crlf_message(marker("hostile"))))
        delim = c.delimiter()
        c.logout()
    inside = [world.maildir, root / "spool", root / "dv", root / "dovecot.log",
              root / "dovecot.out"]
    snapshot = tree_outside(root, inside)

    names = [f"../{esc}", f"../../{esc}", f"../../../../../../../../{esc}", "..", ".",
             "../canary", "../.canary", f"x/../../{esc}", f"/{esc}", "/etc", f"/etc/{esc}",
             f"{root}/{esc}", f"~/{esc}", f"~root/{esc}", f"..\\{esc}", f"%{esc}", f"*{esc}",
             f"a%b{tag}", f"a*b{tag}", "%", "*", "x" * 10240, "/", "//", f"{tag}/", f"/{tag}",
             f"{tag}//x"]
    lits = [f"ab\0cd{tag}".encode(), f"../\0{esc}".encode(), b"\0"]
    src = f"Src{tag}"
    att = _Attempts(world)
    for n in names:
        b = n.encode()
        att.setup("SELECT INBOX")
        att.run("COPY", n, "COPY 1:* ", Lit(b))
        for cmd in ("CREATE", "SELECT", "EXAMINE", "DELETE", "STATUS"):
            att.run(cmd, n, f"{cmd} ", Lit(b), *([" (MESSAGES)"] if cmd == "STATUS" else []))
        att.setup(f"CREATE {src}")
        att.run(f"RENAME {src}", n, f"RENAME {src} ", Lit(b))
        att.run("RENAME <hostile> INBOX", n, "RENAME ", Lit(b), " INBOX")
        att.run("APPEND", n, "APPEND ", Lit(b), " ", Lit(b"Subject: x\r\n\r\nx\r\n"))
        att.run("SUBSCRIBE", n, "SUBSCRIBE ", Lit(b))
    for b in lits:
        n = b.decode("utf-8", "replace")
        for cmd in ("CREATE", "SELECT", "DELETE"):
            att.run(cmd, n, f"{cmd} ", Lit(b))
    for ref, pat in (('"../"', '"*"'), ('"/"', '"*"'), ('""', '"../*"'), ('"/etc/"', '"%"'),
                     ('""', quote("/*")), ('"~root/"', '"*"'), ('""', quote(f"{root}/*"))):
        r = att.run("LIST", f"{ref} {pat}", f"LIST {ref} {pat}")
        listed = [u.text for u in r.lines(r"^\* LIST ")] if r is not None else []
        bad = [x for x in listed if re.search(r"canary|passwd|vmail|spool|shadow", x)]
        assert not bad, f"LIST {ref} {pat} shows names outside the Maildir: {bad}"
    att.close()

    # Dovecot (2.3) creates folders whose names hold the LIST wildcards % and * (RFC 3501
    # 5.1 only says they SHOULD NOT be used), and cuts a literal name at a NUL (`ab\0cd` is
    # taken as `ab`; RFC 3501's CHAR8 excludes NUL): accepted from Dovecot, not from ownmail.
    # A name that starts with `~` means nothing special in IMAP: a server may take `~/x` as
    # a folder of that name inside the Maildir (ownmail does; Dovecot refuses it), as long as
    # nothing appears outside (checked below).
    # And `NAME/` (the delimiter at the end) is RFC 3501 6.3.3's way to create NAME.
    def lenient(name):
        return ((world.kind == "dovecot" and re.search(r"[%*\0]", name))
                or name.startswith("~")
                or re.fullmatch(rf"[0-9a-f]+{re.escape(delim)}", name))

    refused_wrongly = [
        f"{cmd} {n if len(n) < 80 else n[:20] + f'...({len(n)} chars)'!r} -> {r}"
        for cmd, n, r in att.results
        if cmd != "LIST" and (r is None or r.status == "OK") and not lenient(n)]
    assert not refused_wrongly, (
        "hostile folder names not refused with NO or BAD (None: the connection was lost):\n"
        + "\n".join(refused_wrongly) + "\n" + "\n".join(att.dialogues[-3:]))

    after = tree_outside(root, inside)
    assert after == snapshot, (
        f"files appeared/disappeared outside the Maildir: +{sorted(after - snapshot)} "
        f"-{sorted(snapshot - after)}")
    assert (vmail / "canary" / "keep").read_text() == "keep\n"
    assert (root / "canary-file").is_file()
    for d in (Path("/"), Path("/etc"), Path("/tmp"), Path.cwd(), root, vmail, root / "var"):
        hits = [p for p in d.iterdir() if tag in p.name] if d.is_dir() else []
        assert not hits, f"escaped into {d}: {hits}"
    world.assert_alive()
