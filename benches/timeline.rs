//! Rendering 10,000 spans must stay under 100 ms. Run with `cargo bench --bench
//! timeline`.
//!
//! Printed against two baselines measured in the same run, since absolute figures drift
//! on a shared machine:
//! * the floor of any SVG writer: `format!` of 10,000 bare `<rect>` lines into a string;
//! * for recording, two `Instant::now()` calls, the least a span can cost.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use conclab::timeline::Timeline;

const SPANS: usize = 10_000;
const ROWS: usize = 8;
const RUNS: usize = 7;
const TARGET: Duration = Duration::from_millis(100);

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time<T>(mut f: impl FnMut() -> T) -> Duration {
    let samples = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            black_box(f());
            start.elapsed()
        })
        .collect();
    median(samples)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    // 10,000 spans over 8 threads, as a pool of 8 workers doing 1,250 tasks each would
    // leave them; recorded through the public API, then drawn.
    let timeline = Timeline::with_capacity("10,000 spans", SPANS).expect("map the store");
    let record_start = Instant::now();
    std::thread::scope(|s| {
        for w in 0..ROWS {
            let timeline = &timeline;
            std::thread::Builder::new()
                .name(format!("worker-{w}"))
                .spawn_scoped(s, move || {
                    for i in 0..SPANS / ROWS {
                        timeline.span(format!("task {}", w * SPANS / ROWS + i), || {
                            black_box((0..50u64).sum::<u64>())
                        });
                    }
                })
                .expect("spawn a worker");
        }
    });
    let record = record_start.elapsed();
    assert_eq!(timeline.len(), SPANS);

    let clock_start = Instant::now();
    for _ in 0..SPANS {
        black_box((Instant::now(), Instant::now()));
    }
    let clock = clock_start.elapsed();

    let render = time(|| timeline.svg());
    let svg_len = timeline.svg().len();
    let spans = timeline.spans();
    let floor = time(|| {
        let mut out = String::with_capacity(svg_len);
        for (i, s) in spans.iter().enumerate() {
            let _ = writeln!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"20\" fill=\"#4E79A7\"/>",
                s.start.as_micros() % 900,
                (i % ROWS) * 24,
                s.duration().as_micros().max(1)
            );
        }
        out
    });
    let text = time(|| timeline.to_string());

    println!("timeline bench: {SPANS} spans on {ROWS} rows, median of {RUNS} runs");
    println!(
        "  render svg()     {:8.2} ms  ({} KiB)  target < {} ms: {}  ({:.2} of the target)",
        ms(render),
        svg_len / 1024,
        TARGET.as_millis(),
        if render < TARGET { "met" } else { "MISSED" },
        render.as_secs_f64() / TARGET.as_secs_f64()
    );
    println!(
        "  baseline: bare <rect> format!  {:8.2} ms  -> svg() is {:.1}x the floor",
        ms(floor),
        render.as_secs_f64() / floor.as_secs_f64().max(1e-9)
    );
    println!("  text summary (Display)          {:8.2} ms", ms(text));
    println!(
        "  record: {:.0} ns per span on {ROWS} threads; baseline two Instant::now(): {:.0} ns \
         ({:.1}x)",
        record.as_nanos() as f64 / SPANS as f64,
        clock.as_nanos() as f64 / SPANS as f64,
        record.as_secs_f64() / clock.as_secs_f64().max(1e-9)
    );
}
