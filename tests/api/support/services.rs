//! The shared services every test needs (PostgreSQL, Redis), a fresh database
//! per test, and a private Redis a test may kill.

use std::time::Duration;

use uuid::Uuid;

use super::poll::free_port;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    Sqlite,
    Postgres,
}

/// Where the shared services are: the machine's defaults or the COOP_TEST_* overrides.
pub fn postgres_admin_url() -> String {
    std::env::var("COOP_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("COOP_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Fails loudly, naming the service, when PostgreSQL or Redis is not there: a
/// suite that skips what it cannot reach would report green and prove nothing.
async fn require_services() {
    let admin = postgres_admin_url();
    let pg = tokio::time::timeout(Duration::from_secs(5), sqlx::PgPool::connect(&admin)).await;
    match pg {
        Ok(Ok(pool)) => pool.close().await,
        Ok(Err(e)) => panic!(
            "PostgreSQL is required for the PostgreSQL-tier tests but {admin} (COOP_TEST_DATABASE_URL) refused: {e}"
        ),
        Err(_) => {
            panic!("PostgreSQL at {admin} (COOP_TEST_DATABASE_URL) did not answer within 5 s")
        }
    }
    let url = redis_url();
    let client = redis::Client::open(url.as_str()).expect("COOP_TEST_REDIS_URL is not a Redis URL");
    let ping = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(Duration::from_secs(5), ping).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => panic!(
            "Redis is required for the PostgreSQL-tier tests but {url} (COOP_TEST_REDIS_URL) refused: {e}"
        ),
        Err(_) => panic!("Redis at {url} (COOP_TEST_REDIS_URL) did not answer within 5 s"),
    }
}

/// A fresh, uniquely named database; dropped when the last handle goes.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        require_services().await;
        let name = format!("coop_test_{}", Uuid::new_v4().simple());
        let admin = postgres_admin_url();
        let pool = sqlx::PgPool::connect(&admin)
            .await
            .expect("connect to PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&pool)
            .await
            .expect("create test database");
        pool.close().await;
        let base = admin
            .rsplit_once('/')
            .map(|(base, _)| base)
            .unwrap_or(&admin);
        Self {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs outside async code; a small runtime of its own does the work.
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&postgres_admin_url()).await {
                    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    let _ = sqlx::query(&sql).execute(&pool).await;
                    pool.close().await;
                }
            });
        })
        .join();
    }
}

/// The storage an app (or several apps, or an app and its restart) runs on.
pub enum Backing {
    Sqlite(tempfile::TempDir),
    /// Command-line arguments given as they are (storage owned by the test).
    /// (Only the full suite's replica tests use it.)
    #[cfg_attr(not(feature = "full-suite"), allow(dead_code))]
    Args(Vec<String>),
    Postgres {
        db: TestDatabase,
        redis_url: String,
    },
}

impl Backing {
    pub async fn new(tier: Tier) -> std::sync::Arc<Self> {
        std::sync::Arc::new(match tier {
            Tier::Sqlite => Backing::Sqlite(tempfile::tempdir().expect("temp dir")),
            Tier::Postgres => Backing::Postgres {
                db: TestDatabase::create().await,
                redis_url: redis_url(),
            },
        })
    }

    /// Command-line arguments selecting this storage, as an operator would pass them.
    pub fn args(&self) -> Vec<String> {
        match self {
            Backing::Sqlite(dir) => vec!["--data-dir".into(), dir.path().display().to_string()],
            Backing::Args(args) => args.clone(),
            Backing::Postgres { db, redis_url } => vec![
                "--database-url".into(),
                db.url.clone(),
                "--redis-url".into(),
                redis_url.clone(),
            ],
        }
    }
}

/// A private Redis on a port of its own, so a test can stop and restart it.
pub struct PrivateRedis {
    child: Option<std::process::Child>,
    pub port: u16,
}

impl PrivateRedis {
    pub async fn start() -> Self {
        let port = free_port();
        let mut redis = Self { child: None, port };
        redis.restart().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts (again) on the same port, empty, and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (Debian package redis-server)");
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("private redis-server did not start on port {}", self.port);
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Backing {
    /// PostgreSQL with a Redis of the test's own.
    pub async fn postgres_with_redis(redis_url: String) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Backing::Postgres {
            db: TestDatabase::create().await,
            redis_url,
        })
    }
}

/// A direct connection to a test's database, for checking what the API
/// wrote (counts, invariants) without going through the API.
pub enum RawDb {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

impl RawDb {
    pub async fn open(backing: &Backing) -> Self {
        match backing {
            Backing::Postgres { db, .. } => Self::postgres(&db.url).await,
            Backing::Sqlite(dir) => {
                let url = format!("sqlite://{}", dir.path().join("coop.sqlite3").display());
                Self::Sqlite(sqlx::SqlitePool::connect(&url).await.expect("open SQLite"))
            }
            Backing::Args(_) => panic!("no database handle for Backing::Args"),
        }
    }

    pub async fn postgres(url: &str) -> Self {
        Self::Postgres(
            sqlx::PgPool::connect(url)
                .await
                .expect("connect to PostgreSQL"),
        )
    }

    /// The one integer a query answers (`SELECT COUNT(*) …`).
    pub async fn number(&self, sql: &str) -> i64 {
        match self {
            Self::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            Self::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs a statement (an UPDATE to set up a case the API cannot reach,
    /// such as an expired link).
    pub async fn execute(&self, sql: &str) {
        match self {
            Self::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
            Self::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The integers a query answers, one per row.
    pub async fn numbers(&self, sql: &str) -> Vec<i64> {
        match self {
            Self::Postgres(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
            Self::Sqlite(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}
