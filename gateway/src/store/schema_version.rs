//! Schema versions, shared by every backend: a deployment that upgrades the
//! gateway keeps its data. Each backend records the version of its schema in
//! the store itself (how is its own choice: SQLite in the database header,
//! PostgreSQL in a table) and lists its forward migrations in order in its
//! own `schema` module, one [`Migration`] per change since the first
//! release's schema (version 1). At start-up it reads the recorded version,
//! asks [`pending`] which migrations to run, and runs them with the new
//! version in one transaction: an interrupted upgrade leaves the store as it
//! was. A store written by a newer gateway is refused, never guessed at, so
//! that a rolled-back binary cannot misread or damage it.

/// One forward migration: applying `step` to a store at `version - 1`
/// brings it to `version`. `step` is the backend's own (SQL text, a
/// function over its transaction, or both).
#[derive(Debug, Clone, Copy)]
pub struct Migration<S> {
    pub version: u32,
    /// What changed, for the log line written when it runs.
    pub what: &'static str,
    pub step: S,
}

/// The first release's schema: the version every migration list starts from.
pub const FIRST: u32 = 1;

/// Why a store's schema cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// Written by a newer gateway. Nothing was changed.
    #[error(
        "the store's schema is version {found}, newer than this gateway knows (versions up to \
         {known}): run the gateway release that wrote it (or a later one), or restore a backup \
         taken before the upgrade"
    )]
    Newer { found: u32, known: u32 },
    /// Not a layout of any release (another program's database, or one from
    /// before the first release). Nothing was changed.
    #[error("the store's schema is not one this gateway knows: {what}")]
    Unrecognised { what: String },
}

/// The schema version the last of `migrations` brings a store to (the
/// version a new store is created at).
pub fn current<S>(migrations: &[Migration<S>]) -> u32 {
    migrations.last().map_or(FIRST, |m| m.version)
}

/// The migrations a store at schema version `found` still needs, in order
/// (none when it is current), or why it cannot be opened.
///
/// Panics if `migrations` is not numbered `FIRST + 1, FIRST + 2, …`: a
/// gap or a repeat is a mistake in the gateway, found by its tests.
pub fn pending<S>(found: u32, migrations: &[Migration<S>]) -> Result<&[Migration<S>], SchemaError> {
    for (i, m) in migrations.iter().enumerate() {
        assert_eq!(
            m.version,
            FIRST + 1 + i as u32,
            "schema migrations must be numbered in order from {}",
            FIRST + 1
        );
    }
    let known = current(migrations);
    if found > known {
        return Err(SchemaError::Newer { found, known });
    }
    if found < FIRST {
        return Err(SchemaError::Unrecognised {
            what: format!("it records schema version {found}"),
        });
    }
    Ok(&migrations[(found - FIRST) as usize..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS: [Migration<&str>; 3] = [
        Migration {
            version: 2,
            what: "two",
            step: "b",
        },
        Migration {
            version: 3,
            what: "three",
            step: "c",
        },
        Migration {
            version: 4,
            what: "four",
            step: "d",
        },
    ];

    #[test]
    fn an_older_store_gets_the_migrations_after_its_version_in_order() {
        let steps = |found| {
            pending(found, &STEPS)
                .unwrap()
                .iter()
                .map(|m| m.step)
                .collect::<Vec<_>>()
        };
        assert_eq!(steps(1), ["b", "c", "d"]);
        assert_eq!(steps(3), ["d"]);
        assert!(steps(4).is_empty());
        assert_eq!(current(&STEPS), 4);
        assert_eq!(current::<()>(&[]), FIRST);
    }

    #[test]
    fn a_newer_store_is_refused_naming_both_versions() {
        let e = pending(7, &STEPS).unwrap_err();
        assert_eq!(e, SchemaError::Newer { found: 7, known: 4 });
        let message = e.to_string();
        assert!(message.contains("version 7"), "{message}");
        assert!(message.contains("up to 4"), "{message}");
        assert!(matches!(
            pending(0, &STEPS),
            Err(SchemaError::Unrecognised { .. })
        ));
    }

    #[test]
    #[should_panic(expected = "numbered in order")]
    fn a_gap_in_the_list_is_a_mistake() {
        let _ = pending(1, &[STEPS[0], STEPS[2]]);
    }
}
