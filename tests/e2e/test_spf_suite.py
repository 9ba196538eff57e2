"""The RFC 7208 SPF test suite (openspf.org, release 2014.04, as Debian's python3-spf ships it
in /usr/share/doc/python3-spf/rfc7208-tests.yml.gz) run against ownmail's SPF evaluation
through a DNS server on loopback.

Each scenario's zone data is served by a dnslib server on 127.0.0.1 (records named `SPF` are
served as TXT when the name has no TXT of its own, as the suite's drivers do; `TIMEOUT` and
names under `error.` get no answer at all); its cases go through
`crates/policy/examples/spf_eval`, which calls the same `InboundChecks::spf` that checks
incoming mail. A case passes when our result is one the suite accepts.

Known failures are listed in KNOWN_FAILURES with the reason; the test fails when a case
outside that list fails, and also when a listed case starts passing (update the list).
"""

import gzip
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

try:
    import dnslib  # noqa: E402
    import yaml  # noqa: E402
    from dnslib import server as dnsserver  # noqa: E402
except ImportError as e:  # scripts/test installs python3-yaml and python3-dnslib
    raise ImportError(f"{e}: install python3-yaml and python3-dnslib (scripts/test does)") from e

ROOT = Path(__file__).resolve().parents[2]
SUITE = Path("/usr/share/doc/python3-spf/rfc7208-tests.yml.gz")
TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
if not TARGET.is_absolute():
    TARGET = ROOT / TARGET
EXAMPLE = TARGET / "debug" / "examples" / "spf_eval"

# case id -> why we fail it (mail-auth 0.13.3's SPF evaluation; see docs/receiving.md).
KNOWN_FAILURES = {
    "macro-mania-in-domain": "got fail, want pass: the expanded name holds spaces and `%`; we ask for it as raw labels, but the answer does not come back as a match through the loopback server (not traced further)",
    "mx-colon-domain": "got neutral, want pass: the MX host `foo:bar/baz.example.com` comes back from hickory in its escaped text form, and that name's A lookup does not find it",
    "mx-colon-domain-ip4mapped": "got neutral, want pass: as mx-colon-domain",
    "null-text": "got temperror, want pass: the name also has a TXT record with no strings at all, which hickory fails to decode, so the whole TXT lookup errs",
}


def load_suite():
    if not SUITE.exists():
        pytest.fail(f"{SUITE} is missing: install Debian's python3-spf (apt-get install "
                    "python3-spf), which ships the RFC 7208 test suite", pytrace=False)
    with gzip.open(SUITE, "rb") as f:
        return [s for s in yaml.safe_load_all(f) if s]


def build_example():
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    p = subprocess.run([cargo, "build", "-q", "-p", "ownmail-policy", "--example", "spf_eval"],
                       cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, f"building the spf_eval example failed:\n{p.stderr}"
    assert EXAMPLE.exists()


def as_bytes(v):
    return v.encode("utf-8", "surrogateescape") if isinstance(v, str) else bytes(v)


def txt_rdata(v):
    strings = [v] if isinstance(v, str) else list(v)
    chunks = []
    for s in strings:
        b = as_bytes(s)
        chunks.extend([b[i:i + 255] for i in range(0, len(b), 255)] or [b""])
    return dnslib.TXT(chunks)


class Zone:
    """One scenario's zonedata, as the suite's drivers (pyspf's testspf.py) read it."""

    def __init__(self, zonedata):
        self.names = {}
        for name, entries in (zonedata or {}).items():
            recs, has_txt, spf = [], False, []
            for e in entries:
                if e == "TIMEOUT":
                    recs.append(("TIMEOUT", None))
                    continue
                for t, v in e.items():
                    if t == "TXT":
                        has_txt = True
                    if t == "SPF":
                        spf.append(v)
                    if v == "NONE" or v == ["NONE"]:
                        continue
                    recs.append((t, v))
            if not has_txt:
                recs.extend(("TXT", v) for v in spf if v not in ("NONE", ["NONE"]))
            self.names[name.lower().rstrip(".")] = recs

    def answer(self, qname, qtype, level=0):
        """(rcode, [RR]) or None for no answer at all (a timeout). A CNAME is followed one
        level, as the suite's drivers do."""
        key = qname.lower().rstrip(".")
        if key not in self.names:
            return None if key.startswith("error.") else (dnslib.RCODE.NXDOMAIN, [])
        rrs = []
        for t, v in self.names[key]:
            if t == "TIMEOUT":
                if not rrs:
                    return None
                continue
            if v == "TIMEOUT":
                if t == qtype:
                    return None
                continue
            if t == "CNAME" or t == qtype:
                rrs.append(self.rr(qname, t, v))
                if t == "CNAME" and qtype != "CNAME" and not level:
                    target = self.answer(str(v), qtype, 1)
                    if target is None:
                        return None
                    rrs.extend(target[1])
        return (dnslib.RCODE.NOERROR, rrs)

    @staticmethod
    def rr(qname, t, v):
        D = dnslib
        if t == "A":
            rd = D.A(v)
        elif t == "AAAA":
            rd = D.AAAA(v)
        elif t == "MX":
            rd = D.MX(str(v[1]), int(v[0]))
        elif t == "PTR":
            rd = D.PTR(str(v))
        elif t == "CNAME":
            rd = D.CNAME(str(v))
        elif t in ("TXT", "SPF"):
            rd = txt_rdata(v)
            t = "TXT"
        else:
            raise ValueError(f"record type {t}")
        return D.RR(qname, getattr(D.QTYPE, t), rdata=rd, ttl=0)


class NoAnswer(Exception):
    """The query times out: nothing is sent back."""


class Handler(dnsserver.DNSHandler):
    def handle(self):
        try:
            super().handle()
        except NoAnswer:
            pass


class Resolver(dnsserver.BaseResolver):
    def __init__(self):
        self.zone = Zone({})

    def resolve(self, request, handler):
        qname = str(request.q.qname)
        qtype = dnslib.QTYPE.get(request.q.qtype, str(request.q.qtype))
        ans = self.zone.answer(qname, qtype)
        if ans is None:
            raise NoAnswer()
        reply = request.reply()
        reply.header.rcode = ans[0]
        for rr in ans[1]:
            rr.rname = request.q.qname
            reply.add_answer(rr)
        return reply


@pytest.fixture(scope="module")
def dns():
    resolver = Resolver()

    class Quiet(dnsserver.DNSLogger):
        def __init__(self):
            super().__init__(log="-request,-reply,-truncated,-error", prefix=False,
                             logf=lambda s: None)

    for _ in range(20):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        try:
            udp = dnsserver.DNSServer(resolver, address="127.0.0.1", port=port, logger=Quiet(),
                                       handler=Handler)
            tcp = dnsserver.DNSServer(resolver, address="127.0.0.1", port=port, tcp=True,
                                      logger=Quiet(), handler=Handler)
        except OSError:
            continue
        udp.start_thread()
        tcp.start_thread()
        yield resolver, f"127.0.0.1:{port}"
        udp.stop()
        tcp.stop()
        return
    pytest.fail("no free port for the DNS server")


def run_scenario(addr, cases):
    lines = "".join(f"{c['host']}\t{c.get('helo', '')}\t{c.get('mailfrom', '')}\n"
                    for _, c in cases)
    p = subprocess.run([str(EXAMPLE), addr], input=lines, capture_output=True, text=True,
                       timeout=120)
    assert "panicked" not in p.stderr, p.stderr
    assert p.returncode == 0, p.stderr
    return [ln.split("\t", 1)[0] for ln in p.stdout.splitlines()]


def test_rfc7208_suite(dns):
    resolver, addr = dns
    build_example()
    passed, failed = [], {}
    for scenario in load_suite():
        resolver.zone = Zone(scenario.get("zonedata"))
        cases = sorted(scenario["tests"].items())
        results = run_scenario(addr, cases)
        assert len(results) == len(cases)
        for (cid, case), got in zip(cases, results):
            want = case["result"]
            want = [want] if isinstance(want, str) else list(want)
            if got in want:
                passed.append(cid)
            else:
                failed[cid] = f"got {got}, want {'|'.join(want)} ({case.get('spec', '')})"
    total = len(passed) + len(failed)
    report = [f"RFC 7208 suite: {len(passed)}/{total} passed, {len(failed)} failed"]
    report += [f"  FAIL {cid}: {why}" for cid, why in sorted(failed.items())]
    print("\n".join(report))
    unexpected = {c: w for c, w in failed.items() if c not in KNOWN_FAILURES}
    fixed = sorted(c for c in KNOWN_FAILURES if c not in failed)
    assert not unexpected and not fixed, (
        "\n".join(report) + f"\nunexpected failures: {sorted(unexpected)}"
        f"\nlisted as known failures but passing now: {fixed}")
