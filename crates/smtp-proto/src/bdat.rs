//! The `BDAT` chunk receiver (RFC 3030 §2-§3).
//!
//! A chunk is exactly the number of octets its command announced, taken as they are: no
//! dot-unstuffing, no end marker, any byte allowed. The running total of the message is
//! checked against the limit; a chunk that crosses it is still read to its end, so that the
//! next command is in sync.

/// What [`BdatReceiver::feed`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BdatState {
    /// The chunk has more bytes to come.
    NeedMore,
    /// The whole chunk was read; `last` is the `LAST` flag of its command.
    ChunkDone { last: bool },
    /// The whole chunk was read, and the message is now larger than the limit (`552 5.3.4`).
    /// Later chunks of the same message report `TooBig` too, since the total only grows.
    TooBig,
}

/// Reads the chunks of one message. Use a new receiver per message.
#[derive(Clone, Debug)]
pub struct BdatReceiver {
    max_size: u64,
    total: u64,
    remaining: u64,
    last: bool,
}

impl BdatReceiver {
    /// `max_size` bounds the sum of all chunks of the message.
    pub fn new(max_size: u64) -> Self {
        BdatReceiver {
            max_size,
            total: 0,
            remaining: 0,
            last: false,
        }
    }

    /// Starts a chunk after a `BDAT size [LAST]` command. Bytes still owed by an unfinished
    /// chunk are forgotten.
    pub fn start_chunk(&mut self, size: u64, last: bool) {
        self.remaining = size;
        self.last = last;
    }

    /// The size of the message so far, bytes past the limit included.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Takes up to the rest of the current chunk from `input`, appending it to `out` while the
    /// message is within the limit. Returns how many bytes it consumed and the state; once a
    /// chunk is complete, calls consume nothing and report the same state until the next
    /// [`BdatReceiver::start_chunk`]. Before any chunk, that state is `ChunkDone { last: false }`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, BdatState) {
        let want = usize::try_from(self.remaining).unwrap_or(usize::MAX);
        let (chunk, _) = input.split_at(want.min(input.len()));
        let n = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
        self.remaining = self.remaining.saturating_sub(n);
        if self.total.saturating_add(n) <= self.max_size {
            out.extend_from_slice(chunk);
        }
        self.total = self.total.saturating_add(n);
        let state = if self.remaining > 0 {
            BdatState::NeedMore
        } else if self.total > self.max_size {
            BdatState::TooBig
        } else {
            BdatState::ChunkDone { last: self.last }
        };
        (chunk.len(), state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_last_chunk_is_done_at_once() {
        let mut r = BdatReceiver::new(10);
        r.start_chunk(0, true);
        assert_eq!(
            r.feed(b"QUIT\r\n", &mut Vec::new()),
            (0, BdatState::ChunkDone { last: true })
        );
    }
}
