//! The one check of a lock file that needs the origin: that an entry of size 0
//! is really empty.
//!
//! Every other size is checked by the reads themselves (each ranged GET
//! compares the size the origin reports with the pinned one and fails the read
//! on a difference), but a file of size 0 is never read: a lock file saying 0
//! for a 3 MB object would serve an empty file, silently. So each such entry
//! gets one HEAD at mount, pinned to its version like its reads would be. A
//! mount whose lock has empty files therefore needs the origin to answer at
//! mount (the others do not); datasets have few empty files, so this is a
//! handful of requests, made [`RESOLVE_CONCURRENCY`] at a time.

use futures::{StreamExt, TryStreamExt};
use inputfs_source::{Origin, RESOLVE_CONCURRENCY};

use super::Empty;

/// Check that every entry of `empty` is empty at the origin. The error is one
/// line naming the entry and the field.
pub async fn empty_files(empty: &[Empty], origin: &Origin) -> Result<(), String> {
    futures::stream::iter(empty)
        .map(|e| async move {
            let size = origin.pinned_size(&e.object).await.map_err(|err| {
                format!(
                    "{}: \"size\" is 0, and the origin cannot confirm it: {err}",
                    e.entry
                )
            })?;
            if size != 0 {
                return Err(format!(
                    "{}: \"size\" is 0, but the origin has {size} bytes for this version",
                    e.entry
                ));
            }
            Ok(())
        })
        .buffered(RESOLVE_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await
        .map(|_| ())
}
