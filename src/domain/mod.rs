//! Domain types and rules: no HTTP, no SQL.

pub mod events;
pub mod projection;
