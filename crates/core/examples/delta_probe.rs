//! How much delta storage would save on an hourly database dump, and how
//! the choice of base matters: a synthetic `mariadb-dump
//! --skip-extended-insert` of 600,000 rows (about 85 MB), 0.1 % of the
//! rows updated, 300 inserted and 300 deleted per hour, chunked as a
//! backup chunks it. For every new chunk, the bytes stored as it is done
//! today (zstd alone) and as a delta (`format::delta`) against the chunk
//! of the previous hour covering the same offset (chains grow by one each
//! hour) or against the first hour's (chains of one).
//!
//! `cargo run --release -p strata-core --example delta_probe [ROWS] [HOURS]`

use std::collections::HashMap;

use strata_core::chunker::Chunker;
use strata_core::format::config::ChunkerParams;
use strata_core::format::delta::encode_delta;
use strata_core::format::encode_payload;
use strata_core::Id;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn word(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| (b'a' + (self.next() % 26) as u8) as char)
            .collect()
    }
}

fn row(rng: &mut Rng, id: u64) -> String {
    format!(
        "INSERT INTO `items` VALUES ({id},'{}',{},'2026-11-{:02} {:02}:{:02}:00','{}');\n",
        rng.word(20),
        rng.next() % 1_000_000,
        1 + rng.next() % 28,
        rng.next() % 24,
        rng.next() % 60,
        rng.word(40)
    )
}

/// The chunks of `data`: (offset, bytes).
fn chunks<'a>(chunker: &Chunker, data: &'a [u8]) -> Vec<(usize, &'a [u8])> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut offset = 0;
    let mut lens = Vec::new();
    let _ = chunker.chunk::<_, ()>(data, &mut buf, |c| {
        lens.push(c.len());
        Ok(())
    });
    for len in lens {
        out.push((offset, &data[offset..offset + len]));
        offset += len;
    }
    out
}

fn id_of(data: &[u8]) -> Id {
    Id(*blake3::hash(data).as_bytes())
}

/// The chunk of `old` that overlaps most the range of `len` bytes at
/// `offset` (edits before a chunk shift it a little, so its old version is
/// at about the same place).
fn covering<'a>(old: &[(usize, &'a [u8])], offset: usize, len: usize) -> &'a [u8] {
    let overlap = |(o, c): &(usize, &[u8])| {
        let (start, end) = (offset.max(*o), (offset + len).min(o + c.len()));
        end.saturating_sub(start)
    };
    old.iter()
        .max_by_key(|c| overlap(c))
        .map_or(&[][..], |c| c.1)
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rows = args.first().copied().unwrap_or(600_000);
    let hours = args.get(1).copied().unwrap_or(12);
    let chunker = Chunker::new(&ChunkerParams {
        seed: 0x5eed,
        min_size: 512 << 10,
        avg_size: 1 << 20,
        max_size: 4 << 20,
    });
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut table: Vec<(u64, String)> = (1..=rows).map(|id| (id, row(&mut rng, id))).collect();
    let mut next_id = rows + 1;
    let dump = |t: &Vec<(u64, String)>| -> Vec<u8> {
        let mut d = b"-- MariaDB dump\nDROP TABLE IF EXISTS `items`;\n".to_vec();
        for (_, r) in t {
            d.extend_from_slice(r.as_bytes());
        }
        d
    };
    let first = dump(&table);
    let mut stored: HashMap<Id, ()> = chunks(&chunker, &first)
        .iter()
        .map(|(_, c)| (id_of(c), ()))
        .collect();
    let mut prev = first.clone();
    println!(
        "dump: {} bytes, {} chunks",
        first.len(),
        chunks(&chunker, &first).len()
    );
    println!("hour  new chunks  zstd alone  delta vs previous  delta vs first");
    let (mut sum_full, mut sum_prev, mut sum_first) = (0usize, 0usize, 0usize);
    for hour in 1..=hours {
        let n = table.len();
        for _ in 0..(rows / 1000) {
            let i = (rng.next() % n as u64) as usize;
            let id = table[i].0;
            table[i].1 = row(&mut rng, id);
        }
        for _ in 0..300 {
            let i = (rng.next() % table.len() as u64) as usize;
            table.remove(i);
        }
        for _ in 0..300 {
            table.push((next_id, row(&mut rng, next_id)));
            next_id += 1;
        }
        let now = dump(&table);
        let (old_prev, old_first) = (chunks(&chunker, &prev), chunks(&chunker, &first));
        let (mut full, mut d_prev, mut d_first, mut new_chunks) = (0, 0, 0, 0);
        for (offset, c) in chunks(&chunker, &now) {
            if stored.insert(id_of(c), ()).is_some() {
                continue;
            }
            new_chunks += 1;
            let alone = encode_payload(c, 3).len();
            full += alone;
            let base = covering(&old_prev, offset, c.len());
            d_prev += encode_delta(c, &id_of(base), base, 3).map_or(alone, |d| d.len().min(alone));
            let base = covering(&old_first, offset, c.len());
            d_first += encode_delta(c, &id_of(base), base, 3).map_or(alone, |d| d.len().min(alone));
        }
        println!("{hour:>4}  {new_chunks:>10}  {full:>10}  {d_prev:>17}  {d_first:>15}");
        sum_full += full;
        sum_prev += d_prev;
        sum_first += d_first;
        prev = now;
    }
    let h = hours as usize;
    println!(
        "mean  {:>22}  {:>17}  {:>15}",
        sum_full / h,
        sum_prev / h,
        sum_first / h
    );
}
