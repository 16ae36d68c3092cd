//! Errors, each carrying the CNI error code (SPEC.md "Error" section) that the runtime sees.

use std::fmt;

/// Well-known CNI error codes (0-99 are reserved by the spec; 999 is libcni's "internal").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    IncompatibleVersion = 1,
    UnsupportedField = 2,
    UnknownContainer = 3,
    InvalidEnv = 4,
    Io = 5,
    Decode = 6,
    InvalidConfig = 7,
    TryAgainLater = 11,
    NotAvailable = 50,
    /// Anything without a well-known code: netlink failures, CHECK mismatches.
    Internal = 999,
}

impl Code {
    pub fn as_u32(self) -> u32 {
        self as u32
    }
}

/// An error as the plugin reports it: a code, a message naming the problem, optional details.
#[derive(Debug, thiserror::Error)]
pub struct Error {
    pub code: Code,
    pub msg: String,
    pub details: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.details.is_empty() {
            write!(f, "{} (code {})", self.msg, self.code.as_u32())
        } else {
            write!(f, "{}: {} (code {})", self.msg, self.details, self.code.as_u32())
        }
    }
}

impl Error {
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        Error {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(code: Code, msg: impl Into<String>, details: impl fmt::Display) -> Self {
        Error {
            code,
            msg: msg.into(),
            details: details.to_string(),
        }
    }

    pub fn io(what: impl Into<String>, err: impl fmt::Display) -> Self {
        Error::with_details(Code::Io, what, err)
    }

    pub fn internal(msg: impl Into<String>) -> Self {
        Error::new(Code::Internal, msg)
    }

    pub fn config(msg: impl Into<String>) -> Self {
        Error::new(Code::InvalidConfig, msg)
    }

    /// The JSON error object printed on stdout (SPEC.md "Error").
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        let mut v = serde_json::json!({
            "cniVersion": cni_version,
            "code": self.code.as_u32(),
            "msg": self.msg,
        });
        if !self.details.is_empty() {
            v["details"] = serde_json::Value::String(self.details.clone());
        }
        v
    }
}
