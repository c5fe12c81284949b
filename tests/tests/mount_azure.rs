//! End to end against Azure Blob as azurite serves it: `az://` objects, prefixes
//! and globs, the `https://ACCOUNT.blob.core.windows.net/...` URL form (routed to
//! the emulator by object_store's emulator settings), a custom endpoint from the
//! standard `AZURE_STORAGE_ENDPOINT`, a cold read that makes one ranged GET per
//! distinct block and a warm remount that makes none (azurite's debug log is the
//! witness, read after the mount stopped), and one-line mount errors. Every byte
//! read through the FUSE mount is checked against what was uploaded.
#![allow(
    clippy::disallowed_methods,
    reason = "tests make, plant and inspect files by path on purpose"
)]

use inputfs_tests::azurite::ACCOUNT;
use inputfs_tests::mounts::{Mount, is_mounted, run_inputfs};
use inputfs_tests::{AzuriteServer, pattern, sha256_hex};

const CONTAINER: &str = "datasets";
/// The block size of every mount here (`--block-size`).
const BLOCK: u64 = 256 << 10;

fn objects() -> Vec<(String, Vec<u8>)> {
    let mut objects = inputfs_tests::data::training_set(300);
    objects.push(("single/one.bin".into(), pattern(304, 600_000)));
    objects
}

struct Rig {
    server: AzuriteServer,
    tmp: tempfile::TempDir,
    objects: Vec<(String, Vec<u8>)>,
}

fn rig() -> Rig {
    let server = AzuriteServer::start();
    server.create_container(CONTAINER);
    let objects = objects();
    for (k, v) in &objects {
        server.put_blob(CONTAINER, k, v);
    }
    Rig {
        server,
        tmp: tempfile::tempdir().unwrap(),
        objects,
    }
}

impl Rig {
    fn data(&self, key: &str) -> &[u8] {
        &self.objects.iter().find(|(k, _)| k == key).unwrap().1
    }

    fn mount(&self, mnt: &str, inputs: &[String], env: &[(String, String)]) -> Mount {
        let mut args: Vec<String> = inputs.iter().map(|i| format!("--input={i}")).collect();
        args.push(format!("--block-size={BLOCK}"));
        args.push(format!(
            "--cache-dir={}",
            self.tmp.path().join("cache").display()
        ));
        Mount::start(&self.tmp.path().join(mnt), &args, env).expect("mount")
    }

    /// Check the bytes of `rel` in the mount against blob `key`; returns its size.
    fn check(&self, m: &Mount, rel: &str, key: &str) -> u64 {
        let got = std::fs::read(m.path(rel))
            .unwrap_or_else(|e| panic!("read {rel}: {e}\n{}", m.stderr()));
        assert_eq!(sha256_hex(&got), sha256_hex(self.data(key)), "{rel}");
        got.len() as u64
    }
}

/// Every `train/` object, as `(path in the input, key)`.
fn train(r: &Rig) -> Vec<(String, String)> {
    r.objects
        .iter()
        .filter_map(|(k, _)| Some((k.strip_prefix("train/")?.to_string(), k.clone())))
        .collect()
}

#[test]
fn az_object_prefix_and_glob_read_exact_bytes() {
    let r = rig();
    let m = r.mount(
        "mnt",
        &[
            format!("one=az://{CONTAINER}/single/one.bin"),
            format!("pre=az://{CONTAINER}/train/"),
            format!("glob=az://{CONTAINER}/train/*.bin"),
        ],
        &r.server.env(),
    );
    r.check(&m, "one/one.bin", "single/one.bin");
    for (rel, key) in train(&r) {
        r.check(&m, &format!("pre/{rel}"), &key);
    }
    let mut globbed: Vec<_> = std::fs::read_dir(m.path("glob"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    globbed.sort();
    assert_eq!(globbed, ["a.bin", "d.bin"]);
    for name in &globbed {
        r.check(&m, &format!("glob/{name}"), &format!("train/{name}"));
    }
    m.stop();
    // Read once the mount is gone: one ranged GET per distinct block. The
    // globbed files are the prefix's objects again, served from the cache.
    let blocks: u64 = r
        .objects
        .iter()
        .map(|(_, v)| (v.len() as u64).div_ceil(BLOCK))
        .sum();
    assert_eq!(r.server.ranged_gets() as u64, blocks);
}

#[test]
fn blob_core_windows_url_form_and_custom_endpoint_reach_the_server() {
    let r = rig();
    // The account comes from the URL's host; object_store's emulator settings
    // send the requests to azurite instead of ACCOUNT.blob.core.windows.net.
    let url = format!("https://{ACCOUNT}.blob.core.windows.net/{CONTAINER}/train/a.bin");
    let m = r.mount("mnt1", &[format!("a={url}")], &r.server.env());
    r.check(&m, "a/a.bin", "train/a.bin");
    drop(m);
    // A prefix in the same form.
    let url = format!("https://{ACCOUNT}.blob.core.windows.net/{CONTAINER}/train/nested/");
    let m = r.mount("mnt2", &[format!("n={url}")], &r.server.env());
    r.check(&m, "n/b.bin", "train/nested/b.bin");
    drop(m);
    // No emulator mode: the standard AZURE_STORAGE_ENDPOINT (http:// allowed
    // because it was set explicitly).
    let m = r.mount(
        "mnt3",
        &[format!("p=az://{CONTAINER}/train/")],
        &r.server.endpoint_env(),
    );
    for (rel, key) in train(&r) {
        r.check(&m, &format!("p/{rel}"), &key);
    }
}

#[test]
fn warm_remount_reads_no_blob_data_from_azurite() {
    let r = rig();
    let inputs = [format!("pre=az://{CONTAINER}/train/")];
    let read_all = |m: &Mount| {
        train(&r)
            .iter()
            .map(|(rel, key)| r.check(m, &format!("pre/{rel}"), key))
            .sum::<u64>()
    };
    let m = r.mount("mnt1", &inputs, &r.server.env());
    let total = read_all(&m);
    m.stop(); // drains background cache publishes
    // Cold: one ranged GET per block of the prefix's objects.
    let blocks: u64 = train(&r)
        .iter()
        .map(|(_, key)| (r.data(key).len() as u64).div_ceil(BLOCK))
        .sum();
    assert_eq!(r.server.ranged_gets() as u64, blocks);
    r.server.reset_counts();
    let m = r.mount("mnt2", &inputs, &r.server.env());
    assert_eq!(read_all(&m), total);
    m.stop();
    let warm = r.server.requests();
    // Resolution (a LIST) still asks the server; blob data must all come from the cache.
    assert!(
        warm.iter().any(|q| q.method == "GET"),
        "the debug log shows no request at all: {warm:?}"
    );
    let data: Vec<_> = warm
        .iter()
        .filter(|q| q.method == "GET" && q.range.is_some())
        .collect();
    assert!(data.is_empty(), "warm remount read blob data: {data:?}");
}

#[test]
fn missing_blob_bad_key_and_dead_endpoint_fail_in_one_line() {
    let r = rig();
    let mnt = r.tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let case = |input: &str, env: &[(String, String)], culprit: &str| {
        let args = vec![
            "mount".to_string(),
            mnt.display().to_string(),
            "--foreground".into(),
            format!("--input=x={input}"),
            format!("--cache-dir={}", r.tmp.path().join("cache").display()),
        ];
        let out = run_inputfs(&args, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{input} mounted");
        let lines: Vec<_> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(lines[0].contains(culprit), "{culprit:?} not in {stderr}");
        assert!(!is_mounted(&mnt.canonicalize().unwrap()));
    };
    let env = r.server.env();
    let with = |key: &str, value: &str| -> Vec<(String, String)> {
        let mut e: Vec<_> = env.iter().filter(|(k, _)| k != key).cloned().collect();
        e.push((key.to_string(), value.to_string()));
        e
    };
    let missing = format!("az://{CONTAINER}/train/nope.bin");
    case(&missing, &env, &missing);
    let empty = format!("az://{CONTAINER}/nothing-here/");
    case(&empty, &env, &empty);
    let nocontainer = "az://no-such-container/a.bin";
    case(nocontainer, &env, nocontainer);
    let wrong_key = with("AZURE_STORAGE_ACCOUNT_KEY", &pattern_key());
    case(
        &format!("az://{CONTAINER}/train/c.txt"),
        &wrong_key,
        "access denied",
    );
    let dead = with("AZURITE_BLOB_STORAGE_URL", &inputfs_tests::dead_endpoint());
    let url = format!("az://{CONTAINER}/train/c.txt");
    case(&url, &dead, &url);
}

/// A well-formed (base64, 64 bytes) key that is not the account's.
fn pattern_key() -> String {
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="
        .into()
}
