//! The `gateway` command line, apart from the server library it drives: the
//! library links no argument parser, no terminal output and no console, and
//! the binary stays a thin edge where errors become messages and exit codes.
//! [`cli`] parses and dispatches; [`cmd`] has one module per command.

#![forbid(unsafe_code)]

pub mod cli;
pub mod cmd;

pub use cli::main;
