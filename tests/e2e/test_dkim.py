"""DKIM signing (SPEC §5.7, §4.2 `dkim sign`), `ownmail dkim keygen` and `ownmail dns` (§3).

Keys come from `ownmail dkim keygen`; the TXT records it prints are served by the test DNS
server in the namespace, and dkimpy (Debian python3-dkim) verifies what reached the remote
MX (an aiosmtpd sink), looking the key up in that DNS server. ownmail relays for local
clients (`match from local for any action "out"`), and local senders' mail is signed:

    example.org  — RSA 2048 key, selector rsa1
    ed.test      — Ed25519 key, selector ed1 (named through a table)
"""

import os
import re
import socket
import stat
import subprocess
import uuid

import dkim
import pytest
from dnslib import DNSRecord

from conftest import assert_no_panic, make_message, smtp_send, wait_maildir, \
    write_relay_conf

REMOTE = "x@remote.test"
TXT_RE = re.compile(r'^(\S+)\s+IN\s+TXT\s+((?:"[^"]*"\s*)+)$')


def txt_line(line):
    """`NAME. IN TXT "a" "b"` -> (name without the final dot, "ab")."""
    m = TXT_RE.match(line.strip())
    assert m, f"not a TXT zone line: {line!r}"
    return m.group(1).rstrip("."), "".join(re.findall(r'"([^"]*)"', m.group(2)))


def keygen(om, tmp, domain, selector, algorithm):
    out = tmp / f"{domain}.{selector}.key"
    rc, stdout, stderr = om("dkim", "keygen", domain, "--selector", selector,
                            "--algorithm", algorithm, "--out", str(out))
    assert_no_panic(stderr)
    assert rc == 0, stderr
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, f"keygen must print exactly the TXT record on stdout: {stdout!r}"
    return out, lines[0], stderr


def dns_txt(net, name):
    """The TXT strings of `name`, asked of the test DNS server over UDP in the namespace."""
    s = net.ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(5)
        q = DNSRecord.question(name, "TXT")
        s.sendto(q.pack(), (net.dns.host, net.dns.port))
        reply = DNSRecord.parse(s.recv(65535))
    finally:
        s.close()
    return [b"".join(rr.rdata.data) for rr in reply.rr if rr.rtype == 16]


def verify(net, data):
    """dkimpy's verdict on a message, keys looked up in the loopback DNS server."""
    def dnsfunc(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        records = dns_txt(net, name.rstrip("."))
        return records[0] if records else b""
    return dkim.verify(data, dnsfunc=dnsfunc)


def sig_tags(data):
    """The tags of the (single) DKIM-Signature field of a message."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace").replace("\r\n", "\n")
    fields = re.findall(r"^DKIM-Signature:(.*(?:\n[ \t].*)*)", head, re.M | re.I)
    assert len(fields) == 1, f"expected one DKIM-Signature, got {len(fields)}:\n{head}"
    flat = re.sub(r"\s+", "", fields[0])
    return dict(t.split("=", 1) for t in flat.split(";") if "=" in t)


class World:
    def __init__(self, net, om, setup, server, sink, records, keys):
        self.net, self.om, self.setup, self.server, self.sink = net, om, setup, server, sink
        self.records, self.keys = records, keys

    def send(self, sender, msg, rcpts=(REMOTE,)):
        n = len(self.sink.messages)
        with self.net.smtp() as s:
            smtp_send(s, sender, list(rcpts), msg)
        if REMOTE in rcpts:
            return self.sink.wait_messages(n + 1)[n].data
        return None


@pytest.fixture
def world(relay_net, om):
    net = relay_net
    root = net.root
    rsa_key, rsa_line, rsa_err = keygen(om, root, "example.org", "rsa1", "rsa")
    ed_key, ed_line, _ = keygen(om, root, "ed.test", "ed1", "ed25519")
    assert str(rsa_key) in rsa_err.splitlines(), f"keygen must print the key's path: {rsa_err}"
    records = {}
    for line in (rsa_line, ed_line):
        name, value = txt_line(line)
        records[name] = (line, value)
        strings = re.findall(r'"([^"]*)"', line)
        net.dns.set(name, "TXT", [strings])
    setup = write_relay_conf(root, resolver=net.dns, extra=[
        "table edoms { ed.test }",
        f'dkim sign domain example.org selector rsa1 key "{rsa_key}"',
        f'dkim sign domain <edoms> selector ed1 key "{ed_key}" algorithm ed25519-sha256',
    ])
    sink = net.sink("127.0.0.2")
    net.dns.mx("remote.test", (10, "mx.remote.test"))
    net.dns.a("mx.remote.test", "127.0.0.2")
    server = net.start_ownmail(setup.conf)
    return World(net, om, setup, server, sink, records, {"rsa": rsa_key, "ed": ed_key})


def mark():
    return f"dkim-{uuid.uuid4().hex[:12]}"


# ----------------------------------------------------------------------------- keygen


def test_keygen_writes_a_private_key_readable_by_root_only(om, tmp_path):
    for alg, k in (("rsa", "rsa"), ("ed25519", "ed25519")):
        key, line, _ = keygen(om, tmp_path, "example.org", f"s-{alg}", alg)
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
        assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----\n")
        name, value = txt_line(line)
        assert name == f"s-{alg}._domainkey.example.org"
        assert value.startswith(f"v=DKIM1; k={k}; p=")
        assert all(len(s) <= 255 for s in re.findall(r'"([^"]*)"', line))


def test_keygen_never_overwrites_a_key(om, tmp_path):
    key, _, _ = keygen(om, tmp_path, "example.org", "s1", "ed25519")
    before = key.read_bytes()
    rc, out, err = om("dkim", "keygen", "example.org", "--selector", "s1",
                      "--algorithm", "ed25519", "--out", str(key))
    assert rc != 0 and "already exists" in err, err
    assert out == ""
    assert key.read_bytes() == before


def test_keygen_default_selector_and_file_name(om, tmp_path):
    rc, out, err = om("dkim", "keygen", "Example.ORG", "--algorithm", "ed25519",
                      cwd=str(tmp_path))
    assert rc == 0, err
    assert (tmp_path / "example.org.ownmail.key").exists()
    assert txt_line(out.strip())[0] == "ownmail._domainkey.example.org"


def test_keygen_refuses_bad_names(om, tmp_path):
    rc, out, err = om("dkim", "keygen", "bad domain;", "--out", str(tmp_path / "k"))
    assert rc != 0 and "not a domain" in err
    assert not (tmp_path / "k").exists()


# ----------------------------------------------------------------------------- signing


@pytest.mark.parametrize("sender,alg,d,s", [
    ("m@example.org", "rsa-sha256", "example.org", "rsa1"),
    ("someone@ed.test", "ed25519-sha256", "ed.test", "ed1"),
])
def test_signed_mail_verifies_with_dkimpy(world, sender, alg, d, s):
    # The record dkimpy finds is the one keygen printed, served by the loopback DNS.
    assert dns_txt(world.net, f"{s}._domainkey.{d}") == [
        world.records[f"{s}._domainkey.{d}"][1].encode()]
    data = world.send(sender, make_message(mark(), sender=sender, to=REMOTE))
    tags = sig_tags(data)
    assert tags["a"] == alg
    assert tags["c"] == "relaxed/relaxed"
    assert (tags["d"], tags["s"]) == (d, s)
    h = [x.lower() for x in tags["h"].split(":")]
    assert h.count("from") == 2, f"From must be oversigned: {h}"
    assert {"to", "subject", "date", "message-id"} <= set(h)
    assert verify(world.net, data), f"dkimpy rejects the signature:\n{data[:2000]!r}"
    assert world.server.grep(rf"event=dkim-signed domain={re.escape(d)} selector={s}")


@pytest.mark.parametrize("sender", ["m@example.org", "someone@ed.test"])
def test_tampering_with_body_or_subject_breaks_verification(world, sender):
    m = mark()
    data = world.send(sender, make_message(m, sender=sender, to=REMOTE))
    assert verify(world.net, data)
    body_changed = data.replace(f"This is {m}.".encode(), f"This is {m}!".encode())
    subject_changed = data.replace(f"Subject: {m}".encode(), f"Subject: {m} (edited)".encode())
    assert body_changed != data and subject_changed != data
    assert not verify(world.net, body_changed)
    assert not verify(world.net, subject_changed)


def test_mail_from_another_domain_is_not_signed(world):
    data = world.send("m@example.org", make_message(mark(), sender="alice@elsewhere.test",
                                                    to=REMOTE))
    assert b"dkim-signature:" not in data.lower()


def test_local_delivery_is_not_signed(world):
    m = mark()
    world.send("m@example.org", make_message(m, sender="m@example.org"),
               rcpts=("m@example.org",))
    files = wait_maildir(world.setup.maildir, 1)
    data = open(files[0], "rb").read()
    assert m.encode() in data
    assert b"dkim-signature:" not in data.lower()


def test_body_ending_in_whitespace_only_lines_verifies_with_dkimpy(world):
    # RFC 6376 §3.4.4: those lines are empty once their trailing whitespace is gone, and
    # empty lines at the end are not hashed (mail-auth 0.13.3 hashed them: vendor/README.md).
    m = mark()
    msg = (f"From: <m@example.org>\r\nTo: <{REMOTE}>\r\nSubject: {m}\r\n"
           f"Message-ID: <{m}@client.test>\r\nDate: Sun, 26 May 2013 00:33:59 +0200\r\n"
           f"\r\nHello {m}\r\n \r\n\t\r\n  \t \r\n\r\n").encode()
    data = world.send("m@example.org", msg)
    assert data.endswith(b"\r\n \r\n\t\r\n  \t \r\n\r\n"), data[-40:]
    assert verify(world.net, data), f"dkimpy rejects:\n{data!r}"
    # And the same message signed by dkimpy hashes its body as we do.
    ours = sig_tags(data)["bh"]
    theirs = sig_tags(dkim.sign(msg, b"rsa1", b"example.org", world.keys["rsa"].read_bytes(),
                                canonicalize=(b"relaxed", b"relaxed"),
                                include_headers=[b"from"]) + msg)["bh"]
    assert ours == theirs


# ----------------------------------------------------------------------------- dns


def test_dns_prints_the_records_to_publish(world, om):
    rc, out, err = om("dns", "example.org", "-f", str(world.setup.conf))
    assert_no_panic(err)
    assert rc == 0, err
    lines = [ln for ln in out.splitlines() if ln and not ln.startswith(";")]
    assert any(re.fullmatch(r"example\.org\. IN MX 10 \S+\.", ln) for ln in lines), out
    txts = dict(txt_line(ln) for ln in lines if " IN TXT " in ln)
    assert txts["example.org"] == "v=spf1 mx -all"
    assert txts["rsa1._domainkey.example.org"] == world.records["rsa1._domainkey.example.org"][1]
    assert txts["_dmarc.example.org"].startswith("v=DMARC1; p=quarantine")
    assert re.search(r"^; .*PTR", out, re.M), out
    rc, out, err = om("dns", "ed.test", "-f", str(world.setup.conf))
    assert rc == 0, err
    txts = dict(txt_line(ln) for ln in out.splitlines() if " IN TXT " in ln)
    assert txts["ed1._domainkey.ed.test"] == world.records["ed1._domainkey.ed.test"][1]
    rc, out, err = om("dns", "unsigned.test", "-f", str(world.setup.conf))
    assert rc == 0, err
    assert "_domainkey" not in out and "no `dkim sign` line for unsigned.test" in out


# ----------------------------------------------------------------------------- bad keys


def test_bad_keys_are_check_errors_at_their_line(om, tmp_path):
    weak = tmp_path / "weak.key"
    subprocess.run(["openssl", "genrsa", "-out", str(weak), "1024"], check=True,
                   capture_output=True)
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key\n")
    conf = tmp_path / "smtpd.conf"
    conf.write_text(
        "listen on 127.0.0.1 port 2525\n"
        f'dkim sign domain a.test selector s key "{weak}"\n'
        f'dkim sign domain b.test selector s key "{garbage}"\n'
        f'dkim sign domain c.test selector s key "{tmp_path / "missing.key"}"\n'
        'action "out" relay\nmatch from local for any action "out"\n')
    rc, out, err = om("check", "-f", str(conf))
    assert_no_panic(err)
    assert rc == 1, err
    assert re.search(rf"^{re.escape(str(conf))}:2:\d+: .*1024-bit RSA key.*keygen", err, re.M), err
    assert re.search(rf"^{re.escape(str(conf))}:3:\d+: .*no PEM private key", err, re.M), err
    assert re.search(rf"^{re.escape(str(conf))}:4:\d+: .*missing\.key", err, re.M), err
    assert "configuration OK" not in err


def test_serve_refuses_to_start_with_a_weak_key(relay_net, om):
    weak = relay_net.root / "weak.key"
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", str(weak), "1024"],
                   check=True, capture_output=True)
    setup = write_relay_conf(relay_net.root, resolver=relay_net.dns, extra=[
        f'dkim sign domain example.org selector s key "{weak}"'])
    rc, out, err = om("serve", "-f", str(setup.conf), "--spool", str(relay_net.root / "spool"),
                      ns=relay_net.ns, timeout=30)
    assert_no_panic(err)
    assert rc != 0
    assert re.search(rf"{re.escape(str(setup.conf))}:\d+:\d+: DKIM key .*1024-bit", err), err
    assert "ownmail ready" not in err
