//! The IPAM state of one network on disk: `<dataDir>/<network>/state.json`, guarded by an
//! exclusive `flock` on `<dataDir>/<network>/lock` for the whole read-modify-write.
//!
//! Writes go through a temporary file and a rename, so a plugin killed at any point leaves the
//! old state or the new, never a torn one. fsync is optional (`ipam.fsync`): without it a power
//! cut can lose the last writes, and that is harmless here. No container survives a reboot, so
//! a lost allocation belongs to a pod that is gone, and a lost release is a leak that the
//! runtime's GC returns. ext4 (auto_da_alloc) also flushes a replace-by-rename's data before the
//! rename commits. fsync costs milliseconds per ADD, more than the rest of the plugin.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::pool::State;
use crate::error::{Code, Error, Result};
use crate::fsutil::{self, Durability};

/// An open, locked store. The lock is released when this is dropped (or the process dies: the
/// kernel drops flocks of dead processes, so a killed plugin never wedges the store).
pub struct Store {
    _lock: Flock<File>,
    state_path: PathBuf,
    pub state: State,
    durability: Durability,
}

impl Store {
    /// Opens and locks the store, waiting at most `lock_timeout` for another invocation.
    pub fn open(
        data_dir: &Path,
        network: &str,
        durability: Durability,
        lock_timeout: Duration,
    ) -> Result<Store> {
        let dir = data_dir.join(network);
        fsutil::ensure_dir(&dir)?;
        let lock_path = dir.join("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("cannot open {}", lock_path.display()), e))?;
        let lock = lock(f, &lock_path, lock_timeout)?;
        let state_path = dir.join("state.json");
        let state = match std::fs::read(&state_path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                // Never overwrite a store we cannot read: that would hand out addresses twice.
                Error::with_details(
                    Code::Decode,
                    format!("IPAM store {} is unreadable", state_path.display()),
                    e,
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(Error::io(format!("cannot read {}", state_path.display()), e)),
        };
        Ok(Store {
            _lock: lock,
            state_path,
            state,
            durability,
        })
    }

    /// Commits the state (atomically; durably if so configured).
    pub fn commit(&self) -> Result<()> {
        let data = serde_json::to_vec_pretty(&self.state)
            .map_err(|e| Error::with_details(Code::Internal, "cannot encode IPAM state", e))?;
        fsutil::write_atomic(&self.state_path, &data, self.durability)
    }
}

/// Locks without blocking forever: a hung holder turns into "try again later" (code 11) for
/// the runtime, which retries, instead of a plugin stuck for good.
fn lock(mut f: File, path: &Path, timeout: Duration) -> Result<Flock<File>> {
    let deadline = Instant::now() + timeout;
    loop {
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(l) => return Ok(l),
            Err((back, Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                f = back;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(Error::new(
                    Code::TryAgainLater,
                    format!(
                        "IPAM store {} is locked by another invocation for more than {timeout:?}",
                        path.display()
                    ),
                ));
            }
            Err((_, e)) => return Err(Error::io(format!("cannot lock {}", path.display()), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::pool::{Range, RangeSet};

    #[test]
    fn state_survives_reopen_and_a_corrupt_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pools = vec![
            RangeSet::new(vec![
                Range::new("10.9.0.0/24".parse().unwrap(), None, None).unwrap(),
            ])
            .unwrap(),
        ];
        {
            let mut s = Store::open(dir.path(), "net", Durability::Durable, Duration::from_secs(1)).unwrap();
            s.state.allocate(&pools, "c", "eth0").unwrap();
            s.commit().unwrap();
        }
        let s = Store::open(dir.path(), "net", Durability::Durable, Duration::from_secs(1)).unwrap();
        assert_eq!(s.state.held_by("c", "eth0").len(), 1);
        drop(s);
        std::fs::write(dir.path().join("net/state.json"), b"{torn").unwrap();
        assert_eq!(
            Store::open(dir.path(), "net", Durability::Durable, Duration::from_secs(1))
                .err()
                .unwrap()
                .code,
            Code::Decode
        );
    }

    #[test]
    fn a_held_lock_turns_into_try_again_later() {
        let dir = tempfile::tempdir().unwrap();
        let open = |ms| Store::open(dir.path(), "net", Durability::Atomic, Duration::from_millis(ms));
        let held = open(1000).unwrap();
        assert_eq!(open(50).err().unwrap().code, Code::TryAgainLater);
        drop(held);
        assert!(open(50).is_ok());
    }
}
