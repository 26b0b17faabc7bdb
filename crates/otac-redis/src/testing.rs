//! Test support: a Redis server for tests, from `OTAC_TEST_REDIS_URL` or a private `redis-server` of the test's
//! own. Not part of the API (hidden from the docs, no stability promise); used by this crate's tests, the workspace's
//! end-to-end tests and the benchmarks.
//!
//! Without a server to use, a test is skipped with a `skipped: …` line on stderr, except under `CI=true`, where
//! that is a failure.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The variable naming a Redis server the tests may use (`.ci/redis.sh` sets it).
pub const URL_VAR: &str = "OTAC_TEST_REDIS_URL";

/// How long a private server may take to answer `PING` after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether this is a CI run (`CI=true`), where a test that cannot reach Redis fails instead of skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Under CI, panics with `why`; otherwise prints `skipped: {why}` on stderr.
pub fn skip(why: &str) {
    assert!(
        !in_ci(),
        "{why}: CI=true, so this is a failure (install redis-server, or source .ci/redis.sh first)"
    );
    eprintln!("skipped: {why}");
}

/// A Redis server for a test: the one at `OTAC_TEST_REDIS_URL`, or a private one that stops when this is dropped.
#[derive(Debug)]
pub enum TestRedis {
    /// The server at `OTAC_TEST_REDIS_URL`, shared with other tests (use distinct keys or prefixes).
    External(String),
    /// A private `redis-server` started for this test.
    Private(PrivateRedis),
}

impl TestRedis {
    /// The server to test against: `OTAC_TEST_REDIS_URL` when set, otherwise a private `redis-server` on a free
    /// loopback port. `None` (after [`skip`], which panics under CI) when neither is available.
    pub fn get() -> Option<Self> {
        match std::env::var(URL_VAR) {
            Ok(url) if !url.is_empty() => Some(Self::External(url)),
            _ => PrivateRedis::start().map(Self::Private),
        }
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        match self {
            Self::External(url) => url.clone(),
            Self::Private(server) => server.url(),
        }
    }
}

/// A `redis-server` of the test's own on `127.0.0.1` (no persistence), killed when dropped.
#[derive(Debug)]
pub struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts one on a free loopback port. `None` (after [`skip`], which panics under CI) when `redis-server`
    /// cannot be run; panics when it runs but does not come up.
    pub fn start() -> Option<Self> {
        // The free port is found by binding port 0 and letting it go, so another process may take it before the
        // server binds it: then try another.
        let mut last_failure = String::new();
        for _ in 0..5 {
            let mut server = Self {
                port: free_port(),
                child: None,
            };
            match server.spawn() {
                Ok(()) => return Some(server),
                Err(Failure::NotInstalled(why)) => {
                    skip(&why);
                    return None;
                }
                Err(Failure::DidNotStart(why)) => last_failure = why,
            }
        }
        panic!("redis-server did not start: {last_failure}");
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:{port}/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Whether the server process is running (it may be stopped by a signal).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (`SIGKILL`, no shutdown, nothing saved) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A stopped process is resumed first, so that it dies at once on every system.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (after [`kill`](Self::kill)), empty, and waits until it answers.
    /// Panics if it does not come up.
    pub fn restart(&mut self) {
        self.kill();
        // The old socket may linger for a moment; retry a few times on the same port.
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(failure) if Instant::now() >= deadline => {
                    panic!(
                        "redis-server did not restart on port {}: {failure:?}",
                        self.port
                    )
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Sends a signal to the server (`STOP`, `CONT`, ...).
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("the server is running").id();
        let status = Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {pid}");
    }

    fn spawn(&mut self) -> Result<(), Failure> {
        let port = self.port.to_string();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| Failure::NotInstalled(format!("cannot run redis-server: {err}")))?;
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // Ours exited (port taken, bad option): no use waiting.
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(Failure::DidNotStart(format!(
                    "redis-server on port {port} exited with {status}"
                )));
            }
            if ping(addr) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(Failure::DidNotStart(format!(
                    "redis-server on port {port} did not answer PING within {START_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Debug)]
enum Failure {
    NotInstalled(String),
    DidNotStart(String),
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Whether a Redis server answers `PING` at `addr`.
fn ping(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}
