//! Checking a write without making it: the same rules the write path applies, with nothing
//! logged and nothing changed. For front ends (the CLI, an HTTP server, a replicated layer) that
//! want to refuse a bad request before it reaches a log of their own.

use crate::collection::{validate_collection_name, validate_dimensions};
use crate::config::CollectionConfig;
use crate::database::{Database, Record};
use crate::error::Result;
use crate::storage::wal::{Op, OpRecord};

impl Database {
    /// Checks a collection's name, dimensions and configuration by the rules of
    /// [`Database::create_collection_with_config`], without any database: whether the name is
    /// already taken is for the database that creates it to say.
    ///
    /// ```
    /// use needle_core::{CollectionConfig, Database, Error};
    /// assert!(Database::check_collection("docs", 384, &CollectionConfig::default()).is_ok());
    /// let bad = CollectionConfig { m: 0, ..CollectionConfig::default() };
    /// assert!(matches!(
    ///     Database::check_collection("docs", 384, &bad),
    ///     Err(Error::InvalidConfig { .. })
    /// ));
    /// assert!(Database::check_collection("", 384, &CollectionConfig::default()).is_err());
    /// ```
    pub fn check_collection(
        name: &str,
        dimensions: usize,
        config: &CollectionConfig,
    ) -> Result<()> {
        validate_collection_name(name)?;
        validate_dimensions(dimensions)?;
        config.validate()
    }

    /// Checks that [`Database::insert_batch`] of `records` into `collection` would be accepted
    /// now (the collection exists; every id, vector and metadata object is valid), and changes
    /// nothing. Another writer may still change the answer before a later insert.
    ///
    /// ```
    /// use needle_core::{Database, Error, Record};
    /// let db = Database::in_memory();
    /// db.create_collection("docs", 2)?;
    /// assert!(db.check_insert_batch("docs", &[Record::new("a", vec![1.0, 0.0], None)]).is_ok());
    /// assert!(matches!(
    ///     db.check_insert_batch("docs", &[Record::new("a", vec![1.0], None)]),
    ///     Err(Error::DimensionMismatch { .. })
    /// ));
    /// assert_eq!(db.count("docs")?, 0);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn check_insert_batch(&self, collection: &str, records: &[Record]) -> Result<()> {
        let op = Op::Upsert {
            collection: collection.to_string(),
            records: records
                .iter()
                .map(|r| OpRecord {
                    id: r.id.clone(),
                    vector: r.vector.clone(),
                    metadata: r.metadata.as_ref().map(|m| m.to_string()),
                })
                .collect(),
        };
        self.plan(&op).map(|_| ())
    }
}
