//! Framing: a 4-byte big-endian length prefix, then a postcard-encoded frame.
//!
//! [`FrameDecoder`] is a push parser: feed it bytes as they arrive, take whole frames out.
//! It never allocates more than [`MAX_FRAME_LEN`] for a frame, whatever a peer announces.

use serde::{de::DeserializeOwned, Serialize};

use crate::MAX_FRAME_LEN;

/// Why bytes could not be turned into a frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix announced more than [`MAX_FRAME_LEN`] bytes.
    #[error("frame of {0} bytes exceeds the maximum of {MAX_FRAME_LEN}")]
    TooLarge(u32),
    /// The payload is not a valid frame (unknown variant, bad varint, invalid UTF-8, trailing bytes…).
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// Encodes one frame with its length prefix.
pub fn encode<T: Serialize>(frame: &T) -> Vec<u8> {
    // Serializing our own frame types into a Vec cannot fail.
    let mut out = postcard::to_extend(frame, vec![0u8; 4]).expect("frame serializes");
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out
}

/// Decodes a frame payload (without its length prefix). Trailing bytes are an error.
pub fn decode_body<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    let (frame, rest) =
        postcard::take_from_bytes(payload).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed(format!("{} trailing bytes", rest.len())));
    }
    Ok(frame)
}

/// Incremental frame parser over a byte stream.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// A decoder with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the stream.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The length announced by a complete prefix in the buffer, checked against the limit.
    /// Lets a reader refuse an oversized frame before its bytes arrive.
    pub fn announced_len(&self) -> Result<Option<u32>, FrameError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes(self.buf[..4].try_into().unwrap());
        if len > MAX_FRAME_LEN {
            return Err(FrameError::TooLarge(len));
        }
        Ok(Some(len))
    }

    /// Takes the next whole frame out of the buffer, if one is there.
    pub fn next_frame<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        let Some(len) = self.announced_len()? else {
            return Ok(None);
        };
        let end = 4 + len as usize;
        if self.buf.len() < end {
            return Ok(None);
        }
        let frame = decode_body(&self.buf[4..end]);
        self.buf.drain(..end);
        frame.map(Some)
    }

    /// Bytes buffered but not yet part of a returned frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientFrame, ErrorCode, ReceiptStatus, ServerFrame};

    fn roundtrip_all<T>(frames: Vec<T>)
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let mut dec = FrameDecoder::new();
        let bytes: Vec<u8> = frames.iter().flat_map(encode).collect();
        // Feed one byte at a time: frames come out whole and in order.
        let mut out = Vec::new();
        for b in bytes {
            dec.extend(&[b]);
            while let Some(f) = dec.next_frame::<T>().unwrap() {
                out.push(f);
            }
        }
        assert_eq!(out, frames);
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn every_frame_roundtrips_through_a_byte_stream() {
        roundtrip_all(vec![
            ClientFrame::Hello { min_version: 1, max_version: 1 },
            ClientFrame::RequestCode { phone: "+15551230001".into() },
            ClientFrame::Verify { phone: "+15551230001".into(), code: "12345".into() },
            ClientFrame::Login { phone: "+15551230001".into(), key: "k".into() },
            ClientFrame::Send { client_id: u64::MAX, to: "+15551230002".into(), body: vec![0, 255] },
            ClientFrame::Ack { id: 7 },
            ClientFrame::Read { id: 7, from: "+15551230002".into() },
            ClientFrame::Ping { nonce: 1 },
            ClientFrame::Command { request_id: 9, slot: "router".into(), name: "group-add".into(), args: vec!["#t".into(), "+1555".into()] },
        ]);
        roundtrip_all(vec![
            ServerFrame::Welcome { version: 1 },
            ServerFrame::Sent { client_id: 3, id: 300 },
            ServerFrame::SendFailed { client_id: 3, error: ErrorCode::Rejected, reason: "no".into() },
            ServerFrame::Message { id: 1, from: "+1".into(), sent_at_ms: 5, body: b"hi".to_vec() },
            ServerFrame::Receipt { id: 2, message_id: 1, by: "+2".into(), status: ReceiptStatus::Read, at_ms: 6 },
            ServerFrame::Error { error: ErrorCode::WrongCode, reason: "wrong code".into() },
            ServerFrame::CommandResult { request_id: 9, ok: true, output: "added".into() },
        ]);
    }

    #[test]
    fn documented_bytes_of_a_send_frame() {
        // docs/protocol.md shows this exact example; keep them in step.
        let bytes = encode(&ClientFrame::Send { client_id: 300, to: "+1555".into(), body: b"hi".to_vec() });
        assert_eq!(
            bytes,
            [0, 0, 0, 12, 4, 0xAC, 0x02, 5, b'+', b'1', b'5', b'5', b'5', 2, b'h', b'i']
        );
    }

    #[test]
    fn oversized_prefix_is_refused_before_the_payload_arrives() {
        let mut dec = FrameDecoder::new();
        dec.extend(&(MAX_FRAME_LEN + 1).to_be_bytes());
        assert_eq!(dec.next_frame::<ClientFrame>(), Err(FrameError::TooLarge(MAX_FRAME_LEN + 1)));
    }

    #[test]
    fn garbage_unknown_variants_and_trailing_bytes_are_malformed() {
        for payload in [vec![200u8], vec![0xFF, 0xFF, 0xFF], vec![7, 1, 0]] {
            let mut dec = FrameDecoder::new();
            dec.extend(&(payload.len() as u32).to_be_bytes());
            dec.extend(&payload);
            assert!(matches!(dec.next_frame::<ClientFrame>(), Err(FrameError::Malformed(_))), "{payload:?}");
        }
    }
}
