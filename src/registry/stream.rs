//! Passing a blob from one registry's response straight into another registry's upload, checked
//! on the way: a layer of any size goes through a few frames of memory, and content that does
//! not match its digest or size stops the upload instead of being stored.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use sha2::Digest as _;

use super::{Digest, Error};

/// Why streamed content was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// More bytes than the descriptor's size arrived.
    TooLong { expected: u64 },
    /// The content ended before the descriptor's size.
    TooShort { expected: u64, got: u64 },
    /// The size was right but the content hashes to another digest.
    Digest,
}

enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

/// Hashes and counts content as it passes, to compare with a descriptor at the end.
pub struct DigestCheck {
    expected: Digest,
    size: Option<u64>,
    seen: u64,
    hasher: Hasher,
}

impl DigestCheck {
    /// A check for content `expected` names, `size` bytes long when the size is known.
    pub fn new(expected: Digest, size: Option<u64>) -> DigestCheck {
        let hasher = match expected.algorithm() {
            "sha512" => Hasher::Sha512(sha2::Sha512::new()),
            // Parsing a digest admits only sha256 and sha512.
            _ => Hasher::Sha256(sha2::Sha256::new()),
        };
        DigestCheck {
            expected,
            size,
            seen: 0,
            hasher,
        }
    }

    /// Takes the next piece of content; refuses it as soon as it runs past the size.
    pub fn update(&mut self, chunk: &[u8]) -> Result<(), Mismatch> {
        self.seen += chunk.len() as u64;
        if let Some(expected) = self.size.filter(|&n| self.seen > n) {
            return Err(Mismatch::TooLong { expected });
        }
        match &mut self.hasher {
            Hasher::Sha256(h) => h.update(chunk),
            Hasher::Sha512(h) => h.update(chunk),
        }
        Ok(())
    }

    /// Bytes taken so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Whether everything taken is exactly the expected content.
    pub fn finish(&mut self) -> Result<(), Mismatch> {
        if let Some(expected) = self.size.filter(|&n| self.seen != n) {
            return Err(Mismatch::TooShort {
                expected,
                got: self.seen,
            });
        }
        let hex = match &mut self.hasher {
            Hasher::Sha256(h) => hex::encode(std::mem::take(h).finalize()),
            Hasher::Sha512(h) => hex::encode(std::mem::take(h).finalize()),
        };
        if hex == self.expected.hex() {
            Ok(())
        } else {
            Err(Mismatch::Digest)
        }
    }
}

/// Where a [`VerifiedBody`] leaves the reason it stopped, for the uploader to report instead
/// of the transport's "body write aborted".
pub type Failure = Arc<Mutex<Option<Error>>>;

/// The source body of a blob copy, sent on as an upload's request body. It ends with an error
/// (which aborts the upload) when the source sends content that does not match the digest or
/// size, stalls for the idle timeout, or breaks off.
pub struct VerifiedBody<B> {
    source: B,
    check: DigestCheck,
    idle: Duration,
    stall: Pin<Box<tokio::time::Sleep>>,
    failure: Failure,
    /// Which blob, from which registry, for errors.
    registry: String,
    what: String,
    done: bool,
}

impl<B> VerifiedBody<B> {
    pub fn new(
        source: B,
        check: DigestCheck,
        idle: Duration,
        registry: &str,
        what: &str,
    ) -> (VerifiedBody<B>, Failure) {
        let failure = Failure::default();
        let body = VerifiedBody {
            source,
            check,
            idle,
            stall: Box::pin(tokio::time::sleep(idle)),
            failure: failure.clone(),
            registry: registry.into(),
            what: what.into(),
            done: false,
        };
        (body, failure)
    }

    fn fail(&mut self, error: Error) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.done = true;
        let message = error.to_string();
        *self.failure.lock().expect("copy failure") = Some(error);
        Poll::Ready(Some(Err(message.into())))
    }

    fn mismatch(&self, m: Mismatch) -> Error {
        match m {
            Mismatch::Digest => Error::DigestMismatch {
                what: self.what.clone(),
            },
            Mismatch::TooLong { expected } => Error::Protocol {
                registry: self.registry.clone(),
                detail: format!("{} is larger than its size, {expected} bytes", self.what),
            },
            Mismatch::TooShort { expected, got } => Error::Protocol {
                registry: self.registry.clone(),
                detail: format!("{} ended after {got} of its {expected} bytes", self.what),
            },
        }
    }
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<B> Body for VerifiedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            return match Pin::new(&mut this.source).poll_frame(cx) {
                Poll::Pending => {
                    if this.stall.as_mut().poll(cx).is_ready() {
                        let error = Error::Timeout {
                            registry: this.registry.clone(),
                            detail: format!(
                                "reading {}: no data for {}s",
                                this.what,
                                this.idle.as_secs()
                            ),
                        };
                        return this.fail(error);
                    }
                    Poll::Pending
                }
                Poll::Ready(None) => match this.check.finish() {
                    Ok(()) => {
                        this.done = true;
                        Poll::Ready(None)
                    }
                    Err(m) => {
                        let e = this.mismatch(m);
                        this.fail(e)
                    }
                },
                Poll::Ready(Some(Err(e))) => {
                    let error = Error::Connect {
                        registry: this.registry.clone(),
                        detail: format!("reading {}: {e}", this.what),
                    };
                    this.fail(error)
                }
                Poll::Ready(Some(Ok(frame))) => {
                    let deadline = tokio::time::Instant::now() + this.idle;
                    this.stall.as_mut().reset(deadline);
                    // Trailers carry nothing an upload needs.
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    // With a known size the last piece is checked before it is sent on: the
                    // upload then never completes with wrong content, even when the registry
                    // answers as soon as it has every byte.
                    let checked = this.check.update(&data).and_then(|()| {
                        if this.check.size == Some(this.check.seen()) {
                            this.check.finish()?;
                            this.done = true;
                        }
                        Ok(())
                    });
                    match checked {
                        Ok(()) => Poll::Ready(Some(Ok(Frame::data(data)))),
                        Err(m) => {
                            let e = this.mismatch(m);
                            this.fail(e)
                        }
                    }
                }
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        // An exact hint makes the upload carry a Content-Length, which every registry accepts;
        // a blob of unknown size goes chunked.
        match self.check.size {
            Some(n) => SizeHint::with_exact(n.saturating_sub(self.check.seen())),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    fn digest_of(data: &[u8]) -> Digest {
        Digest::sha256_of(data)
    }

    #[test]
    fn matching_content_passes_in_pieces() {
        let data = b"hello, layer";
        let mut c = DigestCheck::new(digest_of(data), Some(data.len() as u64));
        for piece in data.chunks(5) {
            c.update(piece).unwrap();
        }
        assert_eq!(c.seen(), data.len() as u64);
        assert_eq!(c.finish(), Ok(()));
        let mut unknown_size = DigestCheck::new(digest_of(data), None);
        unknown_size.update(data).unwrap();
        assert_eq!(unknown_size.finish(), Ok(()));
    }

    #[test]
    fn sha512_digests_are_checked_too() {
        let data = b"sha512 content";
        let hex = hex::encode(sha2::Sha512::digest(data));
        let d: Digest = format!("sha512:{hex}").parse().unwrap();
        let mut c = DigestCheck::new(d.clone(), Some(data.len() as u64));
        c.update(data).unwrap();
        assert_eq!(c.finish(), Ok(()));
        let mut c = DigestCheck::new(d, None);
        c.update(b"other").unwrap();
        assert_eq!(c.finish(), Err(Mismatch::Digest));
    }

    #[test]
    fn wrong_content_size_or_length_is_refused() {
        let data = b"hello, layer";
        let mut other = DigestCheck::new(digest_of(data), Some(data.len() as u64));
        other.update(b"hello, LAYER").unwrap();
        assert_eq!(other.finish(), Err(Mismatch::Digest));

        let mut long = DigestCheck::new(digest_of(data), Some(5));
        long.update(b"hello").unwrap();
        assert_eq!(long.update(b"!"), Err(Mismatch::TooLong { expected: 5 }));

        let mut short = DigestCheck::new(digest_of(data), Some(data.len() as u64));
        short.update(b"hello").unwrap();
        assert_eq!(
            short.finish(),
            Err(Mismatch::TooShort {
                expected: 12,
                got: 5
            })
        );
    }

    fn source(pieces: &[&'static [u8]]) -> impl Body<Data = Bytes, Error = std::io::Error> + Unpin {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = pieces
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p))))
            .collect();
        http_body_util::StreamBody::new(futures::stream::iter(frames))
    }

    #[tokio::test]
    async fn a_verified_body_forwards_matching_content() {
        let data = b"hello, layer";
        let check = DigestCheck::new(digest_of(data), Some(12));
        let (body, failure) = VerifiedBody::new(
            source(&[b"hello", b", layer"]),
            check,
            Duration::from_secs(5),
            "127.0.0.1:5000",
            "blob x",
        );
        assert_eq!(body.size_hint().exact(), Some(12));
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(&collected[..], data);
        assert!(failure.lock().unwrap().is_none());
    }

    #[tokio::test]
    async fn a_verified_body_aborts_on_a_digest_mismatch() {
        let data = b"hello, layer";
        let check = DigestCheck::new(digest_of(data), Some(12));
        let (body, failure) = VerifiedBody::new(
            source(&[b"hello", b", LAYER"]),
            check,
            Duration::from_secs(5),
            "127.0.0.1:5000",
            "blob x in 127.0.0.1:5000/app",
        );
        let mut body = body;
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"hello"));
        // The piece that completes the size is checked before it goes out, so a registry
        // never receives the whole of wrong content.
        assert!(body.frame().await.unwrap().is_err());
        assert!(body.frame().await.is_none());
        let error = failure.lock().unwrap().take().unwrap();
        assert_eq!(
            error.to_string(),
            "blob x in 127.0.0.1:5000/app: content does not match its digest"
        );
    }

    #[tokio::test]
    async fn a_verified_body_stops_at_the_first_byte_past_the_size() {
        let check = DigestCheck::new(digest_of(b"hello"), Some(5));
        let (mut body, failure) = VerifiedBody::new(
            source(&[b"hel", b"lo!!", b"never read"]),
            check,
            Duration::from_secs(5),
            "127.0.0.1:5000",
            "blob x",
        );
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"hel"));
        assert!(body.frame().await.unwrap().is_err());
        assert!(body.frame().await.is_none());
        let error = failure.lock().unwrap().take().unwrap().to_string();
        assert!(error.contains("larger than its size, 5 bytes"), "{error}");
    }

    #[tokio::test]
    async fn a_stalled_source_ends_the_body_with_a_timeout() {
        let stalled = http_body_util::StreamBody::new(futures::stream::pending::<
            Result<Frame<Bytes>, std::io::Error>,
        >());
        let check = DigestCheck::new(digest_of(b"x"), Some(1));
        let (body, failure) = VerifiedBody::new(
            stalled,
            check,
            Duration::from_millis(200),
            "127.0.0.1:5000",
            "blob x",
        );
        assert!(body.collect().await.is_err());
        let error = failure.lock().unwrap().take().unwrap().to_string();
        assert!(
            error.starts_with("127.0.0.1:5000: timed out: reading blob x: no data for"),
            "{error}"
        );
    }
}
