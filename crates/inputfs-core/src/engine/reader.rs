//! One open file: reads through the engine, with readahead per stream
//! (`readahead`) and the loads it started, so that those a stream abandons
//! can be cancelled.
//!
//! A readahead load is a task of its own (it must outlive the read that asked
//! for it). Its abort handle is kept with the stream that asked: when the
//! planner forgets the stream, or the handle is closed, loads still in flight
//! are aborted. Aborting drops the origin request (the connection with it),
//! releases the in-flight budget and any claim on the shared tier (`load`'s
//! claim guard); a demand read that was waiting for the same block through
//! the single-flight point loads it itself.
//!
//! A read that opens a stream in the second half of a block and runs into the
//! next has a *lead-in*: the kernel's read-around of a fault on a mapped file
//! (half its readahead, 512 KiB, before the faulting page: a tensor starting
//! just past a block boundary would otherwise pull the whole block before
//! it), or a ranged read starting near a block's end. The lead-in is served
//! from a cached copy of its block if there is one, else by a ranged GET of
//! just those bytes, which is not cached (a later read of that block fetches
//! it whole): less than half a block instead of a whole one, for bytes that are
//! most often never used.

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::task::AbortHandle;

use super::claims::OnClaimedElsewhere;
use super::readahead::{Readahead, StreamId};
use super::{Engine, Object};
use crate::block::BlockId;
use crate::error::Result;

/// One open file: reads through the engine with its own readahead.
pub struct FileReader {
    inner: Arc<Inner>,
}

/// What a `FileReader`'s readahead loads reach back to (weakly: a closed
/// handle's loads are cancelled, and never keep it alive).
struct Inner {
    engine: Arc<Engine>,
    object: Arc<Object>,
    ahead: Mutex<Ahead>,
}

/// The planner and the loads it started that may still be running.
struct Ahead {
    planner: Readahead,
    loads: Vec<Load>,
}

/// A readahead load: the stream it is for, its block, and its task.
struct Load {
    stream: StreamId,
    index: u64,
    task: AbortHandle,
}

impl FileReader {
    pub(super) fn new(engine: Arc<Engine>, object: Arc<Object>, window: u64) -> Self {
        FileReader {
            inner: Arc::new(Inner {
                engine,
                object,
                ahead: Mutex::new(Ahead {
                    planner: Readahead::new(window),
                    loads: Vec::new(),
                }),
            }),
        }
    }

    /// The object being read.
    pub fn object(&self) -> &Arc<Object> {
        &self.inner.object
    }

    /// Read `len` bytes at `offset`, loading ahead what the read's stream has earned.
    pub async fn read(&self, offset: u64, len: u64) -> Result<Bytes> {
        let Inner { engine, object, .. } = &*self.inner;
        let data = match self.inner.read_ahead(offset, len) {
            None => engine.read(object, offset, len).await?,
            Some(split) => {
                let end = offset.saturating_add(len).min(object.id.size);
                let (head, rest) = futures::try_join!(
                    engine.lead_in(object, offset, split),
                    engine.read(object, split, end - split)
                )?;
                let mut out = BytesMut::with_capacity(head.len() + rest.len());
                out.extend_from_slice(&head);
                out.extend_from_slice(&rest);
                out.freeze()
            }
        };
        object
            .served
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(data)
    }
}

impl Inner {
    /// Plan the read and start its readahead loads; say where its lead-in
    /// ends, if it has one.
    fn read_ahead(self: &Arc<Self>, offset: u64, len: u64) -> Option<u64> {
        let Ok(mut ahead) = self.ahead.lock() else {
            return None;
        };
        let layout = &self.object.layout;
        let plan = ahead.planner.on_read(offset, len, layout);
        tracing::trace!(offset, len, ?plan, "read planned");
        let blocks = layout.blocks_for(offset, len);
        let lead_in = (plan.opened
            && blocks.end - blocks.start >= 2
            && offset - layout.block_range(blocks.start).start >= layout.block_size / 2)
            .then(|| layout.block_range(blocks.start).end);
        ahead.loads.retain(|load| !load.task.is_finished());
        if let Some(forgotten) = plan.forgotten {
            ahead.loads.retain(|load| {
                if load.stream == forgotten {
                    self.cancel(load);
                }
                load.stream != forgotten
            });
        }
        if let Some(stream) = plan.stream {
            self.start_loads(&mut ahead, stream, plan.prefetch);
        }
        lead_in
    }

    /// Start the readahead loads of `blocks` for `stream`, as far as free
    /// in-flight budget allows: readahead never makes a demand read wait, and
    /// what is not started here is loaded when read. A load that finds its
    /// block claimed by another worker tells the planner, which may send this
    /// stream further ahead (cooperative cold start, `readahead`).
    fn start_loads(self: &Arc<Self>, ahead: &mut Ahead, stream: StreamId, blocks: Range<u64>) {
        for index in blocks {
            let need = self.object.layout.block_len(index).div_ceil(1024) as usize;
            if self.engine.inflight_free_kib() < need {
                break;
            }
            let engine = self.engine.clone();
            let object = self.object.clone();
            engine.readahead.blocks.fetch_add(1, Ordering::Relaxed);
            let me = Arc::downgrade(self);
            let elsewhere: OnClaimedElsewhere = Box::new(move || {
                if let Some(reader) = me.upgrade() {
                    reader.fetched_elsewhere(stream, index);
                }
            });
            // On the engine's task tracker: a cancelled load's claim is
            // released (by a task its drop starts) before `shutdown` returns.
            let load = self.engine.background.spawn(async move {
                engine.prefetch(&object, index, elsewhere).await;
            });
            ahead.loads.push(Load {
                stream,
                index,
                task: load.abort_handle(),
            });
        }
    }

    /// Another worker fetches block `index`, asked for ahead of `stream`.
    fn fetched_elsewhere(self: &Arc<Self>, stream: StreamId, index: u64) {
        let Ok(mut ahead) = self.ahead.lock() else {
            return;
        };
        let more = ahead
            .planner
            .on_fetched_elsewhere(stream, index, &self.object.layout);
        self.engine.readahead.lent.fetch_add(1, Ordering::Relaxed);
        self.start_loads(&mut ahead, stream, more);
    }
}

impl Drop for FileReader {
    /// A closed handle's readahead is abandoned.
    fn drop(&mut self) {
        if let Ok(mut ahead) = self.inner.ahead.lock() {
            for load in ahead.loads.drain(..) {
                self.inner.cancel(&load);
            }
        }
    }
}

impl Engine {
    /// Bytes `offset..end` of one block (a read's lead-in, see the module
    /// docs): from memory or a tier if the block is cached, else from the
    /// origin by a ranged GET of just those bytes, not cached.
    async fn lead_in(self: &Arc<Self>, obj: &Arc<Object>, offset: u64, end: u64) -> Result<Bytes> {
        let index = offset / obj.layout.block_size;
        let start = obj.layout.block_range(index).start;
        let id = BlockId {
            key: obj.key,
            index,
        };
        let part = |block: Bytes| block.slice((offset - start) as usize..(end - start) as usize);
        if let Some(block) = self.memory.get(&id).await {
            return Ok(part(block));
        }
        let len = obj.layout.block_len(index);
        for tier in &self.tiers {
            if let Some(block) = self.tier_get(tier, id, len, true).await {
                self.memory.insert(id, block.clone()).await;
                return Ok(part(block));
            }
        }
        let kib = u32::try_from((end - offset).div_ceil(1024)).unwrap_or(u32::MAX);
        let _permit = self
            .inflight
            .acquire_many(kib.min(self.inflight_kib))
            .await
            .ok();
        self.get_origin(obj, index, offset..end).await
    }
}

impl Inner {
    /// Abort a readahead load whose block is not loaded yet, and count it.
    /// A load whose block is in memory has done its work, even if its task
    /// has not returned yet (the reader that waited on the same block may
    /// run first): it is neither aborted nor counted.
    fn cancel(&self, load: &Load) {
        let id = BlockId {
            key: self.object.key,
            index: load.index,
        };
        if !load.task.is_finished() && !self.engine.memory.contains_key(&id) {
            load.task.abort();
            self.engine
                .readahead
                .cancelled
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}
