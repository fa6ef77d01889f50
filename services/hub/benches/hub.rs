//! Hub benchmark: the real hub in-process, over mTLS on loopback, with sled in
//! a temp dir.
//!
//! 1. Loads 150 synthetic sites × 40 quarters (6,000 submissions) from 50
//!    concurrent site clients, each with its own site certificate, and reports
//!    submissions per second (every submission is durably flushed before it is
//!    acknowledged).
//! 2. Measures `CompareMetric` across all 150 sites and all 40 quarters:
//!    200 requests from one analyst client, median and 99th percentile.
//!
//! 3. Prints the process's resident memory (VmRSS after each phase, and the
//!    peak VmHWM) for sizing the Kubernetes memory limit. It is an upper
//!    bound for the hub: the same process also holds the 150 site clients and
//!    the generated submissions.
//!
//! Run: `MALLOC_ARENA_MAX=2 cargo bench -p lacnet-hub --bench hub` (the
//! manifests set `MALLOC_ARENA_MAX=2` too).

use std::time::{Duration, Instant};

use lacnet_core::disclosure::{self, DisclosurePolicy};
use lacnet_core::metrics::{Aggregates, METRIC_COUNT, catalogue};
use lacnet_core::period::Period;
use lacnet_core::submission;
use lacnet_hub::registry::{Site, UnitCost};
use lacnet_hub::{Hub, HubOptions, Registry};
use lacnet_proto::common::v1 as pb;
use lacnet_proto::convert::{packed, period_to_proto, policy_to_proto};
use lacnet_proto::hub::v1 as hub;
use lacnet_proto::hub::v1::reports_client::ReportsClient;
use lacnet_proto::hub::v1::submissions_client::SubmissionsClient;
use lacnet_tls::dev::{DevCa, bundle};
use lacnet_tls::{Peer, PemBundle};
use prost::Message;

const SITES: usize = 150;
const QUARTERS: usize = 40;
const CLIENTS: usize = 50;
const REPORTS: usize = 200;

/// A small deterministic generator (no dependency, same data every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    /// Splits `total` into `parts` non-negative counts.
    fn split(&mut self, total: u64, parts: usize) -> Vec<u64> {
        let mut left = total;
        let mut out = Vec::with_capacity(parts);
        for i in 0..parts {
            let take = if i + 1 == parts {
                left
            } else {
                self.below(left / 2 + 1)
            };
            out.push(take);
            left -= take;
        }
        out
    }
}

/// Realistic true counts: a few hundred people, introductions split across every table.
fn aggregates(rng: &mut Lcg, size: u64) -> Aggregates {
    use lacnet_core::metrics as m;
    use lacnet_core::vocab::*;
    let mut a = Aggregates::default();
    let active = size + rng.below(size / 2);
    let intros = active / 3 + rng.below(20);
    a.counts[m::PEOPLE_ACTIVE] = active;
    a.counts[m::PEOPLE_NEW] = intros.saturating_sub(rng.below(5));
    a.counts[m::INTRODUCTIONS_NEW] = intros;
    a.counts[m::CLOSURES] = intros / 2;
    for (l, v) in SupportLevel::ALL.iter().zip(rng.split(intros, 2)) {
        a.counts[m::support_level(*l)] = v;
    }
    let bands = rng.split(intros, AgeBand::ALL.len());
    for (b, v) in AgeBand::ALL.iter().zip(&bands) {
        a.counts[m::age_band(*b)] = *v;
        let g = b.group();
        if g != AgeGroup::Under18 {
            a.counts[m::age_group(g)] += *v;
        }
    }
    for (n, v) in PrimaryNeed::ALL
        .iter()
        .zip(rng.split(intros, PrimaryNeed::ALL.len()))
    {
        a.counts[m::primary_need(*n)] = v;
    }
    for (s, v) in IntroductionSource::ALL
        .iter()
        .zip(rng.split(intros, IntroductionSource::ALL.len()))
    {
        a.counts[m::source(*s)] = v;
    }
    for o in Outcome::ALL {
        a.counts[m::outcome(*o)] = rng.below(active / 4 + 1);
    }
    a
}

fn wire(site: &str, period: Period, agg: &Aggregates) -> pb::Submission {
    let policy = DisclosurePolicy::default();
    let published = disclosure::apply(agg, &policy);
    pb::Submission {
        structural_zeros: Vec::new(),
        site_code: site.into(),
        period: Some(period_to_proto(period)),
        revision: 1,
        digest: submission::digest(site, period, &policy, &published),
        policy: Some(policy_to_proto(&policy)),
        // As agents send it: the compact form.
        cells: Vec::new(),
        packed: packed(&published),
        generated_at_unix: 1_700_000_000,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // A watchdog so a hang fails loudly instead of running forever.
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(300), run())
            .await
            .expect("benchmark took over 5 minutes")
    });
}

async fn run() {
    let codes: Vec<String> = (0..SITES).map(|i| format!("E99{i:06}")).collect();
    let sites = codes
        .iter()
        .enumerate()
        .map(|(i, code)| {
            Site::new(
                code,
                &format!("Synthetic site {i}"),
                80_000 + 5_000 * i as u64,
            )
        })
        .collect();
    let unit_costs = vec![UnitCost {
        outcome: lacnet_core::vocab::Outcome::AlternativeToDayServices,
        pence: 40_000,
        source: "benchmark".into(),
    }];
    let registry = Registry::new(sites, DisclosurePolicy::default(), unit_costs).unwrap();

    eprintln!(
        "generating certificates and {} submissions...",
        SITES * QUARTERS
    );
    let ca = DevCa::new("bench CA").unwrap();
    let server = bundle(&ca, &ca.issue_server(&["hub.lacnet"]).unwrap());
    let site_pems: Vec<PemBundle> = codes
        .iter()
        .map(|c| bundle(&ca, &ca.issue(&Peer::Site(c.clone()), &[]).unwrap()))
        .collect();
    let analyst = bundle(&ca, &ca.issue(&Peer::Analyst("bench".into()), &[]).unwrap());
    let first = Period::parse("2015-Q1").unwrap();
    let periods: Vec<Period> = std::iter::successors(Some(first), |p| Some(p.next()))
        .take(QUARTERS)
        .collect();
    let mut rng = Lcg(42);
    let tables: Vec<Vec<Aggregates>> = codes
        .iter()
        .map(|_| {
            let size = 50 + rng.below(400);
            periods.iter().map(|_| aggregates(&mut rng, size)).collect()
        })
        .collect();
    // Disclosure control of each table is the slow part of the set-up: one
    // thread per core (the tables, and so the submissions, are the same).
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = SITES.div_ceil(threads);
    let submissions: Vec<Vec<pb::Submission>> = std::thread::scope(|s| {
        let workers: Vec<_> = codes
            .chunks(chunk)
            .zip(tables.chunks(chunk))
            .map(|(codes, tables)| {
                let periods = &periods;
                s.spawn(move || {
                    codes
                        .iter()
                        .zip(tables)
                        .map(|(code, site)| {
                            periods
                                .iter()
                                .zip(site)
                                .map(|(p, agg)| wire(code, *p, agg))
                                .collect::<Vec<_>>()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });

    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::open(HubOptions::new(dir.path(), registry, server)).unwrap();
    let listener = lacnet_server::bind_nodelay("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(lacnet_hub::serve(
        listener,
        hub.clone(),
        stop.clone().cancelled_owned(),
    ));

    // Phase 1: 50 concurrent clients; client k submits for sites k, k+50, k+100,
    // each with that site's own certificate.
    let mut channels = Vec::with_capacity(SITES);
    for pem in &site_pems {
        channels.push(lacnet_tls::connect(&url, pem, "localhost").await.unwrap());
    }
    eprintln!("submitting...");
    let started = Instant::now();
    // Each client owns its sites' submissions and sends them without a copy.
    let mut submissions: Vec<Option<Vec<pb::Submission>>> =
        submissions.into_iter().map(Some).collect();
    let mut workers = Vec::new();
    for k in 0..CLIENTS {
        let mine: Vec<(Vec<pb::Submission>, tonic::transport::Channel)> = (k..SITES)
            .step_by(CLIENTS)
            .map(|s| (submissions[s].take().unwrap(), channels[s].clone()))
            .collect();
        workers.push(tokio::spawn(async move {
            let mut n = 0usize;
            for (subs, channel) in mine {
                let mut client = SubmissionsClient::new(channel);
                for sub in subs {
                    let receipt = client
                        .submit(hub::SubmitRequest {
                            submission: Some(sub),
                        })
                        .await
                        .unwrap()
                        .into_inner();
                    assert_eq!(receipt.status, hub::ReceiptStatus::New as i32);
                    n += 1;
                }
            }
            n
        }));
    }
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap();
    }
    let load = started.elapsed();
    eprintln!("submitted");
    assert_eq!(total, SITES * QUARTERS);
    let rss_after_load = proc_status_mb("VmRSS:");

    // Phase 2: CompareMetric over all sites and all 40 quarters.
    let mut reports = ReportsClient::new(
        lacnet_tls::connect(&url, &analyst, "localhost")
            .await
            .unwrap(),
    )
    .max_decoding_message_size(64 * 1024 * 1024);
    let ids: Vec<String> = catalogue().metrics().iter().map(|m| m.id.clone()).collect();
    let request = |i: usize| hub::CompareMetricRequest {
        metric: ids[i % METRIC_COUNT].clone(),
        from: Some(period_to_proto(periods[0])),
        to: Some(period_to_proto(periods[QUARTERS - 1])),
    };
    let mut bytes = 0;
    for i in 0..10 {
        let r = reports
            .compare_metric(request(i))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.periods.len(), QUARTERS);
        assert!(r.periods.iter().all(|p| p.sites.len() == SITES));
        bytes = r.encoded_len();
    }
    let mut latencies = Vec::with_capacity(REPORTS);
    for i in 0..REPORTS {
        let t = Instant::now();
        let r = reports.compare_metric(request(i)).await.unwrap();
        latencies.push(t.elapsed());
        std::hint::black_box(r);
    }
    latencies.sort();

    // The same report without the network, for comparison.
    let mut local = Vec::with_capacity(REPORTS);
    for i in 0..REPORTS {
        let t = Instant::now();
        let r = hub
            .compare_metric(&lacnet_hub::authz::ReadScope::Network, &request(i))
            .unwrap();
        local.push(t.elapsed());
        std::hint::black_box(r);
    }
    local.sort();

    let rss_after_reports = proc_status_mb("VmRSS:");
    stop.cancel();
    task.await.unwrap().unwrap();

    println!();
    println!("lacnet-hub benchmark ({SITES} sites x {QUARTERS} quarters, mTLS on loopback)");
    println!(
        "  submissions: {total} from {CLIENTS} concurrent site clients in {:.2} s = {:.0} submissions/s (each flushed to disk before acknowledgement)",
        load.as_secs_f64(),
        total as f64 / load.as_secs_f64()
    );
    println!(
        "  CompareMetric, all {SITES} sites x {QUARTERS} quarters ({REPORTS} requests, response {} KB):",
        bytes / 1024
    );
    println!(
        "    over gRPC:   median {:.2} ms, p99 {:.2} ms  (target: median < 10 ms)",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0))
    );
    println!(
        "    in process:  median {:.2} ms, p99 {:.2} ms  (building the report only)",
        ms(percentile(&local, 50.0)),
        ms(percentile(&local, 99.0))
    );
    println!(
        "  process RSS: {rss_after_load:.0} MB after the submissions, {rss_after_reports:.0} MB after the reports, peak {:.0} MB (hub, clients and generated data together)",
        proc_status_mb("VmHWM:")
    );
}

/// A memory figure from `/proc/self/status` (`VmRSS:`, `VmHWM:`) in MB, or NaN off Linux.
fn proc_status_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
