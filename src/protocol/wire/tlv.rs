//! BigSize integers and TLV streams, with BOLT 1's rules, and the fixed-size values records
//! carry.

use bitcoin::hashes::Hash as _;
use bitcoin::{OutPoint, Txid};

use super::WireError;
use crate::crypto::adaptor::{AdaptorPoint, EncryptedSignature};
use crate::crypto::keys::{PublicKey, Signature};
use crate::crypto::nonce::PublicNonce;
use crate::protocol::messages::{ChannelId, RevealedSecret};

/// Appends `value` as a BigSize: one byte below 0xfd, else a marker byte (0xfd, 0xfe, 0xff)
/// then the value as a big-endian u16, u32 or u64 — always the shortest form.
pub fn write_bigsize(out: &mut Vec<u8>, value: u64) {
    match value {
        0..=0xfc => out.push(value as u8),
        0xfd..=0xffff => {
            out.push(0xfd);
            out.extend_from_slice(&(value as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xfe);
            out.extend_from_slice(&(value as u32).to_be_bytes());
        }
        _ => {
            out.push(0xff);
            out.extend_from_slice(&value.to_be_bytes());
        }
    }
}

/// Reads a BigSize off the front of `input` and advances past it. A value written in a
/// longer form than it needs is refused: each number has exactly one encoding.
pub fn read_bigsize(input: &mut &[u8], field: &'static str) -> Result<u64, WireError> {
    let (&first, rest) = input.split_first().ok_or(WireError::Truncated {
        field,
        needed: 1,
        available: 0,
    })?;
    let (width, least) = match first {
        0xfd => (2, 0xfd),
        0xfe => (4, 0x1_0000),
        0xff => (8, 0x1_0000_0000),
        small => {
            *input = rest;
            return Ok(u64::from(small));
        }
    };
    if rest.len() < width {
        return Err(WireError::Truncated {
            field,
            needed: width,
            available: rest.len(),
        });
    }
    let (digits, rest) = rest.split_at(width);
    let value = digits
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    if value < least {
        return Err(WireError::NonMinimalBigSize { field, value });
    }
    *input = rest;
    Ok(value)
}

/// Builds a TLV stream: records in strictly increasing type order.
#[derive(Debug, Default)]
pub struct TlvWriter {
    out: Vec<u8>,
    last: Option<u64>,
}

impl TlvWriter {
    /// An empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// A stream that follows `prefix` (a message type) in the same buffer.
    pub fn with_prefix(prefix: &[u8]) -> Self {
        Self {
            out: prefix.to_vec(),
            last: None,
        }
    }

    /// Appends one record.
    ///
    /// # Panics
    ///
    /// If `record_type` is not above the type of the record before: the encoders write
    /// their records in a fixed order, so this is a bug in the encoder, never peer input.
    pub fn record(&mut self, record_type: u64, value: &[u8]) -> &mut Self {
        assert!(
            self.last.is_none_or(|last| record_type > last),
            "tlv records must be written in strictly increasing type order"
        );
        self.last = Some(record_type);
        write_bigsize(&mut self.out, record_type);
        write_bigsize(&mut self.out, value.len() as u64);
        self.out.extend_from_slice(value);
        self
    }

    /// Appends a record holding one fixed-size value.
    pub(crate) fn field<T: Field>(&mut self, record_type: u64, value: &T) -> &mut Self {
        let mut bytes = Vec::with_capacity(66);
        value.put(&mut bytes);
        self.record(record_type, &bytes)
    }

    /// Appends a record holding a nested stream built by `build`.
    pub(crate) fn nested(
        &mut self,
        record_type: u64,
        build: impl FnOnce(&mut TlvWriter),
    ) -> &mut Self {
        let mut inner = TlvWriter::new();
        build(&mut inner);
        self.record(record_type, &inner.out)
    }

    /// The bytes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.out
    }
}

/// Reads a TLV stream, checking BOLT 1's rules: types and lengths minimally encoded, types
/// strictly increasing (so no type twice), no length beyond the input left, unknown even
/// types refused and unknown odd types skipped.
///
/// A decoder asks for the records it knows in increasing type order ([`TlvReader::record`])
/// and ends with [`TlvReader::finish`], which checks the records after the last one it
/// asked for. The message decoders start from [`TlvReader::checked`], so that a stream
/// that breaks the rules is refused as such before any of its fields is looked at (a record
/// out of order is reported as out of order, not as the field it hides being missing).
/// Nothing is allocated; values borrow the input.
///
/// ```
/// use asyncpay::protocol::wire::{TlvReader, TlvWriter, WireError};
///
/// let mut w = TlvWriter::new();
/// w.record(0, b"required").record(3, b"optional").record(300, &[7; 2]);
/// let bytes = w.into_bytes();
/// assert_eq!(&bytes[..2], &[0x00, 0x08]); // type 0, length 8
///
/// // A reader that knows records 0 and 300 skips the odd record 3 it does not know.
/// let mut r = TlvReader::new("example", &bytes);
/// assert_eq!(r.record(0)?, Some(&b"required"[..]));
/// assert_eq!(r.record(300)?, Some(&[7u8, 7][..]));
/// r.finish()?;
///
/// // A reader that knows only record 300 refuses the even record 0 it does not know.
/// let mut r = TlvReader::new("example", &bytes);
/// assert_eq!(
///     r.record(300),
///     Err(WireError::UnknownEvenRecord { stream: "example", record_type: 0 })
/// );
/// # Ok::<(), WireError>(())
/// ```
#[derive(Debug, Clone)]
pub struct TlvReader<'a> {
    rest: &'a [u8],
    stream: &'static str,
    last: Option<u64>,
    peeked: Option<(u64, &'a [u8])>,
}

impl<'a> TlvReader<'a> {
    /// A reader of `bytes`; `stream` names the message or nested value in errors.
    pub fn new(stream: &'static str, bytes: &'a [u8]) -> Self {
        Self {
            rest: bytes,
            stream,
            last: None,
            peeked: None,
        }
    }

    /// A reader of `bytes` once a first pass found that the whole stream keeps the rules of
    /// its form: BigSizes minimal, types strictly increasing, no length beyond the input.
    pub fn checked(stream: &'static str, bytes: &'a [u8]) -> Result<Self, WireError> {
        let mut pass = Self::new(stream, bytes);
        while pass.next_record()?.is_some() {}
        Ok(Self::new(stream, bytes))
    }

    /// The next record, whatever its type, or `None` at the end of the stream.
    pub fn next_record(&mut self) -> Result<Option<(u64, &'a [u8])>, WireError> {
        if let Some(record) = self.peeked.take() {
            return Ok(Some(record));
        }
        if self.rest.is_empty() {
            return Ok(None);
        }
        let mut input = self.rest;
        let record_type = read_bigsize(&mut input, "record type")?;
        match self.last {
            Some(previous) if record_type == previous => {
                return Err(WireError::Duplicate {
                    stream: self.stream,
                    record_type,
                })
            }
            Some(previous) if record_type < previous => {
                return Err(WireError::OutOfOrder {
                    stream: self.stream,
                    previous,
                    found: record_type,
                })
            }
            _ => {}
        }
        let length = read_bigsize(&mut input, "record length")?;
        let value_len = usize::try_from(length)
            .ok()
            .filter(|len| *len <= input.len())
            .ok_or(WireError::LengthBeyondInput {
                stream: self.stream,
                record_type,
                length,
                available: input.len(),
            })?;
        let (value, rest) = input.split_at(value_len);
        self.rest = rest;
        self.last = Some(record_type);
        Ok(Some((record_type, value)))
    }

    /// The value of the record of type `record_type`, if the stream has one. Records of
    /// lower types not asked for before are unknown to the caller: odd ones are skipped,
    /// an even one is refused. Ask in increasing type order.
    pub fn record(&mut self, record_type: u64) -> Result<Option<&'a [u8]>, WireError> {
        while let Some((found, value)) = self.next_record()? {
            if found == record_type {
                return Ok(Some(value));
            }
            if found > record_type {
                self.peeked = Some((found, value));
                return Ok(None);
            }
            self.unknown(found)?;
        }
        Ok(None)
    }

    /// Checks the records no one asked for: all must be odd.
    pub fn finish(mut self) -> Result<(), WireError> {
        while let Some((found, _)) = self.next_record()? {
            self.unknown(found)?;
        }
        Ok(())
    }

    fn unknown(&self, record_type: u64) -> Result<(), WireError> {
        if record_type % 2 == 0 {
            return Err(WireError::UnknownEvenRecord {
                stream: self.stream,
                record_type,
            });
        }
        Ok(())
    }

    /// The value of a record the stream must have.
    fn required_bytes(
        &mut self,
        record_type: u64,
        field: &'static str,
    ) -> Result<&'a [u8], WireError> {
        self.record(record_type)?.ok_or(WireError::Missing {
            stream: self.stream,
            field,
        })
    }

    /// A required fixed-size field.
    pub(crate) fn required<T: Field>(
        &mut self,
        record_type: u64,
        field: &'static str,
    ) -> Result<T, WireError> {
        T::get(field, self.required_bytes(record_type, field)?)
    }

    /// A required nested stream, to be read and finished by the caller.
    pub(crate) fn required_nested(
        &mut self,
        record_type: u64,
        field: &'static str,
    ) -> Result<TlvReader<'a>, WireError> {
        TlvReader::checked(field, self.required_bytes(record_type, field)?)
    }

    /// An optional nested stream.
    pub(crate) fn optional_nested(
        &mut self,
        record_type: u64,
        field: &'static str,
    ) -> Result<Option<TlvReader<'a>>, WireError> {
        self.record(record_type)?
            .map(|bytes| TlvReader::checked(field, bytes))
            .transpose()
    }

    /// A required UTF-8 text of at most `max` bytes (the record holds the bytes only).
    pub(crate) fn text(
        &mut self,
        record_type: u64,
        field: &'static str,
        max: usize,
    ) -> Result<String, WireError> {
        let bytes = self.required_bytes(record_type, field)?;
        if bytes.len() > max {
            return Err(WireError::TooLong {
                field,
                len: bytes.len(),
                max,
            });
        }
        let text = core::str::from_utf8(bytes).map_err(|_| WireError::InvalidField {
            field,
            reason: "not utf-8",
        })?;
        Ok(text.to_owned())
    }
}

/// `text` cut at a character boundary to at most `max` bytes: encoding an over-long text
/// would produce bytes our own decoder refuses.
pub(crate) fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A value held whole in one record, in its canonical fixed-size form. Decoding checks the
/// length exactly and makes the checks the value's own parser makes.
pub(crate) trait Field: Sized {
    /// Appends the canonical form.
    fn put(&self, out: &mut Vec<u8>);
    /// Parses exactly `bytes`.
    fn get(field: &'static str, bytes: &[u8]) -> Result<Self, WireError>;
}

/// `bytes` as an array of exactly `N` bytes.
pub(crate) fn exact<const N: usize>(
    field: &'static str,
    bytes: &[u8],
) -> Result<[u8; N], WireError> {
    bytes.try_into().map_err(|_| WireError::WrongLength {
        field,
        expected: N,
        found: bytes.len(),
    })
}

impl<const N: usize> Field for [u8; N] {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
    fn get(field: &'static str, bytes: &[u8]) -> Result<Self, WireError> {
        exact(field, bytes)
    }
}

macro_rules! big_endian_field {
    ($($t:ty),*) => {$(
        impl Field for $t {
            fn put(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes());
            }
            fn get(field: &'static str, bytes: &[u8]) -> Result<Self, WireError> {
                Ok(<$t>::from_be_bytes(exact(field, bytes)?))
            }
        }
    )*};
}

big_endian_field!(u8, u16, u32, u64);

impl Field for ChannelId {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
    fn get(field: &'static str, bytes: &[u8]) -> Result<Self, WireError> {
        Ok(ChannelId(exact(field, bytes)?))
    }
}

impl Field for RevealedSecret {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
    fn get(field: &'static str, bytes: &[u8]) -> Result<Self, WireError> {
        Ok(RevealedSecret(exact(field, bytes)?))
    }
}

impl Field for PublicKey {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_xonly_bytes());
    }
    fn get(field: &'static str, bytes: &[u8]) -> Result<Self, WireError> {
        PublicKey::from_xonly_bytes(exact(field, bytes)?).map_err(|_| WireError::InvalidField {
            field,
            reason: "not an x-only curve point",
        })
    }
}

impl Field for PublicNonce {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_xonly_bytes());
    }
    fn get(field: &'static str, bytes: &[u8]) -> Result<Self, WireError> {
        // Not lifted to a point here: a nonce is compared and hashed, and checked as a point
        // where it is priced (`PublicNonce::lift`).
        Ok(PublicNonce::from_xonly_bytes(exact(field, bytes)?))
    }
}

impl Field for Signature {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }
    fn get(field: &'static str, bytes: &[u8]) -> Result<Self, WireError> {
        Signature::from_bytes(exact(field, bytes)?).map_err(|_| WireError::InvalidField {
            field,
            reason: "not a bip340 signature encoding",
        })
    }
}

impl Field for AdaptorPoint {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }
    fn get(field: &'static str, bytes: &[u8]) -> Result<Self, WireError> {
        AdaptorPoint::from_bytes(exact(field, bytes)?).map_err(|_| WireError::InvalidField {
            field,
            reason: "not a compressed curve point",
        })
    }
}

impl Field for EncryptedSignature {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }
    fn get(field: &'static str, bytes: &[u8]) -> Result<Self, WireError> {
        EncryptedSignature::from_bytes(&exact(field, bytes)?).map_err(|_| WireError::InvalidField {
            field,
            reason: "not an encrypted signature encoding",
        })
    }
}

/// The txid's 32 bytes (in the order `Txid::as_byte_array` holds them), then the output
/// index as a big-endian u32.
impl Field for OutPoint {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.txid.as_byte_array());
        out.extend_from_slice(&self.vout.to_be_bytes());
    }
    fn get(field: &'static str, bytes: &[u8]) -> Result<Self, WireError> {
        let bytes: [u8; 36] = exact(field, bytes)?;
        let (txid, vout) = bytes.split_at(32);
        Ok(OutPoint {
            txid: Txid::from_byte_array(exact(field, txid)?),
            vout: u32::from_be_bytes(exact(field, vout)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BOLT 1, appendix A: every BigSize vector decodes to its value and encodes back to
    /// its bytes; the non-canonical and short ones are refused.
    #[test]
    fn bigsize_matches_the_bolt_1_vectors() {
        let valid: [(u64, &str); 8] = [
            (0, "00"),
            (252, "fc"),
            (253, "fd00fd"),
            (65535, "fdffff"),
            (65536, "fe00010000"),
            (4294967295, "feffffffff"),
            (4294967296, "ff0000000100000000"),
            (u64::MAX, "ffffffffffffffffff"),
        ];
        for (value, hex_bytes) in valid {
            let bytes = hex::decode(hex_bytes).unwrap();
            let mut input = &bytes[..];
            assert_eq!(read_bigsize(&mut input, "v"), Ok(value));
            assert!(input.is_empty());
            let mut out = vec![];
            write_bigsize(&mut out, value);
            assert_eq!(out, bytes);
        }
        for hex_bytes in ["fd00fc", "fe0000ffff", "ff00000000ffffffff"] {
            let bytes = hex::decode(hex_bytes).unwrap();
            assert!(matches!(
                read_bigsize(&mut &bytes[..], "v"),
                Err(WireError::NonMinimalBigSize { field: "v", .. })
            ));
        }
        for hex_bytes in ["fd00", "feffff", "ffffffffff", "", "fd", "fe", "ff"] {
            let bytes = hex::decode(hex_bytes).unwrap();
            assert!(matches!(
                read_bigsize(&mut &bytes[..], "v"),
                Err(WireError::Truncated { field: "v", .. })
            ));
        }
    }

    fn read_all(hex_stream: &str) -> Result<Vec<(u64, Vec<u8>)>, WireError> {
        let bytes = hex::decode(hex_stream.replace(' ', "")).unwrap();
        let mut r = TlvReader::new("s", &bytes);
        let mut out = vec![];
        while let Some((t, v)) = r.next_record()? {
            out.push((t, v.to_vec()));
        }
        Ok(out)
    }

    /// BOLT 1, appendix B: the stream-level failures that hold in any namespace.
    #[test]
    fn streams_break_the_rules_bolt_1_lists_are_refused() {
        for (stream, why) in [
            ("fd", "type truncated"),
            ("fd01", "type truncated"),
            ("fd0101", "missing length"),
            ("0f fd", "length truncated"),
            ("0f fd26", "length truncated"),
        ] {
            assert!(
                matches!(read_all(stream), Err(WireError::Truncated { .. })),
                "{why}"
            );
        }
        for stream in ["fd0001 00", "0f fd0001 00"] {
            assert!(matches!(
                read_all(stream),
                Err(WireError::NonMinimalBigSize { .. })
            ));
        }
        for stream in ["0f fd2602", "0f fd0201 00"] {
            assert!(matches!(
                read_all(stream),
                Err(WireError::LengthBeyondInput { .. })
            ));
        }
        assert_eq!(
            read_all("02 08 0000000000000226 01 01 2a"),
            Err(WireError::OutOfOrder {
                stream: "s",
                previous: 2,
                found: 1
            })
        );
        assert_eq!(
            read_all("02 08 0000000000000231 02 08 0000000000000451"),
            Err(WireError::Duplicate {
                stream: "s",
                record_type: 2
            })
        );
        // The rules hold for records no decoder knows, too.
        assert!(matches!(
            read_all("1f 00 0f 01 2a"),
            Err(WireError::OutOfOrder { .. })
        ));
        assert!(matches!(
            read_all("1f 00 1f 01 2a"),
            Err(WireError::Duplicate { .. })
        ));
        assert!(matches!(
            read_all("ffffffffffffffffff 00 00 00"),
            Err(WireError::OutOfOrder { .. })
        ));
    }

    /// BOLT 1, appendix B: unknown even types are refused and unknown odd ones skipped, at
    /// every BigSize width; an empty stream is valid.
    #[test]
    fn unknown_records_follow_the_parity_rule() {
        for stream in [
            "12 00",
            "fd0102 00",
            "fe01000002 00",
            "ff0100000000000002 00",
        ] {
            let bytes = hex::decode(stream.replace(' ', "")).unwrap();
            assert!(matches!(
                TlvReader::new("s", &bytes).finish(),
                Err(WireError::UnknownEvenRecord { .. })
            ));
        }
        for stream in [
            "",
            "21 00",
            "fd0201 00",
            "fd00fd 00",
            "fd00ff 00",
            "fe02000001 00",
            "ff0200000000000001 00",
        ] {
            let bytes = hex::decode(stream.replace(' ', "")).unwrap();
            assert_eq!(TlvReader::new("s", &bytes).finish(), Ok(()), "{stream}");
        }
    }

    /// A record asked for is found past skipped odd ones; a known record missing is `None`
    /// while the next one stays readable.
    #[test]
    fn the_cursor_skips_odd_records_and_keeps_later_ones() {
        let mut w = TlvWriter::new();
        w.record(1, &[1])
            .record(2, &[2])
            .record(5, &[5])
            .record(6, &[6]);
        let bytes = w.into_bytes();
        let mut r = TlvReader::new("s", &bytes);
        assert_eq!(r.record(2), Ok(Some(&[2u8][..])));
        assert_eq!(r.record(4), Ok(None));
        assert_eq!(r.record(6), Ok(Some(&[6u8][..])));
        assert_eq!(r.finish(), Ok(()));
        let mut r = TlvReader::new("s", &bytes);
        assert_eq!(
            r.record(6),
            Err(WireError::UnknownEvenRecord {
                stream: "s",
                record_type: 2
            })
        );
    }

    #[test]
    #[should_panic(expected = "strictly increasing")]
    fn the_writer_refuses_records_out_of_order() {
        TlvWriter::new().record(2, &[]).record(2, &[]);
    }

    #[test]
    fn fixed_values_need_their_exact_length_and_a_valid_encoding() {
        assert_eq!(
            u64::get("amount", &[0; 7]),
            Err(WireError::WrongLength {
                field: "amount",
                expected: 8,
                found: 7
            })
        );
        assert!(matches!(
            PublicKey::get("key", &[0xff; 32]),
            Err(WireError::InvalidField { field: "key", .. })
        ));
        assert!(matches!(
            AdaptorPoint::get("point", &[0x04; 33]),
            Err(WireError::InvalidField { field: "point", .. })
        ));
        let mut bad_flag = [0u8; 65];
        bad_flag[..32].copy_from_slice(
            &crate::crypto::keys::SecretKey::from_bytes([1; 32])
                .unwrap()
                .public_key()
                .to_xonly_bytes(),
        );
        bad_flag[63] = 1;
        bad_flag[64] = 2;
        assert!(matches!(
            EncryptedSignature::get("claim", &bad_flag),
            Err(WireError::InvalidField { field: "claim", .. })
        ));
        let outpoint = OutPoint {
            txid: Txid::from_byte_array([9; 32]),
            vout: 0x0102_0304,
        };
        let mut bytes = vec![];
        outpoint.put(&mut bytes);
        assert_eq!(&bytes[32..], &[1, 2, 3, 4]);
        assert_eq!(OutPoint::get("o", &bytes), Ok(outpoint));
    }

    #[test]
    fn text_is_cut_at_a_character_boundary() {
        assert_eq!(truncate_utf8("é".repeat(3).as_str(), 5), "éé");
        assert_eq!(truncate_utf8("abc", 5), "abc");
    }
}
