//! The mounted directory tree, built once at mount from the resolved inputs.
//!
//! Inputs are pinned for the life of the mount, so the tree is immutable: inode
//! numbers are indexes into a vector, lookups are a `BTreeMap` per directory, and
//! no lock is needed to answer `lookup`, `getattr` or `readdir`.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::sync::Arc;
use std::time::SystemTime;

use inputfs_core::engine::Object;

use crate::error::TreeError;

/// Inode number of the mount's root directory.
pub const ROOT_INO: u64 = 1;

/// One file to place in the tree: its path relative to the input's directory.
pub struct TreeFile {
    pub path: String,
    pub object: Arc<Object>,
}

/// What a node is.
pub enum NodeKind {
    Dir { children: BTreeMap<OsString, u64> },
    File { object: Arc<Object> },
}

/// One inode.
pub struct Node {
    pub parent: u64,
    pub name: OsString,
    pub kind: NodeKind,
    pub mtime: SystemTime,
}

/// The whole tree; inode `n` is `nodes[n - 1]`.
pub struct Tree {
    nodes: Vec<Node>,
}

impl Tree {
    /// Lay out every input under its name. Fails on names that cannot be a single
    /// path component and on any two entries that would land on the same path.
    pub fn build(inputs: Vec<(String, Vec<TreeFile>)>) -> Result<Tree, TreeError> {
        let now = SystemTime::now();
        let mut tree = Tree {
            nodes: vec![Node {
                parent: ROOT_INO,
                name: OsString::new(),
                kind: NodeKind::Dir {
                    children: BTreeMap::new(),
                },
                mtime: now,
            }],
        };
        for (name, files) in inputs {
            check_component(&name).map_err(|why| TreeError::BadInputName {
                name: name.clone(),
                why,
            })?;
            if tree.child(ROOT_INO, OsStr::new(&name)).is_some() {
                return Err(TreeError::DuplicateInput { name });
            }
            let input_dir = tree.add(ROOT_INO, &name, dir(), now);
            for file in files {
                tree.add_file(&name, input_dir, file)?;
            }
        }
        Ok(tree)
    }

    fn add_file(&mut self, input: &str, input_dir: u64, file: TreeFile) -> Result<(), TreeError> {
        let bad = |why| TreeError::BadPath {
            input: input.to_string(),
            path: file.path.clone(),
            why,
        };
        let parts: Vec<&str> = file.path.split('/').collect();
        for part in &parts {
            check_component(part).map_err(bad)?;
        }
        let collision = || TreeError::Collision {
            input: input.to_string(),
            path: file.path.clone(),
        };
        let mtime = file.object.id.mtime;
        let (last, dirs) = parts.split_last().ok_or_else(|| bad("empty"))?;
        let mut at = input_dir;
        for part in dirs {
            at = match self.child(at, OsStr::new(part)) {
                Some(ino) if self.is_dir(ino) => ino,
                Some(_) => return Err(collision()),
                None => self.add(at, part, dir(), mtime),
            };
        }
        if self.child(at, OsStr::new(last)).is_some() {
            return Err(collision());
        }
        self.add(
            at,
            last,
            NodeKind::File {
                object: file.object,
            },
            mtime,
        );
        Ok(())
    }

    fn add(&mut self, parent: u64, name: &str, kind: NodeKind, mtime: SystemTime) -> u64 {
        self.nodes.push(Node {
            parent,
            name: name.into(),
            kind,
            mtime,
        });
        let ino = self.nodes.len() as u64;
        if let Some(NodeKind::Dir { children }) = self.get_mut(parent).map(|n| &mut n.kind) {
            children.insert(name.into(), ino);
        }
        ino
    }

    fn get_mut(&mut self, ino: u64) -> Option<&mut Node> {
        self.nodes
            .get_mut(usize::try_from(ino).ok()?.checked_sub(1)?)
    }

    /// The node of an inode number.
    pub fn get(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(usize::try_from(ino).ok()?.checked_sub(1)?)
    }

    /// Look a name up in a directory.
    pub fn child(&self, parent: u64, name: &OsStr) -> Option<u64> {
        match &self.get(parent)?.kind {
            NodeKind::Dir { children } => children.get(name).copied(),
            NodeKind::File { .. } => None,
        }
    }

    fn is_dir(&self, ino: u64) -> bool {
        matches!(self.get(ino).map(|n| &n.kind), Some(NodeKind::Dir { .. }))
    }

    /// Number of inodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the tree is only its root.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() <= 1
    }

    /// Total bytes of all files.
    pub fn total_bytes(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| match &n.kind {
                NodeKind::File { object } => object.id.size,
                NodeKind::Dir { .. } => 0,
            })
            // Sizes come from origins and lock files: saturate, never overflow.
            .fold(0, u64::saturating_add)
    }
}

fn dir() -> NodeKind {
    NodeKind::Dir {
        children: BTreeMap::new(),
    }
}

/// A name must be usable as exactly one path component.
pub fn check_component(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty name");
    }
    if name == "." || name == ".." {
        return Err("'.' and '..' are not names");
    }
    if name.contains('/') {
        return Err("contains '/'");
    }
    if name.contains('\0') {
        return Err("contains NUL");
    }
    if name.len() > 255 {
        return Err("longer than 255 bytes");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use inputfs_core::testing::MemorySource;
    use inputfs_core::{Engine, EngineConfig};

    fn files(paths: &[&str]) -> Vec<TreeFile> {
        let src = Arc::new(MemorySource::new());
        let engine = Engine::new(src.clone(), vec![], EngineConfig::default()).unwrap();
        paths
            .iter()
            .map(|p| TreeFile {
                path: p.to_string(),
                object: engine.object(src.insert(p, vec![0u8; p.len()])),
            })
            .collect()
    }

    #[test]
    fn builds_nested_tree() {
        let t = Tree::build(vec![
            ("a".into(), files(&["x.bin", "d/y.bin", "d/e/z.bin"])),
            ("b".into(), files(&["x.bin"])),
        ])
        .unwrap();
        let a = t.child(ROOT_INO, OsStr::new("a")).unwrap();
        let d = t.child(a, OsStr::new("d")).unwrap();
        let e = t.child(d, OsStr::new("e")).unwrap();
        assert!(t.child(e, OsStr::new("z.bin")).is_some());
        assert!(t.child(ROOT_INO, OsStr::new("b")).is_some());
        assert_eq!(t.get(e).unwrap().parent, d);
        assert_eq!(t.total_bytes(), 5 + 7 + 9 + 5);
    }

    #[test]
    fn total_bytes_saturates_instead_of_overflowing() {
        // Sizes as large as a lock file or an origin may claim.
        let engine = Engine::new(
            Arc::new(MemorySource::new()),
            vec![],
            EngineConfig::default(),
        )
        .unwrap();
        let huge = |path: &str| {
            let id = inputfs_core::ObjectId {
                kind: inputfs_core::SourceKind::Http,
                url: format!("http://h/{path}"),
                version: inputfs_core::Version::default(),
                size: i64::MAX as u64,
                mtime: std::time::SystemTime::UNIX_EPOCH,
            };
            TreeFile {
                path: path.into(),
                object: engine.object(id),
            }
        };
        let t = Tree::build(vec![("a".into(), vec![huge("x"), huge("y"), huge("z")])]).unwrap();
        assert_eq!(t.total_bytes(), u64::MAX);
    }

    #[test]
    fn rejects_collisions_and_bad_names() {
        let e = Tree::build(vec![("a".into(), files(&["x", "x/y"]))])
            .err()
            .unwrap();
        assert_eq!(e.to_string(), "input a: two files would appear as \"x/y\"");
        let e = Tree::build(vec![("a".into(), files(&["x/y", "x"]))])
            .err()
            .unwrap();
        assert!(matches!(e, TreeError::Collision { .. }));
        let e = Tree::build(vec![
            ("a".into(), files(&["x"])),
            ("a".into(), files(&["y"])),
        ])
        .err()
        .unwrap();
        assert!(matches!(e, TreeError::DuplicateInput { .. }));
        for bad in ["", "..", "a/b", "a\0b"] {
            let e = Tree::build(vec![(bad.into(), files(&["x"]))])
                .err()
                .unwrap();
            assert!(matches!(e, TreeError::BadInputName { .. }), "{bad:?}");
        }
        for bad in ["a//b", "../x", "/abs", "x/", "a/./b"] {
            let e = Tree::build(vec![("a".into(), files(&[bad]))])
                .err()
                .unwrap();
            assert!(matches!(e, TreeError::BadPath { .. }), "{bad:?}");
        }
    }

    #[test]
    fn unicode_names_work() {
        let t = Tree::build(vec![("données".into(), files(&["日本/ファイル.txt"]))]).unwrap();
        let d = t.child(ROOT_INO, OsStr::new("données")).unwrap();
        let j = t.child(d, OsStr::new("日本")).unwrap();
        assert!(t.child(j, OsStr::new("ファイル.txt")).is_some());
    }
}
