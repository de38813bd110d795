//! One module per `gateway` command, each with its flags and what it runs.

pub mod audit;
pub mod certs;
pub mod config;
pub mod console;
pub mod keys;
pub mod lookup;
pub mod policy;
pub mod pull;
pub mod push;
pub mod serve;
pub mod simulate;
pub mod store;
