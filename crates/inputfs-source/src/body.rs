//! Response bodies of ranged GETs, collected into reused block buffers.
//!
//! object_store's `GetResult::bytes` collects a body into a new allocation;
//! every block then arrived in fresh memory, faulted in and zeroed page by
//! page (`clear_page_erms`, 21% of the daemon's CPU in a cold read's
//! profile, 4.7% once bodies came from the pool). Bodies are collected into
//! buffers of `inputfs_core::buffers` instead, which go back to its pool when
//! the block is dropped.

use bytes::Bytes;
use futures::{Stream, StreamExt};

/// Collect `body`, expected to be `len` bytes long (a longer one is
/// collected whole: the caller checks the length), into a pooled buffer.
pub(crate) async fn collect<E>(
    body: impl Stream<Item = Result<Bytes, E>>,
    len: usize,
) -> Result<Bytes, E> {
    let mut buf = inputfs_core::buffers::take(len);
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        buf.extend_from_slice(&chunk?);
    }
    Ok(inputfs_core::buffers::share(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, ()>> {
        futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn a_body_is_collected_whole_and_in_order() {
        let got = collect(chunks(&[b"ab", b"", b"cde"]), 5).await.unwrap();
        assert_eq!(&got[..], b"abcde");
        // Longer than announced: all of it, for the caller to refuse.
        let got = collect(chunks(&[b"abc", b"def"]), 4).await.unwrap();
        assert_eq!(&got[..], b"abcdef");
    }

    #[tokio::test]
    async fn a_failed_chunk_fails_the_body() {
        let body = futures::stream::iter(vec![Ok(Bytes::from_static(b"ab")), Err("cut")]);
        assert_eq!(collect(body, 4).await.unwrap_err(), "cut");
    }
}
