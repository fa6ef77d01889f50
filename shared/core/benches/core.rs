//! Benchmarks for lacnet-core's hot paths: pseudonymisation (against raw
//! HMAC-SHA256, to show the cached key state pays off) and aggregating plus
//! protecting a million records (the site agent's period recompute).
//!
//! Run: `cargo bench -p lacnet-core --bench core` (about a minute).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use lacnet_core::aggregate::aggregate;
use lacnet_core::disclosure::{self, DisclosurePolicy};
use lacnet_core::metrics::{INTRODUCTIONS_NEW, PEOPLE_ACTIVE};
use lacnet_core::pseudonym::{KeyId, Pseudonym, Pseudonymiser, Secret};
use lacnet_core::record::{CaseFacts, PseudonymRecord};
use lacnet_core::validate::{PersonId, ValidRecord};
use lacnet_core::vocab::{AgeBand, IntroductionSource, OutcomeSet, PrimaryNeed, SupportLevel};
use lacnet_core::{Date, Period};
use sha2::Sha256;
use std::hint::black_box;
use std::time::Duration;

const NHS: &str = "9434765919";
const RECORDS: usize = 1_000_000;
/// Fewer people than records, so some people have several introductions.
const PEOPLE: u64 = 700_000;

fn date(s: &str) -> Date {
    Date::parse(s).expect("bench dates are valid")
}

fn pseudonymisation(c: &mut Criterion) {
    let key = [0x5au8; 32];
    let secret = Secret::new(key.to_vec()).expect("32 bytes");
    let p = Pseudonymiser::new(&secret);
    let person = PersonId::Nhs(NHS.to_owned());

    let mut g = c.benchmark_group("hmac_sha256_raw");
    g.throughput(Throughput::Elements(1));
    g.bench_function(
        "new_from_slice(32B key)+update(10-digit NHS number)+finalize",
        |b| {
            b.iter(|| {
                let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(black_box(&key))
                    .expect("any key length");
                mac.chain_update(black_box(NHS.as_bytes()))
                    .finalize()
                    .into_bytes()
            })
        },
    );
    // The fairest floor: HMAC with the key schedule already done (what any
    // careful caller of the hmac crate would do), so only the message costs.
    let keyed = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).expect("any key length");
    g.bench_function(
        "clone(keyed state)+update(10-digit NHS number)+finalize",
        |b| {
            b.iter(|| {
                black_box(&keyed)
                    .clone()
                    .chain_update(black_box(NHS.as_bytes()))
                    .finalize()
                    .into_bytes()
            })
        },
    );
    g.finish();

    let mut g = c.benchmark_group("pseudonymise_person");
    g.throughput(Throughput::Elements(1));
    g.bench_function(
        "Pseudonymiser::person(Nhs(10 digits)), cached key state",
        |b| b.iter(|| p.person(black_box(&person))),
    );
    g.finish();

    let record = ValidRecord {
        local_case_id: "LAC-2025-000123".to_owned(),
        person,
        facts: CaseFacts {
            introduced_on: date("2025-01-15"),
            closed_on: None,
            support_level: SupportLevel::Level2,
            age_band: AgeBand::From65To74,
            primary_need: PrimaryNeed::SocialIsolation,
            source: IntroductionSource::GpHealth,
            outcomes: OutcomeSet::EMPTY,
            outcome_dates: lacnet_core::vocab::NO_OUTCOME_DATES,
            last_contact_on: None,
        },
        ward_code: Some("E05001234".to_owned()),
    };
    let key_id = KeyId::new("k1").expect("valid id");
    let mut g = c.benchmark_group("pseudonymise_record");
    g.throughput(Throughput::Elements(1));
    g.bench_function(
        "ValidRecord::pseudonymise (record+person+neighbourhood HMACs)",
        |b| b.iter(|| black_box(&record).pseudonymise(&key_id, &p)),
    );
    g.finish();
}

/// SplitMix64: a tiny deterministic generator, so the data set is the same every run.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn pseudonym_of(n: u64) -> Pseudonym {
    let mut g = SplitMix(n.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut out = [0u8; 32];
    for chunk in out.chunks_exact_mut(8) {
        chunk.copy_from_slice(&g.next().to_le_bytes());
    }
    Pseudonym(out)
}

/// Records introduced over 2023-01-01..2025-06-30, about 60% closed within a year.
fn generate(n: usize) -> Vec<PseudonymRecord> {
    let mut g = SplitMix(42);
    let first = date("2023-01-01").to_storage();
    let span = (date("2025-06-30").to_storage() - first) as u64;
    let key_id = KeyId::new("k1").expect("valid id");
    (0..n)
        .map(|i| {
            let intro = first + g.below(span) as i32;
            let closed = (g.below(10) < 6).then(|| Date::from_storage(intro + g.below(365) as i32));
            PseudonymRecord {
                record: pseudonym_of(i as u64 | 1 << 40),
                person: pseudonym_of(g.below(PEOPLE)),
                key_id: key_id.clone(),
                facts: CaseFacts {
                    introduced_on: Date::from_storage(intro),
                    closed_on: closed,
                    support_level: SupportLevel::ALL[g.below(2) as usize],
                    age_band: AgeBand::ALL[g.below(AgeBand::ALL.len() as u64) as usize],
                    primary_need: PrimaryNeed::ALL[g.below(PrimaryNeed::ALL.len() as u64) as usize],
                    source: IntroductionSource::ALL
                        [g.below(IntroductionSource::ALL.len() as u64) as usize],
                    outcomes: OutcomeSet::from_bits(g.below(512) as u16 & g.below(512) as u16)
                        .expect("9 bits"),
                    outcome_dates: lacnet_core::vocab::NO_OUTCOME_DATES,
                    last_contact_on: None,
                },
                neighbourhood: None,
            }
        })
        .collect()
}

fn aggregation(c: &mut Criterion) {
    let records = generate(RECORDS);
    let quarter = Period::parse("2025-Q1").expect("valid period");
    let policy = DisclosurePolicy::default();
    let counts = aggregate(&records, quarter);
    eprintln!(
        "data: {RECORDS} records, {PEOPLE} people; in {quarter}: people_active {}, introductions_new {}",
        counts.counts[PEOPLE_ACTIVE], counts.counts[INTRODUCTIONS_NEW]
    );

    let mut g = c.benchmark_group("aggregate_and_protect_1m");
    g.throughput(Throughput::Elements(RECORDS as u64));
    g.sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(1));
    g.bench_function(
        BenchmarkId::new("aggregate+disclosure::apply", "2025-Q1"),
        |b| b.iter(|| disclosure::apply(&aggregate(black_box(&records), quarter), &policy)),
    );
    g.bench_function(BenchmarkId::new("aggregate_only", "2025-Q1"), |b| {
        b.iter(|| aggregate(black_box(&records), quarter))
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = pseudonymisation, aggregation
}
criterion_main!(benches);
