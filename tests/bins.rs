//! Finding the server binaries tests need, and loopback ports for them.
//!
//! A missing binary fails the test with the fix (run `scripts/setup`): a test that
//! silently passes because its server was not there would be worse than none.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The path of `name`, from `$PATH` or the sbin directories (where Debian puts
/// `nginx` and `sshd`). Panics with the fix when it is not installed.
pub fn require_binary(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{name}` is not installed, and this test needs it: run scripts/setup (it installs every test dependency)"
    );
}

/// A port on 127.0.0.1 that was free a moment ago (bind to 0, then release).
/// A server started on it may still lose a race: callers retry on "in use".
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Wait until something accepts connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// An address on loopback where nothing listens (for "unreachable" tests).
pub fn dead_endpoint() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// Stop a server this test started: SIGTERM to its PID (nothing else), up to
/// five seconds to exit, then SIGKILL; always reaped.
pub fn stop_child(child: &mut std::process::Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A server's barrier: send `GET target` to `addr` (a request of the test's own,
/// answered after every request before it), check the status line starts with
/// `status`, then wait (at most 10 s) until the server's log at `log` holds
/// `logged`, and return the log. Counts read from it then cover every request
/// answered before the barrier.
pub fn barrier(
    server: &str,
    addr: SocketAddr,
    target: &str,
    status: &str,
    log: &std::path::Path,
    logged: &str,
) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut conn =
        TcpStream::connect(addr).unwrap_or_else(|e| panic!("{server} barrier {addr}: {e}"));
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        conn,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the barrier request");
    let mut response = Vec::new();
    conn.read_to_end(&mut response)
        .expect("read the barrier response");
    assert!(
        response.starts_with(status.as_bytes()),
        "{server} barrier: {}",
        String::from_utf8_lossy(&response)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read(log).unwrap_or_default();
        if String::from_utf8_lossy(&text).contains(logged) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{server} did not log the barrier {target} within 10 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[should_panic(expected = "run scripts/setup")]
    fn missing_binary_fails_with_the_fix() {
        super::require_binary("inputfs-no-such-server-binary");
    }
}
