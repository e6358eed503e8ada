//! Connecting, and turning PostgreSQL errors into messages that say what to fix. Messages name
//! host, port, user and database, never the password.

use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};
use weft_core::{ConnectorError, Result};

use crate::config::PostgresConfig;
use crate::sql::quote_ident;

/// Opens a session: UTF-8, standard strings, a recognisable application name. The whole
/// handshake is bounded by `connect_timeout`: tokio-postgres's own connect timeout covers the
/// TCP connect only, not a server that accepts TCP and then never answers the startup.
pub async fn connect(config: &PostgresConfig) -> Result<Client> {
    match tokio::time::timeout(config.connect_timeout, open(config)).await {
        Ok(connected) => connected,
        Err(_) => Err(ConnectorError::Other(connect_timeout_error(config))),
    }
}

/// What a connection that did not complete in time is reported as.
pub fn connect_timeout_error(config: &PostgresConfig) -> String {
    format!(
        "PostgreSQL at {}:{} did not complete the connection (TCP connect, startup and \
         authentication) within {} (`connect_timeout`); check that `host` and `port` name a \
         PostgreSQL server reachable from this machine, or raise `connect_timeout`",
        config.host,
        config.port,
        humantime_serde::re::humantime::format_duration(config.connect_timeout)
    )
}

async fn open(config: &PostgresConfig) -> Result<Client> {
    let mut pg = tokio_postgres::Config::new();
    pg.host(&config.host)
        .port(config.port)
        .user(&config.user)
        .dbname(&config.database)
        .application_name("weft")
        .keepalives(true)
        .keepalives_idle((config.network_timeout / 2).max(Duration::from_secs(1)))
        .keepalives_interval((config.network_timeout / 8).max(Duration::from_secs(1)))
        .keepalives_retries(4)
        .tcp_user_timeout(config.network_timeout);
    if let Some(password) = &config.password {
        pg.password(password.expose());
    }
    let (client, connection) = pg
        .connect(NoTls)
        .await
        .map_err(|e| connect_error(config, &e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("postgres connection closed: {e}");
        }
    });
    let mut setup = "SET standard_conforming_strings = on; SET client_encoding = 'UTF8'; \
                     SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; \
                     SET extra_float_digits = 3; SET TimeZone = 'UTC'"
        .to_string();
    // Unset, the server's (or the role's) own setting stays in force.
    if let Some(t) = config.statement_timeout {
        setup.push_str(&format!(
            "; SET statement_timeout = {}",
            t.as_millis().max(1)
        ));
    }
    client
        .batch_execute(&setup)
        .await
        .map_err(|e| query_error("setting up the session", &e))?;
    Ok(client)
}

fn connect_error(config: &PostgresConfig, e: &tokio_postgres::Error) -> ConnectorError {
    let at = format!("{}:{}", config.host, config.port);
    let code = e.code();
    let message = if code == Some(&SqlState::INVALID_PASSWORD) {
        format!(
            "password authentication failed for user `{}` at {at}; check `password` (and \
             `user`) in the source config",
            config.user
        )
    } else if code == Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION) {
        format!(
            "PostgreSQL at {at} refused user `{}`: {}; check `user` and the server's pg_hba.conf",
            config.user,
            db_message(e)
        )
    } else if code == Some(&SqlState::INVALID_CATALOG_NAME) {
        format!(
            "database `{}` does not exist on {at}; check `database` in the source config",
            config.database
        )
    } else if let Some(db) = e.as_db_error() {
        format!(
            "PostgreSQL at {at} refused the connection: {}",
            db.message()
        )
    } else {
        // I/O level: refused, unreachable, timeout, DNS.
        let mut cause = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            cause = s.to_string();
            source = s.source();
        }
        if e.to_string().contains("password missing") {
            return ConnectorError::Other(format!(
                "PostgreSQL at {at} asks user `{}` for a password; set `password` in the \
                 source config",
                config.user
            ));
        }
        format!(
            "cannot reach PostgreSQL at {at}: {cause}; check `host` and `port`, and that the \
             server accepts TCP connections from this machine"
        )
    };
    ConnectorError::Other(message)
}

fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

/// A failed query, worded with what was being done.
pub fn query_error(doing: &str, e: &tokio_postgres::Error) -> ConnectorError {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{doing}: {}", db.message());
            if let Some(detail) = db.detail() {
                text.push_str(&format!(" ({detail})"));
            }
            ConnectorError::Other(text)
        }
        None => ConnectorError::Other(format!("{doing}: {e}")),
    }
}

/// A failed read of a table, with the fix for the common causes.
pub fn read_error(
    stream: &str,
    schema: &str,
    table: &str,
    user: &str,
    e: &tokio_postgres::Error,
) -> ConnectorError {
    let code = e.code();
    if code == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
        return ConnectorError::Other(format!(
            "stream `{stream}`: user `{user}` may not read it; run `{}`",
            grant_select(schema, table, user)
        ));
    }
    if code == Some(&SqlState::UNDEFINED_TABLE) {
        return ConnectorError::Other(format!(
            "stream `{stream}`: the table no longer exists in PostgreSQL (dropped or renamed \
             during the sync?); run `weft connector discover` and update the product"
        ));
    }
    if code == Some(&SqlState::UNDEFINED_COLUMN) {
        return ConnectorError::Other(format!(
            "stream `{stream}`: a column changed during the sync ({}); rerun the sync",
            db_message(e)
        ));
    }
    if code == Some(&SqlState::QUERY_CANCELED) {
        return ConnectorError::Other(format!(
            "stream `{stream}`: reading was cancelled by the server ({}); if the source's \
             `statement_timeout` is set, raise it",
            db_message(e)
        ));
    }
    query_error(&format!("stream `{stream}`: reading failed"), e)
}

/// The statement that grants read access to a table.
pub fn grant_select(schema: &str, table: &str, user: &str) -> String {
    format!(
        "GRANT SELECT ON {}.{} TO {};",
        quote_ident(schema),
        quote_ident(table),
        quote_ident(user)
    )
}
