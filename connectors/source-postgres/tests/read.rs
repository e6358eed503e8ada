//! The postgres source against the real server: a type zoo compared value by value with
//! PostgreSQL's own output, parallel ranges against a plain read, resuming mid-read, incremental
//! ties, and `check`'s errors.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::*;
use futures::StreamExt;
use weft_core::{Checkpoint, ConfiguredStream, Source, SourceMessage, SyncMode, WriteMode};
use weft_source_postgres::{PostgresConfig, PostgresSource, Secret};
use weft_testkit::pg::PgTestDb;

fn config(db: &PgTestDb) -> PostgresConfig {
    PostgresConfig::new(&db.host, db.port, &db.user, &db.name)
}

async fn configured(
    source: &PostgresSource,
    name: &str,
    mode: SyncMode,
    cursor: Option<&str>,
) -> ConfiguredStream {
    let catalog = source.discover().await.unwrap();
    let descriptor = catalog
        .stream(name)
        .unwrap_or_else(|| panic!("{name} in {:?}", catalog.streams))
        .clone();
    ConfiguredStream {
        primary_key: descriptor.primary_key.clone(),
        descriptor,
        sync_mode: mode,
        write_mode: WriteMode::Append,
        cursor_field: cursor.map(str::to_string),
        pipeline_id: "test.product.stream".into(),
        follow: false,
    }
}

/// Reads everything: batches, checkpoints in order (the last is the final one).
async fn read_all(
    source: &PostgresSource,
    stream: &ConfiguredStream,
    state: Option<&Checkpoint>,
) -> (Vec<RecordBatch>, Vec<Checkpoint>) {
    let mut messages = source.read(stream, state).await.unwrap();
    let (mut batches, mut cps) = (Vec::new(), Vec::new());
    while let Some(m) = messages.next().await {
        match m.unwrap() {
            SourceMessage::Records(b) => batches.push(b),
            SourceMessage::Checkpoint(c) => cps.push(c),
            _ => {}
        }
    }
    (batches, cps)
}

fn concat(batches: &[RecordBatch], stream: &ConfiguredStream) -> RecordBatch {
    concat_batches(&stream.descriptor.schema, batches).unwrap()
}

/// A value as the test's SQL expressions print it.
fn show(a: &dyn Array, i: usize) -> String {
    if a.is_null(i) {
        return "NULL".into();
    }
    match a.data_type() {
        DataType::Boolean => (if a.as_boolean().value(i) { "t" } else { "f" }).into(),
        DataType::Int16 => a.as_primitive::<Int16Type>().value(i).to_string(),
        DataType::Int32 => a.as_primitive::<Int32Type>().value(i).to_string(),
        DataType::Int64 => a.as_primitive::<Int64Type>().value(i).to_string(),
        DataType::UInt32 => a.as_primitive::<UInt32Type>().value(i).to_string(),
        DataType::Float32 => a.as_primitive::<Float32Type>().value(i).to_string(),
        DataType::Float64 => a.as_primitive::<Float64Type>().value(i).to_string(),
        DataType::Decimal128(..) => a.as_primitive::<Decimal128Type>().value_as_string(i),
        DataType::Utf8 => a.as_string::<i32>().value(i).to_string(),
        DataType::Binary => {
            let v = a.as_binary::<i32>().value(i);
            format!(
                "\\x{}",
                v.iter().map(|b| format!("{b:02x}")).collect::<String>()
            )
        }
        DataType::Date32 => a.as_primitive::<Date32Type>().value(i).to_string(),
        DataType::Time64(_) => a
            .as_primitive::<Time64MicrosecondType>()
            .value(i)
            .to_string(),
        DataType::Timestamp(..) => a
            .as_primitive::<TimestampMicrosecondType>()
            .value(i)
            .to_string(),
        DataType::Interval(_) => {
            let v = a.as_primitive::<IntervalMonthDayNanoType>().value(i);
            format!("{} {} {}", v.months, v.days, v.nanoseconds / 1000)
        }
        DataType::List(_) => {
            let l = a.as_list::<i32>().value(i);
            let items: Vec<String> = (0..l.len()).map(|j| show(l.as_ref(), j)).collect();
            format!("[{}]", items.join(","))
        }
        other => panic!("no formatter for {other}"),
    }
}

#[tokio::test]
async fn type_zoo_matches_postgres_value_by_value() {
    let db = PgTestDb::create("pgsrc_zoo");
    db.sql(
        r#"CREATE TYPE mood AS ENUM ('sad', 'happy');
        CREATE DOMAIN posint AS int4 CHECK (VALUE > 0);
        CREATE TABLE zoo (
          id int8 PRIMARY KEY, i2 int2, i4 int4, o oid, f4 float4, f8 float8,
          n122 numeric(12,2), n38 numeric(38,10), nfree numeric, t text, vc varchar(20), ch char(3), nm name,
          b bytea, bo bool, d date, tm time, ttz timetz, ts timestamp, tstz timestamptz, iv interval,
          u uuid, j json, jb jsonb, ai int4[], at text[], an numeric(6,2)[], e mood, dom posint,
          ip inet, cidr_ cidr, mac macaddr, m money, bt bit(4), vb varbit, x xml, tsv tsvector,
          r int4range, comp pg_stat_wal_receiver[], ai2 int4[][], at2 text[][], ai3 int8[][][] );
        INSERT INTO zoo (id) VALUES (1);
        INSERT INTO zoo VALUES (2, -32768, 2147483647, 4294967295, 1.5, -1e300,
          1234567890.12, -1234567890123456789012345678.0123456789, 'NaN', 'héllo ☃ "q" \ 😀', 'ab', 'x', 'nm',
          '\x00ff10', true, '2024-02-29', '23:59:59.999999', '12:00+05', '1999-12-31 23:59:59.5', '2024-01-01 00:00:00+02', '1 year 2 mons 3 days 04:05:06.789',
          'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": [1, 2]}', '{"b": null, "a": 1}', '{1,NULL,3}', '{}', '{1.50,NULL}', 'happy', 7,
          '10.0.0.1/8', '10.0.0.0/8', '08:00:2b:01:02:03', 12.34, B'1010', B'101', '<a>x</a>', 'a fat cat', '[1,5)', NULL,
          '{{1,NULL,3},{4,5,-6}}', '{{a,NULL},{"b c",""}}', '{{{1},{2}},{{NULL},{4}}}');
        INSERT INTO zoo (id, nfree, d, ts, tstz, t, b, f8) VALUES
          (3, '123456789012345678901234567890123456789012345.000000000000000000001', 'infinity', '-infinity', 'infinity', repeat('x', 200000), decode(repeat('ab', 100000), 'hex'), 'NaN'),
          (4, '-Infinity', '0001-01-01', '1970-01-01', '1970-01-01 00:00:00+00', '', '\x', '-0');
        -- An empty array (no dimensions) and lower bounds other than 1 (not kept).
        UPDATE zoo SET ai2 = '{}', at2 = '[0:0][-1:0]={{x,y}}', ai3 = '{}' WHERE id = 3;"#,
    );
    let source = PostgresSource::new(config(&db)).unwrap();
    let stream = configured(&source, "public.zoo", SyncMode::FullRefresh, None).await;
    assert_eq!(stream.descriptor.primary_key, vec!["id"]);
    let schema = stream.descriptor.schema.clone();
    let ty = |c: &str| schema.field_with_name(c).unwrap().data_type().clone();
    assert_eq!(ty("n122"), DataType::Decimal128(12, 2));
    assert_eq!(ty("n38"), DataType::Decimal128(38, 10));
    assert_eq!(ty("nfree"), DataType::Utf8);
    assert_eq!(
        ty("tstz"),
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    assert_eq!(ty("ts"), DataType::Timestamp(TimeUnit::Microsecond, None));
    assert_eq!(ty("iv"), DataType::Interval(IntervalUnit::MonthDayNano));
    assert_eq!(ty("dom"), DataType::Int32);
    assert!(matches!(ty("ai"), DataType::List(f) if f.data_type() == &DataType::Int32));
    assert!(matches!(ty("an"), DataType::List(f) if f.data_type() == &DataType::Decimal128(6, 2)));
    assert_eq!(ty("ip"), DataType::Utf8);
    // Declared dimensions nest the lists.
    let list = |t: DataType| DataType::List(Field::new("item", t, true).into());
    assert_eq!(ty("ai2"), list(list(DataType::Int32)));
    assert_eq!(ty("at2"), list(list(DataType::Utf8)));
    assert_eq!(ty("ai3"), list(list(list(DataType::Int64))));
    // Each field names its PostgreSQL type (domains as their base type).
    let pg_type =
        |c: &str| schema.field_with_name(c).unwrap().metadata()[weft_core::values::PG_TYPE].clone();
    assert_eq!(pg_type("n122"), "numeric(12,2)");
    assert_eq!(pg_type("ch"), "character(3)");
    assert_eq!(pg_type("e"), "mood");
    assert_eq!(pg_type("dom"), "integer");
    assert_eq!(pg_type("an"), "numeric(6,2)[]");
    assert_eq!(pg_type("m"), "money");
    assert_eq!(pg_type("ai2"), "integer[]");
    let (batches, _) = read_all(&source, &stream, None).await;
    let table = concat(&batches, &stream);
    assert_eq!(table.num_rows(), 4);

    // PostgreSQL's own rendering of each column, in the forms `show` prints.
    let ep = "1970-01-01";
    let exprs: Vec<(&str, String)> = schema
        .fields()
        .iter()
        .map(|f| {
            let c = format!("\"{}\"", f.name());
            let e = match f.data_type() {
                // ±infinity as the type's extreme values (weft_core::values).
                DataType::Date32 => format!("CASE WHEN {c} = 'infinity' THEN '2147483647' WHEN {c} = '-infinity' THEN '-2147483647' ELSE ({c} - date '{ep}')::text END"),
                DataType::Timestamp(_, tz) => {
                    let cast = if tz.is_some() { "timestamptz" } else { "timestamp" };
                    format!("CASE WHEN {c} = 'infinity' THEN '9223372036854775807' WHEN {c} = '-infinity' THEN '-9223372036854775807' ELSE ((extract(epoch from {c} - '{ep}'::{cast}) * 1000000)::int8)::text END")
                }
                DataType::Time64(_) => format!("((extract(epoch from {c}) * 1000000)::int8)::text"),
                DataType::Interval(_) => format!("(extract(year from {c})*12 + extract(month from {c}))::text || ' ' || extract(day from {c})::text || ' ' || ((extract(epoch from {c} - date_trunc('day', {c}))*1000000)::int8)::text"),
                // Nested lists: the array's text without its bounds (dropped) or quotes.
                DataType::List(item) if matches!(item.data_type(), DataType::List(_)) => format!(
                    "translate(regexp_replace({c}::text, '^(\\[-?\\d+:-?\\d+\\])+=', ''), '{{}}\"', '[]')"
                ),
                DataType::List(_) => format!("'[' || array_to_string({c}, ',', 'NULL') || ']'"),
                DataType::Float32 | DataType::Float64 => format!("CASE WHEN {c} = 'NaN' THEN 'NaN' WHEN {c}::text = '-0' THEN '-0' ELSE {c}::text END"),
                // money as its exact numeric value, not the locale's text.
                DataType::Utf8 if f.name() == "m" => format!("{c}::numeric::text"),
                // The type's own output function (char(n) keeps its padding, unlike ::text).
                _ => format!("CASE WHEN {c} IS NOT NULL THEN format('%s', {c}) END"),
            };
            (f.name().as_str(), format!("coalesce({e}, 'NULL')"))
        })
        .collect();
    // The nested columns' exact values, independent of the expressions above.
    let rows = |c: &str| {
        let col = table.column_by_name(c).unwrap();
        let ids = table.column(0).as_primitive::<Int64Type>();
        let mut by_id = vec![String::new(); 4];
        for row in 0..4 {
            by_id[ids.value(row) as usize - 1] = show(col.as_ref(), row);
        }
        by_id
    };
    assert_eq!(rows("ai2"), ["NULL", "[[1,NULL,3],[4,5,-6]]", "[]", "NULL"]);
    assert_eq!(
        rows("at2"),
        ["NULL", "[[a,NULL],[b c,]]", "[[x,y]]", "NULL"]
    );
    assert_eq!(
        rows("ai3"),
        ["NULL", "[[[1],[2]],[[NULL],[4]]]", "[]", "NULL"]
    );
    for (name, expr) in exprs {
        // One line, values separated by \x1f: text values may hold newlines or be empty.
        let expected = db.sql(&format!(
            "SELECT string_agg({expr}, E'\\x1f' ORDER BY id) FROM zoo"
        ));
        let expected: Vec<&str> = expected.split('\x1f').collect();
        let col = table.column_by_name(name).unwrap();
        let ids = table.column(0).as_primitive::<Int64Type>();
        for row in 0..table.num_rows() {
            let id = ids.value(row) as usize;
            let (got, want) = (show(col.as_ref(), row), expected[id - 1]);
            if matches!(col.data_type(), DataType::Float32 | DataType::Float64) && got != "NULL" {
                let (g, w): (f64, f64) = (got.parse().unwrap(), want.parse().unwrap());
                assert!(
                    g == w || (g.is_nan() && w.is_nan()),
                    "column {name}, id {id}: {g} vs {w}"
                );
                assert_eq!(
                    g.is_sign_negative(),
                    w.is_sign_negative(),
                    "column {name}, id {id}"
                );
                continue;
            }
            assert_eq!(got, want, "column {name}, id {id}");
        }
    }
}

#[tokio::test]
async fn decimal_nan_is_an_error_naming_the_column() {
    let db = PgTestDb::create("pgsrc_nan");
    db.sql("CREATE TABLE money_t (id int PRIMARY KEY, amount numeric(10,2)); INSERT INTO money_t VALUES (1, 'NaN');");
    let source = PostgresSource::new(config(&db)).unwrap();
    let stream = configured(&source, "public.money_t", SyncMode::FullRefresh, None).await;
    let mut messages = source.read(&stream, None).await.unwrap();
    let mut err = None;
    while let Some(m) = messages.next().await {
        if let Err(e) = m {
            err = Some(e.to_string());
        }
    }
    let err = err.expect("an error");
    assert!(
        err.contains(
            "stream `public.money_t`: column `amount`: the value NaN has no Decimal128 form"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn arrays_with_other_than_the_declared_dimensions_name_the_fix() {
    let db = PgTestDb::create("pgsrc_dims");
    // PostgreSQL stores a 2-D value in an `int4[]` column without complaint.
    db.sql(
        "CREATE TABLE grid (id int PRIMARY KEY, cells int4[]);
         INSERT INTO grid VALUES (1, '{1,2}'), (2, '{{1,2},{3,4}}');
         CREATE TABLE fixed (id int PRIMARY KEY, cells int4[]);
         INSERT INTO fixed VALUES (2, '{{1,2},{3,4}}');
         -- The fix the error names, before any read holds a lock.
         ALTER TABLE fixed ALTER COLUMN cells TYPE int4[][];",
    );
    let source = PostgresSource::new(config(&db)).unwrap();
    let stream = configured(&source, "public.grid", SyncMode::FullRefresh, None).await;
    let mut messages = source.read(&stream, None).await.unwrap();
    let mut err = None;
    while let Some(m) = messages.next().await {
        if let Err(e) = m {
            err = Some(e.to_string());
        }
    }
    let err = err.expect("an error");
    assert!(
        err.contains(
            "stream `public.grid`: column `cells`: an array value with 2 dimensions where the \
             column declares one dimension; PostgreSQL does not enforce declared dimensions, \
             weft reads them as that many nested lists: declare the values' dimensions \
             (`ALTER TABLE … ALTER COLUMN … TYPE <element>[][]`, which rewrites no data), or \
             leave the column out with `columns:`"
        ),
        "{err}"
    );
    // The fix the error names: the 2-D value reads.
    let stream = configured(&source, "public.fixed", SyncMode::FullRefresh, None).await;
    let (batches, _) = read_all(&source, &stream, None).await;
    let table = concat(&batches, &stream);
    assert_eq!(show(table.column(1).as_ref(), 0), "[[1,2],[3,4]]");
}

fn ids_of(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect()
}

#[tokio::test]
async fn parallel_ranges_equal_a_plain_read_and_resume_exactly() {
    let db = PgTestDb::create("pgsrc_ranges");
    db.sql("CREATE TABLE big (id int8 PRIMARY KEY, v text); INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 50000) g; ANALYZE big;
            CREATE TABLE heap (v int4, w text); INSERT INTO heap SELECT g, 'w' || g FROM generate_series(1, 30000) g; ANALYZE heap;");
    for table in ["big", "heap"] {
        let mut cfg = config(&db);
        cfg.range_rows = 7000;
        cfg.batch_size = 1000;
        cfg.parallelism = 3;
        let split = PostgresSource::new(cfg).unwrap();
        let plain = PostgresSource::new(PostgresConfig {
            range_rows: 10_000_000,
            ..config(&db)
        })
        .unwrap();
        let name = format!("public.{table}");
        let stream = configured(&split, &name, SyncMode::FullRefresh, None).await;
        let (a, cps) = read_all(&split, &stream, None).await;
        let (b, _) = read_all(&plain, &stream, None).await;
        let sorted = |batches: &[RecordBatch]| {
            let t = concat(batches, &stream);
            let mut rows: Vec<String> = (0..t.num_rows())
                .map(|r| {
                    (0..t.num_columns())
                        .map(|c| show(t.column(c).as_ref(), r))
                        .collect::<Vec<_>>()
                        .join("|")
                })
                .collect();
            rows.sort();
            rows
        };
        let all = sorted(&a);
        assert_eq!(all.len(), if table == "big" { 50000 } else { 30000 });
        assert_eq!(
            all,
            sorted(&b),
            "{table}: parallel read differs from plain read"
        );
        let last = cps.last().unwrap().position();
        assert_eq!(last["complete"], true);
        assert!(
            last["ranges"].as_array().unwrap().len() >= 4,
            "{table}: {last}"
        );

        // Resume from every 7th checkpoint: what was yielded before it + the rest = everything.
        let mut yielded = Vec::new();
        let mut messages = split.read(&stream, None).await.unwrap();
        let mut seen_cps = 0;
        let mut resume_points = Vec::new();
        while let Some(m) = messages.next().await {
            match m.unwrap() {
                SourceMessage::Records(b) => yielded.push(b),
                SourceMessage::Checkpoint(c) => {
                    seen_cps += 1;
                    if seen_cps % 7 == 3 {
                        resume_points.push((yielded.clone(), c));
                    }
                }
                _ => {}
            }
        }
        assert!(resume_points.len() >= 2);
        for (before, cp) in resume_points.into_iter().take(3) {
            let (rest, _) = read_all(&split, &stream, Some(&cp)).await;
            let mut combined = before.clone();
            combined.extend(rest);
            assert_eq!(
                sorted(&combined),
                all,
                "{table}: resume from {}",
                cp.position()
            );
        }
    }
}

#[tokio::test]
async fn incremental_reads_ties_without_loss_or_duplicates() {
    let db = PgTestDb::create("pgsrc_incr");
    db.sql(r#"CREATE TABLE "we""ird tab" (id int8, k text, updated_at timestamptz, PRIMARY KEY (id, k));
              INSERT INTO "we""ird tab" SELECT g, 'k''' || (g % 3), '2024-01-01'::timestamptz + (g / 1000) * interval '1 hour' FROM generate_series(1, 5000) g;
              INSERT INTO "we""ird tab" VALUES (9999, 'null cursor', NULL);"#);
    let mut cfg = config(&db);
    cfg.batch_size = 777; // batches end in the middle of runs of equal cursors
    let source = PostgresSource::new(cfg).unwrap();
    let stream = configured(
        &source,
        "public.we\"ird tab",
        SyncMode::Incremental,
        Some("updated_at"),
    )
    .await;
    assert_eq!(stream.descriptor.cursor_candidates[0], "updated_at");
    let (batches, cps) = read_all(&source, &stream, None).await;
    let mut ids = ids_of(&batches);
    assert_eq!(ids.len(), 5000);
    // Resume from each checkpoint: exactly the rows after it.
    let mut before = 0;
    for (i, cp) in cps.iter().enumerate() {
        before += batches.get(i).map(|b| b.num_rows()).unwrap_or(0);
        let (rest, _) = read_all(&source, &stream, Some(cp)).await;
        assert_eq!(
            before + ids_of(&rest).len(),
            5000,
            "checkpoint {i}: {}",
            cp.position()
        );
    }
    // New rows tying with the last cursor, and later ones, are read once.
    let last = cps.last().unwrap().clone();
    db.sql(r#"INSERT INTO "we""ird tab" VALUES (6000, 'z', '2024-01-01 05:00:00+00'), (6001, 'a', '2024-01-01 06:00:00+00'), (1, 'late', '2023-01-01');"#);
    let (more, _) = read_all(&source, &stream, Some(&last)).await;
    let got = ids_of(&more);
    assert_eq!(
        got,
        vec![6000, 6001],
        "late rows with an older cursor are (documented as) missed"
    );
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5000);
}

#[tokio::test]
async fn check_reports_what_to_fix() {
    let db = PgTestDb::create("pgsrc_check");
    db.sql("CREATE TABLE secret_t (id int); DROP ROLE IF EXISTS weft_reader_t; CREATE ROLE weft_reader_t LOGIN;");
    let mut cfg = config(&db);
    cfg.user = "weft_reader_t".into();
    let err = PostgresSource::new(cfg.clone())
        .unwrap()
        .check()
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "user `weft_reader_t` may not read `public.secret_t`; run: GRANT SELECT ON \"public\".\"secret_t\" TO \"weft_reader_t\";"
    );
    db.sql("GRANT SELECT ON secret_t TO weft_reader_t");
    PostgresSource::new(cfg).unwrap().check().await.unwrap();

    let mut missing = config(&db);
    missing.database = "weft_no_such_db".into();
    let err = PostgresSource::new(missing)
        .unwrap()
        .check()
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(err, format!("database `weft_no_such_db` does not exist on {}:{}; check `database` in the source config", db.host, db.port));

    let mut unreachable = config(&db);
    unreachable.port = 1;
    unreachable.password = Some(Secret::new("hunter2"));
    let err = PostgresSource::new(unreachable)
        .unwrap()
        .check()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!("cannot reach PostgreSQL at {}:1: ", db.host)),
        "{err}"
    );
    assert!(!err.contains("hunter2"));

    let mut schema = config(&db);
    schema.schemas = vec!["nope".into()];
    let err = PostgresSource::new(schema)
        .unwrap()
        .check()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("schema `nope` does not exist"), "{err}");
    db.sql("DROP OWNED BY weft_reader_t; DROP ROLE weft_reader_t;");
}
