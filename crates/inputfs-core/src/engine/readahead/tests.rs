//! The planner against the access patterns of real readers, and a property
//! test of its bound: blocks asked for ahead that no read touches are at most
//! half of the bytes read (all of them, for streams from the start of the
//! file), whatever the reads.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;

const KIB: u64 = 1 << 10;

/// Reads fed to one planner, with what it asked for and what the reads touched.
struct Sim {
    ra: Readahead,
    layout: BlockLayout,
    issued: Vec<u64>,
    touched: BTreeSet<u64>,
    read: u64,
    /// Of `read`, the bytes of streams that opened at offset 0.
    read_from_start: u64,
    from_start: BTreeSet<StreamId>,
    forgotten: Vec<StreamId>,
    /// Blocks another worker fetched (`on_fetched_elsewhere`).
    lent: BTreeSet<u64>,
}

impl Sim {
    fn new(block_size: u64, object_size: u64, max_window: u64) -> Sim {
        Sim {
            ra: Readahead::new(max_window),
            layout: BlockLayout::new(block_size, object_size),
            issued: vec![],
            touched: BTreeSet::new(),
            read: 0,
            read_from_start: 0,
            from_start: BTreeSet::new(),
            forgotten: vec![],
            lent: BTreeSet::new(),
        }
    }

    /// Another worker is fetching `index`, asked for ahead of `stream`.
    fn lend(&mut self, stream: StreamId, index: u64) -> Range<u64> {
        let more = self.ra.on_fetched_elsewhere(stream, index, &self.layout);
        if self.issued.contains(&index) {
            self.lent.insert(index);
        }
        assert!(more.end <= self.layout.block_count());
        self.issued.extend(more.clone());
        more
    }

    fn read(&mut self, offset: u64, len: u64) -> Plan {
        let plan = self.ra.on_read(offset, len, &self.layout);
        let own = self.layout.blocks_for(offset, len);
        assert!(
            plan.prefetch.is_empty() || plan.prefetch.start >= own.end,
            "prefetch {:?} re-asks for the read's own blocks {own:?}",
            plan.prefetch
        );
        assert!(plan.prefetch.end <= self.layout.block_count());
        self.issued.extend(plan.prefetch.clone());
        self.touched.extend(own);
        let bytes = offset.saturating_add(len).min(self.layout.object_size)
            - offset.min(self.layout.object_size);
        self.read += bytes;
        if let Some(id) = plan.stream {
            if plan.opened && offset == 0 {
                self.from_start.insert(id);
            }
            if self.from_start.contains(&id) {
                self.read_from_start += bytes;
            }
        }
        self.forgotten.extend(plan.forgotten);
        plan
    }

    /// Read `total` bytes from `start` in requests of `chunk`.
    fn scan(&mut self, start: u64, total: u64, chunk: u64) {
        let mut off = start;
        while off < start + total {
            self.read(off, chunk.min(start + total - off));
            off += chunk;
        }
    }

    /// Bytes of blocks this worker fetched ahead (not lent) that no read
    /// touched.
    fn wasted(&self) -> u64 {
        let issued: BTreeSet<u64> = self.issued.iter().copied().collect();
        issued
            .difference(&self.touched)
            .filter(|b| !self.lent.contains(b))
            .map(|&b| self.layout.block_len(b))
            .sum()
    }

    /// What the planner may have fetched ahead and never had read: half of
    /// what other streams read, and all that streams from the start read.
    fn bound(&self) -> u64 {
        (self.read - self.read_from_start) / WASTE_DIVISOR
            + self.read_from_start / FROM_START_DIVISOR
    }

    fn assert_bound(&self) {
        assert!(
            self.wasted() <= self.bound(),
            "{} bytes fetched ahead and never read, for {} bytes read ({} from the start)",
            self.wasted(),
            self.read,
            self.read_from_start
        );
    }
}

#[test]
fn a_sequential_scan_ramps_to_the_full_window_and_fetches_each_block_once() {
    let mut sim = Sim::new(4 * MIB, 1024 * MIB, 64 * MIB);
    let mut first_ahead = None;
    let mut off = 0;
    while off < 1024 * MIB {
        let plan = sim.read(off, MIB);
        if first_ahead.is_none() && !plan.prefetch.is_empty() {
            first_ahead = Some(off + MIB);
        }
        off += MIB;
        if off == 300 * MIB {
            // Past 128 MiB read, the whole 64 MiB window is asked for.
            let ahead = sim.issued.iter().max().unwrap() + 1;
            assert_eq!(ahead * 4 * MIB, 300 * MIB + 64 * MIB);
        }
    }
    assert_eq!(first_ahead, Some(4 * MIB), "first block ahead after 4 MiB");
    let unique: BTreeSet<_> = sim.issued.iter().collect();
    assert_eq!(unique.len(), sim.issued.len(), "a block asked for twice");
    // Every block but the first was fetched ahead of the reader.
    assert_eq!(sim.issued.len(), 256 - 1);
    sim.assert_bound();
}

#[test]
fn a_scan_from_elsewhere_than_the_start_ramps_at_half_the_pace() {
    let mut sim = Sim::new(4 * MIB, 1024 * MIB, 64 * MIB);
    let start = 100 * MIB;
    let mut first_ahead = None;
    let mut off = start;
    while off < 1024 * MIB {
        let plan = sim.read(off, MIB);
        if first_ahead.is_none() && !plan.prefetch.is_empty() {
            first_ahead = Some(off + MIB - start);
        }
        off += MIB;
    }
    assert_eq!(first_ahead, Some(8 * MIB), "first block ahead after 8 MiB");
    assert_eq!(sim.read_from_start, 0);
    sim.assert_bound();
}

#[test]
fn interleaved_streams_each_get_their_own_window() {
    // Two threads scanning their halves of a file, requests interleaved.
    let mut sim = Sim::new(MIB, 512 * MIB, 16 * MIB);
    let (a, b) = (0, 256 * MIB);
    let mut streams = BTreeSet::new();
    for i in 0..64 {
        streams.extend(sim.read(a + i * MIB, MIB).stream);
        streams.extend(sim.read(b + i * MIB, MIB).stream);
    }
    assert_eq!(streams.len(), 2, "two streams told apart");
    // Both ramped: blocks ahead of each stream's end.
    assert!(
        sim.issued.iter().any(|x| (64..80).contains(x)),
        "{:?}",
        sim.issued
    );
    assert!(
        sim.issued.iter().any(|&x| x >= 256 + 64),
        "{:?}",
        sim.issued
    );
    sim.assert_bound();
}

#[test]
fn blocks_another_worker_fetches_extend_the_window_up_to_the_fleet_lookahead() {
    let (bs, window) = (4 * MIB, 64 * MIB);
    let mut sim = Sim::new(bs, 1024 * MIB, window);
    // Ramp to the full window: 16 blocks ahead of the 64 MiB read.
    sim.scan(0, 64 * MIB, MIB);
    let stream = sim.read(64 * MIB, MIB).stream.unwrap();
    let ahead_before = *sim.issued.iter().max().unwrap();
    assert_eq!(ahead_before, (65 * MIB + window) / bs - 1);
    // The fleet fetches every other block of the window: each one lent
    // makes room for one more of this worker's own.
    let window_blocks: Vec<u64> = (17..=ahead_before).step_by(2).collect();
    let mut added = 0;
    for b in window_blocks {
        added += sim.lend(stream, b).count();
    }
    assert!(added > 0, "the window reached no further");
    let furthest = *sim.issued.iter().max().unwrap();
    assert!(
        furthest * bs < 65 * MIB + FLEET_LOOKAHEAD * window,
        "block {furthest} is past {FLEET_LOOKAHEAD} windows"
    );
    // Lending more than the look-ahead allows adds nothing past it.
    for b in (ahead_before + 1..=furthest).collect::<Vec<_>>() {
        sim.lend(stream, b);
    }
    let furthest = *sim.issued.iter().max().unwrap();
    assert!(furthest * bs < 65 * MIB + FLEET_LOOKAHEAD * window);
    // Blocks behind the frontier, not asked for, or of a forgotten stream
    // change nothing.
    assert!(sim.lend(stream, 3).is_empty());
    assert!(sim.lend(stream, 255).is_empty());
    assert!(sim.lend(StreamId(99), 20).is_empty());
    // The stream stops: what this worker fetched itself and nobody read is
    // still within the bound.
    sim.assert_bound();
}

#[test]
fn a_stream_that_stops_costs_at_most_half_of_what_it_read() {
    let mut sim = Sim::new(4 * MIB, 1024 * MIB, 64 * MIB);
    sim.scan(200 * MIB, 40 * MIB, MIB);
    // The reader stops; whatever was asked for ahead is all it can cost.
    let wasted = sim.wasted();
    assert!(wasted > 0, "a 40 MiB scan asked for nothing ahead");
    assert!(wasted <= 20 * MIB, "{wasted}");
    // Reads elsewhere (a new stream) do not make the old one ask for more.
    let before = sim.issued.len();
    sim.read(900 * MIB, 4 * KIB);
    assert_eq!(sim.issued.len(), before);
}

#[test]
fn a_stream_from_the_start_that_stops_costs_at_most_what_it_read() {
    let mut sim = Sim::new(4 * MIB, 1024 * MIB, 64 * MIB);
    sim.scan(0, 40 * MIB, MIB);
    let wasted = sim.wasted();
    assert!(wasted > 20 * MIB, "{wasted}: no faster than other streams");
    assert!(wasted <= 40 * MIB, "{wasted}");
    // A header read at the start of the file (safetensors, HDF5's superblock:
    // the kernel makes it 1 MiB) earns no whole block.
    let mut sim = Sim::new(4 * MIB, 1024 * MIB, 64 * MIB);
    sim.read(0, MIB);
    sim.read(MIB, MIB);
    sim.read(300 * MIB, MIB);
    assert!(sim.issued.is_empty(), "asked for {:?}", sim.issued);
}

#[test]
fn column_chunk_preads_of_a_few_mib_prefetch_nothing() {
    // pyarrow: one 4.5 MiB pread per row group's column chunk, 8 threads,
    // as the kernel splits them into 1 MiB requests, interleaved.
    let mut sim = Sim::new(4 * MIB, 256 * MIB, 64 * MIB);
    let chunk = 4 * MIB + 512 * KIB;
    for part in 0..5 {
        for rg in 0..8u64 {
            let start = rg * 32 * MIB + 3 * MIB + 17 * KIB;
            let off = start + part * MIB;
            let len = MIB.min(start + chunk - off);
            sim.read(off, len);
        }
    }
    assert!(sim.issued.is_empty(), "asked for {:?}", sim.issued);
}

#[test]
fn backward_scans_prefetch_nothing() {
    let mut sim = Sim::new(4 * MIB, 256 * MIB, 64 * MIB);
    let mut off = 256 * MIB;
    while off > 0 {
        off -= MIB;
        sim.read(off, MIB);
    }
    assert!(sim.issued.is_empty(), "asked for {:?}", sim.issued);
}

#[test]
fn strided_reads_within_a_block_count_only_what_they_read() {
    // 64 KiB every 512 KiB: one stream, earning 1/8 of the ground it covers.
    let mut sim = Sim::new(4 * MIB, 1024 * MIB, 64 * MIB);
    let mut off = 0;
    while off < 1024 * MIB {
        sim.read(off, 64 * KIB);
        off += 512 * KIB;
    }
    // 128 MiB read earns 32 MiB ahead: some blocks asked for, each later read.
    assert!(!sim.issued.is_empty());
    sim.assert_bound();
    // Strides wider than the slack are separate reads: nothing ahead.
    let mut sim = Sim::new(4 * MIB, 1024 * MIB, 64 * MIB);
    let mut off = 0;
    while off < 1024 * MIB {
        sim.read(off, 64 * KIB);
        off += 8 * MIB;
    }
    assert!(sim.issued.is_empty(), "asked for {:?}", sim.issued);
}

#[test]
fn mmap_fault_around_reads_of_a_few_tensors_prefetch_nothing() {
    // Faults on a mapped file: the kernel reads 1 MiB around the faulting page
    // (512 KiB before it), then continues ahead as the copy proceeds.
    let mut sim = Sim::new(4 * MIB, 256 * MIB, 64 * MIB);
    for tensor in [17u64, 42] {
        let start = tensor * 4 * MIB + 5 * KIB;
        let page = start / (4 * KIB) * 4 * KIB;
        sim.read(page - 512 * KIB, MIB);
        sim.scan(page + 512 * KIB, 4 * MIB, MIB);
    }
    assert!(sim.issued.is_empty(), "asked for {:?}", sim.issued);
    // Isolated faults all over the file: nothing either.
    for i in 0..200u64 {
        let page = (i * 7919 * 64 * KIB) % (255 * MIB) + MIB;
        sim.read(page - 512 * KIB, MIB);
    }
    assert!(sim.issued.is_empty(), "asked for {:?}", sim.issued);
}

#[test]
fn out_of_order_requests_continue_the_stream() {
    let mut sim = Sim::new(MIB, 256 * MIB, 16 * MIB);
    let mut streams = BTreeSet::new();
    let mut off = 0;
    while off < 64 * MIB {
        // Pairs of requests answered in the other order.
        streams.extend(sim.read(off + MIB, MIB).stream);
        streams.extend(sim.read(off, MIB).stream);
        off += 2 * MIB;
    }
    assert_eq!(streams.len(), 1, "{streams:?}");
    assert!(!sim.issued.is_empty());
    sim.assert_bound();
}

#[test]
fn more_streams_than_the_table_forgets_the_least_recently_used() {
    let mut sim = Sim::new(MIB, 1024 * MIB, 16 * MIB);
    let first = sim.read(0, MIB).stream.unwrap();
    for i in 1..MAX_STREAMS as u64 {
        sim.read(i * 32 * MIB, MIB);
    }
    assert!(sim.forgotten.is_empty());
    // Stream 0 is used again, so stream 1 is the oldest when a 17th comes.
    assert_eq!(sim.read(MIB, MIB).stream, Some(first));
    let second = sim.ra.streams[1].id;
    let plan = sim.read(900 * MIB, MIB);
    assert_eq!(plan.forgotten, Some(second));
}

#[test]
fn huge_objects_do_not_overflow() {
    let size = u64::MAX - 1;
    let mut sim = Sim::new(4 * MIB, size, 64 * MIB);
    sim.scan(size - 600 * MIB, 600 * MIB, MIB);
    assert!(!sim.issued.is_empty());
    assert!(*sim.issued.iter().max().unwrap() < sim.layout.block_count());
    sim.assert_bound();
    // Reads at and past the end are empty plans.
    let plan = sim.read(size, MIB);
    assert_eq!((plan.stream, plan.prefetch), (None, 0..0));
}

#[test]
fn the_window_never_passes_the_maximum_nor_the_end() {
    let mut sim = Sim::new(MIB, 300 * MIB + 5, 8 * MIB);
    let mut off = 0;
    while off < sim.layout.object_size {
        let plan = sim.read(off, 128 * KIB);
        if !plan.prefetch.is_empty() {
            let end = sim.layout.block_range(plan.prefetch.end - 1).end;
            assert!(end <= off + 128 * KIB + 8 * MIB, "{plan:?} at {off}");
        }
        off += 128 * KIB;
    }
    assert_eq!(
        *sim.issued.iter().max().unwrap(),
        300,
        "the short last block"
    );
}

#[test]
fn a_zero_window_turns_readahead_off() {
    let mut sim = Sim::new(MIB, 100 * MIB, 0);
    sim.scan(0, 100 * MIB, MIB);
    assert!(sim.issued.is_empty());
}

/// A read: mostly near the previous one (streams), sometimes anywhere.
fn reads() -> impl Strategy<Value = Vec<(u64, u64)>> {
    prop::collection::vec((0u64..8, 0u64..64 * MIB, 1u64..3 * MIB), 1..400).prop_map(|steps| {
        let mut last = 0u64;
        steps
            .into_iter()
            .map(|(kind, anywhere, len)| {
                let offset = match kind {
                    0 => anywhere,
                    1 => last.saturating_sub(len),
                    2 => last + anywhere % (3 * MIB),
                    _ => last,
                };
                last = offset + len;
                (offset, len)
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn blocks_fetched_ahead_and_never_read_are_bounded_by_the_bytes_read(
        reads in reads(),
        block_kib in prop::sample::select(vec![64u64, 1024, 4096]),
        window_blocks in 0u64..32,
        lend_every in 0usize..4,
    ) {
        let bs = block_kib * KIB;
        let mut sim = Sim::new(bs, 80 * MIB, window_blocks * bs);
        // With `lend_every` > 0, the first block of every such plan is
        // another worker's to fetch (a fleet reading the same object).
        let reach = window_blocks * bs * FLEET_LOOKAHEAD + SLACK;
        for (i, (offset, len)) in reads.into_iter().enumerate() {
            let plan = sim.read(offset, len);
            let end_read = (offset + len).min(sim.layout.object_size);
            let mut ranges = vec![plan.prefetch.clone()];
            if lend_every > 0 && i % lend_every == 0 && !plan.prefetch.is_empty() {
                ranges.push(sim.lend(plan.stream.unwrap(), plan.prefetch.start));
            }
            for r in ranges.into_iter().filter(|r| !r.is_empty()) {
                let end = sim.layout.block_range(r.end - 1).end;
                prop_assert!(end <= end_read + reach, "{r:?} past the look-ahead");
            }
        }
        prop_assert!(
            sim.wasted() <= sim.bound(),
            "{} wasted for {} read ({} from the start)", sim.wasted(), sim.read, sim.read_from_start
        );
    }
}
