//! PowerDNS through its HTTP API (`X-API-Key`, on the container's loopback): the server's version, zones and
//! their rrsets, and the activities that ensure them. The key is revealed from a
//! `SecretRef` only to build the client; inputs and outputs carry the reference. And one
//! question asked of a server over DNS itself (`wire.rs`), to show what it answers.
//!
//! PowerDNS facts this relies on: a zone create answers 201, or 409 when the zone exists;
//! a PATCH that REPLACEs an rrset bumps the zone's serial even when nothing changed, so
//! every change is diffed first and only real changes are sent; names must be canonical
//! (trailing dot) or the API answers 422.

mod api;
mod hashed_key;
mod key;
mod ready;
mod records;
mod relay;
mod wire;
mod zone;

pub use api::{API_PORT, Client, PdnsApi, Rrset, Zone, ZoneSummary, canonical_name};
pub use hashed_key::{ApiKeyConf, ApiKeyConfOutput, api_key_conf, hash_api_key, verifies};
pub use key::{ApiKeyOutput, KeyHolder, NewApiKey, random_key};
pub use ready::{ApiReady, ServerInfo};
pub use records::{DeleteRecords, EnsureRecords, RecordsOutput};
pub use wire::{Reply, WireRecord, ask, encode_query, type_code, type_name};
pub use zone::{DeleteZone, EnsureZone, EnsureZoneMetadata, ZoneOutput};
