//! Connecting, and turning PostgreSQL's errors into messages that say what to do.

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};
use weft_core::{ConnectorError, Result};

use crate::config::PgConfig;
use crate::naming::quote;

/// Connects and spawns the connection's I/O task (it ends when the client is dropped). The
/// whole handshake is bounded by `connect_timeout`: tokio-postgres's own connect timeout covers
/// the TCP connect only, not a server that accepts TCP and then never answers the startup.
pub async fn connect(config: &PgConfig) -> Result<Client> {
    match tokio::time::timeout(config.connect_timeout, open(config)).await {
        Ok(connected) => connected,
        Err(_) => Err(ConnectorError::Other(format!(
            "PostgreSQL at {}:{} did not complete the connection (TCP connect, startup and \
             authentication) within {} (`connect_timeout`); check that `host` and `port` name \
             a PostgreSQL server reachable from this machine, or raise `connect_timeout`",
            config.host,
            config.port,
            humantime_serde::re::humantime::format_duration(config.connect_timeout)
        ))),
    }
}

async fn open(config: &PgConfig) -> Result<Client> {
    let (client, connection) = config
        .pg_config()
        .connect(NoTls)
        .await
        .map_err(|e| connect_error(config, &e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("PostgreSQL connection closed: {e}");
        }
    });
    // Unset, the server's (or the role's) own setting stays in force.
    if let Some(t) = config.statement_timeout {
        client
            .batch_execute(&format!("SET statement_timeout = {}", t.as_millis().max(1)))
            .await
            .map_err(|e| {
                ConnectorError::Other(format!(
                    "setting `statement_timeout` on {}: {}",
                    config.location(),
                    db_message(&e)
                ))
            })?;
    }
    Ok(client)
}

/// Why connecting failed, worded for the user (never with the password).
fn connect_error(config: &PgConfig, e: &tokio_postgres::Error) -> ConnectorError {
    let at = format!("PostgreSQL at {}:{}", config.host, config.port);
    let message = match e.code() {
        Some(code) if *code == SqlState::INVALID_PASSWORD => format!(
            "{at} rejected the password of user `{}`; check `password`",
            config.user
        ),
        Some(code) if *code == SqlState::INVALID_CATALOG_NAME => format!(
            "database `{}` does not exist on {at}; create it (CREATE DATABASE {}) or fix \
             `database`",
            config.database,
            quote(&config.database)
        ),
        Some(code) if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => format!(
            "{at} does not let user `{}` in: {} (see the server's pg_hba.conf)",
            config.user,
            e.as_db_error().map(|d| d.message()).unwrap_or_default()
        ),
        Some(_) => format!("{at}: {}", db_message(e)),
        None if e.to_string().contains("password missing") => format!(
            "{at} asks for a password for user `{}`; set `password` (e.g. `${{PG_PASSWORD}}`)",
            config.user
        ),
        None => format!("cannot reach {at}: {e}"),
    };
    ConnectorError::Other(message)
}

/// A PostgreSQL error with its detail and hint, for messages.
pub fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut out = db.message().to_string();
            if let Some(detail) = db.detail() {
                out.push_str(&format!(" ({detail})"));
            }
            if let Some(hint) = db.hint() {
                out.push_str(&format!("; hint: {hint}"));
            }
            if let Some(place) = db.where_() {
                out.push_str(&format!("; at {place}"));
            }
            out
        }
        None => e.to_string(),
    }
}

/// `check`: connects, then makes sure the user may create what weft creates.
pub async fn check(config: &PgConfig) -> Result<()> {
    let client = connect(config).await?;
    let sql_error = |e: tokio_postgres::Error| {
        ConnectorError::Other(format!(
            "checking {}: {}",
            config.location(),
            db_message(&e)
        ))
    };
    let user = quote(&config.user);
    match &config.schema {
        Some(schema) => {
            let row = client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1), \
                     has_database_privilege(current_database(), 'CREATE')",
                    &[schema],
                )
                .await
                .map_err(sql_error)?;
            let (exists, create_db): (bool, bool) = (row.get(0), row.get(1));
            if exists {
                let may: bool = client
                    .query_one("SELECT has_schema_privilege($1, 'CREATE')", &[schema])
                    .await
                    .map_err(sql_error)?
                    .get(0);
                if !may {
                    return Err(ConnectorError::Other(format!(
                        "user `{}` may not create tables in schema `{schema}` of {}; run: GRANT \
                         USAGE, CREATE ON SCHEMA {} TO {user};",
                        config.user,
                        config.location(),
                        quote(schema)
                    )));
                }
            } else if !create_db {
                return Err(ConnectorError::Other(format!(
                    "schema `{schema}` does not exist in {} and user `{}` may not create it; \
                     run: GRANT CREATE ON DATABASE {} TO {user}; (or create the schema and \
                     GRANT USAGE, CREATE ON SCHEMA {} TO {user};)",
                    config.location(),
                    config.user,
                    quote(&config.database),
                    quote(schema)
                )));
            }
        }
        None => {
            let may: bool = client
                .query_one(
                    "SELECT has_database_privilege(current_database(), 'CREATE')",
                    &[],
                )
                .await
                .map_err(sql_error)?
                .get(0);
            if !may {
                return Err(ConnectorError::Other(format!(
                    "user `{}` may not create the domains' schemas in {}; run: GRANT CREATE ON \
                     DATABASE {} TO {user}; (or set `schema` to a schema the user may create \
                     tables in)",
                    config.user,
                    config.location(),
                    quote(&config.database)
                )));
            }
        }
    }
    Ok(())
}
