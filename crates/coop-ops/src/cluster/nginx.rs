//! The nginx in front of the instances: its configuration (rendered from
//! `deploy/nginx/coop.conf.template`), its process, and reloads that wait until
//! the old configuration has no request left.
//!
//! The template has a handful of `{{name}}` placeholders filled by plain string
//! replacement: a template engine would add a dependency for five substitutions.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use super::child_process::{die_with_parent, process_alive, signal};

pub const TEMPLATE: &str = include_str!("../../../../deploy/nginx/coop.conf.template");

/// How the configuration is rendered, apart from the upstream list.
pub struct Layout {
    pub listen: SocketAddr,
    pub state_dir: PathBuf,
    pub worker_processes: String,
    pub access_log: bool,
}

/// Fills the template. `upstreams` are the instances that take traffic.
pub fn render(layout: &Layout, upstreams: &[SocketAddr]) -> String {
    let state_dir = layout.state_dir.display().to_string();
    let servers = if upstreams.is_empty() {
        // nginx needs at least one server; this one refuses connections, so
        // clients get the JSON 503 until an instance is ready.
        "        server 127.0.0.1:9 down;".to_owned()
    } else {
        let health = passive_health(upstreams.len());
        upstreams
            .iter()
            .map(|addr| format!("        server {addr} {health};"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let access_log = if layout.access_log {
        format!("{state_dir}/logs/nginx-access.log coop buffer=64k flush=1s")
    } else {
        "off".to_owned()
    };
    // As root, nginx would switch its workers to `nobody`, who cannot write the
    // state folder; the cluster is a single-host tool, so keep the caller's user.
    let user = if is_root() { "user root;" } else { "" };
    TEMPLATE
        .replace("{{user_directive}}", user)
        .replace("{{worker_processes}}", &layout.worker_processes)
        .replace("{{state_dir}}", &state_dir)
        .replace("{{access_log}}", &access_log)
        .replace("{{listen}}", &layout.listen.to_string())
        .replace("{{upstream_servers}}", &servers)
}

/// nginx's passive health check for each of `count` instances: after
/// `max_fails` failed attempts (a refused or timed-out connection, or a 502,
/// 503 or 504 answer: `proxy_next_upstream` in the template) within
/// `fail_timeout`, the instance gets no requests for `fail_timeout`.
///
/// - One instance: never taken out (`max_fails=0`). There is nowhere else to
///   send its requests, so taking it out turns one slow answer into seconds
///   of nginx's own 503s for everyone. (nginx 1.22 already ignores
///   `max_fails` for a lone server; saying so keeps that true for any version
///   and for anyone who copies the line.)
/// - Several: taken out after three failures within two seconds, not one. A
///   dead instance refuses every connection and reaches three at once (each
///   of those requests is retried on another instance); a busy one that
///   answers one request late or sheds one with a 503 keeps its traffic, so
///   a burst cannot empty the whole upstream.
fn passive_health(count: usize) -> &'static str {
    if count <= 1 {
        "max_fails=0"
    } else {
        "max_fails=3 fail_timeout=2s"
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

pub fn find_binary(configured: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = configured {
        if path.is_file() {
            return Ok(path.to_owned());
        }
        bail!("COOP_NGINX is {}, which is not a file", path.display());
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("nginx"))
                .find(|p| p.is_file())
        })
        .unwrap_or_default();
    on_path
        .or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.is_file()))
        .context(
            "coop cluster needs nginx and could not find it: install Debian's package \
             `nginx-light` (apt-get install nginx-light) or set COOP_NGINX to its path",
        )
}

pub struct Nginx {
    bin: PathBuf,
    layout: Layout,
    child: Child,
}

impl Nginx {
    /// Writes the configuration, checks it with `nginx -t`, and starts nginx.
    pub async fn start(
        bin: PathBuf,
        layout: Layout,
        upstreams: &[SocketAddr],
    ) -> anyhow::Result<Self> {
        for sub in ["logs", "tmp", "cache"] {
            std::fs::create_dir_all(layout.state_dir.join(sub))?;
        }
        write_config(&layout, upstreams)?;
        let check = Command::new(&bin)
            .args(nginx_args(&layout))
            .arg("-t")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await
            .with_context(|| format!("running {} -t", bin.display()))?;
        if !check.status.success() {
            bail!(
                "nginx rejected the configuration {}: {}",
                config_path(&layout).display(),
                String::from_utf8_lossy(&check.stderr).trim()
            );
        }
        let log = std::fs::File::create(layout.state_dir.join("logs/nginx-stderr.log"))?;
        let mut command = Command::new(&bin);
        command
            .args(nginx_args(&layout))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let nginx = Self { bin, layout, child };
        nginx.wait_listening().await?;
        Ok(nginx)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    async fn wait_listening(&self) -> anyhow::Result<()> {
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(self.layout.listen)
                .await
                .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "nginx ({}) did not start listening on {}; see {}",
            self.bin.display(),
            self.layout.listen,
            self.layout.state_dir.join("logs").display()
        )
    }

    /// Points nginx at `upstreams`. Returns the worker processes that still run
    /// the previous configuration: once they have exited, no request can reach
    /// an instance that was removed (see [`wait_retired`]).
    pub fn reload(&self, upstreams: &[SocketAddr]) -> anyhow::Result<Vec<u32>> {
        let master = self.pid().context("nginx has exited")?;
        write_config(&self.layout, upstreams)?;
        let old_workers = children_of(master);
        signal(master, libc::SIGHUP)?;
        Ok(old_workers)
    }

    /// Stops nginx gracefully (SIGQUIT: finish the requests in flight).
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = signal(pid, libc::SIGQUIT);
            if tokio::time::timeout(Duration::from_secs(35), self.child.wait())
                .await
                .is_ok()
            {
                return;
            }
        }
        let _ = self.child.kill().await;
    }

    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

/// Waits until every process in `pids` has exited (old nginx workers finish
/// their requests and close their upstream connections, bounded by
/// `worker_shutdown_timeout`). False if they are still there at `timeout`.
pub async fn wait_retired(pids: &[u32], timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if pids.iter().all(|pid| !process_alive(*pid)) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn nginx_args(layout: &Layout) -> Vec<String> {
    vec![
        "-p".into(),
        layout.state_dir.display().to_string(),
        "-c".into(),
        config_path(layout).display().to_string(),
        // Before the configuration is read, nginx logs to its compiled-in
        // path (/var/log/nginx), which an unprivileged user cannot open.
        "-e".into(),
        layout
            .state_dir
            .join("logs/nginx-error.log")
            .display()
            .to_string(),
    ]
}

fn config_path(layout: &Layout) -> PathBuf {
    layout.state_dir.join("nginx.conf")
}

fn write_config(layout: &Layout, upstreams: &[SocketAddr]) -> anyhow::Result<()> {
    // Written aside and renamed, so nginx never reads half a file.
    let path = config_path(layout);
    let staged = path.with_extension("conf.new");
    std::fs::write(&staged, render(layout, upstreams))?;
    std::fs::rename(&staged, &path)?;
    Ok(())
}

/// The live children of `parent` (nginx's worker processes).
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut children: HashSet<u32> = HashSet::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name: state, ppid, …
        let mut rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r.split_whitespace())
            .into_iter()
            .flatten();
        let state = rest.next();
        let ppid = rest.next().and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) && state != Some("Z") {
            children.insert(pid);
        }
    }
    children.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            listen: "127.0.0.1:8080".parse().unwrap(),
            state_dir: PathBuf::from("/tmp/coop-cluster"),
            worker_processes: "2".into(),
            access_log: false,
        }
    }

    #[test]
    fn every_placeholder_is_filled() {
        let conf = render(&layout(), &["127.0.0.1:9001".parse().unwrap()]);
        assert!(!conf.contains("{{"), "unfilled placeholder in:\n{conf}");
        assert!(conf.contains("server 127.0.0.1:9001 max_fails=0;"));
        assert!(conf.contains("listen 127.0.0.1:8080"));
        assert!(conf.contains("pid /tmp/coop-cluster/nginx.pid;"));
    }

    #[test]
    fn a_lone_instance_is_never_taken_out_and_one_of_several_only_after_three_failures() {
        let one = render(&layout(), &["127.0.0.1:9001".parse().unwrap()]);
        let servers: Vec<&str> = one.lines().filter(|l| l.contains("server 127.")).collect();
        assert_eq!(servers, ["        server 127.0.0.1:9001 max_fails=0;"]);
        let addrs: Vec<SocketAddr> = (9001..9004)
            .map(|port| format!("127.0.0.1:{port}").parse().unwrap())
            .collect();
        let three = render(&layout(), &addrs);
        let servers: Vec<&str> = three
            .lines()
            .filter(|l| l.contains("server 127."))
            .collect();
        assert_eq!(
            servers,
            [
                "        server 127.0.0.1:9001 max_fails=3 fail_timeout=2s;",
                "        server 127.0.0.1:9002 max_fails=3 fail_timeout=2s;",
                "        server 127.0.0.1:9003 max_fails=3 fail_timeout=2s;",
            ]
        );
    }

    #[test]
    fn an_empty_upstream_list_still_renders_a_valid_block() {
        let conf = render(&layout(), &[]);
        assert!(conf.contains("server 127.0.0.1:9 down;"));
    }
}
