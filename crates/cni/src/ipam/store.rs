//! The IPAM state of one network on disk: `<dataDir>/<network>/state.json`, guarded by an
//! exclusive `flock` on `<dataDir>/<network>/lock` for the whole read-modify-write.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::pool::State;
use crate::error::{Code, Error, Result};
use crate::fsutil;

/// An open, locked store. The lock is released when this is dropped (or the process dies: the
/// kernel drops flocks of dead processes, so a killed plugin never wedges the store).
pub struct Store {
    _lock: Flock<File>,
    state_path: PathBuf,
    pub state: State,
}

impl Store {
    pub fn open(data_dir: &Path, network: &str) -> Result<Store> {
        let dir = data_dir.join(network);
        fsutil::ensure_dir(&dir)?;
        let lock_path = dir.join("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("cannot open {}", lock_path.display()), e))?;
        let lock = Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::io(format!("cannot lock {}", lock_path.display()), e))?;
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
        })
    }

    pub fn commit(&self) -> Result<()> {
        let data = serde_json::to_vec_pretty(&self.state)
            .map_err(|e| Error::with_details(Code::Internal, "cannot encode IPAM state", e))?;
        fsutil::write_atomic(&self.state_path, &data)
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
            let mut s = Store::open(dir.path(), "net").unwrap();
            s.state.allocate(&pools, "c", "eth0").unwrap();
            s.commit().unwrap();
        }
        let s = Store::open(dir.path(), "net").unwrap();
        assert_eq!(s.state.held_by("c", "eth0").len(), 1);
        drop(s);
        std::fs::write(dir.path().join("net/state.json"), b"{torn").unwrap();
        assert_eq!(Store::open(dir.path(), "net").err().unwrap().code, Code::Decode);
    }
}
