//! The postgres source against the conformance suite, on a fresh database holding one table of
//! 25 rows read in batches of 4 (CDC is left to `tests/cdc.rs`: the suite needs no change
//! fixture).

use weft_conformance::SourceSuite;
use weft_core::ConnectorContext;
use weft_source_postgres::PostgresSourceFactory;
use weft_testkit::pg::PgTestDb;

#[tokio::test]
async fn the_postgres_source_conforms() {
    let db = PgTestDb::create("conformance_src");
    db.sql(
        "CREATE TABLE items (id bigint PRIMARY KEY, name text, amount numeric(10,2), \
         updated_at timestamptz NOT NULL);
         INSERT INTO items SELECT i, CASE WHEN i % 5 = 0 THEN NULL ELSE 'item ' || i END, i * 1.25,
           timestamptz '2024-01-01 00:00:00+00' + (i / 3) * interval '1 hour'
         FROM generate_series(1, 25) AS i;",
    );
    let config = serde_json::json!({
        "host": db.host, "port": db.port, "user": db.user, "database": db.name, "batch_size": 4,
    });
    let ctx = ConnectorContext {
        project_dir: std::env::temp_dir(),
    };
    let report = SourceSuite::new(&PostgresSourceFactory, config, ctx)
        .run()
        .await
        .unwrap_or_else(|faults| panic!("{faults}"));
    assert_eq!(report.rows, 2 * 25, "{report:?}");
}
