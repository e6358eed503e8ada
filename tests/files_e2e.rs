//! End to end: CSV and JSON Lines files into the Parquet lake, incremental by file.

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use weft_testkit::TestProject;

const BIN: &str = env!("CARGO_BIN_EXE_weft");

const PRODUCT: &str = r#"product: files
domain: ops
owner: ops@example.com
description: Shipments from the warehouse's CSV drops and events from JSON Lines.
source:
  connector: files
  config:
    streams:
      - name: shipments
        path: drops
        glob: "*.csv"
        format: csv
        schema_overrides: { weight_kg: "decimal(10,3)" }
      - name: events
        path: drops
        glob: "events/*.jsonl"
        format: jsonl
streams:
  - name: shipments
    mode: incremental
    write: append
    cursor: _file_modified_at
  - name: events
    mode: incremental
    write: append_dedup
    cursor: _file_modified_at
    primary_key: [id]
"#;

fn ids(batch: &RecordBatch, column: &str) -> Vec<i64> {
    let mut v: Vec<i64> = batch
        .column_by_name(column)
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .to_vec();
    v.sort_unstable();
    v
}

#[test]
fn csv_and_jsonl_sync_incrementally_by_file() {
    let p = TestProject::one_product(BIN, "ops", "files", PRODUCT);
    p.file(
        "drops/a.csv",
        "shipment,weight_kg,city\n1,1.250,Oslo\n2,0.5,Lyon\n",
    );
    p.file(
        "drops/events/1.jsonl",
        "{\"id\": 1, \"kind\": \"created\"}\n{\"id\": 2, \"kind\": \"created\"}\n",
    );
    p.run(["sync", "run", "--no-progress"]).expect_code(0);

    let shipments = p.read_stream("ops", "files", "shipments");
    assert_eq!(ids(&shipments, "shipment"), [1, 2]);
    assert_eq!(
        shipments
            .schema()
            .field_with_name("weight_kg")
            .unwrap()
            .data_type(),
        &arrow::datatypes::DataType::Decimal128(10, 3)
    );
    let files = shipments
        .column_by_name("_file")
        .unwrap()
        .as_string::<i32>();
    assert!(files.iter().all(|f| f == Some("a.csv")));

    // A new CSV file and a new JSONL file that updates event 2: only they are read.
    p.file("drops/b.csv", "shipment,weight_kg,city\n3,2.000,Turin\n");
    p.file(
        "drops/events/2.jsonl",
        "{\"id\": 2, \"kind\": \"shipped\"}\n{\"id\": 3, \"kind\": \"created\"}\n",
    );
    let out = p.run(["sync", "run", "--no-progress", "--format", "json"]);
    out.expect_code(0);
    let report: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    let rows: Vec<u64> = report["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["rows"].as_u64().unwrap())
        .collect();
    assert_eq!(rows, [1, 2], "only the new files' rows are read");

    let shipments = p.read_stream("ops", "files", "shipments");
    assert_eq!(ids(&shipments, "shipment"), [1, 2, 3]);
    let events = p.read_stream("ops", "files", "events");
    assert_eq!(ids(&events, "id"), [1, 2, 3], "one row per event id");
    let kinds = events.column_by_name("kind").unwrap().as_string::<i32>();
    let ids_col = events
        .column_by_name("id")
        .unwrap()
        .as_primitive::<Int64Type>();
    let kind_of_2 = (0..events.num_rows())
        .find(|&i| ids_col.value(i) == 2)
        .map(|i| kinds.value(i))
        .unwrap();
    assert_eq!(kind_of_2, "shipped");
}

#[test]
fn a_bad_csv_value_names_file_line_and_column() {
    let p = TestProject::one_product(BIN, "ops", "files", PRODUCT);
    p.file(
        "drops/a.csv",
        "shipment,weight_kg,city\n1,1.250,Oslo\nx,0.5,Lyon\n",
    );
    p.file("drops/events/1.jsonl", "{\"id\": 1}\n");
    // Inference over the file sees `x` and makes the column text; a forced type does not fit.
    p.product(
        "ops",
        "files",
        &PRODUCT.replace(
            "schema_overrides: { weight_kg: \"decimal(10,3)\" }",
            "schema_overrides: { shipment: int64 }",
        ),
    );
    let out = p.run(["sync", "run", "--no-progress"]);
    out.expect_code(1);
    let all = format!("{}{}", out.stdout(), out.stderr());
    assert!(all.contains("a.csv"), "{all}");
    assert!(all.contains("line 2"), "{all}");
    assert!(all.contains("shipment"), "{all}");
}
