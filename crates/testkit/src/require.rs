//! Tests that cannot run here skip with a note, unless CI asked for them: with the switch of
//! what they need set to `1`, a skip is a failure instead, so a suite cannot pass by skipping.
//!
//! | switch | what the test needs |
//! |---|---|
//! | `CARACAL_REQUIRE_ROOT=1` | root, and the tools a root test drives (iproute2, iptables, the lab's daemons, Debian's CNI plugins) |
//! | `CARACAL_REQUIRE_SHARED=1` | the shared conformance cases (`../shared/conformance`, or `CARACAL_CONFORMANCE_DIR`) |
//! | `CARACAL_REQUIRE_KUBE=1` | a built kube-apiserver and etcd (`caracal::testbed::kubetest`) |
//!
//! `scripts/test.sh` sets all three.

use std::path::PathBuf;

/// What a test needs that this machine may not have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Root,
    Shared,
    Kube,
}

impl Need {
    /// The environment variable that turns the skip into a failure.
    pub fn switch(self) -> &'static str {
        match self {
            Need::Root => "CARACAL_REQUIRE_ROOT",
            Need::Shared => "CARACAL_REQUIRE_SHARED",
            Need::Kube => "CARACAL_REQUIRE_KUBE",
        }
    }

    /// Is the switch set (to `1`)?
    pub fn required(self) -> bool {
        is_on(std::env::var(self.switch()).ok().as_deref())
    }
}

fn is_on(value: Option<&str>) -> bool {
    value == Some("1")
}

/// The test cannot run here because of `need` (`why` says what is missing): fails the test when
/// the switch is set, otherwise prints `skipped: <why>` and lets the caller return.
#[track_caller]
pub fn unavailable(need: Need, why: &str) {
    match outcome(need, need.required(), why) {
        Ok(note) => eprintln!("{note}"),
        Err(failure) => panic!("{failure}"),
    }
}

/// The note of a skip, or the failure when the skip is not allowed.
fn outcome(need: Need, required: bool, why: &str) -> Result<String, String> {
    if required {
        Err(format!("{why}, and {}=1: this test must run here", need.switch()))
    } else {
        Ok(format!("skipped: {why}"))
    }
}

/// Is this process root (effective UID 0)?
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2))
                .map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// `true` when running as root; otherwise [`unavailable`] (the caller returns).
#[track_caller]
pub fn root() -> bool {
    let root = is_root();
    if !root {
        unavailable(Need::Root, "needs root");
    }
    root
}

/// The shared conformance cases: `CARACAL_CONFORMANCE_DIR`, else `shared/conformance` next to
/// the repository; when neither is there, [`unavailable`] and `None`.
#[track_caller]
pub fn shared_conformance() -> Option<PathBuf> {
    let dir = match std::env::var_os("CARACAL_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        // The repository sits next to `shared/` in the project's layout.
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance"),
    };
    if dir.is_dir() {
        return Some(dir);
    }
    unavailable(
        Need::Shared,
        &format!(
            "no shared conformance cases at {} (set CARACAL_CONFORMANCE_DIR)",
            dir.display()
        ),
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_1_turns_a_skip_into_a_failure() {
        assert!(is_on(Some("1")));
        for v in [None, Some(""), Some("0"), Some("yes")] {
            assert!(!is_on(v), "{v:?}");
        }
        assert_eq!(Need::Root.switch(), "CARACAL_REQUIRE_ROOT");
        assert_eq!(Need::Shared.switch(), "CARACAL_REQUIRE_SHARED");
    }

    #[test]
    fn a_required_skip_is_a_failure_naming_the_switch() {
        assert_eq!(
            outcome(Need::Root, false, "needs root"),
            Ok("skipped: needs root".to_string())
        );
        let failure = outcome(Need::Shared, true, "no cases").unwrap_err();
        assert!(
            failure.contains("no cases") && failure.contains("CARACAL_REQUIRE_SHARED=1"),
            "{failure}"
        );
    }
}
