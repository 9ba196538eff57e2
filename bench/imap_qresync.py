#!/usr/bin/env python3
"""QRESYNC resync benchmark (issue 11): what a client that comes back to a large folder pays.

A socket-level IMAP client (stdlib only, loopback only) so that the bytes on the wire are
counted exactly (IMAP bytes the server sends: every response line with its CRLF and every
literal; TCP/IP headers not included).

  phase 1  LOGIN, ENABLE QRESYNC, SELECT INBOX: UIDVALIDITY, HIGHESTMODSEQ; then
           FETCH 1:* (UID FLAGS MODSEQ): the client's full state. LOGOUT.
  phase 2  another session: --changes UID STORE +FLAGS.SILENT (\\Flagged) on random UIDs
           (one command each), then --expunge other random UIDs: UID STORE +FLAGS.SILENT
           (\\Deleted) and UID EXPUNGE. LOGOUT.
  phase 3  --runs times, each on a fresh connection: LOGIN, ENABLE QRESYNC, then
           SELECT INBOX (QRESYNC (uidvalidity modseq 1:maxuid)), timed from sending the
           SELECT to its tagged OK; bytes received for it, FETCH and VANISHED lines; checked:
           exactly the changed UIDs in FETCH (with \\Flagged), exactly the expunged UIDs in
           VANISHED (EARLIER), EXISTS = N - expunged.
           The same without known-uids (SELECT INBOX (QRESYNC (uidvalidity modseq))).
           And a naive full resync for comparison: fresh connection, LOGIN, plain SELECT INBOX,
           UID FETCH 1:* (FLAGS), timed from sending the FETCH to its tagged OK.
Times are medians over the runs (all runs listed too). Prints one JSON object on stdout.

Usage: imap_qresync.py --port P --user U --password PW --expect N
       [--changes 100] [--expunge 10] [--runs 5] [--seed 11] [--timeout 300] [--dump FILE]
"""
import argparse
import json
import random
import re
import socket
import statistics
import sys
import time


class ImapError(Exception):
    pass


class Conn:
    """One IMAP connection; counts bytes read and written."""

    def __init__(self, host, port, timeout):
        if not host.startswith("127."):
            raise SystemExit(f"refusing non-loopback host {host}")
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.rx = 0          # bytes consumed from the server
        self.tx = 0          # bytes sent
        self.n = 0
        greeting = self.read_response_line()
        if not greeting.startswith(b"* OK"):
            raise ImapError(f"greeting: {greeting[:200]!r}")

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ImapError("connection closed by server")
        self.buf += chunk

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[: i + 2], self.buf[i + 2:]
                self.rx += len(line)
                return line
            self._fill()

    def _bytes(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        self.rx += n
        return data

    def read_response_line(self):
        """One logical response line, literals inlined (their bytes are counted)."""
        out = b""
        while True:
            line = self._line()
            m = re.search(rb"\{(\d+)\+?\}\r\n$", line)
            if m:
                out += line + self._bytes(int(m.group(1)))
                continue
            return out + line

    def send(self, text):
        data = text.encode() + b"\r\n"
        self.sock.sendall(data)
        self.tx += len(data)

    def command(self, cmd, check=True):
        """-> (untagged lines, tagged line, seconds from send to the tagged line, bytes read)"""
        self.n += 1
        tag = f"Q{self.n:04d}"
        rx0 = self.rx
        t0 = time.perf_counter()
        self.send(f"{tag} {cmd}")
        lines = []
        while True:
            line = self.read_response_line()
            if line.startswith(tag.encode() + b" "):
                dt = time.perf_counter() - t0
                if check and not line[len(tag) + 1:].startswith(b"OK"):
                    raise ImapError(f"{cmd[:60]!r}: {line[:300]!r}")
                return lines, line, dt, self.rx - rx0
            if line.startswith(b"+"):
                raise ImapError(f"{cmd[:60]!r}: unexpected continuation {line[:200]!r}")
            lines.append(line)

    def login(self, user, password):
        q = lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
        self.command(f"LOGIN {q(user)} {q(password)}")

    def logout(self):
        try:
            self.command("LOGOUT", check=False)
        except (ImapError, OSError):
            pass
        self.sock.close()


RE_FETCH = re.compile(rb"^\* (\d+) FETCH \((.*)\)\r\n$", re.S)
RE_UID = re.compile(rb"\bUID (\d+)")
RE_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")
RE_MODSEQ = re.compile(rb"\bMODSEQ \((\d+)\)")
RE_CODE = lambda name: re.compile(rb"\[" + name + rb" (\d+)\]")
RE_EXISTS = re.compile(rb"^\* (\d+) EXISTS\r\n$")
RE_VANISHED = re.compile(rb"^\* VANISHED (\(EARLIER\) )?([0-9:,]+)\r\n$")


def parse_set(s):
    out = set()
    for part in s.split(","):
        if ":" in part:
            a, b = (int(x) for x in part.split(":"))
            out.update(range(min(a, b), max(a, b) + 1))
        else:
            out.add(int(part))
    return out


def uid_set(uids):
    """sorted UIDs -> compact IMAP set"""
    uids = sorted(uids)
    parts, i = [], 0
    while i < len(uids):
        j = i
        while j + 1 < len(uids) and uids[j + 1] == uids[j] + 1:
            j += 1
        parts.append(str(uids[i]) if i == j else f"{uids[i]}:{uids[j]}")
        i = j + 1
    return ",".join(parts)


def code(lines, name):
    rx = RE_CODE(name)
    for ln in lines:
        m = rx.search(ln)
        if m:
            return int(m.group(1))
    return None


def exists(lines):
    for ln in lines:
        m = RE_EXISTS.match(ln)
        if m:
            return int(m.group(1))
    return None


def fetches(lines):
    """-> {uid: (flags set, modseq or None)} and the number of FETCH lines"""
    out, n = {}, 0
    for ln in lines:
        m = RE_FETCH.match(ln)
        if not m:
            continue
        n += 1
        body = m.group(2)
        u = RE_UID.search(body)
        f = RE_FLAGS.search(body)
        ms = RE_MODSEQ.search(body)
        if u:
            out[int(u.group(1))] = (set(f.group(1).decode().split()) if f else None,
                                     int(ms.group(1)) if ms else None)
    return out, n


def ms(x):
    return round(x * 1000, 1)


def summary(values):
    return {"median": round(statistics.median(values), 1), "min": min(values), "max": max(values),
            "all": values}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--expect", type=int, required=True, help="messages in INBOX")
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--expunge", type=int, default=10)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--timeout", type=float, default=300, help="seconds per socket operation")
    ap.add_argument("--dump", help="write the first QRESYNC SELECT's response here")
    a = ap.parse_args()
    res = {"messages": a.expect, "changes": a.changes, "expunge": a.expunge, "runs": a.runs,
           "errors": []}
    err = res["errors"].append

    def conn():
        c = Conn(a.host, a.port, a.timeout)
        c.login(a.user, a.password)
        return c

    # ---- phase 1: the client's full state ------------------------------------------------
    c = conn()
    caps, _, _, _ = c.command("CAPABILITY")
    capline = b" ".join(caps).upper()
    for cap in (b"QRESYNC", b"CONDSTORE", b"UIDPLUS", b"ENABLE"):
        if cap not in capline:
            err(f"CAPABILITY lacks {cap.decode()}")
    lines, _, _, _ = c.command("ENABLE QRESYNC")
    if not any(b"ENABLED" in ln and b"QRESYNC" in ln.upper() for ln in lines):
        err(f"ENABLE QRESYNC answered {lines!r}")
    lines, _, dt, nb = c.command("SELECT INBOX")
    res["phase1_select"] = {"ms": ms(dt), "bytes": nb}
    uidvalidity = code(lines, rb"UIDVALIDITY")
    hms_select = code(lines, rb"HIGHESTMODSEQ")
    n_exists = exists(lines)
    lines, _, dt, nb = c.command("FETCH 1:* (UID FLAGS MODSEQ)")
    state, nfetch = fetches(lines)
    res["phase1_fetch"] = {"ms": ms(dt), "bytes": nb, "lines": nfetch}
    seen_hms = [v for v in (code(lines, rb"HIGHESTMODSEQ"),) if v]
    c.logout()
    if n_exists != a.expect or len(state) != a.expect:
        err(f"phase 1: EXISTS {n_exists}, {len(state)} UIDs fetched, expected {a.expect}")
    if uidvalidity is None or hms_select is None:
        raise SystemExit(json.dumps({**res, "check": "FAIL",
                                     "errors": res["errors"] + ["no UIDVALIDITY/HIGHESTMODSEQ in SELECT"]}))
    max_fetched = max((v[1] or 0) for v in state.values()) if state else 0
    modseq = max([hms_select, max_fetched] + seen_hms)
    maxuid = max(state)
    res.update(uidvalidity=uidvalidity, highestmodseq_select=hms_select,
               max_fetched_modseq=max_fetched, client_modseq=modseq, maxuid=maxuid)

    # ---- phase 2: changes in another session ---------------------------------------------
    rng = random.Random(a.seed)
    candidates = sorted(u for u, (f, _) in state.items() if f is not None and "\\Flagged" not in f
                        and "\\Deleted" not in f)
    picked = rng.sample(candidates, a.changes + a.expunge)
    changed, gone = set(picked[: a.changes]), set(picked[a.changes:])
    c = conn()
    c.command("SELECT INBOX")
    t0 = time.perf_counter()
    for u in sorted(changed, key=lambda _: rng.random()):
        c.command(f"UID STORE {u} +FLAGS.SILENT (\\Flagged)")
    res["phase2_store_ms"] = ms(time.perf_counter() - t0)
    if gone:
        t0 = time.perf_counter()
        c.command(f"UID STORE {uid_set(gone)} +FLAGS.SILENT (\\Deleted)")
        lines, _, _, _ = c.command(f"UID EXPUNGE {uid_set(gone)}")
        res["phase2_expunge_ms"] = ms(time.perf_counter() - t0)
        nexp = sum(1 for ln in lines if re.match(rb"^\* \d+ EXPUNGE", ln))
        if nexp != len(gone):
            err(f"phase 2: UID EXPUNGE of {len(gone)} gave {nexp} EXPUNGE responses")
    c.logout()
    res["changed_uids"] = uid_set(changed)
    res["expunged_uids"] = uid_set(gone)

    # ---- phase 3: resync, measured -------------------------------------------------------
    def qresync(known, dump=None):
        c = conn()
        c.command("ENABLE QRESYNC")
        arg = f"{uidvalidity} {modseq}" + (f" 1:{maxuid}" if known else "")
        tx0 = c.tx
        lines, tagged, dt, nb = c.command(f"SELECT INBOX (QRESYNC ({arg}))")
        tx = c.tx - tx0
        c.logout()
        if dump:
            with open(dump, "wb") as f:
                f.write(b"".join(lines) + tagged)
        got, nf = fetches(lines)
        van_lines = [RE_VANISHED.match(ln) for ln in lines if ln.startswith(b"* VANISHED")]
        vanished, earlier_ok = set(), True
        for m in van_lines:
            if m is None:
                earlier_ok = False
                continue
            if not m.group(1):
                earlier_ok = False
            vanished |= parse_set(m.group(2).decode())
        problems = []
        if set(got) != changed:
            miss, extra = sorted(changed - set(got)), sorted(set(got) - changed)
            problems.append(f"FETCH: {len(got)} UIDs, missing {len(miss)} {uid_set(miss)[:200]}, "
                            f"extra {len(extra)} {uid_set(extra)[:200]}")
        noflag = sorted(u for u in set(got) & changed if not got[u][0] or "\\Flagged" not in got[u][0])
        if noflag:
            problems.append(f"FETCH without \\Flagged: {uid_set(noflag)[:200]}")
        nomodseq = sorted(u for u in got if got[u][1] is None or got[u][1] <= modseq)
        if nomodseq:
            problems.append(f"FETCH MODSEQ missing or <= client modseq: {uid_set(nomodseq)[:200]}")
        if known:
            # with known-uids 1:maxuid the answer is exactly the expunged ones
            if vanished != gone:
                problems.append(f"VANISHED {uid_set(vanished)[:200] or '(none)'}, expected {uid_set(gone)}")
        elif not gone <= vanished or vanished & set(state).difference(gone):
            # without known-uids a server may also name UIDs the client never had, not live ones
            problems.append(f"VANISHED {uid_set(vanished)[:200] or '(none)'}, expected {uid_set(gone)}")
        if not earlier_ok:
            problems.append("a VANISHED line without (EARLIER) or unparsable")
        ex = exists(lines)
        if ex != a.expect - len(gone):
            problems.append(f"EXISTS {ex}, expected {a.expect - len(gone)}")
        return {"ms": ms(dt), "bytes": nb, "sent_bytes": tx, "lines": len(lines) + 1, "fetch_lines": nf,
                "vanished_lines": len(van_lines), "vanished_uids": len(vanished),
                "highestmodseq": code(lines, rb"HIGHESTMODSEQ"), "problems": problems}

    def full():
        c = conn()
        lines, _, sdt, snb = c.command("SELECT INBOX")
        lines, tagged, dt, nb = c.command("UID FETCH 1:* (FLAGS)")
        c.logout()
        got, nf = fetches(lines)
        problems = []
        if set(got) != set(state) - gone:
            problems.append(f"UID FETCH 1:*: {len(got)} UIDs, expected {len(set(state) - gone)}")
        flagged = {u for u, (f, _) in got.items() if f and "\\Flagged" in f}
        if flagged != changed:
            problems.append(f"\\Flagged on {len(flagged)} UIDs, expected the {len(changed)} changed")
        return {"ms": ms(dt), "bytes": nb, "fetch_lines": nf, "select_ms": ms(sdt),
                "select_bytes": snb, "problems": problems}

    runs = {"qresync": [], "qresync_nouids": [], "full": []}
    for i in range(a.runs):
        runs["qresync"].append(qresync(True, a.dump if i == 0 else None))
        runs["qresync_nouids"].append(qresync(False))
        runs["full"].append(full())

    for k, rs in runs.items():
        out = {}
        for f in rs[0]:
            if f == "problems":
                continue
            vals = [r[f] for r in rs]
            if f.endswith("ms"):
                out[f] = summary(vals)
            else:
                out[f] = vals[0] if len(set(vals)) == 1 else {"varies": vals}
        probs = sorted({p for r in rs for p in r["problems"]})
        out["correct"] = not probs
        out["problems"] = probs
        res[k] = out
        for p in probs:
            err(f"{k}: {p}")
    res["check"] = "ok" if not res["errors"] else "FAIL"
    print(json.dumps(res, indent=1))
    return 0 if res["check"] == "ok" else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ImapError, OSError) as e:
        print(json.dumps({"check": "FAIL", "errors": [f"{type(e).__name__}: {e}"]}))
        sys.exit(2)
