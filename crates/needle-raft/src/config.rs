//! [`ReplicatedDatabaseConfig`]: the seed's fields, what a node needs to survive a restart (its
//! data directory and the founding members), and the knobs of the Raft thread. Built with
//! `Default` (or [`ReplicatedDatabaseConfig::new`]) and chained setters, validated once at the
//! edge ([`ReplicatedDatabaseConfig::validate`], called by `ReplicatedDatabase::new`), and turned
//! into a raft-rs `Config` here.

use std::path::PathBuf;
use std::time::Duration;

use raft::ReadOnlyOption;
use raft::prelude::Config;

use crate::command::MAX_ENTRY_BYTES_CAP;
use crate::error::{NeedleError, Result};
use crate::message::NodeId;

/// How a [`crate::ReplicatedDatabase`] runs.
///
/// Build it from `Default` (or [`ReplicatedDatabaseConfig::new`]) with the chained setters; the
/// struct is `#[non_exhaustive]`, so it cannot be written as a literal (nor with `..Default::default()`)
/// outside this crate, and new knobs can be added without breaking callers. The fields stay
/// public for reading. The ADR's timing fields (`election_timeout_min`, `election_timeout_max`,
/// `heartbeat_interval`) hold **milliseconds** as `u64`, as the ADR documents them; their setters
/// take a [`Duration`] (a fraction of a millisecond is refused by `validate`). Every other timing
/// is a `Duration`.
///
/// | setting | default | meaning |
/// |---|---|---|
/// | `allow_follower_reads` | `false` | the plain reads (`search`, `get`, `count`, `list_collections`) run on a follower at [`crate::ReadConsistency::BoundedStaleness`]`(max_staleness)` instead of answering `NotLeader` |
/// | `election_timeout_min` / `_max` | 1000 / 2000 ms | a follower that hears no leader for a random time in `[min, max)` campaigns; a leader that has not heard from a quorum for `min` steps down |
/// | `heartbeat_interval` | 100 ms | how often a leader sends heartbeats; less than `election_timeout_min` |
/// | `snapshot_threshold` | 10 000 entries | take a snapshot every this many applied entries |
/// | `tick_interval` | 50 ms | the Raft clock; the three timings above are whole multiples of it |
/// | `max_staleness` | 2 s | the bound of the plain reads on a follower (see `allow_follower_reads`) |
/// | `proposal_timeout` | 5 s | how long a write waits to be applied before `Timeout` |
/// | `read_timeout` | 5 s | how long a linearizable read waits for its ReadIndex before `Timeout` |
/// | `data_dir` | `needle-raft` | where the Raft log and snapshots live |
/// | `initial_members` | empty | the founding voters (empty: a node that joins later) |
/// | `max_size_per_msg` | 1 MiB | bytes of entries per append message |
/// | `max_inflight_msgs` | 256 | unacknowledged append messages per follower |
/// | `max_uncommitted_size` | 64 MiB | proposals past this many uncommitted bytes are dropped |
/// | `max_committed_size_per_ready` | 16 MiB | bytes of committed entries applied per Ready |
/// | `log_retain_entries` | 1024 | entries kept below a snapshot at compaction |
/// | `snapshot_chunk_size` | 1 MiB | bytes per snapshot chunk on the wire |
/// | `snapshot_window_bytes` | 8 MiB | snapshot bytes sent to a peer and not yet acknowledged |
/// | `log_segment_size` | 64 MiB | Raft log segment size |
/// | `dedup_window` | 100 000 entries | a retried request id within this many entries is not applied twice |
/// | `max_entry_bytes` | 32 MiB | the largest write (one Raft entry) |
///
/// ```
/// use std::time::Duration;
/// use needle_raft::ReplicatedDatabaseConfig;
///
/// let config = ReplicatedDatabaseConfig::new("/tmp/node1-raft", [1, 2, 3])
///     .tick_interval(Duration::from_millis(10))
///     .heartbeat_interval(Duration::from_millis(30))
///     .election_timeout(Duration::from_millis(300), Duration::from_millis(600))
///     .allow_follower_reads(true);
/// config.validate()?;
/// assert_eq!(config.heartbeat_interval, 30); // the ADR's field: milliseconds
///
/// // Misuse is a typed error that names the field.
/// let bad = config.clone().heartbeat_interval(Duration::from_millis(300));
/// match bad.validate() {
///     Err(needle_raft::NeedleError::InvalidConfig { field, .. }) => {
///         assert_eq!(field, "heartbeat_interval")
///     }
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), needle_raft::NeedleError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReplicatedDatabaseConfig {
    /// Serve the plain reads on a follower at bounded staleness (`max_staleness`); without it a
    /// follower answers them with `NotLeader`. Explicit consistency levels ignore it.
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
    /// The staleness bound of the plain reads on a follower when `allow_follower_reads` is on
    /// (see [`crate::ReadConsistency::BoundedStaleness`] for what the bound means).
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
    /// Flow control of a snapshot transfer: at most this many bytes of chunks are sent to a peer
    /// and not yet acknowledged by it (at least one chunk). Keep it well below the transport's
    /// queue limit (`needle-transport-tcp`: `queue_max_bytes`), which refuses what does not fit.
    pub snapshot_window_bytes: u64,
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
    /// The first millisecond field a setter was given a fraction of a millisecond for.
    pub(crate) sub_millisecond: Option<&'static str>,
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
            snapshot_window_bytes: 8 << 20,
            log_segment_size: 64 << 20,
            dedup_window: 100_000,
            max_entry_bytes: 32 << 20,
            sub_millisecond: None,
        }
    }
}

/// A setter per field: `fn name(mut self, value) -> Self`.
macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {
        $(
            $(#[$doc])*
            #[must_use]
            pub fn $name(mut self, value: $ty) -> Self {
                self.$name = value;
                self
            }
        )*
    };
}

impl ReplicatedDatabaseConfig {
    /// The defaults, with this node's Raft directory and the founding voters (empty for a node
    /// that joins a running cluster later).
    pub fn new(
        data_dir: impl Into<PathBuf>,
        initial_members: impl IntoIterator<Item = NodeId>,
    ) -> Self {
        ReplicatedDatabaseConfig::default()
            .data_dir(data_dir)
            .initial_members(initial_members)
    }

    /// Sets `initial_members`, the founding voters.
    #[must_use]
    pub fn initial_members(mut self, members: impl IntoIterator<Item = NodeId>) -> Self {
        self.initial_members = members.into_iter().collect();
        self
    }

    /// Sets `data_dir`, where the Raft log and snapshots live.
    #[must_use]
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = dir.into();
        self
    }

    setters! {
        /// Sets `allow_follower_reads` (see the field).
        allow_follower_reads: bool;
        /// Sets `snapshot_threshold`, in applied entries.
        snapshot_threshold: u64;
        /// Sets `tick_interval`, the Raft clock (whole milliseconds).
        tick_interval: Duration;
        /// Sets `max_staleness`, the bound of the plain reads on a follower.
        max_staleness: Duration;
        /// Sets `proposal_timeout`.
        proposal_timeout: Duration;
        /// Sets `read_timeout`.
        read_timeout: Duration;
        /// Sets `max_size_per_msg`, in bytes.
        max_size_per_msg: u64;
        /// Sets `max_inflight_msgs`.
        max_inflight_msgs: usize;
        /// Sets `max_uncommitted_size`, in bytes.
        max_uncommitted_size: u64;
        /// Sets `max_committed_size_per_ready`, in bytes.
        max_committed_size_per_ready: u64;
        /// Sets `log_retain_entries`.
        log_retain_entries: u64;
        /// Sets `snapshot_chunk_size`, in bytes.
        snapshot_chunk_size: usize;
        /// Sets `snapshot_window_bytes`, in bytes.
        snapshot_window_bytes: u64;
        /// Sets `log_segment_size`, in bytes.
        log_segment_size: u64;
        /// Sets `dedup_window`, in log entries.
        dedup_window: u64;
        /// Sets `max_entry_bytes`.
        max_entry_bytes: u64;
    }

    /// Sets `heartbeat_interval` (stored in whole milliseconds).
    #[must_use]
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = self.millis("heartbeat_interval", interval);
        self
    }

    /// Sets `election_timeout_min` (stored in whole milliseconds).
    #[must_use]
    pub fn election_timeout_min(mut self, timeout: Duration) -> Self {
        self.election_timeout_min = self.millis("election_timeout_min", timeout);
        self
    }

    /// Sets `election_timeout_max` (stored in whole milliseconds; exclusive).
    #[must_use]
    pub fn election_timeout_max(mut self, timeout: Duration) -> Self {
        self.election_timeout_max = self.millis("election_timeout_max", timeout);
        self
    }

    /// Sets the election timeout range `[min, max)`.
    #[must_use]
    pub fn election_timeout(self, min: Duration, max: Duration) -> Self {
        self.election_timeout_min(min).election_timeout_max(max)
    }

    fn millis(&mut self, field: &'static str, d: Duration) -> u64 {
        if d.subsec_nanos() % 1_000_000 != 0 && self.sub_millisecond.is_none() {
            self.sub_millisecond = Some(field);
        }
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }

    /// Checks that the values can run a node. The error is
    /// [`NeedleError::InvalidConfig`] naming the first field that cannot work.
    pub fn validate(&self) -> Result<()> {
        fn bad(field: &'static str, reason: String) -> Result<()> {
            Err(NeedleError::InvalidConfig { field, reason })
        }
        if let Some(field) = self.sub_millisecond {
            return bad(field, "must be a whole number of milliseconds".into());
        }
        if self.tick_interval.subsec_nanos() % 1_000_000 != 0 {
            return bad(
                "tick_interval",
                format!(
                    "must be a whole number of milliseconds (got {:?})",
                    self.tick_interval
                ),
            );
        }
        let tick = u64::try_from(self.tick_interval.as_millis()).unwrap_or(u64::MAX);
        if tick == 0 {
            return bad("tick_interval", "must be at least 1 ms".into());
        }
        for (name, v) in [
            ("heartbeat_interval", self.heartbeat_interval),
            ("election_timeout_min", self.election_timeout_min),
            ("election_timeout_max", self.election_timeout_max),
        ] {
            if v == 0 || v % tick != 0 {
                return bad(
                    name,
                    format!("{v} ms must be a positive multiple of tick_interval ({tick} ms)"),
                );
            }
        }
        if self.heartbeat_interval >= self.election_timeout_min {
            return bad(
                "heartbeat_interval",
                format!(
                    "{} ms must be less than election_timeout_min ({} ms)",
                    self.heartbeat_interval, self.election_timeout_min
                ),
            );
        }
        if self.election_timeout_max <= self.election_timeout_min {
            return bad(
                "election_timeout_max",
                format!(
                    "{} ms must exceed election_timeout_min ({} ms)",
                    self.election_timeout_max, self.election_timeout_min
                ),
            );
        }
        if self.snapshot_threshold == 0 {
            return bad("snapshot_threshold", "must be at least 1".into());
        }
        for (name, d) in [
            ("max_staleness", self.max_staleness),
            ("proposal_timeout", self.proposal_timeout),
            ("read_timeout", self.read_timeout),
        ] {
            if d.is_zero() {
                return bad(name, "must be positive".into());
            }
        }
        if self.data_dir.as_os_str().is_empty() {
            return bad("data_dir", "must be set".into());
        }
        if self.initial_members.contains(&0) {
            return bad("initial_members", "node id 0 is reserved".into());
        }
        let mut members = self.initial_members.clone();
        members.sort_unstable();
        if members.windows(2).any(|w| w[0] == w[1]) {
            return bad(
                "initial_members",
                format!("{:?} lists a node twice", self.initial_members),
            );
        }
        if self.max_size_per_msg == 0 {
            return bad("max_size_per_msg", "must be positive".into());
        }
        if self.max_uncommitted_size < self.max_size_per_msg {
            return bad(
                "max_uncommitted_size",
                format!(
                    "{} must be at least max_size_per_msg ({})",
                    self.max_uncommitted_size, self.max_size_per_msg
                ),
            );
        }
        if self.max_committed_size_per_ready == 0 {
            return bad("max_committed_size_per_ready", "must be positive".into());
        }
        if self.max_inflight_msgs == 0 {
            return bad("max_inflight_msgs", "must be positive".into());
        }
        if self.snapshot_chunk_size == 0 {
            return bad("snapshot_chunk_size", "must be positive".into());
        }
        if self.snapshot_window_bytes < self.snapshot_chunk_size as u64 {
            return bad(
                "snapshot_window_bytes",
                format!(
                    "{} must be at least snapshot_chunk_size ({})",
                    self.snapshot_window_bytes, self.snapshot_chunk_size
                ),
            );
        }
        if self.log_segment_size < 4096 {
            return bad(
                "log_segment_size",
                format!("{} must be at least 4096 bytes", self.log_segment_size),
            );
        }
        if self.dedup_window == 0 {
            return bad("dedup_window", "must be at least 1".into());
        }
        if self.max_entry_bytes < 1024
            || self.max_entry_bytes > MAX_ENTRY_BYTES_CAP
            || self.max_entry_bytes > self.max_uncommitted_size
        {
            return bad(
                "max_entry_bytes",
                format!(
                    "{} must be between 1024 and {MAX_ENTRY_BYTES_CAP} bytes, and at most max_uncommitted_size ({})",
                    self.max_entry_bytes, self.max_uncommitted_size
                ),
            );
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

    fn field_of(c: &ReplicatedDatabaseConfig) -> &'static str {
        match c.validate() {
            Err(NeedleError::InvalidConfig { field, .. }) => field,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

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
    fn setters_take_durations_and_store_the_adr_milliseconds() {
        let c = ReplicatedDatabaseConfig::new("/tmp/x", [1, 2, 3])
            .tick_interval(Duration::from_millis(10))
            .heartbeat_interval(Duration::from_millis(30))
            .election_timeout(Duration::from_millis(300), Duration::from_millis(600));
        c.validate().unwrap();
        assert_eq!(
            (
                c.heartbeat_interval,
                c.election_timeout_min,
                c.election_timeout_max
            ),
            (30, 300, 600)
        );
        assert_eq!(c.initial_members, vec![1, 2, 3]);
    }

    #[test]
    fn misuse_names_the_field() {
        let d = ReplicatedDatabaseConfig::default;
        let ms = Duration::from_millis;
        assert_eq!(
            field_of(&d().heartbeat_interval(ms(1000))),
            "heartbeat_interval"
        );
        assert_eq!(
            field_of(&d().heartbeat_interval(ms(75))),
            "heartbeat_interval"
        );
        assert_eq!(
            field_of(&d().heartbeat_interval(Duration::from_micros(100_500))),
            "heartbeat_interval"
        );
        assert_eq!(
            field_of(&d().election_timeout_max(ms(1000))),
            "election_timeout_max"
        );
        assert_eq!(
            field_of(&d().election_timeout_min(ms(0))),
            "election_timeout_min"
        );
        assert_eq!(field_of(&d().tick_interval(ms(0))), "tick_interval");
        assert_eq!(
            field_of(&d().tick_interval(Duration::from_micros(1500))),
            "tick_interval"
        );
        assert_eq!(field_of(&d().snapshot_threshold(0)), "snapshot_threshold");
        assert_eq!(field_of(&d().max_staleness(ms(0))), "max_staleness");
        assert_eq!(field_of(&d().proposal_timeout(ms(0))), "proposal_timeout");
        assert_eq!(field_of(&d().read_timeout(ms(0))), "read_timeout");
        assert_eq!(field_of(&d().data_dir("")), "data_dir");
        assert_eq!(field_of(&d().initial_members([1, 0])), "initial_members");
        assert_eq!(field_of(&d().initial_members([1, 2, 1])), "initial_members");
        assert_eq!(field_of(&d().max_size_per_msg(0)), "max_size_per_msg");
        assert_eq!(field_of(&d().max_inflight_msgs(0)), "max_inflight_msgs");
        assert_eq!(field_of(&d().snapshot_chunk_size(0)), "snapshot_chunk_size");
        assert_eq!(
            field_of(&d().snapshot_window_bytes(1000)),
            "snapshot_window_bytes"
        );
        assert_eq!(field_of(&d().log_segment_size(100)), "log_segment_size");
        assert_eq!(field_of(&d().dedup_window(0)), "dedup_window");
        for max_entry_bytes in [0, 100, 1 << 30] {
            assert_eq!(
                field_of(&d().max_entry_bytes(max_entry_bytes)),
                "max_entry_bytes"
            );
        }
        assert_eq!(
            field_of(&d().max_uncommitted_size(8 << 20).max_entry_bytes(16 << 20)),
            "max_entry_bytes"
        );
    }
}
