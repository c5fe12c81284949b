//! [`TestCa`]: a private certificate authority and a leaf certificate for
//! `127.0.0.1`, made with `openssl` (Debian `openssl`, installed by
//! `scripts/setup`), so `https://` origins can be tested on loopback.
//!
//! rustls rejects a bare self-signed server certificate, and it checks names by
//! SAN only: the leaf is signed by a separate CA certificate (`CA:TRUE`) and
//! carries `subjectAltName = IP:127.0.0.1`. A client trusts it by trusting
//! [`TestCa::ca_pem`] (for inputfs: `SSL_CERT_FILE`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::bins::require_binary;

/// A CA and a server certificate it signed, in a temp directory.
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> TestCa {
        let openssl = require_binary("openssl");
        let dir = tempfile::tempdir().expect("temp dir for certificates");
        let d = dir.path();
        let run = |args: &[&str]| {
            let out = Command::new(&openssl)
                .args(args)
                .current_dir(d)
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        // A unique CA name: two test CAs must not look like issuer and impostor.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let ca_subject = format!("/CN=inputfs test CA {} {nanos}", std::process::id());
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509", "-days", "3", "-subj", &ca_subject];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        run(&ca);
        let mut csr = vec!["req", "-subj", "/CN=127.0.0.1"];
        csr.extend(ec);
        csr.extend(["-keyout", "leaf.key", "-out", "leaf.csr"]);
        run(&csr);
        std::fs::write(
            d.join("leaf.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
            "-out",
            "leaf.pem",
        ]);
        TestCa { dir }
    }

    /// The CA certificate (PEM): what a client must trust.
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server certificate (PEM) for IP 127.0.0.1.
    pub fn leaf_pem(&self) -> PathBuf {
        self.dir.path().join("leaf.pem")
    }

    /// The server's private key (PEM).
    pub fn leaf_key(&self) -> PathBuf {
        self.dir.path().join("leaf.key")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}
