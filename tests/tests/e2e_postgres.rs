//! The end-to-end suite again, on the PostgreSQL store: the same files as
//! `e2e` (tests/e2e.rs), included by path. The harness sees this binary's
//! name and gives every `ServerState` a fresh database on the machine's
//! server (see tests/src/lib.rs); PostgreSQL must be running (.ci/run starts
//! it), or every test here fails saying how to start it. Run one behaviour
//! with `cargo test -p gateway-tests --test e2e_postgres lookup::`.
//!
//! Not included, each for its reason:
//! - `backup_restore`: `gateway backup` copies the embedded store (PostgreSQL
//!   deployments use pg_dump / pg_basebackup, see the README);
//! - `store_copy`: moves an embedded store into PostgreSQL (its own database
//!   per run, so it runs in `e2e` and covers PostgreSQL there);
//! - `store_upgrade`: migrates a first-release SQLite file (the PostgreSQL
//!   schema starts at its own version 1);
//! - `cli_quickstart`: the quickstart is the embedded store by definition (no [store] url);
//! - `cli_simulate`: starts no gateway store;
//! - `config_check`: checks configuration files only;
//! - `dev_mode_only_on_loopback`: refused before any store is opened;
//! - `policy_lint`: lints policy files only.

mod allocator;
use allocator::live_heap_bytes;

mod audit_support;

mod allow_list;

mod audit_checkpoint_signature;

mod audit_cli;

mod audit_delivery_commitment;

mod audit_export_large_entries;

mod audit_entries_without_personal_data;

mod audit_free_text;

mod audit_proofs;

mod audit_reads_audited;

mod audit_tamper_altered_byte;

mod audit_tamper_dropped_reordered;

mod audit_tamper_rewritten_history;

mod audit_subject_report;

mod audit_trail;

mod audit_verify_strict;

mod capabilities;

mod cli_console;

mod cli_pull_resume;

mod crash_durability;

mod data_at_rest;

mod fuzz_grpc;

mod health_and_reflection;

mod hostile_values;

mod identifiers_in_recorded_fields;

mod key_rotation;

mod limits;

mod lookup;

mod lookup_consolidates;

mod lookup_scope;

mod metrics;

mod policy_hot_reload;

mod pull_backpressure;

mod pull_follow;

mod pull_masked;

mod pull_metadata;

mod push_hrss_samples;

mod push_limits;

mod push_report;

mod push_samples;

mod readiness_drain;

mod refusal_floods;

mod refused_connections;

mod reidentification;

mod revocation_reload;

mod role_matrix;

mod undecodable_bodies;

mod replicas;

mod replica_faults;
