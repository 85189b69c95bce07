//! `needle serve --from FILE`: founds a new one-voter cluster whose state is a `.needle` file's.
//!
//! The file is read with `Database::open_read_only` (a running node's file, or one with a log,
//! reads as it stands) and encoded as a snapshot whose tag is 0. That snapshot becomes the new
//! node's `node.needle` before Raft starts: a founder's log begins at the bootstrap point
//! (index 1) and a database checkpoint below it counts as "applied up to the bootstrap point",
//! so the restored contents are the state at index 1, and this node's Raft snapshot at that
//! point. A node that joins later is caught up by that snapshot, never by replaying entries onto
//! an empty database, so every node ends with the file's contents.
//!
//! Only a single founder may restore: founders that each took their state from their own
//! `--from` (or none) could silently disagree, and Raft would never notice. The file's Raft
//! index and term, and its idempotency keys, belong to the old cluster and are not carried.

use std::io::Write;
use std::path::{Path, PathBuf};

use needle_core::Database;

use crate::cli::ServeArgs;
use crate::error::{CliError, Result};

/// A checked `.needle` file, ready to become a new node's database.
pub struct Restore {
    from: PathBuf,
    bytes: Vec<u8>,
    /// The state checksum of the file's contents: the new cluster's at index 1.
    pub checksum: u64,
    pub collections: usize,
}

/// Checks everything before anything changes: the flags, the data directory (empty of any node),
/// and the file (it must open and encode whole).
pub fn check(args: &ServeArgs, from: &Path) -> Result<Restore> {
    if args.join {
        return Err(CliError::Usage(
            "--from founds a new cluster; --join joins a running one: give one of them".into(),
        ));
    }
    if !args.peers.is_empty() {
        return Err(CliError::Usage(
            "--from founds a one-voter cluster: drop --peers, then start the other nodes with --join and add them (POST /v1/cluster/nodes), so that they take the restored state from this node".into(),
        ));
    }
    for found in [args.data.join("node.needle"), args.data.join("raft")] {
        if found.exists() {
            return Err(CliError::DataDirInUse {
                from: from.to_path_buf(),
                data: args.data.clone(),
                found,
            });
        }
    }
    if !from.exists() {
        return Err(CliError::NoSuchDatabase(from.to_path_buf()));
    }
    let db = Database::open_read_only(from)?;
    let mut bytes = Vec::new();
    db.write_snapshot(&mut bytes, 0)?;
    Ok(Restore {
        from: from.to_path_buf(),
        bytes,
        checksum: db.state_checksum(),
        collections: db.list_collections().len(),
    })
}

impl Restore {
    /// Writes the file's contents as `data/node.needle`: whole under a temporary name, fsynced,
    /// then renamed (a crash leaves no half database under the node's name) and the directory
    /// fsynced.
    pub fn install(&self, data: &Path) -> Result<()> {
        let target = data.join("node.needle");
        let mut tmp = tempfile::NamedTempFile::new_in(data).map_err(|e| {
            CliError::io(
                format!("creating a temporary file in {}", data.display()),
                e,
            )
        })?;
        tmp.write_all(&self.bytes)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| {
                CliError::io(
                    format!("writing {} from {}", target.display(), self.from.display()),
                    e,
                )
            })?;
        tmp.persist_noclobber(&target)
            .map_err(|e| CliError::io(format!("naming {}", target.display()), e.error))?;
        std::fs::File::open(data)
            .and_then(|d| d.sync_all())
            .map_err(|e| CliError::io(format!("syncing {}", data.display()), e))?;
        Ok(())
    }
}
