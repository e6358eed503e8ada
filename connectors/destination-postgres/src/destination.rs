//! [`PostgresDestinationFactory`] and [`PostgresDestination`]: the destination as the registry
//! builds it.

use async_trait::async_trait;
use weft_core::arrow_schema::{Field, SchemaRef};
use weft_core::{
    parse_config, spec_of, ConfiguredStream, ConnectorContext, Destination, DestinationFactory,
    Result, StreamTarget, StreamWriter,
};

use crate::config::PgConfig;
use crate::connect::{check, connect};
use crate::naming::{check_identifier, TableNames};
use crate::table::{prepare, Layout};
use crate::writer::PgWriter;

/// Builds `postgres` destinations.
#[derive(Debug, Default, Clone, Copy)]
pub struct PostgresDestinationFactory;

impl DestinationFactory for PostgresDestinationFactory {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn description(&self) -> &'static str {
        "a domain's product store in PostgreSQL: binary COPY, atomic overwrite, upsert dedup"
    }

    fn spec(&self) -> serde_json::Value {
        spec_of::<PgConfig>()
    }

    fn build(
        &self,
        config: &serde_json::Value,
        _ctx: &ConnectorContext,
    ) -> Result<Box<dyn Destination>> {
        Ok(Box::new(PostgresDestination::new(parse_config(config)?)?))
    }
}

/// A PostgreSQL database holding product tables.
#[derive(Debug, Clone)]
pub struct PostgresDestination {
    config: PgConfig,
}

impl PostgresDestination {
    pub fn new(config: PgConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    /// The tables `target` lands in.
    pub fn tables(&self, target: &StreamTarget) -> Result<TableNames> {
        let schema = self
            .config
            .schema
            .clone()
            .unwrap_or_else(|| target.domain.as_str().to_string());
        check_identifier(&schema).map_err(|why| {
            weft_core::ConnectorError::config(
                "schema",
                format!("the domain's schema name {why}; set `schema` to a shorter name"),
            )
        })?;
        Ok(TableNames::new(&schema, target))
    }
}

#[async_trait]
impl Destination for PostgresDestination {
    async fn check(&self) -> Result<()> {
        check(&self.config).await
    }

    /// Drops the product table (and an unfinished overwrite's next table) and the stream's
    /// row of the control table, in one transaction.
    async fn reset(&self, target: &StreamTarget, _stream: &ConfiguredStream) -> Result<()> {
        let names = self.tables(target)?;
        let mut client = connect(&self.config).await?;
        let failed = |e: tokio_postgres::Error| {
            weft_core::ConnectorError::Other(format!(
                "resetting {}: {}",
                names.qualified(),
                crate::connect::db_message(&e)
            ))
        };
        let tx = client.transaction().await.map_err(failed)?;
        tx.batch_execute(&format!(
            "DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {};",
            names.qualified(),
            names.qualified_next()
        ))
        .await
        .map_err(failed)?;
        let control: bool = tx
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&names.control()])
            .await
            .map_err(failed)?
            .get(0);
        if control {
            tx.execute(
                &format!("DELETE FROM {} WHERE table_name = $1", names.control()),
                &[&names.table],
            )
            .await
            .map_err(failed)?;
        }
        tx.commit().await.map_err(failed)
    }

    fn product_reader(
        &self,
        domain: &weft_core::DomainName,
        product: &weft_core::ProductName,
    ) -> Option<Result<Box<dyn weft_core::Source>>> {
        let schema = self
            .config
            .schema
            .clone()
            .unwrap_or_else(|| domain.as_str().to_string());
        Some(Ok(Box::new(crate::reader::PgProductReader::new(
            self.config.clone(),
            schema,
            domain.clone(),
            product.clone(),
        ))))
    }

    async fn open(
        &self,
        target: &StreamTarget,
        stream: &ConfiguredStream,
        schema: SchemaRef,
    ) -> Result<Box<dyn StreamWriter>> {
        let names = self.tables(target)?;
        let mut layout = Layout::new(names, target, stream, &schema, self.config.metadata_columns)?;
        let client = connect(&self.config).await?;
        let fields: Vec<&Field> = schema.fields().iter().map(|f| f.as_ref()).collect();
        crate::source_types::resolve(&client, &mut layout, &fields).await?;
        let committed = prepare(&client, &mut layout).await?;
        Ok(Box::new(PgWriter::new(
            client,
            layout,
            schema,
            target.clone(),
            committed,
        )))
    }
}
