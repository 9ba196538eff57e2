"""CONDSTORE and QRESYNC (RFC 7162) with a raw IMAP dialogue, against ownmail and Dovecot
(issue 11: "after changes in another session, a QRESYNC SELECT reports exactly the VANISHED
UIDs and changed flags").

The same script runs against both servers (see imap_world.py): a client remembers
UIDVALIDITY and HIGHESTMODSEQ, another session changes flags and expunges, a message is
delivered, the server restarts, and the first client comes back with SELECT (QRESYNC ...).
Messages are found by their Subject marker, so the module's tests never depend on each
other's mail.
"""

import re
import uuid

import pytest

from imap_world import KINDS, Fetched, imap_world


@pytest.fixture(scope="module", params=KINDS)
def world(request, ownmail):
    with imap_world(request.param, ownmail) as w:
        yield w


def marker(what):
    return f"qresync-{what}-{uuid.uuid4().hex[:12]}"


def uid_set(text):
    """`41,43:45` → {41, 43, 44, 45}."""
    out = set()
    for part in text.split(","):
        a, _, b = part.partition(":")
        lo, hi = sorted((int(a), int(b or a)))
        out.update(range(lo, hi + 1))
    return out


def highest_modseq(r):
    for u in r.untagged:
        if m := re.search(r"\[HIGHESTMODSEQ (\d+)\]", u.text):
            return int(m.group(1))
    raise AssertionError(f"no [HIGHESTMODSEQ n] in {r}")


def vanished_earlier(r):
    out = set()
    for u in r.lines(r"^\* VANISHED \(EARLIER\) "):
        out |= uid_set(u.text.split()[-1])
    return out


def fetches(r):
    """{uid: Fetched} of the untagged FETCH responses."""
    out = {}
    for u in r.lines(r"^\* \d+ FETCH "):
        f = Fetched(u)
        if f.uid is not None:
            out[f.uid] = f
    return out


def modseq_of(f):
    m = re.search(r"\bMODSEQ \((\d+)\)", f.text)
    assert m, f.text
    return int(m.group(1))


def deliver_some(world, what, n):
    """Delivers n messages over SMTP; returns their UIDs, in delivery order."""
    marks = [marker(f"{what}{i}") for i in range(n)]
    for m in marks:
        world.deliver(m)
    with world.session("INBOX") as c:
        uids = []
        for m in marks:
            r = c.ok(f'UID SEARCH SUBJECT "{m}"')
            found = [int(x) for u in r.lines(r"^\* SEARCH\b") for x in u.text.split()[2:]]
            assert len(found) == 1, f"{m}: {found}\n{c.dialogue()}"
            uids += found
        c.logout()
    return uids


def test_capabilities_and_enable(world):
    with world.session() as c:
        caps = c.capabilities()
        assert {"CONDSTORE", "QRESYNC"} <= caps, caps
        r = c.ok("ENABLE QRESYNC")
        assert r.lines(r"^\* ENABLED .*QRESYNC"), f"{r}\n{c.dialogue()}"
        c.logout()


def test_qresync_select_reports_exactly_what_changed_in_another_session(world):
    u1, u2, u3, u4, u5 = deliver_some(world, "base", 5)
    ours = f"{u1}:{u5}"

    # The client syncs and remembers where it was.
    with world.session() as c:
        c.ok("ENABLE QRESYNC")
        r = c.ok("SELECT INBOX")
        validity = int(re.search(r"\[UIDVALIDITY (\d+)\]",
                                 " ".join(u.text for u in r.untagged)).group(1))
        known = highest_modseq(r)
        c.logout()

    # Another session: flags changed on two messages, two expunged.
    with world.session("INBOX") as o:
        o.ok(f"UID STORE {u2} +FLAGS.SILENT (\\Flagged)")
        o.ok(f"UID STORE {u3} +FLAGS.SILENT (\\Seen $Work)")
        o.ok(f"UID STORE {u4},{u5} +FLAGS.SILENT (\\Deleted)")
        o.ok(f"UID EXPUNGE {u4},{u5}")
        o.logout()
    # The state is on disk: it survives a restart of the IMAP server.
    world.restart_imap()
    # And a new message arrives.
    (new,) = deliver_some(world, "new", 1)

    with world.session() as c:
        c.ok("ENABLE QRESYNC")
        r = c.ok(f"SELECT INBOX (QRESYNC ({validity} {known} {ours}))")
        assert highest_modseq(r) > known, f"{r}\n{c.dialogue()}"
        assert vanished_earlier(r) == {u4, u5}, f"{r}\n{c.dialogue()}"
        f = fetches(r)
        assert u1 not in f, f"unchanged message reported\n{c.dialogue()}"
        assert "\\Flagged" in f[u2].flags, c.dialogue()
        assert {"\\Seen", "$Work"} <= f[u3].flags, c.dialogue()
        assert modseq_of(f[u2]) > known and modseq_of(f[u3]) > known, c.dialogue()

        # The same question after SELECT: UID FETCH (CHANGEDSINCE n VANISHED).
        r = c.ok(f"UID FETCH {u1}:* (FLAGS) (CHANGEDSINCE {known} VANISHED)")
        assert vanished_earlier(r) == {u4, u5}, f"{r}\n{c.dialogue()}"
        f = fetches(r)
        assert set(f) == {u2, u3, new}, f"{r}\n{c.dialogue()}"
        c.logout()


def test_expunge_is_vanished_and_flag_updates_carry_modseq(world):
    a, b = deliver_some(world, "live", 2)
    with world.session() as c, world.session("INBOX") as o:
        c.ok("ENABLE QRESYNC")
        c.ok("SELECT INBOX")
        o.ok(f"UID STORE {a} +FLAGS.SILENT (\\Answered)")
        o.ok(f"UID STORE {b} +FLAGS.SILENT (\\Deleted)")
        o.ok(f"UID EXPUNGE {b}")
        r = c.ok("NOOP")
        texts = [u.text for u in r.untagged]
        assert any(re.match(rf"^\* VANISHED {b}$", t) for t in texts), c.dialogue()
        assert not any(t.endswith(" EXPUNGE") for t in texts), c.dialogue()
        f = fetches(r)
        assert "\\Answered" in f[a].flags and modseq_of(f[a]) > 0, c.dialogue()
        o.logout()
        c.logout()


def test_conditional_store_reports_modified(world):
    (a,) = deliver_some(world, "cond", 1)
    with world.session() as c, world.session("INBOX") as o:
        r = c.ok("SELECT INBOX (CONDSTORE)")
        assert highest_modseq(r) > 0
        before = modseq_of(fetches(c.ok(f"UID FETCH {a} (MODSEQ)"))[a])
        o.ok(f"UID STORE {a} +FLAGS.SILENT (\\Flagged)")
        r = c.ok(f"UID STORE {a} (UNCHANGEDSINCE {before}) +FLAGS (\\Answered)")
        assert re.search(rf"\[MODIFIED {a}\]", r.text), f"{r}\n{c.dialogue()}"
        r = c.ok(f"UID FETCH {a} (FLAGS MODSEQ)")
        f = fetches(r)[a]
        assert "\\Answered" not in f.flags and "\\Flagged" in f.flags, c.dialogue()
        r = c.ok(f"UID SEARCH MODSEQ {modseq_of(f)}")
        assert re.search(rf"\bSEARCH\b.*\b{a}\b", " ".join(u.text for u in r.untagged)), (
            c.dialogue())
        r = c.ok("STATUS INBOX (HIGHESTMODSEQ)")
        assert r.lines(r"HIGHESTMODSEQ \d+"), c.dialogue()
        o.logout()
        c.logout()
