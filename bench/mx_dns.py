#!/usr/bin/python3
"""A tiny authoritative DNS server for the outbound benchmarks (bench/smtp-out).

    mx_dns.py [--listen 127.0.0.1] [--port 53] [--ttl 300] DOMAIN=ADDR [DOMAIN=ADDR ...]

For each DOMAIN it answers `DOMAIN MX 10 mx.DOMAIN` and `mx.DOMAIN A ADDR`; every other
name is NXDOMAIN, a known name without the asked type is NODATA (both with a SOA). UDP and
TCP on the same port. Runs in the foreground until SIGTERM/SIGINT. Needs python3-dnslib.
Prints `ready PORT` on stdout once both sockets listen.
"""

import argparse
import signal
import sys
import threading

from dnslib import QTYPE, RCODE, RR, A, MX, SOA
from dnslib.server import DNSLogger, DNSServer


class Resolver:
    def __init__(self, pairs, ttl):
        self.ttl = ttl
        self.records = {}
        for domain, addr in pairs:
            d = domain.lower().rstrip(".")
            self.records.setdefault(d, {})["MX"] = [MX(f"mx.{d}", 10)]
            self.records.setdefault(f"mx.{d}", {})["A"] = [A(addr)]

    def resolve(self, request, handler):
        reply = request.reply()
        qname = str(request.q.qname)
        key = qname.lower().rstrip(".")
        qtype = QTYPE.get(request.q.qtype, "")
        known = self.records.get(key)
        rrs = known.get(qtype, []) if known else []
        for rd in rrs:
            reply.add_answer(RR(qname, request.q.qtype, rdata=rd, ttl=self.ttl))
        if not rrs:
            if known is None:
                reply.header.rcode = RCODE.NXDOMAIN
            zone = key.split(".")[-1] + "."
            reply.add_auth(RR(zone, QTYPE.SOA, ttl=self.ttl,
                              rdata=SOA(f"ns.{zone}", f"hostmaster.{zone}",
                                        (1, 60, 60, 3600, self.ttl))))
        return reply


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=53)
    ap.add_argument("--ttl", type=int, default=300)
    ap.add_argument("pairs", nargs="+", metavar="DOMAIN=ADDR")
    a = ap.parse_args()
    if not a.listen.startswith("127."):
        sys.exit("mx_dns.py: loopback addresses only")
    pairs = [p.split("=", 1) for p in a.pairs]
    resolver = Resolver(pairs, a.ttl)
    quiet = DNSLogger(log="-request,-reply,-truncated,-error", prefix=False, logf=lambda s: None)
    servers = [DNSServer(resolver, address=a.listen, port=a.port, tcp=tcp, logger=quiet)
               for tcp in (False, True)]
    for s in servers:
        s.start_thread()
    print(f"ready {a.port}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    for s in servers:
        s.server.shutdown()
        s.server.server_close()


if __name__ == "__main__":
    main()
