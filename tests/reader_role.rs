//! The read-only role for dashboards, on a real Postgres: the migrations make `tickcast_reader`
//! and grant it SELECT on every table, now and later; docker compose's init script
//! (`monitoring/postgres/initdb/10-reader.sh`, run here with real psql) makes the login role
//! Grafana's datasource uses. Logged in as that role, reads work and every change is refused.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use sqlx::Connection as _;
use tickcast_store as store;

/// The SQLSTATE of a failed statement, or `None` when it succeeded.
async fn refused(conn: &mut sqlx::PgConnection, sql: &str) -> Option<String> {
    match sqlx::query(sql).execute(&mut *conn).await {
        Ok(_) => None,
        Err(sqlx::Error::Database(db)) => db.code().map(|c| c.to_string()),
        Err(e) => panic!("{sql}: {e}"),
    }
}

#[tokio::test]
async fn the_dashboard_role_reads_everything_and_changes_nothing() {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        assert!(
            std::env::var_os("TICKCAST_REQUIRE_SERVICES").is_none(),
            "DATABASE_URL unset but TICKCAST_REQUIRE_SERVICES is set"
        );
        eprintln!("SKIPPED reader_role: set DATABASE_URL (or run scripts/test.sh)");
        return;
    };
    let db_url = common::fresh_postgres(&url, "reader").await;
    let store = store::open(&db_url).await.unwrap(); // migrations
    // One candle, through the sink's path (it makes the time partition).
    let p = rust_decimal::Decimal::ONE;
    let c = tickcast_core::domain::Candle {
        v: tickcast_core::domain::SCHEMA_VERSION,
        exchange: "binance".into(),
        symbol: "BTC-USDT".into(),
        interval: "1m".into(),
        open_ms: 0,
        close_ms: 60_000,
        open: p,
        high: p,
        low: p,
        close: p,
        volume: p,
        trades: 4,
    };
    let pos = store::Pos {
        topic: "c".into(),
        partition: 0,
        offset: 0,
    };
    store
        .write_batch(
            "sink",
            &store::SinkBatch {
                candles: vec![(pos, c)],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut owner = sqlx::PgConnection::connect(&db_url).await.unwrap();

    // The init script, as the postgres image runs it.
    let (host, port, user, db) = {
        let rest = db_url.split("://").nth(1).unwrap();
        let (userinfo, rest) = rest.split_once('@').unwrap();
        let (hostport, db) = rest.split_once('/').unwrap();
        let (host, port) = hostport.split_once(':').unwrap();
        let user = userinfo.split(':').next().unwrap();
        let db = db.split('?').next().unwrap();
        (
            host.to_string(),
            port.to_string(),
            user.to_string(),
            db.to_string(),
        )
    };
    for run in 0..2 {
        // Run twice: the second run only resets the password.
        let out = std::process::Command::new("bash")
            .arg("monitoring/postgres/initdb/10-reader.sh")
            .env("POSTGRES_USER", &user)
            .env("POSTGRES_DB", &db)
            .env("PGHOST", &host)
            .env("PGPORT", &port)
            .env("GRAFANA_DB_PASSWORD", "reader-password")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "init script run {run}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A table made after the grants (as the sink makes partitions) is readable too.
    sqlx::query("create table made_later (x integer)")
        .execute(&mut owner)
        .await
        .unwrap();

    let reader_url = db_url.replacen(&format!("{user}@"), "grafana_reader:reader-password@", 1);
    let mut reader = sqlx::PgConnection::connect(&reader_url).await.unwrap();
    let (n,): (i64,) = sqlx::query_as("select count(*) from candles")
        .fetch_one(&mut reader)
        .await
        .unwrap();
    assert_eq!(n, 1);
    for table in [
        "forecasts",
        "forecasts_latest",
        "alert_rules",
        "alert_events",
        "made_later",
    ] {
        sqlx::query(&format!("select * from {table} limit 1"))
            .execute(&mut reader)
            .await
            .unwrap_or_else(|e| panic!("the reader cannot read {table}: {e}"));
    }
    // 42501: insufficient privilege.
    for sql in [
        "delete from candles",
        "update candles set close = 0",
        "insert into candles (exchange, symbol, interval, open_ms, close_ms, open, high, low, close, volume, trades) values ('x', 'X-Y', '1m', 60000, 120000, 1, 1, 1, 1, 1, 1)",
        "truncate candles",
        "drop table candles",
        "create table mine (x integer)",
        "alter table candles add column y integer",
    ] {
        assert_eq!(
            refused(&mut reader, sql).await.as_deref(),
            Some("42501"),
            "the reader may: {sql}"
        );
    }
    let (n,): (i64,) = sqlx::query_as("select count(*) from candles")
        .fetch_one(&mut owner)
        .await
        .unwrap();
    assert_eq!(n, 1, "a row changed");
}
