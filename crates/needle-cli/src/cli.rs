//! The command line: every subcommand and flag, as clap derive types. Parsing only; the commands
//! themselves live in `commands/` and `demo`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use needle_core::{CollectionConfig, Distance, Quantization};

/// Needle: an embedded vector database in one `.needle` file.
///
/// Start with `needle demo`. Every command that reads a database takes the file first, then the
/// collection. Errors are one line on stderr and a non-zero exit (2 for a bad command line).
#[derive(Debug, Parser)]
#[command(name = "needle", version, about, max_term_width = 100)]
pub struct Cli {
    /// Print JSON (one document) instead of a table, for scripts.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a collection from real word embeddings, search it, filter, delete, reopen: a tour.
    Demo(DemoArgs),
    /// Create a collection (and the file, if it does not exist).
    Create(CreateArgs),
    /// Import vectors from fvecs, npy or JSON Lines (creates the file and collection if missing).
    Import(ImportArgs),
    /// Search a collection by a vector or by a stored record's vector.
    Search(SearchArgs),
    /// Show one record.
    Get(GetArgs),
    /// Insert (or replace) one record.
    Insert(InsertArgs),
    /// Delete records by id, or every record matching --filter.
    Delete(DeleteArgs),
    /// Count the records matching a filter (all of them without one).
    Count(CountArgs),
    /// Page through the records matching a filter, in id order.
    Scroll(ScrollArgs),
    /// Create or drop a payload index on a metadata path.
    #[command(subcommand)]
    Index(IndexCommand),
    /// Show the collections, their counts and configuration, and the file's size.
    Info(InfoArgs),
    /// Rebuild collections without their deleted records, then checkpoint.
    Compact(CompactArgs),
    /// Verify every checksum and report any damage with its offset; never writes.
    Check(CheckArgs),
    /// Cut a torn log tail or a corrupted log suffix (keeping a copy of what is cut).
    Repair(RepairArgs),
    /// Write every record of a collection as JSON Lines.
    Export(ExportArgs),
    /// Run one node of a replicated cluster: Raft over TCP, and an HTTP JSON API.
    Serve(ServeArgs),
    /// Ask a running cluster about itself.
    Cluster(ClusterArgs),
    /// Save a running cluster's database as a new .needle file (GET /v1/snapshot).
    Backup(BackupArgs),
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The HTTP address of any node of the cluster, e.g. 127.0.0.1:8001.
    #[arg(long)]
    pub http: SocketAddr,
    /// The .needle file to write (must not exist).
    pub file: PathBuf,
    /// A file holding the bearer token, if the nodes require one.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// The cluster's CA certificate (PEM), when the nodes serve HTTPS.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Run the tour on a three-node cluster of local `needle serve` processes over TCP instead:
    /// writes, a SIGKILL of the leader, the new election, no lost writes, the restart catching up.
    #[arg(long)]
    pub cluster: bool,
    /// With --cluster: repeat the kill–elect–restart cycle this many times and report the write
    /// gap (the time from the leader's SIGKILL to the first acknowledged write) per round.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// With --cluster: records to insert (default: all of the data set, at most 20,000).
    #[arg(long)]
    pub records: Option<usize>,
    /// The .needle file to build (must not exist yet). Default: a temporary directory, removed
    /// at the end.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// A folder with `base.fvecs` and `base_words.txt`. Default: `../shared/data/words-minilm`
    /// beside the workspace when present, else the committed `testdata/words-minilm-4k`.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// HNSW efConstruction for the demo's collection. 64 builds the 50k set in about a third of
    /// the time of the library default (200) and still finds 98% of the true 10 nearest.
    #[arg(long, default_value_t = 64)]
    pub ef_construction: usize,
    /// The word to search for. Default: "king", or the first of "royal", "music" that the
    /// data has (the committed 4k subset has no "king").
    #[arg(long)]
    pub word: Option<String>,
}

/// The distance flag's values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DistanceArg {
    Cosine,
    Euclidean,
    Dot,
}

impl From<DistanceArg> for Distance {
    fn from(d: DistanceArg) -> Distance {
        match d {
            DistanceArg::Cosine => Distance::Cosine,
            DistanceArg::Euclidean => Distance::Euclidean,
            DistanceArg::Dot => Distance::DotProduct,
        }
    }
}

/// HNSW parameters of a new collection; unset ones take needle-core's defaults.
#[derive(Debug, Clone, Args)]
pub struct CollectionParams {
    /// The distance function. Default cosine.
    #[arg(long, value_enum)]
    pub distance: Option<DistanceArg>,
    /// HNSW `M`: links per node on the upper layers (layer 0 keeps 2·M). Default 16.
    #[arg(long)]
    pub m: Option<usize>,
    /// HNSW `efConstruction`: candidates kept while inserting. Default 200.
    #[arg(long)]
    pub ef_construction: Option<usize>,
    /// HNSW `ef`: the default candidates kept while searching. Default 64.
    #[arg(long)]
    pub ef_search: Option<usize>,
    /// A quantized copy of the vectors for searching: `sq8` (int8 codes walked, the best
    /// `max(k, ef)` re-ranked exactly) or `none`. Default none.
    #[arg(long, value_enum)]
    pub quantization: Option<QuantizationArg>,
}

/// The quantization flag's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QuantizationArg {
    None,
    Sq8,
}

impl From<QuantizationArg> for Quantization {
    fn from(q: QuantizationArg) -> Quantization {
        match q {
            QuantizationArg::None => Quantization::None,
            QuantizationArg::Sq8 => Quantization::Sq8,
        }
    }
}

impl CollectionParams {
    /// The configuration these flags ask for, needle-core's defaults for the rest.
    pub fn to_config(&self) -> CollectionConfig {
        let default = CollectionConfig::default();
        CollectionConfig {
            distance: self.distance.map_or(default.distance, Distance::from),
            m: self.m.unwrap_or(default.m),
            ef_construction: self.ef_construction.unwrap_or(default.ef_construction),
            ef_search: self.ef_search.unwrap_or(default.ef_search),
            quantization: self
                .quantization
                .map_or(default.quantization, Quantization::from),
            ..default
        }
    }

    /// The first flag given explicitly that disagrees with an existing collection's `config`.
    pub fn conflict_with(&self, config: &CollectionConfig) -> Option<String> {
        if let Some(d) = self
            .distance
            .filter(|&d| Distance::from(d) != config.distance)
        {
            return Some(format!("--distance {d:?} (it has {:?})", config.distance));
        }
        if let Some(q) = self
            .quantization
            .filter(|&q| Quantization::from(q) != config.quantization)
        {
            return Some(format!(
                "--quantization {} (it has {})",
                Quantization::from(q).name(),
                config.quantization.name()
            ));
        }
        let pairs = [
            ("--m", self.m, config.m),
            (
                "--ef-construction",
                self.ef_construction,
                config.ef_construction,
            ),
            ("--ef-search", self.ef_search, config.ef_search),
        ];
        pairs.into_iter().find_map(|(flag, given, has)| {
            given
                .filter(|&g| g != has)
                .map(|g| format!("{flag} {g} (it has {has})"))
        })
    }
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The .needle file (created if missing). With --http there is none: the collection comes
    /// first.
    pub file: PathBuf,
    /// The collection's name: letters, digits, `_`, `-`, `.`.
    pub collection: Option<String>,
    /// The number of dimensions of every vector.
    #[arg(long)]
    pub dim: usize,
    #[command(flatten)]
    pub params: CollectionParams,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// Input file formats for `import`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    /// TEXMEX .fvecs: per row an int32 dimension then that many float32, little-endian.
    Fvecs,
    /// NumPy .npy: a 2-D little-endian float32 array in C order.
    Npy,
    /// JSON Lines: one `{"id": …, "vector": […], "metadata": {…}}` per line.
    Jsonl,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The .needle file (created if missing). With --http there is none: the collection comes
    /// first.
    pub file: PathBuf,
    /// The collection (created if missing, with the input's dimension).
    pub collection: String,
    /// The input file.
    pub input: Option<PathBuf>,
    /// The input's format. Default: from its extension (.fvecs, .npy, .jsonl/.ndjson/.json).
    #[arg(long, value_enum)]
    pub format: Option<InputFormat>,
    /// For fvecs and npy: a text file with one id per line, row-aligned with the vectors.
    /// Without it, the ids are the row numbers 0, 1, 2, …
    #[arg(long)]
    pub ids: Option<PathBuf>,
    /// Records per batch: each batch is one write and one fsync.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch_size: u64,
    /// Parameters used when the collection is created by this import.
    #[command(flatten)]
    pub params: CollectionParams,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("query").required(true).args(["vector", "id"]))]
pub struct SearchArgs {
    /// The .needle file. With --http there is none: the collection comes first.
    pub file: PathBuf,
    /// The collection.
    pub collection: Option<String>,
    /// The query vector as a JSON array, e.g. '[0.1, 0.2, 0.3]'.
    #[arg(long)]
    pub vector: Option<String>,
    /// Use the stored vector of this record as the query (the record itself comes first).
    #[arg(long)]
    pub id: Option<String>,
    /// How many results.
    #[arg(short, long, default_value_t = 10)]
    pub k: usize,
    /// Candidates kept while searching (higher: better recall, slower). Default: the collection's.
    #[arg(long)]
    pub ef: Option<usize>,
    /// A MongoDB-style metadata filter as JSON, e.g. '{"length": {"$gte": 7}}'.
    #[arg(long)]
    pub filter: Option<String>,
    /// Read without the file's lock, changing nothing on disk, while another process (a running
    /// `needle serve`, an import) has it open: shows its last checkpoint plus the intact part of
    /// its log, as of now.
    #[arg(long)]
    pub read_only: bool,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Drop results whose distance is above this (cosine: 1 - similarity).
    #[arg(long)]
    pub score_threshold: Option<f32>,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The .needle file. With --http there is none: the collection comes first.
    pub file: PathBuf,
    /// The collection.
    pub collection: String,
    /// The record's id.
    pub id: Option<String>,
    /// Read without the file's lock, changing nothing on disk, while another process (a running
    /// `needle serve`, an import) has it open: shows its last checkpoint plus the intact part of
    /// its log, as of now.
    #[arg(long)]
    pub read_only: bool,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub struct InsertArgs {
    /// The .needle file. With --http there is none: the collection comes first.
    pub file: PathBuf,
    /// The collection.
    pub collection: String,
    /// The record's id (a record with this id is replaced).
    pub id: Option<String>,
    /// The vector as a JSON array, e.g. '[0.1, 0.2, 0.3]'.
    #[arg(long)]
    pub vector: String,
    /// The metadata as a JSON object, e.g. '{"tag": "x"}'.
    #[arg(long)]
    pub metadata: Option<String>,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// Where a command runs: on a cluster through a node's HTTP API with `--http`, else on the file.
#[derive(Debug, Clone, Args)]
pub struct RemoteArgs {
    /// Run the command on a cluster instead of a file: the HTTP address of any node, e.g.
    /// 127.0.0.1:8001 (give no FILE then). Writes follow the leader and are retried with one
    /// Idempotency-Key until they have an outcome; reads are linearizable.
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// With --http: a file holding the bearer token, if the nodes require one.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// With --http: the cluster's CA certificate (PEM), when the nodes serve HTTPS.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
}

/// Resolves the positionals of a command whose first one is FILE: without --http, FILE then
/// the `names` (each required); with --http no FILE, so what clap took for FILE is the first
/// of the `names`, and everything moves up one. Returns the file (without --http) and the values.
pub fn positionals(
    http: bool,
    file: &std::path::Path,
    rest: &[Option<&str>],
    names: &[&str],
) -> Result<(Option<PathBuf>, Vec<String>), String> {
    let given: Vec<Option<String>> = if http {
        if rest.last().is_some_and(Option::is_some) {
            return Err(format!(
                "with --http there is no FILE: give {} only",
                names.join(" ")
            ));
        }
        std::iter::once(Some(file.to_string_lossy().into_owned()))
            .chain(rest.iter().map(|v| v.map(str::to_string)))
            .take(names.len())
            .collect()
    } else {
        rest.iter().map(|v| v.map(str::to_string)).collect()
    };
    let values = names
        .iter()
        .zip(given)
        .map(|(name, v)| v.ok_or_else(|| format!("missing {name}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(((!http).then(|| file.to_path_buf()), values))
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The .needle file. With --http there is none: the collection comes first.
    pub file: PathBuf,
    /// The collection.
    pub collection: Option<String>,
    /// The ids to delete (ids that are not there are reported, not an error).
    pub ids: Vec<String>,
    /// Delete every record matching this MongoDB-style filter (JSON) instead, as one write.
    #[arg(long)]
    pub filter: Option<String>,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub struct CountArgs {
    /// The .needle file. With --http there is none: the collection comes first.
    pub file: PathBuf,
    /// The collection.
    pub collection: Option<String>,
    /// A MongoDB-style metadata filter as JSON. Default: count every record.
    #[arg(long)]
    pub filter: Option<String>,
    /// Read without the file's lock, changing nothing on disk, while another process (a running
    /// `needle serve`, an import) has it open: shows its last checkpoint plus the intact part of
    /// its log, as of now.
    #[arg(long)]
    pub read_only: bool,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub struct ScrollArgs {
    /// The .needle file. With --http there is none: the collection comes first.
    pub file: PathBuf,
    /// The collection.
    pub collection: Option<String>,
    /// A MongoDB-style metadata filter as JSON.
    #[arg(long)]
    pub filter: Option<String>,
    /// Continue after this cursor (the `next_cursor` of the previous page: an id).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Records per page (at most 10000 with --http, the API's page limit).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub limit: u64,
    /// Read without the file's lock, changing nothing on disk, while another process (a running
    /// `needle serve`, an import) has it open: shows its last checkpoint plus the intact part of
    /// its log, as of now.
    #[arg(long)]
    pub read_only: bool,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Debug, Subcommand)]
pub enum IndexCommand {
    /// Create a payload index: filters on PATH then read a typed column and posting lists.
    Create(IndexCreateArgs),
    /// Drop the payload index on PATH.
    Drop(IndexDropArgs),
}

#[derive(Debug, Args)]
pub struct IndexCreateArgs {
    /// The .needle file. With --http there is none: the collection comes first.
    pub file: PathBuf,
    /// The collection.
    pub collection: String,
    /// The metadata path, dotted like a filter's field names (e.g. `tenant` or `a.b`).
    pub path: String,
    /// The kind of values: keyword, integer, float or bool (arrays of them included).
    pub kind: Option<String>,
    /// Build no graph of its own for a value held by many records (saves their memory;
    /// filters on the index plan as without them).
    #[arg(long)]
    pub no_value_graphs: bool,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub struct IndexDropArgs {
    /// The .needle file. With --http there is none: the collection comes first.
    pub file: PathBuf,
    /// The collection.
    pub collection: String,
    /// The metadata path.
    pub path: Option<String>,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The .needle file.
    pub file: PathBuf,
    /// Read without the file's lock, changing nothing on disk, while another process (a running
    /// `needle serve`, an import) has it open: shows its last checkpoint plus the intact part of
    /// its log, as of now.
    #[arg(long)]
    pub read_only: bool,
}

#[derive(Debug, Args)]
pub struct CompactArgs {
    /// The .needle file.
    pub file: PathBuf,
    /// The collection to compact. Default: all of them.
    pub collection: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The .needle file.
    pub file: PathBuf,
    /// Accepted for symmetry with the other read commands: `check` never takes the lock nor
    /// writes, with or without it.
    #[arg(long)]
    pub read_only: bool,
}

#[derive(Debug, Args)]
pub struct RepairArgs {
    /// The .needle file.
    pub file: PathBuf,
}

/// Output formats for `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// JSON Lines, the same shape `import --format jsonl` reads.
    Jsonl,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The .needle file. With --http there is none: the collection comes first.
    pub file: PathBuf,
    /// The collection.
    pub collection: Option<String>,
    /// The output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: ExportFormat,
    /// Write here instead of stdout (refuses to overwrite an existing file).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Export only the records matching this MongoDB-style filter (JSON).
    #[arg(long)]
    pub filter: Option<String>,
    /// Read without the file's lock, changing nothing on disk, while another process (a running
    /// `needle serve`, an import) has it open: shows its last checkpoint plus the intact part of
    /// its log, as of now.
    #[arg(long)]
    pub read_only: bool,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// This node's id: a positive integer, unique in the cluster.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub id: u64,
    /// The node's directory: `node.needle` (the database) and `raft/` (the Raft log and
    /// snapshots). Created if missing; keep it across restarts.
    #[arg(long)]
    pub data: PathBuf,
    /// The address to listen on for Raft traffic from the other nodes, e.g. 127.0.0.1:7001.
    #[arg(long)]
    pub raft: SocketAddr,
    /// The other founding nodes' Raft addresses: `2=127.0.0.1:7002,3=127.0.0.1:7003`. Empty for
    /// a single-node cluster, or for a node that will be added to a running cluster.
    #[arg(long, value_delimiter = ',', value_parser = parse_peer)]
    pub peers: Vec<(u64, SocketAddr)>,
    /// Join a running cluster instead of founding one: --peers are then only addresses to talk
    /// to, and the node waits to be added with `POST /v1/cluster/nodes` on the leader.
    #[arg(long)]
    pub join: bool,
    /// Found a new cluster from a `.needle` file (a `needle backup`, or any database file): the
    /// node starts as the only voter of a new cluster holding exactly that file's contents; add
    /// more nodes with `--join`. Refused (nothing changed) when --data already holds a node, with
    /// --peers, or with --join.
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// The other nodes' HTTP addresses, `2=127.0.0.1:8002,…`: a write sent to a follower is
    /// answered with the leader's HTTP address from this list.
    #[arg(long, value_delimiter = ',', value_parser = parse_peer)]
    pub peer_http: Vec<(u64, SocketAddr)>,
    /// The address of the HTTP JSON API, e.g. 127.0.0.1:8001. Must be a loopback address
    /// unless --http-public is given.
    #[arg(long)]
    pub http: SocketAddr,
    /// Allow --http on a non-loopback address. Requires --token-file: every request must then
    /// carry `Authorization: Bearer <token>`.
    #[arg(long)]
    pub http_public: bool,
    /// A follower sends a write on to the leader (with its Idempotency-Key) and answers with the
    /// leader's answer, instead of answering 421 `not_leader`. Needs --peer-http for the leader.
    #[arg(long)]
    pub forward_writes: bool,
    /// A file holding the bearer token HTTP clients must send (required with --http-public).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// A file holding the cluster secret shared by every node (it authenticates Raft
    /// connections and never crosses the wire). Without it, Raft must listen on loopback and a
    /// fixed development secret is used.
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// This node's certificate chain (PEM), for TLS on the HTTP API and mutual TLS between nodes.
    /// It must carry the node's Raft and HTTP IP addresses as subject alternative names. With
    /// --tls-key and --tls-ca; all three or none.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// The cluster's CA certificate (PEM): the only issuer whose certificates nodes accept from
    /// each other, and that this node trusts when it calls another node's HTTP API.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// The cluster's id: nodes of different clusters refuse each other.
    #[arg(long, default_value_t = 1)]
    pub cluster_id: u64,
    /// The largest HTTP request body accepted, in bytes (larger ones get 413).
    #[arg(long, default_value_t = 64 << 20)]
    pub max_body: usize,
    /// Raft's clock tick in milliseconds; the two timings below are multiples of it.
    #[arg(long, default_value_t = 50)]
    pub tick_ms: u64,
    /// How often the leader sends heartbeats, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub heartbeat_ms: u64,
    /// The election timeout in milliseconds (each election waits a random time between it and
    /// twice it).
    #[arg(long, default_value_t = 1000)]
    pub election_timeout_ms: u64,
    /// How stale a follower read may be: a follower that has not heard from a leader for this
    /// many milliseconds refuses `consistency: follower` reads.
    #[arg(long, default_value_t = 2000)]
    pub max_staleness_ms: u64,
}

#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Every node's role, term, commit and applied index, and lag behind the leader.
    Status {
        /// The HTTP address of any node, e.g. 127.0.0.1:8001.
        #[arg(long)]
        http: SocketAddr,
        /// A file holding the bearer token, if the nodes require one.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// The cluster's CA certificate (PEM), when the nodes serve HTTPS.
        #[arg(long)]
        tls_ca: Option<PathBuf>,
    },
}

/// `ID=HOST:PORT`.
fn parse_peer(s: &str) -> Result<(u64, SocketAddr), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not ID=HOST:PORT"))?;
    let id: u64 = id
        .trim()
        .parse()
        .ok()
        .filter(|&i| i > 0)
        .ok_or_else(|| format!("'{id}' in '{s}' is not a positive node id"))?;
    let addr = addr
        .trim()
        .parse()
        .map_err(|e| format!("'{addr}' in '{s}' is not an IP:PORT address: {e}"))?;
    Ok((id, addr))
}
