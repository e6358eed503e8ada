//! The postgres destination against the conformance suite, on a fresh database; a reader
//! queries the product table over its own connection, as any SQL client would.

use async_trait::async_trait;
use weft_conformance::{DestinationSuite, Evolution, Table, VisibleRows, WriterChild};
use weft_core::{ConnectorContext, StreamTarget};
use weft_destination_postgres::naming::TableNames;
use weft_destination_postgres::PostgresDestinationFactory;
use weft_testkit::pg::PgTestDb;

struct Sql(String);

#[async_trait]
impl VisibleRows for Sql {
    async fn visible(&self, t: &StreamTarget) -> Result<Option<Table>, String> {
        let (client, conn) = tokio_postgres::connect(&self.0, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let names = TableNames::new(t.domain.as_str(), t);
        let exists = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&names.qualified()])
            .await
            .map_err(|e| e.to_string())?;
        if !exists.get::<_, bool>(0) {
            return Ok(None);
        }
        let sql = format!("SELECT row_to_json(t)::text FROM {} t", names.qualified());
        let rows = client.query(&sql, &[]).await.map_err(|e| e.to_string())?;
        let mut table = Table::default();
        let objects: Vec<serde_json::Map<String, serde_json::Value>> = rows
            .iter()
            .map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        if let Some(first) = objects.first() {
            table.columns = first.keys().cloned().collect();
        }
        for o in &objects {
            table.rows.push(
                table
                    .columns
                    .iter()
                    .map(|c| match &o[c] {
                        serde_json::Value::Null => None,
                        serde_json::Value::String(s) => Some(s.clone()),
                        other => Some(other.to_string()),
                    })
                    .collect(),
            );
        }
        Ok(Some(table))
    }
}

#[tokio::test]
async fn the_postgres_destination_conforms() {
    if let Some(child) = WriterChild::from_env() {
        child.run(&PostgresDestinationFactory).await;
    }
    let db = PgTestDb::create("conformance_dst");
    let config = db.config_json();
    let reader = Sql(db.conn_str());
    let ctx = ConnectorContext {
        project_dir: std::env::temp_dir(),
    };
    DestinationSuite::new(&PostgresDestinationFactory, config, ctx, &reader)
        .evolution(Evolution {
            adds_columns: true,
            refuses_retype: true,
        })
        .run("the_postgres_destination_conforms")
        .await
        .unwrap_or_else(|faults| panic!("{faults}"));
}
