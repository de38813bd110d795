//! The policy file format (TOML) and its validation, with every problem located
//! by line. The lint (`gateway policy check`) and the gateway's loader both run
//! this, so what the lint passes is exactly what the gateway serves.
//!
//! ```toml
//! consumer = "assistance"
//! purposes = ["hardship_screening"]
//! reidentification = false            # optional
//!
//! [kinds.social_insurance]
//! filter = [{ field = "contribution_status", in = ["2", "3"] }]   # optional
//! [kinds.social_insurance.fields]
//! person_id = { op = "pseudonymise" }
//! name = { op = "mask", keep_first = 1 }
//! contribution_base = { op = "keep", justification = "…" }
//! ```

use crate::{Condition, Diagnostic, FieldRule, KindPolicy, Operator, Policy};
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
    purposes: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    reidentification: bool,
    #[serde(default)]
    kinds: BTreeMap<Spanned<String>, KindFile>,
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
    }
    let mut purposes = Vec::new();
    if file.purposes.get_ref().is_empty() {
        p.at(
            file.purposes.span().start,
            "`purposes` must name at least one purpose".into(),
        );
    }
    for purpose in file.purposes.get_ref() {
        if !valid_name(purpose.get_ref()) {
            p.at(
                purpose.span().start,
                format!("invalid purpose name `{}`", purpose.get_ref()),
            );
        } else if purposes.contains(purpose.get_ref()) {
            p.at(
                purpose.span().start,
                format!("purpose `{}` is listed twice", purpose.get_ref()),
            );
        } else {
            purposes.push(purpose.get_ref().clone());
        }
    }

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
            let Some(field) = kind.field(field_name.get_ref()) else {
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
            if rule.op == Operator::Encrypt && !file.reidentification {
                p.at(
                    at,
                    format!("`{kind}.{}` is encrypted for re-identification, but the policy does not set `reidentification = true`", field.name),
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

    if !p.list.is_empty() {
        return Err(p.list);
    }
    Ok(Policy {
        consumer,
        description: file.description,
        purposes,
        reidentification: file.reidentification,
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
}
