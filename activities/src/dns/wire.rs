//! One DNS question asked directly of a server over UDP, and its answer read back, to show
//! what a server says. Enough of RFC 1035 for that: the question is built here, and the
//! answer section decoded, names compressed or not; A, AAAA, NS, CNAME, PTR, MX, TXT,
//! SOA, SRV and CAA in their presentation form, any other type in RFC 3597's generic form
//! (`\# 4 0a000001`). A reply that cannot be read is an error, never a panic.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use foundry_core::ActivityError;
use serde::{Deserialize, Serialize};

/// Record types known by name.
const TYPES: [(&str, u16); 11] = [
    ("A", 1),
    ("NS", 2),
    ("CNAME", 5),
    ("SOA", 6),
    ("PTR", 12),
    ("MX", 15),
    ("TXT", 16),
    ("AAAA", 28),
    ("SRV", 33),
    ("ANY", 255),
    ("CAA", 257),
];

/// A UDP answer without EDNS is at most 512 bytes; more room costs nothing.
const MAX_REPLY: usize = 4096;
/// A name has at most 255 bytes, so at most 127 labels; more jumps than that is a loop.
const MAX_JUMPS: usize = 128;

/// The type's number: a known name (any case), or `TYPE<n>` (RFC 3597).
pub fn type_code(name: &str) -> Option<u16> {
    let upper = name.trim().to_ascii_uppercase();
    TYPES
        .iter()
        .find(|(n, _)| *n == upper)
        .map(|(_, code)| *code)
        .or_else(|| upper.strip_prefix("TYPE").and_then(|n| n.parse().ok()))
}

/// The type's name: a known one, or `TYPE<n>`.
pub fn type_name(code: u16) -> String {
    TYPES
        .iter()
        .find(|(_, c)| *c == code)
        .map_or_else(|| format!("TYPE{code}"), |(n, _)| (*n).to_string())
}

fn rcode_name(rcode: u8) -> String {
    match rcode {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        n => format!("RCODE{n}"),
    }
}

/// What a server answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// `NOERROR`, `NXDOMAIN`, `REFUSED`, `SERVFAIL`, …
    pub rcode: String,
    /// The server is authoritative for the name (the AA bit).
    pub authoritative: bool,
    /// The answer did not fit (the TC bit): what is shown may be partial.
    pub truncated: bool,
    pub answers: Vec<WireRecord>,
}

/// One record of the answer section, in presentation form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireRecord {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub ttl: u32,
    pub value: String,
}

/// A query for `name`/`rtype` with id `id`, asking for recursion (an authoritative server
/// ignores the bit; a recursor needs it).
pub fn encode_query(id: u16, name: &str, rtype: u16) -> Result<Vec<u8>, String> {
    let mut packet = Vec::with_capacity(64);
    packet.extend(id.to_be_bytes());
    packet.extend([0x01, 0x00]); // RD
    packet.extend([0, 1, 0, 0, 0, 0, 0, 0]); // one question
    let trimmed = name.trim().trim_end_matches('.');
    let mut length = 1;
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(format!(
                    "`{name}` is not a DNS name: each label has 1 to 63 bytes"
                ));
            }
            length += label.len() + 1;
            packet.push(label.len() as u8);
            packet.extend(label.as_bytes());
        }
    }
    if length > 255 {
        return Err(format!("`{name}` is longer than a DNS name may be"));
    }
    packet.push(0);
    packet.extend(rtype.to_be_bytes());
    packet.extend([0, 1]); // IN
    Ok(packet)
}

/// Reads a packet from the front, every read bounded by its length.
struct Reader<'a> {
    packet: &'a [u8],
}

impl Reader<'_> {
    fn bytes(&self, at: usize, n: usize) -> Result<&[u8], String> {
        at.checked_add(n)
            .and_then(|end| self.packet.get(at..end))
            .ok_or_else(|| format!("the reply ends early (at byte {at}, {n} more wanted)"))
    }

    fn u8(&self, at: usize) -> Result<u8, String> {
        Ok(self.bytes(at, 1)?[0])
    }

    fn u16(&self, at: usize) -> Result<u16, String> {
        let b = self.bytes(at, 2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&self, at: usize) -> Result<u32, String> {
        let b = self.bytes(at, 4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The name at `at`, canonical with a trailing dot, and where what follows it starts.
    fn name(&self, at: usize) -> Result<(String, usize), String> {
        let mut labels: Vec<String> = Vec::new();
        let mut pos = at;
        let mut after = None;
        let mut jumps = 0;
        loop {
            let len = self.u8(pos)?;
            match len >> 6 {
                0b00 if len == 0 => {
                    let name = if labels.is_empty() {
                        ".".to_string()
                    } else {
                        format!("{}.", labels.join("."))
                    };
                    return Ok((name, after.unwrap_or(pos + 1)));
                }
                0b00 => {
                    let label = self.bytes(pos + 1, usize::from(len))?;
                    labels.push(escape_label(label));
                    pos += 1 + usize::from(len);
                }
                0b11 => {
                    jumps += 1;
                    if jumps > MAX_JUMPS {
                        return Err(format!("a name at byte {at} points in a loop"));
                    }
                    let target = usize::from(self.u16(pos)? & 0x3fff);
                    after.get_or_insert(pos + 2);
                    pos = target;
                }
                _ => return Err(format!("an unknown label type at byte {pos}")),
            }
        }
    }
}

/// A label as text: printable ASCII as it is, `.` and `\` escaped, other bytes as `\DDD`.
fn escape_label(label: &[u8]) -> String {
    let mut text = String::new();
    for &b in label {
        match b {
            b'.' | b'\\' => {
                text.push('\\');
                text.push(char::from(b));
            }
            0x21..=0x7e => text.push(char::from(b.to_ascii_lowercase())),
            _ => text.push_str(&format!("\\{b:03}")),
        }
    }
    text
}

/// A TXT or CAA string in quotes, `"` and `\` escaped, unprintable bytes as `\DDD`.
fn quoted(bytes: &[u8]) -> String {
    let mut text = String::from("\"");
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                text.push('\\');
                text.push(char::from(b));
            }
            0x20..=0x7e => text.push(char::from(b)),
            _ => text.push_str(&format!("\\{b:03}")),
        }
    }
    text.push('"');
    text
}

/// The record data at `at..end` of type `rtype`, in presentation form.
fn rdata(r: &Reader<'_>, rtype: u16, at: usize, end: usize) -> Result<String, String> {
    let len = end - at;
    let sized = |ok: bool, want: &str| {
        if ok {
            Ok(())
        } else {
            Err(format!(
                "a {} record of {len} bytes, not {want}",
                type_name(rtype)
            ))
        }
    };
    let fixed = |want: usize| sized(len == want, &want.to_string());
    // A name inside the data must end inside it (a pointer may lead anywhere before).
    let name_at = |pos: usize| -> Result<(String, usize), String> {
        let (name, next) = r.name(pos)?;
        if next > end {
            return Err(format!("a name runs past its {} record", type_name(rtype)));
        }
        Ok((name, next))
    };
    Ok(match rtype {
        1 => {
            fixed(4)?;
            let b = r.bytes(at, 4)?;
            Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string()
        }
        28 => {
            fixed(16)?;
            let mut b = [0u8; 16];
            b.copy_from_slice(r.bytes(at, 16)?);
            Ipv6Addr::from(b).to_string()
        }
        2 | 5 | 12 => name_at(at)?.0,
        15 => {
            sized(len >= 3, "3 or more")?;
            format!("{} {}", r.u16(at)?, name_at(at + 2)?.0)
        }
        33 => {
            sized(len >= 7, "7 or more")?;
            format!(
                "{} {} {} {}",
                r.u16(at)?,
                r.u16(at + 2)?,
                r.u16(at + 4)?,
                name_at(at + 6)?.0
            )
        }
        6 => {
            let (mname, next) = name_at(at)?;
            let (rname, next) = name_at(next)?;
            sized(next + 20 <= end, "its names and 20 more")?;
            let numbers: Vec<String> = (0..5)
                .map(|i| r.u32(next + 4 * i).map(|n| n.to_string()))
                .collect::<Result<_, _>>()?;
            format!("{mname} {rname} {}", numbers.join(" "))
        }
        16 => {
            let mut parts = Vec::new();
            let mut pos = at;
            while pos < end {
                let n = usize::from(r.u8(pos)?);
                if pos + 1 + n > end {
                    return Err("a TXT string runs past its record".into());
                }
                parts.push(quoted(r.bytes(pos + 1, n)?));
                pos += 1 + n;
            }
            parts.join(" ")
        }
        257 => {
            sized(len >= 2, "2 or more")?;
            let flags = r.u8(at)?;
            let tag_len = usize::from(r.u8(at + 1)?);
            if at + 2 + tag_len > end {
                return Err("a CAA tag runs past its record".into());
            }
            let tag = String::from_utf8_lossy(r.bytes(at + 2, tag_len)?).into_owned();
            let value = r.bytes(at + 2 + tag_len, end - (at + 2 + tag_len))?;
            format!("{flags} {tag} {}", quoted(value))
        }
        _ => {
            let data = r.bytes(at, len)?;
            let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
            format!("\\# {len} {hex}").trim_end().to_string()
        }
    })
}

/// The reply to the query `id`: its status and its answer section.
pub fn decode_reply(id: u16, packet: &[u8]) -> Result<Reply, String> {
    let r = Reader { packet };
    if r.u16(0)? != id {
        return Err("a reply to another query".into());
    }
    let flags = r.u16(2)?;
    if flags & 0x8000 == 0 {
        return Err("a query, not a reply".into());
    }
    let questions = r.u16(4)?;
    let count = r.u16(6)?;
    let mut pos = 12;
    for _ in 0..questions {
        pos = r.name(pos)?.1 + 4;
    }
    let mut answers = Vec::new();
    for _ in 0..count {
        let (name, next) = r.name(pos)?;
        let rtype = r.u16(next)?;
        let ttl = r.u32(next + 4)?;
        let len = usize::from(r.u16(next + 8)?);
        let start = next + 10;
        let end = start + len;
        r.bytes(start, len)?;
        answers.push(WireRecord {
            name,
            rtype: type_name(rtype),
            ttl,
            value: rdata(&r, rtype, start, end)?,
        });
        pos = end;
    }
    Ok(Reply {
        rcode: rcode_name((flags & 0x000f) as u8),
        authoritative: flags & 0x0400 != 0,
        truncated: flags & 0x0200 != 0,
        answers,
    })
}

/// Asks `server` for `name`/`rtype` over UDP: each of `tries` attempts waits `timeout`
/// for the reply. No reply at all is a transient error; one that cannot be read, a
/// permanent one.
pub async fn ask(
    server: SocketAddr,
    name: &str,
    rtype: u16,
    timeout: Duration,
    tries: u32,
) -> Result<Reply, ActivityError> {
    let id: u16 = rand::random();
    let query = encode_query(id, name, rtype).map_err(ActivityError::permanent)?;
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let io =
        |doing: &str, e: std::io::Error| ActivityError::transient(format!("{doing} {server}: {e}"));
    let socket = tokio::net::UdpSocket::bind(local)
        .await
        .map_err(|e| io("a UDP socket to ask", e))?;
    // Connected: only the server's datagrams are received, and a closed port is reported.
    socket
        .connect(server)
        .await
        .map_err(|e| io("connecting to", e))?;
    let mut buf = vec![0u8; MAX_REPLY];
    for _ in 0..tries.max(1) {
        socket.send(&query).await.map_err(|e| io("asking", e))?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let received = tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await;
            let Ok(received) = received else {
                break; // this try's time is up
            };
            let n = received.map_err(|e| io("reading the answer of", e))?;
            match decode_reply(id, &buf[..n]) {
                Ok(reply) => return Ok(reply),
                // A late reply to an earlier query of this socket: wait on.
                Err(_) if buf.get(..2) != Some(&id.to_be_bytes()[..]) => {}
                Err(e) => {
                    return Err(ActivityError::permanent(format!(
                        "{server} answered with a reply that cannot be read: {e}"
                    )));
                }
            }
        }
    }
    Err(ActivityError::transient(format!(
        "{server} did not answer within {} s ({} tries)",
        timeout.as_secs_f32(),
        tries.max(1)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply to query 0x1234 for `web.lab.example.test./A`: a CNAME whose owner points
    /// back to the question's name, then an A record, then a TXT.
    fn reply() -> Vec<u8> {
        let mut p = encode_query(0x1234, "web.lab.example.test", 1).expect("query");
        p[2] = 0x85; // QR, AA, RD
        p[3] = 0x80; // RA, NOERROR
        p[7] = 3; // three answers
        // web.lab.example.test. CNAME home.example.test. (owner: pointer to 12)
        p.extend([0xc0, 12, 0, 5, 0, 1, 0, 0, 1, 44]);
        let target: &[u8] = b"\x04home\xc0\x14"; // home + pointer to "example.test."
        p.extend((target.len() as u16).to_be_bytes());
        p.extend(target);
        // home.example.test. A 10.0.0.7 (owner: pointer to the CNAME's target)
        let home = 12 + 22 + 4 + 12;
        p.extend([0xc0, home as u8, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 7]);
        // web.lab.example.test. TXT "a \"b\"" "c"
        let txt: &[u8] = b"\x05a \"b\"\x01c";
        p.extend([0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 5]);
        p.extend((txt.len() as u16).to_be_bytes());
        p.extend(txt);
        p
    }

    #[test]
    fn a_query_is_encoded_as_rfc_1035_says() {
        let q = encode_query(0xabcd, "Web.Lab.", 28).expect("query");
        assert_eq!(
            q,
            [
                0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'W', b'e', b'b', 3, b'L', b'a', b'b',
                0, 0, 28, 0, 1
            ]
        );
        assert!(encode_query(1, "a..b", 1).is_err());
        assert!(encode_query(1, &"x".repeat(64), 1).is_err());
        assert!(encode_query(1, &["abcdefghij"; 30].join("."), 1).is_err());
        assert_eq!(encode_query(1, ".", 2).expect("root")[12], 0);
    }

    #[test]
    fn a_reply_is_decoded_with_compressed_names() {
        let decoded = decode_reply(0x1234, &reply()).expect("reply");
        assert_eq!(decoded.rcode, "NOERROR");
        assert!(decoded.authoritative);
        assert!(!decoded.truncated);
        let shown: Vec<(&str, &str, u32, &str)> = decoded
            .answers
            .iter()
            .map(|a| (a.name.as_str(), a.rtype.as_str(), a.ttl, a.value.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                ("web.lab.example.test.", "CNAME", 300, "home.example.test."),
                ("home.example.test.", "A", 60, "10.0.0.7"),
                ("web.lab.example.test.", "TXT", 5, "\"a \\\"b\\\"\" \"c\""),
            ]
        );
        assert!(
            decode_reply(0x4321, &reply()).is_err(),
            "another query's id"
        );
    }

    #[test]
    fn a_refusal_and_an_unknown_type_are_shown() {
        let mut p = encode_query(7, "db.lab.local", 1).expect("query");
        p[2] = 0x80;
        p[3] = 0x05;
        let refused = decode_reply(7, &p).expect("reply");
        assert_eq!(refused.rcode, "REFUSED");
        assert!(refused.answers.is_empty());
        p[3] = 0;
        p[7] = 1;
        p.extend([0xc0, 12, 0x01, 0x00, 0, 1, 0, 0, 0, 1, 0, 2, 0xbe, 0xef]);
        let unknown = decode_reply(7, &p).expect("reply");
        assert_eq!(unknown.answers[0].rtype, "TYPE256");
        assert_eq!(unknown.answers[0].value, "\\# 2 beef");
        assert_eq!(type_code("aaaa"), Some(28));
        assert_eq!(type_code("TYPE256"), Some(256));
        assert_eq!(type_code("BOGUS"), None);
    }

    #[test]
    fn a_pointer_loop_is_an_error() {
        let mut p = encode_query(9, "a", 1).expect("query");
        p[2] = 0x80;
        p[7] = 1;
        let at = p.len() as u8;
        p.extend([0xc0, at]); // a name that points at itself
        assert!(decode_reply(9, &p).expect_err("a loop").contains("loop"));
    }

    #[test]
    fn no_bytes_make_the_decoder_panic() {
        let whole = reply();
        for cut in 0..whole.len() {
            let _ = decode_reply(0x1234, &whole[..cut]);
        }
        for _ in 0..20_000 {
            let len = rand::random::<u8>() as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| rand::random()).collect();
            if bytes.len() > 3 {
                bytes[0] = 0x12;
                bytes[1] = 0x34;
                bytes[2] |= 0x80;
            }
            let _ = decode_reply(0x1234, &bytes);
            let mut flipped = whole.clone();
            let i = rand::random::<u32>() as usize % flipped.len();
            flipped[i] = rand::random();
            let _ = decode_reply(0x1234, &flipped);
        }
    }
}
