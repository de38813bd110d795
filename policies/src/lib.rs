//! Field-level release policies: the step between the canonical records and a
//! union consumer. One policy file per consumer (`policies/shipped/*.toml`,
//! reviewed like code) names the consumer, its allowed purposes and, per record
//! kind, an optional row filter and one operator per field.
//!
//! Default deny: a kind or field that no rule names is never delivered, so a
//! field added to the canonical model later stays invisible until a policy names
//! it. Every policy version has a content hash, recorded with each delivery.
//! Loading and linting are the same code: a policy the lint refuses is never
//! served.

#![forbid(unsafe_code)]

mod file;
pub mod ops;

pub use ops::{
    ConsumerKeys, Context, Form, Generalisation, Operator, Pseudonymiser, Sealed, apply, apply_in,
    apply_text, mask,
};

use adapters::{Category, FieldSpec, Record, RecordKind, Value, ValueType};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a policy file, located by line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: PathBuf,
    /// 1-based line; 0 when the problem concerns the file as a whole.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
}

/// A field rule resolved against the canonical schema.
#[derive(Debug, Clone)]
pub struct FieldRule {
    pub field: &'static FieldSpec,
    pub op: Operator,
    pub justification: Option<String>,
}

/// A row filter condition: the field's delivered-form-independent value (as
/// rendered) must be in `values` (or, with `negate`, must not be).
#[derive(Debug, Clone)]
pub struct Condition {
    pub field: &'static FieldSpec,
    pub values: Vec<String>,
    pub negate: bool,
}

impl Condition {
    fn matches(&self, record: &Record) -> bool {
        let value = record.fields.get(self.field.name).map(Value::render);
        let found = value.is_some_and(|v| self.values.contains(&v));
        found != self.negate
    }
}

/// What a policy releases of one record kind.
#[derive(Debug, Clone, Default)]
pub struct KindPolicy {
    /// All conditions must hold for a record to be delivered.
    pub filter: Vec<Condition>,
    /// Rules in canonical field order.
    pub fields: Vec<FieldRule>,
}

/// What a purpose lets a consumer do. A purpose grants `pull` unless its
/// policy says otherwise; `lookup` (one named person across all agencies)
/// and `reidentify` (opening a sealed value) belong to work on a named
/// person's case and are granted purpose by purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    Pull,
    Lookup,
    Reidentify,
}

impl Operation {
    pub const ALL: [Operation; 3] = [Operation::Pull, Operation::Lookup, Operation::Reidentify];

    pub fn id(self) -> &'static str {
        match self {
            Operation::Pull => "pull",
            Operation::Lookup => "lookup",
            Operation::Reidentify => "reidentify",
        }
    }

    pub fn from_id(id: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|o| o.id() == id)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// Names no consumer may have: the gateway's own pseudonym domains (the
/// auditors' tokens, refused caller text). A consumer so named would share
/// their keys, so its pseudonyms would be the auditors' tokens.
pub const RESERVED_CONSUMERS: &[&str] = &["auditors", "refused_text"];

/// The change timestamp of a record (the agency's version, `BGSJ`) as a
/// policy names it: metadata, but delivered only like any other field, when a
/// rule names it and in the form the rule says (a date generalised to a month
/// would otherwise be given away by the second the record changed).
pub static CHANGED_AT: FieldSpec = FieldSpec {
    name: "changed_at",
    ty: ValueType::Timestamp,
    category: Category::Administrative,
    source: "BGSJ",
    description: "when the agency last changed the record (its version)",
};

/// A field of `kind` as a policy may name it: the kind's canonical fields and
/// the record's change timestamp.
pub fn policy_field(kind: RecordKind, name: &str) -> Option<&'static FieldSpec> {
    kind.field(name)
        .or_else(|| (name == CHANGED_AT.name).then_some(&CHANGED_AT))
}

/// A consumer's loaded, validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub consumer: String,
    pub description: String,
    /// The purposes in the file's order.
    pub purposes: Vec<String>,
    /// What each purpose grants.
    pub grants: BTreeMap<String, Vec<Operation>>,
    pub kinds: BTreeMap<RecordKind, KindPolicy>,
    /// `sha256:<hex>` of the policy file's bytes.
    pub version: String,
    pub source: PathBuf,
}

/// A field as delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredField {
    pub name: &'static str,
    pub value: String,
    pub form: Form,
}

impl Policy {
    /// Parses and validates a policy file's text; every problem is reported with
    /// its line.
    pub fn parse(path: &Path, text: &str) -> Result<Policy, PolicyError> {
        file::parse(path, text).map_err(PolicyError::Invalid)
    }

    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn allows_purpose(&self, purpose: &str) -> bool {
        self.purposes.iter().any(|p| p == purpose)
    }

    /// Whether `purpose` is one of this policy's and grants `op`.
    pub fn grants(&self, purpose: &str, op: Operation) -> bool {
        self.grants
            .get(purpose)
            .is_some_and(|ops| ops.contains(&op))
    }

    /// Whether any purpose grants re-identification.
    pub fn reidentification(&self) -> bool {
        self.grants
            .values()
            .any(|ops| ops.contains(&Operation::Reidentify))
    }

    /// The operator this policy applies to `kind.field`, if it names it.
    pub fn rule(&self, kind: RecordKind, field: &str) -> Option<&FieldRule> {
        self.kinds
            .get(&kind)?
            .fields
            .iter()
            .find(|r| r.field.name == field)
    }

    /// Whether a sealed value of `field` (`kind.field`) is still delivered
    /// sealed: a re-identification token opens only while it is.
    pub fn seals(&self, field: &str) -> bool {
        let Some((kind, name)) = field.split_once('.') else {
            return false;
        };
        RecordKind::from_id(kind)
            .and_then(|kind| self.rule(kind, name))
            .is_some_and(|r| r.op == Operator::Encrypt)
    }

    /// The employer a delivered record names in clear, if the policy keeps
    /// the record's employer field: a look-up reaches an employer's registry
    /// and tax records only through such a record, never through one the
    /// consumer does not receive or receives without the employer.
    pub fn delivered_employer<'r>(&self, record: &'r Record) -> Option<&'r str> {
        let code = record.enterprise.as_ref()?;
        let kind = self.kinds.get(&record.kind)?;
        kind.fields
            .iter()
            .any(|r| {
                r.field.ty == ValueType::CreditCode
                    && r.op == Operator::Keep
                    && record
                        .fields
                        .get(r.field.name)
                        .is_some_and(|v| v.render() == code.as_str())
            })
            .then(|| code.as_str())
    }

    pub fn releases_kind(&self, kind: RecordKind) -> bool {
        self.kinds.contains_key(&kind)
    }

    /// Whether the kind's row filter lets this record through.
    pub fn admits(&self, record: &Record) -> bool {
        self.kinds
            .get(&record.kind)
            .is_some_and(|k| k.filter.iter().all(|c| c.matches(record)))
    }

    /// Shapes one record: only named fields, each in its form. Records the
    /// kind's filter excludes, and kinds the policy does not name, yield nothing.
    pub fn shape(&self, record: &Record, keys: &ConsumerKeys) -> Vec<DeliveredField> {
        let Some(kind) = self.kinds.get(&record.kind) else {
            return Vec::new();
        };
        let subject = record.person.as_ref().map(|p| p.expose()).unwrap_or("");
        kind.fields
            .iter()
            .filter_map(|rule| {
                let changed_at;
                let value = if std::ptr::eq(rule.field, &CHANGED_AT) {
                    changed_at = Value::Timestamp(record.changed_at);
                    &changed_at
                } else {
                    record.fields.get(rule.field.name)?
                };
                // Only sealed values carry their context (built only for them).
                let field = match rule.op {
                    Operator::Encrypt => format!("{}.{}", record.kind.id(), rule.field.name),
                    _ => String::new(),
                };
                let ctx = Context {
                    field: &field,
                    subject,
                };
                let (value, form) = apply_in(&rule.op, value, keys, ctx)?;
                Some(DeliveredField {
                    name: rule.field.name,
                    value,
                    form,
                })
            })
            .collect()
    }

    /// The record's change timestamp as this policy delivers it (for a
    /// removal, which carries no fields); `None` when the policy does not
    /// name `changed_at` for the record's kind.
    pub fn changed_at(&self, record: &Record, keys: &ConsumerKeys) -> Option<String> {
        let rule = self.rule(record.kind, CHANGED_AT.name)?;
        apply_in(
            &rule.op,
            &Value::Timestamp(record.changed_at),
            keys,
            Context::default(),
        )
        .map(|(value, _)| value)
    }

    /// `kind.field` → form, for the audit entry of a delivery of `kinds`.
    pub fn forms(&self, kinds: &[RecordKind]) -> BTreeMap<String, &'static str> {
        let mut m = BTreeMap::new();
        for k in kinds {
            for rule in self
                .kinds
                .get(k)
                .map(|k| k.fields.as_slice())
                .unwrap_or_default()
            {
                if let Some(form) = rule.op.form() {
                    // Built by hand: `format!` was half the cost of this map,
                    // made for every look-up's audit entry.
                    let mut name = String::with_capacity(k.id().len() + 1 + rule.field.name.len());
                    name.push_str(k.id());
                    name.push('.');
                    name.push_str(rule.field.name);
                    m.insert(name, form.as_str());
                }
            }
        }
        m
    }
}

/// All consumers' policies, by consumer name.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    pub policies: BTreeMap<String, Policy>,
}

impl PolicySet {
    /// Loads every `*.toml` in `dir`. Any problem in any file fails the whole set
    /// (all problems are reported), so a broken policy is never half applied.
    pub fn load_dir(dir: &Path) -> Result<PolicySet, PolicyError> {
        let entries = std::fs::read_dir(dir).map_err(|source| PolicyError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        let mut set = PolicySet::default();
        let mut problems = Vec::new();
        for path in paths {
            match Policy::load(&path) {
                Ok(policy) => {
                    if let Some(other) = set.policies.get(&policy.consumer) {
                        problems.push(Diagnostic {
                            path: path.clone(),
                            line: 0,
                            message: format!(
                                "consumer `{}` already has a policy in {}",
                                policy.consumer,
                                other.source.display()
                            ),
                        });
                    } else {
                        set.policies.insert(policy.consumer.clone(), policy);
                    }
                }
                Err(PolicyError::Invalid(d)) => problems.extend(d),
                Err(e) => return Err(e),
            }
        }
        if problems.is_empty() {
            Ok(set)
        } else {
            Err(PolicyError::Invalid(problems))
        }
    }

    pub fn get(&self, consumer: &str) -> Option<&Policy> {
        self.policies.get(consumer)
    }

    pub fn consumers(&self) -> impl Iterator<Item = &str> {
        self.policies.keys().map(String::as_str)
    }

    /// Consumer → policy version, for audit entries.
    pub fn versions(&self) -> BTreeMap<String, String> {
        self.policies
            .values()
            .map(|p| (p.consumer.clone(), p.version.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_policies_pass_the_lint() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shipped");
        let set = PolicySet::load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert!(set.get("assistance").is_some());
    }

    #[test]
    fn a_second_policy_for_the_same_consumer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let text = "consumer = \"c\"\npurposes = [\"x\"]\n";
        std::fs::write(dir.path().join("a.toml"), text).unwrap();
        std::fs::write(dir.path().join("b.toml"), text).unwrap();
        let err = PolicySet::load_dir(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("b.toml: consumer `c` already has a policy"),
            "{err}"
        );
    }
}
