//! The end-to-end suite as one test binary: each behaviour keeps its own file
//! (a module here), and the gateway is linked once instead of once per file,
//! which was most of the suite's build time. Run one behaviour with
//! `cargo test -p gateway-tests --test e2e lookup::`. These run on the
//! embedded SQLite store; `e2e_postgres` runs the same files on PostgreSQL.

mod allocator;
use allocator::live_heap_bytes;

mod audit_support;

mod allow_list;
mod audit_checkpoint_signature;
mod audit_cli;
mod audit_delivery_commitment;
mod audit_entries_without_personal_data;
mod audit_export_large_entries;
mod audit_free_text;
mod audit_proofs;
mod audit_reads_audited;
mod audit_subject_report;
mod audit_tamper_altered_byte;
mod audit_tamper_dropped_reordered;
mod audit_tamper_rewritten_history;
mod audit_trail;
mod audit_verify_strict;
mod backup_restore;
mod capabilities;
mod cli_console;
mod cli_pull_resume;
mod cli_quickstart;
mod cli_simulate;
mod config_check;
mod crash_durability;
mod data_at_rest;
mod dev_mode_only_on_loopback;
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
mod policy_lint;
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
mod store_copy;
mod store_upgrade;
mod undecodable_bodies;
