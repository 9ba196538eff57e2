#!/usr/bin/env python3
"""Resident memory of N idle IMAP sessions, measured on the server's whole process tree.

Against a running server (its root PID given): samples the tree's summed PSS and RSS with no
session open (baseline), opens one session (connect, LOGIN, SELECT INBOX) and samples again,
opens the other N-1 and samples again ("selected": logged in, INBOX selected, no command
running), holds them for --hold seconds measuring the server's CPU, then (with --idle) sends
IDLE on the sessions one after the other, waiting for each continuation (no longer than
--idle-deadline in all: a server that is slow to answer IDLE gets measured with the sessions
that made it), samples and holds once more. Finally DONE and LOGOUT are sent everywhere
(not waited for) and the sockets closed. SIGTERM prints what was measured so far.

Figures (KiB): per session = (tree with N sessions - baseline) / N; marginal = (tree with N
sessions - tree with 1 session) / (N-1), which leaves out what the first login starts once
(Dovecot's auth and stats processes, caches). PSS divides shared pages among the processes
sharing them, so Dovecot's one imap process per session is not over-counted; RSS is given too.
Server CPU while holding is the tree's utime+stime (processes alive at both ends) per second.

Loopback only; every socket operation has --timeout and the whole run --deadline.
Prints one JSON object.
Usage: imap_idle_mem.py --pid PID --port PORT [--sessions 100] [--idle] [--expect N] ...
"""
import argparse
import ipaddress
import json
import os
import re
import socket
import statistics
import signal
import sys
import time

CLK = os.sysconf("SC_CLK_TCK")


def tree(root):
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def proc_mem(pid):
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
    except OSError:
        pass
    return pss, rss


def proc_cpu(pid):
    """utime+stime in clock ticks, or None when the process is gone"""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def sample(root, n=5, interval=0.3):
    """median of n samples of the tree's summed PSS/RSS (KiB) and its process count"""
    pss, rss, procs = [], [], []
    for i in range(n):
        pids = tree(root)
        p = r = 0
        for pid in pids:
            x, y = proc_mem(pid)
            p += x
            r += y
        pss.append(p)
        rss.append(r)
        procs.append(len(pids))
        if i + 1 < n:
            time.sleep(interval)
    return {"pss_kib": int(statistics.median(pss)), "rss_kib": int(statistics.median(rss)),
            "procs": int(statistics.median(procs))}


def hold_cpu(root, secs):
    """the tree's CPU ms per second over secs (processes alive at both ends)"""
    t0 = {p: proc_cpu(p) for p in tree(root)}
    w0 = time.monotonic()
    time.sleep(secs)
    w1 = time.monotonic()
    ticks = 0
    for p in tree(root):
        a, b = t0.get(p), proc_cpu(p)
        if a is not None and b is not None:
            ticks += b - a
    return round(ticks / CLK * 1e3 / (w1 - w0), 2)


class Stop(Exception):
    pass


def on_term(*_):
    raise Stop("SIGTERM")


class Session:
    def __init__(self, a):
        self.a = a
        self.n = 0
        self.sock = socket.create_connection((a.host, a.port), timeout=a.timeout)
        self.f = self.sock.makefile("rb")
        g = self.line()
        if not g.startswith(b"* OK"):
            raise RuntimeError(f"greeting: {g!r}")

    def line(self):
        ln = self.f.readline(1 << 20)
        if not ln:
            raise RuntimeError("connection closed by the server")
        return ln

    def send(self, text):
        self.sock.sendall(text.encode() + b"\r\n")

    def cmd(self, text):
        """send TAG TEXT, read to the tagged reply; returns (status line, untagged lines)"""
        self.n += 1
        tag = f"s{self.n}"
        self.send(f"{tag} {text}")
        untagged = []
        while True:
            ln = self.line()
            m = re.search(rb"\{(\d+)\}\r\n$", ln)
            if m:   # a literal: read it whole
                rest = int(m.group(1))
                while rest > 0:
                    chunk = self.f.read(min(rest, 1 << 16))
                    if not chunk:
                        raise RuntimeError("connection closed inside a literal")
                    rest -= len(chunk)
                continue
            if ln.startswith(tag.encode() + b" "):
                return ln, untagged
            untagged.append(ln)

    def login_select(self, expect):
        st, _ = self.cmd(f'LOGIN "{self.a.user}" "{self.a.password}"')
        if b" OK" not in st[:12]:
            raise RuntimeError(f"LOGIN: {st!r}")
        st, un = self.cmd("SELECT INBOX")
        if b" OK" not in st[:12]:
            raise RuntimeError(f"SELECT: {st!r}")
        exists = [int(m.group(1)) for u in un for m in [re.match(rb"\* (\d+) EXISTS", u)] if m]
        if expect is not None and exists != [expect]:
            raise RuntimeError(f"SELECT: EXISTS {exists}, want {expect}")

    def idle(self):
        self.n += 1
        self.idle_tag = f"s{self.n}"
        self.send(f"{self.idle_tag} IDLE")
        while True:
            ln = self.line()
            if ln.startswith(b"+"):
                return
            if ln.startswith(self.idle_tag.encode() + b" "):
                raise RuntimeError(f"IDLE: {ln!r}")

    def done(self):
        self.send("DONE")
        while True:
            ln = self.line()
            if ln.startswith(self.idle_tag.encode() + b" "):
                return

    def close(self, idling):
        """DONE (when in IDLE) and LOGOUT, not waited for: a busy server is not held up"""
        try:
            self.sock.settimeout(2)
            self.sock.sendall((b"DONE\r\n" if idling else b"") + b"z LOGOUT\r\n")
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


def per_session(full, base, one, n):
    d = {}
    for k in ("pss_kib", "rss_kib"):
        d[k] = round((full[k] - base[k]) / n, 1)
        d["marginal_" + k] = round((full[k] - one[k]) / (n - 1), 1) if n > 1 else None
    return d


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pid", type=int, required=True, help="the server's root PID")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=10143)
    ap.add_argument("--user", default="m")
    ap.add_argument("--password", default="benchpass")
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--expect", type=int, help="messages in INBOX (checked on every SELECT)")
    ap.add_argument("--idle", action="store_true", help="also measure with every session in IDLE")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds before each sample")
    ap.add_argument("--hold", type=float, default=10.0, help="seconds of CPU measurement per state")
    ap.add_argument("--timeout", type=float, default=60.0, help="per socket operation")
    ap.add_argument("--deadline", type=float, default=600.0, help="for opening all sessions")
    ap.add_argument("--idle-deadline", type=float, default=120.0,
                    help="for putting the sessions in IDLE (those that made it are measured)")
    a = ap.parse_args()
    if not ipaddress.ip_address(a.host).is_loopback:
        sys.exit("imap_idle_mem.py: --host must be a loopback address")
    if not os.path.exists(f"/proc/{a.pid}"):
        sys.exit(f"imap_idle_mem.py: no process {a.pid}")

    out = {"sessions": a.sessions, "errors": []}
    sessions = []
    idling = 0
    signal.signal(signal.SIGTERM, on_term)
    try:
        time.sleep(a.settle)
        out["baseline"] = base = sample(a.pid)
        end = time.monotonic() + a.deadline
        lat = []
        for i in range(a.sessions):
            if time.monotonic() > end:
                raise RuntimeError(f"deadline: {len(sessions)} of {a.sessions} sessions open after {a.deadline} s")
            t0 = time.perf_counter()
            s = Session(a)
            sessions.append(s)
            s.login_select(a.expect)
            lat.append(time.perf_counter() - t0)
            if i == 0:
                time.sleep(a.settle)
                out["one"] = one = sample(a.pid)
        out["open_ms"] = {"total": round(sum(lat) * 1e3, 1),
                          "mean": round(statistics.mean(lat) * 1e3, 2),
                          "max": round(max(lat) * 1e3, 2)}
        time.sleep(a.settle)
        out["selected"] = full = sample(a.pid)
        out["selected_per_session"] = per_session(full, base, one, a.sessions)
        out["selected_cpu_ms_per_s"] = hold_cpu(a.pid, a.hold)
        out["selected_after_hold"] = sample(a.pid, n=3)
        if a.idle:
            end = time.monotonic() + a.idle_deadline
            lat = []
            try:
                for s in sessions:
                    if time.monotonic() > end:
                        raise RuntimeError(f"IDLE deadline: {idling} of {len(sessions)} sessions "
                                           f"in IDLE after {a.idle_deadline} s")
                    s.sock.settimeout(max(1.0, min(a.timeout, end - time.monotonic())))
                    t0 = time.perf_counter()
                    try:
                        s.idle()
                    except TimeoutError:
                        if time.monotonic() < end:
                            raise
                        raise RuntimeError(
                            f"IDLE deadline: {idling} of {len(sessions)} sessions in IDLE after "
                            f"{a.idle_deadline} s (no '+' for the next within "
                            f"{time.perf_counter() - t0:.1f} s)") from None
                    lat.append(time.perf_counter() - t0)
                    idling += 1
            except (OSError, RuntimeError) as e:
                out["errors"].append(f"{type(e).__name__}: {e}")
            out["idle_sessions"] = idling
            if lat:
                out["idle_enter_ms"] = {"mean": round(statistics.mean(lat) * 1e3, 2),
                                        "max": round(max(lat) * 1e3, 2)}
            if idling:
                time.sleep(a.settle)
                out["idle"] = full = sample(a.pid)
                out["idle_per_session"] = per_session(full, base, one, a.sessions)
                out["idle_cpu_ms_per_s"] = hold_cpu(a.pid, a.hold)
                out["idle_after_hold"] = sample(a.pid, n=3)
    except (OSError, RuntimeError, ValueError, Stop) as e:
        out["errors"].append(f"{type(e).__name__}: {e} (with {len(sessions)} sessions open)")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for i, s in enumerate(sessions):
            s.close(i < idling)
    out["check"] = "ok" if not out["errors"] else "FAIL"
    print(json.dumps(out))
    return 0 if not out["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
