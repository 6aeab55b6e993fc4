//! Every wire type Kafka messages are built from, in both encodings.
//!
//! Flexible versions (KIP-482) change how lengths are written (unsigned varint
//! of length + 1 instead of a fixed-width length) and add a tagged-field
//! section to every struct. That difference is handled here, once, by looking
//! at [`DecodeCx::flexible`] / [`EncodeCx::flexible`]; message descriptions
//! never mention it.
//!
//! Lengths and counts read from the wire are checked against the bytes that
//! are actually present before anything is allocated.

use bytes::{BufMut, Bytes, BytesMut};

use super::file_slice::{Deferred, DeferredSlices, FetchedRecords};
use nom::Parser;
use nom::bytes::complete::take;
use nom::number::complete::{be_f64, be_i8, be_i16, be_i32, be_i64, be_u8, be_u16, be_u32, be_u128};

use super::error::DecodeError;

/// Result of a decoder: the rest of the input and the value.
pub type PResult<'a, T> = nom::IResult<&'a [u8], T, DecodeError>;

/// What a decoder needs to know besides the bytes.
pub struct DecodeCx<'f> {
    /// The message version being decoded.
    pub version: i16,
    /// Whether that version is flexible (compact lengths, tagged fields).
    pub flexible: bool,
    /// The whole frame the input is a slice of: byte fields (record batches)
    /// are handed out as cheap `Bytes` views of it instead of copies.
    pub frame: &'f Bytes,
}

/// What an encoder needs to know besides the value.
pub struct EncodeCx<'d> {
    pub version: i16,
    pub flexible: bool,
    /// Where file slices (records a Fetch answer sends from the page
    /// cache) are set aside instead of being copied into the buffer; with
    /// none, they are read into it.
    pub deferred: Option<&'d DeferredSlices>,
}

impl EncodeCx<'_> {
    /// A context that sets nothing aside.
    pub fn new(version: i16, flexible: bool) -> Self {
        EncodeCx {
            version,
            flexible,
            deferred: None,
        }
    }
}

/// A buffer encoders write to: a `BufMut` that knows how much it holds,
/// so a slice set aside can say where in the stream it belongs.
pub trait WireBuf: BufMut {
    fn written(&self) -> usize;
}

impl WireBuf for BytesMut {
    fn written(&self) -> usize {
        self.len()
    }
}

impl WireBuf for Vec<u8> {
    fn written(&self) -> usize {
        self.len()
    }
}

/// A type that has a Kafka wire encoding.
pub trait Wire: Sized {
    fn decode<'a>(input: &'a [u8], cx: &DecodeCx<'_>) -> PResult<'a, Self>;
    fn encode<B: WireBuf>(&self, buf: &mut B, cx: &EncodeCx<'_>);
}

fn fail<T>(error: DecodeError) -> Result<T, nom::Err<DecodeError>> {
    Err(nom::Err::Error(error))
}

// ---------------------------------------------------------------------------
// Varints (protobuf style, as Kafka uses them).

/// Unsigned varint of at most 32 bits (5 bytes).
pub fn uvarint(input: &[u8]) -> PResult<'_, u32> {
    let (rest, value) = uvarint_of_width(input, 32)?;
    Ok((rest, value as u32))
}

/// Unsigned varint of at most 64 bits (10 bytes).
pub fn uvarlong(input: &[u8]) -> PResult<'_, u64> {
    uvarint_of_width(input, 64)
}

/// Reads a varint of at most `bits` bits; a longer one is refused as soon as
/// its continuation bit says so, as Kafka's `ByteUtils` does.
fn uvarint_of_width(mut input: &[u8], bits: u32) -> PResult<'_, u64> {
    let mut value: u64 = 0;
    let mut shift = 0;
    while shift < bits {
        let (rest, byte) = be_u8(input)?;
        input = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            if bits < 64 && value >> bits != 0 {
                return fail(DecodeError::VarintTooLong);
            }
            return Ok((input, value));
        }
        shift += 7;
    }
    fail(DecodeError::VarintTooLong)
}

/// Zig-zag signed varint (32 bits).
pub fn varint(input: &[u8]) -> PResult<'_, i32> {
    let (rest, raw) = uvarint(input)?;
    Ok((rest, ((raw >> 1) as i32) ^ -((raw & 1) as i32)))
}

/// Zig-zag signed varint (64 bits).
pub fn varlong(input: &[u8]) -> PResult<'_, i64> {
    let (rest, raw) = uvarlong(input)?;
    Ok((rest, ((raw >> 1) as i64) ^ -((raw & 1) as i64)))
}

pub fn put_uvarint<B: BufMut>(buf: &mut B, value: u32) {
    put_uvarlong(buf, u64::from(value));
}

pub fn put_uvarlong<B: BufMut>(buf: &mut B, mut value: u64) {
    while value >= 0x80 {
        buf.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

pub fn put_varint<B: BufMut>(buf: &mut B, value: i32) {
    put_uvarint(buf, ((value << 1) ^ (value >> 31)) as u32);
}

pub fn put_varlong<B: BufMut>(buf: &mut B, value: i64) {
    put_uvarlong(buf, ((value << 1) ^ (value >> 63)) as u64);
}

/// Number of bytes `put_uvarint` writes for `value`.
pub fn uvarint_len(value: u32) -> usize {
    match value {
        0..=0x7f => 1,
        0x80..=0x3fff => 2,
        0x4000..=0x1f_ffff => 3,
        0x20_0000..=0xfff_ffff => 4,
        _ => 5,
    }
}

/// Number of bytes `put_uvarlong` writes for `value`.
pub fn uvarlong_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// Number of bytes `put_varlong` writes for `value`.
pub fn varlong_len(value: i64) -> usize {
    uvarlong_len(((value << 1) ^ (value >> 63)) as u64)
}

/// Number of bytes `put_varint` writes for `value`.
pub fn varint_len(value: i32) -> usize {
    uvarint_len(((value << 1) ^ (value >> 31)) as u32)
}

// ---------------------------------------------------------------------------
// Lengths: the one place where classic and flexible encodings differ.

/// Which fixed width a classic length has: strings use int16, arrays and
/// bytes use int32. Flexible versions use an unsigned varint of length + 1.
#[derive(Clone, Copy)]
enum LengthWidth {
    Int16,
    Int32,
}

/// Reads a length; `None` is the null marker (-1, or 0 in compact form).
fn length<'a>(input: &'a [u8], width: LengthWidth, flexible: bool) -> PResult<'a, Option<usize>> {
    let (rest, raw) = if flexible {
        let (rest, n) = uvarint(input)?;
        (rest, i64::from(n) - 1)
    } else {
        match width {
            LengthWidth::Int16 => be_i16(input).map(|(r, n)| (r, i64::from(n)))?,
            LengthWidth::Int32 => be_i32(input).map(|(r, n)| (r, i64::from(n)))?,
        }
    };
    match raw {
        -1 => Ok((rest, None)),
        n if n < 0 => fail(DecodeError::InvalidLength(n)),
        n => Ok((rest, Some(n as usize))),
    }
}

fn put_length<B: BufMut>(buf: &mut B, len: Option<usize>, width: LengthWidth, flexible: bool) {
    if flexible {
        // Compact: 0 is null, n + 1 is a length of n.
        let raw = len.map_or(0, |n| n as u64 + 1);
        put_uvarlong(buf, raw);
    } else {
        match (width, len) {
            (LengthWidth::Int16, None) => buf.put_i16(-1),
            (LengthWidth::Int16, Some(n)) => buf.put_i16(n as i16),
            (LengthWidth::Int32, None) => buf.put_i32(-1),
            (LengthWidth::Int32, Some(n)) => buf.put_i32(n as i32),
        }
    }
}

/// Hands out `sub` as a view of `frame` when it is one (the normal case),
/// and as a copy otherwise.
fn share(frame: &Bytes, sub: &[u8]) -> Bytes {
    let start = frame.as_ptr() as usize;
    let at = sub.as_ptr() as usize;
    if at >= start && at + sub.len() <= start + frame.len() {
        frame.slice_ref(sub)
    } else {
        Bytes::copy_from_slice(sub)
    }
}

// ---------------------------------------------------------------------------
// Fixed-width numbers.

macro_rules! wire_number {
    ($($ty:ty => $parse:ident, $put:ident;)*) => {$(
        impl Wire for $ty {
            fn decode<'a>(input: &'a [u8], _cx: &DecodeCx<'_>) -> PResult<'a, Self> {
                $parse(input)
            }
            fn encode<B: WireBuf>(&self, buf: &mut B, _cx: &EncodeCx<'_>) {
                buf.$put(*self);
            }
        }
    )*};
}

wire_number! {
    i8 => be_i8, put_i8;
    i16 => be_i16, put_i16;
    i32 => be_i32, put_i32;
    i64 => be_i64, put_i64;
    u16 => be_u16, put_u16;
    u32 => be_u32, put_u32;
    f64 => be_f64, put_f64;
}

impl Wire for bool {
    fn decode<'a>(input: &'a [u8], _cx: &DecodeCx<'_>) -> PResult<'a, Self> {
        let (rest, byte) = be_u8(input)?;
        Ok((rest, byte != 0))
    }
    fn encode<B: WireBuf>(&self, buf: &mut B, _cx: &EncodeCx<'_>) {
        buf.put_u8(u8::from(*self));
    }
}

impl Wire for uuid::Uuid {
    fn decode<'a>(input: &'a [u8], _cx: &DecodeCx<'_>) -> PResult<'a, Self> {
        let (rest, raw) = be_u128(input)?;
        Ok((rest, uuid::Uuid::from_u128(raw)))
    }
    fn encode<B: WireBuf>(&self, buf: &mut B, _cx: &EncodeCx<'_>) {
        buf.put_u128(self.as_u128());
    }
}

// ---------------------------------------------------------------------------
// Strings and bytes.

fn str_of(bytes: &[u8]) -> Result<String, nom::Err<DecodeError>> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_owned()),
        Err(_) => fail(DecodeError::InvalidUtf8),
    }
}

impl Wire for Option<String> {
    fn decode<'a>(input: &'a [u8], cx: &DecodeCx<'_>) -> PResult<'a, Self> {
        let (rest, len) = length(input, LengthWidth::Int16, cx.flexible)?;
        let Some(len) = len else { return Ok((rest, None)) };
        let (rest, raw) = take(len).parse(rest)?;
        Ok((rest, Some(str_of(raw)?)))
    }
    fn encode<B: WireBuf>(&self, buf: &mut B, cx: &EncodeCx<'_>) {
        put_length(buf, self.as_ref().map(String::len), LengthWidth::Int16, cx.flexible);
        if let Some(s) = self {
            buf.put_slice(s.as_bytes());
        }
    }
}

impl Wire for String {
    fn decode<'a>(input: &'a [u8], cx: &DecodeCx<'_>) -> PResult<'a, Self> {
        // A null where a string is required is read as empty, as Kafka's own
        // readers do for non-nullable versions of a field.
        let (rest, value) = Option::<String>::decode(input, cx)?;
        Ok((rest, value.unwrap_or_default()))
    }
    fn encode<B: WireBuf>(&self, buf: &mut B, cx: &EncodeCx<'_>) {
        put_length(buf, Some(self.len()), LengthWidth::Int16, cx.flexible);
        buf.put_slice(self.as_bytes());
    }
}

/// Writes `bytes`, or sets them aside when the context takes byte fields
/// that large.
fn put_bytes_or_defer<B: WireBuf>(buf: &mut B, bytes: &Bytes, cx: &EncodeCx<'_>) {
    match cx.deferred {
        Some(deferred) if deferred.takes_bytes(bytes.len()) => {
            deferred.push(buf.written(), Deferred::Bytes(bytes.clone()));
        }
        _ => buf.put_slice(bytes),
    }
}

impl Wire for Option<Bytes> {
    fn decode<'a>(input: &'a [u8], cx: &DecodeCx<'_>) -> PResult<'a, Self> {
        let (rest, len) = length(input, LengthWidth::Int32, cx.flexible)?;
        let Some(len) = len else { return Ok((rest, None)) };
        let (rest, raw) = take(len).parse(rest)?;
        Ok((rest, Some(share(cx.frame, raw))))
    }
    fn encode<B: WireBuf>(&self, buf: &mut B, cx: &EncodeCx<'_>) {
        put_length(buf, self.as_ref().map(Bytes::len), LengthWidth::Int32, cx.flexible);
        if let Some(b) = self {
            put_bytes_or_defer(buf, b, cx);
        }
    }
}

impl Wire for Option<FetchedRecords> {
    fn decode<'a>(input: &'a [u8], cx: &DecodeCx<'_>) -> PResult<'a, Self> {
        let (rest, bytes) = Option::<Bytes>::decode(input, cx)?;
        Ok((rest, bytes.map(FetchedRecords::Bytes)))
    }
    fn encode<B: WireBuf>(&self, buf: &mut B, cx: &EncodeCx<'_>) {
        put_length(
            buf,
            self.as_ref().map(FetchedRecords::len),
            LengthWidth::Int32,
            cx.flexible,
        );
        match self {
            None => {}
            Some(FetchedRecords::Bytes(b)) => put_bytes_or_defer(buf, b, cx),
            Some(FetchedRecords::File(slice)) => match cx.deferred {
                Some(deferred) => deferred.push(buf.written(), Deferred::File(slice.clone())),
                // The length is written: the frame must keep it.
                None => buf.put_slice(&slice.read_or_zeros()),
            },
        }
    }
}

impl Wire for Bytes {
    fn decode<'a>(input: &'a [u8], cx: &DecodeCx<'_>) -> PResult<'a, Self> {
        let (rest, value) = Option::<Bytes>::decode(input, cx)?;
        Ok((rest, value.unwrap_or_default()))
    }
    fn encode<B: WireBuf>(&self, buf: &mut B, cx: &EncodeCx<'_>) {
        put_length(buf, Some(self.len()), LengthWidth::Int32, cx.flexible);
        put_bytes_or_defer(buf, self, cx);
    }
}

// ---------------------------------------------------------------------------
// Arrays.

impl<T: Wire> Wire for Option<Vec<T>> {
    fn decode<'a>(input: &'a [u8], cx: &DecodeCx<'_>) -> PResult<'a, Self> {
        let (mut rest, count) = length(input, LengthWidth::Int32, cx.flexible)?;
        let Some(count) = count else { return Ok((rest, None)) };
        // Every element takes at least one byte, so a count larger than what
        // is left is a lie: refuse it before reserving anything.
        if count > rest.len() {
            return fail(DecodeError::ArrayTooLong {
                count: count as u64,
                remaining_bytes: rest.len(),
            });
        }
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            let (next, item) = T::decode(rest, cx)?;
            rest = next;
            items.push(item);
        }
        Ok((rest, Some(items)))
    }
    fn encode<B: WireBuf>(&self, buf: &mut B, cx: &EncodeCx<'_>) {
        put_length(buf, self.as_ref().map(Vec::len), LengthWidth::Int32, cx.flexible);
        for item in self.iter().flatten() {
            item.encode(buf, cx);
        }
    }
}

impl<T: Wire> Wire for Vec<T> {
    fn decode<'a>(input: &'a [u8], cx: &DecodeCx<'_>) -> PResult<'a, Self> {
        let (rest, value) = Option::<Vec<T>>::decode(input, cx)?;
        Ok((rest, value.unwrap_or_default()))
    }
    fn encode<B: WireBuf>(&self, buf: &mut B, cx: &EncodeCx<'_>) {
        put_length(buf, Some(self.len()), LengthWidth::Int32, cx.flexible);
        for item in self {
            item.encode(buf, cx);
        }
    }
}

// ---------------------------------------------------------------------------
// Nullable structs.

/// A struct field that may be null: an int8 marker (-1 null, 1 present),
/// then the struct (as Kafka's generated code writes nullable structs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Nullable<T>(pub Option<T>);

impl<T: Wire> Wire for Nullable<T> {
    fn decode<'a>(input: &'a [u8], cx: &DecodeCx<'_>) -> PResult<'a, Self> {
        let (rest, marker) = be_i8(input)?;
        if marker < 0 {
            return Ok((rest, Nullable(None)));
        }
        let (rest, value) = T::decode(rest, cx)?;
        Ok((rest, Nullable(Some(value))))
    }
    fn encode<B: WireBuf>(&self, buf: &mut B, cx: &EncodeCx<'_>) {
        match &self.0 {
            None => buf.put_i8(-1),
            Some(value) => {
                buf.put_i8(1);
                value.encode(buf, cx);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Tagged fields (flexible versions only).

/// Reads a tagged-field section, handing each field to `on_field`, which
/// returns whether it knew the tag. Unknown tags are skipped, as the spec asks.
pub fn tagged_fields<'a>(
    input: &'a [u8],
    mut on_field: impl FnMut(u32, &'a [u8]) -> Result<bool, nom::Err<DecodeError>>,
) -> PResult<'a, ()> {
    let (mut rest, count) = uvarint(input)?;
    if count as usize > rest.len() {
        return fail(DecodeError::ArrayTooLong {
            count: u64::from(count),
            remaining_bytes: rest.len(),
        });
    }
    for _ in 0..count {
        let (next, tag) = uvarint(rest)?;
        let (next, size) = uvarint(next)?;
        let (next, data) = take(size as usize).parse(next)?;
        on_field(tag, data)?;
        rest = next;
    }
    Ok((rest, ()))
}

/// Decodes the value of one tagged field, which must fill its data exactly.
pub fn tagged_value<T: Wire>(tag: u32, data: &[u8], cx: &DecodeCx<'_>) -> Result<T, nom::Err<DecodeError>> {
    let (rest, value) = T::decode(data, cx)?;
    if !rest.is_empty() {
        return fail(DecodeError::TaggedFieldTooLong { tag, extra: rest.len() });
    }
    Ok(value)
}

/// Writes one tagged field: tag, size, value.
pub fn put_tagged_value<T: Wire, B: BufMut>(buf: &mut B, tag: u32, value: &T, cx: &EncodeCx<'_>) {
    // Tagged fields are rare and small; a scratch buffer keeps the size
    // exact. Nothing in it is set aside: positions would be the scratch's.
    let mut scratch = Vec::new();
    value.encode(&mut scratch, &EncodeCx::new(cx.version, cx.flexible));
    put_uvarint(buf, tag);
    put_uvarint(buf, scratch.len() as u32);
    buf.put_slice(&scratch);
}

/// Writes an empty tagged-field section.
pub fn put_empty_tagged_fields<B: BufMut>(buf: &mut B) {
    buf.put_u8(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(frame: &Bytes, flexible: bool) -> DecodeCx<'_> {
        DecodeCx {
            version: 0,
            flexible,
            frame,
        }
    }

    fn round_trip<T: Wire + PartialEq + std::fmt::Debug>(value: T, flexible: bool) {
        let mut buf = Vec::new();
        value.encode(&mut buf, &EncodeCx::new(0, flexible));
        let frame = Bytes::from(buf);
        let (rest, back) = T::decode(&frame, &cx(&frame, flexible)).unwrap();
        assert!(rest.is_empty());
        assert_eq!(back, value);
    }

    #[test]
    fn varints_match_known_encodings() {
        let mut buf = Vec::new();
        put_varint(&mut buf, -1);
        assert_eq!(buf, [0x01]);
        buf.clear();
        put_varint(&mut buf, 300);
        assert_eq!(buf, [0xd8, 0x04]);
        buf.clear();
        put_uvarint(&mut buf, u32::MAX);
        assert_eq!(buf, [0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(uvarint_len(u32::MAX), 5);
        for v in [0i32, 1, -1, 63, -64, 64, i32::MAX, i32::MIN] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(buf.len(), varint_len(v));
            assert_eq!(varint(&buf).unwrap().1, v);
        }
        for v in [0i64, -1, 63, 64, i64::MAX, i64::MIN, 1 << 40] {
            let mut buf = Vec::new();
            put_varlong(&mut buf, v);
            assert_eq!(buf.len(), varlong_len(v), "{v}");
            assert_eq!(varlong(&buf).unwrap().1, v);
        }
    }

    #[test]
    fn overlong_varints_are_refused() {
        assert_eq!(
            uvarint(&[0xff; 6]).unwrap_err(),
            nom::Err::Error(DecodeError::VarintTooLong)
        );
        assert_eq!(
            uvarlong(&[0xff; 11]).unwrap_err(),
            nom::Err::Error(DecodeError::VarintTooLong)
        );
        assert_eq!(uvarint(&[0x80]).unwrap_err(), nom::Err::Error(DecodeError::Truncated));
    }

    #[test]
    fn strings_bytes_and_arrays_round_trip_in_both_encodings() {
        for flexible in [false, true] {
            round_trip(String::from("héllo"), flexible);
            round_trip(Some(String::new()), flexible);
            round_trip(None::<String>, flexible);
            round_trip(Some(Bytes::from_static(b"\x00\x01")), flexible);
            round_trip(None::<Bytes>, flexible);
            round_trip(vec![1i32, -2, 3], flexible);
            round_trip(None::<Vec<i64>>, flexible);
            round_trip(uuid::Uuid::from_u128(0x0123_4567_89ab_cdef), flexible);
        }
    }

    #[test]
    fn compact_lengths_are_length_plus_one() {
        let mut buf = Vec::new();
        String::from("ab").encode(&mut buf, &EncodeCx::new(0, true));
        assert_eq!(buf, [3, b'a', b'b']);
        buf.clear();
        None::<String>.encode(&mut buf, &EncodeCx::new(0, true));
        assert_eq!(buf, [0]);
        buf.clear();
        None::<String>.encode(&mut buf, &EncodeCx::new(0, false));
        assert_eq!(buf, [0xff, 0xff]);
    }

    #[test]
    fn huge_array_counts_are_refused_before_allocating() {
        let frame = Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1]);
        let err = Vec::<i32>::decode(&frame, &cx(&frame, false)).unwrap_err();
        assert!(matches!(
            err,
            nom::Err::Error(DecodeError::ArrayTooLong { count: 2147483647, .. })
        ));
    }

    #[test]
    fn negative_lengths_other_than_null_are_refused() {
        let frame = Bytes::from_static(&[0xff, 0xfe]);
        let err = Option::<String>::decode(&frame, &cx(&frame, false)).unwrap_err();
        assert_eq!(err, nom::Err::Error(DecodeError::InvalidLength(-2)));
    }

    #[test]
    fn invalid_utf8_is_refused() {
        let frame = Bytes::from_static(&[0, 2, 0xc3, 0x28]);
        let err = String::decode(&frame, &cx(&frame, false)).unwrap_err();
        assert_eq!(err, nom::Err::Error(DecodeError::InvalidUtf8));
    }

    #[test]
    fn byte_fields_are_views_of_the_frame() {
        let frame = Bytes::from_static(&[0, 0, 0, 3, 7, 8, 9]);
        let (_, value) = Bytes::decode(&frame, &cx(&frame, false)).unwrap();
        assert_eq!(value.as_ptr(), frame[4..].as_ptr());
    }
}
