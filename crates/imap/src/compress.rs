//! COMPRESS=DEFLATE (RFC 4978): the command, and [`Deflate`], the stream wrapper that
//! inflates what the client sends and deflates what we answer (raw DEFLATE as RFC 1951
//! defines it, no zlib header: RFC 4978 §3–4).
//!
//! Invariants:
//! - Every [`AsyncWrite::poll_flush`] ends the compressed output with a sync flush before
//!   flushing the inner stream, so a response batch reaches the client whole without waiting
//!   for more output (RFC 4978 §4; the session flushes once per batch).
//! - A read never waits on the inner stream while the inflater can still make progress with
//!   what it holds (output it could not hand out last time, input not yet consumed): the
//!   "inflate blocking bug" that made another server turn its COMPRESS off. A read that only
//!   consumes input (a sync-flush marker, an empty block) keeps going instead of reporting
//!   end of stream.
//! - Memory is bounded: fixed buffers on both sides, and one read yields at most
//!   [`MAX_READ`] bytes, so a small input that inflates to gigabytes is handed to the
//!   command reader (and its line and literal limits) a chunk at a time.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use ownmail_imap_proto::{Code, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::info;

use crate::session::{Session, Stop, Tagged};

/// Compressed input buffered from the inner stream.
const READ_BUF: usize = 16 * 1024;
/// The most plain text one read hands out.
pub(crate) const MAX_READ: usize = 16 * 1024;
/// Compressed output buffered before it is written to the inner stream.
const WRITE_BUF: usize = 16 * 1024;
/// Room we want in the output buffer before asking the deflater for more.
const MIN_ROOM: usize = 256;

/// A stream that speaks raw DEFLATE on `inner` and plain bytes to its user.
pub(crate) struct Deflate<S> {
    inner: S,
    inflater: Decompress,
    /// Compressed input: `rbuf[rpos..rend]` is not consumed yet.
    rbuf: Box<[u8]>,
    rpos: usize,
    rend: usize,
    /// The inner stream reached its end.
    reof: bool,
    deflater: Compress,
    /// Compressed output: `wbuf[wpos..wend]` is not written yet.
    wbuf: Box<[u8]>,
    wpos: usize,
    wend: usize,
    /// Input went into the deflater since the last completed sync flush.
    unflushed: bool,
    /// The sync flush in progress filled the buffer: it needs another call of its own.
    flush_again: bool,
}

impl<S> Deflate<S> {
    /// Wraps `inner`. `early` is compressed input already read from `inner` (pipelined right
    /// after the COMPRESS command, RFC 4978 §3): it is inflated before anything new is read.
    pub(crate) fn new(inner: S, early: &[u8]) -> Deflate<S> {
        let mut rbuf = vec![0u8; READ_BUF.max(early.len())].into_boxed_slice();
        if let Some(dst) = rbuf.get_mut(..early.len()) {
            dst.copy_from_slice(early);
        }
        Deflate {
            inner,
            inflater: Decompress::new(false),
            rbuf,
            rpos: 0,
            rend: early.len(),
            reof: false,
            deflater: Compress::new(Compression::default(), false),
            wbuf: vec![0u8; WRITE_BUF].into_boxed_slice(),
            wpos: 0,
            wend: 0,
            unflushed: false,
            flush_again: false,
        }
    }
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("deflate: {e}"))
}

/// Bytes a counter moved on by (the flate2 totals are u64; one call moves at most a buffer).
fn delta(after: u64, before: u64) -> usize {
    usize::try_from(after.saturating_sub(before)).unwrap_or(usize::MAX)
}

impl<S: AsyncRead + Unpin> AsyncRead for Deflate<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            // Inflate first, even with no new input: the inflater may hold output it could
            // not hand out last time.
            let src = this.rbuf.get(this.rpos..this.rend).unwrap_or_default();
            let dst = buf.initialize_unfilled_to(buf.remaining().min(MAX_READ));
            let (in0, out0) = (this.inflater.total_in(), this.inflater.total_out());
            let status = this
                .inflater
                .decompress(src, dst, FlushDecompress::Sync)
                .map_err(invalid)?;
            let used = delta(this.inflater.total_in(), in0);
            let made = delta(this.inflater.total_out(), out0).min(dst.len());
            this.rpos = (this.rpos + used).min(this.rend);
            if this.rpos == this.rend {
                this.rpos = 0;
                this.rend = 0;
            }
            buf.advance(made);
            if made > 0 {
                return Poll::Ready(Ok(()));
            }
            if status == Status::StreamEnd {
                // The client ended its DEFLATE stream: nothing more can follow it.
                return Poll::Ready(Ok(()));
            }
            if used > 0 {
                // Input that inflates to nothing (a sync-flush marker): not the end.
                continue;
            }
            if this.reof {
                // End of stream (possibly in the middle of a block: the session ends).
                return Poll::Ready(Ok(()));
            }
            // The inflater needs more input: make room and read.
            if this.rpos > 0 {
                this.rbuf.copy_within(this.rpos..this.rend, 0);
                this.rend -= this.rpos;
                this.rpos = 0;
            }
            let Some(space) = this.rbuf.get_mut(this.rend..).filter(|s| !s.is_empty()) else {
                return Poll::Ready(Err(invalid("input makes no progress")));
            };
            let mut rb = ReadBuf::new(space);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            if n == 0 {
                this.reof = true;
            } else {
                this.rend += n;
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> Deflate<S> {
    /// Writes all buffered compressed output to the inner stream.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.wpos < self.wend {
            let pending = self.wbuf.get(self.wpos..self.wend).unwrap_or_default();
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wpos += n;
        }
        self.wpos = 0;
        self.wend = 0;
        Poll::Ready(Ok(()))
    }

    /// Runs the deflater into the free part of the output buffer: (input used, output made).
    fn deflate(&mut self, input: &[u8], flush: FlushCompress) -> io::Result<(usize, usize)> {
        let out = self.wbuf.get_mut(self.wend..).unwrap_or_default();
        let room = out.len();
        let (in0, out0) = (self.deflater.total_in(), self.deflater.total_out());
        self.deflater
            .compress(input, out, flush)
            .map_err(io::Error::other)?;
        let used = delta(self.deflater.total_in(), in0);
        let made = delta(self.deflater.total_out(), out0).min(room);
        self.wend += made;
        Ok((used, made))
    }

    fn room(&self) -> usize {
        self.wbuf.len().saturating_sub(self.wend)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deflate<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            if this.room() >= MIN_ROOM {
                let (used, _) = this.deflate(data, FlushCompress::None)?;
                if used > 0 {
                    this.unflushed = true;
                    return Poll::Ready(Ok(used));
                }
                if this.wend == 0 {
                    return Poll::Ready(Err(io::Error::other("deflate made no progress")));
                }
            }
            // Output buffer full: write it out before taking more (nothing of `data` was
            // taken yet, so returning Pending here is correct).
            ready!(this.poll_drain(cx))?;
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.unflushed {
            if this.room() < MIN_ROOM {
                ready!(this.poll_drain(cx))?;
            }
            let room = this.room();
            // zlib's rule is that a sync flush is complete when it leaves output space
            // unused. miniz_oxide bends it: a call that continues a flush which had filled
            // the buffer only hands out the output pending from before and returns, though
            // input may still wait in its window. So a flush that ever filled the buffer
            // ends with one more call of its own (at worst an extra empty stored block).
            match this.deflate(&[], FlushCompress::Sync) {
                Ok((_, made)) if made == room => this.flush_again = true,
                Ok(_) if this.flush_again => this.flush_again = false,
                Ok(_) => this.unflushed = false,
                // zlib answers that extra call "no progress possible" (Z_BUF_ERROR) when
                // the flush was complete; some backends turn that into an error.
                Err(_) if this.flush_again => {
                    this.unflushed = false;
                    this.flush_again = false;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// COMPRESS (RFC 4978 §3). `Ok(None)`: the tagged OK has been sent already (uncompressed),
/// and everything after it, both ways, is compressed.
pub(crate) async fn compress(
    s: &mut Session,
    tag: &str,
    mechanism: &str,
) -> Result<Option<Tagged>, Stop> {
    if s.user.is_none() {
        return Ok(Some(Tagged::bad("Log in first")));
    }
    if s.compressed {
        // RFC 4978 §3: a second COMPRESS gets NO [COMPRESSIONACTIVE].
        return Ok(Some(
            Tagged::no("DEFLATE already active").code(Code::CompressionActive),
        ));
    }
    if mechanism != "DEFLATE" {
        return Ok(Some(Tagged::bad("Unknown compression mechanism")));
    }
    s.send(Response::ok(tag, "DEFLATE active"));
    s.flush().await?;
    // RFC 4978 §3: the client compresses from the byte after the command's CRLF, so what it
    // pipelined and we already read is compressed data, to be inflated first (unlike
    // STARTTLS, where it is discarded). The command reader holds nothing after a command.
    let early = std::mem::take(&mut s.input);
    let Some(io) = s.swap_io() else {
        return Err(Stop::Lost);
    };
    s.set_io(Box::new(Deflate::new(io, &early)));
    s.compressed = true;
    info!("imap session={} event=compress mechanism=DEFLATE", s.id);
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// Inflates a whole raw DEFLATE byte string with flate2 directly (an independent peer).
    fn inflate_all(data: &[u8]) -> Vec<u8> {
        let mut d = Decompress::new(false);
        let mut out = Vec::with_capacity(data.len() * 4 + 64);
        let mut pos = 0;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity() + 1024);
            }
            let before = d.total_in();
            d.decompress_vec(&data[pos..], &mut out, FlushDecompress::Sync)
                .expect("inflate");
            pos += (d.total_in() - before) as usize;
            if pos == data.len() && out.len() < out.capacity() {
                return out;
            }
        }
    }

    /// Deflates `data` with a sync flush at the end (an independent peer).
    fn deflate_sync(c: &mut Compress, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 1024);
        let mut pos = 0;
        loop {
            let before = c.total_in();
            c.compress_vec(&data[pos..], &mut out, FlushCompress::Sync)
                .expect("deflate");
            pos += (c.total_in() - before) as usize;
            if pos == data.len() && out.len() < out.capacity() {
                return out;
            }
            out.reserve(out.capacity());
        }
    }

    async fn read_exact_timeout<R: AsyncRead + Unpin>(r: &mut R, n: usize) -> Vec<u8> {
        let mut got = vec![0u8; n];
        tokio::time::timeout(std::time::Duration::from_secs(10), r.read_exact(&mut got))
            .await
            .expect("read timed out")
            .expect("read");
        got
    }

    #[test]
    fn write_then_flush_is_all_visible_to_the_peer() {
        rt().block_on(async {
            let (a, mut b) = tokio::io::duplex(1 << 22);
            let mut z = Deflate::new(a, &[]);
            let mut expect = Vec::new();
            let mut wire = Vec::new();
            for i in 0..50u32 {
                let line = format!("* {i} FETCH (UID {i} FLAGS (\\Seen))\r\n").repeat(i as usize);
                z.write_all(line.as_bytes()).await.expect("write");
                z.flush().await.expect("flush");
                expect.extend_from_slice(line.as_bytes());
                // Everything written so far arrives now, without more output.
                let mut chunk = vec![0u8; 1 << 20];
                while inflate_all(&wire).len() < expect.len() {
                    let n =
                        tokio::time::timeout(std::time::Duration::from_secs(5), b.read(&mut chunk))
                            .await
                            .unwrap_or_else(|_| panic!("batch {i} stuck in the deflater"))
                            .expect("read");
                    wire.extend_from_slice(&chunk[..n]);
                }
                assert_eq!(inflate_all(&wire), expect, "after batch {i}");
            }
        });
    }

    #[test]
    fn a_flush_larger_than_the_buffer_is_complete() {
        rt().block_on(async {
            // Incompressible bytes, two writes, one flush: its output is about two buffers.
            // (miniz_oxide hands out the rest of a filled flush without finishing it.)
            let mut data = vec![0u8; 31_746];
            let mut x: u32 = 7;
            for byte in data.iter_mut() {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                *byte = (x >> 24) as u8;
            }
            let (a, mut b) = tokio::io::duplex(1 << 20);
            let mut z = Deflate::new(a, &[]);
            z.write_all(&data[..19_528]).await.expect("write");
            z.write_all(&data[19_528..]).await.expect("write");
            z.flush().await.expect("flush");
            let mut wire = vec![0u8; 1 << 20];
            let n = b.read(&mut wire).await.expect("read");
            assert!(inflate_all(&wire[..n]) == data);
        });
    }

    #[test]
    fn a_large_flush_through_a_small_pipe_completes() {
        rt().block_on(async {
            // 4 MB of hard-to-compress bytes through a 1 KiB pipe: flushes span many drains.
            let (a, mut b) = tokio::io::duplex(1024);
            let mut data = vec![0u8; 4 << 20];
            let mut x: u32 = 12345;
            for byte in data.iter_mut() {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                *byte = (x >> 24) as u8;
            }
            let sent = data.clone();
            let writer = tokio::spawn(async move {
                let mut z = Deflate::new(a, &[]);
                z.write_all(&sent).await.expect("write");
                z.flush().await.expect("flush");
                z
            });
            let mut peer = Deflate::new(&mut b, &[]);
            let got = read_exact_timeout(&mut peer, data.len()).await;
            assert!(got == data);
            drop(writer.await.expect("writer"));
        });
    }

    #[test]
    fn a_read_never_waits_while_the_inflater_holds_output() {
        rt().block_on(async {
            // 1 MB of zeros is about a kilobyte compressed: one inner read holds all of it,
            // and small reads must drain the inflater without touching the (idle) stream.
            let (mut a, b) = tokio::io::duplex(1 << 20);
            let mut c = Compress::new(Compression::default(), false);
            a.write_all(&deflate_sync(&mut c, &vec![0u8; 1 << 20]))
                .await
                .expect("write");
            let mut z = Deflate::new(b, &[]);
            let mut total = 0;
            let mut small = [0u8; 100];
            while total < 1 << 20 {
                let n = tokio::time::timeout(std::time::Duration::from_secs(5), z.read(&mut small))
                    .await
                    .expect("blocked with output pending")
                    .expect("read");
                assert!(n > 0 && small[..n].iter().all(|&b| b == 0));
                total += n;
            }
            assert_eq!(total, 1 << 20);
            drop(a);
        });
    }

    #[test]
    fn input_that_inflates_to_nothing_is_not_end_of_stream() {
        rt().block_on(async {
            let (mut a, b) = tokio::io::duplex(4096);
            let mut c = Compress::new(Compression::default(), false);
            // An empty sync flush: 00 00 ff ff.
            let marker = deflate_sync(&mut c, b"");
            assert!(!marker.is_empty());
            a.write_all(&marker).await.expect("write");
            let mut z = Deflate::new(b, &[]);
            let mut buf = [0u8; 64];
            // Nothing to read yet: the read waits (it must not report end of stream).
            let r =
                tokio::time::timeout(std::time::Duration::from_millis(200), z.read(&mut buf)).await;
            assert!(r.is_err(), "expected a pending read, got {r:?}");
            a.write_all(&deflate_sync(&mut c, b"a NOOP\r\n"))
                .await
                .expect("write");
            let got = read_exact_timeout(&mut z, 8).await;
            assert_eq!(got, b"a NOOP\r\n");
        });
    }

    #[test]
    fn a_bomb_is_handed_out_in_bounded_chunks() {
        rt().block_on(async {
            let (mut a, b) = tokio::io::duplex(1 << 20);
            let mut c = Compress::new(Compression::best(), false);
            let bomb = deflate_sync(&mut c, &vec![b'x'; 64 << 20]);
            assert!(bomb.len() < 1 << 20);
            a.write_all(&bomb).await.expect("write");
            let mut z = Deflate::new(b, &[]);
            let mut big = vec![0u8; 1 << 20];
            for _ in 0..10 {
                let n = z.read(&mut big).await.expect("read");
                assert!(n > 0 && n <= MAX_READ, "{n}");
            }
        });
    }

    #[test]
    fn early_input_is_inflated_first() {
        rt().block_on(async {
            let mut c = Compress::new(Compression::default(), false);
            let first = deflate_sync(&mut c, b"a1 NOOP\r\n");
            let second = deflate_sync(&mut c, b"a2 NOOP\r\n");
            let (mut a, b) = tokio::io::duplex(4096);
            a.write_all(&second).await.expect("write");
            let mut z = Deflate::new(b, &first);
            let got = read_exact_timeout(&mut z, 18).await;
            assert_eq!(got, b"a1 NOOP\r\na2 NOOP\r\n");
        });
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        rt().block_on(async {
            let (mut a, b) = tokio::io::duplex(4096);
            a.write_all(&[0xff; 64]).await.expect("write");
            let mut z = Deflate::new(b, &[]);
            let mut buf = [0u8; 64];
            let r = z.read(&mut buf).await;
            assert!(r.is_err(), "{r:?}");
        });
    }

    /// Writes `data` in `writes` chunks (flushing after some), reads it back in `reads`
    /// chunk sizes through a second wrapper.
    async fn round_trip(data: Vec<u8>, writes: Vec<(usize, bool)>, reads: Vec<usize>) {
        let (a, b): (DuplexStream, DuplexStream) = tokio::io::duplex(4096);
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            let mut z = Deflate::new(a, &[]);
            let mut pos = 0;
            let mut i = 0;
            while pos < sent.len() {
                let (len, flush) = writes
                    .get(i % writes.len().max(1))
                    .copied()
                    .unwrap_or((1, true));
                let end = (pos + len.max(1)).min(sent.len());
                z.write_all(&sent[pos..end]).await.expect("write");
                if flush {
                    z.flush().await.expect("flush");
                }
                pos = end;
                i += 1;
            }
            z.shutdown().await.expect("shutdown");
        });
        let mut z = Deflate::new(b, &[]);
        let mut got = Vec::new();
        let mut i = 0;
        loop {
            let want = reads
                .get(i % reads.len().max(1))
                .copied()
                .unwrap_or(1)
                .max(1);
            let mut chunk = vec![0u8; want];
            let n = tokio::time::timeout(std::time::Duration::from_secs(10), z.read(&mut chunk))
                .await
                .expect("read timed out")
                .expect("read");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
            i += 1;
        }
        writer.await.expect("writer");
        assert!(got == data, "{} bytes back, {} sent", got.len(), data.len());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn random_data_round_trips_in_random_chunks(
            data in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..70_000),
                proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'\r'), Just(b'\n')], 0..70_000),
            ],
            writes in proptest::collection::vec((1usize..40_000, any::<bool>()), 1..20),
            reads in proptest::collection::vec(1usize..40_000, 1..20),
        ) {
            rt().block_on(round_trip(data, writes, reads));
        }
    }
}
