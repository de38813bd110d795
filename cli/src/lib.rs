//! The `gateway` command line, apart from the server library it drives: the
//! library links no argument parser and no terminal output, and the binary
//! stays a thin edge where errors become messages and exit codes.

#![forbid(unsafe_code)]

pub mod cli;
pub mod cli_audit;
pub mod cli_config;
pub mod cli_lookup;
pub mod cli_pull;
pub mod cli_simulate;
pub mod cli_store;

// The commands name the server library's items as `crate::…`, as they did
// when they lived inside it.
use gateway::{
    Gateway, MAX_MESSAGE_BYTES, audit, client, config, keys, metrics, pki, proto, reload_tls,
    rotation, serve, store, telemetry, tls,
};
