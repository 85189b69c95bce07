//! [`ReplicatedDatabaseConfig`]: the seed's fields, what a node needs to survive a restart (its
//! data directory and the founding members), and the knobs of the Raft thread. Validated once,
//! at the edge, and turned into a raft-rs `Config` here.

use std::path::PathBuf;
use std::time::Duration;

use raft::ReadOnlyOption;
use raft::prelude::Config;

use crate::command::MAX_ENTRY_BYTES_CAP;
use crate::error::{NeedleError, Result};
use crate::message::NodeId;

/// How a [`crate::ReplicatedDatabase`] runs. Durations in the seed's fields are milliseconds.
///
/// ```
/// use needle_raft::ReplicatedDatabaseConfig;
/// let config = ReplicatedDatabaseConfig {
///     data_dir: "/tmp/node1-raft".into(),
///     initial_members: vec![1, 2, 3],
///     ..Default::default()
/// };
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ReplicatedDatabaseConfig {
    /// Serve reads locally on a follower (bounded staleness: see `max_staleness`).
    pub allow_follower_reads: bool,
    /// Election timeout range, in milliseconds; each election picks a random value in it.
    pub election_timeout_min: u64,
    /// Upper end (exclusive) of the election timeout range, in milliseconds.
    pub election_timeout_max: u64,
    /// How often a leader sends heartbeats, in milliseconds.
    pub heartbeat_interval: u64,
    /// Take a snapshot (database checkpoint, then log compaction) every this many applied entries.
    pub snapshot_threshold: u64,
    /// The Raft clock: one raft-rs tick per interval. The three timings above are whole multiples.
    pub tick_interval: Duration,
    /// A follower refuses local reads when it has not heard from a leader for this long.
    pub max_staleness: Duration,
    /// How long a write waits to be committed and applied before `Timeout`.
    pub proposal_timeout: Duration,
    /// How long a linearizable read waits for its ReadIndex before `Timeout`.
    pub read_timeout: Duration,
    /// Where this node keeps its Raft log and snapshot files. Must survive restarts.
    pub data_dir: PathBuf,
    /// The founding voters. Every founder starts with the same list; a node joining a running
    /// cluster later starts with an empty list and is added with `add_node`. Ignored once
    /// `data_dir` holds a log.
    pub initial_members: Vec<NodeId>,
    /// raft-rs `max_size_per_msg`: the bytes of entries in one append message.
    pub max_size_per_msg: u64,
    /// raft-rs `max_inflight_msgs`: unacknowledged append messages per follower.
    pub max_inflight_msgs: usize,
    /// raft-rs `max_uncommitted_size`: proposals beyond this many uncommitted bytes are dropped.
    pub max_uncommitted_size: u64,
    /// raft-rs `max_committed_size_per_ready`: bytes of committed entries applied per Ready.
    pub max_committed_size_per_ready: u64,
    /// Entries kept below a snapshot's index at compaction, so that slightly slow followers catch
    /// up from the log rather than by snapshot.
    pub log_retain_entries: u64,
    /// Bytes per snapshot chunk on the wire.
    pub snapshot_chunk_size: usize,
    /// Raft log segment files roll over at about this size.
    pub log_segment_size: u64,
    /// A retried write (same request id) within this many log entries is not applied twice.
    pub dedup_window: u64,
    /// The largest write, in bytes of its Raft entry (request id + encoded command; about the
    /// vectors' `4 × dimensions` bytes plus ids and metadata per record). A bigger command is
    /// refused at once with [`NeedleError::EntryTooLarge`] (nothing applied): split the batch.
    /// One entry must fit in one transport frame (with a little protobuf overhead), so keep this
    /// below the transport's frame limit (`needle-transport-tcp`: `max_frame_size`, 64 MiB by
    /// default). At most 256 MiB, and at most `max_uncommitted_size`.
    pub max_entry_bytes: u64,
}

impl Default for ReplicatedDatabaseConfig {
    fn default() -> Self {
        ReplicatedDatabaseConfig {
            allow_follower_reads: false,
            election_timeout_min: 1000,
            election_timeout_max: 2000,
            heartbeat_interval: 100,
            snapshot_threshold: 10_000,
            tick_interval: Duration::from_millis(50),
            max_staleness: Duration::from_secs(2),
            proposal_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(5),
            data_dir: PathBuf::from("needle-raft"),
            initial_members: Vec::new(),
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            max_uncommitted_size: 64 << 20,
            max_committed_size_per_ready: 16 << 20,
            log_retain_entries: 1024,
            snapshot_chunk_size: 1 << 20,
            log_segment_size: 64 << 20,
            dedup_window: 100_000,
            max_entry_bytes: 32 << 20,
        }
    }
}

impl ReplicatedDatabaseConfig {
    /// Checks that the values can run a node.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(NeedleError::InvalidConfig { reason });
        let tick = self.tick_interval.as_millis() as u64;
        if tick == 0 {
            return bad("tick_interval must be at least 1 ms".into());
        }
        for (name, v) in [
            ("heartbeat_interval", self.heartbeat_interval),
            ("election_timeout_min", self.election_timeout_min),
            ("election_timeout_max", self.election_timeout_max),
        ] {
            if v == 0 || v % tick != 0 {
                return bad(format!(
                    "{name} ({v} ms) must be a positive multiple of tick_interval ({tick} ms)"
                ));
            }
        }
        if self.election_timeout_min <= self.heartbeat_interval {
            return bad(format!(
                "election_timeout_min ({} ms) must exceed heartbeat_interval ({} ms)",
                self.election_timeout_min, self.heartbeat_interval
            ));
        }
        if self.election_timeout_max <= self.election_timeout_min {
            return bad(format!(
                "election_timeout_max ({} ms) must exceed election_timeout_min ({} ms)",
                self.election_timeout_max, self.election_timeout_min
            ));
        }
        if self.snapshot_threshold == 0 {
            return bad("snapshot_threshold must be at least 1".into());
        }
        if self.max_staleness.is_zero()
            || self.proposal_timeout.is_zero()
            || self.read_timeout.is_zero()
        {
            return bad("max_staleness, proposal_timeout and read_timeout must be positive".into());
        }
        if self.data_dir.as_os_str().is_empty() {
            return bad("data_dir must be set".into());
        }
        if self.initial_members.contains(&0) {
            return bad("node id 0 is reserved".into());
        }
        if self.max_size_per_msg == 0 || self.max_uncommitted_size < self.max_size_per_msg {
            return bad(
                "max_uncommitted_size must be at least max_size_per_msg, which must be positive"
                    .into(),
            );
        }
        if self.max_inflight_msgs == 0
            || self.snapshot_chunk_size == 0
            || self.log_segment_size < 4096
        {
            return bad("max_inflight_msgs and snapshot_chunk_size must be positive, log_segment_size ≥ 4096".into());
        }
        if self.max_entry_bytes < 1024
            || self.max_entry_bytes > MAX_ENTRY_BYTES_CAP
            || self.max_entry_bytes > self.max_uncommitted_size
        {
            return bad(format!(
                "max_entry_bytes ({}) must be between 1024 and {MAX_ENTRY_BYTES_CAP} bytes, and at most max_uncommitted_size ({})",
                self.max_entry_bytes, self.max_uncommitted_size
            ));
        }
        Ok(())
    }

    pub(crate) fn raft_config(&self, id: NodeId, applied: u64) -> Config {
        let tick = self.tick_interval.as_millis() as u64;
        let ticks = |ms: u64| (ms / tick) as usize;
        Config {
            id,
            election_tick: ticks(self.election_timeout_min),
            heartbeat_tick: ticks(self.heartbeat_interval),
            min_election_tick: ticks(self.election_timeout_min),
            max_election_tick: ticks(self.election_timeout_max),
            applied,
            max_size_per_msg: self.max_size_per_msg,
            max_inflight_msgs: self.max_inflight_msgs,
            check_quorum: true,
            pre_vote: true,
            read_only_option: ReadOnlyOption::Safe,
            max_uncommitted_size: self.max_uncommitted_size,
            max_committed_size_per_ready: self.max_committed_size_per_ready,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_maps_to_a_valid_raft_config() {
        let c = ReplicatedDatabaseConfig::default();
        c.validate().unwrap();
        let rc = c.raft_config(1, 0);
        rc.validate().unwrap();
        assert_eq!(
            (rc.heartbeat_tick, rc.election_tick, rc.max_election_tick),
            (2, 20, 40)
        );
    }

    #[test]
    fn rejects_inconsistent_timings() {
        let c = ReplicatedDatabaseConfig {
            heartbeat_interval: 75,
            ..Default::default()
        };
        assert!(c.validate().is_err());
        let c = ReplicatedDatabaseConfig {
            election_timeout_max: 1000,
            ..Default::default()
        };
        assert!(c.validate().is_err());
        for max_entry_bytes in [0, 100, 1 << 30] {
            let c = ReplicatedDatabaseConfig {
                max_entry_bytes,
                ..Default::default()
            };
            assert!(c.validate().is_err(), "{max_entry_bytes}");
        }
        let c = ReplicatedDatabaseConfig {
            max_uncommitted_size: 8 << 20,
            max_entry_bytes: 16 << 20,
            ..Default::default()
        };
        assert!(c.validate().is_err());
    }
}
