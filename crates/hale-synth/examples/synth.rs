//! Writes a population as NDJSON bundles (one bundle per line) to stdout and reports
//! the generation speed on stderr: `cargo run --example synth -- [patients] [seed] [years]`.

use std::io::Write;
use std::time::{Duration, Instant};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>().unwrap_or(0));
    let cfg = hale_synth::Config {
        patients: args.next().unwrap_or(10) as usize,
        seed: args.next().unwrap_or(1),
        years: args.next().map_or(10, |y| y as u32),
        ..hale_synth::Config::default()
    };
    let (mut bundles, mut resources) = (0usize, 0usize);
    let (mut generating, mut writing) = (Duration::ZERO, Duration::ZERO);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut population = hale_synth::population(&cfg);
    loop {
        let t = Instant::now();
        let Some(b) = population.next() else { break };
        generating += t.elapsed();
        bundles += 1;
        resources += b["entry"].as_array().map_or(0, Vec::len);
        let t = Instant::now();
        writeln!(out, "{b}")?;
        writing += t.elapsed();
    }
    out.flush()?;
    let g = generating.as_secs_f64();
    eprintln!(
        "{bundles} bundles, {resources} resources: generated in {g:.2} s ({:.0} resources/s), written in {:.2} s",
        resources as f64 / g,
        writing.as_secs_f64()
    );
    Ok(())
}
