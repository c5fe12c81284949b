//! The https rows: a cold sequential read over TLS, inputfs against `direct`,
//! with nginx serving the big object over https (a leaf certificate from a
//! private CA the harness makes, trusted through `SSL_CERT_FILE` as a user
//! would) behind the same shaping proxy. TLS costs CPU on both sides of the
//! connection, and on 2 cores that shows, so it gets its own pair of rows.
//! rclone and s3fs speak S3, not plain https, so they are `n/a` here.

use anyhow::{Context, Result};
use inputfs_tests::{NginxServer, TestCa};
use serde_json::json;

use super::Bench;
use crate::direct::Direct;
use crate::measure;
use crate::report::{Better, Cell, Row, Target};
use crate::shape::ShapingProxy;
use crate::systems::{self, BIG_KEY};

impl Bench<'_> {
    pub(super) fn https(&mut self) -> Result<()> {
        let mut row = Row::new(
            "https-cold",
            "cold sequential read, https",
            "MiB/s",
            Better::Higher,
            "direct over https: the same ranged GETs and parallelism, no FUSE, no cache",
            Some(Target::RatioAtLeast(0.9)),
        );
        let ca = TestCa::new();
        let root = self.st.fresh_dir("https-root")?;
        std::fs::hard_link(&self.st.local_file, root.join(BIG_KEY))
            .or_else(|_| std::fs::copy(&self.st.local_file, root.join(BIG_KEY)).map(drop))
            .context("the https origin's file")?;
        let nginx = NginxServer::start_tls(&root, &ca);
        let proxy = ShapingProxy::start(nginx.addr(), self.cfg.shaping)?;
        let base = format!("https://127.0.0.1:{}", proxy.addr().port());
        if self.cfg.has_system("direct") {
            let direct = Direct::https(&base, &ca.ca_pem())?;
            nginx.reset_counts();
            let d = direct
                .read(
                    BIG_KEY,
                    self.st.size(),
                    &self.st.big_sha,
                    self.cfg.block_size,
                    self.cfg.direct_in_flight(),
                )
                .context("direct")?;
            row.cells.insert(
                "baseline".into(),
                Cell {
                    value: self.mib_s(d),
                    peak_rss: None,
                    raw: json!({"secs": d.as_secs_f64(), "origin_bytes": nginx.get_bytes(),
                    "origin_gets": nginx.get_requests()}),
                },
            );
        }
        if self.cfg.has_system("inputfs") {
            let local = self.st.fresh_dir("inputfs-https-local")?;
            let mut args = vec![format!("--cache-dir={}", local.display())];
            args.extend(self.cfg.inputfs_args.iter().cloned());
            let env = vec![(
                "SSL_CERT_FILE".to_string(),
                ca.ca_pem().display().to_string(),
            )];
            let m = systems::mount_inputfs_with(
                &self.st.dir("mnt-inputfs-https"),
                &[format!("--input=big={base}/{BIG_KEY}")],
                env,
                &args,
            )
            .context("inputfs")?;
            nginx.reset_counts();
            let d = measure::read_sequential(&m.big(), self.st.size(), &self.st.big_sha)
                .context("inputfs")?;
            row.cells.insert(
                "inputfs".into(),
                Cell {
                    value: self.mib_s(d),
                    peak_rss: m.peak_rss(),
                    raw: json!({"secs": d.as_secs_f64(), "origin_bytes": nginx.get_bytes(),
                    "origin_gets": nginx.get_requests()}),
                },
            );
            m.stop();
        }
        self.add(row);
        Ok(())
    }
}
