//! Deciding what to fetch before it is asked for: readahead per stream.
//!
//! Pure logic, no I/O, so it is tested exhaustively on its own (`tests.rs`,
//! with a property test of the bound below). The engine's `FileReader` asks
//! it, on every read of an open file, which blocks to load ahead, and cancels
//! the loads of streams it forgets.
//!
//! # The problem
//!
//! ML readers rarely read a file front to back. pyarrow reads the projected
//! column chunks of a Parquet file with one `pread` per chunk from several
//! threads at once; safetensors maps the file and touches a few tensors; h5py
//! reads a superblock, object headers and a few chunks. A heuristic with one
//! state per open file ("sequential once half a block came in order, then a
//! window of 16 MiB at once") took every multi-MiB `pread` for the start of a
//! scan and pulled 2.3–7x the blocks those readers touch (issue 13).
//!
//! # The algorithm
//!
//! - **Streams, not files.** Each open file keeps up to [`MAX_STREAMS`]
//!   streams. A read continues the stream whose end it is nearest to, within
//!   [`SLACK`] either side (the kernel sends a sequential stream's requests up
//!   to 1 MiB each, several at a time, not always in order); otherwise it opens
//!   a new stream, forgetting the least recently used one when the table is
//!   full. Threads reading their own regions of one file, or one reader
//!   hopping between column chunks, are streams of their own.
//! - **A window earned by what the stream has read.** A stream may have
//!   fetched ahead, and not yet read, at most half of the bytes it has read
//!   ([`WASTE_DIVISOR`]), and never more than the largest window (the mount's
//!   `--max-readahead`, bounded by the in-memory cache). Blocks it fetched
//!   ahead and then jumped over without reading count against the same budget
//!   for the rest of its life. So whatever a stream does (stops, jumps,
//!   strides), the blocks it made the engine fetch that it never read are at
//!   most **½ of the bytes it read** (all of them for a stream from the start
//!   of the file, below), and a stream shorter than two blocks
//!   (8 MiB at the default 4 MiB) fetches nothing ahead at all: the ranged
//!   reads of ML readers (a Parquet column chunk, a tensor, an HDF5 chunk)
//!   pull only the blocks they touch, plus what the kernel's own readahead
//!   adds (below). "Bytes read" counts only new ground: a read behind a
//!   stream's end (a re-read, a backward scan) earns nothing.
//! - **Why ½, not less.** The window is also what keeps origin connections
//!   busy for a sequential reader: with ¼, a cold 1 GiB read ran at 0.85x of
//!   direct GETs with 16 in flight (the window reached its 64 MiB only after
//!   256 MiB read); with ½ at 0.82–0.92x (`scripts/bench`, docs/PERFORMANCE.md,
//!   "ML readers"). More than ½ for every stream would break the sparse
//!   readers' targets: a 4.5 MiB Parquet column chunk read would earn a whole
//!   4 MiB block ahead at 0.9 (1.47x the blocks touched instead of 1.00x).
//! - **All of it from the start of the file.** A stream that opened at offset
//!   0 may have fetched ahead as much as it has read ([`FROM_START_DIVISOR`]),
//!   so it ramps twice as fast: reading from the start is the signature of
//!   whole-file readers (`cat`, `tar`, `np.load`, a full checkpoint load), as
//!   Linux's readahead also assumes (`page_cache_sync_ra` opens its initial
//!   window at once for a read at index 0, without waiting for a second read
//!   in order). Sparse readers read little there: a
//!   safetensors header or an HDF5 superblock is one request the kernel makes
//!   1 MiB, which earns no whole block. Measured on the cold 1 GiB read (3
//!   runs each, with the store's direct writes): ½ everywhere 178–214 MiB/s,
//!   all-from-the-start 214–226, no bound at all 198–233.
//! - **Whole blocks ahead of the stream's frontier.** A block is fetched
//!   ahead only when it fits the budget whole; the blocks a read touches are
//!   the read's own (fetched by the demand read, never counted as readahead).
//! - **Cancelled when abandoned.** A forgotten stream's loads still in flight
//!   are cancelled (dropping their origin requests), as are all of a handle's
//!   when it is closed (`FileReader`'s `Drop`).
//! - **Cooperative cold start.** Workers of a fleet that start together read
//!   the same blocks in the same order, so their windows cover the same
//!   blocks: each claims a few and waits on the shared tier for the rest, and
//!   the fleet has no more origin requests going than one worker alone. So a
//!   block of the window that another worker turns out to be fetching (its
//!   claim is held: `on_fetched_elsewhere`) is not charged to the stream's
//!   budget, and the window reaches further by as much, up to
//!   [`FLEET_LOOKAHEAD`] windows: each worker keeps its own window's worth of
//!   fetches going, on blocks the others have not claimed, and the fleet's
//!   origin bandwidth adds up. The bound above holds for the bytes this
//!   worker fetched itself (the property test checks it with arbitrary blocks
//!   lent); those another worker fetched cost this one nothing but a read of
//!   the shared tier, and are published there for the whole fleet.
//!
//! The ramp this gives a sequential reader from the start of a file, with
//! 4 MiB blocks: the first block ahead after 4 MiB read, 4 ahead after
//! 16 MiB, the full 64 MiB window after 64 MiB (twice those elsewhere). Meanwhile the kernel's own readahead (1 MiB, set in
//! `inputfs-fuse`'s `fs.rs`) asks for each next block ~1 MiB before the reader
//! gets there, which keeps one fetch overlapping the reading from the start.
//!
//! # The kernel's readahead is part of it
//!
//! The daemon sees the page cache's requests, not the application's: a buffered
//! read is extended by the kernel's readahead (up to `read_ahead_kb`, 1 MiB on
//! inputfs mounts, past the end of what was asked), and a page fault on a
//! mapped file reads around the faulting page (half of `read_ahead_kb` before
//! it, half after), then reads ahead of the faults up to two windows. Those
//! bytes look like the application's own, and are counted as such above.
//! - Before a stream: the read-around of a tensor that starts just after a
//!   block boundary reaches into the block before it. The `FileReader` fetches
//!   such a read's *lead-in* (the part of a new stream's first read in the
//!   second half of a block it runs out of) as a range, not the whole block.
//! - Past a stream's end: the kernel's readahead (up to 2 MiB on a mapped
//!   file) pulls the next block whole when a stream ends that close to a
//!   boundary. Not avoided: the daemon cannot tell those requests from the
//!   reader's. `docs/PERFORMANCE.md` ("ML readers") measures what it costs.
//! - A smaller `read_ahead_kb` would shrink both, but every sequential read
//!   would then come in requests that small (1 MiB ran 1.8x faster than
//!   128 KiB through the daemon).
//!
//! # Why this shape
//!
//! - Linux's readahead (`mm/readahead.c`) sizes its first window from the
//!   request and grows it 2–4x each time the reader reaches the previous one:
//!   growth driven by consumption, which is what bounds waste. Its unit is
//!   pages; here a miss costs a 4 MiB origin request, so growth is tied to a
//!   fraction of what was read, not to a multiple of the last request.
//! - mountpoint-s3 keeps one prefetcher per open handle, starts small and
//!   doubles on sequential progress, and resets on a seek beyond a small
//!   window: one stream per handle, which interleaved column chunks defeat.
//! - gcsfuse switches a reader to "random" after a few seeks and then fetches
//!   only what is asked: per-stream windows do that per region instead of for
//!   the whole file, so one random thread does not stop another's scan.

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::ops::Range;

use crate::block::BlockLayout;

const MIB: u64 = 1 << 20;

/// Streams tracked per open file: more concurrent scans than the threads of a
/// data loader; past it the least recently used is forgotten.
pub const MAX_STREAMS: usize = 16;

/// How far from a stream's end a read may start and still continue it: two
/// of the kernel's largest FUSE requests, since a sequential stream's
/// requests arrive several at a time and out of order.
pub const SLACK: u64 = 2 * MIB;

/// A stream may have fetched ahead and not read at most `1 / WASTE_DIVISOR`
/// of the bytes it has read: a half (see the module docs for why).
pub const WASTE_DIVISOR: u64 = 2;

/// A stream that opened at the start of the file may have fetched ahead as
/// much as it has read (see the module docs).
pub const FROM_START_DIVISOR: u64 = 1;

/// How many windows ahead of its reads a stream may look when other workers
/// fetch part of its window (see "Cooperative cold start" above).
pub const FLEET_LOOKAHEAD: u64 = 2;

/// Which stream of an open file a read belonged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(u64);

/// What to do after a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The stream the read continued or opened (none for an empty read).
    pub stream: Option<StreamId>,
    /// The read opened its stream (it continued none).
    pub opened: bool,
    /// Blocks to load ahead now, beyond the read's own.
    pub prefetch: Range<u64>,
    /// A stream forgotten to make room: its loads in flight are abandoned.
    pub forgotten: Option<StreamId>,
}

/// One sequential stream within an open file.
#[derive(Debug, Clone)]
struct Stream {
    id: StreamId,
    /// End of its furthest read.
    next: u64,
    /// Bytes of new ground its reads covered.
    read: u64,
    /// Blocks up to this index (exclusive) were asked for ahead of it.
    issued_until: u64,
    /// Bytes of blocks asked for ahead of it that it jumped over unread.
    wasted: u64,
    /// Blocks asked for ahead of it (at or past its frontier) that another
    /// worker of the fleet turned out to be fetching: they cost this worker
    /// no origin bytes, so they are not charged to its budget.
    elsewhere: BTreeSet<u64>,
    /// It opened at the start of the file: a whole-file reader's signature,
    /// which earns it the larger fraction ([`FROM_START_DIVISOR`]).
    from_start: bool,
    last_used: u64,
}

/// The readahead state of one open file.
#[derive(Debug, Clone)]
pub struct Readahead {
    streams: Vec<Stream>,
    max_window: u64,
    clock: u64,
    next_id: u64,
}

impl Readahead {
    /// A planner whose windows never pass `max_window` bytes (0 turns
    /// readahead off).
    pub fn new(max_window: u64) -> Self {
        Readahead {
            streams: Vec::new(),
            max_window,
            clock: 0,
            next_id: 0,
        }
    }

    /// Record a read of `len` bytes at `offset` and say what to load ahead.
    pub fn on_read(&mut self, offset: u64, len: u64, layout: &BlockLayout) -> Plan {
        let end = offset.saturating_add(len).min(layout.object_size);
        if end <= offset {
            return Plan {
                stream: None,
                opened: false,
                prefetch: 0..0,
                forgotten: None,
            };
        }
        self.clock += 1;
        let (index, forgotten, opened) = match self.nearest(offset) {
            Some(i) => (i, None, false),
            None => {
                let (i, forgotten) = self.open(offset);
                (i, forgotten, true)
            }
        };
        let stream = &mut self.streams[index];
        stream.last_used = self.clock;
        stream.advance(offset, end, layout);
        let prefetch = stream.plan(layout, self.max_window);
        Plan {
            stream: Some(stream.id),
            opened,
            prefetch,
            forgotten,
        }
    }

    /// Record that block `index`, asked for ahead of `stream`, is being
    /// fetched by another worker (this worker only waits for it on the shared
    /// tier), and say what to load ahead now that its budget is not spent on
    /// it. Nothing for a forgotten stream, or a block it is no longer ahead of.
    pub fn on_fetched_elsewhere(
        &mut self,
        stream: StreamId,
        index: u64,
        layout: &BlockLayout,
    ) -> Range<u64> {
        let Some(s) = self.streams.iter_mut().find(|s| s.id == stream) else {
            return 0..0;
        };
        let frontier = s.next.div_ceil(layout.block_size);
        if index < frontier || index >= s.issued_until {
            return 0..0;
        }
        s.elsewhere.insert(index);
        s.plan(layout, self.max_window)
    }

    /// The stream whose end is nearest to `offset`, within [`SLACK`].
    fn nearest(&self, offset: u64) -> Option<usize> {
        self.streams
            .iter()
            .enumerate()
            .map(|(i, s)| (i, s.next.abs_diff(offset)))
            .filter(|&(_, distance)| distance <= SLACK)
            .min_by_key(|&(_, distance)| distance)
            .map(|(i, _)| i)
    }

    /// Open a stream at `offset`, forgetting the least recently used one if
    /// the table is full.
    fn open(&mut self, offset: u64) -> (usize, Option<StreamId>) {
        let stream = Stream {
            id: StreamId(self.next_id),
            next: offset,
            read: 0,
            issued_until: 0,
            wasted: 0,
            elsewhere: BTreeSet::new(),
            from_start: offset == 0,
            last_used: self.clock,
        };
        self.next_id += 1;
        if self.streams.len() < MAX_STREAMS {
            self.streams.push(stream);
            return (self.streams.len() - 1, None);
        }
        let oldest = (0..self.streams.len())
            .min_by_key(|&i| self.streams[i].last_used)
            .unwrap_or(0);
        let forgotten = std::mem::replace(&mut self.streams[oldest], stream).id;
        (oldest, Some(forgotten))
    }
}

impl Stream {
    /// Take a read `offset..end` (within [`SLACK`] of `next`, or opening it).
    fn advance(&mut self, offset: u64, end: u64, layout: &BlockLayout) {
        let bs = layout.block_size;
        if offset > self.next {
            // Blocks asked for ahead and lying wholly in the gap are passed
            // over: spent, whether or not something else reads them later.
            let from = self.next.div_ceil(bs);
            let to = (offset / bs).min(self.issued_until);
            self.wasted += (from..to.max(from))
                .filter(|b| !self.elsewhere.contains(b))
                .map(|b| layout.block_len(b))
                .sum::<u64>();
        }
        self.read += end.saturating_sub(offset.max(self.next));
        self.next = self.next.max(end);
        // Blocks behind the frontier are read or passed over: no longer ahead.
        let frontier = self.next.div_ceil(bs);
        self.elsewhere = self.elsewhere.split_off(&frontier);
    }

    /// The blocks to ask for now: as far ahead as the budget and the window
    /// allow, beyond what was asked for already.
    fn plan(&mut self, layout: &BlockLayout, max_window: u64) -> Range<u64> {
        let bs = layout.block_size;
        // The first block none of this stream's reads has touched.
        let frontier = self.next.div_ceil(bs);
        let lent: u64 = self.elsewhere.iter().map(|&b| layout.block_len(b)).sum();
        let outstanding = layout_bytes(layout, frontier, self.issued_until).saturating_sub(lent);
        let divisor = if self.from_start {
            FROM_START_DIVISOR
        } else {
            WASTE_DIVISOR
        };
        let budget = (self.read / divisor)
            .saturating_sub(self.wasted)
            .saturating_sub(outstanding);
        let from = frontier.max(self.issued_until);
        // Whole blocks only (a short last block is charged as a whole one).
        let by_budget = from.saturating_add(budget / bs);
        // The window counts this worker's own fetches: blocks another worker
        // fetches extend it, up to [`FLEET_LOOKAHEAD`] windows in all.
        let by_window = self.next.saturating_add(
            max_window
                .saturating_add(lent)
                .min(max_window.saturating_mul(FLEET_LOOKAHEAD)),
        ) / bs;
        let until = by_budget.min(by_window).min(layout.block_count());
        if until <= from {
            return 0..0;
        }
        self.issued_until = until;
        from..until
    }
}

/// Bytes of blocks `from..until` (none when `until <= from`).
fn layout_bytes(layout: &BlockLayout, from: u64, until: u64) -> u64 {
    if until <= from {
        return 0;
    }
    let start = layout.block_range(from).start;
    let end = layout.block_range(until - 1).end;
    end - start
}
