"""A scripted OpenSMTPD filter (protocol 0.6/0.7, smtp-in) for tests.

Used by crates/filter/tests (via common::Scripted) and tests/e2e/test_filters.py.

Usage: python3 scripted_filter.py [KEY=VALUE ...]; every option is optional:

  log=FILE          append every line received (handshake included) to FILE, and the
                    line `pid|PID` right after `config|ready`
  reports=A,B       report events to register (`register|report|smtp-in|A`)
  phases=A,B        filter phases to register (`register|filter|smtp-in|A`)
  act=PHASE=ANSWER  the answer for a phase (repeatable; default `proceed`), e.g.
                    `act=mail-from=reject|550 5.7.1 no`, `act=rcpt-to=junk`,
                    `act=ehlo=rewrite|other.name`; ANSWER `if:VALUE:REPLY` answers REPLY
                    when the request's last parameter is VALUE; several acts for one phase
                    are tried in order, the first that applies answers, else `proceed`
  header=LINE       data-line: add LINE before each message (the data lines themselves
                    are echoed unchanged)
  mode=M            misbehave at a filter request: crash (exit 3) | hang (no answer) |
                    garbage (a non-protocol line) | binary (bytes that are not text) |
                    nonsense (`filter-result|nonsense`) | badtoken (an unknown token) |
                    badcode (`reject|250 …`)
  at=PHASE          misbehave only at requests of PHASE (default: at every request)
  once=FILE         misbehave only if FILE does not exist yet (the first process creates it)
"""

import os
import sys

KEYS = {"log", "reports", "phases", "act", "header", "mode", "at", "once"}

opts, acts = {}, {}
for arg in sys.argv[1:]:
    key, _, value = arg.partition("=")
    if key not in KEYS:
        sys.exit(f"scripted_filter.py: unknown option {arg!r} (known: {sorted(KEYS)})")
    if key == "act":
        phase, _, answer = value.partition("=")
        acts.setdefault(phase, []).append(answer)
    else:
        opts[key] = value

logf = open(opts["log"], "ab", buffering=0) if "log" in opts else None
out, inp = sys.stdout.buffer, sys.stdin.buffer


def log(line):
    if logf:
        logf.write(line + b"\n")


def emit(s):
    out.write(s + b"\n")
    out.flush()


def read():
    """The next line from the server (logged), without its newline; exits at EOF."""
    line = inp.readline()
    if not line:
        sys.exit(0)
    line = line.rstrip(b"\n")
    log(line)
    return line


while read() != b"config|ready":
    pass
log(b"pid|%d" % os.getpid())
for e in filter(None, opts.get("reports", "").split(",")):
    emit(b"register|report|smtp-in|" + e.encode())
for p in filter(None, opts.get("phases", "").split(",")):
    emit(b"register|filter|smtp-in|" + p.encode())
emit(b"register|ready")

mode, at = opts.get("mode"), opts.get("at")
if mode and "once" in opts:
    if os.path.exists(opts["once"]):
        mode = None
    else:
        open(opts["once"], "w").close()
first_data = set()

while True:
    line = read()
    f = line.split(b"|")
    if f[0] != b"filter":
        continue
    phase, sid, tok = f[4].decode(), f[5], f[6]
    if mode and at in (None, phase):
        if mode == "crash":
            os._exit(3)
        if mode == "hang":
            continue
        if mode == "garbage":
            emit(b"this is not the protocol")
            continue
        if mode == "binary":
            emit(b"\x00\xff\xfe\x1b[2J\x80garbage|||\x00")
            continue
        if mode == "nonsense":
            emit(b"filter-result|nonsense")
            continue
        if mode == "badtoken":
            emit(b"filter-result|" + sid + b"|00000000deadbeef|proceed")
            continue
        if mode == "badcode":
            emit(b"filter-result|" + sid + b"|" + tok + b"|reject|250 all good")
            continue
    if phase == "data-line":
        if "header" in opts and (sid, tok) not in first_data:
            first_data.add((sid, tok))
            emit(b"filter-dataline|" + sid + b"|" + tok + b"|" + opts["header"].encode())
        emit(b"filter-dataline|" + sid + b"|" + tok + b"|" + line.split(b"|", 7)[7])
        continue
    param = b"|".join(f[7:]).decode("utf-8", "replace")
    # The first answer that applies: an unconditional one, or an `if:` whose value matches.
    act = "proceed"
    for answer in acts.get(phase, []):
        if answer.startswith("if:"):
            _, value, reply = answer.split(":", 2)
            if param.split("|")[-1] == value:
                act = reply
                break
        else:
            act = answer
            break
    emit(b"filter-result|" + sid + b"|" + tok + b"|" + act.encode())
