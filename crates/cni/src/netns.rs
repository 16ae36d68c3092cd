//! Entering a network namespace on the current thread, and coming back.

use std::fs::File;
use std::path::Path;

use nix::sched::{CloneFlags, setns};

use crate::error::{Code, Error, Result};

/// Opens a namespace path; a missing one is "container unknown" (code 3).
pub fn open(path: &str) -> Result<File> {
    File::open(Path::new(path)).map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            Code::UnknownContainer
        } else {
            Code::Io
        };
        Error::with_details(code, format!("cannot open network namespace {path}"), e)
    })
}

/// Runs `f` with the calling thread inside `target`, then switches back. `setns` moves only this
/// thread, which is why the plugin keeps all its work on one thread.
pub fn run_in<T>(target: &File, f: impl FnOnce() -> T) -> Result<T> {
    let home = File::open("/proc/thread-self/ns/net")
        .map_err(|e| Error::io("cannot open own network namespace", e))?;
    setns(target, CloneFlags::CLONE_NEWNET).map_err(|e| Error::io("cannot enter network namespace", e))?;
    let out = f();
    if let Err(e) = setns(&home, CloneFlags::CLONE_NEWNET) {
        // Carrying on in the pod's namespace would configure the wrong host: stop here.
        eprintln!("caracal-cni: cannot return to the host network namespace: {e}");
        std::process::exit(Code::Io as i32);
    }
    Ok(out)
}
