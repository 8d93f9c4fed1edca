//! A minimal protobuf writer for the OTLP messages novaload encodes itself (spans, histogram
//! data points, request framing): tags, varints, fixed-width numbers, length-delimited fields
//! and `KeyValue` attributes, written straight into a byte buffer.

use super::AttrValue;

pub const VARINT: u8 = 0;
pub const I64: u8 = 1;
pub const LEN: u8 = 2;
pub const I32: u8 = 5;

pub fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}
pub fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}
fn tag(field: u32, wire: u8) -> u64 {
    (u64::from(field) << 3) | u64::from(wire)
}
pub fn put_tag(buf: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(buf, tag(field, wire));
}
/// Encoded size of a length-delimited field whose payload is `n` bytes.
pub fn bytes_len(field: u32, n: usize) -> usize {
    varint_len(tag(field, LEN)) + varint_len(n as u64) + n
}
/// Same as [`bytes_len`], named for embedded messages.
pub fn msg_len(field: u32, n: usize) -> usize {
    bytes_len(field, n)
}
pub fn put_bytes(buf: &mut Vec<u8>, field: u32, data: &[u8]) {
    put_tag(buf, field, LEN);
    put_varint(buf, data.len() as u64);
    buf.extend_from_slice(data);
}
pub fn put_fixed64(buf: &mut Vec<u8>, field: u32, v: u64) {
    put_tag(buf, field, I64);
    buf.extend_from_slice(&v.to_le_bytes());
}

/// A `KeyValue` with a string value, as field `field` of its parent.
pub fn put_str_kv(buf: &mut Vec<u8>, field: u32, key: &str, value: &str) {
    put_tag(buf, field, LEN);
    put_varint(
        buf,
        (bytes_len(1, key.len()) + msg_len(2, bytes_len(1, value.len()))) as u64,
    );
    put_bytes(buf, 1, key.as_bytes());
    put_tag(buf, 2, LEN);
    put_varint(buf, bytes_len(1, value.len()) as u64);
    put_bytes(buf, 1, value.as_bytes());
}

/// `AnyValue` payload size.
fn any_len(v: &AttrValue) -> usize {
    match v {
        AttrValue::Str(s) => bytes_len(1, s.len()),
        AttrValue::Static(s) => bytes_len(1, s.len()),
        AttrValue::Shared(s) => bytes_len(1, s.len()),
        AttrValue::Bool(_) => 2,
        AttrValue::I64(i) => 1 + varint_len(*i as u64),
        AttrValue::F64(_) => 9,
    }
}
/// `KeyValue` payload size.
pub fn kv_len(key: &str, v: &AttrValue) -> usize {
    bytes_len(1, key.len()) + msg_len(2, any_len(v))
}
/// A `KeyValue` message as field `field` of its parent.
pub fn put_kv(buf: &mut Vec<u8>, field: u32, key: &str, v: &AttrValue) {
    put_tag(buf, field, LEN);
    put_varint(buf, kv_len(key, v) as u64);
    put_bytes(buf, 1, key.as_bytes());
    put_tag(buf, 2, LEN);
    put_varint(buf, any_len(v) as u64);
    match v {
        AttrValue::Str(s) => put_bytes(buf, 1, s.as_bytes()),
        AttrValue::Static(s) => put_bytes(buf, 1, s.as_bytes()),
        AttrValue::Shared(s) => put_bytes(buf, 1, s.as_bytes()),
        AttrValue::Bool(b) => {
            put_tag(buf, 2, VARINT);
            buf.push(u8::from(*b));
        }
        AttrValue::I64(i) => {
            put_tag(buf, 3, VARINT);
            put_varint(buf, *i as u64);
        }
        AttrValue::F64(f) => {
            put_tag(buf, 4, I64);
            buf.extend_from_slice(&f.to_le_bytes());
        }
    }
}

fn varint_at(buf: &[u8], mut pos: usize) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(pos)?;
        pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some((v, pos));
        }
    }
    None
}
/// Total size (tag, length and payload) of the length-delimited field at `pos`.
pub fn field_len_at(buf: &[u8], pos: usize) -> Option<usize> {
    let (_, p) = varint_at(buf, pos)?;
    let (len, p) = varint_at(buf, p)?;
    let end = p.checked_add(usize::try_from(len).ok()?)?;
    (end <= buf.len()).then_some(end - pos)
}
