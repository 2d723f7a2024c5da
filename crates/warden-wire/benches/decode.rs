//! Cost of decoding one metrics report: `cargo bench -p warden-wire --bench decode`.
//!
//! The report is a capture from the official AWS Python agent (network stats, four established
//! connections, five listening TCP ports), decoded as captured (JSON and CBOR, long names) and
//! re-encoded with short names as the Warden agent sends it; a last case adds three custom
//! metrics. Prints the time per decoded report: best and median of `ROUNDS` rounds of `ITERS`
//! decodes (`ITERS` overrides). An argument runs only the cases whose name contains it.
//!
//! The workspace forbids `unsafe`, so a counting global allocator cannot live here; count
//! allocations per decode from outside, e.g. `valgrind` on the bench binary with one case and
//! two values of `ITERS`: the difference in "total heap usage" divided by `ROUNDS` times the
//! difference in `ITERS`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use warden_wire::{CustomMetricValue, Format, Limits, Names, decode_report, encode_report};

const CAPTURE_JSON: &[u8] = include_bytes!("../tests/data/captures/report1.json");
const CAPTURE_CBOR: &[u8] = include_bytes!("../tests/data/captures/report1.cbor");
const ROUNDS: usize = 7;

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--")).unwrap_or_default();
    let iters: u32 = std::env::var("ITERS").ok().and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let limits = Limits::default();
    let report = decode_report(CAPTURE_JSON, Format::Json, &limits).expect("the capture is valid");
    let mut custom = report.clone();
    custom.custom_metrics = Some(BTreeMap::from([
        ("cpu_usage".to_owned(), CustomMetricValue::Number(23.5)),
        ("disk_free".to_owned(), CustomMetricValue::NumberList(vec![0.25, 0.5])),
        ("services".to_owned(), CustomMetricValue::StringList(vec!["sshd".into(), "mosquitto".into()])),
    ]));
    let cases = [
        ("JSON long (capture)", CAPTURE_JSON.to_vec(), Format::Json),
        ("JSON short", encode_report(&report, Format::Json, Names::Short), Format::Json),
        ("CBOR long (capture)", CAPTURE_CBOR.to_vec(), Format::Cbor),
        ("CBOR short", encode_report(&report, Format::Cbor, Names::Short), Format::Cbor),
        ("custom metrics, short CBOR", encode_report(&custom, Format::Cbor, Names::Short), Format::Cbor),
    ];
    println!("{iters} decodes per round, best and median of {ROUNDS} rounds");
    for (name, bytes, format) in cases.iter().filter(|(name, ..)| name.contains(&filter)) {
        decode_report(bytes, *format, &limits).expect("the bench report is valid");

        let mut rounds: Vec<f64> = (0..ROUNDS)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(decode_report(black_box(bytes), *format, &limits).is_ok());
                }
                start.elapsed().as_nanos() as f64 / f64::from(iters)
            })
            .collect();
        rounds.sort_by(f64::total_cmp);
        println!(
            "{name:<22} {:>4} bytes  best {:>6.0} ns/report  median {:>6.0} ns/report",
            bytes.len(),
            rounds[0],
            rounds[ROUNDS / 2],
        );
    }
}
