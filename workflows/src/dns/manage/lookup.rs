//! `dns test`: one name asked of the internal server, the external server and the
//! recursor over DNS itself, each answer beside the zone that answers for the name there.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use foundry_activities::dns::{
    Reply, WireRecord, ask, canonical_name, encode_query, type_code, type_name,
};
use serde::Serialize;

use super::{DnsServers, Server, longest_zone};
use crate::component::ComponentError;

/// How long one try waits for a server's reply, and how many tries.
const WAIT: Duration = Duration::from_secs(2);
const TRIES: u32 = 2;

/// What one server answered.
#[derive(Clone, Debug, Serialize)]
pub struct Lookup {
    /// `internal`, `external` or `recursor`.
    pub server: &'static str,
    pub address: Ipv4Addr,
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    /// The zone that answers for the name there: the longest zone the server holds that
    /// contains it (the recursor: the internal server's, when it sends the name there).
    pub zone: Option<String>,
    /// `NOERROR`, `NXDOMAIN`, `REFUSED`, `SERVFAIL`, …, or `no answer`.
    pub status: String,
    pub authoritative: bool,
    pub answers: Vec<WireRecord>,
    /// Why the server could not be asked, or its zones not read.
    pub error: Option<String>,
}

impl Lookup {
    /// The server said something.
    pub fn answered(&self) -> bool {
        self.status != NO_ANSWER
    }
}

const NO_ANSWER: &str = "no answer";

impl DnsServers {
    /// `name`/`rtype` asked of each server at once.
    pub async fn lookup(&self, name: &str, rtype: &str) -> Result<Vec<Lookup>, ComponentError> {
        let code = type_code(rtype).ok_or_else(|| {
            ComponentError::new(format!("`{rtype}` is not a record type"))
                .hint("A, AAAA, CNAME, TXT, MX, NS, SOA, SRV, PTR, CAA, or TYPE<number>")
        })?;
        let name = canonical_name(name);
        // A name that is not one is the question's fault, not a server's.
        encode_query(0, &name, code).map_err(ComponentError::new)?;
        let (internal, external, recursor) = tokio::join!(
            self.ask(&name, code, self.internal.address),
            self.ask(&name, code, self.external.address),
            self.ask(&name, code, self.recursor),
        );
        let (inside, outside) = tokio::join!(
            self.zone_of(&self.internal, &name),
            self.zone_of(&self.external, &name),
        );
        let forwarded = match &inside {
            Ok(Some(zone)) if self.recursor_asks_internal(zone) => Ok(Some(zone.clone())),
            Ok(_) => Ok(None),
            Err(e) => Err(e.clone()),
        };
        let row = |server: &'static str,
                   address,
                   asked: Result<Reply, String>,
                   zone: Result<Option<String>, String>| {
            let (status, authoritative, answers, mut error) = match asked {
                Ok(reply) => (reply.rcode, reply.authoritative, reply.answers, None),
                Err(e) => (NO_ANSWER.to_string(), false, Vec::new(), Some(e)),
            };
            let zone = zone.unwrap_or_else(|e| {
                error.get_or_insert(format!("its zones could not be read: {e}"));
                None
            });
            Lookup {
                server,
                address,
                name: name.clone(),
                rtype: type_name(code),
                zone,
                status,
                authoritative,
                answers,
                error,
            }
        };
        Ok(vec![
            row("internal", self.internal.address, internal, inside),
            row("external", self.external.address, external, outside),
            row("recursor", self.recursor, recursor, forwarded),
        ])
    }

    /// One server's reply, or why it gave none.
    async fn ask(&self, name: &str, code: u16, address: Ipv4Addr) -> Result<Reply, String> {
        ask(SocketAddr::from((address, 53)), name, code, WAIT, TRIES)
            .await
            .map_err(|e| e.message)
    }

    /// The longest zone `server` holds that contains `name`.
    async fn zone_of(&self, server: &Server, name: &str) -> Result<Option<String>, String> {
        let zones = self.zone_names(server).await.map_err(|e| e.message)?;
        Ok(longest_zone(name, &zones))
    }
}
