//! Metering benchmark: durable ingest rate of the ledger and bill generation over a month
//! of one tenant's events.
//!
//! 1. Generates `events` events (default 1,000,000) for one tenant over 2026-11: about 99%
//!    `api.request` (the gateway's attribute shape, spread over 8 departments and none) and
//!    the lifecycle of `events / 500` instances (run, resize, stop, start, terminate; every
//!    7th instance is never terminated and still runs at the end of the period). Ids are
//!    v7 UUIDs (time-ordered, as the gateway's `fast_uuid` makes them) from a seeded
//!    generator, so every run inserts the same ids.
//! 2. Ingests them, in time order and batches of `batch` (default 512, the gateway tap's
//!    batch size), into a fresh ledger (WAL, `synchronous = FULL`, one transaction per
//!    batch) in a temporary directory: `rounds` times (default 3), each into a new ledger.
//!    Reports acknowledged events per second (median, min, max) and per-batch latency.
//! 3. On the last round's ledger: `tenant_bill` for the tenant and period (`rounds` times,
//!    median), its two ledger queries on their own, and the FOCUS CSV rendering. The bill's
//!    line count and total are checked against values computed here from the generator.
//!
//! `LEDGER=postgres` measures the shared ledger instead, on a PostgreSQL server the
//! benchmark starts (loopback, `fsync = on`, a fresh database per round); `WRITERS=n`
//! deals the batches to `n` connections writing at once, as `n` replicas would.
//!
//! Usage: [LEDGER=sqlite|postgres] skyport-metering-bench [events=1000000] [rounds=3] [batch=512]
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;
use skyport_metering::billing::{ledger_time, tenant_bill};
use skyport_metering::export;
use skyport_metering::ledger::{Ledger, PgLedger, PgSettings, SqliteLedger};
use skyport_metering::period::Period;
use skyport_metering::rating::RateCard;
use skyport_metering::record_types::built_in;
use skyport_metering::validate::Limits;
use skyport_plugin_api::ops::MeterEvent;
use skyport_store_postgres::testkit::PostgresServer;
use time::OffsetDateTime;

const TENANT: &str = "bench";
const PERIOD: &str = "2026-11";
const DEPARTMENTS: [&str; 8] = [
    "eng",
    "finance",
    "ops",
    "sales",
    "research",
    "support",
    "marketing",
    "legal",
];
/// (name, vCPUs, MiB, local-vmm price per hour): the catalogue and the embedded rate card.
const TYPES: [(&str, u64, u64, f64); 4] = [
    ("sp.micro", 1, 128, 0.005),
    ("sp.small", 1, 256, 0.01),
    ("sp.medium", 2, 512, 0.02),
    ("sp.large", 2, 1024, 0.04),
];
const API_PRICE_PER_1000: f64 = 0.004;
const ROUTES: [&str; 5] = [
    "/v1/whoami",
    "/v1/regions",
    "/v1/instances",
    "/v1/instances/{id}",
    "/v1/usage",
];
const MS_PER_HOUR: i64 = 3_600_000;

/// SplitMix64: a tiny seeded generator, so every run generates the same events.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A v7 UUID for an event at `millis` (Unix ms), like the gateway's ids: the time in
    /// the top 48 bits, then random bits.
    fn uuid(&mut self, millis: i64) -> String {
        let (a, b) = (
            (millis as u64) << 16 | (self.next() & 0x0FFF) | 0x7000,
            self.next(),
        );
        let b = (b & !(0xC << 60)) | (0x8 << 60); // variant 10
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xFFFF,
            a & 0xFFFF,
            b >> 48,
            b & 0xFFFF_FFFF_FFFF
        )
    }
}

/// The generated month, plus what its bill must say.
struct Workload {
    events: Vec<MeterEvent>,
    api_events: usize,
    lifecycle_events: usize,
    instances: usize,
    expected_lines: usize,
    expected_total: f64,
}

fn at(ms: i64) -> String {
    ledger_time(
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .expect("time in range"),
    )
}

fn generate(n: usize, period: Period) -> Workload {
    let start_ms = (period.start().unix_timestamp_nanos() / 1_000_000) as i64;
    let span_ms = ((period.end() - period.start()).whole_milliseconds()) as i64;
    let mut rng = Rng(0x5EED_0000_2026_0011);
    let mut timed: Vec<(i64, MeterEvent)> = Vec::with_capacity(n);
    let mut expected_total = 0.0;
    let mut expected_lines = 0;

    // Lifecycles: run -> resize -> stop -> start -> terminate, all inside the period.
    let instances = if n >= 50 { n / 500 } else { 0 }.max(usize::from(n >= 10));
    let mut lifecycle_events = 0;
    for k in 0..instances {
        let id = format!("i-{:017x}", rng.next() & ((1 << 60) - 1));
        let department = DEPARTMENTS[k % DEPARTMENTS.len()];
        let first = TYPES[k % TYPES.len()];
        let second = TYPES[(k + 1) % TYPES.len()];
        let run = start_ms + rng.below(20 * 24) as i64 * MS_PER_HOUR + rng.below(3_600_000) as i64;
        let resize = run + (1 + rng.below(48)) as i64 * MS_PER_HOUR / 2;
        let stop = resize + (1 + rng.below(48)) as i64 * MS_PER_HOUR / 2;
        let start = stop + (1 + rng.below(24)) as i64 * MS_PER_HOUR / 4;
        let terminated = k % 7 != 6;
        let end = if terminated {
            start + (1 + rng.below(96)) as i64 * MS_PER_HOUR / 2
        } else {
            start_ms + span_ms // billed up to the period's end
        };
        let mut steps = vec![
            (run, "run", first, "running"),
            (resize, "resize", second, "running"),
            (stop, "stop", second, "stopped"),
            (start, "start", second, "running"),
        ];
        if terminated {
            steps.push((end, "terminate", second, "terminated"));
        }
        for (time, event, (instance_type, vcpus, memory_mib, _), state) in steps {
            let e = MeterEvent {
                id: rng.uuid(time),
                record_type: "instance.lifecycle".into(),
                time: at(time),
                tenant: TENANT.into(),
                department: Some(department.into()),
                attributes: json!({
                    "event": event,
                    "instance_id": id,
                    "provider": "local-vmm",
                    "region": "local-1",
                    "instance_type": instance_type,
                    "vcpus": vcpus,
                    "memory_mib": memory_mib,
                    "state": state,
                    "initiated_by": "api",
                }),
            };
            timed.push((time, e));
            lifecycle_events += 1;
        }
        let hours = |from: i64, to: i64| (to - from) as f64 / MS_PER_HOUR as f64;
        expected_total += hours(run, resize) * first.3
            + hours(resize, stop) * second.3
            + hours(start, end) * second.3;
        expected_lines += 3;
    }

    // API requests, evenly over the month (with jitter), 8 departments and none.
    let api_events = n - lifecycle_events;
    let mut per_department = [0u64; DEPARTMENTS.len() + 1];
    for i in 0..api_events {
        let base = start_ms + (i as i64 * span_ms) / api_events.max(1) as i64;
        let time = (base + rng.below(1000) as i64).min(start_ms + span_ms - 1);
        let d = i % (DEPARTMENTS.len() + 1);
        per_department[d] += 1;
        let e = MeterEvent {
            id: rng.uuid(time),
            record_type: "api.request".into(),
            time: at(time),
            tenant: TENANT.into(),
            department: DEPARTMENTS.get(d).map(|d| d.to_string()),
            attributes: json!({
                "request_id": format!("{:016x}", rng.next()),
                "identity_source": "jwt",
                "route": ROUTES[i % ROUTES.len()],
                "method": if i % 10 == 0 { "POST" } else { "GET" },
                "status": if i % 50 == 0 { 404 } else { 200 },
                "bytes_in": rng.below(512),
                "bytes_out": 64 + rng.below(4096),
                "latency_us": 50 + rng.below(2000),
            }),
        };
        timed.push((time, e));
    }
    for requests in per_department.iter().filter(|r| **r > 0) {
        expected_total += *requests as f64 / 1000.0 * API_PRICE_PER_1000;
        expected_lines += 1;
    }

    // The tap delivers in (roughly) time order.
    timed.sort_by_key(|(time, _)| *time);
    Workload {
        events: timed.into_iter().map(|(_, e)| e).collect(),
        api_events,
        lifecycle_events,
        instances,
        expected_lines,
        expected_total,
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[(v.len() - 1) / 2]
}

fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn dir_size(dir: &PathBuf) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

struct IngestRound {
    rate: f64,
    seconds: f64,
    batch_p50: Duration,
    batch_p99: Duration,
    batch_max: Duration,
    bytes: u64,
}

/// Where the rounds' ledgers are made.
enum Store {
    /// A fresh SQLite ledger per round, in a temporary directory.
    Sqlite,
    /// A fresh database per round on a PostgreSQL server of the benchmark's own, with
    /// commits flushed to the disk, written by `writers` connections at once (replicas).
    Postgres {
        server: PostgresServer,
        writers: usize,
    },
}

impl Store {
    fn from_env() -> Result<Self, String> {
        match std::env::var("LEDGER").as_deref() {
            Err(_) | Ok("sqlite") => Ok(Self::Sqlite),
            Ok("postgres") => Ok(Self::Postgres {
                server: PostgresServer::start_durable().map_err(|e| e.to_string())?,
                writers: std::env::var("WRITERS")
                    .ok()
                    .and_then(|w| w.parse().ok())
                    .filter(|w| *w > 0)
                    .unwrap_or(1),
            }),
            Ok(other) => Err(format!("LEDGER={other}: use sqlite or postgres")),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Sqlite => "SQLite: WAL, synchronous=FULL".into(),
            Self::Postgres { writers, .. } => {
                format!("PostgreSQL: fsync=on, {writers} writer connection(s)")
            }
        }
    }

    /// A new, empty ledger for round `round` (its files under `dir` for SQLite), through
    /// as many connections as there are writers.
    fn fresh(&self, dir: &PathBuf, round: usize) -> Result<Vec<Box<dyn Ledger + Send>>, String> {
        match self {
            Self::Sqlite => {
                let _ = std::fs::remove_dir_all(dir);
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                Ok(vec![Box::new(
                    SqliteLedger::open(dir).map_err(|e| e.to_string())?,
                )])
            }
            Self::Postgres { server, writers } => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                let url = runtime
                    .block_on(server.create_database(&format!("round_{round}")))
                    .map_err(|e| e.to_string())?;
                let settings = PgSettings {
                    url,
                    password: Some(server.password().to_string()),
                    connect_timeout: Duration::from_secs(5),
                    statement_timeout: Duration::from_secs(60),
                };
                (0..*writers)
                    .map(|_| {
                        PgLedger::open(&settings)
                            .map(|l| Box::new(l) as Box<dyn Ledger + Send>)
                            .map_err(|e| e.to_string())
                    })
                    .collect()
            }
        }
    }
}

/// Ingests `events` in batches of `batch`, the batches dealt in turn to `ledgers` (one
/// thread each, as replicas sharing one ledger would send them); the first ledger is
/// returned for the bill.
fn ingest_round(
    mut ledgers: Vec<Box<dyn Ledger + Send>>,
    dir: &PathBuf,
    events: &[MeterEvent],
    batch: usize,
    now: SystemTime,
) -> Result<(Box<dyn Ledger + Send>, IngestRound), String> {
    for t in built_in() {
        for ledger in &mut ledgers {
            ledger.register(&t, now)?;
        }
    }
    let writers = ledgers.len();
    let chunks: Vec<&[MeterEvent]> = events.chunks(batch).collect();
    let started = Instant::now();
    let mut latencies = std::thread::scope(|scope| {
        let handles: Vec<_> = ledgers
            .iter_mut()
            .enumerate()
            .map(|(w, ledger)| {
                let mine: Vec<&[MeterEvent]> =
                    chunks.iter().skip(w).step_by(writers).copied().collect();
                scope.spawn(move || write_batches(&mut **ledger, &mine, now))
            })
            .collect();
        let mut all = Vec::new();
        for handle in handles {
            all.extend(
                handle
                    .join()
                    .map_err(|_| "a writer panicked".to_string())??,
            );
        }
        Ok::<_, String>(all)
    })?;
    let elapsed = started.elapsed();
    let ledger = ledgers.swap_remove(0);
    let stored: u64 = ledger
        .stats()
        .map_err(|e| e.to_string())?
        .events
        .values()
        .sum();
    if stored != events.len() as u64 {
        return Err(format!(
            "ledger holds {stored} events, {} sent",
            events.len()
        ));
    }
    latencies.sort();
    Ok((
        ledger,
        IngestRound {
            rate: events.len() as f64 / elapsed.as_secs_f64(),
            seconds: elapsed.as_secs_f64(),
            batch_p50: percentile(&latencies, 0.5),
            batch_p99: percentile(&latencies, 0.99),
            batch_max: latencies.last().copied().unwrap_or_default(),
            bytes: dir_size(dir),
        },
    ))
}

/// Ingests `chunks` one after the other (each acknowledged before the next, as the tap
/// sends them); each one's latency.
fn write_batches(
    ledger: &mut dyn Ledger,
    chunks: &[&[MeterEvent]],
    now: SystemTime,
) -> Result<Vec<Duration>, String> {
    let limits = Limits::default();
    let mut latencies = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        let t0 = Instant::now();
        let outcome = ledger
            .ingest(chunk, &limits, now)
            .map_err(|e| format!("ingest: {e}"))?;
        latencies.push(t0.elapsed());
        if outcome.accepted != chunk.len() {
            return Err(format!(
                "batch not fully accepted: {} accepted, {} duplicates, rejected {:?}",
                outcome.accepted,
                outcome.duplicates,
                outcome.rejected.first()
            ));
        }
    }
    Ok(latencies)
}

fn arg(args: &[String], i: usize, default: usize) -> Result<usize, String> {
    match args.get(i) {
        None => Ok(default),
        Some(a) => {
            let value = a.rsplit('=').next().unwrap_or(a);
            value
                .replace('_', "")
                .parse::<usize>()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| {
                    format!("argument '{a}': a positive integer; usage: skyport-metering-bench [events=1000000] [rounds=3] [batch=512]")
                })
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n = arg(&args, 0, 1_000_000)?;
    let rounds = arg(&args, 1, 3)?;
    let batch = arg(&args, 2, 512)?;
    let period = Period::parse(PERIOD)?;
    // Events are received at the end of the period (none is in the future); the bill is
    // asked for an hour later, so it covers the whole month and every event received.
    let received = period.end();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(received.unix_timestamp() as u64);
    let now_odt = received + time::Duration::HOUR;

    let t0 = Instant::now();
    let work = generate(n, period);
    eprintln!(
        "generated {} events ({} api.request, {} instance.lifecycle over {} instances) in {:.1} s",
        work.events.len(),
        work.api_events,
        work.lifecycle_events,
        work.instances,
        t0.elapsed().as_secs_f64()
    );

    let base = std::env::temp_dir().join(format!("skyport-metering-bench-{}", std::process::id()));
    let store = Store::from_env()?;
    let result = measure(&work, &store, &base, rounds, batch, period, now, now_odt);
    let _ = std::fs::remove_dir_all(&base);
    result
}

#[allow(clippy::too_many_arguments)]
fn measure(
    work: &Workload,
    store: &Store,
    base: &std::path::Path,
    rounds: usize,
    batch: usize,
    period: Period,
    now: SystemTime,
    now_odt: OffsetDateTime,
) -> Result<(), String> {
    let n = work.events.len();
    // Ingest: a fresh ledger per round; the last one is kept for the bill.
    let mut ingests = Vec::new();
    let mut ledger = None;
    for r in 1..=rounds {
        let dir = base.join(format!("round-{r}"));
        drop(ledger.take());
        if r > 1 {
            let _ = std::fs::remove_dir_all(base.join(format!("round-{}", r - 1)));
        }
        let fresh = store.fresh(&dir, r)?;
        let (l, round) = ingest_round(fresh, &dir, &work.events, batch, now)?;
        eprintln!(
            "ingest round {r}: {:.0} events/s ({:.2} s; batch p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms; {:.0} MiB on disk)",
            round.rate,
            round.seconds,
            ms(round.batch_p50),
            ms(round.batch_p99),
            ms(round.batch_max),
            round.bytes as f64 / 1048576.0
        );
        ingests.push(round);
        ledger = Some(l);
    }
    let ledger = ledger.ok_or("no round ran")?;

    // Bill: the whole thing, then its two ledger queries alone, then the FOCUS rendering.
    let card = RateCard::embedded();
    let mut bill_s = Vec::new();
    let mut lifecycle_s = Vec::new();
    let mut api_s = Vec::new();
    let mut focus_s = Vec::new();
    let mut bill = None;
    let mut csv_bytes = 0;
    let focus = export::handler("focus")?;
    for r in 1..=rounds {
        let t = Instant::now();
        let b = tenant_bill(&*ledger, &card, TENANT, None, period, now_odt)?;
        bill_s.push(t.elapsed().as_secs_f64());

        let t = Instant::now();
        let rows = ledger
            .lifecycle_rows(TENANT, &ledger_time(period.end()), &ledger_time(now_odt))
            .map_err(|e| e.to_string())?;
        lifecycle_s.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let counts = ledger
            .api_request_counts(
                TENANT,
                &ledger_time(period.start()),
                &ledger_time(period.end()),
                &ledger_time(now_odt),
            )
            .map_err(|e| e.to_string())?;
        api_s.push(t.elapsed().as_secs_f64());
        if rows.len() != work.lifecycle_events
            || counts.iter().map(|(_, c)| *c).sum::<u64>() != work.api_events as u64
        {
            return Err(format!(
                "ledger queries: {} lifecycle rows (want {}), {:?} api counts (want {} in all)",
                rows.len(),
                work.lifecycle_events,
                counts,
                work.api_events
            ));
        }

        let t = Instant::now();
        let csv = focus.render(&b)?;
        focus_s.push(t.elapsed().as_secs_f64());
        csv_bytes = csv.len();
        eprintln!(
            "bill round {r}: tenant_bill {:.3} s (lifecycle_rows {:.3} s, api_request_counts {:.3} s), FOCUS CSV {:.1} ms",
            bill_s[r - 1],
            lifecycle_s[r - 1],
            api_s[r - 1],
            focus_s[r - 1] * 1e3
        );
        bill = Some(b);
    }
    let bill = bill.ok_or("no bill")?;
    let total: f64 = bill.total.to_string().parse().unwrap_or(f64::NAN);
    let bill_ok =
        bill.lines.len() == work.expected_lines && (total - work.expected_total).abs() <= 0.011;

    // Results.
    let rates: Vec<f64> = ingests.iter().map(|i| i.rate).collect();
    let (lo, hi) = min_max(&rates);
    let ingest_median = median(&rates);
    let bill_median = median(&bill_s);
    println!(
        "metering: {n} events ({} api.request, {} instance.lifecycle, {} instances), tenant {TENANT}, period {PERIOD}",
        work.api_events, work.lifecycle_events, work.instances
    );
    println!(
        "batch {batch}, {rounds} rounds, fresh ledger per ingest round ({})",
        store.describe()
    );
    println!(
        "{:<36} {:>12} {:>12} {:>12} {:>10}",
        "", "median", "min", "max", "target"
    );
    println!(
        "{:<36} {:>12.0} {:>12.0} {:>12.0} {:>10}",
        "durable ingest, events/s", ingest_median, lo, hi, ">= 200000"
    );
    let med = |f: &dyn Fn(&IngestRound) -> f64| median(&ingests.iter().map(f).collect::<Vec<_>>());
    println!(
        "{:<36} {:>12.2} {:>12} {:>12} {:>10}",
        "ingest wall time, s",
        med(&|i| i.seconds),
        "",
        "",
        ""
    );
    println!(
        "{:<36} {:>12.2} {:>12} {:>12} {:>10}",
        "batch latency p50, ms",
        med(&|i| ms(i.batch_p50)),
        "",
        "",
        ""
    );
    println!(
        "{:<36} {:>12.2} {:>12} {:>12} {:>10}",
        "batch latency p99, ms",
        med(&|i| ms(i.batch_p99)),
        "",
        "",
        ""
    );
    let (blo, bhi) = min_max(&bill_s);
    println!(
        "{:<36} {:>12.3} {:>12.3} {:>12.3} {:>10}",
        "tenant_bill, s", bill_median, blo, bhi, "< 1"
    );
    let (llo, lhi) = min_max(&lifecycle_s);
    println!(
        "{:<36} {:>12.3} {:>12.3} {:>12.3} {:>10}",
        "  of which lifecycle_rows, s",
        median(&lifecycle_s),
        llo,
        lhi,
        ""
    );
    let (alo, ahi) = min_max(&api_s);
    println!(
        "{:<36} {:>12.3} {:>12.3} {:>12.3} {:>10}",
        "  of which api_request_counts, s",
        median(&api_s),
        alo,
        ahi,
        ""
    );
    let (flo, fhi) = min_max(&focus_s);
    println!(
        "{:<36} {:>12.2} {:>12.2} {:>12.2} {:>10}",
        "FOCUS CSV render, ms",
        median(&focus_s) * 1e3,
        flo * 1e3,
        fhi * 1e3,
        ""
    );
    println!(
        "bill: {} lines (expected {}), total {} {} (expected ~{:.2}), FOCUS CSV {} bytes: {}",
        bill.lines.len(),
        work.expected_lines,
        bill.total,
        bill.currency,
        work.expected_total,
        csv_bytes,
        if bill_ok { "ok" } else { "MISMATCH" }
    );
    println!(
        "targets: ingest {} ({:.0} >= 200000 events/s), bill {} ({:.3} < 1 s)",
        if ingest_median >= 200_000.0 {
            "met"
        } else {
            "NOT met"
        },
        ingest_median,
        if bill_median < 1.0 { "met" } else { "NOT met" },
        bill_median
    );
    if !bill_ok {
        return Err("the bill does not match the generated usage".into());
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("skyport-metering-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
