//! Reading a bounded prefix of a request body for inspection, then forwarding all of it.
//!
//! Explanations need the request's features, which live in its body. Reading a body
//! whole would let one large upload exhaust memory, so a route reads at most
//! `inspect_limit_bytes`: if the body ends within that, its bytes are available to later
//! stages; if not, what was read is replayed in front of the rest and the request is
//! forwarded untouched, uninspected.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http_body::Frame;
use http_body_util::{BodyExt, BodyStream, StreamBody};

use crate::body::ProxyBody;
use crate::error::BoxError;

pub use sidelight_core::inspection::Inspection;

/// Reads up to `limit` bytes of `body`. Returns the inspection and a body that yields
/// exactly the original frames, in order, whatever the outcome.
pub async fn read_prefix(
    mut body: ProxyBody,
    limit: u64,
) -> Result<(Inspection, ProxyBody), BoxError> {
    let mut frames: Vec<Frame<Bytes>> = Vec::new();
    let mut seen: u64 = 0;
    loop {
        match body.frame().await {
            None => {
                let whole = match frames.as_slice() {
                    // The usual case, a small body in one frame: share it, don't copy it.
                    [only] if only.is_data() => only.data_ref().cloned().unwrap_or_default(),
                    _ => {
                        let mut whole = BytesMut::with_capacity(usize::try_from(seen).unwrap_or(0));
                        for frame in &frames {
                            if let Some(data) = frame.data_ref() {
                                whole.extend_from_slice(data);
                            }
                        }
                        whole.freeze()
                    }
                };
                return Ok((Inspection::Complete(whole), replay(frames, None)));
            }
            Some(frame) => {
                let frame = frame?;
                if let Some(data) = frame.data_ref() {
                    seen += data.len() as u64;
                }
                frames.push(frame);
                if seen > limit {
                    return Ok((Inspection::OverLimit, replay(frames, Some(body))));
                }
            }
        }
    }
}

fn replay(frames: Vec<Frame<Bytes>>, rest: Option<ProxyBody>) -> ProxyBody {
    let head = futures_util::stream::iter(frames.into_iter().map(Ok::<_, BoxError>));
    match rest {
        None => BodyExt::boxed(StreamBody::new(head)),
        Some(rest) => BodyExt::boxed(StreamBody::new(head.chain(BodyStream::new(rest)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    fn chunked(chunks: &[&'static [u8]]) -> ProxyBody {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c))))
            .collect();
        BodyExt::boxed(StreamBody::new(futures_util::stream::iter(frames)))
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_inspected_whole_and_forwarded_unchanged() {
        let body = chunked(&[b"{\"a\":", b" 1}"]);
        let (inspection, forwarded) = read_prefix(body, 16).await.unwrap();
        assert_eq!(
            inspection,
            Inspection::Complete(Bytes::from_static(b"{\"a\": 1}"))
        );
        let bytes = forwarded.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"{\"a\": 1}");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_forwarded_whole_but_not_inspected() {
        let body = chunked(&[b"0123", b"4567", b"89", b"abcdef"]);
        let (inspection, forwarded) = read_prefix(body, 5).await.unwrap();
        assert_eq!(inspection, Inspection::OverLimit);
        let bytes = forwarded.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"0123456789abcdef");
    }

    #[tokio::test]
    async fn a_body_exactly_at_the_limit_is_complete() {
        let body = Full::new(Bytes::from_static(b"12345"))
            .map_err(|never| match never {})
            .boxed();
        let (inspection, _) = read_prefix(body, 5).await.unwrap();
        assert_eq!(inspection.outcome(), "complete");
    }
}
