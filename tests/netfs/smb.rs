//! A private samba `smbd` on `127.0.0.1:<free port>` exporting one guest share,
//! and the `smbnetfs` command that mounts it.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::procs::{Daemon, log_file, spawn_tied};
use crate::bins::{free_port, require_binary, wait_for_port};

/// The share's name.
const SHARE: &str = "share";

const STATE_DIRS: [(&str, &str); 6] = [
    ("lock directory", "lock"),
    ("state directory", "state"),
    ("cache directory", "cache"),
    ("pid directory", "pid"),
    ("private dir", "private"),
    ("ncalrpc dir", "ncalrpc"),
];

pub(super) struct Smbd {
    _daemon: Daemon,
    port: u16,
    /// `HOME` of the smbnetfs processes: `.smb/smbnetfs.conf`, `.smb/smb.conf`.
    home: PathBuf,
    smbnetfs: PathBuf,
}

impl Smbd {
    /// Serve `share_path` as `share`; config, state and logs go in `dir`.
    pub(super) fn start(dir: &Path, share_path: &Path) -> Smbd {
        let smbd = require_binary("smbd");
        let smbnetfs = require_binary("smbnetfs");
        let d = dir.display();
        for (_, sub) in STATE_DIRS {
            std::fs::create_dir_all(dir.join(sub)).expect("create a samba state dir");
        }
        let home = dir.join("home");
        write_client_config(&home);
        let mut last_error = String::new();
        for attempt in 0..5 {
            let port = free_port();
            let mut config = format!(
                "[global]\n\
                 interfaces = 127.0.0.1\nbind interfaces only = yes\nsmb ports = {port}\n\
                 disable netbios = yes\nserver role = standalone server\n\
                 server min protocol = SMB2\nmap to guest = Bad User\n\
                 rpc start on demand helpers = no\nload printers = no\nprinting = bsd\n\
                 printcap name = /dev/null\ndisable spoolss = yes\n\
                 log file = {d}/log.%m\n"
            );
            for (key, sub) in STATE_DIRS {
                config.push_str(&format!("{key} = {d}/{sub}\n"));
            }
            config.push_str(&format!(
                "[{SHARE}]\npath = {}\nread only = no\nguest ok = yes\nforce user = root\n\
                 create mask = 0664\ndirectory mask = 2775\n",
                share_path.display()
            ));
            let config_path = dir.join("smb.conf");
            std::fs::write(&config_path, config).expect("write smb.conf");
            let log = dir.join(format!("smbd.{attempt}.log"));
            let mut command = Command::new(&smbd);
            // smbd stops by SIGTERM-ing its whole process group: give it its own,
            // or it takes the test process down with it.
            command
                .process_group(0)
                .args(["--foreground", "--no-process-group", "--debug-stdout", "-s"])
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log_file(&log))
                .stderr(log_file(&log));
            let child = spawn_tied(command).unwrap_or_else(|e| panic!("cannot start smbd: {e}"));
            let mut daemon = Daemon {
                child,
                log,
                drain_children_first: false,
            };
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(status)) = daemon.child.try_wait() {
                    last_error = format!("smbd exited ({status}): {}", daemon.log());
                    break;
                }
                if wait_for_port(addr, Duration::from_millis(100)) {
                    return Smbd {
                        _daemon: daemon,
                        port,
                        home,
                        smbnetfs,
                    };
                }
                assert!(
                    Instant::now() < deadline,
                    "smbd did not listen on {addr} in 20 s: {}",
                    daemon.log()
                );
            }
            if !last_error.contains("in use") {
                break;
            }
        }
        panic!("smbd failed to start: {last_error}");
    }

    /// `smbnetfs POINT -f`: one client, in the foreground, configured by `$HOME/.smb`.
    pub(super) fn mount_command(&self, point: &Path) -> Command {
        let mut command = Command::new(&self.smbnetfs);
        command
            .arg(point)
            .arg("-f")
            .env("HOME", &self.home)
            .env_remove("USER")
            .env_remove("LOGNAME");
        command
    }

    /// Where the share appears inside a smbnetfs mount: libsmbclient ignores
    /// `smb ports`, so the port is part of the host name.
    pub(super) fn share_in(&self, point: &Path) -> PathBuf {
        point.join(format!("127.0.0.1:{}", self.port)).join(SHARE)
    }
}

/// smbnetfs reads `~/.smb/smbnetfs.conf` (ignoring `auth` and `host` unless it is
/// mode 0600); libsmbclient reads `~/.smb/smb.conf` instead of /etc/samba's.
fn write_client_config(home: &Path) {
    let dot_smb = home.join(".smb");
    std::fs::create_dir_all(&dot_smb).expect("create ~/.smb");
    let files = [
        (
            "smbnetfs.conf",
            "smb_query_browsers \"false\"\nuse_libsecret \"false\"\nauth \"guest\" \"\"\n",
        ),
        (
            "smb.conf",
            "[global]\nclient min protocol = SMB2\ndisable netbios = yes\n\
             name resolve order = host\ninterfaces = 127.0.0.1\nbind interfaces only = yes\n",
        ),
    ];
    for (name, text) in files {
        let path = dot_smb.join(name);
        std::fs::write(&path, text).expect("write smbnetfs config");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod 600 smbnetfs config");
    }
}
