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
    /// The payload is not a valid frame; the text says why in words (e.g. "unknown frame
    /// type 200", "the Send frame ends before its fields do").
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

/// Decodes a frame payload (without its length prefix). Trailing bytes are an error. A
/// payload that is not a frame is described in words ([`FrameError::Malformed`]): which
/// frame type, and what about it is wrong.
pub fn decode_body<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    match postcard::take_from_bytes::<T>(payload) {
        Ok((frame, [])) => Ok(frame),
        Ok((_, [_])) => Err(FrameError::Malformed("1 byte after the end of the frame".into())),
        Ok((_, rest)) => Err(FrameError::Malformed(format!("{} bytes after the end of the frame", rest.len()))),
        Err(e) => Err(FrameError::Malformed(describe::<T>(payload, e))),
    }
}

/// What is wrong with `payload`, which postcard refused with `error`, in words.
fn describe<T: DeserializeOwned>(payload: &[u8], error: postcard::Error) -> String {
    use postcard::Error as E;
    if payload.is_empty() {
        return "the frame is empty (it has no frame type)".into();
    }
    let Some(kind) = leading_varint(payload) else {
        return "the frame type is not a valid varint".into();
    };
    let variants = variant_names::<T>();
    let name = match variants.get(kind as usize) {
        Some(name) => *name,
        None if variants.is_empty() => "the",
        None => return format!("unknown frame type {kind} (known: 0 to {})", variants.len() - 1),
    };
    match error {
        E::DeserializeUnexpectedEnd => format!("the {name} frame ends before its fields do"),
        E::DeserializeBadUtf8 => format!("a text field of the {name} frame is not valid UTF-8"),
        E::DeserializeBadVarint => format!("a number or length in the {name} frame is not a valid varint"),
        E::DeserializeBadBool => format!("a true/false field of the {name} frame is neither 0 nor 1"),
        E::DeserializeBadEnum | E::SerdeDeCustom => {
            format!("a field of the {name} frame has an unknown value (an error code, receipt status or message kind out of range)")
        }
        other => format!("the {name} frame is not valid ({other})"),
    }
}

/// The postcard varint (u32) at the start of `bytes`: an enum's variant index.
fn leading_varint(bytes: &[u8]) -> Option<u32> {
    let mut value: u64 = 0;
    for (i, byte) in bytes.iter().take(5).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return u32::try_from(value).ok();
        }
    }
    None
}

/// The variant names of enum `T` as serde knows them (empty if `T` is not an enum).
fn variant_names<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut probe = VariantProbe(&[]);
    let _ = T::deserialize(&mut probe);
    probe.0
}

/// A serde deserializer that only records the variant list an enum asks for, then stops.
struct VariantProbe(&'static [&'static str]);

#[derive(Debug)]
struct ProbeStop;

impl std::fmt::Display for ProbeStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("probe stop")
    }
}

impl std::error::Error for ProbeStop {}

impl serde::de::Error for ProbeStop {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        ProbeStop
    }
}

impl<'de> serde::Deserializer<'de> for &mut VariantProbe {
    type Error = ProbeStop;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeStop> {
        Err(ProbeStop)
    }

    fn deserialize_enum<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, ProbeStop> {
        self.0 = variants;
        Err(ProbeStop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}

/// Buffer capacity a [`FrameDecoder`] keeps once everything in it was decoded.
const KEPT_CAPACITY: usize = 16 * 1024;

/// Incremental frame parser over a byte stream. Frames are decoded where they lie in the
/// buffer: taking a frame only advances an offset, and the unread rest is moved to the
/// front only when new bytes arrive and the consumed part is at least as long as the rest,
/// so every byte is moved at most about once.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Start of the bytes not yet returned as part of a frame.
    start: usize,
    /// Bytes moved by compaction so far (for the test that decoding is linear).
    moved: usize,
}

impl FrameDecoder {
    /// A decoder with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the stream.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.start == self.buf.len() {
            // Everything was decoded: a buffer grown for a large frame goes back to the
            // allocator rather than stay with an idle connection.
            if self.buf.capacity() > KEPT_CAPACITY {
                self.buf = Vec::new();
            }
            self.buf.clear();
            self.start = 0;
        } else if self.start > 0 && self.start >= self.buf.len() - self.start {
            self.moved += self.buf.len() - self.start;
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The length announced by a complete prefix in the buffer, checked against the limit.
    /// Lets a reader refuse an oversized frame before its bytes arrive.
    pub fn announced_len(&self) -> Result<Option<u32>, FrameError> {
        let rest = &self.buf[self.start..];
        if rest.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap());
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
        let end = self.start + 4 + len as usize;
        if self.buf.len() < end {
            return Ok(None);
        }
        let frame = decode_body(&self.buf[self.start + 4..end]);
        self.start = end;
        frame.map(Some)
    }

    /// Bytes buffered but not yet part of a returned frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{is_mime_type, is_push_token, ClientFrame, ErrorCode, MessageKind, ReceiptStatus, ServerFrame, MAX_PUSH_TOKEN_LEN};

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
            ClientFrame::SendTyped { client_id: 1, to: "+1555".into(), kind: MessageKind::Text, body: vec![] },
            ClientFrame::SendTyped { client_id: 2, to: "#t".into(), kind: MessageKind::Media { mime: "image/png".into() }, body: vec![1] },
            ClientFrame::SetPushToken { token: "apns:0a1b".into() },
            ClientFrame::SetPushToken { token: String::new() },
        ]);
        roundtrip_all(vec![
            ServerFrame::Welcome { version: 1 },
            ServerFrame::Sent { client_id: 3, id: 300 },
            ServerFrame::SendFailed { client_id: 3, error: ErrorCode::Rejected, reason: "no".into() },
            ServerFrame::Message { id: 1, from: "+1".into(), sent_at_ms: 5, body: b"hi".to_vec() },
            ServerFrame::Receipt { id: 2, message_id: 1, by: "+2".into(), status: ReceiptStatus::Read, at_ms: 6 },
            ServerFrame::Error { error: ErrorCode::WrongCode, reason: "wrong code".into() },
            ServerFrame::CommandResult { request_id: 9, ok: true, output: "added".into() },
            ServerFrame::SendFailed { client_id: 4, error: ErrorCode::QueueFull, reason: "full".into() },
            ServerFrame::TypedMessage { id: 1, from: "+1".into(), sent_at_ms: 5, kind: MessageKind::Text, body: b"hi".to_vec() },
            ServerFrame::TypedMessage { id: 2, from: "+1".into(), sent_at_ms: 5, kind: MessageKind::Media { mime: "audio/ogg".into() }, body: vec![] },
            ServerFrame::PushTokenSet,
        ]);
    }

    #[test]
    fn a_buffer_grown_for_a_large_frame_is_given_back_once_it_is_decoded() {
        // An idle connection keeps no more than KEPT_CAPACITY for its last large message.
        let mut dec = FrameDecoder::new();
        let big = encode(&ClientFrame::Send { client_id: 1, to: "+1555".into(), body: vec![7; 200_000] });
        dec.extend(&big);
        assert!(matches!(dec.next_frame::<ClientFrame>().unwrap(), Some(ClientFrame::Send { body, .. }) if body.len() == 200_000));
        assert!(dec.buf.capacity() >= 200_000);
        let small = encode(&ClientFrame::Ping { nonce: 1 });
        dec.extend(&small);
        assert!(dec.buf.capacity() <= KEPT_CAPACITY, "kept {} bytes", dec.buf.capacity());
        assert_eq!(dec.next_frame::<ClientFrame>().unwrap(), Some(ClientFrame::Ping { nonce: 1 }));
        // A buffer of at most KEPT_CAPACITY is kept and reused.
        let medium = encode(&ClientFrame::Send { client_id: 2, to: "+1555".into(), body: vec![1; 4_000] });
        dec.extend(&medium);
        dec.next_frame::<ClientFrame>().unwrap().unwrap();
        let kept = dec.buf.capacity();
        dec.extend(&small);
        assert_eq!(dec.buf.capacity(), kept);
    }

    #[test]
    fn queue_full_is_error_code_8_of_version_2() {
        // docs/protocol.md §4.4 and §5: appended, so every earlier code keeps its index.
        let bytes = encode(&ServerFrame::SendFailed { client_id: 300, error: ErrorCode::QueueFull, reason: "big".into() });
        assert_eq!(bytes, [0, 0, 0, 8, 5, 0xAC, 0x02, 8, 3, b'b', b'i', b'g']);
        let retryable = encode(&ServerFrame::SendFailed { client_id: 300, error: ErrorCode::Retryable, reason: "big".into() });
        assert_eq!(retryable[7], 7);
        assert_eq!(ErrorCode::QueueFull.since_version(), 2);
        assert_eq!(ErrorCode::RateLimited.since_version(), 1);
        assert!(ErrorCode::QueueFull.is_retryable());
        // A version-1 decoder (one that knows codes 0 to 7) would refuse index 8: the
        // reference decoder knows it, and refuses 9.
        assert_eq!(
            malformed::<ServerFrame>(&[5, 1, 9, 0]),
            "a field of the SendFailed frame has an unknown value (an error code, receipt status or message kind out of range)"
        );
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
    fn documented_bytes_of_version_3_frames() {
        // docs/protocol.md §5 shows these exact examples; keep them in step.
        let png = || MessageKind::Media { mime: "image/png".into() };
        let send = encode(&ClientFrame::SendTyped { client_id: 300, to: "+1555".into(), kind: png(), body: b"hi".to_vec() });
        let mut expected = vec![0, 0, 0, 23, 9, 0xAC, 0x02, 5, b'+', b'1', b'5', b'5', b'5', 1, 9];
        expected.extend(b"image/png");
        expected.extend([2, b'h', b'i']);
        assert_eq!(send, expected);
        let text = encode(&ClientFrame::SendTyped { client_id: 300, to: "+1555".into(), kind: MessageKind::Text, body: b"hi".to_vec() });
        assert_eq!(text, [0, 0, 0, 13, 9, 0xAC, 0x02, 5, b'+', b'1', b'5', b'5', b'5', 0, 2, b'h', b'i']);

        let from = b"+15551230001";
        let sent_at = [0x80, 0xD0, 0x95, 0xFF, 0xBC, 0x31]; // 1700000000000
        let typed = encode(&ServerFrame::TypedMessage { id: 1, from: "+15551230001".into(), sent_at_ms: 1_700_000_000_000, kind: png(), body: b"hi".to_vec() });
        let mut expected = vec![0, 0, 0, 35, 11, 1, 12];
        expected.extend(from);
        expected.extend(sent_at);
        expected.extend([1, 9]);
        expected.extend(b"image/png");
        expected.extend([2, b'h', b'i']);
        assert_eq!(typed, expected);

        // Versions 1 and 2 keep their bytes: `Message` is unchanged (§5's example).
        let message = encode(&ServerFrame::Message { id: 1, from: "+15551230001".into(), sent_at_ms: 1_700_000_000_000, body: b"hi".to_vec() });
        let mut expected = vec![0, 0, 0, 24, 6, 1, 12];
        expected.extend(from);
        expected.extend(sent_at);
        expected.extend([2, b'h', b'i']);
        assert_eq!(message, expected);

        assert_eq!(ClientFrame::SendTyped { client_id: 1, to: String::new(), kind: MessageKind::Text, body: vec![] }.since_version(), 3);
        assert_eq!(ClientFrame::Send { client_id: 1, to: String::new(), body: vec![] }.since_version(), 1);
        // A kind out of range is malformed, in words.
        assert_eq!(
            malformed::<ClientFrame>(&[9, 1, 0, 2, 0]),
            "a field of the SendTyped frame has an unknown value (an error code, receipt status or message kind out of range)"
        );
    }

    #[test]
    fn documented_bytes_of_version_4_frames() {
        // docs/protocol.md §5 shows these exact examples; keep them in step.
        let set = encode(&ClientFrame::SetPushToken { token: "fcm:abc".into() });
        assert_eq!(set, [0, 0, 0, 9, 10, 7, b'f', b'c', b'm', b':', b'a', b'b', b'c']);
        let clear = encode(&ClientFrame::SetPushToken { token: String::new() });
        assert_eq!(clear, [0, 0, 0, 2, 10, 0]);
        // The longest token: its length is the two-byte varint 80 20.
        let longest = encode(&ClientFrame::SetPushToken { token: "a".repeat(MAX_PUSH_TOKEN_LEN) });
        assert_eq!(longest[..7], [0, 0, 0x10, 0x03, 10, 0x80, 0x20]);
        assert_eq!(longest.len(), 4 + 3 + 4096);
        assert_eq!(encode(&ServerFrame::PushTokenSet), [0, 0, 0, 1, 12]);
        assert_eq!(ClientFrame::SetPushToken { token: String::new() }.since_version(), 4);
        assert_eq!(ClientFrame::SetPushToken { token: String::new() }.name(), "SetPushToken");
        assert_eq!(ServerFrame::PushTokenSet.name(), "PushTokenSet");
        assert_eq!(crate::PROTOCOL_VERSION, 4);
        // Earlier frames keep their bytes (the version-3 test pins them).
        assert_eq!(encode(&ServerFrame::Welcome { version: 4 }), [0, 0, 0, 2, 0, 4]);
    }

    #[test]
    fn push_tokens_are_at_most_4096_bytes_without_control_characters() {
        for good in ["", "0a1b2c", "fcm:APA91bH-x_y", "ünïcödé token with spaces", &"x".repeat(MAX_PUSH_TOKEN_LEN)] {
            assert!(is_push_token(good), "{good:?}");
        }
        let long = "x".repeat(MAX_PUSH_TOKEN_LEN + 1);
        for bad in [long.as_str(), "a\nb", "tab\t", "nul\0", "del\u{7f}", "c1\u{85}"] {
            assert!(!is_push_token(bad), "{bad:?}");
        }
        // 4096 bytes, not characters: 2049 two-byte characters are too many.
        assert!(!is_push_token(&"é".repeat(2049)) && is_push_token(&"é".repeat(2048)));
    }

    #[test]
    fn mime_types_are_type_slash_subtype_of_token_characters() {
        for good in ["image/png", "video/mp4", "application/vnd.api+json", "audio/x-wav", "a/b", "text/plain", "image/svg+xml"] {
            assert!(is_mime_type(good), "{good}");
            assert!(MessageKind::Media { mime: good.into() }.is_valid());
        }
        let long = format!("image/{}", "x".repeat(122));
        assert!(!is_mime_type(&long) && is_mime_type(&long[..127]));
        for bad in ["", "image", "image/", "/png", "image/png/x", "image/png; charset=x", "image /png", "-image/png", "image/.png", "imäge/png", "image\n/png"] {
            assert!(!is_mime_type(bad), "{bad:?}");
            assert!(!MessageKind::Media { mime: bad.into() }.is_valid());
        }
        assert!(MessageKind::Text.is_valid());
        assert_eq!(MessageKind::Media { mime: "image/png".into() }.label(), "media:image/png");
    }

    #[test]
    fn oversized_prefix_is_refused_before_the_payload_arrives() {
        let mut dec = FrameDecoder::new();
        dec.extend(&(MAX_FRAME_LEN + 1).to_be_bytes());
        assert_eq!(dec.next_frame::<ClientFrame>(), Err(FrameError::TooLarge(MAX_FRAME_LEN + 1)));
    }

    fn malformed<T: DeserializeOwned + std::fmt::Debug>(payload: &[u8]) -> String {
        let mut dec = FrameDecoder::new();
        dec.extend(&(payload.len() as u32).to_be_bytes());
        dec.extend(payload);
        match dec.next_frame::<T>() {
            Err(FrameError::Malformed(words)) => words,
            other => panic!("{payload:?} gave {other:?}"),
        }
    }

    #[test]
    fn malformed_frames_are_described_in_words() {
        let send = encode(&ClientFrame::Send { client_id: 300, to: "+1555".into(), body: b"hi".to_vec() });
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![200, 1], "unknown frame type 200 (known: 0 to 10)"),
            (vec![0xFF, 0xFF, 0x7F], "unknown frame type 2097151 (known: 0 to 10)"),
            (vec![0xFF, 0xFF, 0xFF], "the frame type is not a valid varint"),
            (vec![0xFF; 6], "the frame type is not a valid varint"),
            (vec![], "the frame is empty (it has no frame type)"),
            (send[4..10].to_vec(), "the Send frame ends before its fields do"),
            (vec![1, 2, 0xC3, 0x28], "a text field of the RequestCode frame is not valid UTF-8"),
            (vec![5, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], "a number or length in the Ack frame is not a valid varint"),
            (vec![7, 1, 0], "1 byte after the end of the frame"),
            ([&send[4..], &[0, 0][..]].concat(), "2 bytes after the end of the frame"),
            // The examples of docs/protocol.md §5.
            (vec![0x0b], "unknown frame type 11 (known: 0 to 10)"),
            (vec![0x0a], "the SetPushToken frame ends before its fields do"),
            (vec![0x08, 0x01], "the Command frame ends before its fields do"),
            (vec![0x05, 0x80], "the Ack frame ends before its fields do"),
            (vec![0x01, 0x02, 0xff, 0xfe], "a text field of the RequestCode frame is not valid UTF-8"),
        ];
        for (payload, words) in cases {
            assert_eq!(malformed::<ClientFrame>(&payload), words, "{payload:?}");
        }
        // Fields of the broker's frames too: an error code out of range, a bad bool.
        assert_eq!(
            malformed::<ServerFrame>(&[8, 42, 0]),
            "a field of the Error frame has an unknown value (an error code, receipt status or message kind out of range)"
        );
        assert_eq!(malformed::<ServerFrame>(&[10, 1, 2, 0]), "a true/false field of the CommandResult frame is neither 0 nor 1");
        assert_eq!(malformed::<ServerFrame>(&[13]), "unknown frame type 13 (known: 0 to 12)");
        // The words reach the error's text (what the broker's close reason carries).
        let error = FrameError::Malformed(malformed::<ClientFrame>(&[200, 1]));
        assert_eq!(error.to_string(), "malformed frame: unknown frame type 200 (known: 0 to 10)");
    }

    #[test]
    fn frames_are_decoded_in_place_without_shifting_the_buffer() {
        let frame = ClientFrame::Ack { id: 7 };
        let one = encode(&frame);
        // Many frames in one read: none of them moves the rest of the buffer.
        let mut dec = FrameDecoder::new();
        dec.extend(&one.repeat(10_000));
        for _ in 0..10_000 {
            assert_eq!(dec.next_frame::<ClientFrame>().unwrap(), Some(frame.clone()));
        }
        assert_eq!(dec.next_frame::<ClientFrame>().unwrap(), None);
        assert_eq!(dec.moved, 0, "decoding shifted the buffer");
        assert_eq!(dec.buffered(), 0);

        // Reads that cut frames anywhere: every byte is moved at most about once overall.
        let mut dec = FrameDecoder::new();
        let stream = one.repeat(10_000);
        let mut taken = 0;
        for chunk in stream.chunks(1000 - 3) {
            dec.extend(chunk);
            while let Some(f) = dec.next_frame::<ClientFrame>().unwrap() {
                assert_eq!(f, frame);
                taken += 1;
            }
        }
        assert_eq!(taken, 10_000);
        assert!(dec.moved <= stream.len() / 100, "moved {} bytes for {} fed", dec.moved, stream.len());
    }
}
