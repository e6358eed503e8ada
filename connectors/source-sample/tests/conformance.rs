//! The sample source against the conformance suite: three streams, full refresh and
//! incremental, resumed from every checkpoint.

use weft_conformance::SourceSuite;
use weft_core::ConnectorContext;
use weft_source_sample::SampleSourceFactory;

#[tokio::test]
async fn the_sample_source_conforms() {
    let ctx = ConnectorContext {
        project_dir: std::env::temp_dir(),
    };
    // 300 orders, 30 customers, 3 products in batches of 70: a few checkpoints per stream.
    let config = serde_json::json!({ "scale": 300, "batch_size": 70 });
    let report = SourceSuite::new(&SampleSourceFactory, config, ctx)
        .run()
        .await
        .unwrap_or_else(|faults| panic!("{faults}"));
    assert_eq!(report.streams, 6);
    assert_eq!(report.rows, 2 * (300 + 30 + 3));
    assert!(report.checkpoints_resumed >= 10, "{report:?}");
}
