//! The one place connectors are registered: a domain team adds a crate and one line here.

use weft_engine::Registry;

pub fn registry() -> Registry {
    let registry = Registry::new();
    #[cfg(feature = "source-sample")]
    let registry = registry.with_source(weft_source_sample::SampleSourceFactory);
    #[cfg(feature = "source-files")]
    let registry = registry.with_source(weft_source_files::FilesSourceFactory);
    #[cfg(feature = "source-postgres")]
    let registry = registry.with_source(weft_source_postgres::PostgresSourceFactory);
    #[cfg(feature = "source-airbyte")]
    let registry = registry.with_source(weft_source_airbyte::AirbyteSourceFactory);
    #[cfg(feature = "source-manifest")]
    let registry = registry.with_source(weft_source_manifest::ManifestSourceFactory);
    #[cfg(feature = "destination-parquet")]
    let registry = registry.with_destination(weft_destination_parquet::ParquetLakeFactory);
    #[cfg(feature = "destination-postgres")]
    let registry = registry.with_destination(weft_destination_postgres::PostgresDestinationFactory);
    registry
}
