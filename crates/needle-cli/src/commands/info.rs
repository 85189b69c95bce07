//! `needle info FILE`: collections, counts, configuration, and the file's size.

use serde_json::json;

use super::{config_json, distance_name, file_sizes, open_for_reading};
use crate::cli::InfoArgs;
use crate::error::Result;
use crate::output::{self, Table};

pub fn run(args: &InfoArgs, json: bool) -> Result<()> {
    let db = open_for_reading(&args.file, args.read_only)?;
    let infos = db
        .list_collections()
        .iter()
        .map(|name| db.collection_info(name))
        .collect::<needle_core::Result<Vec<_>>>()?;
    let (size, wal) = file_sizes(&args.file);
    if json {
        return output::print_json(&json!({
            "file": args.file,
            "file_bytes": size,
            "wal_bytes": wal,
            "checkpoint_tag": db.checkpoint_tag(),
            "collections": infos.iter().map(config_json).collect::<Vec<_>>(),
        }));
    }
    let mut text = format!(
        "{}: {} (log {}), {} collection{}\n",
        args.file.display(),
        output::bytes(size),
        output::bytes(wal),
        infos.len(),
        if infos.len() == 1 { "" } else { "s" }
    );
    if !infos.is_empty() {
        let mut table = Table::new(&[
            "collection",
            "dims",
            "distance",
            "records",
            "deleted",
            "m",
            "ef_construction",
            "ef_search",
        ]);
        for i in &infos {
            table.row(vec![
                i.name.clone(),
                i.dimensions.to_string(),
                distance_name(i.config.distance).to_string(),
                i.count.to_string(),
                i.deleted.to_string(),
                i.config.m.to_string(),
                i.config.ef_construction.to_string(),
                i.config.ef_search.to_string(),
            ]);
        }
        text.push_str(&table.render());
        for i in infos.iter().filter(|i| !i.indexes.is_empty()) {
            text.push_str(&format!("{}: payload indexes\n", i.name));
            for x in &i.indexes {
                text.push_str(&format!(
                    "  {} ({}): {} values, {} records indexed, {} irregular, {} of memory\n",
                    x.path,
                    x.kind.name(),
                    x.values,
                    x.indexed,
                    x.irregular,
                    output::bytes(x.memory_bytes as u64)
                ));
                if x.value_graphs > 0 {
                    text.push_str(&format!(
                        "    {} value graph{} ({} of that memory)\n",
                        x.value_graphs,
                        if x.value_graphs == 1 { "" } else { "s" },
                        output::bytes(x.value_graph_bytes as u64)
                    ));
                }
            }
            if i.index_codes_bytes > 0 {
                text.push_str(&format!(
                    "  int8 codes for filtered searches: {} of memory\n",
                    output::bytes(i.index_codes_bytes as u64)
                ));
            }
        }
    }
    output::print(&text)
}
