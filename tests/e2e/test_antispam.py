"""Anti-spam (issue 10; SPEC §4.2 anti-spam directives, §6.7): the spam score and its
`X-Spam-…` header fields, GTUBE, DNS blocklists (reject, allow, junk, a zone that never
answers), greylisting, rate limits per client, the connection screens (HELO without a dot,
talking before the greeting), the per-user classifier that learns from IMAP moves into and
out of Junk, and hostile input that must still be accepted and scored.

Every world here is the same shape as test_inbound_auth.py: ownmail runs in a network
namespace with lo and eth0 (192.0.2.10) and a test DNS server on its 127.0.0.1; the client
comes from a second namespace holding eth0's veth peer as 192.0.2.11-14, so that it counts
as "from outside" (neither loopback, nor local socket, nor authenticated). Each world also
listens on 127.0.0.1:25 (loopback: never screened) and on 192.0.2.10:587 (STARTTLS + AUTH
with the users file: an authenticated client, never screened either). User m
(m@example.org) has the Maildir <root>/var/vmail/m, delivered to with `maildir "~/" junk`
(spam goes to .Junk), and the same passwd: users file serves SMTP AUTH, delivery and IMAP.

The sender domain sender.test publishes SPF for the outside addresses, a DKIM key (from
`ownmail dkim keygen`; messages are signed with dkimpy) and DMARC p=none; every outside
address has a PTR record whose name resolves back to it, so that a well-formed message from
there carries no header or connection penalties worth speaking of.

The greylisting world with `allow <grey_ok>` also relays local mail (`action "out" relay`) to
an SMTP sink at 198.51.100.25 in the outside namespace (routed on eth0 from the server), whose
/24 holds a second outside client, 198.51.100.7: the network of a host we relay to is spared.
"""

import contextlib
import email
import email.policy
import email.utils
import random
import re
import socket
import time
import uuid

import dkim
import dnslib
import pytest

from conftest import (
    VMAIL_GID,
    VMAIL_UID,
    DnsServer,
    NsSMTP,
    SmtpClient,
    SmtpClosed,
    SmtpSink,
    _ip,
    assert_no_panic,
    auth_plain,
    deadline_loop,
    in_netns,
    make_netns,
    make_vmail_dir,
    run,
    send_data,
    sha512_crypt,
    smtp_send,
    start_ownmail,
    stop_ownmail,
    tls_session,
    world_tmpdir,
)
from imap_world import ImapConn, quote

SERVER = "192.0.2.10"
OUTSIDE = "192.0.2.11"
OUTSIDE_ADDRS = ("192.0.2.11", "192.0.2.12", "192.0.2.13", "192.0.2.14")
USER = "m"
RCPT = "m@example.org"
PASSWORD = "antispam-pass-4Kv"
CERT = "example.org"
SENDER_DOMAIN = "sender.test"
HELO = "mx.sender.test"
IMAPS_PORT = 10993
GTUBE = "XJS*C4JDBQADN1.NSBESC-EQUIVALENT-ANTI-UBE-TEST-EMAIL*C.34X"
LAND_TIMEOUT = 30


# =========================================================================== DNS


class AntispamDns(DnsServer):
    """The conftest DnsServer plus PTR records and names that are never answered
    (``silent``: the query is recorded and dropped, as by a dead DNSBL server)."""

    def __init__(self, ns):
        super().__init__(ns=ns)
        self.silent = set()

    def set(self, name, rtype, values):
        if rtype == "PTR":
            with self.lock:
                self.records.setdefault(self._key(name), {})["PTR"] = [
                    dnslib.PTR(v) for v in values]
            return self
        return super().set(name, rtype, values)

    def resolve(self, request, handler):
        key = self._key(str(request.q.qname))
        if key in self.silent:
            qtype = dnslib.QTYPE.get(request.q.qtype, str(request.q.qtype))
            with self.lock:
                self.queries.append((key, qtype, handler.protocol))
            # dnslib logs a DNSError (quietly, our logger is silent) and sends nothing
            raise dnslib.DNSError(f"the test drops queries for {key}")
        return super().resolve(request, handler)


def reversed_v4(addr):
    return ".".join(reversed(addr.split(".")))


def dns_query(ns, dns, name, qtype="A", timeout=2):
    """Asks the world's DNS server (from inside the server's namespace, as ownmail does);
    returns (rcode name, [answer rdata as text]) or ("TIMEOUT", [])."""
    q = dnslib.DNSRecord.question(name, qtype)

    def ask():
        try:
            return q.send(dns.host, dns.port, timeout=timeout)
        except (socket.timeout, TimeoutError):
            return None

    raw = in_netns(ns.name, ask)
    if raw is None:
        return "TIMEOUT", []
    r = dnslib.DNSRecord.parse(raw)
    return dnslib.RCODE.get(r.header.rcode), [str(rr.rdata) for rr in r.rr]


# =========================================================================== messages


def marker(what):
    return f"as{what}{uuid.uuid4().hex[:12]}"


def clean_message(mark, *, sender=f"alice@{SENDER_DOMAIN}", subject=None, body=None,
                  extra_headers=(), date=True, message_id=True, name="Alice Example"):
    """A well-formed text message (CRLF): From, To, Subject, today's Date, a Message-ID
    containing `mark`, MIME headers, a text body whose last line holds `mark`."""
    lines = [f"From: {name} <{sender}>" if name else f"From: {sender}", f"To: <{RCPT}>",
             f"Subject: {subject if subject is not None else 'Notes for the week ' + mark}"]
    if date:
        lines.append(f"Date: {email.utils.formatdate(localtime=True)}")
    if message_id:
        lines.append(f"Message-ID: <{mark}@{sender.rsplit('@', 1)[-1]}>")
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
              "Content-Transfer-Encoding: 7bit", *extra_headers, ""]
    if body is None:
        body = ["Hello,", "", "here are the notes from Tuesday; see you next week.", "",
                "Alice"]
    lines += [*body, f"-- {mark}", ""]
    return "\r\n".join(lines).encode("utf-8")


def sign(msg, key_path, domain=SENDER_DOMAIN, selector="s1"):
    sig = dkim.sign(msg, selector.encode(), domain.encode(), key_path.read_bytes(),
                    canonicalize=(b"relaxed", b"relaxed"))
    return sig.replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n") + msg


class Delivered:
    """One delivered Maildir file: ``folder`` ("inbox" or "junk"), ``path``, ``data``;
    header helpers over the header section."""

    def __init__(self, folder, path):
        self.folder, self.path = folder, path
        self.data = path.read_bytes()
        self.head = self.data.split(b"\n\n", 1)[0].decode("utf-8", "replace")
        self.msg = email.message_from_string(self.head + "\n\n", policy=email.policy.compat32)

    def all(self, name):
        return [re.sub(r"\s+", " ", str(v)).strip() for v in (self.msg.get_all(name) or [])]

    def one(self, name):
        values = self.all(name)
        assert len(values) == 1, (
            f"expected exactly one {name}: field in {self.path}, found {values}\n"
            f"--- header ---\n{self.head[:3000]}")
        return values[0]

    def field_names(self):
        return [ln.split(":", 1)[0].strip().lower() for ln in self.head.split("\n")
                if ln and ln[0] not in " \t" and ":" in ln]

    def spam_yes(self):
        return any(v.lower() == "yes" for v in self.all("X-Spam"))

    def status(self):
        """The parsed X-Spam-Status (asserting its form): SpamStatus."""
        return SpamStatus(self.one("X-Spam-Status"), self)

    def show(self):
        return f"{self.folder}: {self.path}\n--- header ---\n{self.head[:3000]}"


# SpamAssassin-like; other `key=value` items (e.g. `reject=15.0`) may come before tests=
STATUS_RX = re.compile(
    r"^(Yes|No), score=(-?\d+(?:\.\d+)?) required=(-?\d+(?:\.\d+)?)"
    r"(?: [A-Za-z_-]+=[^\s=]*)*?(?: tests=(.*))?$", re.I)
SYMBOL_RX = re.compile(r"([^\s,()=]+)\((-?\d+(?:\.\d+)?)\)")


class SpamStatus:
    def __init__(self, text, d):
        m = STATUS_RX.match(text)
        assert m, (f"X-Spam-Status is not `Yes|No, score=S required=J tests=SYM(s),...`: "
                   f"{text!r}\n{d.show()}")
        self.text = text
        self.flag = m.group(1).capitalize()
        self.score = float(m.group(2))
        self.required = float(m.group(3))
        tests = (m.group(4) or "").strip()
        self.symbols = {s: float(v) for s, v in SYMBOL_RX.findall(tests)}
        left = SYMBOL_RX.sub("", tests).replace(",", "").strip()
        assert left in ("", "none", "NONE"), (
            f"tests= in X-Spam-Status is not a list of SYMBOL(score): {tests!r}\n{d.show()}")

    def __repr__(self):
        return self.text


def check_scored(d, junk_score):
    """The X-Spam-… fields of a message from outside, consistent with each other and with
    where it landed. Returns the SpamStatus."""
    st = d.status()
    score = float(d.one("X-Spam-Score"))
    assert abs(score - st.score) < 0.051, (
        f"X-Spam-Score {score} is not the score of X-Spam-Status ({st})\n{d.show()}")
    assert st.required == pytest.approx(junk_score), (
        f"X-Spam-Status says required={st.required}, the config's junk-score is {junk_score}"
        f"\n{d.show()}")
    if st.symbols:
        total = sum(st.symbols.values())
        assert abs(total - st.score) <= 0.06 * (len(st.symbols) + 1), (
            f"the symbols' scores add up to {total:.2f}, not to score={st.score}\n{d.show()}")
    spam = st.score >= junk_score
    assert st.flag == ("Yes" if spam else "No"), (
        f"score {st.score} vs required {junk_score} but X-Spam-Status says {st.flag}\n"
        f"{d.show()}")
    assert d.spam_yes() == spam, (
        f"score {st.score} vs junk-score {junk_score}: X-Spam: yes should be "
        f"{'present' if spam else 'absent'}\n{d.show()}")
    assert d.folder == ("junk" if spam else "inbox"), (
        f"score {st.score} vs junk-score {junk_score}, but the message is in {d.folder}\n"
        f"{d.show()}")
    # added by us, on top: above our own Received: field
    names = d.field_names()
    first_received = names.index("received") if "received" in names else len(names)
    for f in ("x-spam-score", "x-spam-status"):
        assert names.index(f) < first_received, (
            f"{f} is below the Received: field (expected on top)\n{d.show()}")
    return st


# =========================================================================== Maildir


FOLDERS = (("inbox", ""), ("junk", ".Junk"))


def find_landed(maildir, mark, subs=("new",)):
    """[(folder, path)] of files in INBOX or .Junk (new/, or subs) containing mark."""
    needle = mark.encode()
    out = []
    for folder, sub in FOLDERS:
        for s in subs:
            d = maildir / sub / s if sub else maildir / s
            try:
                names = sorted(d.iterdir())
            except FileNotFoundError:
                continue
            for p in names:
                try:
                    if p.is_file() and needle in p.read_bytes():
                        out.append((folder, p))
                except FileNotFoundError:
                    pass
    return out


# =========================================================================== the world


class World:
    def __init__(self, ownmail, pki, root, ns, outside, dns, conf, key):
        self.ownmail, self.pki, self.root = ownmail, pki, root
        self.ns, self.outside, self.dns, self.conf, self.key = ns, outside, dns, conf, key
        self.spool = root / "spool"
        self.maildir = root / "var" / "vmail" / USER
        self.server = None

    # ---------------------------------------------------------------- server
    def start(self):
        self.server = start_ownmail(self.ownmail, self.conf, spool=self.spool,
                                    pki_dir=self.pki, ns=self.ns)
        return self.server

    def stop(self):
        if self.server is not None:
            server, self.server = self.server, None
            stop_ownmail(server)

    def restart(self, conf_text=None):
        """Stops the server, optionally rewrites the config, starts it again (same spool
        and Maildir)."""
        self.stop()
        if conf_text is not None:
            self.conf.write_text(conf_text, encoding="utf-8")
        return self.start()

    def log_tail(self):
        return f"--- ownmail stderr tail ---\n{self.server.log_tail(80)}" if self.server else ""

    # ---------------------------------------------------------------- clients
    def smtp(self, source=OUTSIDE, helo=HELO, timeout=60):
        """smtplib from outside (source address in the client namespace)."""
        return NsSMTP(SERVER, 25, ns=self.outside, timeout=timeout, local_hostname=helo,
                      source_address=(source, 0))

    def local_smtp(self, timeout=30):
        return NsSMTP("127.0.0.1", 25, ns=self.ns, timeout=timeout, local_hostname="localhost")

    def client(self, source=OUTSIDE, *, greeting=True, timeout=10):
        """A raw SmtpClient from outside to 192.0.2.10:25 (220 read unless greeting=False)."""
        try:
            c = SmtpClient.connect(SERVER, 25, ns=self.outside, timeout=timeout, source=source)
        except OSError as e:
            pytest.fail(f"the outside client {source} cannot connect to {SERVER}:25: {e}\n"
                        f"{self.log_tail()}")
        if greeting:
            try:
                c.expect(220)
            except BaseException:
                c.close()
                raise
        return c

    def local_client(self, timeout=10):
        c = SmtpClient.connect("127.0.0.1", 25, ns=self.ns, timeout=timeout)
        c.expect(220)
        return c

    def auth_client(self, source=OUTSIDE):
        """Outside client on 587: EHLO, STARTTLS, EHLO, AUTH PLAIN as m (235)."""
        c = SmtpClient.connect(SERVER, 587, ns=self.outside, timeout=15, source=source)
        try:
            c.expect(220, timeout=15)
            tls_session(c, HELO)
            r = auth_plain(c, USER, PASSWORD)
            assert r.code == 235, f"AUTH PLAIN as {USER} -> {r}\n{c.dialogue()}"
        except BaseException:
            c.close()
            raise
        return c

    def imap(self):
        """A logged-in ImapConn (imaps on 127.0.0.1, inside the server's namespace)."""
        last = None
        for _ in deadline_loop(15, 0.2):
            try:
                c = ImapConn.connect(self.ns, "127.0.0.1", IMAPS_PORT, tls=True, timeout=20,
                                     cafile=None, label="ownmail imaps")
                break
            except OSError as e:
                last = e
        else:
            pytest.fail(f"no IMAP listener on 127.0.0.1:{IMAPS_PORT}: {last}\n{self.log_tail()}")
        c.read_greeting()
        c.login(USER, PASSWORD)
        return c

    # ---------------------------------------------------------------- mail
    def sign(self, msg):
        return sign(msg, self.key)

    def send(self, msg, sender=f"alice@{SENDER_DOMAIN}", source=OUTSIDE, **kw):
        with self.smtp(source) as s:
            return smtp_send(s, sender, [RCPT], msg, **kw)

    def landed(self, mark, timeout=LAND_TIMEOUT):
        """Waits until exactly one file of INBOX/new or .Junk/new holds mark: Delivered."""
        found = []
        for _ in deadline_loop(timeout, 0.05):
            found = find_landed(self.maildir, mark)
            if found:
                break
        if not found:
            pytest.fail(f"{mark!r} did not land in {self.maildir}/new or .Junk/new within "
                        f"{timeout}s\n{self.log_tail()}")
        time.sleep(0.05)
        found = find_landed(self.maildir, mark)
        assert len(found) == 1, f"{mark!r} was delivered {len(found)} times: {found}"
        return Delivered(*found[0])

    def assert_not_delivered(self, mark, wait=1.5):
        """Nothing holding mark appears in INBOX or .Junk (new/ and cur/) within wait s."""
        for _ in deadline_loop(wait, 0.1):
            found = find_landed(self.maildir, mark, subs=("new", "cur"))
            assert not found, f"{mark!r} was delivered although refused: {found}"


def keygen(ownmail, d):
    out = d / f"{SENDER_DOMAIN}.s1.key"
    rc, stdout, stderr = run([ownmail, "dkim", "keygen", SENDER_DOMAIN, "--selector", "s1",
                              "--algorithm", "rsa", "--out", out], timeout=120)
    assert rc == 0, f"ownmail dkim keygen failed:\n{stderr}"
    strings = re.findall(r'"([^"]*)"', stdout.strip())
    assert strings and "p=" in "".join(strings), f"no DKIM record in keygen's output:\n{stdout}"
    return out, strings


@pytest.fixture(scope="module")
def dkim_key(ownmail, tmp_path_factory):
    return keygen(ownmail, tmp_path_factory.mktemp("antispam-dkim"))


IMAP_LINES = (
    f"imap listen on 127.0.0.1 port {IMAPS_PORT} imaps certificate {CERT}",
    "imap auth <vusers>",
    "imap userbase <vusers>",
    'imap mailbox "~/"',
)


def write_conf(root, dns, lines, *, imap=False, tail=()):
    """smtpd.conf: the test resolver, user m (passwd: table: AUTH, delivery, IMAP), the
    anti-spam `lines`, listeners on 127.0.0.1:25, 192.0.2.10:25 and 192.0.2.10:587 (AUTH),
    `maildir "~/" junk`, then the `tail` lines (more actions and match rules)."""
    etc = root / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    etc.chmod(0o755)
    vmail = make_vmail_dir(root)
    virtual = etc / "virtual"
    virtual.write_text(f"# virtual addresses\n{RCPT}  {USER}\n", encoding="utf-8")
    users = etc / "users"
    users.write_text(
        f"{USER}:{{SHA512-CRYPT}}{sha512_crypt(PASSWORD)}:{VMAIL_UID}:{VMAIL_GID}::"
        f"{vmail / USER}::userdb_mail=maildir:~/\n", encoding="utf-8")
    users.chmod(0o644)
    text = "\n".join([
        "# ownmail e2e: anti-spam (tests/e2e/test_antispam.py)",
        dns.resolver_line,
        f"table valiases file:{virtual}",
        f"table vusers passwd:{users}",
        "",
        "# the anti-spam lines of this world",
        *lines,
        "",
        "listen on 127.0.0.1 port 25",
        f"listen on {SERVER} port 25",
        f"listen on {SERVER} port 587 tls-require certificate {CERT} auth <vusers>",
        *(IMAP_LINES if imap else ()),
        "",
        'action "vmail" maildir "~/" junk virtual <valiases> userbase <vusers>',
        'match from any for domain "example.org" action "vmail"',
        *tail,
    ]) + "\n"
    conf = root / "smtpd.conf"
    conf.write_text(text, encoding="utf-8")
    return conf


@contextlib.contextmanager
def antispam_world(ownmail, pki, dkim_key, lines, *, imap=False, dns_setup=None, tail=()):
    key, dkim_strings = dkim_key
    with world_tmpdir("om-antispam-") as root, make_netns(eth0=True) as ns, \
            make_netns(eth0=False) as outside:
        _ip("-n", ns.name, "link", "set", "eth0p", "netns", outside.name)
        for a in OUTSIDE_ADDRS:
            _ip("-n", outside.name, "addr", "add", f"{a}/24", "dev", "eth0p")
        _ip("-n", outside.name, "link", "set", "eth0p", "up")
        dns = AntispamDns(ns).start()
        world = None
        try:
            dns.set(SENDER_DOMAIN, "TXT",
                    ["v=spf1 " + " ".join(f"ip4:{a}" for a in OUTSIDE_ADDRS) + " -all"])
            dns.set(f"s1._domainkey.{SENDER_DOMAIN}", "TXT", [dkim_strings])
            dns.set(f"_dmarc.{SENDER_DOMAIN}", "TXT", ["v=DMARC1; p=none"])
            dns.set(SENDER_DOMAIN, "MX", [(10, HELO)])
            dns.set(HELO, "A", [OUTSIDE])
            for i, a in enumerate(OUTSIDE_ADDRS):
                name = HELO if i == 0 else f"mx{i + 1}.{SENDER_DOMAIN}"
                dns.set(f"{reversed_v4(a)}.in-addr.arpa", "PTR", [name + "."])
                if i:
                    dns.set(name, "A", [a])
            dns.set("example.org", "MX", [(10, "mail.example.org")])
            if dns_setup is not None:
                dns_setup(dns)
            # the test's own DNS answers, asked from where ownmail asks
            rcode, answers = dns_query(ns, dns, SENDER_DOMAIN, "TXT")
            assert rcode == "NOERROR" and any("v=spf1" in a for a in answers), (
                f"the test DNS server does not serve sender.test's SPF: {rcode} {answers}")
            conf = write_conf(root, dns, lines, imap=imap, tail=tail)
            world = World(ownmail, pki, root, ns, outside, dns, conf, key)
            world.start()
            yield world
        finally:
            if world is not None:
                world.stop()
            dns.stop()


# =========================================================================== spam score

SPAM_J, SPAM_R = 5, 15
SPAM_LINES = (f"spam junk-score {SPAM_J} reject-score {SPAM_R}",)


@pytest.fixture(scope="module")
def spam_world(ownmail, pki, dkim_key):
    with antispam_world(ownmail, pki, dkim_key, SPAM_LINES) as w:
        yield w


def test_clean_signed_message_from_outside_is_scored_and_lands_in_inbox(spam_world):
    w = spam_world
    m = marker("clean")
    w.send(w.sign(clean_message(m)))
    d = w.landed(m)
    # the test's setup: SPF and DKIM must pass, or the "clean" message is not clean
    ar = " ".join(d.all("Authentication-Results"))
    assert "spf=pass" in ar and "dkim=pass" in ar, (
        f"the world's SPF/DKIM setup does not pass:\n{d.show()}")
    st = check_scored(d, SPAM_J)
    assert st.flag == "No" and d.folder == "inbox", (
        f"a clean, signed, SPF-passing message scored {st.score} (junk-score {SPAM_J})\n"
        f"{d.show()}")
    assert "GTUBE" not in st.symbols, st


def test_verdict_fields_from_outside_are_replaced_by_ours(spam_world):
    """A sender cannot speak for us: X-Spam fields it wrote (here claiming spam, which would
    file a clean message into Junk) are gone; ours are the only ones."""
    w = spam_world
    m = marker("forged")
    forged = ("X-Spam: yes", "X-Spam-Score: 99.0",
              "X-Spam-Status: Yes, score=99.0 required=5.0\r\n\ttests=FORGED(99.0)",
              "X-Ownmail-Junk: forged")
    w.send(w.sign(clean_message(m, extra_headers=forged)))
    d = w.landed(m)
    st = check_scored(d, SPAM_J)  # exactly one X-Spam-Score, consistent with where it is
    assert st.flag == "No" and d.folder == "inbox" and "FORGED" not in st.symbols, d.show()
    assert not d.all("X-Ownmail-Junk") and "99" not in " ".join(d.all("X-Spam-Status")), d.show()


def test_gtube_is_refused_at_the_end_of_data_and_nothing_is_delivered(spam_world):
    w = spam_world
    m = marker("gtube")
    msg = w.sign(clean_message(m, body=["Hello,", "", GTUBE, "", "Alice"]))
    with w.smtp() as s:
        s.ehlo()
        code, resp = s.mail(f"alice@{SENDER_DOMAIN}")
        assert code == 250, (code, resp)
        code, resp = s.rcpt(RCPT)
        assert code == 250, (code, resp)
        code, resp = s.data(msg)
    text = resp.decode("utf-8", "replace")
    assert code == 550 and text.startswith("5.7.1") and "spam" in text.lower(), (
        f"GTUBE (score 1000, reject-score {SPAM_R}) at the end of DATA: expected "
        f"`550 5.7.1 ...spam...`, got {code} {text!r}\n{w.log_tail()}")
    w.assert_not_delivered(m)
    assert w.server.alive()


def gtube_refused_from_outside(w):
    """Control: the GTUBE message is refused from outside in this world (so that "not
    screened" below is not vacuous). Returns the reply."""
    m = marker("ctl")
    with w.smtp() as s:
        s.ehlo()
        assert s.mail(f"alice@{SENDER_DOMAIN}")[0] == 250
        assert s.rcpt(RCPT)[0] == 250
        code, resp = s.data(w.sign(clean_message(m, body=["Hello,", "", GTUBE, ""])))
    assert code == 550, (f"control: GTUBE from outside is not refused ({code} {resp!r}), so "
                         f"screening is not on at all\n{w.log_tail()}")


def test_mail_from_loopback_is_not_screened(spam_world):
    w = spam_world
    gtube_refused_from_outside(w)
    m = marker("local")
    msg = clean_message(m, body=["Hello,", "", GTUBE, ""])
    with w.local_smtp() as s:
        smtp_send(s, "root@localhost.test", [RCPT], msg)
    d = w.landed(m)
    assert d.folder == "inbox" and not d.spam_yes(), (
        f"GTUBE from loopback is not screened: expected INBOX, no X-Spam: yes\n{d.show()}")
    assert not d.all("X-Spam-Status") and not d.all("X-Spam-Score"), (
        f"mail from loopback is not screened, it gets no X-Spam-… fields\n{d.show()}")


def test_mail_from_an_authenticated_client_is_not_screened(spam_world):
    w = spam_world
    gtube_refused_from_outside(w)
    m = marker("auth")
    msg = clean_message(m, sender=RCPT, body=["Hello,", "", GTUBE, ""])
    with w.auth_client() as c:
        c.cmd(f"MAIL FROM:<{RCPT}>", 250)
        c.cmd(f"RCPT TO:<{RCPT}>", 250)
        r = send_data(c, msg)
        assert r.code == 250, (f"GTUBE from an authenticated client must be accepted:\n{r}\n"
                               f"{c.dialogue()}\n{w.log_tail()}")
        c.cmd("QUIT", 221)
    d = w.landed(m)
    assert d.folder == "inbox" and not d.spam_yes(), d.show()
    assert not d.all("X-Spam-Status") and not d.all("X-Spam-Score"), (
        f"mail from an authenticated client is not screened, it gets no X-Spam-… fields\n"
        f"{d.show()}")


def test_hostile_input_is_accepted_and_scored_without_a_panic(spam_world):
    w = spam_world
    rng = random.Random(10)
    cases = []
    # 1. a header section of more than 1 MB (one folded field)
    m1 = marker("bighead")
    big = ["X-Big: start"] + ["\t" + "x" * 70 for _ in range(15000)]
    msg1 = clean_message(m1, extra_headers=big)
    assert len(msg1) > 1_000_000
    cases.append((m1, msg1, "a 1 MB header section"))
    # 2. a body of binary garbage (every byte but NUL, CR and LF; CRLF line ends)
    m2 = marker("binary")
    garbage = []
    for _ in range(400):
        garbage.append(bytes(rng.choice([b for b in range(1, 256) if b not in (10, 13)])
                             for _ in range(rng.randint(0, 200))))
    head2 = clean_message(m2).split(b"\r\n\r\n", 1)[0].replace(
        b"Content-Type: text/plain; charset=utf-8", b"Content-Type: application/octet-stream"
    ).replace(b"Content-Transfer-Encoding: 7bit", b"Content-Transfer-Encoding: binary")
    msg2 = head2 + b"\r\n\r\n" + b"\r\n".join(garbage) + b"\r\n"
    cases.append((m2, msg2, "a binary garbage body"))
    # 3. header fields only: no empty line, no body
    m3 = marker("headonly")
    msg3 = clean_message(m3).split(b"\r\n\r\n", 1)[0] + b"\r\n"
    cases.append((m3, msg3, "a message of header fields only"))

    for mark, msg, what in cases:
        with w.smtp() as s:
            s.ehlo()
            code, resp = s.mail(f"alice@{SENDER_DOMAIN}", ["BODY=8BITMIME"])
            assert code == 250, (what, code, resp)
            code, resp = s.rcpt(RCPT)
            assert code == 250, (what, code, resp)
            code, resp = s.data(msg)
        assert code == 250, (f"{what}: expected 250 at the end of DATA, got {code} {resp!r}"
                             f"\n{w.log_tail()}")
    for mark, msg, what in cases:
        d = w.landed(mark)
        assert len(d.all("X-Spam-Score")) == 1, f"{what}: no X-Spam-Score field\n{d.show()}"
        check_scored(d, SPAM_J)
    assert w.server.alive(), f"ownmail exited\n{w.log_tail()}"
    assert_no_panic(w.server.log)


def test_score_at_or_above_junk_score_marks_and_files_into_junk(ownmail, pki, dkim_key):
    """Measures a clean and an ugly message with a junk-score nobody reaches, then restarts
    with the junk-score half-way between them: the ugly one now gets X-Spam: yes and lands
    in .Junk, the clean one still in INBOX. GTUBE scores 1000 (symbol GTUBE)."""
    lines = ["spam junk-score 500 reject-score 5000"]
    with antispam_world(ownmail, pki, dkim_key, lines) as w:
        def ugly(mark):
            # unsigned, sender domain whose SPF refuses us, no Date, no Message-ID
            return clean_message(mark, sender="promo@spoofed.test", name=None,
                                 subject="FREE MONEY!!! ACT NOW " + mark, date=False,
                                 message_id=False,
                                 body=["CLICK HERE http://198.51.100.7/win NOW!!!", ""])
        w.dns.set("spoofed.test", "TXT", ["v=spf1 ip4:203.0.113.9 -all"])

        mc, mu, mg = marker("c"), marker("u"), marker("g")
        w.send(w.sign(clean_message(mc)))
        w.send(ugly(mu), sender="promo@spoofed.test")
        w.send(w.sign(clean_message(mg, body=["Hello,", "", GTUBE, ""])))
        clean, bad, gtube = w.landed(mc), w.landed(mu), w.landed(mg)
        sc, su = check_scored(clean, 500).score, check_scored(bad, 500).score
        gst = check_scored(gtube, 500)
        assert gtube.folder == "junk" and gtube.spam_yes(), gtube.show()
        assert "GTUBE" in gst.symbols and gst.symbols["GTUBE"] == pytest.approx(1000), (
            f"GTUBE should be the symbol GTUBE(1000): {gst}")
        assert su > sc, (
            f"an unsigned, SPF-failing message without Date and Message-ID scored {su}, not "
            f"more than a signed, well-formed one ({sc})\n{bad.show()}\n{clean.show()}")

        mid = round((sc + su) / 2, 2)
        text = w.conf.read_text(encoding="utf-8").replace(
            "spam junk-score 500 reject-score 5000", f"spam junk-score {mid} reject-score 500")
        w.restart(text)
        mc2, mu2 = marker("c"), marker("u")
        w.send(w.sign(clean_message(mc2)))
        w.send(ugly(mu2), sender="promo@spoofed.test")
        clean2, bad2 = w.landed(mc2), w.landed(mu2)
        st = check_scored(bad2, mid)
        assert bad2.folder == "junk" and bad2.spam_yes() and st.flag == "Yes", (
            f"junk-score {mid} (clean {sc}, ugly {su}): the ugly message should be junk\n"
            f"{bad2.show()}")
        st = check_scored(clean2, mid)
        assert clean2.folder == "inbox" and st.flag == "No", clean2.show()


# =========================================================================== DNSBL

BLOCK, ALLOW, JUNK, SLOW = ("block.dnsbl.test", "allow.dnsbl.test", "junk.dnsbl.test",
                            "slow.dnsbl.test")
C_BLOCKED, C_ALLOWED, C_JUNK, C_SLOW = OUTSIDE_ADDRS
DNSBL_LINES = (
    f"spam junk-score {SPAM_J} reject-score {SPAM_R}",
    f"dnsbl {BLOCK} reject",
    f"dnsbl {ALLOW} allow",
    f"dnsbl {JUNK} junk",
    f"dnsbl {SLOW} reject",
)


def dnsbl_setup(dns):
    def listed(client, zone):
        dns.set(f"{reversed_v4(client)}.{zone}", "A", ["127.0.0.2"])
        dns.set(f"{reversed_v4(client)}.{zone}", "TXT", [f"{client} is listed for the test"])

    listed(C_BLOCKED, BLOCK)
    listed(C_ALLOWED, BLOCK)        # listed in a reject zone, and in the allow zone
    listed(C_ALLOWED, ALLOW)
    listed(C_JUNK, JUNK)
    dns.silent.add(f"{reversed_v4(C_SLOW)}.{SLOW}")


@pytest.fixture(scope="module")
def dnsbl_world(ownmail, pki, dkim_key):
    with antispam_world(ownmail, pki, dkim_key, DNSBL_LINES, dns_setup=dnsbl_setup) as w:
        # the zones answer as meant (asked from the server's namespace)
        assert dns_query(w.ns, w.dns, f"11.2.0.192.{BLOCK}") == ("NOERROR", ["127.0.0.2"])
        assert dns_query(w.ns, w.dns, f"11.2.0.192.{ALLOW}")[0] == "NXDOMAIN"
        assert dns_query(w.ns, w.dns, f"12.2.0.192.{ALLOW}") == ("NOERROR", ["127.0.0.2"])
        assert dns_query(w.ns, w.dns, f"13.2.0.192.{JUNK}") == ("NOERROR", ["127.0.0.2"])
        assert dns_query(w.ns, w.dns, f"11.2.0.192.{SLOW}")[0] == "NXDOMAIN"
        assert dns_query(w.ns, w.dns, f"14.2.0.192.{SLOW}", timeout=1) == ("TIMEOUT", [])
        yield w


def test_dnsbl_reject_refuses_a_listed_client_at_mail_from(dnsbl_world):
    w = dnsbl_world
    asked = len(w.dns.queried(f"11.2.0.192.{BLOCK}"))
    with w.client(C_BLOCKED) as c:
        c.ehlo(HELO)
        r = c.cmd(f"MAIL FROM:<alice@{SENDER_DOMAIN}>")
        assert r.code == 554 and r.enhanced == "5.7.1" and f"blocked using {BLOCK}" in r.text, (
            f"{C_BLOCKED} is listed in {BLOCK} (reject): expected `554 5.7.1 ... blocked "
            f"using {BLOCK}` at MAIL FROM, got:\n{r}\n{c.dialogue()}\n{w.log_tail()}")
    assert len(w.dns.queried(f"11.2.0.192.{BLOCK}")) > asked, "ownmail never asked the DNSBL"
    # a client that is not listed anywhere is served (and loopback is never looked up)
    m = marker("unlisted")
    with w.local_smtp() as s:
        smtp_send(s, "root@localhost.test", [RCPT], clean_message(m))
    assert w.landed(m).folder == "inbox"


def test_dnsbl_allow_zone_overrides_a_reject_zone(dnsbl_world):
    w = dnsbl_world
    # control: a client listed in the reject zone only is refused
    with w.client(C_BLOCKED) as c:
        c.ehlo(HELO)
        r = c.cmd(f"MAIL FROM:<alice@{SENDER_DOMAIN}>")
        assert r.code == 554, (f"control: {C_BLOCKED} (listed in {BLOCK} only) is not "
                               f"refused, so the DNSBL is not on at all:\n{r}")
    m = marker("allowed")
    with w.smtp(C_ALLOWED) as s:
        s.ehlo()
        code, resp = s.mail(f"alice@{SENDER_DOMAIN}")
        assert code == 250, (
            f"{C_ALLOWED} is listed in {BLOCK} (reject) and in {ALLOW} (allow): it must not "
            f"be refused, got {code} {resp!r}\n{w.log_tail()}")
        assert s.rcpt(RCPT)[0] == 250
        code, resp = s.data(w.sign(clean_message(m)))
        assert code == 250, (code, resp)
    d = w.landed(m)
    assert d.folder == "inbox", d.show()


def test_dnsbl_junk_zone_marks_the_message_and_files_it_into_junk(dnsbl_world):
    w = dnsbl_world
    m = marker("rbljunk")
    asked = len(w.dns.queried(f"13.2.0.192.{JUNK}"))
    w.send(w.sign(clean_message(m)), source=C_JUNK)
    d = w.landed(m)
    st = d.status()
    rbl = [s for s in st.symbols if s.upper().startswith("RBL_")]
    assert d.spam_yes() and d.folder == "junk" and rbl, (
        f"{C_JUNK} is listed in {JUNK} (junk): expected X-Spam: yes, an RBL_… symbol in "
        f"X-Spam-Status and .Junk\n{d.show()}")
    assert len(w.dns.queried(f"13.2.0.192.{JUNK}")) > asked, "ownmail never asked the DNSBL"


def test_dnsbl_zone_that_never_answers_fails_open_and_logs_a_timeout(dnsbl_world):
    w = dnsbl_world
    m = marker("slow")
    start = w.server.mark()
    asked = len(w.dns.queried(f"14.2.0.192.{SLOW}"))
    t0 = time.monotonic()
    with w.smtp(C_SLOW, timeout=60) as s:
        smtp_send(s, f"alice@{SENDER_DOMAIN}", [RCPT], w.sign(clean_message(m)))
    took = time.monotonic() - t0
    d = w.landed(m)
    assert d.folder == "inbox", d.show()
    assert took < 45, f"the transaction took {took:.1f}s: the DNSBL wait is not bounded"
    assert len(w.dns.queried(f"14.2.0.192.{SLOW}")) > asked, (
        f"ownmail never asked the silent zone {SLOW}\n{w.log_tail()}")
    lines = [ln for ln in w.server.lines[start:]
             if SLOW in ln and re.search(r"time[d ]?out", ln, re.I)]
    assert lines, (f"no log line mentions {SLOW} and a timeout\n{w.log_tail()}")


# =========================================================================== greylisting

GREY_DELAY = 3.0
GREY_LINES = ("greylist delay 3s expire 1d", f"dnsbl {ALLOW} allow")


def greylist_setup(dns):
    dns.set(f"{reversed_v4(OUTSIDE_ADDRS[2])}.{ALLOW}", "A", ["127.0.0.2"])


@pytest.fixture(scope="module")
def grey_world(ownmail, pki, dkim_key):
    with antispam_world(ownmail, pki, dkim_key, GREY_LINES, dns_setup=greylist_setup) as w:
        yield w


def rcpt_reply(w, sender, source=OUTSIDE):
    """One connection from outside: EHLO, MAIL FROM:<sender> (250), RCPT; returns the RCPT
    reply and the still-open client."""
    c = w.client(source)
    c.ehlo(HELO)
    c.cmd(f"MAIL FROM:<{sender}>", 250)
    return c.cmd(f"RCPT TO:<{RCPT}>"), c


def test_greylisting_defers_a_new_triplet_then_accepts_and_remembers_it_across_a_restart(
        grey_world):
    w = grey_world
    sender = f"grey-{uuid.uuid4().hex[:8]}@{SENDER_DOMAIN}"
    t0 = time.monotonic()
    r, c = rcpt_reply(w, sender)
    with c:
        assert r.code == 451 and r.enhanced == "4.7.1", (
            f"a new (client, sender, recipient) triplet: expected 451 4.7.1 at RCPT, got:\n"
            f"{r}\n{c.dialogue()}\n{w.log_tail()}")
    time.sleep(0.5)
    r, c = rcpt_reply(w, sender)
    early = time.monotonic() - t0
    with c:
        assert early < GREY_DELAY, f"the early retry came {early:.1f}s late (test too slow)"
        assert r.code == 451 and r.enhanced == "4.7.1", (
            f"a retry {early:.1f}s after the first try (delay 3s): expected 451 4.7.1, got:"
            f"\n{r}\n{c.dialogue()}")
    time.sleep(max(0.0, t0 + GREY_DELAY + 0.7 - time.monotonic()))
    m = marker("grey")
    r, c = rcpt_reply(w, sender)
    with c:
        assert r.code == 250, (
            f"a retry {time.monotonic() - t0:.1f}s after the first try (delay 3s): expected "
            f"250, got:\n{r}\n{c.dialogue()}\n{w.log_tail()}")
        r = send_data(c, w.sign(clean_message(m, sender=sender)))
        assert r.code == 250, f"{r}\n{c.dialogue()}"
        c.cmd("QUIT", 221)
    assert w.landed(m).folder == "inbox"

    # the triplet's client part is the /24: another address of that network passes at once
    r, c = rcpt_reply(w, sender, source=OUTSIDE_ADDRS[3])
    with c:
        assert r.code == 250, (
            f"{OUTSIDE_ADDRS[3]} is in the same /24 as {OUTSIDE}, whose triplet passed: "
            f"expected 250 at once, got:\n{r}\n{c.dialogue()}")

    # the triplet is remembered in the spool: after a restart it passes at once
    w.restart()
    m = marker("grey2")
    r, c = rcpt_reply(w, sender)
    with c:
        assert r.code == 250, (
            f"after a restart (same spool) the triplet that passed must pass at once, got:"
            f"\n{r}\n{c.dialogue()}\n{w.log_tail()}")
        r = send_data(c, w.sign(clean_message(m, sender=sender)))
        assert r.code == 250, f"{r}\n{c.dialogue()}"
        c.cmd("QUIT", 221)
    assert w.landed(m).folder == "inbox"


def test_greylisting_spares_authenticated_loopback_and_allowlisted_clients(grey_world):
    w = grey_world
    # control: a new triplet from an ordinary outside client is greylisted in this world
    r, c = rcpt_reply(w, f"ctl-{uuid.uuid4().hex[:8]}@{SENDER_DOMAIN}", source=OUTSIDE_ADDRS[1])
    with c:
        assert r.code == 451, f"greylisting is not on (control):\n{r}\n{c.dialogue()}"

    with w.auth_client() as c:
        c.cmd(f"MAIL FROM:<{RCPT}>", 250)
        r = c.cmd(f"RCPT TO:<{RCPT}>")
        assert r.code == 250, (f"an authenticated client is never greylisted, got:\n{r}\n"
                               f"{c.dialogue()}")

    with w.local_client() as c:
        c.ehlo("localhost")
        c.cmd(f"MAIL FROM:<loc-{uuid.uuid4().hex[:8]}@{SENDER_DOMAIN}>", 250)
        r = c.cmd(f"RCPT TO:<{RCPT}>")
        assert r.code == 250, f"a loopback client is never greylisted, got:\n{r}\n{c.dialogue()}"

    r, c = rcpt_reply(w, f"alw-{uuid.uuid4().hex[:8]}@{SENDER_DOMAIN}", source=OUTSIDE_ADDRS[2])
    with c:
        assert r.code == 250, (
            f"{OUTSIDE_ADDRS[2]} is listed in the allow zone {ALLOW}: not greylisted, got:\n"
            f"{r}\n{c.dialogue()}\n{w.log_tail()}")


# ================================================= greylisting: allow table, hosts we relay to

FRIENDLY = "friendly.test"              # in the allow table; SPF passes for 192.0.2.12 only
C_ALLOWNET = OUTSIDE_ADDRS[2]           # 192.0.2.13/32 is in the allow table
C_SPF_OK, C_SPF_FAIL = OUTSIDE_ADDRS[1], OUTSIDE_ADDRS[3]
REMOTE = "remote.test"                  # MX 10 mx.remote.test (the sink, 198.51.100.25)
REMOTE_MX = "198.51.100.25"
C_REMOTE_NET = "198.51.100.7"           # another host of the MX's /24, a client of ours
REMOTE_NET_LINE = re.compile(r"^p \d+ \d+ 198\.51\.100\.0/24 \* \*$", re.M)


def grey_allow_setup(dns):
    dns.set(FRIENDLY, "TXT", [f"v=spf1 ip4:{C_SPF_OK} -all"])
    dns.set(REMOTE, "MX", [(10, f"mx.{REMOTE}")])
    dns.set(f"mx.{REMOTE}", "A", [REMOTE_MX])


@pytest.fixture(scope="module")
def grey_allow_world(ownmail, pki, dkim_key, tmp_path_factory):
    """greylist delay 3s allow <grey_ok> (192.0.2.13/32 and friendly.test), and a relay for
    local clients to an MX (an SMTP sink) at 198.51.100.25 in the outside namespace, whose
    /24 holds the outside client 198.51.100.7 too (routed on eth0 from the server)."""
    d = tmp_path_factory.mktemp("antispam-greyallow")
    d.chmod(0o755)
    table = d / "grey_ok"
    table.write_text(f"# networks and sender domains spared greylisting\n{C_ALLOWNET}/32\n"
                     f"{FRIENDLY}\n", encoding="utf-8")
    table.chmod(0o644)
    lines = (f"table grey_ok file:{table}", "greylist delay 3s expire 1d allow <grey_ok>")
    tail = ('action "out" relay', 'match from local for any action "out"')
    with antispam_world(ownmail, pki, dkim_key, lines, dns_setup=grey_allow_setup,
                        tail=tail) as w:
        for a in (REMOTE_MX, C_REMOTE_NET):
            _ip("-n", w.outside.name, "addr", "add", f"{a}/24", "dev", "eth0p")
        _ip("-n", w.ns.name, "route", "add", "198.51.100.0/24", "dev", "eth0")
        sink = SmtpSink(REMOTE_MX, 25, ns=w.outside, hostname=f"mx.{REMOTE}").start()
        w.sink = sink
        try:
            yield w
        finally:
            sink.stop()


def expect_greylisted(w, sender, source, why):
    """A new triplet from `source` gets 451 4.7.1 at RCPT (`why`: what the test expects)."""
    r, c = rcpt_reply(w, sender, source=source)
    with c:
        assert r.code == 451 and r.enhanced == "4.7.1", (
            f"{why}, got:\n{r}\n{c.dialogue()}\n{w.log_tail()}")


def expect_passes_and_lands(w, m, sender, source, why):
    """A new triplet from `source` gets 250 at once, and the message (marker m) is in INBOX."""
    r, c = rcpt_reply(w, sender, source=source)
    with c:
        assert r.code == 250, f"{why}, got:\n{r}\n{c.dialogue()}\n{w.log_tail()}"
        r = send_data(c, clean_message(m, sender=sender))
        assert r.code == 250, f"{r}\n{c.dialogue()}"
        c.cmd("QUIT", 221)
    assert w.landed(m).folder == "inbox"


def test_greylisting_spares_the_allow_tables_networks_and_its_domains_when_spf_passes(
        grey_allow_world):
    w = grey_allow_world
    tag = uuid.uuid4().hex[:8]
    # control: a sender domain that is not in the table, SPF passing, is greylisted
    expect_greylisted(w, f"ctl-{tag}@{SENDER_DOMAIN}", C_SPF_OK,
                      f"{SENDER_DOMAIN} is not in <grey_ok> (its SPF passes): a new triplet must be "
                      f"greylisted")

    r, c = rcpt_reply(w, f"net-{tag}@{SENDER_DOMAIN}", source=C_ALLOWNET)
    with c:
        assert r.code == 250, (
            f"{C_ALLOWNET}/32 is in <grey_ok>: a new triplet from it passes at once, got:\n"
            f"{r}\n{c.dialogue()}\n{w.log_tail()}")

    m = marker("friendly")
    sender = f"x-{tag}@{FRIENDLY}"
    expect_passes_and_lands(w, m, sender, C_SPF_OK,
                            f"{FRIENDLY} is in <grey_ok> and its SPF passes for {C_SPF_OK}: a new triplet "
                            f"passes at once")

    expect_greylisted(w, f"y-{tag}@{FRIENDLY}", C_SPF_FAIL,
                      f"{FRIENDLY} is in <grey_ok> but its SPF fails for {C_SPF_FAIL}: a new "
                      f"triplet must be greylisted")


def greylist_file(w):
    try:
        return (w.spool / "greylist").read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def test_greylisting_spares_the_network_of_a_host_we_relayed_to_also_after_a_restart(
        grey_allow_world):
    w = grey_allow_world
    tag = uuid.uuid4().hex[:8]
    assert not REMOTE_NET_LINE.search(greylist_file(w)), (
        f"198.51.100.0/24 is allowed before any relay:\n{greylist_file(w)}")
    # control: before we relay to its MX, a client of that network is greylisted
    expect_greylisted(w, f"pre-{tag}@{SENDER_DOMAIN}", C_REMOTE_NET,
                      f"{C_REMOTE_NET} before any relay to {REMOTE_MX}: a new triplet must be "
                      f"greylisted")

    # a local user's mail to bob@remote.test is relayed to its MX, which accepts it
    m = marker("relayed")
    msg = (f"From: <{RCPT}>\r\nTo: <bob@{REMOTE}>\r\nSubject: reply please {m}\r\n"
           f"Date: {email.utils.formatdate(localtime=True)}\r\n"
           f"Message-ID: <{m}@example.org>\r\n\r\nHello Bob,\r\n-- {m}\r\n").encode()
    with w.local_smtp() as s:
        smtp_send(s, RCPT, [f"bob@{REMOTE}"], msg)
    got = []
    for _ in deadline_loop(20, 0.1):
        got = w.sink.messages_with(m)
        if got:
            break
    assert got, (f"the message to bob@{REMOTE} did not reach its MX {REMOTE_MX} within 20s "
                 f"(sink: {w.sink.connections} connections, refusals {w.sink.refusals})\n"
                 f"{w.log_tail()}")
    # the MX's network is written to SPOOL/greylist once the MX said 250 to our DATA
    for _ in deadline_loop(10, 0.05):
        if REMOTE_NET_LINE.search(greylist_file(w)):
            break
    state = greylist_file(w)
    assert REMOTE_NET_LINE.search(state), (
        f"no `p FIRST LAST 198.51.100.0/24 * *` line in SPOOL/greylist after relaying to "
        f"{REMOTE_MX}:\n{state}\n{w.log_tail()}")

    m = marker("fromremote")
    sender = f"bob-{tag}@{SENDER_DOMAIN}"
    expect_passes_and_lands(w, m, sender, C_REMOTE_NET,
                            f"we relayed to {REMOTE_MX}: a new triplet from its /24 ({C_REMOTE_NET}) passes "
                            f"at once")

    # other networks are still greylisted
    expect_greylisted(w, f"other-{tag}@{SENDER_DOMAIN}", OUTSIDE,
                      f"{OUTSIDE} is not in the network we relayed to: a new triplet must still be "
                      f"greylisted")

    # the allowed network is kept in SPOOL/greylist: after a restart it still passes
    w.restart()
    r, c = rcpt_reply(w, f"after-{tag}@{SENDER_DOMAIN}", source=C_REMOTE_NET)
    with c:
        assert r.code == 250, (
            f"after a restart (same spool) the network of {REMOTE_MX} must still pass at "
            f"once, got:\n{r}\n{c.dialogue()}\n{greylist_file(w)}\n{w.log_tail()}")
    assert_no_panic(w.server.log)


# =========================================================================== rate limits

LIMIT_N = 3
LIMIT_LINES = (f"limit messages {LIMIT_N} per minute per client",
               f"limit connections {LIMIT_N} per minute per client")


@pytest.fixture(scope="module")
def limit_world(ownmail, pki, dkim_key):
    with antispam_world(ownmail, pki, dkim_key, LIMIT_LINES) as w:
        yield w


def one_transaction(c, w, mark, sender=f"alice@{SENDER_DOMAIN}"):
    c.cmd(f"MAIL FROM:<{sender}>", 250)
    c.cmd(f"RCPT TO:<{RCPT}>", 250)
    r = send_data(c, w.sign(clean_message(mark)))
    assert r.code == 250, f"{r}\n{c.dialogue()}"


def test_message_rate_limit_per_client(limit_world):
    w = limit_world
    a, b = OUTSIDE_ADDRS[0], OUTSIDE_ADDRS[1]
    with w.client(a) as c:
        c.ehlo(HELO)
        for i in range(LIMIT_N):
            one_transaction(c, w, marker(f"lim{i}"))
        r = c.cmd(f"MAIL FROM:<alice@{SENDER_DOMAIN}>")
        assert r.code == 451 and r.enhanced == "4.7.1", (
            f"MAIL FROM number {LIMIT_N + 1} within a minute from {a} (limit messages "
            f"{LIMIT_N} per minute per client): expected 451 4.7.1, got:\n{r}\n"
            f"{c.dialogue()}\n{w.log_tail()}")
    m = marker("limother")
    with w.client(b) as c:
        c.ehlo(HELO)
        one_transaction(c, w, m)
        c.cmd("QUIT", 221)
    assert w.landed(m).folder == "inbox"
    # loopback is not limited
    with w.local_client() as c:
        c.ehlo("localhost")
        for i in range(LIMIT_N + 2):
            one_transaction(c, w, marker(f"limloc{i}"), sender="root@localhost.test")


def test_connection_rate_limit_per_client(limit_world):
    w = limit_world
    a, b = OUTSIDE_ADDRS[2], OUTSIDE_ADDRS[3]
    for i in range(LIMIT_N):
        with w.client(a) as c:
            c.cmd("QUIT", 221)
    c = w.client(a, greeting=False)
    with c:
        try:
            r = c.reply(10)
        except SmtpClosed as e:
            pytest.fail(f"connection {LIMIT_N + 1} from {a}: closed without a reply ({e})")
        assert r.code == 421 and r.enhanced == "4.7.0", (
            f"connection number {LIMIT_N + 1} within a minute from {a} (limit connections "
            f"{LIMIT_N} per minute per client): expected a `421 4.7.0` greeting, got:\n{r}\n"
            f"{w.log_tail()}")
    with w.client(b) as c:
        c.ehlo(HELO)
        c.cmd("QUIT", 221)


# =========================================================================== screens

PREGREET = 2.0
SCREEN_LINES = ("screen helo reject", "screen pregreet 2s")


@pytest.fixture(scope="module")
def screen_world(ownmail, pki, dkim_key):
    with antispam_world(ownmail, pki, dkim_key, SCREEN_LINES) as w:
        yield w


def test_helo_without_a_dot_is_refused_at_mail_from(screen_world):
    w = screen_world
    with w.client(timeout=15) as c:
        c.cmd("EHLO foo", 250)
        r = c.cmd(f"MAIL FROM:<alice@{SENDER_DOMAIN}>")
        assert r.code == 550 and r.enhanced == "5.7.1", (
            f"`EHLO foo` (no dot) with `screen helo reject`: expected 550 5.7.1 at MAIL "
            f"FROM, got:\n{r}\n{c.dialogue()}\n{w.log_tail()}")
    m = marker("helook")
    with w.client(timeout=15) as c:
        c.ehlo(HELO)
        one_transaction(c, w, m)
        c.cmd("QUIT", 221)
    assert w.landed(m).folder == "inbox"
    with w.local_client() as c:
        c.cmd("EHLO foo", 250)
        c.cmd("MAIL FROM:<root@localhost.test>", 250)


def test_pregreet_talker_is_refused_and_a_patient_client_is_served(screen_world):
    w = screen_world
    # talks first: EHLO right after connecting, before any greeting
    sock = w.outside.connect(SERVER, 25, timeout=15, source=OUTSIDE)
    c = SmtpClient(sock, timeout=15)
    with c:
        c.send("EHLO x\r\n")
        try:
            r = c.reply(15)
        except SmtpClosed as e:
            pytest.fail(f"a client that talks before the greeting: closed without a 554 "
                        f"({e})\n{c.dialogue()}\n{w.log_tail()}")
        assert r.code == 554, (
            f"a client that talks before the greeting (screen pregreet 2s) must get 554 "
            f"first, got:\n{r}\n{c.dialogue()}\n{w.log_tail()}")
        assert c.closed(5), f"the connection stays open after the 554\n{c.dialogue()}"

    # patient: waits for the greeting, which comes after the pregreet wait
    m = marker("patient")
    t0 = time.monotonic()
    with w.client(greeting=False, timeout=15) as c:
        c.expect(220, timeout=15)
        waited = time.monotonic() - t0
        assert waited >= PREGREET - 0.5, (
            f"the greeting came after {waited:.2f}s: no pregreet wait (2s) from outside")
        c.ehlo(HELO)
        one_transaction(c, w, m)
        c.cmd("QUIT", 221)
    assert w.landed(m).folder == "inbox"

    # loopback is not screened: greeted at once
    t0 = time.monotonic()
    with w.local_client():
        waited = time.monotonic() - t0
    assert waited < PREGREET - 0.5, f"a loopback client waited {waited:.2f}s for the greeting"


# =========================================================================== classifier

CLS_J, CLS_R = 3, 100
CLS_LINES = (f"spam junk-score {CLS_J} reject-score {CLS_R}",)
SPAM_WORDS = ("viagra lottery winner bitcoin casino prize urgent claim pharmacy discount "
              "jackpot cash bonus guaranteed investment crypto pills cheap exclusive million "
              "inheritance refund wealth unclaimed rolex replica").split()
HAM_WORDS = ("meeting agenda invoice rust compiler family dinner project review schedule "
             "minutes draft report budget weekend garden birthday kernel patch release "
             "deadline lunch quarterly trip library").split()
FILLER = ("the and for with this that from about your our please will have been more some "
          "time there which would could also just like into other than then when what their "
          "know today week next here".split())
NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")


def corpus_message(rng, kind, key):
    """A well-formed, signed message of class kind ("spam" | "ham"); returns (mark, bytes)."""
    words = SPAM_WORDS if kind == "spam" else HAM_WORDS
    mark = uuid.UUID(int=rng.getrandbits(128)).hex[:16]
    subject = " ".join(rng.sample(words, 2) + rng.sample(FILLER, rng.randint(1, 2)))
    subject = subject[0].upper() + subject[1:]
    body_words = [rng.choice(words) if rng.random() < 0.4 else rng.choice(FILLER)
                  for _ in range(rng.randint(40, 80))]
    body = [" ".join(body_words[i:i + 10]) for i in range(0, len(body_words), 10)]
    name = rng.choice(NAMES)
    msg = clean_message(mark, sender=f"{name}@{SENDER_DOMAIN}", name=name.capitalize(),
                        subject=subject, body=["Hi,", "", *body, "", name.capitalize()])
    return mark, sign(msg, key)


def send_corpus(w, items):
    """Sends [(kind, mark, msg)] from outside over one connection per 20 messages."""
    for i in range(0, len(items), 20):
        with w.smtp() as s:
            for kind, mark, msg in items[i:i + 20]:
                sender = re.search(rb"^From: \S+ <([^>]+)>", msg, re.M).group(1).decode()
                smtp_send(s, sender, [RCPT], msg)


def wait_all_landed(w, items, timeout=60):
    """{mark: Delivered} once every item landed in INBOX/new or .Junk/new."""
    out = {}
    for _ in deadline_loop(timeout, 0.2):
        for kind, mark, _msg in items:
            if mark not in out:
                found = find_landed(w.maildir, mark)
                if found:
                    out[mark] = Delivered(*found[0])
        if len(out) == len(items):
            return out
    missing = [m for _k, m, _ in items if m not in out]
    pytest.fail(f"{len(missing)} of {len(items)} messages did not land within {timeout}s: "
                f"{missing[:5]}\n{w.log_tail()}")


def uids_by_mark(c, folder, marks):
    """SELECT folder; {mark: uid} for the messages whose Message-ID holds one of marks."""
    c.select(folder)
    r = c.ok("UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    out = {}
    for u in r.lines(r"^\* \d+ FETCH "):
        m = re.search(r"\bUID (\d+)", u.text)
        if not m or not u.literals:
            continue
        mid = u.literals[0].decode("utf-8", "replace")
        for mark in marks:
            if mark in mid:
                out[mark] = int(m.group(1))
    return out


def uid_move(c, uids, folder):
    for i in range(0, len(uids), 20):
        chunk = ",".join(map(str, uids[i:i + 20]))
        r = c.command(f"UID MOVE {chunk} {quote(folder)}")
        assert r.status == "OK", f"UID MOVE {chunk} {folder}: {r}\n{c.dialogue()}"


def test_classifier_learns_from_imap_moves_and_survives_a_restart(ownmail, pki, dkim_key):
    rng = random.Random(20261125)
    key = dkim_key[0]
    with antispam_world(ownmail, pki, dkim_key, CLS_LINES, imap=True) as w:
        def batch(n_spam, n_ham):
            items = [("spam", *corpus_message(rng, "spam", key)) for _ in range(n_spam)]
            items += [("ham", *corpus_message(rng, "ham", key)) for _ in range(n_ham)]
            rng.shuffle(items)
            return items

        # 1. training mail: the classifier knows nothing yet, everything lands in INBOX
        train = batch(40, 40)
        send_corpus(w, train)
        landed = wait_all_landed(w, train)
        ham_junk = [m for k, m, _ in train if k == "ham" and landed[m].folder != "inbox"]
        assert not ham_junk, (
            f"{len(ham_junk)} of 40 well-formed ham messages went to Junk before any "
            f"training:\n{landed[ham_junk[0]].show()}")
        spam_marks = [m for k, m, _ in train if k == "spam" and landed[m].folder == "inbox"]
        ham_marks = [m for k, m, _ in train if k == "ham"]
        assert len(spam_marks) >= 30, (
            f"only {len(spam_marks)} of 40 spam messages landed in INBOX before training")

        # 2. train over IMAP: spam INBOX -> Junk; ham INBOX -> Junk -> INBOX
        c = w.imap()
        with c:
            uids = uids_by_mark(c, "INBOX", spam_marks + ham_marks)
            missing = [m for m in spam_marks + ham_marks if m not in uids]
            assert not missing, f"{len(missing)} messages not found over IMAP in INBOX"
            uid_move(c, sorted(uids[m] for m in spam_marks), "Junk")
            uid_move(c, sorted(uids[m] for m in ham_marks), "Junk")
            junk_uids = uids_by_mark(c, "Junk", ham_marks)
            assert len(junk_uids) == len(ham_marks), (
                f"{len(junk_uids)} of {len(ham_marks)} ham messages found in Junk after MOVE")
            uid_move(c, sorted(junk_uids.values()), "INBOX")
            inbox = uids_by_mark(c, "INBOX", ham_marks)
            assert len(inbox) == len(ham_marks), "the ham did not come back to INBOX"
            c.logout()
        db = w.maildir / "ownmail-spam.db"
        for _ in deadline_loop(10, 0.2):
            if db.exists():
                break
        assert db.exists(), (f"no classifier database {db} after the IMAP moves\n"
                             f"{w.log_tail()}")

        # 3. held-out mail is filed by what was learned
        def filed(items):
            got = wait_all_landed(w, items)
            spam = [m for k, m, _ in items if k == "spam"]
            ham = [m for k, m, _ in items if k == "ham"]
            spam_ok = [m for m in spam if got[m].folder == "junk"]
            ham_ok = [m for m in ham if got[m].folder == "inbox"]
            wrong = [got[m] for m in spam if m not in spam_ok] + \
                [got[m] for m in ham if m not in ham_ok]
            detail = "\n".join(f"  {d.folder}: {d.msg.get('Subject')!r} "
                               f"{' '.join(d.all('X-Spam-Status'))}" for d in wrong[:8])
            return spam, ham, spam_ok, ham_ok, detail, got

        test = batch(20, 20)
        send_corpus(w, test)
        spam, ham, spam_ok, ham_ok, detail, got = filed(test)
        for m in spam_ok[:1] + ham_ok[:1]:
            check_scored(got[m], CLS_J)
        summary = (f"held-out spam in Junk: {len(spam_ok)}/{len(spam)} "
                   f"({100 * len(spam_ok) / len(spam):.0f}%), held-out ham in INBOX: "
                   f"{len(ham_ok)}/{len(ham)} ({100 * len(ham_ok) / len(ham):.0f}%)")
        print(summary)
        assert len(spam_ok) >= 0.9 * len(spam) and len(ham_ok) >= 0.9 * len(ham), (
            f"classifier accuracy below 90% after training on 40+40: {summary}\n"
            f"misfiled:\n{detail}\n{w.log_tail()}")

        # 4. what was learned survives a restart
        w.restart()
        more = batch(5, 0)
        send_corpus(w, more)
        spam, _ham, spam_ok, _h, detail, _got = filed(more)
        assert len(spam_ok) >= 4, (
            f"after a restart only {len(spam_ok)} of 5 new spam messages went to Junk: the "
            f"training did not survive\nmisfiled:\n{detail}\n{w.log_tail()}")
