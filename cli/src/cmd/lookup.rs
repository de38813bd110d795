//! `gateway lookup`: the one-visit view for a union officer. One applicant's
//! identity number (typed from the application form), a case number and a
//! purpose in; one consolidated, policy-shaped profile out, across all six
//! agencies, as a readable summary (or JSON for machines).

use crate::cli::ClientArgs;
use clap::Args;
use gateway::client;
use gateway::proto::{self, DeliveredRecord, union_exchange_client::UnionExchangeClient};
use std::collections::BTreeMap;
use std::io::Write as _;
use tonic::transport::Channel;

#[derive(Args)]
pub struct LookupArgs {
    /// The applicant's identity number, as typed from the application form.
    #[arg(long)]
    id_number: String,
    /// The case this look-up is for (recorded in the audit log), of the gateway's
    /// configured form: by default ASCII letters, digits, `-`, `/`, `.`, 1–64 of them.
    #[arg(long)]
    case: String,
    #[arg(long)]
    purpose: String,
    /// Print JSON instead of the readable summary.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

pub async fn run(args: LookupArgs) -> anyhow::Result<()> {
    let tls = args.client.tls("union/assistance")?;
    let channel = client::connect(&args.client.addr, &tls).await?;
    let answer = lookup(channel, &args.id_number, &args.case, &args.purpose).await?;
    if args.json {
        writeln!(
            std::io::stdout().lock(),
            "{}",
            serde_json::to_string_pretty(&json(&answer))?
        )?;
    } else {
        write!(
            std::io::stdout().lock(),
            "{}",
            summary(&answer, &args.case, &args.purpose)
        )?;
    }
    Ok(())
}

/// Asks the gateway for one person's records for a case.
pub async fn lookup(
    channel: Channel,
    id_number: &str,
    case_number: &str,
    purpose: &str,
) -> anyhow::Result<proto::LookupResponse> {
    let mut client = UnionExchangeClient::new(channel);
    Ok(client
        .lookup(proto::LookupRequest {
            id_number: id_number.to_string(),
            case_number: case_number.to_string(),
            purpose: purpose.to_string(),
        })
        .await?
        .into_inner())
}

fn fields(r: &DeliveredRecord) -> BTreeMap<&str, &str> {
    r.fields
        .iter()
        .map(|f| (f.name.as_str(), f.value.as_str()))
        .collect()
}

fn label(table: &[(&str, &str)], code: &str) -> String {
    match table.iter().find(|(c, _)| *c == code) {
        Some((_, l)) => format!("{l} ({code})"),
        None => code.to_string(),
    }
}

const INSURANCE: &[(&str, &str)] = &[
    ("110", "enterprise pension"),
    ("120", "public-sector pension"),
    ("210", "unemployment"),
    ("310", "employee medical"),
    ("410", "work injury"),
    ("510", "maternity"),
];
const CONTRIBUTION: &[(&str, &str)] = &[("1", "paying"), ("2", "suspended"), ("3", "terminated")];
const REGISTRATION: &[(&str, &str)] = &[
    ("1", "active"),
    ("2", "revoked"),
    ("3", "deregistered"),
    ("4", "moved out"),
];
const HOUSING_STATUS: &[(&str, &str)] = &[
    ("1", "applied"),
    ("2", "approved"),
    ("3", "housed / subsidy paid"),
    ("4", "exited"),
    ("5", "rejected"),
];
const SEVERITY: &[(&str, &str)] = &[("1", "minor"), ("2", "serious"), ("3", "fatal")];

/// The readable summary an officer sees. Only what the policy released appears.
pub fn summary(r: &proto::LookupResponse, case: &str, purpose: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Applicant {}   case {case}   purpose {purpose}",
        r.subject
    );
    let _ = writeln!(out, "policy {}", r.policy_version);
    let by_kind = |k: &str| {
        r.records
            .iter()
            .filter(move |x| x.kind == k)
            .collect::<Vec<_>>()
    };
    let other = |f: &BTreeMap<&str, &str>, skip: &[&str]| {
        f.iter()
            .filter(|(k, _)| !skip.contains(k))
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };

    let household = by_kind("household");
    let _ = writeln!(out, "\nHousehold registration (public security)");
    if household.is_empty() {
        let _ = writeln!(out, "  none released");
    }
    for h in household {
        let _ = writeln!(out, "  {}", other(&fields(h), &["person_id"]));
    }

    let _ = writeln!(
        out,
        "\nSocial insurance (human resources & social security)"
    );
    let mut per_type: BTreeMap<String, Vec<BTreeMap<&str, &str>>> = BTreeMap::new();
    for s in by_kind("social_insurance") {
        let f = fields(s);
        per_type
            .entry(f.get("insurance_type").copied().unwrap_or("?").to_string())
            .or_default()
            .push(f);
    }
    if per_type.is_empty() {
        let _ = writeln!(out, "  none released");
    }
    for (t, mut rows) in per_type {
        rows.sort_by(|a, b| {
            a.get("contribution_month")
                .cmp(&b.get("contribution_month"))
        });
        let last = rows.last().expect("non-empty group");
        let _ = writeln!(
            out,
            "  {}: latest {} {} at {}",
            label(INSURANCE, &t),
            last.get("contribution_month").unwrap_or(&"?"),
            label(
                CONTRIBUTION,
                last.get("contribution_status").unwrap_or(&"?")
            ),
            last.get("employer_name").unwrap_or(&"?"),
        );
        let trend: Vec<String> = rows
            .iter()
            .filter_map(|f| {
                Some(format!(
                    "{} {}",
                    f.get("contribution_month")?,
                    f.get("contribution_base")?
                ))
            })
            .collect();
        if !trend.is_empty() {
            let _ = writeln!(out, "      contribution base: {}", trend.join(" → "));
        }
    }

    let _ = writeln!(out, "\nHousing assistance (housing)");
    let housing = by_kind("housing_assistance");
    if housing.is_empty() {
        let _ = writeln!(out, "  none released");
    }
    for h in housing {
        let f = fields(h);
        let _ = writeln!(
            out,
            "  {}; {}",
            label(HOUSING_STATUS, f.get("status").unwrap_or(&"?")),
            other(&f, &["person_id", "status"])
        );
    }

    let _ = writeln!(out, "\nEmployers (market regulation, tax)");
    let enterprises = by_kind("enterprise");
    let taxpayers = by_kind("taxpayer");
    if enterprises.is_empty() && taxpayers.is_empty() {
        let _ = writeln!(out, "  none released");
    }
    for e in enterprises {
        let f = fields(e);
        let code = f.get("credit_code").copied().unwrap_or("?");
        let _ = writeln!(
            out,
            "  {code} {}: {}",
            f.get("enterprise_name").unwrap_or(&""),
            label(REGISTRATION, f.get("registration_status").unwrap_or(&"?"))
        );
        for t in taxpayers
            .iter()
            .map(|t| fields(t))
            .filter(|t| t.get("credit_code") == Some(&code))
        {
            let _ = writeln!(
                out,
                "      tax year {}: credit rating {}, arrears {}",
                t.get("tax_year").unwrap_or(&"?"),
                t.get("credit_rating").unwrap_or(&"?"),
                t.get("tax_arrears").unwrap_or(&"?")
            );
        }
    }

    let _ = writeln!(out, "\nWorkplace injuries (work safety)");
    let injuries = by_kind("work_injury");
    if injuries.is_empty() {
        let _ = writeln!(out, "  none released");
    }
    for i in injuries {
        let f = fields(i);
        let _ = writeln!(
            out,
            "  {} {}; {}",
            f.get("accident_date").unwrap_or(&"?"),
            label(SEVERITY, f.get("injury_severity").unwrap_or(&"?")),
            other(&f, &["person_id", "accident_date", "injury_severity"])
        );
    }
    out
}

/// The JSON form (`--json`).
pub fn json(r: &proto::LookupResponse) -> serde_json::Value {
    serde_json::json!({
        "subject": r.subject,
        "policy_version": r.policy_version,
        "records": r.records.iter().map(|x| serde_json::json!({
            "kind": x.kind,
            "record_id": x.record_id,
            "fields": fields(x),
        })).collect::<Vec<_>>(),
    })
}
