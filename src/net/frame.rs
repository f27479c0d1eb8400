//! Wire framing, without I/O: cutting length-prefixed frames out of a byte buffer, and
//! splitting application messages into Noise-sized chunks and joining them again.
//!
//! On the wire every frame is a 2-byte big-endian length followed by that many bytes (a
//! Noise handshake message or a Noise transport ciphertext). After the handshake, the
//! decrypted frame payloads of one direction form a stream of messages, each a 4-byte
//! big-endian length and then the message bytes; a message starts at a frame boundary and
//! ends at one, so a message of up to [`MAX_MESSAGE_LEN`] bytes spans one or two frames.
//!
//! ```
//! use asyncpay::net::frame::{split_message, Assembler, MAX_CHUNK_LEN, MAX_MESSAGE_LEN};
//!
//! let message = vec![7u8; MAX_MESSAGE_LEN];
//! let chunks = split_message(&message)?;
//! assert_eq!(chunks.len(), 2);
//! assert!(chunks.iter().all(|c| c.len() <= MAX_CHUNK_LEN));
//!
//! let mut assembler = Assembler::default();
//! assert_eq!(assembler.push(&chunks[0])?, None);
//! assert_eq!(assembler.push(&chunks[1])?, Some(message));
//! # Ok::<(), asyncpay::net::NetError>(())
//! ```

use crate::net::NetError;

/// Largest application message, in bytes (64 KiB).
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;

/// Largest frame on the wire: the Noise limit on one message, 65535 bytes, which is also
/// the largest value of the 2-byte length prefix.
pub const MAX_FRAME_LEN: usize = 65_535;

/// Noise's authentication tag on every transport frame.
pub const TAG_LEN: usize = 16;

/// Largest plaintext carried in one transport frame.
pub const MAX_CHUNK_LEN: usize = MAX_FRAME_LEN - TAG_LEN;

/// Largest frame accepted during the handshake. The three Noise XX messages with empty
/// payloads are 32, 96 and 64 bytes; anything much larger is not a handshake.
pub const MAX_HANDSHAKE_FRAME_LEN: usize = 128;

/// Length of the message header inside the first chunk of every message.
const HEADER_LEN: usize = 4;

/// Removes one complete frame from the front of `buf`, if `buf` holds one.
///
/// Returns `Ok(None)` when more bytes are needed. A length prefix above `max_len` or below
/// `min_len` is refused at once, before its body arrives, so a peer cannot make us buffer
/// what we will never accept.
pub fn take_frame(
    buf: &mut Vec<u8>,
    min_len: usize,
    max_len: usize,
) -> Result<Option<Vec<u8>>, NetError> {
    let Some(prefix) = buf.get(..2) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
    if len > max_len {
        return Err(NetError::FrameTooLarge { len, max: max_len });
    }
    if len < min_len {
        return Err(NetError::FrameTooShort { len, min: min_len });
    }
    if buf.len() < 2 + len {
        return Ok(None);
    }
    let frame = buf[2..2 + len].to_vec();
    buf.drain(..2 + len);
    Ok(Some(frame))
}

/// Appends one frame (length prefix and body) to `out`.
///
/// # Panics
///
/// If `body` is longer than [`MAX_FRAME_LEN`]; callers build bodies from chunks of at most
/// [`MAX_CHUNK_LEN`] bytes, so this is a bug, not an input error.
pub fn put_frame(out: &mut Vec<u8>, body: &[u8]) {
    let len = u16::try_from(body.len()).expect("frame bodies are built below the noise limit");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
}

/// Splits a message into frame plaintexts: the 4-byte length header and the message bytes,
/// cut into chunks of at most [`MAX_CHUNK_LEN`] bytes.
pub fn split_message(message: &[u8]) -> Result<Vec<Vec<u8>>, NetError> {
    if message.len() > MAX_MESSAGE_LEN {
        return Err(NetError::MessageTooLarge {
            len: message.len(),
            max: MAX_MESSAGE_LEN,
        });
    }
    let len = u32::try_from(message.len()).expect("bounded by MAX_MESSAGE_LEN");
    let mut stream = Vec::with_capacity(HEADER_LEN + message.len());
    stream.extend_from_slice(&len.to_be_bytes());
    stream.extend_from_slice(message);
    Ok(stream.chunks(MAX_CHUNK_LEN).map(<[u8]>::to_vec).collect())
}

/// Joins decrypted frame payloads back into messages, checking the declared lengths.
#[derive(Debug, Default)]
pub struct Assembler {
    /// The message under way: its declared length and the bytes received so far.
    partial: Option<(usize, Vec<u8>)>,
}

impl Assembler {
    /// Feeds the plaintext of the next frame; returns a message once its last chunk is in.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Option<Vec<u8>>, NetError> {
        let (declared, mut body) = match self.partial.take() {
            None => {
                let Some((header, rest)) = chunk.split_first_chunk::<HEADER_LEN>() else {
                    return Err(NetError::MissingMessageHeader { len: chunk.len() });
                };
                let declared = u32::from_be_bytes(*header) as usize;
                if declared > MAX_MESSAGE_LEN {
                    return Err(NetError::MessageTooLarge {
                        len: declared,
                        max: MAX_MESSAGE_LEN,
                    });
                }
                let mut body = Vec::with_capacity(declared);
                body.extend_from_slice(rest);
                (declared, body)
            }
            Some((declared, mut body)) => {
                // A sender never emits an empty continuation; accepting them would let a
                // peer hold a message open forever at no cost.
                if chunk.is_empty() {
                    return Err(NetError::EmptyContinuation {
                        declared,
                        received: body.len(),
                    });
                }
                body.extend_from_slice(chunk);
                (declared, body)
            }
        };
        if body.len() > declared {
            return Err(NetError::MessageOverrun {
                declared,
                received: body.len(),
            });
        }
        if body.len() == declared {
            return Ok(Some(body));
        }
        body.shrink_to(declared);
        self.partial = Some((declared, body));
        Ok(None)
    }

    /// Whether a message has started and not yet ended.
    pub fn is_partial(&self) -> bool {
        self.partial.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_wait_for_their_body() {
        let mut buf = vec![0, 3, 1, 2];
        assert_eq!(take_frame(&mut buf, 0, 10).unwrap(), None);
        buf.push(3);
        buf.push(9);
        assert_eq!(take_frame(&mut buf, 0, 10).unwrap(), Some(vec![1, 2, 3]));
        assert_eq!(buf, vec![9]);
        assert_eq!(take_frame(&mut buf, 0, 10).unwrap(), None);
    }

    #[test]
    fn oversized_and_undersized_prefixes_are_refused_before_the_body() {
        let mut buf = vec![0xff, 0xff];
        assert!(matches!(
            take_frame(&mut buf, 0, MAX_HANDSHAKE_FRAME_LEN),
            Err(NetError::FrameTooLarge { len: 65_535, max }) if max == MAX_HANDSHAKE_FRAME_LEN
        ));
        let mut buf = vec![0, 15];
        assert!(matches!(
            take_frame(&mut buf, TAG_LEN, MAX_FRAME_LEN),
            Err(NetError::FrameTooShort {
                len: 15,
                min: TAG_LEN
            })
        ));
    }

    #[test]
    fn a_full_size_message_takes_two_chunks() {
        let message = vec![0xa5; MAX_MESSAGE_LEN];
        let chunks = split_message(&message).unwrap();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].len(), MAX_CHUNK_LEN);
        let mut assembler = Assembler::default();
        assert_eq!(assembler.push(&chunks[0]).unwrap(), None);
        assert!(assembler.is_partial());
        assert_eq!(assembler.push(&chunks[1]).unwrap(), Some(message));
        assert!(!assembler.is_partial());
    }

    #[test]
    fn empty_message_is_one_header_chunk() {
        let chunks = split_message(&[]).unwrap();
        assert_eq!(chunks, vec![vec![0, 0, 0, 0]]);
        assert_eq!(
            Assembler::default().push(&chunks[0]).unwrap(),
            Some(Vec::new())
        );
    }

    #[test]
    fn too_large_messages_are_refused_on_both_sides() {
        assert!(matches!(
            split_message(&vec![0; MAX_MESSAGE_LEN + 1]),
            Err(NetError::MessageTooLarge { len, .. }) if len == MAX_MESSAGE_LEN + 1
        ));
        let header = u32::MAX.to_be_bytes();
        assert!(matches!(
            Assembler::default().push(&header),
            Err(NetError::MessageTooLarge { len, max: MAX_MESSAGE_LEN }) if len == u32::MAX as usize
        ));
    }

    #[test]
    fn malformed_chunk_sequences_are_refused() {
        assert!(matches!(
            Assembler::default().push(&[0, 0]),
            Err(NetError::MissingMessageHeader { len: 2 })
        ));
        assert!(matches!(
            Assembler::default().push(&[0, 0, 0, 1, 7, 7]),
            Err(NetError::MessageOverrun {
                declared: 1,
                received: 2
            })
        ));
        let mut assembler = Assembler::default();
        assert_eq!(assembler.push(&[0, 0, 0, 3, 7]).unwrap(), None);
        assert!(matches!(
            assembler.push(&[]),
            Err(NetError::EmptyContinuation {
                declared: 3,
                received: 1
            })
        ));
        let mut assembler = Assembler::default();
        assert_eq!(assembler.push(&[0, 0, 0, 3, 7]).unwrap(), None);
        assert!(matches!(
            assembler.push(&[1, 2, 3]),
            Err(NetError::MessageOverrun {
                declared: 3,
                received: 4
            })
        ));
    }

    proptest! {
        #[test]
        fn split_then_assemble_round_trips(len in 0usize..=MAX_MESSAGE_LEN, byte in any::<u8>()) {
            let message = vec![byte; len];
            let mut assembler = Assembler::default();
            let mut out = None;
            for chunk in split_message(&message).unwrap() {
                prop_assert!(out.is_none());
                out = assembler.push(&chunk).unwrap();
            }
            prop_assert_eq!(out, Some(message));
        }

        #[test]
        fn arbitrary_chunks_never_panic(chunks in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..64), 0..8)) {
            let mut assembler = Assembler::default();
            for chunk in chunks {
                if assembler.push(&chunk).is_err() {
                    break;
                }
            }
        }
    }
}
