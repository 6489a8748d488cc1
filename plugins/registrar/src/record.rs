//! What the registrar keeps per phone number — the pending code and recent code requests —
//! and its byte encoding in the key-value store.
//!
//! Encoding (little-endian): version `1`; `1` + code `u32` + expires-at `u64` + attempts-left
//! `u8`, or `0` for no code; number of requests `u8`; that many request times `u64`.

/// A code waiting to be sent back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingCode {
    pub code: u32,
    /// Unix ms after which the code no longer works.
    pub expires_at_ms: u64,
    pub attempts_left: u8,
}

/// Everything stored for one number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub code: Option<PendingCode>,
    /// When codes were requested (Unix ms), oldest first; only the last hour's are kept.
    pub requests: Vec<u64>,
}

const VERSION: u8 = 1;

impl Record {
    /// Whether there is nothing worth storing.
    pub fn is_empty(&self) -> bool {
        self.code.is_none() && self.requests.is_empty()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 8 * self.requests.len());
        out.push(VERSION);
        match &self.code {
            Some(c) => {
                out.push(1);
                out.extend_from_slice(&c.code.to_le_bytes());
                out.extend_from_slice(&c.expires_at_ms.to_le_bytes());
                out.push(c.attempts_left);
            }
            None => out.push(0),
        }
        // At most 255 request times; the caller keeps far fewer (the hourly limit).
        let requests = &self.requests[self.requests.len().saturating_sub(255)..];
        out.push(requests.len() as u8);
        for t in requests {
            out.extend_from_slice(&t.to_le_bytes());
        }
        out
    }

    /// Decodes what [`Record::encode`] wrote; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Record> {
        let mut r = Reader(bytes);
        if r.u8()? != VERSION {
            return None;
        }
        let code = match r.u8()? {
            0 => None,
            1 => Some(PendingCode {
                code: u32::from_le_bytes(r.take()?),
                expires_at_ms: u64::from_le_bytes(r.take()?),
                attempts_left: r.u8()?,
            }),
            _ => return None,
        };
        let n = r.u8()?;
        let requests = (0..n)
            .map(|_| r.take().map(u64::from_le_bytes))
            .collect::<Option<Vec<u64>>>()?;
        r.0.is_empty().then_some(Record { code, requests })
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[b]| b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for rec in [
            Record::default(),
            Record {
                code: Some(PendingCode {
                    code: 12345,
                    expires_at_ms: 1_704_067_800_000,
                    attempts_left: 5,
                }),
                requests: vec![1, 2, u64::MAX],
            },
            Record {
                code: None,
                requests: vec![7],
            },
        ] {
            assert_eq!(Record::decode(&rec.encode()), Some(rec));
        }
    }

    #[test]
    fn rejects_garbage() {
        let good = Record {
            code: Some(PendingCode {
                code: 1,
                expires_at_ms: 2,
                attempts_left: 3,
            }),
            requests: vec![4],
        }
        .encode();
        assert_eq!(Record::decode(&[]), None);
        assert_eq!(Record::decode(&[2, 0, 0]), None); // unknown version
        assert_eq!(Record::decode(&[1, 9, 0]), None); // bad code tag
        assert_eq!(Record::decode(&good[..good.len() - 1]), None); // truncated
        let mut long = good.clone();
        long.push(0);
        assert_eq!(Record::decode(&long), None); // trailing bytes
    }
}
