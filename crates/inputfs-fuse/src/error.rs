//! The crate's one error type: problems turning inputs into a tree. Each message
//! is one line naming the input and path at fault.

/// Why the inputs cannot be laid out as a directory tree.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("input name {name:?} is invalid: {why}")]
    BadInputName { name: String, why: &'static str },
    #[error("two inputs are named {name:?}")]
    DuplicateInput { name: String },
    #[error("input {input}: path {path:?} is invalid: {why}")]
    BadPath {
        input: String,
        path: String,
        why: &'static str,
    },
    #[error("input {input}: two files would appear as {path:?}")]
    Collision { input: String, path: String },
}
