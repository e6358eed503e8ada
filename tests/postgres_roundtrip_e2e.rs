//! End to end, PostgreSQL to PostgreSQL and PostgreSQL to Parquet with the real `weft` binary:
//! a type zoo (every type the source reads, with NULLs, unicode, extremes and infinities)
//! synced into another schema of the same database and compared with `EXCEPT` both ways over
//! each column's text, and into the lake, read back with the parquet crate and compared with
//! PostgreSQL's own text output value by value (±infinity dates and timestamps exact in both).
//! Types the source documents as converted (char(n) keeping its padding, types without a
//! binary decoder → their text) are compared by that rule. Then a column renamed in the source
//! between two incremental runs: exit 1 naming the stream and the column, nothing committed;
//! a timestamp beyond Arrow's range failing with the column named.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type, IntervalMonthDayNanoType, IntervalUnit};
use weft_testkit::pg::PgTestDb;
use weft_testkit::pgtext::pg_text;
use weft_testkit::{manifest_checkpoint, TestProject};

const BIN: &str = env!("CARGO_BIN_EXE_weft");

const ZOO: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'happy', 'très ☃');
CREATE DOMAIN posint AS int4 CHECK (VALUE > 0);
CREATE TYPE pair AS (a int4, b text);
CREATE TABLE zoo (
  id int8 PRIMARY KEY, i2 int2, i4 int4, i8 int8, o oid, f4 float4, f8 float8,
  n122 numeric(12,2), n38 numeric(38,10), n380 numeric(38,0), nbig numeric(50,5), nfree numeric,
  t text, vc varchar(20), ch char(3), nm name, qc "char", b bytea, bo bool,
  d date, tm time, ttz timetz, ts timestamp, tstz timestamptz, iv interval,
  u uuid, j json, jb jsonb,
  ai int4[], at text[], an numeric(6,2)[], ab bool[], ats timestamptz[], au uuid[], ae mood[],
  e mood, dom posint, ip inet, cidr_ cidr, mac macaddr, m money, bt bit(4), vb varbit, x xml,
  tsv tsvector, r int4range, comp pair);
INSERT INTO zoo (id) VALUES (1);
INSERT INTO zoo VALUES (2, 7, 42, 4200000000, 12345, 1.5, 0.1,
  1234567890.12, 3.1415926535, 12345678901234567890, 1.5, 2.50,
  'héllo ☃ "q" \ 😀 tab	nl
x', 'ab', 'x', 'nm', 'q', '\x00ff10', true,
  '2024-02-29', '23:59:59.999999', '12:00+05', '1999-12-31 23:59:59.5', '2024-01-01 00:00:00.000001+02',
  '1 year 2 mons 3 days 04:05:06.789',
  'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '{"a": [1, 2],  "s": "☃"}', '{"b": null, "a": 1}',
  '{1,NULL,3}', '{"a b","",NULL,"x,y","q\"","NULL","{}"}', '{1.50,NULL}', '{t,f}',
  '{"2024-01-01 10:00:00+00",NULL}', '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}', '{happy,"très ☃"}',
  'happy', 7, '10.0.0.1/8', '10.0.0.0/8', '08:00:2b:01:02:03', 12.34, B'1010', B'101',
  '<a>x &amp; y</a>', 'a fat cat', '[1,5)', ROW(1, 'x y'));
INSERT INTO zoo VALUES (3, -32768, 2147483647, -9223372036854775808, 4294967295, 'Infinity', '-Infinity',
  -9999999999.99, -9999999999999999999999999999.9999999999, -99999999999999999999999999999999999999,
  123456789012345678901234567890123456789012345.12345,
  '123456789012345678901234567890123456789012345.000000000000000000001',
  repeat('☃x', 500000), repeat('y', 20), 'abc', repeat('n', 63), 'Z', decode(repeat('ab01', 500000), 'hex'), false,
  'infinity', '24:00:00', '00:00:00-14:59', '-infinity', 'infinity', '-1 year -2 mons +3 days -04:05:06.5',
  '00000000-0000-0000-0000-000000000000', '[]', '{"deep": {"x": [true, false, null]}}',
  '{2147483647,-2147483648}', '{"☃"}', '{9999.99,-9999.99}', '{NULL}',
  '{infinity,"1970-01-01 00:00:00+00"}', '{}', '{}',
  'très ☃', 2147483647, '::1', '2001:db8::/32', 'ff:ff:ff:ff:ff:ff', -92233720368547758.08,
  B'0000', B'', '<r/>', '', 'empty', ROW(NULL, NULL));
INSERT INTO zoo VALUES (4, 0, 0, 0, 0, 'NaN', 'NaN', 0, 0, 0, 0, 'NaN',
  '', '', '   ', '', ' ', '\x', false,
  '0001-01-01', '00:00:00', '00:00:00+00', '1970-01-01', '1970-01-01 00:00:00+00', '0',
  'ffffffff-ffff-ffff-ffff-ffffffffffff', 'null', '"s"', '{}', '{}', '{}', '{}', NULL, NULL, NULL,
  'sad', 1, '0.0.0.0', '0.0.0.0/0', '00:00:00:00:00:00', 0, B'1111', B'1', '', ' ', '(,)', ROW(0, ''));
INSERT INTO zoo (id, f4, f8, d, ts, tstz, iv, nfree, n122) VALUES
  (5, '-0', '-0', '0044-03-15 BC', '0044-03-15 12:30:00 BC', '0001-01-01 00:00:00+00 BC', '100 hours', '-Infinity', -0.01),
  (6, 3.4028235e38, 1.7976931348623157e308, '-infinity', '200000-01-01 00:00:00', '2262-04-11 23:47:16.854775+00', '-3 days', 'Infinity', 0.5),
  (7, 1.0e-6, 2.2250738585072014e-308, '200000-12-31', '4713-01-01 00:00:00 BC', '1999-12-31 23:59:59.999999+00', '1 mon -1 days', '1e-20', 1),
  (8, 123456.7, 123456789012345.6, '2000-01-01', '2000-01-01 00:00:00', '2000-01-01 00:00:00+00', '1 day 00:00:00.000001', '0.000', 100);
ANALYZE zoo;
"#;

/// The rule the source documents for a column, as a SQL expression over the source table
/// giving what the lake must hold, as text.
fn documented(column: &str, data_type: &str) -> String {
    let c = format!("\"{column}\"");
    match data_type {
        // char(n) keeps its padding (its output function's text, not `::text`).
        "character(3)" => format!("CASE WHEN {c} IS NOT NULL THEN format('%s', {c}) END"),
        // money is read as its exact numeric value, not the locale's `$12.34`.
        "money" => format!("{c}::numeric::text"),
        _ => format!("{c}::text"),
    }
}

/// The type a PostgreSQL product store gives a source column of type `source` (README, "the
/// PostgreSQL destination"): the source's own type except where weft documents a change.
fn pg_to_pg_type(source: &str) -> &str {
    match source {
        "oid" => "bigint",
        "name"
        | "\"char\""
        | "time with time zone"
        | "bit(4)"
        | "bit varying"
        | "tsvector"
        | "int4range"
        | "pair" => "text",
        "money" => "numeric",
        "posint" => "integer",
        other => other,
    }
}

/// `(name, format_type)` of the zoo's columns, in order.
fn zoo_columns(db: &PgTestDb) -> Vec<(String, String)> {
    db.sql(
        "SELECT attname || E'\\x1f' || format_type(atttypid, atttypmod) FROM pg_attribute \
         WHERE attrelid = 'public.zoo'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
    )
    .lines()
    .map(|l| {
        let (n, t) = l.split_once('\x1f').unwrap();
        (n.to_string(), t.to_string())
    })
    .collect()
}

fn zoo_product(db: &PgTestDb, streams: &str) -> String {
    format!(
        "product: db\ndomain: ops\nowner: test@example.com\ndescription: round trip\nsource:\n  connector: postgres\n  config: {{ host: \"{}\", port: {}, user: {}, database: {}, batch_size: 3 }}\nstreams:\n{streams}",
        db.host, db.port, db.user, db.name
    )
}

fn pg_project(db: &PgTestDb) -> TestProject {
    TestProject::new(
        BIN,
        &format!(
            "version: 1\nstate:\n  path: .weft/state.db\ndefaults:\n  destination:\n    connector: postgres\n    config:\n      host: {}\n      port: {}\n      user: {}\n      database: {}\n      schema: landing\n  commit_interval: 1ms\n",
            db.host, db.port, db.user, db.name
        ),
    )
}

/// At most 3000 characters of a diff, for failure messages (values can be a megabyte).
fn short(text: &str) -> String {
    text.chars().take(3000).collect()
}

#[test]
fn type_zoo_postgres_to_postgres_matches_with_except_both_ways() {
    let db = PgTestDb::create("rt_pg_zoo");
    db.sql(ZOO);
    let p = pg_project(&db);
    p.product(
        "ops",
        "db",
        &zoo_product(
            &db,
            "  - name: public.zoo\n    mode: full_refresh\n    write: overwrite\n",
        ),
    );
    p.run(["sync", "run", "--no-progress"]).expect_code(0);

    let columns = zoo_columns(&db);
    assert_eq!(columns.len(), 47);
    // The source's types are kept (strictly: every column's format_type), so each column's
    // text is compared as is; money is stored as numeric.
    let src: Vec<String> = columns
        .iter()
        .map(|(n, t)| match t.as_str() {
            "money" => format!("\"{n}\"::numeric::text"),
            _ => format!("\"{n}\"::text"),
        })
        .collect();
    let dst: Vec<String> = columns
        .iter()
        .map(|(n, _)| format!("\"{n}\"::text"))
        .collect();
    let target = "landing.\"db__public.zoo\"";
    for (a, b, direction) in [
        (
            format!("SELECT {} FROM public.zoo", src.join(", ")),
            format!("SELECT {} FROM {target}", dst.join(", ")),
            "in the source but not the destination",
        ),
        (
            format!("SELECT {} FROM {target}", dst.join(", ")),
            format!("SELECT {} FROM public.zoo", src.join(", ")),
            "in the destination but not the source",
        ),
    ] {
        let diff = db.sql(&format!("{a} EXCEPT {b}"));
        assert!(diff.is_empty(), "rows {direction}:\n{}", short(&diff));
    }
    assert_eq!(db.sql(&format!("SELECT count(*) FROM {target}")), "8");
    // Spot checks of the documented conversions, as a user would query them.
    assert_eq!(
        db.sql(&format!(
            "SELECT d, ts, tstz, u, nfree FROM {target} WHERE id = 3"
        )),
        "infinity|-infinity|infinity|00000000-0000-0000-0000-000000000000|\
         123456789012345678901234567890123456789012345.000000000000000000001"
    );
    assert_eq!(
        db.sql(&format!(
            "SELECT ch || '|', ats::text FROM {target} WHERE id = 3"
        )),
        "abc||{infinity,\"1970-01-01 00:00:00+00\"}"
    );
    assert_eq!(
        db.sql(&format!(
            "SELECT format('%s|', ch) FROM {target} WHERE id = 2"
        )),
        "x  |"
    );

    // The destination keeps the source's column types, except the documented changes.
    let types = db.sql(
        "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum) \
         FROM pg_attribute WHERE attrelid = 'landing.\"db__public.zoo\"'::regclass AND attnum > 0 \
         AND NOT attisdropped",
    );
    let mut expected: Vec<String> = columns
        .iter()
        .map(|(n, t)| format!("{n} {}", pg_to_pg_type(t)))
        .collect();
    expected.push("_weft_synced_at timestamp with time zone".into());
    expected.push("_weft_run_id text".into());
    assert_eq!(types, expected.join(", "));
    // Each changed column is named in the log, with the reason.
    let again = p.run(["sync", "run", "--no-progress"]);
    again.expect_code(0);
    for note in [
        "column `m` (money in the source) is stored as numeric",
        "column `r` (int4range in the source) is stored as text",
    ] {
        assert!(
            again.stderr().contains(note),
            "{note} in:\n{}",
            again.stderr()
        );
    }
    assert!(
        !again.stderr().contains("column `u` "),
        "{}",
        again.stderr()
    );
}

#[test]
fn type_zoo_postgres_to_parquet_matches_postgres_text_value_by_value() {
    let db = PgTestDb::create("rt_lake_zoo");
    db.sql(ZOO);
    let p = TestProject::with_lake(BIN, "1ms");
    let zoo = "  - name: public.zoo\n    mode: full_refresh\n    write: overwrite\n";
    // Parquet cannot hold month-day-nano intervals exactly: the lake stores `iv` as Arrow's
    // exact text form (checked below by parsing it back).
    p.product("ops", "db", &zoo_product(&db, zoo));
    p.run(["sync", "run", "--no-progress"]).expect_code(0);
    let lake = p.read_stream("ops", "db", "public.zoo");
    assert_eq!(lake.num_rows(), 8);
    let ids = lake
        .column_by_name("id")
        .unwrap()
        .as_primitive::<Int64Type>();
    let mut order: Vec<usize> = (0..lake.num_rows()).collect();
    order.sort_by_key(|&r| ids.value(r));

    let columns = zoo_columns(&db);
    assert_eq!(lake.num_columns(), columns.len());
    assert_interval_text_is_exact(&db, &lake, &order);
    for (name, data_type) in columns.iter().filter(|(n, _)| n != "iv") {
        // One line per column: values separated by \x1f, NULL as \x01, ended by \x1e (so
        // trailing blanks survive psql's output).
        let expected = db.sql(&format!(
            "SELECT string_agg(coalesce({}, E'\\x01'), E'\\x1f' ORDER BY id) || E'\\x1e' FROM zoo",
            documented(name, data_type)
        ));
        let expected: Vec<&str> = expected
            .strip_suffix('\x1e')
            .expect("the terminator")
            .split('\x1f')
            .collect();
        let col = lake
            .column_by_name(name)
            .unwrap_or_else(|| panic!("column {name} is not in the lake"));
        for (i, &row) in order.iter().enumerate() {
            let got = pg_text(col.as_ref(), row);
            let want = (expected[i] != "\x01").then_some(expected[i]);
            assert_eq!(
                got.as_deref(),
                want,
                "column {name} ({data_type}, Arrow {}), id {}",
                col.data_type(),
                ids.value(row)
            );
        }
    }
}

/// `iv` in the lake is text that parses back to PostgreSQL's (months, days, microseconds).
fn assert_interval_text_is_exact(db: &PgTestDb, lake: &RecordBatch, order: &[usize]) {
    let text = lake.column_by_name("iv").unwrap();
    assert_eq!(text.data_type(), &DataType::Utf8);
    let parsed = arrow::compute::cast(text, &DataType::Interval(IntervalUnit::MonthDayNano))
        .expect("the lake's interval text parses back");
    let parsed = parsed.as_primitive::<IntervalMonthDayNanoType>();
    let expected = db.sql(
        "SELECT coalesce((extract(year from iv) * 12 + extract(month from iv))::int || ',' || \
         extract(day from iv)::int || ',' || \
         (extract(epoch from iv - date_trunc('day', iv)) * 1000000)::bigint, 'NULL') \
         FROM zoo ORDER BY id",
    );
    for (line, &row) in expected.lines().zip(order) {
        let got = if parsed.is_null(row) {
            "NULL".to_string()
        } else {
            let v = parsed.value(row);
            format!("{},{},{}", v.months, v.days, v.nanoseconds / 1000)
        };
        assert_eq!(got, line, "interval of row {row}");
    }
    assert_eq!(expected.lines().count(), order.len());
}

fn people_streams() -> &'static str {
    "  - name: public.people\n    mode: incremental\n    write: append_dedup\n    cursor: updated_at\n    primary_key: [id]\n"
}

/// The stream's checkpoint (and when it was recorded) in the state store, as
/// `weft sync status --format json` shows them.
fn status_checkpoint(p: &TestProject) -> (serde_json::Value, serde_json::Value) {
    let out = p.run(["sync", "status", "--format", "json"]);
    out.expect_code(0);
    let status: serde_json::Value = serde_json::from_str(&out.stdout()).expect("JSON status");
    let row = &status[0];
    assert_eq!(row["stream"], "ops/db/public.people", "{status}");
    assert!(row["checkpoint"].is_object(), "{status}");
    (row["checkpoint"].clone(), row["checkpoint_at"].clone())
}

#[test]
fn a_column_renamed_between_incremental_runs_stops_the_stream_cleanly() {
    let db = PgTestDb::create("rt_rename");
    db.sql(
        "CREATE TABLE people (id int8 PRIMARY KEY, name text, updated_at timestamptz NOT NULL);
         INSERT INTO people SELECT g, 'p' || g, '2024-01-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, 100) g;",
    );
    let pg = pg_project(&db);
    let lake = TestProject::with_lake(BIN, "1ms");
    for p in [&pg, &lake] {
        p.product("ops", "db", &zoo_product(&db, people_streams()));
        p.run(["sync", "run", "--no-progress"]).expect_code(0);
    }
    let table = "\"landing\".\"db__public.people\"";
    let dump = |db: &PgTestDb| {
        db.sql(&format!(
            "SELECT string_agg(id || ':' || name || ':' || updated_at, ',' ORDER BY id) FROM {table}"
        ))
    };
    let before = dump(&db);
    assert_eq!(db.sql(&format!("SELECT count(*) FROM {table}")), "100");
    let pg_state = status_checkpoint(&pg);
    let lake_dir = lake.stream_dir("ops", "db", "public.people");
    let lake_cp = manifest_checkpoint(&lake_dir);
    let lake_state = status_checkpoint(&lake);

    db.sql(
        "ALTER TABLE people RENAME COLUMN name TO full_name;
         UPDATE people SET full_name = 'renamed', updated_at = '2025-01-01' WHERE id <= 10;
         INSERT INTO people VALUES (101, 'new', '2025-01-02');",
    );

    let out = pg.run(["sync", "run", "--no-progress"]);
    out.expect_code(1);
    let all = format!("{}{}", out.stdout(), out.stderr());
    assert!(
        all.contains(&format!(
            "stream `public.people` (table {table}): the stream no longer sends column \"name\" \
             of the table (renamed or dropped in the source?); weft never drops or renames \
             columns. the stream now sends column \"full_name\" instead: if it was renamed, run \
             ALTER TABLE {table} RENAME COLUMN \"name\" TO \"full_name\";"
        )),
        "{all}"
    );
    assert!(!all.contains("panicked"), "{all}");
    assert_eq!(dump(&db), before, "the destination table changed");
    assert_eq!(
        db.sql(&format!(
            "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = '{table}'::regclass AND attnum > 0 AND NOT attisdropped"
        )),
        "id,name,updated_at,_weft_synced_at,_weft_run_id"
    );
    assert_eq!(status_checkpoint(&pg), pg_state, "the state moved");

    // Into the lake: the same refusal, the committed files and checkpoint untouched.
    let files_before = weft_testkit::committed_files(&lake_dir);
    let out = lake.run(["sync", "run", "--no-progress"]);
    out.expect_code(1);
    let all = format!("{}{}", out.stdout(), out.stderr());
    assert!(all.contains("public.people"), "{all}");
    assert!(all.contains("`name`") || all.contains("\"name\""), "{all}");
    assert!(!all.contains("panicked"), "{all}");
    assert_eq!(weft_testkit::committed_files(&lake_dir), files_before);
    assert_eq!(manifest_checkpoint(&lake_dir), lake_cp);
    assert_eq!(status_checkpoint(&lake), lake_state, "the state moved");
    let rows: RecordBatch = lake.read_stream("ops", "db", "public.people");
    assert_eq!(rows.num_rows(), 100);
}

#[test]
fn a_timestamp_beyond_arrows_range_fails_naming_the_column() {
    let db = PgTestDb::create("rt_far_ts");
    db.sql(
        "CREATE TABLE far (id int8 PRIMARY KEY, at timestamp);
         INSERT INTO far VALUES (1, '2024-01-01'), (2, '294276-12-31 23:59:59.999999');",
    );
    let p = TestProject::with_lake(BIN, "1ms");
    p.product(
        "ops",
        "db",
        &zoo_product(
            &db,
            "  - name: public.far\n    mode: full_refresh\n    write: overwrite\n",
        ),
    );
    let out = p.run(["sync", "run", "--no-progress"]);
    out.expect_code(1);
    assert!(
        out.stderr().contains(
            "stream `public.far`: column `at`: a timestamp after 294247-01-10 is beyond Arrow's \
             microsecond range"
        ),
        "{}",
        out.stderr()
    );
    assert!(!out.stderr().contains("panicked"), "{}", out.stderr());
    assert!(manifest_checkpoint(&p.stream_dir("ops", "db", "public.far")).is_none());
}

/// Issue #15 item 4: columns left out by `columns:` or dropped by a mapper before anything
/// reads them are not read by the source's query, so a value weft cannot decode there (a 2-D
/// array) no longer makes the table unreadable.
#[test]
fn columns_not_selected_are_not_read() {
    let db = PgTestDb::create("rt_columns");
    db.sql(
        "CREATE TABLE grid (id int8 PRIMARY KEY, v text, m int4[], w int4);
         INSERT INTO grid VALUES (1, 'a', '{{1,2},{3,4}}', 10), (2, 'b', '{5}', 20);",
    );
    let p = TestProject::with_lake(BIN, "1ms");
    let product = |name: &str, extra: &str| {
        format!(
            "product: {name}\ndomain: ops\nowner: test@example.com\ndescription: columns\nsource:\n  connector: postgres\n  config: {}\nstreams:\n  - name: public.grid\n    mode: full_refresh\n    write: overwrite\n{extra}",
            db.pg_config()
        )
    };
    p.product(
        "ops",
        "selected",
        &product("selected", "    columns: [id, w]\n"),
    );
    p.product(
        "ops",
        "dropped",
        &product(
            "dropped",
            "    mappers:\n      - drop: [m]\n      - rename: { from: w, to: weight }\n",
        ),
    );
    p.product("ops", "whole", &product("whole", ""));
    let out = p.run(["sync", "run", "--no-progress"]);
    out.expect_code(1);
    // A 2-D value in a column declared `int4[]` fails the whole stream, naming the column and
    // the fix (declared 2-D, it reads: two_dimensional_arrays_round_trip_…).
    assert!(
        out.stderr().contains(
            "column `m`: an array value with 2 dimensions where the column declares one dimension"
        ),
        "{}",
        out.stderr()
    );
    let selected = p.read_stream("ops", "selected", "public.grid");
    let names: Vec<String> = selected
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["id", "w"]);
    assert_eq!(selected.num_rows(), 2);
    let dropped = p.read_stream("ops", "dropped", "public.grid");
    let names: Vec<String> = dropped
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["id", "v", "weight"]);
    let mut values: Vec<String> = (0..dropped.num_rows())
        .map(|r| {
            (0..3)
                .map(|c| pg_text(dropped.column(c).as_ref(), r).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    values.sort();
    assert_eq!(values, ["1|a|10", "2|b|20"]);
}

/// A nested list as `{{1,NULL},{3,4}}`, for comparing with PostgreSQL's array text.
fn array_text(a: &dyn Array, row: usize) -> String {
    if a.is_null(row) {
        return "NULL".into();
    }
    match a.data_type() {
        DataType::List(_) => {
            let l = a.as_list::<i32>().value(row);
            let items: Vec<String> = (0..l.len()).map(|j| array_text(l.as_ref(), j)).collect();
            format!("{{{}}}", items.join(","))
        }
        DataType::Int32 => a
            .as_primitive::<arrow::datatypes::Int32Type>()
            .value(row)
            .to_string(),
        DataType::Utf8 => a.as_string::<i32>().value(row).to_string(),
        other => panic!("no formatter for {other}"),
    }
}

const GRIDS: &str = "CREATE TABLE grids (id int8 PRIMARY KEY, g int4[][], tg text[][], u uuid[][]);
     INSERT INTO grids VALUES
       (1, '{{1,NULL,3},{4,5,-6}}', '{{a,NULL},{b,c}}', '{{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11},{NULL}}'),
       (2, '{}', '{}', '{}'),
       (3, NULL, '{{x}}', NULL);";

#[test]
fn two_dimensional_arrays_round_trip_into_postgres_and_the_lake() {
    let db = PgTestDb::create("rt_grids");
    db.sql(GRIDS);
    let grids = "  - name: public.grids\n    mode: full_refresh\n    write: overwrite\n";
    // PostgreSQL → PostgreSQL: the same values with the same dimensions, the same types.
    let p = pg_project(&db);
    p.product("ops", "db", &zoo_product(&db, grids));
    p.run(["sync", "run", "--no-progress"]).expect_code(0);
    let target = "landing.\"db__public.grids\"";
    let cols = "id, g::text, array_ndims(g), tg::text, u::text";
    assert_eq!(
        db.sql(&format!("SELECT {cols} FROM {target} ORDER BY id")),
        db.sql(&format!("SELECT {cols} FROM public.grids ORDER BY id"))
    );
    assert_eq!(
        db.sql(&format!(
            "SELECT g::text, array_ndims(g) FROM {target} WHERE id = 1"
        )),
        "{{1,NULL,3},{4,5,-6}}|2"
    );
    assert_eq!(
        db.sql(&format!(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = \
             '{target}'::regclass AND attname IN ('g', 'tg', 'u') ORDER BY attnum"
        )),
        "integer[]\ntext[]\nuuid[]"
    );
    // PostgreSQL → the lake, read back by the parquet crate: nested lists.
    let lake = TestProject::with_lake(BIN, "1ms");
    lake.product("ops", "db", &zoo_product(&db, grids));
    lake.run(["sync", "run", "--no-progress"]).expect_code(0);
    let batch = lake.read_stream("ops", "db", "public.grids");
    let ids = batch.column(0).as_primitive::<Int64Type>();
    let mut rows: Vec<(i64, String)> = (0..batch.num_rows())
        .map(|r| {
            let cells: Vec<String> = ["g", "tg", "u"]
                .iter()
                .map(|c| array_text(batch.column_by_name(c).unwrap().as_ref(), r))
                .collect();
            (ids.value(r), cells.join("|"))
        })
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            (
                1,
                "{{1,NULL,3},{4,5,-6}}|{{a,NULL},{b,c}}|\
                 {{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11},{NULL}}"
                    .to_string()
            ),
            (2, "{}|{}|{}".to_string()),
            (3, "NULL|{{x}}|NULL".to_string()),
        ]
    );
}
