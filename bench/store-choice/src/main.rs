//! The measurement behind the choice of embedded store (docs/persistence.md): the
//! broker's write pattern, many small records committed durably in batches (group commit)
//! and removed soon after, on redb and on fjall, in the same run on the same disk.
use std::time::{Duration, Instant};

const VALUE: [u8; 100] = [7; 100];
const RUN: Duration = Duration::from_secs(4);

fn redb_run(batch: usize) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let db = redb::Database::create(dir.path().join("t.redb")).unwrap();
    let table: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("m");
    let (mut key, mut commits) = (0u64, 0u64);
    let started = Instant::now();
    while started.elapsed() < RUN {
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx.open_table(table).unwrap();
            for _ in 0..batch {
                t.insert(key, &VALUE[..]).unwrap();
                if key >= batch as u64 {
                    t.remove(key - batch as u64).unwrap();
                }
                key += 1;
            }
        }
        tx.commit().unwrap();
        commits += 1;
    }
    let s = started.elapsed().as_secs_f64();
    (commits as f64 / s, key as f64 / s)
}

fn fjall_run(batch: usize) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let keyspace = fjall::Config::new(dir.path()).open().unwrap();
    let part = keyspace.open_partition("m", Default::default()).unwrap();
    let (mut key, mut commits) = (0u64, 0u64);
    let started = Instant::now();
    while started.elapsed() < RUN {
        let mut b = keyspace.batch();
        for _ in 0..batch {
            b.insert(&part, key.to_be_bytes(), VALUE);
            if key >= batch as u64 {
                b.remove(&part, (key - batch as u64).to_be_bytes());
            }
            key += 1;
        }
        b.commit().unwrap();
        keyspace.persist(fjall::PersistMode::SyncAll).unwrap();
        commits += 1;
    }
    let s = started.elapsed().as_secs_f64();
    (commits as f64 / s, key as f64 / s)
}

fn main() {
    println!("| store | records per commit | fsynced commits/s | records/s |");
    println!("|---|---|---|---|");
    for batch in [1, 64, 512] {
        let (c, r) = redb_run(batch);
        println!("| redb 2 | {batch} | {c:.0} | {r:.0} |");
        let (c, r) = fjall_run(batch);
        println!("| fjall 2 | {batch} | {c:.0} | {r:.0} |");
    }
}
