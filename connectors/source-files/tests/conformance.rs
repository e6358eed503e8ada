//! The files source against the conformance suite, on CSV and JSON Lines files in a temporary
//! project folder, and a broken CSV whose float column holds a word.

use weft_conformance::SourceSuite;
use weft_core::ConnectorContext;
use weft_source_files::FilesSourceFactory;

fn write(dir: &std::path::Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn the_files_source_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let csv = |name: &str, from: i64, to: i64| {
        let mut text = String::from("id,name,amount\n");
        for i in from..=to {
            text.push_str(&format!("{i},customer {i},{}.5\n", i * 3));
        }
        write(dir.path(), &format!("data/orders/{name}"), &text);
    };
    csv("2024-01.csv", 1, 7);
    csv("2024-02.csv", 8, 15);
    csv("2024-03.csv", 16, 16);
    let lines: String = (1..=9)
        .map(|i| {
            format!(
                "{{\"id\": {i}, \"ok\": {}, \"note\": \"n{i}\"}}\n",
                i % 2 == 0
            )
        })
        .collect();
    write(dir.path(), "data/events/a.jsonl", &lines);
    write(
        dir.path(),
        "data/events/b.jsonl",
        "{\"id\": 10, \"ok\": true}\n",
    );
    let config = serde_json::json!({ "streams": [
        { "name": "orders", "path": "data", "glob": "orders/*.csv", "format": "csv", "batch_size": 3 },
        { "name": "events", "path": "data", "glob": "events/*.jsonl", "format": "jsonl", "batch_size": 4 },
    ]});
    // The broken fixture: `amount` is a float column, and one value is not a number.
    write(
        dir.path(),
        "bad/orders.csv",
        "id,name,amount\n1,one,1.5\n2,two,oops\n3,three,4.5\n",
    );
    let broken = serde_json::json!({ "streams": [
        { "name": "orders", "path": "bad", "glob": "*.csv", "format": "csv",
          "schema_overrides": { "amount": "float64" } },
    ]});
    let ctx = ConnectorContext {
        project_dir: dir.path().to_path_buf(),
    };
    let report = SourceSuite::new(&FilesSourceFactory, config, ctx)
        .undecodable(broken, "orders", "amount")
        .run()
        .await
        .unwrap_or_else(|faults| panic!("{faults}"));
    assert_eq!(report.rows, 2 * (16 + 10), "{report:?}");
    assert!(report.checkpoints_resumed >= 8, "{report:?}");
}
