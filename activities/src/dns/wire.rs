//! One DNS question asked directly of a server over UDP, and its answer read back, to show
//! what a server says. The messages are built and read by hickory-proto; here is only how
//! its records are shown: A, AAAA, NS, CNAME, PTR, MX, TXT, SOA, SRV and CAA in their
//! presentation form, any other type in RFC 3597's generic form (`\# 4 0a000001`). A reply
//! that cannot be read is an error, never a panic.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use foundry_core::ActivityError;
use hickory_proto::op::{Message, MessageType, Query};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
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

fn rcode_name(rcode: u16) -> String {
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
    let trimmed = name.trim().trim_end_matches('.');
    let mut qname = if trimmed.is_empty() {
        Name::root()
    } else {
        if trimmed
            .split('.')
            .any(|label| label.is_empty() || label.len() > 63)
        {
            return Err(format!(
                "`{name}` is not a DNS name: each label has 1 to 63 bytes"
            ));
        }
        Name::from_ascii(trimmed).map_err(|e| format!("`{name}` is not a DNS name: {e}"))?
    };
    qname.set_fqdn(true);
    if qname.len() > 255 {
        return Err(format!("`{name}` is longer than a DNS name may be"));
    }
    let mut query = Query::query(qname, RecordType::from(rtype));
    query.set_query_class(DNSClass::IN);
    let mut message = Message::new();
    message
        .set_id(id)
        .set_recursion_desired(true)
        .add_query(query);
    message
        .to_vec()
        .map_err(|e| format!("`{name}`: the query cannot be encoded: {e}"))
}

/// A name as text, canonical with a trailing dot: each label lower case, escaped.
fn show_name(name: &Name) -> String {
    if name.is_root() {
        return ".".into();
    }
    let labels: Vec<String> = name.iter().map(escape_label).collect();
    format!("{}.", labels.join("."))
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

/// A record's data in presentation form.
fn rdata(record: &Record) -> Result<String, String> {
    let data = record.data();
    Ok(match data {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(aaaa) => aaaa.0.to_string(),
        RData::NS(n) => show_name(&n.0),
        RData::CNAME(n) => show_name(&n.0),
        RData::PTR(n) => show_name(&n.0),
        RData::MX(mx) => format!("{} {}", mx.preference(), show_name(mx.exchange())),
        RData::SRV(srv) => format!(
            "{} {} {} {}",
            srv.priority(),
            srv.weight(),
            srv.port(),
            show_name(srv.target())
        ),
        // The wire's numbers are unsigned; hickory keeps some of them signed.
        RData::SOA(soa) => format!(
            "{} {} {} {} {} {} {}",
            show_name(soa.mname()),
            show_name(soa.rname()),
            soa.serial(),
            soa.refresh() as u32,
            soa.retry() as u32,
            soa.expire() as u32,
            soa.minimum()
        ),
        RData::TXT(txt) => txt
            .txt_data()
            .iter()
            .map(|s| quoted(s))
            .collect::<Vec<_>>()
            .join(" "),
        _ => {
            let bytes = data.to_bytes().map_err(|e| {
                format!(
                    "a {} record cannot be shown: {e}",
                    type_name(record.record_type().into())
                )
            })?;
            match data {
                RData::CAA(_) => caa(&bytes)?,
                _ => generic(&bytes),
            }
        }
    })
}

/// A CAA record from its wire form: flags, tag, and the value quoted as it was sent.
fn caa(bytes: &[u8]) -> Result<String, String> {
    let [flags, tag_len, rest @ ..] = bytes else {
        return Err(format!(
            "a CAA record of {} bytes, not 2 or more",
            bytes.len()
        ));
    };
    let (tag, value) = rest
        .split_at_checked(usize::from(*tag_len))
        .ok_or("a CAA tag runs past its record")?;
    Ok(format!(
        "{flags} {} {}",
        String::from_utf8_lossy(tag),
        quoted(value)
    ))
}

/// RFC 3597's generic form: `\# <length> <hex>`.
fn generic(bytes: &[u8]) -> String {
    format!("\\# {} {}", bytes.len(), hex::encode(bytes))
        .trim_end()
        .to_string()
}

/// The reply to the query `id`: its status and its answer section.
pub fn decode_reply(id: u16, packet: &[u8]) -> Result<Reply, String> {
    let message = Message::from_vec(packet).map_err(|e| e.to_string())?;
    if message.id() != id {
        return Err("a reply to another query".into());
    }
    if message.message_type() != MessageType::Response {
        return Err("a query, not a reply".into());
    }
    let answers = message
        .answers()
        .iter()
        .map(|record| {
            Ok(WireRecord {
                name: show_name(record.name()),
                rtype: type_name(record.record_type().into()),
                ttl: record.ttl(),
                value: rdata(record)?,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(Reply {
        rcode: rcode_name(u16::from(message.response_code())),
        authoritative: message.authoritative(),
        truncated: message.truncated(),
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
        // hickory-proto takes only pointers that point back, so no loop can form.
        let e = decode_reply(9, &p).expect_err("a loop");
        assert!(e.contains("points to data not prior"), "{e}");
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
