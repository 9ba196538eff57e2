"""Credentials tables and who may send as whom (SPEC §4.3, §5.5, §6.1), beyond the article's
own `USER USER:HASH` file (test_submission_article.py covers that one).

Three variants of the article's v3 setup (all in a namespace, clients from 192.0.2.11):

- ``creds``: in_auth in the `USER HASH` form (hashes from Python's crypt, `$6$`), with a
  login that is an address (`m@tc2.fr`); aliases.v3's `root: m+piroot@6x9.fr` changed to
  `root: m+root@tc2.fr`, so that root@localhost (and nobody@localhost -> root) reach m; two
  more listeners: `port 465 smtps ... auth <in_auth>` and `port 2587 tls auth-optional`.
- ``onefile``: one `passwd:` users file (Dovecot style, `{SHA512-CRYPT}` hashes) serves as
  in_auth and as the userbase (SPEC §6.1): login `m`.
- ``senders``: in_auth as in the article plus `senders <sndr>` on port 587 and
  `senders <sndr> masquerade` on a second submission port 588; sndr maps
  `mayeu -> boss@corp.test, @lists.tc2.fr`.
"""

import uuid

import pytest

from conftest import (
    SUBMIT_LOGIN,
    SUBMIT_PASSWORD,
    auth_login,
    auth_plain,
    check_maildir_file,
    make_message,
    send_data,
    sha512_crypt,
    submission_world,
    wait_delivered,
)

ADDR_LOGIN_PASSWORD = "address-login-" + uuid.uuid4().hex[:8]
MAYEU_PASSWORD = "user-hash-" + uuid.uuid4().hex[:8]
M_PASSWORD = "passwd-file-" + uuid.uuid4().hex[:8]


def marker(what):
    return f"senders-{what}-{uuid.uuid4().hex[:12]}"


def replace_once(path, old, new):
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} not exactly once in {path}:\n{text}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def add_after_line(path, starts, lines):
    out = []
    for line in path.read_text(encoding="utf-8").split("\n"):
        out.append(line)
        if line.startswith(starts):
            out.extend(lines)
    path.write_text("\n".join(out), encoding="utf-8")


# --------------------------------------------------------------------------- worlds


def edit_creds(root, etc, conf):
    (etc / "smtpdauth").write_text(
        "# USER HASH form\n"
        f"mayeu      {sha512_crypt(MAYEU_PASSWORD)}\n"
        f"m@tc2.fr   {sha512_crypt(ADDR_LOGIN_PASSWORD)}\n", encoding="utf-8")
    replace_once(etc / "aliases", "root:            m+piroot@6x9.fr",
                 "root:            m+root@tc2.fr")
    add_after_line(conf, "listen on eth0 port 587 ", [
        "listen on eth0 port 465 smtps certificate shoggoth.tc2.fr auth <in_auth>",
        "listen on eth0 port 2587 tls certificate shoggoth.tc2.fr auth-optional <in_auth>",
    ])


def edit_onefile(root, etc, conf):
    users = etc / "users"
    users.write_text(
        "# Dovecot passwd-file: user:password:uid:gid:gecos:home:shell:extra\n"
        f"m:{{SHA512-CRYPT}}{sha512_crypt(M_PASSWORD)}:5000:5000::{root}/var/vmail/m::\n",
        encoding="utf-8")
    replace_once(conf, f"db:{etc}/vusers.db", f"passwd:{users}")
    replace_once(conf, f"db:{etc}/smtpdauth.db", f"passwd:{users}")


def edit_senders(root, etc, conf):
    (etc / "senders").write_text(
        "# login -> addresses it may send as\n"
        "mayeu   boss@corp.test, @lists.tc2.fr\n", encoding="utf-8")
    text = conf.read_text(encoding="utf-8")
    text = text.replace("table in_auth ", f"table sndr file:{etc}/senders\ntable in_auth ", 1)
    conf.write_text(text, encoding="utf-8")
    line = "listen on eth0 port 587 tls-require certificate shoggoth.tc2.fr auth <in_auth>"
    replace_once(conf, line, line + " senders <sndr>\n"
                 + line.replace("587", "588") + " senders <sndr> masquerade")


@pytest.fixture(scope="module")
def creds(ownmail, pki):
    with submission_world(ownmail, pki, edit=edit_creds) as w:
        yield w


@pytest.fixture(scope="module")
def onefile(ownmail, pki):
    with submission_world(ownmail, pki, edit=edit_onefile) as w:
        yield w


@pytest.fixture(scope="module")
def senders(ownmail, pki):
    with submission_world(ownmail, pki, edit=edit_senders) as w:
        yield w


def try_sender(world, user, password, sender, *, port=587):
    """The reply to MAIL FROM:<sender> after STARTTLS and AUTH PLAIN as user."""
    with world.tls_client(port) as c:
        r = auth_plain(c, user, password)
        assert r.code == 235, f"AUTH PLAIN as {user}: {r}\n{c.dialogue()}"
        r = c.cmd(f"MAIL FROM:<{sender}>")
        c.cmd("QUIT")
    return r


def submit(world, user, password, sender, rcpt, msg, *, port=587):
    with world.tls_client(port) as c:
        r = auth_plain(c, user, password)
        assert r.code == 235, r
        c.cmd(f"MAIL FROM:<{sender}>", 250)
        c.cmd(f"RCPT TO:<{rcpt}>", 250)
        r = send_data(c, msg)
        c.cmd("QUIT", 221)
    return r


# --------------------------------------------------------------------------- USER HASH


def test_user_hash_form_logs_in_with_plain_and_login(creds):
    with creds.tls_client() as c:
        assert auth_plain(c, SUBMIT_LOGIN, MAYEU_PASSWORD).code == 235
        c.cmd("QUIT", 221)
    with creds.tls_client() as c:
        assert auth_login(c, SUBMIT_LOGIN, MAYEU_PASSWORD).code == 235
        c.cmd("QUIT", 221)
    with creds.tls_client() as c:
        r = auth_plain(c, SUBMIT_LOGIN, SUBMIT_PASSWORD)   # the article's, no longer valid
        assert r.code == 535 and r.enhanced == "5.7.8", r
        c.cmd("QUIT", 221)


@pytest.mark.parametrize("sender", ["m@tc2.fr", "mayeu@tc2.fr", "m+x@tc2.fr"])
def test_a_login_that_is_an_address_owns_what_reaches_the_same_mailbox(creds, sender):
    r = try_sender(creds, "m@tc2.fr", ADDR_LOGIN_PASSWORD, sender)
    assert r.code == 250, f"login m@tc2.fr, MAIL FROM:<{sender}>: {r}"


@pytest.mark.parametrize("sender", ["someone-else@tc2.fr", "m@other.test", "www@localhost"])
def test_a_login_that_is_an_address_owns_nothing_else(creds, sender):
    r = try_sender(creds, "m@tc2.fr", ADDR_LOGIN_PASSWORD, sender)
    assert r.code == 550 and r.enhanced == "5.7.1", f"MAIL FROM:<{sender}>: {r}"


@pytest.mark.parametrize("sender", ["root@localhost", "nobody@localhost", "ROOT@LOCALHOST"])
def test_local_aliases_that_expand_to_m_are_owned_by_mayeu(creds, sender):
    """aliases: `root: m+root@tc2.fr` (changed here), `nobody: root`: both reach m."""
    r = try_sender(creds, SUBMIT_LOGIN, MAYEU_PASSWORD, sender)
    assert r.code == 250, f"MAIL FROM:<{sender}>: {r}"


@pytest.mark.parametrize("sender", ["www@localhost", "postmaster@localhost"])
def test_local_aliases_that_leave_for_another_domain_are_not_owned(creds, sender):
    """`www: m+piwww@6x9.fr`, `postmaster: m+pipostmaster@6x9.fr`: not delivered to m."""
    r = try_sender(creds, SUBMIT_LOGIN, MAYEU_PASSWORD, sender)
    assert r.code == 550 and r.enhanced == "5.7.1", f"MAIL FROM:<{sender}>: {r}"


def test_smtps_listener_offers_auth_at_once(creds):
    c = creds.client(465, greeting=False)
    try:
        c.starttls()               # implicit TLS: the handshake comes first
        c.expect(220)
        kw = c.ehlo().keywords
        assert "AUTH" in kw and "PLAIN" in kw["AUTH"].upper().split(), kw
        assert "STARTTLS" not in kw, kw
        assert auth_plain(c, SUBMIT_LOGIN, MAYEU_PASSWORD).code == 235
        c.cmd("MAIL FROM:<mayeu@tc2.fr>", 250)
        c.cmd("QUIT", 221)
    finally:
        c.close()


def test_auth_optional_listener_takes_mail_without_auth_but_relays_only_with_it(creds):
    with creds.client(2587) as c:
        kw = c.ehlo().keywords
        assert "AUTH" not in kw, f"AUTH offered before TLS: {kw}"
        c.cmd("MAIL FROM:<friend@elsewhere.test>", 250)
        c.cmd("RCPT TO:<m@tc2.fr>", 250)
        c.cmd("RCPT TO:<x@elsewhere.test>", 550, "5.7.1")
        c.cmd("QUIT", 221)
    with creds.tls_client(2587) as c:
        assert "AUTH" in c.ehlo_reply.keywords, c.ehlo_reply
        c.cmd("MAIL FROM:<friend@elsewhere.test>", 250)   # unauthenticated: allowed
        c.cmd("RSET", 250)
        assert auth_plain(c, SUBMIT_LOGIN, MAYEU_PASSWORD).code == 235
        c.cmd("MAIL FROM:<m@tc2.fr>", 250)
        c.cmd("RCPT TO:<x@elsewhere.test>", 250)
        c.cmd("RSET", 250)
        c.cmd("MAIL FROM:<friend@elsewhere.test>", 550, "5.7.1")   # now it is checked
        c.cmd("QUIT", 221)


# --------------------------------------------------------------------------- one passwd file


def test_one_passwd_file_serves_login_and_delivery(onefile):
    mark = marker("onefile")
    msg = make_message(mark, sender="mayeu@tc2.fr", to="m@tc2.fr")
    r = submit(onefile, "m", M_PASSWORD, "mayeu@tc2.fr", "m@tc2.fr", msg)
    assert r.code == 250, f"end of DATA: {r}"
    files = wait_delivered(onefile.maildir, mark, server=onefile.server)
    data = check_maildir_file(files[0])
    assert data.startswith(b"Return-Path: <mayeu@tc2.fr>\n"), data[:200]


def test_one_passwd_file_refuses_a_wrong_password_and_a_forged_sender(onefile):
    with onefile.tls_client() as c:
        r = auth_plain(c, "m", M_PASSWORD + "x")
        assert r.code == 535 and r.enhanced == "5.7.8", r
        c.cmd("QUIT", 221)
    r = try_sender(onefile, "m", M_PASSWORD, "someone-else@tc2.fr")
    assert r.code == 550 and r.enhanced == "5.7.1", r


# --------------------------------------------------------------------------- senders <t>


@pytest.mark.parametrize("sender", ["boss@corp.test", "BOSS@corp.test", "news@lists.tc2.fr"])
def test_senders_table_allows_its_addresses_and_domains(senders, sender):
    r = try_sender(senders, SUBMIT_LOGIN, SUBMIT_PASSWORD, sender)
    assert r.code == 250, f"MAIL FROM:<{sender}> with senders <sndr>: {r}"


@pytest.mark.parametrize("sender", ["m@tc2.fr", "x@corp.test", "news@sub.lists.tc2.fr",
                                    "boss@corp.test.evil.test"])
def test_senders_table_replaces_ownership_and_refuses_the_rest(senders, sender):
    r = try_sender(senders, SUBMIT_LOGIN, SUBMIT_PASSWORD, sender)
    assert r.code == 550 and r.enhanced == "5.7.1", f"MAIL FROM:<{sender}>: {r}"


def from_header_message(mark, header):
    msg = make_message(mark, sender="boss@corp.test", to="m@tc2.fr")
    return msg.replace(b"From: <boss@corp.test>\r\n", header.encode() + b"\r\n", 1)


def test_senders_without_masquerade_checks_the_from_header(senders):
    mark = marker("nomasq")
    msg = from_header_message(mark, "From: CEO <ceo@corp.test>")
    r = submit(senders, SUBMIT_LOGIN, SUBMIT_PASSWORD, "boss@corp.test", "m@tc2.fr", msg)
    assert r.code == 550 and r.enhanced == "5.7.1", f"From: outside the senders table: {r}"
    mark = marker("nomasq-ok")
    msg = from_header_message(mark, "From: Lists <news@lists.tc2.fr>")
    r = submit(senders, SUBMIT_LOGIN, SUBMIT_PASSWORD, "boss@corp.test", "m@tc2.fr", msg)
    assert r.code == 250, f"From: in the senders table: {r}"
    wait_delivered(senders.maildir, mark, server=senders.server)


def test_senders_with_masquerade_lets_the_from_header_differ(senders):
    mark = marker("masq")
    msg = from_header_message(mark, "From: CEO <ceo@corp.test>")
    r = submit(senders, SUBMIT_LOGIN, SUBMIT_PASSWORD, "boss@corp.test", "m@tc2.fr", msg,
               port=588)
    assert r.code == 250, f"From: differs, with masquerade: {r}"
    wait_delivered(senders.maildir, mark, server=senders.server)
    # the envelope is still checked
    r = try_sender(senders, SUBMIT_LOGIN, SUBMIT_PASSWORD, "m@tc2.fr", port=588)
    assert r.code == 550 and r.enhanced == "5.7.1", r
