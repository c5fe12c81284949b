//! Turning `--input NAME=URL` flags and the `--inputs` JSON manifest into one
//! validated list of inputs, with errors that name the flag, file and field.
//!
//! Manifest schema (also in the README):
//! ```json
//! { "inputs": [ { "name": "train", "url": "s3://bucket/train/" } ] }
//! ```
//! Unknown fields are errors, so a typo is caught instead of ignored. The file is
//! read with a bound on its size (`userfile`), and errors quote what the user
//! wrote shortened (a 100 KB URL does not make a 100 KB error line).

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, Result, bail};
use inputfs_source::InputSpec;
use inputfs_source::error::shorten;
use serde::Deserialize;

use crate::cli::InputArgs;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    inputs: Vec<ManifestInput>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestInput {
    name: String,
    url: String,
}

/// All inputs from flags and manifest, names checked and unique.
pub fn collect(args: &InputArgs) -> Result<Vec<InputSpec>> {
    let mut specs = Vec::new();
    for flag in &args.input {
        let shown = shorten(flag);
        let Some((name, url)) = flag.split_once('=') else {
            bail!("--input {shown:?}: expected NAME=URL");
        };
        specs.push(spec(name, url).with_context(|| format!("--input {shown:?}"))?);
    }
    if let Some(path) = &args.inputs_file {
        specs.extend(read_manifest(path)?);
    }
    if specs.is_empty() {
        bail!("no inputs: give --input NAME=URL or --inputs FILE");
    }
    let mut seen = HashSet::new();
    for s in &specs {
        if !seen.insert(s.name.as_str()) {
            bail!("two inputs are named {:?}", s.name);
        }
    }
    Ok(specs)
}

fn read_manifest(path: &Path) -> Result<Vec<InputSpec>> {
    let text = crate::userfile::read(path, "--inputs")?;
    parse_manifest(&text, path)
}

/// Parse and validate manifest `text` (read from `path`, for messages).
fn parse_manifest(text: &str, path: &Path) -> Result<Vec<InputSpec>> {
    let manifest: Manifest = serde_json::from_str(text)
        .with_context(|| format!("--inputs {}: not a valid manifest", path.display()))?;
    manifest
        .inputs
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            spec(&m.name, &m.url)
                .with_context(|| format!("--inputs {}: inputs[{i}]", path.display()))
        })
        .collect()
}

fn spec(name: &str, url: &str) -> Result<InputSpec> {
    if let Err(why) = inputfs_fuse::check_component(name) {
        bail!("input name {:?} is invalid: {why}", shorten(name));
    }
    if url.is_empty() {
        bail!("input {name}: empty URL");
    }
    Ok(InputSpec {
        name: name.to_string(),
        url: url.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn args(input: &[&str], file: Option<&Path>) -> InputArgs {
        InputArgs {
            input: input.iter().map(|s| s.to_string()).collect(),
            inputs_file: file.map(Path::to_path_buf),
        }
    }

    fn err(a: &InputArgs) -> String {
        format!("{:#}", collect(a).unwrap_err())
    }

    #[test]
    fn flags_and_manifest_combine() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        write!(f, r#"{{"inputs":[{{"name":"b","url":"s3://x/y"}}]}}"#).unwrap();
        let specs = collect(&args(&["a=file:///tmp/a"], Some(f.path()))).unwrap();
        let names: Vec<_> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(specs[1].url, "s3://x/y");
    }

    #[test]
    fn errors_name_the_culprit() {
        assert!(
            err(&args(&["noequals"], None)).contains("--input \"noequals\": expected NAME=URL")
        );
        assert!(err(&args(&["a/b=s3://x/y"], None)).contains("input name \"a/b\" is invalid"));
        assert!(err(&args(&["..=s3://x/y"], None)).contains("invalid"));
        assert!(err(&args(&["=s3://x/y"], None)).contains("empty name"));
        assert!(
            err(&args(&["a=s3://x/y", "a=s3://x/z"], None)).contains("two inputs are named \"a\"")
        );
        assert!(err(&args(&[], None)).contains("no inputs"));
        let missing = Path::new("/nonexistent/manifest.json");
        assert!(
            err(&args(&[], Some(missing)))
                .contains("--inputs /nonexistent/manifest.json: cannot read")
        );
    }

    proptest::proptest! {
        #[test]
        fn manifest_parsing_never_panics(text in ".*") {
            let _ = parse_manifest(&text, Path::new("m.json"));
        }

        #[test]
        fn manifests_of_arbitrary_names_and_urls_never_panic(
            entries in proptest::collection::vec(("\\PC*", "\\PC*"), 0..5)
        ) {
            let json = serde_json::json!({
                "inputs": entries.iter().map(|(n, u)| serde_json::json!({"name": n, "url": u})).collect::<Vec<_>>()
            });
            let _ = parse_manifest(&json.to_string(), Path::new("m.json"));
        }
    }

    #[test]
    fn huge_flags_are_quoted_shortened() {
        let url = format!("http://127.0.0.1:1/{}", "a".repeat(100_000));
        let e = err(&args(&[&format!("{}={url}", "n".repeat(100_000))], None));
        assert!(e.contains("is invalid: longer than 255 bytes"), "{e}");
        assert!(e.len() < 1000, "{} bytes", e.len());
        let e = err(&args(&[&"x".repeat(100_000)], None));
        assert!(e.contains("…(100000 bytes)\": expected NAME=URL"), "{e}");
        assert!(e.len() < 1000, "{} bytes", e.len());
    }

    #[test]
    fn an_endless_manifest_fails_naming_the_limit() {
        let e = err(&args(&[], Some(Path::new("/dev/zero"))));
        assert!(
            e.starts_with("--inputs /dev/zero: larger than") && e.contains("67108864 bytes"),
            "{e}"
        );
    }

    #[test]
    fn manifest_errors_name_file_and_field() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        write!(
            f,
            r#"{{"inputs":[{{"name":"a","url":"s3://x/y","extra":1}}]}}"#
        )
        .unwrap();
        let e = err(&args(&[], Some(f.path())));
        assert!(
            e.contains("not a valid manifest") && e.contains("unknown field `extra`"),
            "{e}"
        );
        let mut f = tempfile::NamedTempFile::new().unwrap();
        write!(
            f,
            r#"{{"inputs":[{{"name":"ok","url":"s3://x/y"}},{{"name":"","url":"s3://x"}}]}}"#
        )
        .unwrap();
        let e = err(&args(&[], Some(f.path())));
        assert!(e.contains("inputs[1]") && e.contains("empty name"), "{e}");
    }
}
