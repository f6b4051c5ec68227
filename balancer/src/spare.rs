//! The copy of a rewritten request head kept for a replay.
//!
//! hyper takes a request's headers when it sends it, so a request that may be replayed (a
//! GET that fails after it may have been sent, see [`crate::proxy`]) needs a copy made
//! before the first attempt. Nearly every request succeeds and drops that copy unused, so
//! the copy is made cheap to make and to drop: every name and value is appended to one
//! byte block (one allocation, one free), instead of a cloned `HeaderMap`, whose every
//! value is a reference-counted buffer to bump now and release later. Only a replay pays
//! for turning the block back into a `HeaderMap`.

use http::Method;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;

/// A request head, copied for a replay.
#[derive(Debug)]
pub struct SpareHead {
    method: Method,
    path: PathAndQuery,
    /// For each header in order: name length and value length (`u32`, little endian), then
    /// the name's and the value's bytes.
    block: Vec<u8>,
}

impl SpareHead {
    /// Copies `method`, `path` and every header of `headers`, repeated ones in order.
    pub fn copy(method: &Method, path: &PathAndQuery, headers: &HeaderMap) -> SpareHead {
        let mut block = Vec::with_capacity(512);
        for (name, value) in headers {
            let (name, value) = (name.as_str().as_bytes(), value.as_bytes());
            // A header block longer than 4 GiB never gets past the server's head limit.
            block.extend_from_slice(&(name.len() as u32).to_le_bytes());
            block.extend_from_slice(&(value.len() as u32).to_le_bytes());
            block.extend_from_slice(name);
            block.extend_from_slice(value);
        }
        SpareHead {
            method: method.clone(),
            path: path.clone(),
            block,
        }
    }

    /// The method, path and headers again. `None` only if the block does not read back,
    /// which the copy never produces.
    pub fn restore(self) -> Option<(Method, PathAndQuery, HeaderMap)> {
        let mut headers = HeaderMap::new();
        let mut rest = self.block.as_slice();
        while !rest.is_empty() {
            let (name_len, tail) = take_len(rest)?;
            let (value_len, tail) = take_len(tail)?;
            if tail.len() < name_len + value_len {
                return None;
            }
            let (name, tail) = tail.split_at(name_len);
            let (value, tail) = tail.split_at(value_len);
            headers.append(
                HeaderName::from_bytes(name).ok()?,
                HeaderValue::from_bytes(value).ok()?,
            );
            rest = tail;
        }
        Some((self.method, self.path, headers))
    }
}

/// A `u32` length off the front of `bytes`.
fn take_len(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let (len, rest) = bytes.split_first_chunk::<4>()?;
    Some((u32::from_le_bytes(*len) as usize, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_header_comes_back_in_order_with_repeats_and_odd_bytes() {
        let mut headers = HeaderMap::new();
        headers.append("host", HeaderValue::from_static("example.test"));
        headers.append("cookie", HeaderValue::from_static("a=1"));
        headers.append("x-custom-name", HeaderValue::from_static(""));
        headers.append("cookie", HeaderValue::from_static("sid=%C3%A9; b=2"));
        // obs-text: bytes above 0x7f are legal in a field value and not UTF-8 here.
        let odd = HeaderValue::from_bytes(b"caf\xe9 \xff").expect("obs-text is a valid value");
        headers.append("x-odd", odd.clone());
        let path = PathAndQuery::from_static("/session?x=%20y");
        let spare = SpareHead::copy(&Method::GET, &path, &headers);
        let (method, back_path, back) = spare.restore().expect("reads back");
        assert_eq!(method, Method::GET);
        assert_eq!(back_path, path);
        assert_eq!(back, headers);
        let cookies: Vec<_> = back.get_all("cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "sid=%C3%A9; b=2"]);
        assert_eq!(back.get("x-odd"), Some(&odd));
        assert_eq!(back.get("x-custom-name").map(|v| v.len()), Some(0));
    }

    #[test]
    fn no_headers_is_an_empty_map() {
        let spare = SpareHead::copy(
            &Method::HEAD,
            &PathAndQuery::from_static("/"),
            &HeaderMap::new(),
        );
        let (method, _, headers) = spare.restore().expect("reads back");
        assert_eq!(method, Method::HEAD);
        assert!(headers.is_empty());
    }

    #[test]
    fn a_cut_block_reads_back_as_none_not_a_panic() {
        let mut headers = HeaderMap::new();
        headers.append("host", HeaderValue::from_static("example.test"));
        let mut spare = SpareHead::copy(&Method::GET, &PathAndQuery::from_static("/"), &headers);
        spare.block.truncate(spare.block.len() - 3);
        assert!(spare.restore().is_none());
    }
}
