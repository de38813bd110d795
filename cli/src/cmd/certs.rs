//! `gateway certs init`: a dev PKI, so that the quickstart runs with mutual
//! TLS from the first command (`serve` in dev mode creates one too).

use adapters::Agency;
use anyhow::bail;
use clap::{Args, Subcommand};
use gateway::config::DEV_CERTS_DIR;
use gateway::pki::{self, IdentityName};
use std::io::Write as _;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum CertsCommand {
    /// Create a dev CA, a server certificate (localhost, 127.0.0.1) and client
    /// certificates for the six agencies, every consumer of the shipped policies and
    /// one auditor.
    Init(CertsInitArgs),
}

#[derive(Args)]
pub struct CertsInitArgs {
    #[arg(long, default_value = DEV_CERTS_DIR)]
    dir: PathBuf,
    #[arg(
        long,
        env = "GATEWAY_TRUST_DOMAIN",
        default_value = "exchange.wuhu.example"
    )]
    trust_domain: String,
    /// Policies whose consumers get a certificate.
    #[arg(long, env = "GATEWAY_POLICIES_DIR", default_value = "policies/shipped")]
    policies_dir: PathBuf,
    /// Replace an existing dev PKI.
    #[arg(long)]
    force: bool,
}

/// Identities `certs init` issues: the six agencies, each policy's consumer, one auditor.
pub(crate) fn dev_identities(policies_dir: &Path) -> Vec<IdentityName> {
    let mut ids: Vec<IdentityName> = Agency::ALL
        .iter()
        .map(|a| IdentityName {
            role: "agency".into(),
            name: a.id().into(),
        })
        .collect();
    match policies::PolicySet::load_dir(policies_dir) {
        Ok(set) => ids.extend(set.consumers().map(|c| IdentityName {
            role: "union".into(),
            name: c.into(),
        })),
        Err(e) => eprintln!("warning: no consumer certificates: {e}"),
    }
    ids.push(IdentityName {
        role: "auditor".into(),
        name: "compliance".into(),
    });
    ids
}

pub fn init(args: CertsInitArgs) -> anyhow::Result<()> {
    if args.dir.join("ca.pem").exists() && !args.force {
        bail!(
            "{} already holds a dev PKI; pass --force to replace it",
            args.dir.display()
        );
    }
    let ids = dev_identities(&args.policies_dir);
    let pki = pki::init_dev_pki(&args.dir, &args.trust_domain, &ids)?;
    writeln!(
        std::io::stdout().lock(),
        "dev PKI written to {}:",
        pki.dir.display()
    )?;
    writeln!(
        std::io::stdout().lock(),
        "  ca.pem, server.pem/.key (localhost, 127.0.0.1, ::1), crl.pem"
    )?;
    for id in &pki.identities {
        writeln!(
            std::io::stdout().lock(),
            "  {}.pem/.key  {}",
            id.stem(),
            id.uri(&args.trust_domain)
        )?;
    }
    Ok(())
}
