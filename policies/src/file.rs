//! The policy file format (TOML) and its validation, with every problem located
//! by line. The lint (`gateway policy check`) and the gateway's loader both run
//! this, so what the lint passes is exactly what the gateway serves.
//!
//! ```toml
//! consumer = "assistance"
//! # Each purpose grants operations: `pull` (the default), `lookup`,
//! # `reidentify`. `purposes = ["a", "b"]` is short for pull-only purposes.
//! [purposes.hardship_screening]
//! [purposes.hardship_application]
//! operations = ["pull", "lookup", "reidentify"]
//!
//! [kinds.social_insurance]
//! filter = [{ field = "contribution_status", in = ["2", "3"] }]   # optional
//! [kinds.social_insurance.fields]
//! person_id = { op = "pseudonymise" }
//! name = { op = "mask", keep_first = 1 }
//! contribution_base = { op = "keep", justification = "…" }
//! ```

use crate::{Condition, Diagnostic, FieldRule, KindPolicy, Operation, Operator, Policy};
use adapters::{RecordKind, ValueType};
use ring::digest;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    consumer: Spanned<String>,
    #[serde(default)]
    description: String,
    purposes: Spanned<PurposesFile>,
    /// Replaced by the `reidentify` operation of a purpose; named here only
    /// to point an old file at its replacement.
    #[serde(default)]
    reidentification: Option<Spanned<bool>>,
    #[serde(default)]
    kinds: BTreeMap<Spanned<String>, KindFile>,
}

/// `purposes = ["a", "b"]` (each grants pull only) or a table of purposes,
/// each with the operations it grants.
struct PurposesFile(Vec<(Spanned<String>, PurposeFile)>);

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PurposeFile {
    #[serde(default)]
    operations: Option<Vec<Spanned<String>>>,
    /// Why the purpose exists and why it grants what it grants (for reviewers).
    #[serde(default)]
    #[allow(dead_code)]
    description: String,
}

impl<'de> Deserialize<'de> for PurposesFile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = PurposesFile;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of purpose names or a table of purposes")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(name) = seq.next_element::<Spanned<String>>()? {
                    out.push((name, PurposeFile::default()));
                }
                Ok(PurposesFile(out))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((name, purpose)) =
                    map.next_entry::<Spanned<String>, PurposeFile>()?
                {
                    out.push((name, purpose));
                }
                Ok(PurposesFile(out))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KindFile {
    #[serde(default)]
    filter: Vec<Spanned<ConditionFile>>,
    #[serde(default)]
    fields: BTreeMap<Spanned<String>, Spanned<FieldFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionFile {
    field: String,
    #[serde(default, rename = "in")]
    is_in: Option<Vec<String>>,
    #[serde(default)]
    not_in: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct FieldFile {
    #[serde(flatten)]
    op: Operator,
    #[serde(default)]
    justification: Option<String>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

struct Problems<'a> {
    path: &'a Path,
    text: &'a str,
    list: Vec<Diagnostic>,
}

impl Problems<'_> {
    fn at(&mut self, offset: usize, message: String) {
        self.list.push(Diagnostic {
            path: self.path.to_path_buf(),
            line: line_of(self.text, offset),
            message,
        });
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

pub(crate) fn parse(path: &Path, text: &str) -> Result<Policy, Vec<Diagnostic>> {
    let mut p = Problems {
        path,
        text,
        list: Vec::new(),
    };
    let file: PolicyFile = match toml::from_str(text) {
        Ok(f) => f,
        Err(e) => {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            p.at(offset, e.message().trim().to_string());
            return Err(p.list);
        }
    };

    let consumer = file.consumer.get_ref().clone();
    if !valid_name(&consumer) {
        p.at(
            file.consumer.span().start,
            "`consumer` must be 1–64 characters of a–z, 0–9, '_' or '-' (it is the certificate's name)".into(),
        );
    } else if crate::RESERVED_CONSUMERS.contains(&consumer.as_str()) {
        p.at(
            file.consumer.span().start,
            format!("`{consumer}` is reserved for the gateway's own pseudonym domain"),
        );
    }
    if let Some(flag) = &file.reidentification {
        p.at(
            flag.span().start,
            "`reidentification` is replaced by a purpose's operations: grant `reidentify` to the purposes that may open sealed values, e.g. [purposes.case_work] operations = [\"pull\", \"reidentify\"]".into(),
        );
    }
    let purposes_at = file.purposes.span().start;
    let mut purposes = Vec::new();
    let mut grants: BTreeMap<String, Vec<Operation>> = BTreeMap::new();
    if file.purposes.get_ref().0.is_empty() {
        p.at(
            purposes_at,
            "`purposes` must name at least one purpose".into(),
        );
    }
    // Where each operation is first granted, for the lint's line numbers.
    let mut granted_at: BTreeMap<Operation, usize> = BTreeMap::new();
    for (purpose, spec) in file.purposes.into_inner().0 {
        if !valid_name(purpose.get_ref()) {
            p.at(
                purpose.span().start,
                format!("invalid purpose name `{}`", purpose.get_ref()),
            );
            continue;
        }
        if purposes.contains(purpose.get_ref()) {
            p.at(
                purpose.span().start,
                format!("purpose `{}` is listed twice", purpose.get_ref()),
            );
            continue;
        }
        let mut ops = Vec::new();
        match spec.operations {
            None => ops.push(Operation::Pull),
            Some(list) => {
                if list.is_empty() {
                    p.at(
                        purpose.span().start,
                        format!(
                            "purpose `{}` grants no operation (omit `operations` for pull only)",
                            purpose.get_ref()
                        ),
                    );
                }
                for op in list {
                    match Operation::from_id(op.get_ref()) {
                        Some(o) if ops.contains(&o) => {
                            p.at(op.span().start, format!("operation `{o}` is listed twice"))
                        }
                        Some(o) => {
                            granted_at.entry(o).or_insert(op.span().start);
                            ops.push(o);
                        }
                        None if op.get_ref() == "aggregate" => p.at(
                            op.span().start,
                            "operation `aggregate` is not supported yet".into(),
                        ),
                        None => p.at(
                            op.span().start,
                            format!(
                                "unknown operation `{}` (known: {})",
                                op.get_ref(),
                                Operation::ALL.map(Operation::id).join(", ")
                            ),
                        ),
                    }
                }
            }
        }
        ops.sort();
        purposes.push(purpose.get_ref().clone());
        grants.insert(purpose.into_inner(), ops);
    }
    let reidentification = granted_at.contains_key(&Operation::Reidentify);

    let mut kinds = BTreeMap::new();
    for (kind_name, kind_file) in file.kinds {
        let Some(kind) = RecordKind::from_id(kind_name.get_ref()) else {
            p.at(
                kind_name.span().start,
                format!(
                    "unknown record kind `{}` (known: {})",
                    kind_name.get_ref(),
                    RecordKind::ALL.map(|k| k.id()).join(", ")
                ),
            );
            continue;
        };
        let mut kp = KindPolicy::default();
        for cond in kind_file.filter {
            let at = cond.span().start;
            let c = cond.into_inner();
            let Some(field) = kind.field(&c.field) else {
                p.at(
                    at,
                    format!("filter on unknown field `{}` of kind `{kind}`", c.field),
                );
                continue;
            };
            let (values, negate) = match (c.is_in, c.not_in) {
                (Some(v), None) => (v, false),
                (None, Some(v)) => (v, true),
                _ => {
                    p.at(
                        at,
                        format!(
                            "filter on `{}` needs exactly one of `in` or `not_in`",
                            c.field
                        ),
                    );
                    continue;
                }
            };
            if values.is_empty() {
                p.at(
                    at,
                    format!("filter on `{}` has an empty value list", c.field),
                );
                continue;
            }
            if matches!(field.ty, ValueType::IdentityNumber) || field.category.is_personal() {
                p.at(
                    at,
                    format!("filter on personal field `{}` is not allowed: it would leak values through the policy file", c.field),
                );
                continue;
            }
            kp.filter.push(Condition {
                field,
                values,
                negate,
            });
        }
        for (field_name, rule) in kind_file.fields {
            let at = field_name.span().start;
            let Some(field) = crate::policy_field(kind, field_name.get_ref()) else {
                p.at(
                    at,
                    format!(
                        "kind `{kind}` has no field `{}` (fields: {})",
                        field_name.get_ref(),
                        kind.schema()
                            .iter()
                            .map(|f| f.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                continue;
            };
            let rule = rule.into_inner();
            check_operator(&mut p, at, kind, field, &rule.op);
            if rule.op == Operator::Keep && field.category.is_sensitive() {
                match &rule.justification {
                    Some(j) if j.trim().len() >= 10 => {}
                    _ => p.at(
                        at,
                        format!(
                            "`{kind}.{}` is {} data delivered in clear: add a written `justification`",
                            field.name,
                            field.category.id()
                        ),
                    ),
                }
            }
            if rule.op == Operator::Encrypt && !reidentification {
                p.at(
                    at,
                    format!("`{kind}.{}` is encrypted for re-identification, but no purpose grants `reidentify`: nobody could open it", field.name),
                );
            }
            kp.fields.push(FieldRule {
                field,
                op: rule.op,
                justification: rule.justification,
            });
        }
        kp.fields
            .sort_by_key(|r| kind.schema().iter().position(|s| s.name == r.field.name));
        kinds.insert(kind, kp);
    }

    // Grants that cannot work are refused: they would read as permissions
    // the gateway never exercises.
    if let Some(&at) = granted_at.get(&Operation::Reidentify) {
        let seals = kinds
            .values()
            .any(|k| k.fields.iter().any(|r| r.op == Operator::Encrypt));
        if !seals {
            p.at(
                at,
                "`reidentify` is granted, but no field is delivered with `encrypt`: there is nothing to re-identify".into(),
            );
        }
    }
    if let Some(&at) = granted_at.get(&Operation::Lookup) {
        let persons = kinds.keys().any(|k| k.field("person_id").is_some());
        if !persons {
            p.at(
                at,
                "`lookup` is granted, but the policy releases no kind of person record: a look-up would find nothing".into(),
            );
        }
    }

    if !p.list.is_empty() {
        return Err(p.list);
    }
    Ok(Policy {
        consumer,
        description: file.description,
        purposes,
        grants,
        kinds,
        version: format!(
            "sha256:{}",
            hex::encode(digest::digest(&digest::SHA256, text.as_bytes()))
        ),
        source: path.to_path_buf(),
    })
}

/// Checks that an operator fits the field's type.
fn check_operator(
    p: &mut Problems<'_>,
    at: usize,
    kind: RecordKind,
    field: &adapters::FieldSpec,
    op: &Operator,
) {
    use crate::Generalisation as G;
    let name = field.name;
    match op {
        Operator::Mask { mask_char, .. } if mask_char.is_control() => {
            p.at(
                at,
                format!("`{kind}.{name}`: the mask character must be printable"),
            );
        }
        Operator::Generalise { to, width, bands } => {
            let fits = match to {
                G::Year => matches!(
                    field.ty,
                    ValueType::Date | ValueType::YearMonth | ValueType::Year | ValueType::Timestamp
                ),
                G::Month => matches!(
                    field.ty,
                    ValueType::Date | ValueType::YearMonth | ValueType::Timestamp
                ),
                G::AgeBand => matches!(field.ty, ValueType::Date | ValueType::IdentityNumber),
                G::District | G::City => {
                    matches!(field.ty, ValueType::Division | ValueType::IdentityNumber)
                }
                G::MoneyBand => matches!(field.ty, ValueType::Money),
            };
            if !fits {
                p.at(
                    at,
                    format!(
                        "`{kind}.{name}` ({:?}) cannot be generalised to {to:?}",
                        field.ty
                    ),
                );
            }
            if width.is_some() && *to != G::AgeBand {
                p.at(
                    at,
                    format!("`{kind}.{name}`: `width` applies only to age_band"),
                );
            }
            if width == &Some(0) {
                p.at(at, format!("`{kind}.{name}`: `width` must be at least 1"));
            }
            if *to == G::MoneyBand {
                if bands.is_empty() || !bands.windows(2).all(|w| w[0] < w[1]) {
                    p.at(
                        at,
                        format!("`{kind}.{name}`: money_band needs `bands`, strictly ascending"),
                    );
                }
            } else if !bands.is_empty() {
                p.at(
                    at,
                    format!("`{kind}.{name}`: `bands` applies only to money_band"),
                );
            }
        }
        Operator::Scrub if field.ty != ValueType::Text => {
            p.at(
                at,
                format!("`{kind}.{name}`: scrub applies to free text only"),
            );
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match parse(Path::new("p.toml"), text) {
            Ok(_) => Vec::new(),
            Err(d) => d.iter().map(ToString::to_string).collect(),
        }
    }

    const BASE: &str = "consumer = \"c\"\npurposes = [\"x\"]\n";

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let e = errors(&format!(
            "{BASE}[kinds.nope.fields]\na = {{ op = \"keep\" }}\n[kinds.social_insurance.fields]\nshoe_size = {{ op = \"keep\" }}\nperson_id = {{ op = \"keep\" }}\n"
        ));
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(
            e[0].starts_with("p.toml:3: unknown record kind `nope`"),
            "{e:?}"
        );
        assert!(
            e.iter().any(|m| m.starts_with(
                "p.toml:7: `social_insurance.person_id` is identifier data delivered in clear"
            )),
            "{e:?}"
        );
        assert!(
            e.iter().any(
                |m| m.starts_with("p.toml:6: kind `social_insurance` has no field `shoe_size`")
            ),
            "{e:?}"
        );
    }

    #[test]
    fn unknown_operators_duplicates_and_bad_filters_are_errors() {
        let e = errors(&format!(
            "{BASE}[kinds.social_insurance.fields]\nname = {{ op = \"sha256\" }}\n"
        ));
        assert!(
            e[0].starts_with("p.toml:4:") && e[0].contains("sha256"),
            "{e:?}"
        );
        let e = errors(&format!(
            "{BASE}[kinds.social_insurance.fields]\nname = {{ op = \"keep\" }}\nname = {{ op = \"drop\" }}\n"
        ));
        assert!(
            e[0].starts_with("p.toml:5:") && e[0].contains("duplicate"),
            "{e:?}"
        );
        let e = errors(&format!(
            "{BASE}[kinds.social_insurance]\nfilter = [{{ field = \"contribution_status\" }}, {{ field = \"name\", in = [\"x\"] }}, {{ field = \"nope\", in = [\"1\"] }}]\n"
        ));
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e.iter().all(|m| m.starts_with("p.toml:4:")), "{e:?}");
        let e = errors("consumer = \"c\"\npurposes = [\"x\", \"x\"]\n");
        assert!(e[0].contains("listed twice"), "{e:?}");
    }

    #[test]
    fn operators_must_fit_the_field_type() {
        let e = errors(&format!(
            "{BASE}[kinds.social_insurance.fields]\nname = {{ op = \"generalise\", to = \"year\" }}\ncontribution_base = {{ op = \"generalise\", to = \"money_band\", bands = [5, 1] }}\nemployer_name = {{ op = \"encrypt\" }}\n"
        ));
        assert_eq!(e.len(), 3, "{e:?}");
    }

    #[test]
    fn a_valid_policy_parses_with_its_hash() {
        let text = format!(
            "{BASE}[kinds.social_insurance]\nfilter = [{{ field = \"contribution_status\", in = [\"2\"] }}]\n[kinds.social_insurance.fields]\nperson_id = {{ op = \"pseudonymise\" }}\ncontribution_base = {{ op = \"generalise\", to = \"money_band\", bands = [0, 3000] }}\n"
        );
        let p = parse(Path::new("p.toml"), &text).unwrap();
        assert!(p.version.starts_with("sha256:") && p.version.len() == 71);
        let k = &p.kinds[&RecordKind::SocialInsurance];
        assert_eq!(k.filter.len(), 1);
        assert_eq!(k.fields.len(), 2);
    }

    #[test]
    fn purposes_grant_operations_and_the_list_form_grants_pull_only() {
        let p = parse(
            Path::new("p.toml"),
            &format!("{BASE}[kinds.household.fields]\nperson_id = {{ op = \"pseudonymise\" }}\n"),
        )
        .unwrap();
        assert!(p.grants("x", Operation::Pull));
        assert!(!p.grants("x", Operation::Lookup));
        let text = "consumer = \"c\"\n[purposes.screening]\n[purposes.case_work]\noperations = [\"pull\", \"lookup\", \"reidentify\"]\n[kinds.household.fields]\nperson_id = { op = \"pseudonymise\" }\nname = { op = \"encrypt\" }\n";
        let p = parse(Path::new("p.toml"), text).unwrap();
        assert_eq!(p.purposes, ["case_work", "screening"]);
        assert!(p.grants("screening", Operation::Pull));
        assert!(!p.grants("screening", Operation::Lookup));
        assert!(p.grants("case_work", Operation::Reidentify));
        assert!(!p.grants("marketing", Operation::Pull));
        assert!(p.seals("household.name"));
        assert!(!p.seals("household.person_id"));
    }

    #[test]
    fn reserved_consumer_names_are_refused() {
        let e = errors("consumer = \"auditors\"\npurposes = [\"x\"]\n");
        assert!(
            e[0].starts_with("p.toml:1:") && e[0].contains("reserved"),
            "{e:?}"
        );
    }

    #[test]
    fn grants_that_cannot_work_are_refused() {
        // Re-identification with nothing sealed.
        let e = errors(
            "consumer = \"c\"\n[purposes.case]\noperations = [\"pull\", \"reidentify\"]\n[kinds.household.fields]\nperson_id = { op = \"pseudonymise\" }\n",
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("p.toml:3:") && e[0].contains("nothing to re-identify"),
            "{e:?}"
        );
        // A look-up for a consumer that receives no person records.
        let e = errors(
            "consumer = \"c\"\n[purposes.registry]\noperations = [\"lookup\"]\n[kinds.enterprise.fields]\ncredit_code = { op = \"keep\" }\n",
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("p.toml:3:") && e[0].contains("no kind of person record"),
            "{e:?}"
        );
        // A sealed field nobody may open.
        let e = errors(&format!(
            "{BASE}[kinds.household.fields]\nname = {{ op = \"encrypt\" }}\n"
        ));
        assert!(e.iter().any(|m| m.starts_with("p.toml:4:") && m.contains("no purpose grants `reidentify`")), "{e:?}");
        // Unknown and not-yet-supported operations, an empty grant, the old flag.
        let e = errors(
            "consumer = \"c\"\nreidentification = true\n[purposes.a]\noperations = [\"pull\", \"export\", \"aggregate\", \"pull\"]\n[purposes.b]\noperations = []\n",
        );
        assert_eq!(e.len(), 5, "{e:?}");
        assert!(
            e[0].starts_with("p.toml:2:") && e[0].contains("replaced by a purpose's operations"),
            "{e:?}"
        );
        assert!(
            e.iter().any(|m| m.contains("unknown operation `export`")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.contains("`aggregate` is not supported yet")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.contains("operation `pull` is listed twice")),
            "{e:?}"
        );
        assert!(e.iter().any(|m| m.contains("grants no operation")), "{e:?}");
    }

    #[test]
    fn changed_at_is_a_field_a_policy_names_and_shapes() {
        let p = parse(
            Path::new("p.toml"),
            &format!("{BASE}[kinds.work_injury.fields]\nchanged_at = {{ op = \"generalise\", to = \"month\" }}\n"),
        )
        .unwrap();
        assert_eq!(
            p.forms(&[RecordKind::WorkInjury])
                .get("work_injury.changed_at"),
            Some(&"generalised")
        );
        let e = errors(&format!(
            "{BASE}[kinds.work_injury.fields]\nchanged_at = {{ op = \"generalise\", to = \"money_band\", bands = [1] }}\n"
        ));
        assert_eq!(e.len(), 1, "{e:?}");
    }
}
