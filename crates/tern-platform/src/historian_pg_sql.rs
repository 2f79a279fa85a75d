//! The PostgreSQL backend's schema and statements ([`crate::historian_pg`]).
//!
//! Tern owns two tables in the database it is given. `tern_schema_version` records which
//! migrations have run (one row per component and version); `tern_events` holds the
//! events. At every connection [`migrate`] takes a transaction-scoped advisory lock (two
//! brokers starting together do not race), reads the version and runs the migrations
//! above it, all in one transaction: a migration is applied whole or not at all. A
//! database whose schema is newer than this Tern knows is refused rather than guessed at.
//!
//! `tern_events` columns: `id` (bigserial, the tie-breaker of a page's bookmark), the
//! event's `org`, `type_id`, `device_id`, `event_id`, `format`, `ts_ms` (milliseconds
//! since the Unix epoch, as the broker accepted it), `writer` and `seq` (the row's
//! identity, unique: a row sent twice is stored once), `payload` (bytea, exactly as
//! published) and `body` (jsonb, the payload when it is JSON, for SQL over the fields).
//! Indexes: (org, type_id, device_id, event_id, ts_ms, id) for one device's range, and
//! (org, ts_ms) for retention.

use crate::historian::HistorianError;
use tokio_postgres::Client;

/// The component name in `tern_schema_version`.
const COMPONENT: &str = "historian";
/// Any constant both brokers agree on: the advisory lock serializing migrations.
const MIGRATION_LOCK: i64 = 0x7465_726e_6869_7374;

const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS tern_schema_version (
    component text NOT NULL,
    version integer NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (component, version)
)";

/// Each version and the SQL that takes the schema to it from the one before.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "CREATE TABLE IF NOT EXISTS tern_events (
        id bigserial PRIMARY KEY,
        org text NOT NULL,
        type_id text NOT NULL,
        device_id text NOT NULL,
        event_id text NOT NULL,
        format text NOT NULL,
        ts_ms bigint NOT NULL,
        writer bigint NOT NULL,
        seq bigint NOT NULL,
        payload bytea NOT NULL,
        body jsonb,
        UNIQUE (writer, seq)
    );
    CREATE INDEX IF NOT EXISTS tern_events_series
        ON tern_events (org, type_id, device_id, event_id, ts_ms, id);
    CREATE INDEX IF NOT EXISTS tern_events_org_time ON tern_events (org, ts_ms);",
)];

/// One batch of rows, given as one array per column; rows already stored are skipped.
pub(crate) const INSERT: &str = "INSERT INTO tern_events
    (org, type_id, device_id, event_id, format, ts_ms, writer, seq, payload, body)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
        $6::int8[], $7::int8[], $8::int8[], $9::bytea[], $10::jsonb[])
    ON CONFLICT (writer, seq) DO NOTHING";

/// One page of one device's events of one event id: `$5 <= ts_ms < $6`, after the
/// bookmark ($7, $8), at most $9.
pub(crate) const SELECT: &str = "SELECT id, format, ts_ms, payload FROM tern_events
    WHERE org = $1 AND type_id = $2 AND device_id = $3 AND event_id = $4
      AND ts_ms >= $5 AND ts_ms < $6 AND (ts_ms, id) > ($7::int8, $8::int8)
    ORDER BY ts_ms, id LIMIT $9";

/// An aggregate's buckets over one device's event id, `$5 <= ts_ms < $6`, `$7` ms wide,
/// of the JSON number at path `$8` in each body: every event counted (`events`), the
/// numbers counted and summed in time order (the order the embedded store sums them, so
/// both give the same floating-point sum), their least, greatest and latest.
pub(crate) const AGGREGATE: &str = "SELECT bucket, count(*) AS events, count(v) AS numbers,
        sum(v ORDER BY ts_ms, id) AS total, min(v) AS low, max(v) AS high,
        (array_agg(v ORDER BY ts_ms DESC, id DESC) FILTER (WHERE v IS NOT NULL))[1] AS latest
    FROM (SELECT ts_ms - ts_ms % $7 AS bucket, ts_ms, id,
            CASE WHEN jsonb_typeof(body #> $8::text[]) = 'number'
                THEN (body #>> $8::text[])::float8 END AS v
        FROM tern_events
        WHERE org = $1 AND type_id = $2 AND device_id = $3 AND event_id = $4
          AND ts_ms >= $5 AND ts_ms < $6) AS e
    GROUP BY bucket ORDER BY bucket";

/// Set on an aggregate's own connection: the database gives up on it before the backend
/// stops waiting.
pub(crate) const AGGREGATE_TIMEOUT: &str = "SET statement_timeout = 25000";

/// Removes up to $3 of an organization's events older than $2.
pub(crate) const PURGE: &str = "DELETE FROM tern_events WHERE id IN (
    SELECT id FROM tern_events WHERE org = $1 AND ts_ms < $2 LIMIT $3)";
/// Events one retention statement removes, so none holds locks for long.
pub(crate) const PURGE_CHUNK: i64 = 10_000;

/// Retention by size: the time of the newest event of an organization (`$1`) past which
/// its events, counted newest first, hold more than `$2` bytes (payload, format and 13
/// bytes each, as the embedded store counts them); no row when they hold less.
pub(crate) const BYTES_CUTOFF: &str = "SELECT ts_ms FROM (
    SELECT ts_ms, sum(octet_length(payload) + octet_length(format) + 13)
        OVER (ORDER BY ts_ms DESC, id DESC) AS total
    FROM tern_events WHERE org = $1) newest_first
WHERE total > $2 ORDER BY ts_ms DESC LIMIT 1";

/// What [`migrate`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Migrated {
    /// The schema's version before (`None`: there was no schema).
    pub from: Option<i32>,
    /// Its version now.
    pub to: i32,
}

impl std::fmt::Display for Migrated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.from {
            None => write!(f, "historian schema created (version {})", self.to),
            Some(v) if v < self.to => write!(f, "historian schema migrated from version {v} to {}", self.to),
            Some(v) => write!(f, "historian schema at version {v}, nothing to migrate"),
        }
    }
}

fn failed(e: &tokio_postgres::Error) -> HistorianError {
    HistorianError::Unavailable {
        backend: "postgresql",
        what: format!("creating or migrating the schema: {}", crate::historian_pg::chain(e)),
    }
}

/// The newest schema version this Tern knows.
pub(crate) fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |(v, _)| *v)
}

/// Brings the database's schema to [`latest`], in one transaction.
pub(crate) async fn migrate(client: &mut Client) -> Result<Migrated, HistorianError> {
    let tx = client.transaction().await.map_err(|e| failed(&e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| failed(&e))?;
    tx.batch_execute(VERSION_TABLE).await.map_err(|e| failed(&e))?;
    let row = tx
        .query_one(
            "SELECT max(version) FROM tern_schema_version WHERE component = $1",
            &[&COMPONENT],
        )
        .await
        .map_err(|e| failed(&e))?;
    let from: Option<i32> = row.try_get(0).map_err(|e| failed(&e))?;
    let to = latest();
    if from.is_some_and(|v| v > to) {
        return Err(HistorianError::Store {
            backend: "postgresql",
            what: format!(
                "the database's historian schema is version {}, newer than this Tern knows ({to}): upgrade Tern",
                from.unwrap_or_default()
            ),
        });
    }
    for (version, statements) in MIGRATIONS.iter().filter(|(v, _)| Some(*v) > from) {
        tx.batch_execute(statements).await.map_err(|e| failed(&e))?;
        tx.execute(
            "INSERT INTO tern_schema_version (component, version) VALUES ($1, $2)",
            &[&COMPONENT, version],
        )
        .await
        .map_err(|e| failed(&e))?;
    }
    tx.commit().await.map_err(|e| failed(&e))?;
    Ok(Migrated { from, to })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_one_up_from_one() {
        for (i, (v, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(usize::try_from(*v).ok(), Some(i + 1));
        }
        assert_eq!(latest(), 1);
    }

    #[test]
    fn what_a_migration_did_reads_as_a_sentence() {
        let created = Migrated { from: None, to: 1 };
        assert_eq!(created.to_string(), "historian schema created (version 1)");
        let same = Migrated { from: Some(1), to: 1 };
        assert_eq!(same.to_string(), "historian schema at version 1, nothing to migrate");
        let up = Migrated { from: Some(1), to: 2 };
        assert_eq!(up.to_string(), "historian schema migrated from version 1 to 2");
    }
}
