//! The state store: one SQLite database per user, in WAL mode, so concurrent cove commands
//! never corrupt state. Writers take the lock up front (`BEGIN IMMEDIATE`) and wait up to
//! `BUSY_TIMEOUT` for each other; uniqueness (container names, tags) is enforced by the schema.

use crate::request::RunRequest;
use crate::Result;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;
use std::time::Duration;

mod images;
mod networks;

pub use images::NewImage;
pub use networks::{EndpointRow, Gateways, NetOptions, NetworkRow};

const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
const SCHEMA_VERSION: i64 = 5;
/// The WAL size above which a command checkpoints it away as it ends ([`Db::settle`]).
const WAL_SETTLE_BYTES: u64 = 64 << 10;
/// Room kept for the database on a full disk (`state.db-reserve`): what `rm`, `rmi` and the
/// record of an exit need, many times over.
const RESERVE_BYTES: u64 = 512 << 10;

pub struct Db {
    conn: Connection,
    /// The database file's path (its WAL is `PATH-wal`).
    path: std::path::PathBuf,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ImageRow {
    pub id: String,
    pub config: String,
    pub diff_ids: Vec<String>,
    pub size: i64,
    pub created: String,
    pub added: String,
    pub digest: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ContainerRow {
    pub id: String,
    pub name: String,
    pub image_id: String,
    pub image: String,
    pub created: String,
    /// The [`RunRequest`] as JSON; decode it with [`ContainerRow::request`].
    pub config: String,
    pub state: ContainerState,
    pub pid: Option<i64>,
    pub exit_code: Option<i64>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

/// Where a container is in its life, as Docker names it (stored as that name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerState {
    /// Exists, never ran (or its start failed before the command ran).
    Created,
    /// PID 1 runs (or its monitor is between two runs of a restart policy).
    Running,
    /// Between two runs of a restart policy.
    Restarting,
    /// Ran and ended.
    Exited,
}

impl ContainerState {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Restarting => "restarting",
            ContainerState::Exited => "exited",
        }
    }
}

impl std::fmt::Display for ContainerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ContainerState {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "created" => ContainerState::Created,
            "running" => ContainerState::Running,
            "restarting" => ContainerState::Restarting,
            "exited" => ContainerState::Exited,
            _ => return Err(crate::Error::Invalid(format!("unknown container state {s:?}"))),
        })
    }
}

impl serde::Serialize for ContainerState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl rusqlite::types::ToSql for ContainerState {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl ContainerRow {
    /// The request the container was created from. A row whose JSON does not decode is an
    /// error naming the container, never a default request (that would, say, forget `--rm` or
    /// the published ports).
    pub fn request(&self) -> Result<RunRequest> {
        serde_json::from_str(&self.config)
            .map_err(|e| crate::Error::Corrupt(format!("container {} has a corrupt config: {e}", self.name)))
    }

    pub fn is_running(&self) -> bool {
        self.state == ContainerState::Running
    }
}

impl Db {
    pub fn open(path: &Path) -> Result<Db> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version < SCHEMA_VERSION {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(
                "CREATE TABLE IF NOT EXISTS images (
                    id TEXT PRIMARY KEY, config TEXT NOT NULL, diff_ids TEXT NOT NULL,
                    size INTEGER NOT NULL, created TEXT NOT NULL, added TEXT NOT NULL, digest TEXT);
                 CREATE TABLE IF NOT EXISTS tags (
                    name TEXT PRIMARY KEY, image_id TEXT NOT NULL REFERENCES images(id));
                 CREATE TABLE IF NOT EXISTS containers (
                    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, image_id TEXT NOT NULL,
                    image TEXT NOT NULL, created TEXT NOT NULL, config TEXT NOT NULL,
                    state TEXT NOT NULL, pid INTEGER, exit_code INTEGER,
                    started_at TEXT, finished_at TEXT);
                 PRAGMA user_version = 1;",
            )?;
            tx.commit()?;
        }
        if version < 2 {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(
                "CREATE TABLE IF NOT EXISTS networks (
                    name TEXT PRIMARY KEY, id TEXT NOT NULL UNIQUE, subnet TEXT NOT NULL UNIQUE,
                    gateway TEXT NOT NULL, bridge TEXT NOT NULL UNIQUE, internal INTEGER NOT NULL,
                    created TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS endpoints (
                    container_id TEXT NOT NULL, network TEXT NOT NULL REFERENCES networks(name),
                    ip TEXT NOT NULL, ifname TEXT NOT NULL, aliases TEXT NOT NULL,
                    PRIMARY KEY (container_id, network), UNIQUE (network, ip));
                 PRAGMA user_version = 2;",
            )?;
            tx.commit()?;
        }
        if version < 3 {
            // Which stored blob holds each layer of an image (push, save, blob GC).
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(
                "CREATE TABLE IF NOT EXISTS layer_blobs (
                    image_id TEXT NOT NULL, diff_id TEXT NOT NULL, blob TEXT NOT NULL,
                    PRIMARY KEY (image_id, diff_id));
                 PRAGMA user_version = 3;",
            )?;
            tx.commit()?;
        }
        if version < 4 {
            // Dual-stack networks (`network create --ipv6`): an IPv6 subnet and gateway per
            // network, an IPv6 address per endpoint (leased once per network, as IPv4 is).
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(
                "ALTER TABLE networks ADD COLUMN subnet6 TEXT;
                 ALTER TABLE networks ADD COLUMN gateway6 TEXT;
                 ALTER TABLE endpoints ADD COLUMN ip6 TEXT;
                 CREATE UNIQUE INDEX IF NOT EXISTS endpoints_ip6 ON endpoints(network, ip6);
                 PRAGMA user_version = 4;",
            )?;
            tx.commit()?;
        }
        if version < 5 {
            // `network create --label` and `-o` (JSON objects).
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(
                "ALTER TABLE networks ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
                 ALTER TABLE networks ADD COLUMN options TEXT NOT NULL DEFAULT '{}';
                 PRAGMA user_version = 5;",
            )?;
            tx.commit()?;
        }
        let db = Db { conn, path: path.to_path_buf() };
        db.keep_reserve();
        Ok(db)
    }

    /// `PATH-reserve`: room set aside for the writes that free space on a full disk.
    fn reserve_path(&self) -> std::path::PathBuf {
        self.path.with_file_name(format!(
            "{}-reserve",
            self.path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
        ))
    }

    /// Makes the reserve if it is missing (the first command, or the first one after a full
    /// disk used it up) and there is room for it; one `stat` when it exists.
    fn keep_reserve(&self) {
        let path = self.reserve_path();
        if path.exists() {
            return;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let made = std::fs::File::create(&tmp).and_then(|mut f| {
            use std::io::Write;
            let block = [0u8; 64 << 10];
            for _ in 0..RESERVE_BYTES / block.len() as u64 {
                f.write_all(&block)?;
            }
            f.sync_data()
        });
        match made.and_then(|_| std::fs::rename(&tmp, &path)) {
            Ok(()) => {}
            Err(e) => {
                tracing::debug!("no room for {}: {e}", path.display());
                let _ = std::fs::remove_file(&tmp);
            }
        }
    }

    /// After a write found the disk full: room for one more try. First a checkpoint that
    /// lets the next transaction write the WAL from its start, over blocks the file already
    /// has; then the reserve goes. False when nothing is left to give.
    fn make_room(&self, attempt: u32) -> bool {
        match attempt {
            0 => {
                if let Err(e) = self.conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(())) {
                    tracing::debug!("checkpoint: {e}");
                }
                true
            }
            1 => std::fs::remove_file(self.reserve_path()).is_ok(),
            _ => false,
        }
    }

    /// Called as a command ends (cove never closes its connection: the process exits). Every
    /// command opens the database as its first connection, and the first connection reads the
    /// whole WAL to rebuild its index; SQLite alone checkpoints only at 1000 pages, so a WAL of
    /// ~1 MB was read by every `ps` (~3 ms). A WAL past [`WAL_SETTLE_BYTES`] is checkpointed
    /// into the database and truncated here, by whichever command finds it so (a writer,
    /// nearly always); a busy database is left for the next one.
    pub fn settle(&self) {
        let wal = self
            .path
            .with_file_name(format!("{}-wal", self.path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()));
        if std::fs::metadata(&wal).is_ok_and(|m| m.len() > WAL_SETTLE_BYTES) {
            let _ = self.conn.busy_timeout(Duration::from_millis(100));
            if let Err(e) = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
                tracing::debug!("checkpoint: {e}");
            }
        }
    }

    /// Runs `f` in a write transaction taken up front (no lock upgrade deadlocks). On a full
    /// disk the transaction is tried again once room was made ([`Db::make_room`]): the writes
    /// that free space (`rm`, `rmi`, `prune`) and the record of what happened must not fail
    /// for want of the few pages they need.
    pub fn write<T>(&mut self, mut f: impl FnMut(&Tx<'_>) -> Result<T>) -> Result<T> {
        let mut attempt = 0;
        loop {
            let r = (|| {
                let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let out = f(&Tx(&tx))?;
                tx.commit()?;
                Ok(out)
            })();
            match r {
                Err(crate::Error::Db(rusqlite::Error::SqliteFailure(e, _)))
                    if e.code == rusqlite::ErrorCode::DiskFull && self.make_room(attempt) =>
                {
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    /// The connection itself, for tests that write rows the engine never would (corrupt ones).
    #[cfg(test)]
    pub(crate) fn raw(&self) -> &Connection {
        &self.conn
    }

    /// Runs `f` in one read transaction: what it reads is one consistent state.
    pub fn read<T>(&self, f: impl FnOnce(&Db) -> Result<T>) -> Result<T> {
        let tx = self.conn.unchecked_transaction()?;
        let out = f(self)?;
        tx.commit()?;
        Ok(out)
    }

    pub fn image(&self, id: &str) -> Result<Option<ImageRow>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, config, diff_ids, size, created, added, digest FROM images WHERE id = ?1",
                [id],
                image_row,
            )
            .optional()?)
    }

    pub fn images(&self) -> Result<Vec<ImageRow>> {
        let mut st = self
            .conn
            .prepare("SELECT id, config, diff_ids, size, created, added, digest FROM images ORDER BY added DESC")?;
        let rows = st.query_map([], image_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn tags(&self) -> Result<Vec<(String, String)>> {
        let mut st = self.conn.prepare("SELECT name, image_id FROM tags ORDER BY name")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn tag_target(&self, name: &str) -> Result<Option<String>> {
        Ok(self.conn.query_row("SELECT image_id FROM tags WHERE name = ?1", [name], |r| r.get(0)).optional()?)
    }

    pub fn container(&self, id: &str) -> Result<Option<ContainerRow>> {
        Ok(self.conn.query_row(&format!("{CONTAINER_SELECT} WHERE id = ?1"), [id], container_row).optional()?)
    }

    pub fn containers(&self) -> Result<Vec<ContainerRow>> {
        let mut st = self.conn.prepare(&format!("{CONTAINER_SELECT} ORDER BY created DESC"))?;
        let rows = st.query_map([], container_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Resolves a container name, full id or unique id prefix.
    pub fn find_container(&self, key: &str) -> Result<ContainerRow> {
        let key = key.strip_prefix('/').unwrap_or(key);
        if let Some(c) = self
            .conn
            .query_row(&format!("{CONTAINER_SELECT} WHERE name = ?1 OR id = ?1"), [key], container_row)
            .optional()?
        {
            return Ok(c);
        }
        if key.len() >= 3 && key.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut st = self.conn.prepare(&format!("{CONTAINER_SELECT} WHERE id LIKE ?1 || '%' LIMIT 2"))?;
            let rows = st.query_map([key], container_row)?.collect::<Result<Vec<_>, _>>()?;
            match rows.len() {
                1 => return Ok(rows.into_iter().next().expect("one row")),
                2 => return Err(crate::Error::Conflict(format!("multiple containers match id prefix {key:?}"))),
                _ => {}
            }
        }
        Err(crate::Error::NotFound(format!("no such container: {key}")))
    }

    /// (network, ip) of every network the container is on.
    pub fn container_endpoints(&self, id: &str) -> Result<Vec<(String, String)>> {
        Ok(self.container_endpoints6(id)?.into_iter().map(|(n, ip, _)| (n, ip)).collect())
    }

    /// (network, ip, IPv6 address if dual stack) of every network the container is on, in the
    /// order of its interfaces (eth0 first: `cv<id><N>`).
    pub fn container_endpoints6(&self, id: &str) -> Result<Vec<(String, String, Option<String>)>> {
        let mut st = self.conn.prepare(
            "SELECT network, ip, ip6 FROM endpoints WHERE container_id = ?1 ORDER BY length(ifname), ifname",
        )?;
        let rows = st.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn set_container_state(
        &mut self,
        id: &str,
        state: ContainerState,
        pid: Option<i64>,
        exit_code: Option<i64>,
    ) -> Result<()> {
        let now = now_rfc3339();
        self.write(|tx| {
            match state {
                ContainerState::Running => tx.0.execute(
                    "UPDATE containers SET state = ?2, pid = ?3, started_at = ?4, exit_code = NULL WHERE id = ?1",
                    params![id, state, pid, now],
                )?,
                ContainerState::Exited => tx.0.execute(
                    "UPDATE containers SET state = ?2, pid = NULL, exit_code = ?3, finished_at = ?4 WHERE id = ?1",
                    params![id, state, exit_code, now],
                )?,
                // A start that failed: never ran, the code of the failure kept for inspect.
                ContainerState::Created if exit_code.is_some() => tx.0.execute(
                    "UPDATE containers SET state = ?2, pid = NULL, exit_code = ?3 WHERE id = ?1",
                    params![id, state, exit_code],
                )?,
                _ => tx.0.execute("UPDATE containers SET state = ?2 WHERE id = ?1", params![id, state])?,
            };
            Ok(())
        })
    }

    /// Whether a container has this name.
    pub fn container_name_taken(&self, name: &str) -> Result<bool> {
        Ok(self
            .conn
            .query_row("SELECT EXISTS(SELECT 1 FROM containers WHERE name = ?1)", [name], |r| r.get::<_, bool>(0))?)
    }

    /// Inserts a `created` container and, in the same transaction, runs `then` (the network
    /// leases), so a name taken in between or an address already leased leaves nothing behind.
    pub fn insert_container<T>(
        &mut self,
        c: &NewContainer<'_>,
        mut then: impl FnMut(&Tx<'_>) -> Result<T>,
    ) -> Result<T> {
        self.write(|tx| {
            tx.0.execute(
                "INSERT INTO containers (id, name, image_id, image, created, config, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![c.id, c.name, c.image_id, c.image, c.created, c.config, ContainerState::Created],
            )?;
            then(tx)
        })
    }

    /// Deletes a container's row and its network leases; with `only_if_exited`, only while
    /// its row says exited (a `start` that came in between wins). Whether it was deleted.
    pub fn delete_container(&mut self, id: &str, only_if_exited: bool) -> Result<bool> {
        self.write(|tx| {
            let n = tx.0.execute(
                "DELETE FROM containers WHERE id = ?1 AND (?2 = 0 OR state = ?3)",
                params![id, only_if_exited, ContainerState::Exited],
            )?;
            if n > 0 {
                tx.0.execute("DELETE FROM endpoints WHERE container_id = ?1", [id])?;
            }
            Ok(n > 0)
        })
    }

    /// A monitor's report that PID 1 runs as `pid` (a `created` row becomes running; after a
    /// restart by the monitor, a new pid).
    pub fn mark_started(&mut self, id: &str, pid: i64) -> Result<()> {
        self.write(|tx| {
            tx.0.execute(
                "UPDATE containers SET state = CASE state WHEN ?4 THEN ?5 ELSE state END, pid = ?2, started_at = ?3 WHERE id = ?1",
                params![id, pid, now_rfc3339(), ContainerState::Created, ContainerState::Running],
            )?;
            Ok(())
        })
    }

    /// Records an exit found by reconcile, unless something else settled the row first (only
    /// a running, restarting or created row changes).
    pub fn mark_exited(&mut self, id: &str, code: i64, finished_at: &str) -> Result<()> {
        self.write(|tx| {
            tx.0.execute(
                "UPDATE containers SET state = ?4, pid = NULL, exit_code = ?2, finished_at = ?3 WHERE id = ?1 AND state IN (?5, ?6, ?7)",
                params![id, code, finished_at, ContainerState::Exited, ContainerState::Running, ContainerState::Restarting, ContainerState::Created],
            )?;
            Ok(())
        })
    }

    /// (network, `--network-alias`es) of every network the container is on.
    pub fn container_aliases(&self, id: &str) -> Result<Vec<(String, Vec<String>)>> {
        let mut st = self.conn.prepare("SELECT network, aliases FROM endpoints WHERE container_id = ?1")?;
        let rows = st
            .query_map([id], |r| {
                let (network, aliases): (String, String) = (r.get(0)?, r.get(1)?);
                let aliases = serde_json::from_str(&aliases).map_err(|e| {
                    corrupt(1, format!("the endpoint of container {id} on network {network} has corrupt aliases: {e}"))
                })?;
                Ok((network, aliases))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

/// A container row to insert ([`Db::insert_container`]); it starts `created`.
pub struct NewContainer<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub image_id: &'a str,
    /// The image as the user named it.
    pub image: &'a str,
    pub created: &'a str,
    /// The [`RunRequest`] as JSON.
    pub config: &'a str,
}

const CONTAINER_SELECT: &str =
    "SELECT id, name, image_id, image, created, config, state, pid, exit_code, started_at, finished_at FROM containers";

fn image_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ImageRow> {
    let id: String = r.get(0)?;
    let diff: String = r.get(2)?;
    let diff_ids =
        serde_json::from_str(&diff).map_err(|e| corrupt(2, format!("image {id} has corrupt layer ids: {e}")))?;
    Ok(ImageRow {
        id,
        config: r.get(1)?,
        diff_ids,
        size: r.get(3)?,
        created: r.get(4)?,
        added: r.get(5)?,
        digest: r.get(6)?,
    })
}

fn container_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ContainerRow> {
    let name: String = r.get(1)?;
    let state: String = r.get(6)?;
    let state = state
        .parse::<ContainerState>()
        .map_err(|e| corrupt(6, format!("container {name} has a corrupt state: {e}")))?;
    Ok(ContainerRow {
        id: r.get(0)?,
        name,
        image_id: r.get(2)?,
        image: r.get(3)?,
        created: r.get(4)?,
        config: r.get(5)?,
        state,
        pid: r.get(7)?,
        exit_code: r.get(8)?,
        started_at: r.get(9)?,
        finished_at: r.get(10)?,
    })
}

/// A column that does not decode: carried out of rusqlite's row mapping as a conversion
/// failure, turned into [`crate::Error::Corrupt`] (with `message`) by the engine's error.
pub(crate) fn corrupt(col: usize, message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, message.into())
}

/// A write transaction ([`Db::write`]): the statements that must share one are its methods.
pub struct Tx<'a>(&'a Connection);

pub use cove_monitor::time::{now_rfc3339, rfc3339};

/// Parses the seconds part of an RFC 3339 UTC timestamp written by [`rfc3339`].
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let (date, time) = s.split_once('T')?;
    let mut dp = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, d) = (dp.next()?.ok()?, dp.next()?.ok()?, dp.next()?.ok()?);
    let mut tp = time.get(0..8)?.split(':').map(|x| x.parse::<i64>());
    let (hh, mm, ss) = (tp.next()?.ok()?, tp.next()?.ok()?, tp.next()?.ok()?);
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_700_000_000, 5), "2023-11-14T22:13:20.000000005Z");
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20.000000005Z"), Some(1_700_000_000));
        assert_eq!(parse_rfc3339(&rfc3339(951_782_400, 0)), Some(951_782_400)); // 2000-02-29
        assert_eq!(parse_rfc3339("garbage"), None);
    }

    #[test]
    fn container_states_round_trip_and_transitions() {
        let d = tempfile::tempdir().unwrap();
        let mut db = Db::open(&d.path().join("s.db")).unwrap();
        let row = NewContainer { id: "abc123", name: "web", image_id: "i", image: "img", created: "now", config: "{}" };
        db.insert_container(&row, |_| Ok(())).unwrap();
        assert!(db.container_name_taken("web").unwrap() && !db.container_name_taken("db").unwrap());
        let state = |db: &Db| db.find_container("web").unwrap().state;
        assert_eq!(state(&db), ContainerState::Created);
        db.mark_started("abc123", 42).unwrap();
        assert_eq!((state(&db), db.find_container("web").unwrap().pid), (ContainerState::Running, Some(42)));
        // Only an exited row goes with `only_if_exited`.
        assert!(!db.delete_container("abc123", true).unwrap());
        db.mark_exited("abc123", 3, "then").unwrap();
        let c = db.find_container("web").unwrap();
        assert_eq!(
            (c.state, c.exit_code, c.pid, c.finished_at.as_deref()),
            (ContainerState::Exited, Some(3), None, Some("then"))
        );
        // Settled already: a second report changes nothing.
        db.mark_exited("abc123", 255, "later").unwrap();
        assert_eq!(db.find_container("web").unwrap().exit_code, Some(3));
        for s in [ContainerState::Created, ContainerState::Running, ContainerState::Restarting, ContainerState::Exited]
        {
            assert_eq!(s.as_str().parse::<ContainerState>().unwrap(), s);
        }
        assert!(db.delete_container("abc123", true).unwrap());
        assert!(matches!(db.find_container("web"), Err(crate::Error::NotFound(_))));
        // A state cove never writes is an error, not a guess.
        db.conn.execute("INSERT INTO containers (id, name, image_id, image, created, config, state) VALUES ('def456', 'odd', 'i', 'img', 'now', '{}', 'paused?')", []).unwrap();
        let e = db.find_container("odd").unwrap_err().to_string();
        assert!(e.contains("container odd has a corrupt state: unknown container state \"paused?\""), "{e}");
    }

    #[test]
    fn schema_and_names_unique() {
        let d = tempfile::tempdir().unwrap();
        let mut db = Db::open(&d.path().join("s.db")).unwrap();
        let ins = |db: &mut Db, id: &str, name: &str| {
            db.write(|tx| {
                tx.0.execute(
                    "INSERT INTO containers (id, name, image_id, image, created, config, state) VALUES (?1, ?2, 'i', 'img', 'now', '{}', 'created')",
                    params![id, name],
                )?;
                Ok(())
            })
        };
        ins(&mut db, "abc123", "web").unwrap();
        assert!(ins(&mut db, "abd456", "web").is_err());
        ins(&mut db, "abd456", "db").unwrap();
        assert_eq!(db.find_container("web").unwrap().id, "abc123");
        assert_eq!(db.find_container("abc").unwrap().id, "abc123");
        assert!(matches!(db.find_container("ab1"), Err(crate::Error::NotFound(_))));
        assert!(matches!(db.find_container("ab"), Err(crate::Error::NotFound(_))));
        db.conn.execute("INSERT INTO containers (id, name, image_id, image, created, config, state) VALUES ('abc999', 'x2', 'i', 'img', 'now', '{}', 'created')", []).unwrap();
        assert!(matches!(db.find_container("abc"), Err(crate::Error::Conflict(_))));
    }
}
