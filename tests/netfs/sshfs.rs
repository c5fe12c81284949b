//! A private sshd on `127.0.0.1:<free port>` (root login by a key we generate),
//! and the `sshfs` command that mounts a directory of it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::procs::{Daemon, log_file, spawn_tied};
use crate::bins::{free_port, require_binary, wait_for_port};

pub(super) struct Sshd {
    _daemon: Daemon,
    port: u16,
    client_key: PathBuf,
    sshfs: PathBuf,
}

impl Sshd {
    /// Keys, config and logs go in `dir`.
    pub(super) fn start(dir: &Path) -> Sshd {
        let sshd = require_binary("sshd");
        let keygen = require_binary("ssh-keygen");
        let sshfs = require_binary("sshfs");
        require_binary("ssh");
        std::fs::create_dir_all(dir).expect("create the sshd dir");
        // sshd refuses to start without its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        for name in ["host_key", "client_key"] {
            let status = Command::new(&keygen)
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "inputfs-test", "-f"])
                .arg(dir.join(name))
                .stdin(Stdio::null())
                .status()
                .expect("run ssh-keygen");
            assert!(status.success(), "ssh-keygen {name}: {status}");
        }
        std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))
            .expect("write authorized_keys");
        let mut last_error = String::new();
        for attempt in 0..5 {
            let port = free_port();
            let d = dir.display();
            let config = format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\n\
                 AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 PidFile {d}/sshd.pid\nSubsystem sftp internal-sftp\nStrictModes no\n"
            );
            let config_path = dir.join("sshd_config");
            std::fs::write(&config_path, config).expect("write sshd_config");
            let log = dir.join(format!("sshd.{attempt}.log"));
            let mut command = Command::new(&sshd);
            command
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log_file(&log))
                .stderr(log_file(&log));
            let child = spawn_tied(command).unwrap_or_else(|e| panic!("cannot start sshd: {e}"));
            let mut daemon = Daemon {
                child,
                log,
                drain_children_first: true,
            };
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(status)) = daemon.child.try_wait() {
                    last_error = format!("sshd exited ({status}): {}", daemon.log());
                    break;
                }
                if wait_for_port(addr, Duration::from_millis(100)) {
                    return Sshd {
                        _daemon: daemon,
                        port,
                        client_key: dir.join("client_key"),
                        sshfs,
                    };
                }
                assert!(
                    Instant::now() < deadline,
                    "sshd did not listen on {addr} in 10 s: {}",
                    daemon.log()
                );
            }
            if !last_error.contains("Address already in use") {
                break;
            }
        }
        panic!("sshd failed to start: {last_error}");
    }

    /// `sshfs root@127.0.0.1:REMOTE POINT -f ...`: one client, in the foreground,
    /// logging in with a copy of the client key at `key`.
    pub(super) fn mount_command(
        &self,
        remote: &Path,
        point: &Path,
        strict: bool,
        key: &Path,
    ) -> Command {
        std::fs::copy(&self.client_key, key).expect("copy the client key"); // keeps 0600
        let mut options = format!(
            "port={},IdentityFile={},IdentitiesOnly=yes,StrictHostKeyChecking=no,\
             UserKnownHostsFile=/dev/null,BatchMode=yes,LogLevel=ERROR",
            self.port,
            key.display()
        );
        if strict {
            options.push_str(",dir_cache=no,attr_timeout=0,entry_timeout=0,negative_timeout=0");
        }
        let mut command = Command::new(&self.sshfs);
        command
            .arg(format!("root@127.0.0.1:{}", remote.display()))
            .arg(point)
            .args(["-f", "-F", "/dev/null", "-o"])
            .arg(options);
        command
    }
}
