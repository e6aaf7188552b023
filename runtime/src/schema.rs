//! The cache tables' DDL (`schema_sql`) and the check that existing tables are usable.

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::GenericClient;

/// The tables one builder's options call for.
#[derive(Debug, Clone)]
pub(crate) struct Schema {
    /// A validated identifier.
    pub(crate) table: String,
    /// The cache table is `UNLOGGED`; the epochs table never is.
    pub(crate) unlogged: bool,
    /// `l2_max_rows` is set: the sweeper finds the oldest-written rows through an index.
    pub(crate) evicting: bool,
}

/// What a table must have: columns with their types (as `format_type` names them), the
/// unique index its `ON CONFLICT` relies on, and the privileges its statements need.
struct Needs {
    suffix: &'static str,
    columns: &'static [(&'static str, &'static str)],
    unique: &'static [&'static str],
    privileges: &'static [&'static str],
}

const CACHE: Needs = Needs {
    suffix: "",
    columns: &[
        ("id", "bytea"),
        ("namespace", "text"),
        ("function", "text"),
        ("version", "bigint"),
        ("value", "bytea"),
        ("generation", "bigint"),
        ("epoch", "bigint"),
        ("expires_at", "timestamp with time zone"),
        ("updated_at", "timestamp with time zone"),
    ],
    unique: &["id"],
    privileges: &["SELECT", "INSERT", "UPDATE", "DELETE"],
};

const EPOCHS: Needs = Needs {
    suffix: "_epochs",
    columns: &[("namespace", "text"), ("function", "text"), ("epoch", "bigint")],
    unique: &["namespace", "function"],
    privileges: &["SELECT", "INSERT", "UPDATE"],
};

/// The leading columns of the index the expiry sweep scans.
const EXPIRY_INDEX: &[&str] = &["expires_at"];
/// The leading columns of the index eviction scans (newest rows of a namespace first).
const EVICTION_INDEX: &[&str] = &["namespace", "updated_at"];

/// One table as the catalog describes it, for the role running the query (whose
/// `search_path` resolves the unqualified name, as it does for every other statement).
const DESCRIBE: &str = "\
SELECT c.relpersistence::text,
       ARRAY(SELECT a.attname::text || ' ' || format_type(a.atttypid, a.atttypmod)
             FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
       ARRAY(SELECT CASE WHEN i.indisunique AND i.indpred IS NULL THEN 'unique ' ELSE '' END
                    || COALESCE((SELECT string_agg(a.attname::text, ',' ORDER BY k.n)
                                 FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, n)
                                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                                 WHERE k.n <= i.indnkeyatts), '')
             FROM pg_index i WHERE i.indrelid = c.oid AND i.indisvalid),
       ARRAY(SELECT p FROM unnest($2::text[]) p WHERE NOT has_table_privilege(c.oid, p))
FROM pg_class c WHERE c.oid = to_regclass($1)";

/// What install found about the tables: problems that make them unusable, and warnings.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    pub(crate) missing: Vec<String>,
    pub(crate) warnings: Vec<String>,
}

impl Schema {
    /// The DDL that creates whatever is missing, idempotent: `RuntimeBuilder::schema_sql()`,
    /// and what install runs with `create_schema(true)`.
    pub(crate) fn sql(&self) -> String {
        let table = &self.table;
        let unlogged = if self.unlogged { "UNLOGGED " } else { "" };
        let eviction_index = if self.evicting {
            format!(
                "-- l2_max_rows: the sweeper finds a namespace's oldest-written rows through it.\n\
                 CREATE INDEX IF NOT EXISTS {table}_updated_at ON {table} (namespace, updated_at);\n"
            )
        } else {
            String::new()
        };
        format!(
            "CREATE {unlogged}TABLE IF NOT EXISTS {table} (
    id bytea PRIMARY KEY,
    namespace text NOT NULL,
    function text NOT NULL,
    version bigint NOT NULL,
    value bytea,
    generation bigint NOT NULL,
    epoch bigint NOT NULL,
    expires_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON COLUMN {table}.value IS 'NULL: a tombstone left by an invalidation';
CREATE INDEX IF NOT EXISTS {table}_expires_at ON {table} (expires_at) WHERE expires_at IS NOT NULL;
{eviction_index}-- Always LOGGED: an invalidate-all epoch must never go back after a crash.
CREATE TABLE IF NOT EXISTS {table}_epochs (
    namespace text NOT NULL,
    function text NOT NULL,
    epoch bigint NOT NULL,
    PRIMARY KEY (namespace, function)
);
-- stampede = \"fleet\": who computes an entry now (a lease lost in a crash only lets another
-- process compute). Install does not require it: without it, fleet functions compute per process.
CREATE {unlogged}TABLE IF NOT EXISTS {table}_leases (
    id bytea PRIMARY KEY,
    holder bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
"
        )
    }

    /// Runs [`Schema::sql`] in one transaction, serialised with concurrent installs, without
    /// the `NOTICE`s that `IF NOT EXISTS` sends for what already exists.
    pub(crate) async fn create(
        &self,
        client: &mut tokio_postgres::Client,
    ) -> Result<(), tokio_postgres::Error> {
        let tx = client.transaction().await?;
        tx.batch_execute("SET LOCAL client_min_messages = warning")
            .await?;
        // CREATE ... IF NOT EXISTS races on the catalog. Unnamed, as every statement a pooler
        // may carry (see `protocol`).
        tx.execute_typed(
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            &[(
                &format!("tiered:{}", self.table),
                tokio_postgres::types::Type::TEXT,
            )],
        )
        .await?;
        tx.batch_execute(&self.sql()).await?;
        tx.commit().await
    }

    /// Reads the catalog and lists what the tables lack for this role and these options.
    pub(crate) async fn check(&self, client: &impl GenericClient) -> Result<Findings, tokio_postgres::Error> {
        let mut findings = Findings::default();
        for needs in [&CACHE, &EPOCHS] {
            let name = format!("{}{}", self.table, needs.suffix);
            let privileges: Vec<&str> = needs.privileges.to_vec();
            // An unnamed statement: safe through a transaction-mode pooler.
            let params: [(&(dyn ToSql + Sync), Type); 2] =
                [(&name, Type::TEXT), (&privileges, Type::TEXT_ARRAY)];
            let Some(row) = client.query_typed_opt(DESCRIBE, &params).await? else {
                findings.missing.push(format!(
                    "table {name} does not exist (not in the role's search_path, or the role lacks USAGE on its schema)"
                ));
                continue;
            };
            let described = Described {
                persistence: row.try_get(0)?,
                columns: row.try_get(1)?,
                indexes: row.try_get(2)?,
                lacking: row.try_get(3)?,
            };
            self.judge(needs, &name, &described, &mut findings);
        }
        Ok(findings)
    }

    fn judge(&self, needs: &Needs, name: &str, table: &Described, findings: &mut Findings) {
        for (column, wanted) in needs.columns {
            match table.column_type(column) {
                None => findings
                    .missing
                    .push(format!("table {name} lacks column {column} {wanted}")),
                Some(found) if found != *wanted => findings
                    .missing
                    .push(format!("column {name}.{column} is {found}, not {wanted}")),
                Some(_) => {}
            }
        }
        if !table.has_unique(needs.unique) {
            findings.missing.push(format!(
                "table {name} lacks a primary key on ({})",
                needs.unique.join(", ")
            ));
        }
        for privilege in &table.lacking {
            findings
                .missing
                .push(format!("the role lacks {privilege} on {name}"));
        }
        if needs.suffix == EPOCHS.suffix {
            if table.persistence == "u" {
                findings.missing.push(format!(
                    "table {name} is UNLOGGED: a crash would reset invalidate-all epochs to 0 \
                     (ALTER TABLE {name} SET LOGGED)"
                ));
            }
            return;
        }
        let mut indexes = vec![(EXPIRY_INDEX, "")];
        if self.evicting {
            indexes.push((EVICTION_INDEX, " (for l2_max_rows)"));
        }
        for (columns, purpose) in indexes {
            if !table.has_index(columns) {
                findings.missing.push(format!(
                    "table {name} lacks an index on ({}){purpose}, which the sweeper scans",
                    columns.join(", ")
                ));
            }
        }
        match (self.unlogged, table.persistence == "u") {
            (true, false) => findings.warnings.push(format!(
                "table {name} is LOGGED although unlogged(true) is set: tiered does not convert an \
                 existing table (ALTER TABLE {name} SET UNLOGGED rewrites it under an exclusive lock)"
            )),
            (false, true) => findings.warnings.push(format!(
                "table {name} is UNLOGGED although unlogged(true) is not set: its rows are lost in \
                 a server crash (ALTER TABLE {name} SET LOGGED rewrites it under an exclusive lock)"
            )),
            _ => {}
        }
    }
}

/// One table as [`DESCRIBE`] returns it.
struct Described {
    /// `p`ermanent, `u`nlogged or `t`emporary.
    persistence: String,
    /// `name type` per column.
    columns: Vec<String>,
    /// Per valid index: `unique ` for a unique, non-partial one, then its key columns,
    /// comma-separated.
    indexes: Vec<String>,
    /// The needed privileges the role lacks.
    lacking: Vec<String>,
}

impl Described {
    fn column_type(&self, column: &str) -> Option<&str> {
        self.columns.iter().find_map(|described| {
            described
                .strip_prefix(column)
                .and_then(|rest| rest.strip_prefix(' '))
        })
    }

    /// Whether a unique index has exactly `columns` as its key, in any order (what
    /// `ON CONFLICT (columns)` needs).
    fn has_unique(&self, columns: &[&str]) -> bool {
        self.indexes.iter().any(|index| {
            index.strip_prefix("unique ").is_some_and(|keys| {
                let mut keys: Vec<&str> = keys.split(',').collect();
                let mut wanted = columns.to_vec();
                keys.sort_unstable();
                wanted.sort_unstable();
                keys == wanted
            })
        })
    }

    /// Whether an index's key starts with `columns`, in that order.
    fn has_index(&self, columns: &[&str]) -> bool {
        self.indexes.iter().any(|index| {
            let keys = index.strip_prefix("unique ").unwrap_or(index);
            keys.split(',').take(columns.len()).eq(columns.iter().copied())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(unlogged: bool, evicting: bool) -> Schema {
        Schema {
            table: "tc".to_owned(),
            unlogged,
            evicting,
        }
    }

    fn complete() -> Described {
        Described {
            persistence: "p".to_owned(),
            columns: CACHE
                .columns
                .iter()
                .map(|(name, ty)| format!("{name} {ty}"))
                .collect(),
            indexes: vec![
                "unique id".to_owned(),
                "expires_at".to_owned(),
                "namespace,updated_at".to_owned(),
            ],
            lacking: Vec::new(),
        }
    }

    fn judged(schema: &Schema, table: &Described) -> Findings {
        let mut findings = Findings::default();
        schema.judge(&CACHE, "tc", table, &mut findings);
        findings
    }

    #[test]
    fn the_ddl_follows_the_options() {
        let plain = schema(false, false).sql();
        assert!(plain.starts_with("CREATE TABLE IF NOT EXISTS tc ("), "{plain}");
        assert!(!plain.contains("UNLOGGED") && !plain.contains("updated_at ON"));
        let both = schema(true, true).sql();
        assert!(
            both.starts_with("CREATE UNLOGGED TABLE IF NOT EXISTS tc ("),
            "{both}"
        );
        assert!(both.contains("CREATE INDEX IF NOT EXISTS tc_updated_at ON tc (namespace, updated_at);"));
        assert!(
            both.contains("CREATE TABLE IF NOT EXISTS tc_epochs ("),
            "epochs stay logged: {both}"
        );
    }

    #[test]
    fn the_lease_table_is_unlogged_as_the_cache_table_is() {
        let (plain, unlogged) = (schema(false, false).sql(), schema(true, false).sql());
        assert!(
            plain.contains("CREATE TABLE IF NOT EXISTS tc_leases ("),
            "{plain}"
        );
        assert!(
            unlogged.contains("CREATE UNLOGGED TABLE IF NOT EXISTS tc_leases ("),
            "{unlogged}"
        );
    }

    #[test]
    fn a_complete_table_passes() {
        let findings = judged(&schema(false, true), &complete());
        assert!(
            findings.missing.is_empty() && findings.warnings.is_empty(),
            "{findings:?}"
        );
    }

    #[test]
    fn each_missing_part_is_named() {
        let mut table = complete();
        table.columns.retain(|column| !column.starts_with("updated_at "));
        table.columns.iter_mut().for_each(|column| {
            if column.starts_with("id ") {
                *column = "id text".to_owned();
            }
        });
        table.indexes = vec![
            "unique id,namespace".to_owned(),
            "updated_at,namespace".to_owned(),
        ];
        table.lacking = vec!["DELETE".to_owned()];
        let missing = judged(&schema(false, true), &table).missing;
        assert_eq!(
            missing,
            [
                "column tc.id is text, not bytea",
                "table tc lacks column updated_at timestamp with time zone",
                "table tc lacks a primary key on (id)",
                "the role lacks DELETE on tc",
                "table tc lacks an index on (expires_at), which the sweeper scans",
                "table tc lacks an index on (namespace, updated_at) (for l2_max_rows), which the sweeper scans",
            ]
        );
    }

    #[test]
    fn the_eviction_index_is_needed_only_with_l2_max_rows() {
        let mut table = complete();
        table.indexes.pop();
        assert!(judged(&schema(false, false), &table).missing.is_empty());
        assert_eq!(judged(&schema(false, true), &table).missing.len(), 1);
    }

    #[test]
    fn persistence_unlike_the_option_is_a_warning_and_unlogged_epochs_an_error() {
        let findings = judged(&schema(true, false), &complete());
        assert!(findings.missing.is_empty());
        assert!(
            findings.warnings[0].contains("is LOGGED although unlogged(true)"),
            "{findings:?}"
        );
        let mut epochs = Described {
            persistence: "u".to_owned(),
            columns: vec![
                "namespace text".into(),
                "function text".into(),
                "epoch bigint".into(),
            ],
            indexes: vec!["unique function,namespace".to_owned()],
            lacking: Vec::new(),
        };
        let mut findings = Findings::default();
        schema(true, false).judge(&EPOCHS, "tc_epochs", &epochs, &mut findings);
        assert_eq!(findings.missing.len(), 1, "{findings:?}");
        assert!(findings.missing[0].contains("UNLOGGED"));
        epochs.persistence = "p".to_owned();
        let mut findings = Findings::default();
        schema(true, false).judge(&EPOCHS, "tc_epochs", &epochs, &mut findings);
        assert!(
            findings.missing.is_empty() && findings.warnings.is_empty(),
            "{findings:?}"
        );
    }
}
