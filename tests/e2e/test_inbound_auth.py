"""Checks of incoming mail (SPEC §5.7, issue 8 item 4): SPF, DKIM, DMARC and ARC results in
one `Authentication-Results:` field with our host name, forged ones removed, `dmarc reject`
and `dmarc fail junk` / `spf fail junk`, and bad input that must never lose a message.

The server runs in a namespace with lo and eth0 (192.0.2.10) and a test DNS server on its
127.0.0.1; the client comes from a second namespace as 192.0.2.11, so that it counts as
"from outside" (neither loopback, nor local socket, nor authenticated). Messages are signed
with dkimpy (Debian python3-dkim), with keys from `ownmail dkim keygen`.
"""

import re
import socket
import uuid

import dkim
import pytest

from conftest import (
    DnsServer,
    NsSMTP,
    _ip,
    assert_no_panic,
    delivered,
    maildir_files,
    make_message,
    make_netns,
    smtp_send,
    start_ownmail,
    stop_ownmail,
    wait_delivered,
    world_tmpdir,
    write_vmail_conf,
)

SERVER = "192.0.2.10"
OUTSIDE = "192.0.2.11"
RCPT = "m@example.org"


def keygen(om, tmp, domain, selector):
    out = tmp / f"{domain}.{selector}.key"
    rc, stdout, stderr = om("dkim", "keygen", domain, "--selector", selector,
                            "--algorithm", "rsa", "--out", str(out))
    assert rc == 0, stderr
    strings = re.findall(r'"([^"]*)"', stdout.strip())
    return out, strings


class World:
    def __init__(self, server, outside, dns, maildir, keys, host):
        self.server, self.outside, self.dns = server, outside, dns
        self.maildir, self.keys, self.host = maildir, keys, host

    def smtp(self):
        return NsSMTP(SERVER, 25, ns=self.outside, timeout=60, local_hostname="mx.sender.test")

    def send(self, sender, msg):
        with self.smtp() as s:
            return smtp_send(s, sender, [RCPT], msg)

    def sign(self, msg, domain, selector="s1", key=None):
        key = (key or self.keys[domain]).read_bytes()
        sig = dkim.sign(msg, selector.encode(), domain.encode(), key,
                        canonicalize=(b"relaxed", b"relaxed"))
        return sig.replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n") + msg

    def delivered_headers(self, marker, junk=False):
        maildir = self.maildir / ".Junk" if junk else self.maildir
        files = wait_delivered(maildir, marker, server=self.server)
        data = files[0].read_bytes()
        head = data.split(b"\n\n", 1)[0].decode("utf-8", "replace")
        return head

    def auth_results(self, marker, junk=False):
        """Our Authentication-Results field of the delivered message, unfolded."""
        head = self.delivered_headers(marker, junk)
        fields = re.findall(r"^Authentication-Results:(.*(?:\n[ \t].*)*)", head, re.M | re.I)
        ours = [re.sub(r"\s+", " ", f).strip() for f in fields
                if f.strip().lower().startswith(self.host.lower() + ";")]
        assert len(ours) == 1, f"expected one Authentication-Results of {self.host}:\n{head}"
        return ours[0]


@pytest.fixture(scope="module")
def world(ownmail, pki):
    def om(*args):
        import subprocess
        p = subprocess.run([ownmail, *args], capture_output=True, text=True, timeout=120)
        return p.returncode, p.stdout, p.stderr

    with world_tmpdir() as root, make_netns(eth0=True) as ns, \
            make_netns(eth0=False) as outside:
        _ip("-n", ns.name, "link", "set", "eth0p", "netns", outside.name)
        _ip("-n", outside.name, "addr", "add", f"{OUTSIDE}/24", "dev", "eth0p")
        _ip("-n", outside.name, "link", "set", "eth0p", "up")
        dns = DnsServer(ns=ns).start()
        keys = {}
        for domain in ("sender.test", "forged.test", "reject.test"):
            key, strings = keygen(om, root, domain, "s1")
            keys[domain] = key
            dns.set(f"s1._domainkey.{domain}", "TXT", [strings])
        # A key that is not the published one, to forge signatures with.
        keys["other"], _ = keygen(om, root, "other.test", "s1")
        dns.set("sender.test", "TXT", ["v=spf1 ip4:192.0.2.11 -all"])
        dns.set("_dmarc.sender.test", "TXT", ["v=DMARC1; p=reject"])
        dns.set("forged.test", "TXT", ["v=spf1 ip4:203.0.113.5 -all"])
        dns.set("_dmarc.forged.test", "TXT", ["v=DMARC1; p=quarantine"])
        dns.set("reject.test", "TXT", ["v=spf1 ip4:203.0.113.5 -all"])
        dns.set("_dmarc.reject.test", "TXT", ["v=DMARC1; p=reject"])
        dns.set("softonly.test", "TXT", ["v=spf1 ip4:203.0.113.5 -all"])
        dns.set("garbage.test", "TXT", ["v=spf1 ip4:not-an-ip +mx:: %{zz} ~~~"])
        dns.set("_dmarc.garbage.test", "TXT", ["v=DMARC1; p=bogus; sp=%%%"])
        # Names under timeout.test get no answer at all (the handler raises, dnslib drops).
        resolve = dns.resolve

        def silent(request, handler):
            if str(request.q.qname).rstrip(".").lower().endswith("timeout.test"):
                raise RuntimeError("no answer for timeout.test")
            return resolve(request, handler)
        dns.resolve = silent

        setup = write_vmail_conf(root, listens=(f"listen on {SERVER} port 25",),
                                 extra=[dns.resolver_line, "dmarc reject", "dmarc fail junk",
                                        "spf fail junk"])
        text = setup.conf.read_text()
        setup.conf.write_text(text.replace('maildir "~/" virtual', 'maildir "~/" junk virtual'))
        server = start_ownmail(ownmail, setup.conf, spool=root / "spool", pki_dir=pki, ns=ns)
        try:
            yield World(server, outside, dns, setup.maildir, keys, socket.gethostname())
        finally:
            stop_ownmail(server)
            dns.stop()
            assert_no_panic(server.log)


def mark():
    return f"inbound-{uuid.uuid4().hex[:12]}"


def test_signed_mail_from_an_spf_allowed_address_passes_everything(world):
    m = mark()
    msg = world.sign(make_message(m, sender="alice@sender.test"), "sender.test")
    world.send("alice@sender.test", msg)
    ar = world.auth_results(m)
    assert "spf=pass smtp.mailfrom=alice@sender.test" in ar, ar
    assert "dkim=pass header.d=sender.test header.s=s1" in ar, ar
    assert "dmarc=pass" in ar and "header.from=sender.test" in ar, ar
    assert "arc=none" in ar, ar
    # Our field is on top, above our Received: (delivery adds Return-Path/Delivered-To).
    head = world.delivered_headers(m)
    names = [ln.split(":", 1)[0] for ln in head.split("\n") if ln and ln[0] not in " \t"]
    assert names[:4] == ["Return-Path", "Delivered-To", "Authentication-Results", "Received"], \
        head[:400]
    assert "X-Spam: yes" not in head


def test_forged_mail_fails_and_goes_to_junk(world):
    m = mark()
    # Signed for forged.test with a key that is not the published one, sent from an
    # address forged.test's SPF does not allow; forged.test publishes p=quarantine.
    msg = world.sign(make_message(m, sender="eve@forged.test"), "forged.test",
                     key=world.keys["other"])
    world.send("eve@forged.test", msg)
    ar = world.auth_results(m, junk=True)
    assert "spf=fail" in ar, ar
    assert "dkim=fail" in ar, ar
    assert "dmarc=fail" in ar, ar
    head = world.delivered_headers(m, junk=True)
    assert "X-Spam: yes" in head and "X-Ownmail-Junk: dmarc-fail" in head, head
    assert not delivered(world.maildir, m), "a junk message must not reach the inbox"


def test_dmarc_reject_failure_is_refused_at_data(world):
    m = mark()
    before = len(maildir_files(world.maildir)) + len(maildir_files(world.maildir / ".Junk"))
    msg = make_message(m, sender="mallory@reject.test")
    with world.smtp() as s:
        s.ehlo()
        assert s.mail("mallory@reject.test")[0] == 250
        assert s.rcpt(RCPT)[0] == 250
        code, resp = s.data(msg)
    assert code == 550, (code, resp)
    assert b"5.7.1" in resp and b"DMARC" in resp, resp
    world.server.wait_for(r"event=refused reason=auth-results")
    after = len(maildir_files(world.maildir)) + len(maildir_files(world.maildir / ".Junk"))
    assert after == before and not delivered(world.maildir, m)


def test_spf_fail_alone_goes_to_junk(world):
    m = mark()
    # softonly.test has no DMARC record: only `spf fail junk` applies.
    world.send("bob@softonly.test", make_message(m, sender="bob@softonly.test"))
    head = world.delivered_headers(m, junk=True)
    assert "X-Ownmail-Junk: spf-fail" in head, head
    ar = world.auth_results(m, junk=True)
    assert "spf=fail" in ar and "dkim=none" in ar and "dmarc=none" in ar, ar


def test_forged_authentication_results_with_our_name_are_removed(world):
    m = mark()
    host = world.host
    msg = make_message(m, sender="alice@sender.test", extra_headers=[
        f"Authentication-Results: {host.upper()}; spf=pass smtp.mailfrom=ceo@bank.test",
        f"Authentication-Results: (forged) {host};",
        "\tdkim=pass header.d=bank.test",
        "Authentication-Results: other.example; dkim=pass header.d=other.example",
    ])
    msg = world.sign(msg, "sender.test")
    world.send("alice@sender.test", msg)
    head = world.delivered_headers(m)
    assert "ceo@bank.test" not in head and "header.d=bank.test" not in head, head
    assert "Authentication-Results: other.example; dkim=pass header.d=other.example" in head
    ar = world.auth_results(m)
    assert "dkim=pass header.d=sender.test" in ar, ar


def test_malformed_dkim_signature_is_permerror_and_delivered(world):
    m = mark()
    msg = make_message(m, sender="alice@sender.test", extra_headers=[
        "DKIM-Signature: v=1; a=rsa-sha999; d=; s=;;; bh=!!!; b=@@@; h=; x=notanumber",
    ])
    world.send("alice@sender.test", msg)
    ar = world.auth_results(m)
    assert re.search(r"dkim=(permerror|neutral)", ar), ar
    assert "spf=pass" in ar, ar


def test_a_one_megabyte_header_is_permerror_and_delivered(world):
    m = mark()
    big = ["X-Big: start"] + ["\t" + "x" * 70 for _ in range(15000)]
    msg = make_message(m, sender="alice@sender.test", extra_headers=big)
    assert len(msg) > 1_000_000
    world.send("alice@sender.test", msg)
    ar = world.auth_results(m)
    assert "spf=pass" in ar, ar
    assert "dkim=permerror" in ar and "header section too large" in ar, ar


def test_garbage_txt_records_are_permerror_and_delivered(world):
    m = mark()
    world.send("bob@garbage.test", make_message(m, sender="bob@garbage.test"))
    ar = world.auth_results(m)
    assert "spf=permerror" in ar, ar


def test_a_dns_server_that_never_answers_is_temperror_and_delivered(world):
    m = mark()
    # A well-formed signature (right body hash), so that checking it needs the key.
    msg = world.sign(make_message(m, sender="bob@timeout.test"), "timeout.test",
                     key=world.keys["other"])
    world.send("bob@timeout.test", msg)
    ar = world.auth_results(m)
    assert "spf=temperror" in ar, ar
    assert "dkim=temperror" in ar, ar
    assert "dmarc=temperror" in ar, ar
    assert world.server.alive()
