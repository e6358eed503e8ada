//! [`ParquetLakeFactory`] and [`ParquetLake`]: the destination as the registry builds it.

use std::path::PathBuf;

use async_trait::async_trait;
use parquet::file::properties::WriterProperties;
use weft_core::arrow_schema::SchemaRef;
use weft_core::{
    parse_config, spec_of, ConfiguredStream, ConnectorContext, ConnectorError, Destination,
    DestinationFactory, Result, StreamTarget, StreamWriter, SyncMode,
};

use crate::changes;
use crate::config::LakeConfig;
use crate::encoder::{Encoder, PartWriter};
use crate::layout::{self, lake_io};
use crate::storable;
use crate::table::Table;
use crate::writer::LakeWriter;

/// Registers the `parquet` destination.
#[derive(Debug, Default, Clone, Copy)]
pub struct ParquetLakeFactory;

impl DestinationFactory for ParquetLakeFactory {
    fn name(&self) -> &'static str {
        "parquet"
    }

    fn description(&self) -> &'static str {
        "Local Parquet lake: one folder of zstd Parquet files per stream, committed atomically"
    }

    fn spec(&self) -> serde_json::Value {
        spec_of::<LakeConfig>()
    }

    fn build(
        &self,
        config: &serde_json::Value,
        ctx: &ConnectorContext,
    ) -> Result<Box<dyn Destination>> {
        let config: LakeConfig = parse_config(config)?;
        Ok(Box::new(ParquetLake::new(config, ctx)?))
    }
}

/// A Parquet lake rooted at one folder.
#[derive(Debug, Clone)]
pub struct ParquetLake {
    root: PathBuf,
    /// Written into stream locks, so a refused writer can say which project holds one.
    project: PathBuf,
    props: WriterProperties,
    file_bytes: u64,
    merge_keys: u64,
}

impl ParquetLake {
    /// Validates `config`; relative paths are resolved against the project folder.
    pub fn new(config: LakeConfig, ctx: &ConnectorContext) -> Result<Self> {
        config.validate()?;
        crate::budget::budget().limit_to(config.memory_budget_bytes);
        Ok(Self {
            root: ctx.resolve(&config.path),
            project: ctx.project_dir.clone(),
            props: config.writer_properties()?,
            file_bytes: config.file_bytes,
            merge_keys: config.merge_keys,
        })
    }

    /// The lake root.
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }
}

#[async_trait]
impl Destination for ParquetLake {
    async fn check(&self) -> Result<()> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            layout::create_dirs(&root)?;
            let probe = root.join(format!(".weft-probe-{}", uuid::Uuid::new_v4().simple()));
            std::fs::write(&probe, b"weft").map_err(|e| lake_io("writing", &probe, e))?;
            std::fs::remove_file(&probe).map_err(|e| lake_io("removing", &probe, e))
        })
        .await
        .map_err(|e| ConnectorError::Other(format!("checking the lake: {e}")))?
    }

    /// Moves the stream's home aside in one rename (readers and the next run see no table at
    /// once, whatever happens next), then deletes it and the stream's link. Refused while
    /// another run writes the stream.
    async fn reset(&self, target: &StreamTarget, _stream: &ConfiguredStream) -> Result<()> {
        let dir = layout::stream_dir(&self.root, &target.domain, &target.product, &target.stream);
        layout::ensure_under(&self.root, &dir)?;
        let home = layout::home_dir(&dir);
        if std::fs::symlink_metadata(&dir).is_err() && !home.exists() {
            return Ok(());
        }
        let label = format!("stream `{}`", target.stream);
        let project = self.project.clone();
        tokio::task::spawn_blocking(move || {
            let _lock = crate::lock::acquire(&dir, &label, &project)?;
            crate::versions::remove(&dir).map_err(|e| {
                ConnectorError::Other(format!(
                    "resetting {label}: cannot remove {}: {e}",
                    dir.display()
                ))
            })
        })
        .await
        .map_err(|e| ConnectorError::Other(format!("resetting a lake stream: {e}")))?
    }

    fn product_reader(
        &self,
        domain: &weft_core::DomainName,
        product: &weft_core::ProductName,
    ) -> Option<Result<Box<dyn weft_core::Source>>> {
        Some(Ok(Box::new(crate::reader::LakeReader::new(
            self.root.clone(),
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
        let label = format!("stream `{}`", target.stream);
        let (schema, converts) = storable::storage_schema(&label, &schema);
        // CDC streams store change files: the stream's columns plus the change columns.
        let (cdc_data, schema) = if stream.sync_mode == SyncMode::Cdc {
            let file = changes::file_schema(&label, &schema)?;
            (Some(schema), file)
        } else {
            (None, schema)
        };
        let (root, target, stream) = (self.root.clone(), target.clone(), stream.clone());
        let props =
            crate::product_meta::with_product_metadata(self.props.clone(), &target.metadata);
        let file_bytes = self.file_bytes;
        let project = self.project.clone();
        let opened = tokio::task::spawn_blocking(move || {
            Table::open(&root, &project, &target, &stream, schema, props, file_bytes)
        })
        .await
        .map_err(|e| ConnectorError::Other(format!("opening a lake stream: {e}")))??;
        let mut table = opened.table;
        table.merge_keys = self.merge_keys;
        let encoder = Encoder::spawn(PartWriter::new(
            table.label.clone(),
            opened.encoder_dir,
            table.schema.clone(),
            table.props.clone(),
            table.file_bytes,
            opened.next_seq,
        ))?;
        Ok(Box::new(
            LakeWriter::new(table, encoder, opened.committed)
                .converting(converts)
                .with_changes(cdc_data),
        ))
    }
}
