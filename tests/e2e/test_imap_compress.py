"""COMPRESS=DEFLATE (RFC 4978) with a real client (issue 11 item 3).

Python's imaplib with a raw-DEFLATE wrapper (zlib, wbits -15, a sync flush after every
send) around its TLS socket fetches 1,000 bodies in one FETCH and APPENDs 20 MB, then
reads the 20 MB back, all compressed. Runs against ownmail and against Dovecot
(`imap_zlib`), on the same Maildir (imap_world.py).
"""

import base64
import imaplib
import os
import re
import time
import uuid
import zlib

import pytest

from conftest import VMAIL_GID, VMAIL_UID
from imap_world import (
    IMAP_HOST,
    IMAPS_PORT,
    KINDS,
    PASSWORD,
    USER,
    NsIMAP4_SSL,
    client_tls_context,
    imap_world,
)

BODIES = 1000
BIG = 20 * 1024 * 1024

# imaplib knows no COMPRESS; RFC 4978 §3 allows it once authenticated (SELECTED too).
imaplib.Commands.setdefault("COMPRESS", ("AUTH", "SELECTED"))


@pytest.fixture(scope="module", params=KINDS)
def world(request, ownmail):
    with imap_world(request.param, ownmail) as w:
        yield w


class DeflateIMAP4_SSL(NsIMAP4_SSL):
    """imaplib over TLS that, after `compress()`, deflates what it sends (each send ends
    with a sync flush: the server must see every command without waiting for more) and
    inflates what it reads."""

    _zin = _zout = None

    def compress(self):
        typ, data = self.xatom("COMPRESS", "DEFLATE")
        assert typ == "OK", (typ, data)
        # Anything imaplib's buffered reader holds past the tagged OK is compressed
        # already: _fill() reads through that buffer (read1), so it is inflated first.
        self._zin = zlib.decompressobj(-15)
        self._zout = zlib.compressobj(6, zlib.DEFLATED, -15)
        self._plain = b""

    def send(self, data):
        if self._zout is not None:
            data = self._zout.compress(data) + self._zout.flush(zlib.Z_SYNC_FLUSH)
        super().send(data)

    def _fill(self):
        raw = self.file.read1(65536)
        if not raw:
            raise self.abort("EOF in a compressed stream")
        self._plain += self._zin.decompress(raw)

    def read(self, size):
        if self._zin is None:
            return super().read(size)
        while len(self._plain) < size:
            self._fill()
        out, self._plain = self._plain[:size], self._plain[size:]
        return out

    def readline(self):
        if self._zin is None:
            return super().readline()
        while b"\n" not in self._plain:
            if len(self._plain) > imaplib._MAXLINE:
                raise self.error(f"got more than {imaplib._MAXLINE} bytes")
            self._fill()
        i = self._plain.index(b"\n") + 1
        out, self._plain = self._plain[:i], self._plain[i:]
        return out


def connect(world):
    m = DeflateIMAP4_SSL(IMAP_HOST, IMAPS_PORT, ns=world.ns,
                         ssl_context=client_tls_context(world.cafile), timeout=120)
    m.login(USER, PASSWORD)
    typ, data = m.capability()
    assert typ == "OK" and b"COMPRESS=DEFLATE" in data[0].upper().split(), (
        f"{world.kind}: no COMPRESS=DEFLATE after login: {data}")
    m.compress()
    return m


def body_text(mark, i):
    """A body that compresses like mail (and differs per message)."""
    words = [f"{mark}-{i}", "deflate", "window", "sync", "flush", str(i * 7919)]
    return "\n".join(" ".join(words[(i + j) % len(words)] for j in range(12))
                     for _ in range(20 + i % 30)) + "\n"


def write_into_maildir(folder_dir, msgs):
    """Puts messages (LF line endings, the Maildir convention) into folder_dir/new, owned
    by the vmail user, as a local delivery would."""
    for i, msg in enumerate(msgs):
        name = f"{int(time.time())}.M{i}P{os.getpid()}_{uuid.uuid4().hex[:8]}.mx"
        tmp = folder_dir / "tmp" / name
        tmp.write_bytes(msg)
        os.chown(tmp, VMAIL_UID, VMAIL_GID)
        os.rename(tmp, folder_dir / "new" / name)


def test_imaplib_fetches_1000_bodies_under_compress(world):
    mark = f"zip-{uuid.uuid4().hex[:10]}"
    folder = f"Zip{mark[4:]}"
    m = connect(world)
    try:
        typ, data = m.create(folder)
        assert typ == "OK", (typ, data)
        msgs = [(f"From: <alice@client.test>\nTo: <m@example.org>\nSubject: {mark} {i}\n"
                 f"Message-ID: <{mark}-{i}@client.test>\n\n{body_text(mark, i)}").encode()
                for i in range(BODIES)]
        folder_dir = world.maildir / f".{folder}"
        assert (folder_dir / "new").is_dir(), f"{world.kind} made no {folder_dir}"
        write_into_maildir(folder_dir, msgs)

        typ, data = m.select(folder)
        assert typ == "OK" and int(data[0]) == BODIES, (typ, data)
        started = time.monotonic()
        typ, data = m.fetch(f"1:{BODIES}", "(BODY.PEEK[])")
        elapsed = time.monotonic() - started
        assert typ == "OK", (typ, data[-1:])
        got = [d[1] for d in data if isinstance(d, tuple)]
        assert len(got) == BODIES, f"{len(got)} bodies back"
        want = {msg.replace(b"\n", b"\r\n") for msg in msgs}
        assert set(got) == want, "a body came back altered"
        print(f"{world.kind}: {BODIES} bodies in {elapsed:.2f}s under COMPRESS")

        # The session goes on, compressed, after the big answer.
        typ, data = m.noop()
        assert typ == "OK", (typ, data)
        typ, data = m.xatom("COMPRESS", "DEFLATE")
        assert typ == "NO" and b"COMPRESSIONACTIVE" in data[0].upper(), (typ, data)
    finally:
        m.logout()


def test_imaplib_appends_20_mb_under_compress(world):
    mark = f"zipbig-{uuid.uuid4().hex[:10]}"
    head = (f"From: <alice@client.test>\r\nTo: <m@example.org>\r\nSubject: {mark}\r\n"
            f"Message-ID: <{mark}@client.test>\r\n\r\n").encode()
    line = (b"0123456789 the quick brown fox jumps over the lazy dog "
            + mark.encode() + b"\r\n")
    # Text that compresses well, then a base64 part that hardly does (as attachments).
    attachment = base64.encodebytes(os.urandom(BIG // 4)).replace(b"\n", b"\r\n")
    text = b"".join(b"%08d " % i + line
                    for i in range((BIG - len(attachment)) // (len(line) + 9) + 1))
    msg = head + text + attachment
    assert len(msg) >= BIG and msg.endswith(b"\r\n")

    m = connect(world)
    try:
        started = time.monotonic()
        typ, data = m.append("INBOX", None, None, msg)
        elapsed = time.monotonic() - started
        assert typ == "OK", (typ, data)
        print(f"{world.kind}: APPEND {len(msg)} bytes in {elapsed:.2f}s under COMPRESS")
        typ, data = m.select("INBOX")
        assert typ == "OK", (typ, data)
        typ, data = m.search(None, "HEADER", "Message-ID", f"<{mark}@client.test>")
        assert typ == "OK" and data[0].split(), (typ, data)
        seq = data[0].split()[-1].decode()
        typ, data = m.fetch(seq, "(RFC822.SIZE BODY.PEEK[])")
        assert typ == "OK", (typ, data[-1:])
        fetched = [d for d in data if isinstance(d, tuple)]
        assert fetched, data
        assert re.search(rb"RFC822\.SIZE (\d+)", fetched[0][0]).group(1) == \
            str(len(msg)).encode(), fetched[0][0]
        assert fetched[0][1] == msg, "the 20 MB message came back altered"
    finally:
        m.logout()
