//! The utility cost of disclosure control on the demo network's data: how
//! many published cells each rule set withholds. `docs/disclosure.md` quotes
//! the figures this prints:
//!
//! ```text
//! cargo test -p lacnet-cli --test utility -- --nocapture
//! ```

use lacnet_cli::csv_format::Layout;
use lacnet_cli::generate::{self, Plan};
use lacnet_cli::mapping::Mapping;
use lacnet_core::Date;
use lacnet_core::aggregate::{PeriodAggregator, periods_touched};
use lacnet_core::disclosure::{self, Count, DisclosurePolicy};
use lacnet_core::metrics::METRIC_COUNT;
use lacnet_core::period::Granularity;
use lacnet_core::pseudonym::{KeyId, Pseudonymiser, Secret};
use lacnet_core::record::PseudonymRecord;
use lacnet_core::validate::validate;
use std::collections::BTreeMap;

/// The demo's sites, seed and cut-off date (`lacnet demo` defaults).
const SITES: [&str; 3] = ["derby", "thurrock", "swansea"];

fn demo_records(site: &str) -> Vec<PseudonymRecord> {
    let profile = generate::profile(site).unwrap();
    let (y, m, d) = lacnet_cli::demo::DEMO_UNTIL;
    let until = Date::new(y, m, d).unwrap();
    let plan = Plan {
        profile,
        seed: 1,
        until: Some(until),
        rows: None,
    };
    let mut csv = Vec::new();
    generate::write_csv(&plan, &mut csv, until).unwrap();
    let mapping = Mapping::default();
    let mut reader = csv::Reader::from_reader(csv.as_slice());
    let layout = Layout::from_header(reader.headers().unwrap(), &mapping).unwrap();
    let key_id = KeyId::new("k1").unwrap();
    let p = Pseudonymiser::new(&Secret::new(vec![7; 32]).unwrap());
    reader
        .records()
        .map(|row| {
            let record = layout.parse(&row.unwrap(), &mapping).unwrap();
            let input = lacnet_site_agent::convert::record_input(record);
            validate(&input, until).unwrap().pseudonymise(&key_id, &p)
        })
        .collect()
}

#[test]
fn demo_data_suppression_counts() {
    let policy = DisclosurePolicy::default();
    let mut total = (0usize, 0usize, 0usize);
    for site in SITES {
        let records = demo_records(site);
        let (y, m, d) = lacnet_cli::demo::DEMO_UNTIL;
        let today = Date::new(y, m, d).unwrap();
        let mut periods: BTreeMap<_, PeriodAggregator> = BTreeMap::new();
        for r in &records {
            for p in periods_touched(r, Granularity::Quarter, today) {
                periods.entry(p).or_insert_with(|| PeriodAggregator::new(p));
            }
        }
        let (mut cells, mut suppressed, mut zeros) = (0, 0, 0);
        for (_, mut agg) in periods {
            for r in &records {
                agg.add(r);
            }
            let aggregates = agg.finish();
            let published = disclosure::apply(&aggregates, &policy);
            assert!(
                disclosure::check_policy(&published, &policy).is_ok(),
                "the agent's own output passes the hub's audit"
            );
            cells += METRIC_COUNT;
            for headline in [
                lacnet_core::metrics::PEOPLE_ACTIVE,
                lacnet_core::metrics::INTRODUCTIONS_NEW,
            ] {
                if published.counts[headline] == Count::Suppressed
                    && aggregates.counts[headline] > 30
                {
                    println!(
                        "{site}: headline {} ({}) withheld",
                        lacnet_core::metrics::catalogue().def(headline).id,
                        aggregates.counts[headline]
                    );
                }
            }
            suppressed += published
                .counts
                .iter()
                .filter(|c| **c == Count::Suppressed)
                .count();
            zeros += aggregates.counts.iter().filter(|c| **c == 0).count();
        }
        println!(
            "{site}: {cells} cells, {suppressed} withheld ({:.1}%), {zeros} true zeros",
            suppressed as f64 * 100.0 / cells as f64
        );
        assert!(suppressed <= cells);
        total = (total.0 + cells, total.1 + suppressed, total.2 + zeros);
    }
    println!(
        "demo network: {} cells, {} withheld ({:.1}%), {} true zeros",
        total.0,
        total.1,
        total.1 as f64 * 100.0 / total.0 as f64,
        total.2
    );
    assert!(total.0 > 0);
}
