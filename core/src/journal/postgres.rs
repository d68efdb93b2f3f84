//! The PostgreSQL journal: every run of a team in one database, `FOUNDRY_JOURNAL=postgres://…`.
//!
//! Tables (migration 1, applied on first use in one transaction under an advisory lock, so
//! two processes starting at once do not race): `foundry_runs` (one row per run: its info,
//! state, format, lease and `epoch`), `foundry_steps` (one row per step record, keyed by run
//! and step key), `foundry_log` (migration 5: one row per write of step records, numbered
//! by the run's driver) and `foundry_summaries` (a finished run's summary).
//! `foundry_schema_version` records the migrations applied; a database migrated by a newer
//! Foundry is refused.
//!
//! Each [`RunJournal::write`] is one transaction, committed with `synchronous_commit = on`:
//! durable on the server when it returns. Its step records go to the log as one row; a run's
//! records are its step rows overlaid by its log in order, and every [`FOLD_RECORDS`] logged
//! records the write folds the log into the step rows on the server. `Finish` deletes the
//! run's step rows and log and writes its summary in the same transaction.
//!
//! **Who drives**: opening or creating a run takes its row in the same transaction: `held`,
//! the owner's lease (host, pid, heartbeat) and `epoch + 1`. Another process is refused with
//! [`JournalError::Busy`] naming the owner while [`lease::owner_alive`] says the owner may
//! still drive; dropping the journal gives the run back. Every write first checks the epoch
//! it was opened with, so a driver whose run was taken over cannot write any more.
//!
//! **The client and its thread**: the traits are synchronous and are called from the
//! writer's leader, which is a tokio worker thread, and from async code. The sync `postgres`
//! crate runs a runtime of its own inside each call and panics inside another runtime, and
//! `block_in_place` needs a multi-thread runtime, which not every caller has. So each store
//! has one connection behind a lock, and a plain thread of its own that is in no runtime. A
//! call runs on the calling thread where that may block (no runtime; a multi-thread
//! runtime's thread, inside `block_in_place`) and nothing sent to the store's thread is
//! still to run; else it is sent to that thread over a channel and the caller waits for the
//! answer. Handing a write to another thread and back cost a third of the commit on this
//! project's 2-core VM. Jobs that need no answer (giving a run back, closing the
//! connection) go to the thread, and calls after them too until they are done, so calls
//! keep their order. The connection is made anew when it was lost, so the write after a
//! server restart succeeds.
//!
//! **Credentials**: never in the URL (refused: the environment is readable by every child
//! and kept in shell histories); `PGPASSWORD`, else the file named by the URL's
//! `password_file` parameter (first line), else libpq's password file ([`pgpass`]). Messages name the server by [`shown`] URL, which
//! never holds a password. TLS as libpq's `sslmode` and `sslrootcert` say ([`pg_tls`]):
//! verified (`verify-full`) unless told otherwise for a server on a network, and a mode that
//! may be clear refused there rather than spoken in clear (DESIGN.md §4).

use crate::sync::lock;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postgres::config::{Host, SslMode};
use postgres::error::SqlState;
use postgres::{Client, Config};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::pg_listen::{self, Listener};
use super::{CancelWake, pg_tls, pgpass};
use super::{FORMAT_VERSION, JournalError, JournalSnapshot, JournalStore, RunJournal, WriteOp};
use crate::failpoint::{self, Phase};
use crate::lease;
use crate::model::{
    Lease, RunId, RunInfo, RunMeta, RunState, RunSummary, StepRecord, StepRecordState,
};

/// The schema this build knows, as migrations in order; `foundry_schema_version` holds how
/// many are applied.
const MIGRATIONS: &[&str] = &[
    // 1: the journal's tables.
    "CREATE TABLE foundry_runs (
        id text PRIMARY KEY,
        format integer NOT NULL,
        workflow text NOT NULL,
        workflow_version bigint NOT NULL,
        created_at bigint NOT NULL,
        info text NOT NULL,
        meta text NOT NULL,
        state text NOT NULL,
        lease text,
        lease_host text,
        lease_pid bigint,
        lease_heartbeat_at bigint,
        held boolean NOT NULL DEFAULT false,
        epoch bigint NOT NULL DEFAULT 0
    );
    CREATE INDEX foundry_runs_created ON foundry_runs (created_at, id);
    CREATE TABLE foundry_steps (
        run text NOT NULL REFERENCES foundry_runs (id) ON DELETE CASCADE,
        key text NOT NULL,
        seq bigint NOT NULL,
        record text NOT NULL,
        PRIMARY KEY (run, key)
    );
    CREATE TABLE foundry_summaries (
        run text PRIMARY KEY REFERENCES foundry_runs (id) ON DELETE CASCADE,
        finished_at bigint NOT NULL,
        summary text NOT NULL
    );",
    // 2: the lease's liveness by the server's clock, so machines whose clocks differ agree
    // on when it lapses: the last write of its holder, and the TTL the holder runs with.
    "ALTER TABLE foundry_runs ADD COLUMN lease_beat timestamptz, ADD COLUMN lease_ttl_ms bigint;",
    // 3: a cancel asked of the run's driver by another machine (who asked, a lease's JSON,
    // and when by the server's clock); its driver reads it with every write it makes.
    "ALTER TABLE foundry_runs ADD COLUMN cancel_requested text, ADD COLUMN cancel_requested_at timestamptz;",
    // 4: the fence without a write. Every write of a driver first calls `foundry_fence`,
    // which takes the run's lock shared for the writing transaction and only then (a volatile
    // function's query sees what committed before it) reads whether the run is still at the
    // driver's epoch; a take-over calls `foundry_take` first, which takes it exclusively, so
    // it waits for the writes in flight and the writes after it see the new epoch. The lock
    // is an advisory one: it lives in the server's memory, not in a row, so a step's commit
    // writes no new version of the run's row. Step rows lose their foreign key for the same
    // reason (its check locks the run's row for every record); runs are removed with theirs.
    "ALTER TABLE foundry_steps DROP CONSTRAINT IF EXISTS foundry_steps_run_fkey;
    CREATE FUNCTION foundry_fence(run text, at_epoch bigint) RETURNS TABLE (cancel_requested text)
    LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock_shared(1718580590, hashtext(run));
        RETURN QUERY SELECT r.cancel_requested FROM foundry_runs r WHERE r.id = run AND r.epoch = at_epoch;
    END $$;
    CREATE FUNCTION foundry_take(run text) RETURNS void
    LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock(1718580590, hashtext(run));
    END $$;",
    // 5: the step log. A write appends one row holding all of its step records (a
    // sequential step's `started` with the previous step's completion, a fan-out's batch)
    // rather than upserting one row per record: one heap tuple and one index entry per
    // commit, and no update of the row the previous commit wrote. `n` orders a run's rows;
    // its driver numbers them (fenced, so one writer at a time). A run's records are its
    // `foundry_steps` rows overlaid by its log in order; the driver folds the log into
    // `foundry_steps` every so many records, so a read stays bounded however long the run.
    "CREATE TABLE foundry_log (
        run text NOT NULL,
        n bigint NOT NULL,
        keys text[] NOT NULL,
        seqs bigint[] NOT NULL,
        records text[] NOT NULL,
        PRIMARY KEY (run, n)
    );",
];

/// The advisory lock migrations are applied under ("foundry" in ASCII).
const MIGRATION_LOCK: i64 = 0x0066_6f75_6e64_7279;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The server, as messages name it: user, host, port and database, never a password.
pub fn shown(config: &Config) -> String {
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or_default();
    format!("postgres://{user}{host}:{port}/{db}")
}

/// A URL as it may be shown: the password (and anything after the scheme that fails to
/// parse) removed.
pub fn redact(url: &str) -> String {
    match parse(url) {
        Ok((config, _)) => shown(&config),
        Err(_) => "postgres://(unreadable URL)".into(),
    }
}

/// What a URL says besides the `postgres` crate's own settings: our `password_file`, and
/// libpq's `sslmode` and `sslrootcert` (the crate knows fewer modes than libpq).
#[derive(Debug, Default)]
struct Extra {
    password_file: Option<PathBuf>,
    ssl_mode: Option<pg_tls::Mode>,
    ssl_root_cert: Option<PathBuf>,
}

/// Parses a URL, taking our own parameters and libpq's TLS ones out first.
fn parse(url: &str) -> Result<(Config, Extra), String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut extra = Extra::default();
    let mut kept = Vec::new();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("password_file", path)) => extra.password_file = Some(PathBuf::from(path)),
            Some(("sslrootcert", path)) => extra.ssl_root_cert = Some(PathBuf::from(path)),
            Some(("sslmode", mode)) => {
                extra.ssl_mode = Some(pg_tls::Mode::parse(mode).ok_or_else(|| {
                    format!(
                        "sslmode={mode} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                    )
                })?);
            }
            _ => kept.push(pair),
        }
    }
    let rebuilt = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    // The parser's message names the faulty part, never the value.
    let config = Config::from_str(&rebuilt).map_err(|e| e.to_string())?;
    Ok((config, extra))
}

fn is_local(host: &Host) -> bool {
    match host {
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            name == "localhost"
                || name
                    .trim_matches(|c| c == '[' || c == ']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    }
}

/// The connection's configuration: where, who, and how its session is protected.
#[derive(Clone)]
struct Target {
    config: Config,
    tls: pg_tls::Connector,
    mode: pg_tls::Mode,
}

/// Makes the connection's configuration from a URL: credentials filled in, TLS as its
/// `sslmode` says, a server on a network that could be spoken to in clear refused.
fn configure(url: &str) -> Result<(Target, String), JournalError> {
    let (mut config, extra) = parse(url).map_err(|detail| JournalError::Unavailable {
        path: PathBuf::from(redact(url)),
        detail: format!("FOUNDRY_JOURNAL is not a PostgreSQL URL Foundry reads: {detail}"),
        hint: "write it as postgres://user@host:port/database (the password from ~/.pgpass, PGPASSWORD or ?password_file=PATH)".into(),
    })?;
    let shown = shown(&config);
    let refused = |detail: String, hint: &str| JournalError::Unavailable {
        path: PathBuf::from(&shown),
        detail,
        hint: hint.into(),
    };
    if config.get_password().is_some() {
        return Err(refused(
            "FOUNDRY_JOURNAL holds a password: the environment of every process and child can read it, and a shell's history keeps it".into(),
            "take it out of the URL and put it in ~/.pgpass (or the file PGPASSFILE names), mode 0600, as a line host:port:database:user:password, which psql reads too",
        ));
    }
    let remote = config.get_hosts().iter().find(|h| !is_local(h)).cloned();
    let mode = extra
        .ssl_mode
        .unwrap_or_else(|| pg_tls::Mode::default_for(remote.is_none()));
    if let Some(remote) = remote.filter(|_| mode.may_be_clear()) {
        let name = match remote {
            Host::Tcp(n) => n,
            Host::Unix(p) => p.display().to_string(),
        };
        return Err(refused(
            format!(
                "{name} is not on this machine, and sslmode={} may speak to it in clear: the journal would cross the network unencrypted",
                mode.name()
            ),
            "use sslmode=verify-full (the default for a server on a network) with the server's CA as sslrootcert=PATH in FOUNDRY_JOURNAL (or PGSSLROOTCERT, or ~/.postgresql/root.crt)",
        ));
    }
    let only_sockets = config
        .get_hosts()
        .iter()
        .all(|h| matches!(h, Host::Unix(_)));
    // PostgreSQL speaks no TLS on a unix socket.
    config.ssl_mode(if only_sockets {
        SslMode::Disable
    } else {
        mode.negotiation()
    });
    let roots = extra.ssl_root_cert.or_else(pg_tls::default_root_cert);
    let tls = pg_tls::connector(mode, roots.as_deref()).map_err(|detail| {
        refused(
            detail,
            "name the server's CA certificate (PEM) as sslrootcert=PATH in FOUNDRY_JOURNAL, or in PGSSLROOTCERT, or put it in ~/.postgresql/root.crt",
        )
    })?;
    if let Some(password) = std::env::var_os("PGPASSWORD").filter(|p| !p.is_empty()) {
        config.password(password.as_encoded_bytes());
    } else if let Some(file) = extra.password_file {
        let text = std::fs::read_to_string(&file).map_err(|e| {
            refused(
                format!("cannot read the password file {}: {e}", file.display()),
                "check the path given as password_file in FOUNDRY_JOURNAL",
            )
        })?;
        config.password(text.lines().next().unwrap_or_default());
    } else if let Some(file) = pgpass::file() {
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(name)) => name.clone(),
            // libpq matches a server on a unix socket as `localhost`.
            Some(Host::Unix(_)) | None => "localhost".into(),
        };
        let user = config.get_user().unwrap_or_default().to_string();
        let target = pgpass::Target {
            host: &host,
            port: config.get_ports().first().copied().unwrap_or(5432),
            database: config.get_dbname().unwrap_or(&user),
            user: &user,
        };
        match pgpass::lookup(&file, &target) {
            Ok(Some(password)) => {
                config.password(password);
            }
            Ok(None) => {}
            Err(detail) => {
                return Err(refused(
                    detail,
                    &format!(
                        "chmod 600 {} (libpq's clients refuse it too)",
                        file.display()
                    ),
                ));
            }
        }
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.application_name("foundry");
    Ok((Target { config, tls, mode }, shown))
}

type Job = Box<dyn FnOnce(&mut Session) + Send>;

/// The connection, owned by the store's thread.
struct Session {
    config: Result<Target, JournalError>,
    shown: String,
    client: Option<Client>,
    /// Which connection `client` is, unique in this process: prepared statements are kept
    /// by it.
    connection: u64,
}

/// The last connection number given out ([`Session::connection`]).
static CONNECTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Session {
    /// The connection, made (and the schema migrated) when there is none or it was lost.
    fn client(&mut self) -> Result<&mut Client, JournalError> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        if self.client.is_none() {
            let target = self.config.as_ref().map_err(Clone::clone)?;
            let mut client = target
                .config
                .connect(target.tls.clone())
                .map_err(|e| connect_error(&self.shown, target.mode, &e))?;
            let schema = migrate(&mut client).map_err(|e| server_error(&self.shown, &e))?;
            // Rows of a newer schema may mean something else: refused, not misread.
            if schema > MIGRATIONS.len() {
                return Err(JournalError::Unavailable {
                    path: PathBuf::from(&self.shown),
                    detail: format!(
                        "the journal's tables were migrated by a newer Foundry (schema {schema}; this foundry ({}) knows schema {})",
                        env!("CARGO_PKG_VERSION"),
                        MIGRATIONS.len()
                    ),
                    hint: "upgrade Foundry on this machine to the version the team uses".into(),
                });
            }
            self.connection = CONNECTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            self.client = Some(client);
        }
        CONNECTION.with(|c| c.set(self.connection));
        self.client.as_mut().ok_or_else(|| JournalError::Io {
            path: PathBuf::from(&self.shown),
            detail: "no connection".into(),
        })
    }

    /// Runs `f` on the connection; a connection that failed is dropped, to be made anew
    /// by the next call.
    fn with<T>(
        &mut self,
        f: impl FnOnce(&mut Client, &str) -> Result<T, Failure>,
    ) -> Result<T, JournalError> {
        let shown = self.shown.clone();
        let client = self.client()?;
        match f(client, &shown) {
            Ok(v) => Ok(v),
            Err(Failure::Journal(e)) => Err(e),
            Err(Failure::Server(e)) => {
                if e.is_closed() || e.code().is_none_or(is_transient) {
                    self.client = None;
                }
                Err(server_error(&shown, &e))
            }
        }
    }
}

/// How many prepared statements a thread keeps before it forgets them all.
const PREPARED_KEPT: usize = 64;

thread_local! {
    /// The connection this thread is calling on ([`Session::with`] sets it).
    static CONNECTION: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// Statements this thread prepared, by connection and text: a hot statement is parsed
    /// once per connection, not once per write. A connection's number is never reused, so
    /// a statement of a connection that was lost is never found again.
    static PREPARED: std::cell::RefCell<HashMap<(u64, &'static str), postgres::Statement>> =
        std::cell::RefCell::new(HashMap::new());
}

/// `sql` prepared on `client`, the connection [`Session::with`] is calling on, once.
fn prepared(
    client: &mut Client,
    sql: &'static str,
) -> Result<postgres::Statement, postgres::Error> {
    let key = (CONNECTION.with(std::cell::Cell::get), sql);
    if let Some(statement) = PREPARED.with(|p| p.borrow().get(&key).cloned()) {
        return Ok(statement);
    }
    let statement = client.prepare(sql)?;
    PREPARED.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() >= PREPARED_KEPT {
            p.clear();
        }
        p.insert(key, statement.clone());
    });
    Ok(statement)
}

/// Fencing (migration 4): a row while the run is still at the writer's epoch, kept so until
/// the write commits; with it, whether another machine asked for the run to be cancelled.
const SQL_FENCE: &str = "SELECT cancel_requested FROM foundry_fence($1, $2)";
/// One write's step records, appended to the run's log as its row `$2` (migration 5).
const SQL_LOG: &str =
    "INSERT INTO foundry_log (run, n, keys, seqs, records) VALUES ($1, $2, $3, $4, $5)";
const SQL_META: &str = "UPDATE foundry_runs SET meta = $2, state = $3 WHERE id = $1";
/// A write of step records alone (a fan-out's batch, a sequential step's `started` with the
/// previous one's completion): the fence and the log's row in one statement, so one round
/// trip and one implicit transaction; the row is written only if the fence held.
const SQL_FENCED_LOG: &str = "WITH fence AS (
        SELECT cancel_requested FROM foundry_fence($1, $2)
    ), written AS (
        INSERT INTO foundry_log (run, n, keys, seqs, records)
        SELECT $1, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM fence)
    )
    SELECT cancel_requested FROM fence";
/// The run's log folded into its step rows, on the server: each key's last record (the
/// latest row, the last in it) replaces its row; the log is emptied.
const SQL_FOLD: &str = "WITH gone AS (
        DELETE FROM foundry_log WHERE run = $1 RETURNING n, keys, seqs, records
    ), latest AS (
        SELECT DISTINCT ON (u.k) u.k, u.s, u.r
        FROM gone, unnest(gone.keys, gone.seqs, gone.records) WITH ORDINALITY AS u (k, s, r, i)
        ORDER BY u.k, gone.n DESC, u.i DESC
    )
    INSERT INTO foundry_steps (run, key, seq, record) SELECT $1, k, s, r FROM latest
    ON CONFLICT (run, key) DO UPDATE SET seq = EXCLUDED.seq, record = EXCLUDED.record";
/// How many records a driver logs before it folds the log (with the write that passes it).
const FOLD_RECORDS: usize = 2048;

/// What a call on the connection fails with.
enum Failure {
    Server(postgres::Error),
    Journal(JournalError),
}

impl From<postgres::Error> for Failure {
    fn from(e: postgres::Error) -> Self {
        Failure::Server(e)
    }
}

impl From<JournalError> for Failure {
    fn from(e: JournalError) -> Self {
        Failure::Journal(e)
    }
}

/// The server's own words for an error: its message (the crate's display of a server error
/// is only "db error"), or the error and its cause.
fn what_failed(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {} ({})", db.severity(), db.message(), db.code().code());
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// Server errors that mean it is going away or not yet up: try again later.
fn is_transient(code: &SqlState) -> bool {
    [
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::CONNECTION_FAILURE,
        SqlState::CONNECTION_EXCEPTION,
    ]
    .contains(code)
}

/// A failed connection as ours: a TLS handshake that failed is the user's to fix (a
/// certificate refused, a server without TLS), not a server to wait for.
fn connect_error(shown: &str, mode: pg_tls::Mode, e: &postgres::Error) -> JournalError {
    let tls = pg_tls::handshake_failure(e)
        .or_else(|| (e.to_string() == "error performing TLS handshake").then(|| what_failed(e)));
    match tls {
        Some(cause) => JournalError::Unavailable {
            path: PathBuf::from(shown),
            detail: format!(
                "the TLS session with PostgreSQL failed (sslmode={}): {cause}",
                mode.name()
            ),
            hint: "check that sslrootcert (or PGSSLROOTCERT, or ~/.postgresql/root.crt) is the CA that signed the server's certificate, that the certificate names the host as FOUNDRY_JOURNAL does, and that the server has ssl = on".into(),
        },
        None => server_error(shown, e),
    }
}

/// A server error as ours: what failed, where, and what to do.
fn server_error(shown: &str, e: &postgres::Error) -> JournalError {
    let code = e.code();
    let e = what_failed(e);
    let (detail, hint) = if code == Some(&SqlState::INVALID_PASSWORD)
        || code == Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION)
    {
        (
            format!("PostgreSQL refused the credentials: {e}"),
            "check the user in FOUNDRY_JOURNAL and the password (~/.pgpass or PGPASSFILE, PGPASSWORD, or password_file)",
        )
    } else if code == Some(&SqlState::INVALID_CATALOG_NAME) {
        (
            format!("no such database: {e}"),
            "create it (createdb) or name an existing one in FOUNDRY_JOURNAL",
        )
    } else if code.is_some_and(|c| !is_transient(c)) {
        (
            format!("PostgreSQL refused the journal's statement: {e}"),
            "check the role's rights on the foundry_* tables",
        )
    } else {
        return JournalError::Unreachable {
            path: PathBuf::from(shown),
            detail: format!("cannot reach PostgreSQL: {e}"),
            hint:
                "check that the server is running and reachable; the run can be resumed once it is"
                    .into(),
        };
    };
    JournalError::Unavailable {
        path: PathBuf::from(shown),
        detail,
        hint: hint.into(),
    }
}

/// Applies the migrations this database lacks; the schema version found.
fn migrate(client: &mut Client) -> Result<usize, postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS foundry_schema_version (version integer NOT NULL)",
    )?;
    let applied: i32 = tx
        .query_opt("SELECT max(version) FROM foundry_schema_version", &[])?
        .and_then(|row| row.try_get::<_, Option<i32>>(0).ok().flatten())
        .unwrap_or(0);
    let applied_usize = usize::try_from(applied).unwrap_or(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied_usize) {
        tx.batch_execute(sql)?;
        let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO foundry_schema_version (version) VALUES ($1)",
            &[&version],
        )?;
    }
    tx.commit()?;
    client.batch_execute("SET synchronous_commit TO on")?;
    Ok(applied_usize)
}

/// The store's thread and where to send it work.
struct Worker {
    jobs: Mutex<mpsc::Sender<Job>>,
    /// The connection: the thread's, and a caller's that may block where it is.
    session: Arc<Mutex<Session>>,
    /// Jobs sent to the thread and not yet done: while there are any, a call goes after
    /// them on the thread, so calls keep their order.
    queued: Arc<AtomicUsize>,
    shown: String,
    /// Hears cancels asked of this process's runs from elsewhere ([`pg_listen`]).
    listener: Arc<Listener>,
}

impl Worker {
    fn start(config: Result<Target, JournalError>, shown: String) -> Result<Worker, JournalError> {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let listener = {
            let (config, shown) = (config.clone(), shown.clone());
            Listener::new(
                shown.clone(),
                Box::new(move || {
                    let target = config.as_ref().map_err(ToString::to_string)?;
                    target
                        .config
                        .connect(target.tls.clone())
                        .map_err(|e| connect_error(&shown, target.mode, &e).to_string())
                }),
            )
        };
        let session = Arc::new(Mutex::new(Session {
            config,
            shown: shown.clone(),
            client: None,
            connection: 0,
        }));
        let queued = Arc::new(AtomicUsize::new(0));
        let (theirs, done) = (session.clone(), queued.clone());
        std::thread::Builder::new()
            .name("foundry-journal-pg".into())
            .spawn(move || {
                // Ends when the store and every journal are dropped.
                while let Ok(job) = inbox.recv() {
                    job(&mut lock(&theirs));
                    done.fetch_sub(1, Ordering::SeqCst);
                }
            })
            .map_err(|e| JournalError::Io {
                path: PathBuf::from(&shown),
                detail: format!("cannot start the journal's thread: {e}"),
            })?;
        Ok(Worker {
            jobs: Mutex::new(jobs),
            session,
            queued,
            shown,
            listener,
        })
    }

    /// Sends `job` to the store's thread, to run after those sent before it.
    fn send(&self, job: Job) -> bool {
        self.queued.fetch_add(1, Ordering::SeqCst);
        let sent = lock(&self.jobs).send(job).is_ok();
        if !sent {
            self.queued.fetch_sub(1, Ordering::SeqCst);
        }
        sent
    }

    /// Runs `f` on the connection and waits for its answer: on the calling thread where it
    /// may block (no runtime, or a worker of a multi-thread one, through `block_in_place`)
    /// and nothing sent to the store's thread is still to run; else on that thread. Handing
    /// a call to another thread and back costs two wake-ups, on a small VM as much as a
    /// third of the commit itself.
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client, &str) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, JournalError> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        if self.queued.load(Ordering::SeqCst) == 0 {
            match Handle::try_current().map(|h| h.runtime_flavor()) {
                Err(_) => return lock(&self.session).with(f),
                Ok(RuntimeFlavor::MultiThread) => {
                    return tokio::task::block_in_place(|| lock(&self.session).with(f));
                }
                Ok(_) => {}
            }
        }
        self.on_thread(f)
    }

    /// Runs `f` on the store's thread and waits for its answer.
    fn on_thread<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client, &str) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, JournalError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let sent = self.send(Box::new(move |session: &mut Session| {
            let _ = reply.send(session.with(f));
        }));
        let gone = || JournalError::Io {
            path: PathBuf::from(&self.shown),
            detail: "the journal's thread ended".into(),
        };
        if !sent {
            return Err(gone());
        }
        answer.recv().unwrap_or_else(|_| Err(gone()))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing a connection blocks on the client's own runtime, which panics inside
        // another: it is closed on the store's thread, which is in none.
        let Some(client) = lock(&self.session).client.take() else {
            return;
        };
        let job: Job = Box::new(move |_| drop(client));
        if let Err(mpsc::SendError(job)) = lock(&self.jobs).send(job) {
            // That thread is gone: one of its own, then.
            let closing = std::thread::Builder::new().spawn(move || drop(job));
            if let Err(e) = closing {
                tracing::debug!(error = %e, "the journal's connection was left to the server to close");
            }
        }
    }
}

/// Runs held by a journal of this process, by server, run and epoch: a lease naming this
/// process is live only while its run, at the row's epoch, is in here.
static HELD: Mutex<Option<HashSet<(String, RunId, i64)>>> = Mutex::new(None);

fn held(f: impl FnOnce(&mut HashSet<(String, RunId, i64)>) -> bool) -> bool {
    f(lock(&HELD).get_or_insert_with(HashSet::new))
}

/// Journals in one PostgreSQL database. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct PostgresStore {
    worker: Arc<Worker>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("server", &self.worker.shown)
            .finish()
    }
}

impl PostgresStore {
    /// A store on the database `url` names; it connects on first use. A URL that cannot be
    /// used is reported by every call, naming the server without its password.
    pub fn new(url: &str) -> Result<PostgresStore, JournalError> {
        let (config, shown) = match configure(url) {
            Ok((config, shown)) => (Ok(config), shown),
            Err(e) => (Err(e), redact(url)),
        };
        Ok(PostgresStore {
            worker: Arc::new(Worker::start(config, shown)?),
        })
    }

    /// The server, as messages name it.
    pub fn server(&self) -> &str {
        &self.worker.shown
    }

    /// Checks the server can be reached and the schema is current.
    pub fn check(&self) -> Result<(), JournalError> {
        self.worker.call(|_, _| Ok(()))
    }
}

fn encode<T: Serialize>(value: &T) -> String {
    // Serializing our own plain structs cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(path: &str, what: &str, text: &str) -> Result<T, JournalError> {
    serde_json::from_str(text).map_err(|e| JournalError::Corrupt {
        path: PathBuf::from(path),
        detail: format!("{what}: {e}"),
    })
}

fn location(shown: &str, id: RunId) -> String {
    format!("{shown}#run={id}")
}

fn millis_i64(m: crate::time::Millis) -> i64 {
    i64::try_from(m.0).unwrap_or(i64::MAX)
}

/// A run's row as read, with what driving it needs.
struct RunRow {
    snapshot: JournalSnapshot,
    held: bool,
    epoch: i64,
    /// By the server's clock, the holder's last write is older than its TTL.
    lapsed: bool,
    /// Who asked, through the journal, that the run be cancelled.
    cancel: Option<Lease>,
    log_end: LogEnd,
}

/// Where a run's log stands (migration 5).
#[derive(Clone, Copy, Default)]
struct LogEnd {
    /// The number of its last row; 0 when it is empty.
    last: i64,
    /// The records in it, not yet folded into step rows.
    records: usize,
}

fn read_run(
    client: &mut impl postgres::GenericClient,
    shown: &str,
    id: RunId,
    lock: bool,
) -> Result<RunRow, Failure> {
    let path = location(shown, id);
    if lock {
        // Taking the run: after the writes in flight, before any that follows (migration 4).
        client.execute("SELECT foundry_take($1)", &[&id.to_string()])?;
    }
    let sql = if lock {
        "SELECT format, info, meta, lease, held, epoch,
         coalesce(clock_timestamp() > lease_beat + lease_ttl_ms * interval '1 millisecond', true),
         cancel_requested
         FROM foundry_runs WHERE id = $1 FOR UPDATE"
    } else {
        "SELECT format, info, meta, lease, held, epoch,
         coalesce(clock_timestamp() > lease_beat + lease_ttl_ms * interval '1 millisecond', true),
         cancel_requested
         FROM foundry_runs WHERE id = $1"
    };
    let key = id.to_string();
    let Some(row) = client.query_opt(sql, &[&key])? else {
        return Err(JournalError::NotFound {
            id,
            path: PathBuf::from(path),
        }
        .into());
    };
    let format: i32 = row.try_get(0)?;
    let format = u32::try_from(format).unwrap_or(0);
    if format != FORMAT_VERSION {
        return Err(JournalError::Format {
            path: PathBuf::from(path),
            found: format,
        }
        .into());
    }
    let info: RunInfo = decode(&path, "info", &row.try_get::<_, String>(1)?)?;
    let meta: RunMeta = decode(&path, "state", &row.try_get::<_, String>(2)?)?;
    let lease: Option<Lease> = row
        .try_get::<_, Option<String>>(3)?
        .map(|t| decode(&path, "lease", &t))
        .transpose()?;
    let held: bool = row.try_get(4)?;
    let epoch: i64 = row.try_get(5)?;
    let lapsed: bool = row.try_get(6)?;
    let cancel = cancel_asker(&path, row.try_get(7)?)?;
    let summary: Option<RunSummary> = client
        .query_opt(
            "SELECT summary FROM foundry_summaries WHERE run = $1",
            &[&key],
        )?
        .map(|r| r.try_get::<_, String>(0))
        .transpose()?
        .map(|t| decode(&path, "summary", &t))
        .transpose()?;
    let (steps, log_end) = read_steps(client, &path, &key)?;
    Ok(RunRow {
        snapshot: JournalSnapshot {
            format,
            info,
            meta,
            lease,
            summary,
            steps,
        },
        held,
        epoch,
        lapsed,
        cancel,
        log_end,
    })
}

/// A run's step records in order: its step rows overlaid by its log (migration 5), each
/// key's last record decoded once; with where its log stands. Both are read in one snapshot
/// (the caller's transaction), as a fold moves records from one to the other.
fn read_steps(
    client: &mut impl postgres::GenericClient,
    path: &str,
    key: &str,
) -> Result<(Vec<StepRecord>, LogEnd), Failure> {
    // The log first (at most a fold's worth of records): each key's last record in it.
    let mut from_log: HashMap<String, String> = HashMap::new();
    let mut log_end = LogEnd::default();
    for row in client.query(
        "SELECT n, keys, records FROM foundry_log WHERE run = $1 ORDER BY n",
        &[&key],
    )? {
        log_end.last = row.try_get(0)?;
        let keys: Vec<String> = row.try_get(1)?;
        let records: Vec<String> = row.try_get(2)?;
        if keys.len() != records.len() {
            return Err(JournalError::Corrupt {
                path: PathBuf::from(path),
                detail: format!(
                    "log row {} has {} keys for {} records",
                    log_end.last,
                    keys.len(),
                    records.len()
                ),
            }
            .into());
        }
        log_end.records += records.len();
        from_log.extend(keys.into_iter().zip(records));
    }
    let mut steps = Vec::new();
    // Ordered here, not by the server: a long run's records (megabytes) sorted there could
    // outgrow `work_mem` and be sorted on disk.
    for row in client.query(
        "SELECT key, record FROM foundry_steps WHERE run = $1",
        &[&key],
    )? {
        let key: &str = row.try_get(0)?;
        if !from_log.contains_key(key) {
            steps.push(decode::<StepRecord>(path, key, row.try_get(1)?)?);
        }
    }
    for (key, text) in &from_log {
        steps.push(decode::<StepRecord>(path, key, text)?);
    }
    steps.sort_unstable_by(|a, b| (a.seq, &a.key).cmp(&(b.seq, &b.key)));
    Ok((steps, log_end))
}

/// A run as it stands, read without taking it: in one snapshot, a read-only transaction at
/// `REPEATABLE READ`, so a fold committed between its statements is seen whole or not at all.
fn read_unlocked(client: &mut Client, shown: &str, id: RunId) -> Result<RunRow, Failure> {
    let mut tx = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    let row = read_run(&mut tx, shown, id, false)?;
    tx.commit()?;
    Ok(row)
}

/// The `cancel_requested` column: who asked for the run to be cancelled.
fn cancel_asker(path: &str, text: Option<String>) -> Result<Option<Lease>, JournalError> {
    text.map(|t| decode(path, "cancel request", &t)).transpose()
}

/// Whether a lease recorded as held still stands against this process: on this host,
/// while its process lives; from another host, until its holder's last write is older than
/// the TTL it runs with, by the server's clock (`lapsed`).
fn holder_alive(shown: &str, id: RunId, row: &RunRow, lease: &Lease) -> bool {
    if !row.held {
        false
    } else if lease.host != lease::hostname() {
        !row.lapsed
    } else if lease.pid == std::process::id() {
        held(|set| set.contains(&(shown.to_string(), id, row.epoch)))
    } else {
        lease::owner_alive(lease)
    }
}

/// One statement of a write, its values encoded on the caller's thread.
enum Statement {
    /// Consecutive step records in one statement, one per key (the last one given).
    Steps {
        keys: Vec<String>,
        seqs: Vec<i64>,
        records: Vec<String>,
    },
    Meta {
        meta: String,
        state: String,
    },
    Lease(Lease, String),
    Finish {
        meta: String,
        state: String,
        finished_at: i64,
        summary: String,
    },
}

fn state_name(meta: &RunMeta) -> String {
    meta.state.as_str().to_string()
}

fn statements(ops: &[WriteOp]) -> Vec<Statement> {
    let mut out: Vec<Statement> = Vec::new();
    for op in ops {
        match op {
            WriteOp::Step(record) => {
                let (key, seq, text) = (
                    record.key.clone(),
                    i64::try_from(record.seq).unwrap_or(i64::MAX),
                    encode(record),
                );
                if let Some(Statement::Steps {
                    keys,
                    seqs,
                    records,
                }) = out.last_mut()
                {
                    // A row may be written once per statement: a later record of the same
                    // step replaces the earlier one.
                    match keys.iter().position(|k| *k == key) {
                        Some(i) => {
                            seqs[i] = seq;
                            records[i] = text;
                        }
                        None => {
                            keys.push(key);
                            seqs.push(seq);
                            records.push(text);
                        }
                    }
                } else {
                    out.push(Statement::Steps {
                        keys: vec![key],
                        seqs: vec![seq],
                        records: vec![text],
                    });
                }
            }
            WriteOp::Meta(meta) => out.push(Statement::Meta {
                meta: encode(meta),
                state: state_name(meta),
            }),
            WriteOp::Lease(lease) => out.push(Statement::Lease(lease.clone(), encode(lease))),
            WriteOp::Finish { meta, summary } => out.push(Statement::Finish {
                meta: encode(meta),
                state: state_name(meta),
                finished_at: millis_i64(summary.finished_at),
                summary: encode(summary),
            }),
        }
    }
    out
}

fn set_lease(
    tx: &mut postgres::Transaction<'_>,
    key: &str,
    lease: &Lease,
    encoded: &str,
) -> Result<(), postgres::Error> {
    let ttl_ms = i64::try_from(lease::ttl().as_millis()).unwrap_or(i64::MAX);
    tx.execute(
        "UPDATE foundry_runs SET lease = $2, lease_host = $3, lease_pid = $4, lease_heartbeat_at = $5,
         lease_beat = clock_timestamp(), lease_ttl_ms = $6 WHERE id = $1",
        &[
            &key,
            &encoded,
            &lease.host,
            &i64::from(lease.pid),
            &millis_i64(lease.heartbeat_at),
            &ttl_ms,
        ],
    )?;
    Ok(())
}

/// A fenced write's refusal: the run is another driver's now, named as its row says.
fn taken_over(
    client: &mut impl postgres::GenericClient,
    shown: &str,
    id: RunId,
) -> Result<JournalError, postgres::Error> {
    let owner = client
        .query_opt(
            "SELECT lease FROM foundry_runs WHERE id = $1",
            &[&id.to_string()],
        )?
        .and_then(|r| r.try_get::<_, Option<String>>(0).ok().flatten())
        .and_then(|t| serde_json::from_str::<Lease>(&t).ok());
    Ok(JournalError::TakenOver {
        path: PathBuf::from(location(shown, id)),
        owner,
    })
}

/// The run id in a row's first column.
fn run_id(shown: &str, row: &postgres::Row) -> Result<RunId, Failure> {
    let text: String = row.try_get(0)?;
    text.parse().map_err(|_| {
        JournalError::Corrupt {
            path: PathBuf::from(shown),
            detail: format!("a run with an id that is not one: {text:?}"),
        }
        .into()
    })
}

/// Deletes a run's step records: its step rows and its log.
fn delete_steps(
    client: &mut impl postgres::GenericClient,
    key: &str,
) -> Result<(), postgres::Error> {
    client.execute("DELETE FROM foundry_steps WHERE run = $1", &[&key])?;
    client.execute("DELETE FROM foundry_log WHERE run = $1", &[&key])?;
    Ok(())
}

struct PostgresJournal {
    worker: Arc<Worker>,
    id: RunId,
    /// The epoch this journal took the run at; a write finding another was taken over.
    epoch: i64,
    /// Who asked another machine's way, through the journal, that the run be cancelled:
    /// as the row said when the run was taken, then at each write.
    cancel: Option<Lease>,
    /// Whether the store's listener wakes this journal on a cancel.
    listening: bool,
    /// The number of the last log row this journal wrote or found (migration 5).
    log_end: i64,
    /// The records logged since the log was last folded into step rows.
    unfolded: usize,
}

impl RunJournal for PostgresJournal {
    fn write(&mut self, ops: &[WriteOp]) -> Result<(), JournalError> {
        let statements = statements(ops);
        let cut = ops.iter().any(|op| match op {
            WriteOp::Step(r) => match r.state {
                StepRecordState::Started => failpoint::cut(&r.key, Phase::Started),
                StepRecordState::Completed => failpoint::cut(&r.key, Phase::Completed),
                StepRecordState::Failed => false,
            },
            _ => false,
        });
        // Each statement of records is a log row of its own, numbered from here; a number
        // is never used twice, even by a write that failed (it may have committed).
        let first = self.log_end + 1;
        let mut logged = 0;
        for statement in &statements {
            if let Statement::Steps { keys, .. } = statement {
                self.log_end += 1;
                logged += keys.len();
            }
        }
        let fold = self.unfolded + logged >= FOLD_RECORDS;
        let (id, epoch) = (self.id, self.epoch);
        let cancel = self.worker.call(move |client, shown| {
            let key = id.to_string();
            if let (false, false, [Statement::Steps { keys, seqs, records }]) =
                (cut, fold, statements.as_slice())
            {
                let fenced = prepared(client, SQL_FENCED_LOG)?;
                let rows = client.query(&fenced, &[&key, &epoch, &first, keys, seqs, records])?;
                let [row] = rows.as_slice() else {
                    return Err(taken_over(client, shown, id)?.into());
                };
                return Ok(cancel_asker(&location(shown, id), row.try_get(0)?)?);
            }
            let (fence, log, set_meta) = (
                prepared(client, SQL_FENCE)?,
                prepared(client, SQL_LOG)?,
                prepared(client, SQL_META)?,
            );
            let fold = fold.then(|| prepared(client, SQL_FOLD)).transpose()?;
            let mut tx = client.transaction()?;
            // Fencing: the row is ours only at the epoch we took it at.
            let ours = tx.query(&fence, &[&key, &epoch])?;
            let [row] = ours.as_slice() else {
                return Err(taken_over(&mut tx, shown, id)?.into());
            };
            let cancel = cancel_asker(&location(shown, id), row.try_get(0)?)?;
            let mut n = first;
            for statement in &statements {
                match statement {
                    Statement::Steps {
                        keys,
                        seqs,
                        records,
                    } => {
                        tx.execute(&log, &[&key, &n, keys, seqs, records])?;
                        n += 1;
                    }
                    Statement::Meta { meta, state } => {
                        tx.execute(&set_meta, &[&key, meta, state])?;
                    }
                    Statement::Lease(lease, encoded) => set_lease(&mut tx, &key, lease, encoded)?,
                    Statement::Finish { meta, state, finished_at, summary } => {
                        delete_steps(&mut tx, &key)?;
                        tx.execute(
                            "UPDATE foundry_runs SET meta = $2, state = $3, lease = NULL, lease_host = NULL,
                             lease_pid = NULL, lease_heartbeat_at = NULL, held = false WHERE id = $1",
                            &[&key, meta, state],
                        )?;
                        tx.execute(
                            "INSERT INTO foundry_summaries (run, finished_at, summary) VALUES ($1, $2, $3)
                             ON CONFLICT (run) DO UPDATE SET finished_at = EXCLUDED.finished_at, summary = EXCLUDED.summary",
                            &[&key, finished_at, summary],
                        )?;
                    }
                }
            }
            if let Some(fold) = &fold {
                tx.execute(fold, &[&key])?;
            }
            if cut {
                // The crash tests' cut: the server ends this session inside the commit.
                tx.execute("SELECT pg_terminate_backend(pg_backend_pid())", &[])?;
            }
            tx.commit()?;
            Ok(cancel)
        })?;
        self.unfolded = if fold { 0 } else { self.unfolded + logged };
        if cancel.is_some() {
            self.cancel = cancel;
        }
        Ok(())
    }

    fn cancel_requested(&self) -> Option<Lease> {
        self.cancel.clone()
    }

    fn on_cancel(&mut self, wake: CancelWake) {
        self.worker.listener.register(self.id, self.epoch, wake);
        self.listening = true;
    }

    fn snapshot(&self) -> Result<JournalSnapshot, JournalError> {
        let id = self.id;
        self.worker
            .call(move |client, shown| Ok(read_unlocked(client, shown, id)?.snapshot))
    }

    fn compact(&mut self) -> Result<(), JournalError> {
        // A finished run's step rows and log went with its last write; the server reclaims
        // deleted rows itself (autovacuum).
        Ok(())
    }
}

impl Drop for PostgresJournal {
    fn drop(&mut self) {
        held(|set| set.remove(&(self.worker.shown.clone(), self.id, self.epoch)));
        if self.listening {
            self.worker.listener.unregister(self.id, self.epoch);
        }
        let (id, epoch) = (self.id, self.epoch);
        // Given back without waiting: a later call of this store runs after it.
        self.worker.send(Box::new(move |session: &mut Session| {
            let released = session.with(move |client, _| {
                client.execute(
                    "UPDATE foundry_runs SET held = false WHERE id = $1 AND epoch = $2",
                    &[&id.to_string(), &epoch],
                )?;
                Ok(())
            });
            if let Err(e) = released {
                tracing::warn!(run = %id, error = %e, "could not give the run back; its lease shows who held it");
            }
        }));
    }
}

impl PostgresStore {
    fn journal(
        &self,
        id: RunId,
        epoch: i64,
        cancel: Option<Lease>,
        log: LogEnd,
    ) -> Box<dyn RunJournal> {
        held(|set| set.insert((self.worker.shown.clone(), id, epoch)));
        Box::new(PostgresJournal {
            worker: self.worker.clone(),
            id,
            epoch,
            cancel,
            listening: false,
            log_end: log.last,
            unfolded: log.records,
        })
    }
}

impl JournalStore for PostgresStore {
    fn create(
        &self,
        info: &RunInfo,
        meta: &RunMeta,
        lease: &Lease,
    ) -> Result<(Box<dyn RunJournal>, JournalSnapshot), JournalError> {
        let id = info.id;
        let row = (
            id.to_string(),
            i32::try_from(FORMAT_VERSION).unwrap_or(i32::MAX),
            info.workflow.clone(),
            i64::from(info.workflow_version),
            millis_i64(info.created_at),
            encode(info),
            encode(meta),
            state_name(meta),
        );
        let (lease_row, lease_text) = (lease.clone(), encode(lease));
        self.worker.call(move |client, _| {
            let mut tx = client.transaction()?;
            tx.execute(
                "INSERT INTO foundry_runs (id, format, workflow, workflow_version, created_at, info, meta, state, held, epoch)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, true, 1)",
                &[&row.0, &row.1, &row.2, &row.3, &row.4, &row.5, &row.6, &row.7],
            )?;
            set_lease(&mut tx, &row.0, &lease_row, &lease_text)?;
            tx.commit()?;
            Ok(())
        })?;
        let snapshot = JournalSnapshot::created(info, meta, lease);
        Ok((self.journal(id, 1, None, LogEnd::default()), snapshot))
    }

    fn open(&self, id: RunId) -> Result<(Box<dyn RunJournal>, JournalSnapshot), JournalError> {
        let mine = lease::own_lease();
        let (snapshot, epoch, cancel, log) = self.worker.call(move |client, shown| {
            let mut tx = client.transaction()?;
            let row = read_run(&mut tx, shown, id, true)?;
            if let Some(owner) = &row.snapshot.lease
                && holder_alive(shown, id, &row, owner)
            {
                return Err(JournalError::Busy {
                    path: PathBuf::from(location(shown, id)),
                    owner: Some(owner.clone()),
                }
                .into());
            }
            // Taken over: the epoch moves on, so the previous holder's writes are refused.
            let epoch = row.epoch + 1;
            tx.execute(
                "UPDATE foundry_runs SET held = true, epoch = $2 WHERE id = $1",
                &[&id.to_string(), &epoch],
            )?;
            set_lease(&mut tx, &id.to_string(), &mine, &encode(&mine))?;
            tx.commit()?;
            Ok((row.snapshot, epoch, row.cancel, row.log_end))
        })?;
        // A cancel asked of a driver that stopped before it saw it is the new driver's.
        Ok((self.journal(id, epoch, cancel, log), snapshot))
    }

    fn settle(&self) {
        // Runs after every job sent before it, the giving back of dropped journals too.
        if let Err(e) = self.worker.call(|_, _| Ok(())) {
            tracing::warn!(error = %e, "the journal's server did not answer; runs given back may show as driven until their lease lapses");
        }
    }

    fn request_cancel(&self, id: RunId, by: &Lease) -> Result<Option<Lease>, JournalError> {
        let asker = encode(by);
        let by = by.clone();
        self.worker.call(move |client, shown| {
            let mut tx = client.transaction()?;
            let row = read_run(&mut tx, shown, id, true)?;
            let driver = row
                .snapshot
                .lease
                .as_ref()
                .filter(|owner| holder_alive(shown, id, &row, owner));
            let Some(driver) = driver.filter(|_| !row.snapshot.meta.state.is_finished()) else {
                // Nobody drives it, or it is over: the caller takes it, or is told it ended.
                return Ok(None);
            };
            // Asked of the driver at the epoch it holds the run: a driver that takes it over
            // later finds the request too, as it reads the row.
            let asked = tx.execute(
                "UPDATE foundry_runs SET cancel_requested = $3, cancel_requested_at = clock_timestamp()
                 WHERE id = $1 AND epoch = $2 AND cancel_requested IS NULL",
                &[&id.to_string(), &row.epoch, &asker],
            )?;
            if asked == 1 {
                // Heard by the driver's listener as this commits.
                let payload = pg_listen::payload(id, row.epoch, &by);
                tx.execute("SELECT pg_notify($1, $2)", &[&pg_listen::CHANNEL, &payload])?;
            }
            tx.commit()?;
            if asked == 0 {
                tracing::debug!(run = %id, "a cancel was asked already; its driver stops for that one");
            }
            Ok(Some(driver.clone()))
        })
    }

    fn read(&self, id: RunId) -> Result<JournalSnapshot, JournalError> {
        self.worker.call(move |client, shown| {
            let mut row = read_unlocked(client, shown, id)?;
            // The lease as the live driver's: none once given back or lapsed.
            if let Some(lease) = row.snapshot.lease.take()
                && holder_alive(shown, id, &row, &lease)
            {
                row.snapshot.lease = Some(lease);
            }
            Ok(row.snapshot)
        })
    }

    fn records_drivers(&self) -> bool {
        true
    }

    fn list(&self) -> Result<Vec<RunId>, JournalError> {
        self.worker.call(|client, shown| {
            let rows = client.query("SELECT id FROM foundry_runs ORDER BY created_at, id", &[])?;
            rows.iter().map(|row| run_id(shown, row)).collect()
        })
    }

    fn completed(&self) -> Result<Vec<RunId>, JournalError> {
        // From the runs' rows alone: no run's steps are read.
        self.worker.call(|client, shown| {
            let rows = client.query(
                "SELECT id FROM foundry_runs WHERE state = $1 ORDER BY created_at, id",
                &[&RunState::Completed.as_str()],
            )?;
            rows.iter().map(|row| run_id(shown, row)).collect()
        })
    }

    fn remove(&self, id: RunId) -> Result<(), JournalError> {
        self.worker.call(move |client, _| {
            let key = id.to_string();
            let mut tx = client.transaction()?;
            delete_steps(&mut tx, &key)?;
            tx.execute("DELETE FROM foundry_runs WHERE id = $1", &[&key])?;
            tx.commit()?;
            Ok(())
        })
    }

    fn sweep(&self, _age: Duration) -> Result<usize, JournalError> {
        // A run's rows are created in one transaction: nothing half-made is left behind.
        Ok(0)
    }

    fn location(&self, id: RunId) -> PathBuf {
        PathBuf::from(location(&self.worker.shown, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::contract::{info, meta, step};
    use crate::journal::pg_cluster::{Cluster, PASSWORD, USER};
    use crate::model::RunState;

    #[test]
    fn a_password_is_never_shown_and_a_remote_server_in_clear_is_refused() {
        let url = "postgres://alice:s3cret-pw@127.0.0.1:5433/foundry";
        assert_eq!(redact(url), "postgres://alice@127.0.0.1:5433/foundry");
        let store = PostgresStore::new(url).expect("store");
        let err = store.list().expect_err("a password in the URL");
        let message = format!("{err} {}", err.hint().unwrap_or_default());
        assert!(message.contains("holds a password"), "{message}");
        assert!(message.contains("~/.pgpass"), "{message}");
        assert!(!message.contains("s3cret-pw"), "{message}");
        let store = PostgresStore::new("postgres://alice@db.example.com/foundry?sslmode=disable")
            .expect("store");
        let err = store.list().expect_err("refused");
        let message = format!("{err} {}", err.hint().unwrap_or_default());
        assert!(message.contains("db.example.com"), "{message}");
        assert!(message.contains("in clear"), "{message}");
        let err = PostgresStore::new("postgres://alice:s3cret-pw@[::1/x")
            .expect("store")
            .list()
            .expect_err("unreadable");
        assert!(!err.to_string().contains("s3cret-pw"), "{err}");
    }

    #[test]
    fn a_server_on_a_network_is_spoken_to_only_over_tls_and_verified_unless_told_otherwise() {
        let refused = |url: &str| match configure(url) {
            Ok(_) => panic!("{url} accepted"),
            Err(e) => message(&e),
        };
        // In clear, or possibly in clear, to another machine: refused before connecting.
        for mode in ["disable", "allow", "prefer"] {
            let m = refused(&format!(
                "postgres://alice@db.example.com/foundry?sslmode={mode}"
            ));
            assert!(m.contains("in clear"), "{m}");
            assert!(m.contains(&format!("sslmode={mode}")), "{m}");
            assert!(m.contains("verify-full"), "{m}");
        }
        // Unset, it is verify-full: the CA is needed, and one that cannot be read is said.
        let m = refused("postgres://alice@db.example.com/foundry?sslrootcert=/nonexistent/ca.pem");
        assert!(m.contains("/nonexistent/ca.pem"), "{m}");
        assert!(m.contains("sslrootcert"), "{m}");
        let m = refused("postgres://alice@db.example.com/foundry?sslmode=verify-everything");
        assert!(m.contains("verify-everything"), "{m}");
        // Encrypted without a check, as libpq's require: allowed, negotiated as TLS.
        let (target, shown) =
            configure("postgres://alice@db.example.com/foundry?sslmode=require").expect("require");
        assert_eq!(target.mode, pg_tls::Mode::Require);
        assert_eq!(target.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(shown, "postgres://alice@db.example.com:5432/foundry");
        // Here, libpq's default: TLS when offered; on a socket, none.
        let (target, _) = configure("postgres://alice@127.0.0.1/foundry").expect("loopback");
        assert_eq!(target.mode, pg_tls::Mode::Prefer);
        assert_eq!(target.config.get_ssl_mode(), SslMode::Prefer);
        let (target, _) = configure("postgres://alice@%2Ftmp/foundry").expect("socket");
        assert_eq!(target.config.get_ssl_mode(), SslMode::Disable);
    }

    #[test]
    fn a_server_over_tls_is_verified_against_its_ca() {
        let dir = tempfile::tempdir().expect("dir");
        let (_, cert, key) = super::super::pg_cluster::certificates(dir.path(), "journal CA")
            .unwrap_or_else(|e| panic!("{e}"));
        let server = Cluster::start_with_tls(&cert, &key).unwrap_or_else(|e| panic!("{e}"));
        let pw = dir.path().join("pw");
        std::fs::write(&pw, PASSWORD).expect("pw");
        let url = |mode: &str| {
            format!(
                "{}?sslmode={mode}&sslrootcert={}&password_file={}",
                server.tcp_url("postgres"),
                dir.path().join("ca.pem").display(),
                pw.display()
            )
        };
        for mode in ["verify-full", "verify-ca", "require"] {
            let store = PostgresStore::new(&url(mode)).expect("store");
            store
                .check()
                .unwrap_or_else(|e| panic!("{mode}: {}", message(&e)));
        }
        // Another CA: refused at the handshake, as the user's to fix, not waited for.
        let other = tempfile::tempdir().expect("dir");
        super::super::pg_cluster::certificates(other.path(), "another CA")
            .unwrap_or_else(|e| panic!("{e}"));
        let wrong = url("verify-ca").replace(
            &dir.path().join("ca.pem").display().to_string(),
            &other.path().join("ca.pem").display().to_string(),
        );
        let err = PostgresStore::new(&wrong)
            .expect("store")
            .check()
            .expect_err("wrong CA");
        assert!(matches!(err, JournalError::Unavailable { .. }), "{err:?}");
        let m = message(&err);
        assert!(
            m.contains("TLS session with PostgreSQL failed (sslmode=verify-ca)"),
            "{m}"
        );
        assert!(m.contains("UnknownIssuer"), "{m}");
    }

    fn message(err: &JournalError) -> String {
        format!("{err} hint: {}", err.hint().unwrap_or_default())
    }

    #[test]
    fn refused_connections_bad_credentials_and_missing_databases_say_what_and_where() {
        let server = Cluster::start();
        // Nothing listens there (the port was free a moment ago).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let err = PostgresStore::new(&format!("postgres://{USER}@127.0.0.1:{port}/x"))
            .expect("store")
            .list()
            .expect_err("refused");
        let text = message(&err);
        assert!(matches!(err, JournalError::Unreachable { .. }), "{err:?}");
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
        assert!(text.contains("cannot reach PostgreSQL"), "{text}");
        assert!(text.contains("server is running"), "{text}");

        let wrong = "not-the-password-123";
        let dir = tempfile::tempdir().expect("tempdir");
        let wrong_file = dir.path().join("wrong");
        std::fs::write(&wrong_file, wrong).expect("write");
        let url = format!(
            "{}?password_file={}",
            server.tcp_url("postgres"),
            wrong_file.display()
        );
        let err = PostgresStore::new(&url)
            .expect("store")
            .list()
            .expect_err("refused");
        let text = message(&err);
        assert!(text.contains("refused the credentials"), "{text}");
        assert!(text.contains("~/.pgpass"), "{text}");
        assert!(!text.contains(wrong), "{text}");

        // The right password from a file works over TCP.
        let file = dir.path().join("pw");
        std::fs::write(&file, format!("{PASSWORD}\n")).expect("write");
        let url = format!(
            "{}?password_file={}",
            server.tcp_url("postgres"),
            file.display()
        );
        PostgresStore::new(&url)
            .expect("store")
            .check()
            .expect("password_file");

        let err = PostgresStore::new(&server.socket_url().replace("/postgres", "/nosuchdb"))
            .expect("store")
            .list()
            .expect_err("no database");
        let text = message(&err);
        assert!(text.contains("no such database"), "{text}");
        assert!(text.contains("nosuchdb"), "{text}");
        assert!(text.contains("createdb"), "{text}");
    }

    #[test]
    fn two_processes_migrating_at_once_both_find_the_schema() {
        let server = Cluster::start();
        let url = server.socket_url();
        std::thread::scope(|scope| {
            let calls: Vec<_> = (0..4)
                .map(|_| {
                    let url = url.clone();
                    scope.spawn(move || PostgresStore::new(&url).expect("store").check())
                })
                .collect();
            for call in calls {
                call.join().expect("thread").expect("migrated");
            }
        });
        assert_eq!(
            server
                .psql("SELECT count(*), max(version) FROM foundry_schema_version")
                .expect("psql")
                .trim(),
            format!("{0}|{0}", MIGRATIONS.len())
        );
        // A newer Foundry migrated it further: refused, not misread.
        server
            .psql(&format!(
                "INSERT INTO foundry_schema_version (version) VALUES ({})",
                MIGRATIONS.len() + 1
            ))
            .expect("psql");
        let err = PostgresStore::new(&url)
            .expect("store")
            .list()
            .expect_err("newer schema");
        let text = message(&err);
        assert!(
            text.contains(&format!(
                "migrated by a newer Foundry (schema {}",
                MIGRATIONS.len() + 1
            )),
            "{text}"
        );
        assert!(text.contains("upgrade Foundry"), "{text}");
    }

    /// The keys of the run's step records, in order, as `store` reads them.
    fn step_keys(store: &PostgresStore, id: RunId) -> Vec<String> {
        let steps = store.read(id).expect("read").steps;
        steps.into_iter().map(|s| s.key).collect()
    }

    /// The run's lease, made another machine's and silent for an hour: lapsed.
    fn lapse(server: &Cluster, id: RunId) {
        let stale = encode(&dead_foreign_lease());
        server
            .psql(&format!(
                "UPDATE foundry_runs SET lease = '{stale}', lease_beat = now() - interval '1 hour' WHERE id = '{id}'"
            ))
            .expect("psql");
    }

    fn dead_foreign_lease() -> Lease {
        Lease {
            pid: 4242,
            host: "another-machine".into(),
            started_at: crate::time::Millis(1),
            heartbeat_at: crate::time::Millis(1),
        }
    }

    /// How many of `table`'s rows belong to run `id`.
    fn rows_of(server: &Cluster, table: &str, id: RunId) -> usize {
        let out = server
            .psql(&format!("SELECT count(*) FROM {table} WHERE run = '{id}'"))
            .expect("psql");
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("a count: {out:?}"))
    }

    #[test]
    fn a_step_write_is_one_log_row_and_the_log_is_folded_every_few_thousand_records() {
        let server = Cluster::start();
        let store = PostgresStore::new(&server.socket_url()).expect("store");
        let info = info();
        let id = info.id;
        let (mut journal, mut model) = store
            .create(&info, &meta(RunState::Running), &lease::own_lease())
            .expect("create");
        let writes = crate::journal::contract::sequential_writes(0, 1100);
        for (i, ops) in writes.iter().enumerate() {
            journal.write(ops).expect("write");
            if i == 9 {
                assert_eq!(rows_of(&server, "foundry_log", id), 10, "one row per write");
                assert_eq!(rows_of(&server, "foundry_steps", id), 0);
            }
        }
        // 2 records a write: folded once, at the write that took the log past the mark.
        let logged = rows_of(&server, "foundry_log", id);
        assert!(
            logged < 1100 - 1000,
            "the log was not folded: {logged} rows"
        );
        assert!(rows_of(&server, "foundry_steps", id) > 1000);
        model.apply_all(writes.iter().map(Vec::as_slice));
        assert_eq!(store.read(id).expect("read").steps, model.steps);

        // A log row whose arrays disagree is named, not misread.
        server
            .psql(&format!(
                "INSERT INTO foundry_log (run, n, keys, seqs, records) VALUES ('{id}', 999999, '{{a,b}}', '{{1,2}}', '{{x}}')"
            ))
            .expect("psql");
        let err = store.read(id).expect_err("refused");
        let text = message(&err);
        assert!(matches!(err, JournalError::Corrupt { .. }), "{text}");
        assert!(
            text.contains("log row 999999 has 2 keys for 1 records"),
            "{text}"
        );
        assert!(text.contains(&id.to_string()), "{text}");
        drop(journal);
    }

    /// Whether the run's row says it is held, as the server has it.
    fn held_row(server: &Cluster, id: RunId) -> String {
        server
            .psql(&format!("SELECT held FROM foundry_runs WHERE id = '{id}'"))
            .expect("psql")
            .trim()
            .to_string()
    }

    /// Where a call made where `context` runs it is answered (the thread's name): with
    /// nothing sent to the store's thread, then with that thread kept busy by a job sent
    /// before it, and a journal dropped (its run given back on that thread) after that; the
    /// second call must wait for both, wherever it runs.
    fn where_calls_run(context: impl Fn(Box<dyn FnOnce() + Send>)) -> (String, String) {
        let server = Cluster::start();
        let store = PostgresStore::new(&server.socket_url()).expect("store");
        let info = info();
        let id = info.id;
        let (journal, _) = store
            .create(&info, &meta(RunState::Running), &lease::own_lease())
            .expect("create");
        let call = |store: PostgresStore| {
            let (done, answered) = mpsc::channel();
            context(Box::new(move || {
                let name = store
                    .worker
                    .call(|client, _| {
                        client.simple_query("SELECT 1")?;
                        Ok(std::thread::current().name().unwrap_or("").to_string())
                    })
                    .expect("call");
                done.send(name).expect("answer");
            }));
            answered
                .recv_timeout(Duration::from_secs(20))
                .expect("answered")
        };
        let idle = call(store.clone());
        let (open, gate) = mpsc::channel::<()>();
        assert!(store.worker.send(Box::new(move |_| {
            let _ = gate.recv_timeout(Duration::from_secs(10));
        })));
        drop(journal);
        let (opened, wait) = (std::time::Instant::now(), Duration::from_millis(300));
        let opener = std::thread::spawn(move || {
            std::thread::sleep(wait);
            open.send(()).expect("open the gate");
        });
        let busy = call(store.clone());
        assert!(
            opened.elapsed() >= wait,
            "the call did not wait for the job before it"
        );
        assert_eq!(
            held_row(&server, id),
            "f",
            "the call ran before the giving back"
        );
        opener.join().expect("opener");
        (idle, busy)
    }

    const STORE_THREAD: &str = "foundry-journal-pg";

    #[test]
    fn a_call_from_a_plain_thread_runs_there_unless_the_stores_thread_has_work_before_it() {
        let (idle, busy) = where_calls_run(|call| {
            std::thread::Builder::new()
                .name("plain".into())
                .spawn(call)
                .expect("thread")
                .join()
                .expect("join");
        });
        assert_eq!((idle.as_str(), busy.as_str()), ("plain", STORE_THREAD));
    }

    #[test]
    fn a_call_from_a_runtimes_worker_runs_there_unless_the_stores_thread_has_work_before_it() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("worker")
            .build()
            .expect("runtime");
        let (idle, busy) = where_calls_run(|call| {
            rt.block_on(rt.spawn(async move { call() })).expect("task");
        });
        assert_eq!((idle.as_str(), busy.as_str()), ("worker", STORE_THREAD));
    }

    #[test]
    fn a_call_from_a_current_thread_runtime_runs_on_the_stores_thread() {
        let (idle, busy) = where_calls_run(|call| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            rt.block_on(async move { call() });
        });
        assert_eq!((idle.as_str(), busy.as_str()), (STORE_THREAD, STORE_THREAD));
    }

    #[test]
    fn a_second_driver_is_refused_with_the_owner_and_a_stale_one_is_fenced() {
        let server = Cluster::start();
        let store = PostgresStore::new(&server.socket_url()).expect("store");
        let info = info();
        let id = info.id;
        let (mut first, _) = store
            .create(&info, &meta(RunState::Running), &lease::own_lease())
            .expect("create");
        // Another machine (another store, as its process has) is refused, told who drives.
        let other = PostgresStore::new(&server.socket_url()).expect("store");
        let err = other.open(id).err().expect("busy");
        let JournalError::Busy {
            owner: Some(owner), ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(owner.pid, std::process::id());
        assert_eq!(owner.host, lease::hostname());
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        assert!(text.contains(&lease::hostname()), "{text}");

        // The lease lapses (its owner elsewhere, silent): a take-over, and the old driver's
        // late write is refused.
        first
            .write(&[WriteOp::Step(step(0, "a#0"))])
            .expect("write");
        lapse(&server, id);
        let (mut second, snapshot) = other.open(id).expect("taken over");
        assert_eq!(snapshot.lease, Some(dead_foreign_lease()));
        assert_eq!(snapshot.steps.len(), 1);
        let late = first.write(&[WriteOp::Step(step(1, "late#0"))]);
        let Err(JournalError::TakenOver {
            owner: Some(owner), ..
        }) = late
        else {
            panic!("a stale driver wrote: {late:?}")
        };
        assert_eq!(owner.pid, std::process::id());
        second
            .write(&[WriteOp::Step(step(1, "b#0"))])
            .expect("the new driver writes");
        assert_eq!(step_keys(&other, id), ["a#0", "b#0"]);
        // Dropping the stale journal does not give back what it no longer holds.
        drop(first);
        assert!(matches!(
            other.open(id).err(),
            Some(JournalError::Busy { .. })
        ));
    }

    /// Whether `f`, run on a thread, is still waiting after a while; then its answer once
    /// `release` ran.
    fn waits_for<T: Send + 'static>(
        f: impl FnOnce() -> T + Send + 'static,
        release: impl FnOnce(),
    ) -> (bool, T) {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || tx.send(f()).unwrap_or(()));
        let early = rx.recv_timeout(Duration::from_millis(500)).ok();
        let waited = early.is_none();
        release();
        let answer = early
            .or_else(|| rx.recv_timeout(Duration::from_secs(20)).ok())
            .expect("answered");
        thread.join().expect("joined");
        (waited, answer)
    }

    #[test]
    fn a_take_over_waits_for_a_write_in_flight_and_a_write_waits_for_a_take_over() {
        let server = Cluster::start();
        let store = PostgresStore::new(&server.socket_url()).expect("store");
        let info = info();
        let id = info.id;
        let (driver, _) = store
            .create(&info, &meta(RunState::Running), &lease::own_lease())
            .expect("create");
        lapse(&server, id);
        // A write of the driver in flight (fenced, not yet committed) as the lease lapses:
        // the take-over waits for it, and finds its record.
        let mut raw = Client::connect(&server.socket_url(), postgres::NoTls).expect("connect");
        let mut write = raw.transaction().expect("begin");
        let fenced = write
            .query(SQL_FENCE, &[&id.to_string(), &1_i64])
            .expect("fence");
        assert_eq!(fenced.len(), 1, "the driver's epoch holds");
        write
            .execute(
                SQL_LOG,
                &[
                    &id.to_string(),
                    &1_i64,
                    &vec!["a#0"],
                    &vec![0_i64],
                    &vec![encode(&step(0, "a#0"))],
                ],
            )
            .expect("insert");
        let other = PostgresStore::new(&server.socket_url()).expect("store");
        let taker = other.clone();
        let (waited, taken) = waits_for(
            move || {
                taker
                    .open(id)
                    .map(|(journal, snapshot)| (journal, snapshot.steps.len()))
            },
            || write.commit().expect("commit"),
        );
        assert!(waited, "the take-over did not wait for the write in flight");
        let (mut second, steps) = taken.expect("taken over");
        assert_eq!(steps, 1, "the take-over missed the write it waited for");
        drop(raw);

        // A take-over in flight: the old driver's write waits for it, then is refused.
        second
            .write(&[WriteOp::Step(step(1, "b#0"))])
            .expect("write");
        lapse(&server, id);
        let mut raw = Client::connect(&server.socket_url(), postgres::NoTls).expect("connect");
        let mut take = raw.transaction().expect("begin");
        take.execute("SELECT foundry_take($1)", &[&id.to_string()])
            .expect("take");
        take.execute(
            "UPDATE foundry_runs SET epoch = epoch + 1 WHERE id = $1",
            &[&id.to_string()],
        )
        .expect("epoch");
        let (waited, late) = waits_for(
            move || second.write(&[WriteOp::Step(step(2, "late#0"))]),
            || take.commit().expect("commit"),
        );
        assert!(waited, "the write did not wait for the take-over in flight");
        assert!(
            matches!(late, Err(JournalError::TakenOver { .. })),
            "a write after a take-over was not refused: {late:?}"
        );
        assert_eq!(step_keys(&other, id), ["a#0", "b#0"]);
        drop(driver);
    }

    #[test]
    fn a_cancel_asked_from_another_machine_reaches_the_driver_at_its_next_write() {
        let server = Cluster::start();
        let store = PostgresStore::new(&server.socket_url()).expect("store");
        let info = info();
        let id = info.id;
        let (mut driver, _) = store
            .create(&info, &meta(RunState::Running), &lease::own_lease())
            .expect("create");
        let other = PostgresStore::new(&server.socket_url()).expect("store");
        let asker = dead_foreign_lease();
        // Asked while driven: recorded, and the driver named back.
        let asked = other.request_cancel(id, &asker).expect("asked");
        assert_eq!(asked.map(|l| l.pid), Some(std::process::id()));
        assert_eq!(driver.cancel_requested(), None, "known before a write");
        driver
            .write(&[WriteOp::Step(step(0, "a#0"))])
            .expect("write");
        assert_eq!(driver.cancel_requested(), Some(asker.clone()));
        // A driver taking the run over later finds it as it takes it.
        lapse(&server, id);
        let (next, _) = other.open(id).expect("taken over");
        assert_eq!(next.cancel_requested(), Some(asker.clone()));
        drop(next);
        drop(driver);
        // Nobody drives it now: nothing is asked, the caller cancels it itself.
        let undriven = other.request_cancel(id, &asker);
        assert_eq!(undriven.expect("undriven"), None);
        // Nor of a run that ended.
        let (mut last, _) = store.open(id).expect("open");
        last.write(&[WriteOp::Meta(meta(RunState::Cancelled))])
            .expect("cancelled");
        assert_eq!(other.request_cancel(id, &asker).expect("ended"), None);
    }

    #[test]
    fn a_cancel_asked_from_another_machine_is_heard_at_once_without_a_write() {
        let server = Cluster::start();
        let other = PostgresStore::new(&server.socket_url()).expect("store");
        let asker = dead_foreign_lease();
        let heard = |journal: &mut Box<dyn RunJournal>| {
            let (tx, rx) = mpsc::channel();
            journal.on_cancel(Box::new(move |by| tx.send(by).unwrap_or(())));
            rx
        };
        // Asked while the driver's process listens: heard with no write of the driver's.
        let store = PostgresStore::new(&server.socket_url()).expect("store");
        let first = info();
        let (mut driver, _) = store
            .create(&first, &meta(RunState::Running), &lease::own_lease())
            .expect("create");
        let woken = heard(&mut driver);
        other.request_cancel(first.id, &asker).expect("asked");
        let by = woken.recv_timeout(Duration::from_secs(10));
        assert_eq!(by.ok(), Some(asker.clone()), "not heard");
        assert_eq!(driver.cancel_requested(), None, "no write read it");
        // Asked before the process listened (its listener starts with this run): found by
        // the listener's read of the rows once it listens.
        let late = PostgresStore::new(&server.socket_url()).expect("store");
        let second = info();
        let (mut driver, _) = late
            .create(&second, &meta(RunState::Running), &lease::own_lease())
            .expect("create");
        other.request_cancel(second.id, &asker).expect("asked");
        let by = heard(&mut driver).recv_timeout(Duration::from_secs(10));
        assert_eq!(by.ok(), Some(asker), "not found");
    }

    #[test]
    fn a_server_stopped_mid_run_fails_the_write_clearly_and_the_next_one_reconnects() {
        let server = Cluster::start();
        let store = PostgresStore::new(&server.socket_url()).expect("store");
        let info = info();
        let (mut journal, _) = store
            .create(&info, &meta(RunState::Running), &lease::own_lease())
            .expect("create");
        journal
            .write(&[WriteOp::Step(step(0, "a#0"))])
            .expect("write");
        server.stop().expect("stop");
        let err = journal
            .write(&[WriteOp::Step(step(1, "b#0"))])
            .expect_err("server down");
        let text = message(&err);
        assert!(matches!(err, JournalError::Unreachable { .. }), "{err:?}");
        assert!(
            text.contains(&server.socket_url().replace("%2F", "/")),
            "{text}"
        );
        assert!(text.contains("run can be resumed"), "{text}");
        server.start_again().expect("start");
        journal
            .write(&[WriteOp::Step(step(1, "b#0"))])
            .expect("reconnected");
        let keys: Vec<_> = store
            .read(info.id)
            .expect("read")
            .steps
            .into_iter()
            .map(|s| s.key)
            .collect();
        assert_eq!(keys, ["a#0", "b#0"]);
    }
}
