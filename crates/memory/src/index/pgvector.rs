//! Keys in PostgreSQL + pgvector, sharded over several servers, behind the same
//! [`VectorIndex`] interface: for memories larger than one machine.
//!
//! Row `label` lives on server `label % N`. A search scatters each query to every server
//! (in parallel, one thread a server), each returns its own top k by pgvector's negative
//! inner product `<#>`, and the partial lists are merged into the global top k. Without a
//! pgvector index on the table the servers scan exactly, so the merged result equals
//! [`super::FlatIndex`]'s.

use std::sync::Mutex;
use std::time::Duration;

use pgvector::Vector;
use postgres::{Client, NoTls};

use super::{Hit, SearchParams, VectorIndex, check_k, check_rows};
use crate::error::{Error, Result};
use crate::topk::TopK;

/// One server: its address for messages, and its connection.
struct Shard {
    server: String,
    client: Mutex<Client>,
}

impl Shard {
    fn run<T>(
        &self,
        what: &str,
        work: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T> {
        let mut client = self
            .client
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        work(&mut client).map_err(|err| Error::Backend {
            server: self.server.clone(),
            problem: format!("{what}: {}", describe(&err)),
        })
    }
}

impl Shard {
    /// Streams `data` into a `COPY ... FROM STDIN` statement.
    fn copy_in(&self, statement: &str, data: &[u8]) -> Result<()> {
        use std::io::Write;
        let fail = |problem: String| Error::Backend {
            server: self.server.clone(),
            problem: format!("adding keys: {problem}"),
        };
        let mut client = self
            .client
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut writer = client
            .copy_in(statement)
            .map_err(|err| fail(describe(&err)))?;
        writer
            .write_all(data)
            .map_err(|err| fail(err.to_string()))?;
        writer.finish().map_err(|err| fail(describe(&err)))?;
        Ok(())
    }
}

/// The message of a postgres error with its server-side detail, if any.
fn describe(err: &postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => err.to_string(),
    }
}

/// Keys sharded over PostgreSQL servers with pgvector.
pub struct PgVectorIndex {
    shards: Vec<Shard>,
    table: String,
    dim: usize,
    len: usize,
}

impl PgVectorIndex {
    /// Connects to every server (libpq-style strings such as
    /// `host=127.0.0.1 port=5432 user=postgres dbname=postgres`) and opens the table
    /// `table` of `dim`-d keys on each, creating it and the `vector` extension if missing.
    pub fn open(servers: &[String], table: &str, dim: usize) -> Result<Self> {
        if servers.is_empty() {
            return Err(Error::Backend {
                server: "(none)".into(),
                problem: "no pgvector server given".into(),
            });
        }
        let valid = table
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && table
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(Error::BadSpec {
                spec: format!(
                    "pgvector table name '{table}' (use lower-case letters, digits and _)"
                ),
            });
        }
        let mut shards = Vec::with_capacity(servers.len());
        for server in servers {
            let mut config: postgres::Config =
                server
                    .parse()
                    .map_err(|err: postgres::Error| Error::Backend {
                        server: server.clone(),
                        problem: format!("not a connection string: {err}"),
                    })?;
            config.connect_timeout(Duration::from_secs(5));
            let address = describe_address(&config).unwrap_or_else(|| server.clone());
            let client = config.connect(NoTls).map_err(|err| Error::Backend {
                server: address.clone(),
                problem: format!("cannot connect: {}", describe(&err)),
            })?;
            shards.push(Shard {
                server: address,
                client: Mutex::new(client),
            });
        }
        let mut len = 0;
        for shard in &shards {
            let existing: Option<i32> = shard.run("creating the table", |client| {
                // IF NOT EXISTS is not safe against a concurrent creator (two clients can
                // both miss the row and one fails on a unique index): an advisory lock
                // makes the creations take turns.
                client.batch_execute(&format!(
                    "BEGIN;
                     SELECT pg_advisory_xact_lock(7236818351);
                     CREATE EXTENSION IF NOT EXISTS vector;
                     CREATE TABLE IF NOT EXISTS {table} (label bigint PRIMARY KEY, key vector({dim}) NOT NULL);
                     COMMIT;"
                ))?;
                // The declared dimension of an existing table's key column.
                let row = client.query_one(
                    "SELECT atttypmod FROM pg_attribute WHERE attrelid = to_regclass($1::text) AND attname = 'key'",
                    &[&table],
                )?;
                Ok(row.get::<_, Option<i32>>(0))
            })?;
            if let Some(stored) = existing
                && stored as usize != dim
            {
                return Err(Error::Backend {
                    server: shard.server.clone(),
                    problem: format!("table {table} holds keys of dimension {stored}, not {dim}"),
                });
            }
            let count: i64 = shard.run("counting keys", |client| {
                Ok(client
                    .query_one(&format!("SELECT count(*) FROM {table}"), &[])?
                    .get(0))
            })?;
            len += count as usize;
        }
        Ok(Self {
            shards,
            table: table.to_owned(),
            dim,
            len,
        })
    }

    /// Removes every key from every server (faiss `reset`).
    pub fn clear(&mut self) -> Result<()> {
        for shard in &self.shards {
            shard.run("clearing the table", |client| {
                client.batch_execute(&format!("TRUNCATE {}", self.table))
            })?;
        }
        self.len = 0;
        Ok(())
    }

    /// Deletes every key whose label is `len` or more: what an interrupted add left
    /// beyond the last commit of the memory that owns the table.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        for shard in &self.shards {
            shard.run("dropping uncommitted keys", |client| {
                client.execute(
                    &format!("DELETE FROM {} WHERE label >= $1", self.table),
                    &[&(len as i64)],
                )
            })?;
        }
        self.len = self.len.min(len);
        Ok(())
    }

    /// The servers, as host:port.
    pub fn servers(&self) -> Vec<String> {
        self.shards
            .iter()
            .map(|shard| shard.server.clone())
            .collect()
    }

    fn shard_of(&self, label: u64) -> &Shard {
        &self.shards[(label % self.shards.len() as u64) as usize]
    }
}

fn describe_address(config: &postgres::Config) -> Option<String> {
    let host = match config.get_hosts().first()? {
        postgres::config::Host::Tcp(host) => host.clone(),
        postgres::config::Host::Unix(path) => path.display().to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    Some(format!("{host}:{port}"))
}

impl VectorIndex for PgVectorIndex {
    fn spec(&self) -> String {
        format!("pgvector:{}", self.table)
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn len(&self) -> usize {
        self.len
    }

    fn add(&mut self, vectors: &[f32]) -> Result<()> {
        let count = check_rows(vectors, self.dim, "vectors to add")?;
        let start = self.len as u64;
        let servers = self.shards.len() as u64;
        let (dim, table) = (self.dim, self.table.as_str());
        // Text COPY, one stream a server: '<label>\t[x,y,...]\n' per row.
        std::thread::scope(|scope| {
            let jobs: Vec<_> = self
                .shards
                .iter()
                .enumerate()
                .map(|(number, shard)| {
                    scope.spawn(move || {
                        let mut lines = String::new();
                        for row in 0..count as u64 {
                            let label = start + row;
                            if label % servers != number as u64 {
                                continue;
                            }
                            let values = &vectors[row as usize * dim..(row as usize + 1) * dim];
                            let rendered: Vec<String> = values.iter().map(f32::to_string).collect();
                            lines.push_str(&format!("{label}\t[{}]\n", rendered.join(",")));
                        }
                        shard.copy_in(
                            &format!("COPY {table} (label, key) FROM STDIN"),
                            lines.as_bytes(),
                        )
                    })
                })
                .collect();
            jobs.into_iter()
                .map(|job| {
                    job.join().unwrap_or_else(|_| {
                        Err(Error::Backend {
                            server: "(thread)".into(),
                            problem: "panicked".into(),
                        })
                    })
                })
                .collect::<Result<Vec<()>>>()
        })?;
        self.len += count;
        Ok(())
    }

    fn search_with(
        &self,
        queries: &[f32],
        k: usize,
        params: &SearchParams,
    ) -> Result<Vec<Vec<Hit>>> {
        check_rows(queries, self.dim, "queries")?;
        check_k(k, self.len, &format!("the pgvector table {}", self.table))?;
        let sql = format!(
            "SELECT label, (key <#> $1)::float4 FROM {} ORDER BY key <#> $1, label LIMIT $2",
            self.table
        );
        let partials: Vec<Vec<TopK>> = std::thread::scope(|scope| {
            let jobs: Vec<_> = self
                .shards
                .iter()
                .map(|shard| {
                    let sql = &sql;
                    scope.spawn(move || -> Result<Vec<TopK>> {
                        queries
                            .chunks_exact(self.dim)
                            .map(|query| {
                                // Rows the keep filter rejects are fetched and dropped; ask for
                                // more until k pass or the shard runs out.
                                let mut limit = k as i64;
                                loop {
                                    let rows = shard.run("searching", |client| {
                                        client.query(
                                            sql.as_str(),
                                            &[&Vector::from(query.to_vec()), &limit],
                                        )
                                    })?;
                                    let mut top = TopK::new(k);
                                    let mut kept = 0;
                                    for row in &rows {
                                        let label = row.get::<_, i64>(0) as u64;
                                        if params.keeps(label) {
                                            top.push(label, -row.get::<_, f32>(1));
                                            kept += 1;
                                        }
                                    }
                                    if kept >= k || (rows.len() as i64) < limit {
                                        return Ok(top);
                                    }
                                    limit *= 4;
                                }
                            })
                            .collect()
                    })
                })
                .collect();
            jobs.into_iter()
                .map(|job| {
                    job.join().unwrap_or_else(|_| {
                        Err(Error::Backend {
                            server: "(thread)".into(),
                            problem: "panicked".into(),
                        })
                    })
                })
                .collect::<Result<Vec<_>>>()
        })?;
        let mut merged: Vec<TopK> = (0..queries.len() / self.dim)
            .map(|_| TopK::new(k))
            .collect();
        for shard in partials {
            for (top, part) in merged.iter_mut().zip(shard) {
                top.merge(part);
            }
        }
        Ok(merged.into_iter().map(TopK::into_sorted).collect())
    }

    fn reconstruct(&self, label: u64) -> Result<Vec<f32>> {
        let shard = self.shard_of(label);
        let row = shard.run("reading a key", |client| {
            client.query_opt(
                &format!("SELECT key FROM {} WHERE label = $1", self.table),
                &[&(label as i64)],
            )
        })?;
        let row = row.ok_or(Error::NoSuchId {
            id: format!("label {label} on {}", shard.server),
        })?;
        Ok(row.get::<_, Vector>(0).to_vec())
    }
}
