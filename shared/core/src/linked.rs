//! Linked releases: which of a site's releases describe the same people, so
//! that disclosure control protects them jointly.
//!
//! A site publishes months or quarters, and spans over them: each financial
//! year, and (with a programme start) the programme to date at the end of
//! each financial year. A span is counted from the records, never summed, but
//! its figures are still tied to the periods it covers (a year's
//! introductions are its quarters' introductions; its people are at least
//! any quarter's). An attacker holding a span and its periods can narrow a
//! withheld cell of either, which is why each release is protected against
//! every [`PeriodCover`] it takes part in.

use crate::date::Date;
use crate::period::{Granularity, Period};

/// A span and the releases that partition its days, in date order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodCover {
    /// The financial year or programme to date.
    pub span: Period,
    /// A financial year's months or quarters; a programme to date's previous
    /// programme to date followed by the site's period since, or for the
    /// first one the site's periods from the programme start.
    pub members: Vec<Period>,
    /// The programme started after the first member's first day, so that
    /// member also counts days outside the span.
    pub first_partial: bool,
}

/// Whether the programme to date `ptd` is published: at financial-year ends
/// (31 March) only, so that two programmes to date differ by a whole year's
/// events, which its financial year already publishes, and never by a month.
pub fn publishes_programme_to_date(ptd: Period) -> bool {
    ptd.granularity() == Granularity::ProgrammeToDate
        && Period::containing(Granularity::FinancialYear, ptd.end()).end() == ptd.end()
}

/// The cover of `span` for a site reporting by `granularity` whose
/// programme started on `programme_start`; `None` for a period that is not
/// a span, or a programme to date without a programme start or that is
/// never published (not at a financial-year end, or before the start).
///
/// A financial year is covered by its months or quarters. A programme to
/// date is covered by the one a year before and the financial year since;
/// the first one, by the site's periods from the programme start (the first
/// of them partly before the start when the programme began inside it).
pub fn cover_of(
    span: Period,
    granularity: Granularity,
    programme_start: Option<Date>,
) -> Option<PeriodCover> {
    match span.granularity() {
        Granularity::FinancialYear => {
            let mut members = Vec::new();
            let mut p = Period::containing(granularity, span.start());
            while p.end() <= span.end() {
                if p.start() >= span.start() {
                    members.push(p);
                }
                p = p.next();
            }
            Some(PeriodCover {
                span,
                members,
                first_partial: false,
            })
        }
        Granularity::ProgrammeToDate => {
            let start = programme_start?;
            if !publishes_programme_to_date(span) || span.end() < start {
                return None;
            }
            let year = Period::containing(Granularity::FinancialYear, span.end());
            // A programme that started on 1 April: its first programme to
            // date is that year, figure for figure.
            if year.start() >= start {
                let first = year.start() == start;
                let before = Date::from_days_since_epoch(year.start().days_since_epoch() - 1);
                let mut members = vec![year];
                if !first {
                    members.insert(0, Period::containing(Granularity::ProgrammeToDate, before));
                }
                return Some(PeriodCover {
                    span,
                    members,
                    first_partial: false,
                });
            }
            let first = Period::containing(granularity, start);
            let last = Period::containing(granularity, span.end());
            Some(PeriodCover {
                span,
                members: Period::range(first, last),
                first_partial: start > first.start(),
            })
        }
        Granularity::Month | Granularity::Quarter => None,
    }
}

/// Every cover a release of `period` takes part in: for a month or quarter,
/// its financial year's, and the programme to date's at that year's end
/// (which holds the month through the year, or directly in the programme's
/// first year); for a financial year, its own and that programme to date's;
/// for a programme to date, its own and the next one's, which holds it.
pub fn covers_touching(
    period: Period,
    granularity: Granularity,
    programme_start: Option<Date>,
) -> Vec<PeriodCover> {
    let ptd_at = |day: Date| {
        cover_of(
            Period::containing(Granularity::ProgrammeToDate, day),
            granularity,
            programme_start,
        )
    };
    let year_end = |day: Date| Period::containing(Granularity::FinancialYear, day).end();
    // The programme to date at a year's end holds the year, or in the
    // programme's first year the periods of it from the start.
    let in_year = |c: &PeriodCover, fy: Period| {
        c.members
            .iter()
            .any(|m| m.start() >= fy.start() && m.end() <= fy.end())
    };
    let mut out = Vec::new();
    match period.granularity() {
        Granularity::Month | Granularity::Quarter => {
            let fy = Period::containing(Granularity::FinancialYear, period.start());
            out.extend(cover_of(fy, granularity, programme_start));
            out.extend(ptd_at(fy.end()).filter(|c| in_year(c, fy)));
        }
        Granularity::FinancialYear => {
            out.extend(cover_of(period, granularity, programme_start));
            out.extend(ptd_at(period.end()).filter(|c| in_year(c, period)));
        }
        Granularity::ProgrammeToDate => {
            out.extend(cover_of(period, granularity, programme_start));
            let next = Date::from_days_since_epoch(period.end().days_since_epoch() + 1);
            out.extend(ptd_at(year_end(next)).filter(|c| c.members.contains(&period)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Period {
        Period::parse(s).unwrap()
    }

    fn d(s: &str) -> Date {
        Date::parse(s).unwrap()
    }

    #[test]
    fn a_financial_year_is_covered_by_its_quarters_or_months() {
        let q = cover_of(p("FY2024"), Granularity::Quarter, None).unwrap();
        assert_eq!(
            q.members,
            vec![p("2024-Q2"), p("2024-Q3"), p("2024-Q4"), p("2025-Q1")]
        );
        let m = cover_of(p("FY2024"), Granularity::Month, None).unwrap();
        assert_eq!(m.members.len(), 12);
        assert_eq!(m.members[0], p("2024-04"));
        assert_eq!(m.members[11], p("2025-03"));
        assert!(!q.first_partial && !m.first_partial);
    }

    #[test]
    fn a_programme_to_date_is_the_one_a_year_before_and_the_year_since() {
        let start = Some(d("2023-05-15"));
        let c = cover_of(p("PTD2025-03"), Granularity::Quarter, start).unwrap();
        assert_eq!(c.members, vec![p("PTD2024-03"), p("FY2024")]);
        assert!(!c.first_partial);
        // The first one: the quarters from the one the programme started
        // in, part of it before the start.
        let first = cover_of(p("PTD2024-03"), Granularity::Quarter, start).unwrap();
        assert_eq!(
            first.members,
            vec![p("2023-Q2"), p("2023-Q3"), p("2023-Q4"), p("2024-Q1")]
        );
        assert!(first.first_partial);
        // A programme that started on 1 April: the first year is the first
        // programme to date.
        let aligned = cover_of(p("PTD2024-03"), Granularity::Month, Some(d("2023-04-01")));
        let aligned = aligned.unwrap();
        assert!(!aligned.first_partial);
        assert_eq!(aligned.members, vec![p("FY2023")]);
        // Never published: not at a financial-year end, before the start,
        // or with no start.
        assert_eq!(cover_of(p("PTD2024-12"), Granularity::Quarter, start), None);
        assert_eq!(cover_of(p("PTD2023-03"), Granularity::Quarter, start), None);
        assert_eq!(cover_of(p("PTD2025-03"), Granularity::Quarter, None), None);
        assert!(publishes_programme_to_date(p("PTD2025-03")));
        assert!(!publishes_programme_to_date(p("PTD2025-02")));
    }

    #[test]
    fn a_quarter_takes_part_in_its_year_and_the_programme_to_date_at_its_end() {
        let start = Some(d("2023-01-01"));
        let covers = covers_touching(p("2024-Q3"), Granularity::Quarter, start);
        let spans: Vec<Period> = covers.iter().map(|c| c.span).collect();
        assert_eq!(spans, vec![p("FY2024"), p("PTD2025-03")]);
        assert_eq!(covers[1].members, vec![p("PTD2024-03"), p("FY2024")]);
        let covers = covers_touching(p("FY2024"), Granularity::Quarter, start);
        let spans: Vec<Period> = covers.iter().map(|c| c.span).collect();
        assert_eq!(spans, vec![p("FY2024"), p("PTD2025-03")]);
        let covers = covers_touching(p("PTD2024-03"), Granularity::Quarter, start);
        let spans: Vec<Period> = covers.iter().map(|c| c.span).collect();
        assert_eq!(spans, vec![p("PTD2024-03"), p("PTD2025-03")]);
        // In the programme's first year, a quarter is a member itself.
        let covers = covers_touching(p("2023-Q1"), Granularity::Quarter, start);
        let spans: Vec<Period> = covers.iter().map(|c| c.span).collect();
        assert_eq!(spans, vec![p("FY2022"), p("PTD2023-03")]);
        // A quarter of a year before the programme started is in no
        // programme to date.
        let covers = covers_touching(p("2021-Q3"), Granularity::Quarter, start);
        assert_eq!(covers.len(), 1);
    }

    mod truth {
        //! Every relation a cover declares must hold on the true counts:
        //! disclosure control and the red team both build their systems
        //! from them, and a relation the truth breaks would make the
        //! attacker's system infeasible (and withhold whole releases).

        use super::*;
        use crate::aggregate::{CountingRules, aggregate_with};
        use crate::disclosure::{Cover, cover_relations};
        use crate::exact::Op;
        use crate::metrics::METRIC_COUNT;
        use crate::pseudonym::{KeyId, Pseudonym};
        use crate::record::{CaseFacts, PseudonymRecord};
        use crate::vocab::*;
        use proptest::prelude::*;

        fn day(s: &str) -> i64 {
            Date::parse(s).unwrap().days_since_epoch()
        }

        fn records() -> impl Strategy<Value = Vec<PseudonymRecord>> {
            let one = (
                (0u8..12, day("2023-01-01")..day("2026-06-30")),
                proptest::option::of(0i64..500),
                (0usize..2, 0usize..9, 0usize..10, 0usize..8),
                (0u16..512, proptest::collection::vec(0i64..400, 9)),
                proptest::option::of(0i64..600),
            )
                .prop_map(
                    |((person, intro), closed, (l, b, n, s), (bits, days), contact)| {
                        let on = |k: i64| Date::from_days_since_epoch(intro + k);
                        // As validation allows: nothing happens after the closure.
                        let by_closure = |k: i64| on(closed.map_or(k, |c| k.min(c)));
                        let outcomes = OutcomeSet::from_bits(bits).unwrap();
                        let mut outcome_dates = NO_OUTCOME_DATES;
                        for o in outcomes.iter() {
                            outcome_dates[o.index()] = Some(by_closure(days[o.index()]));
                        }
                        PseudonymRecord {
                            record: Pseudonym([0; 32]),
                            person: Pseudonym([person; 32]),
                            key_id: KeyId::new("k1").unwrap(),
                            facts: CaseFacts {
                                introduced_on: on(0),
                                closed_on: closed.map(on),
                                support_level: SupportLevel::ALL[l % SupportLevel::ALL.len()],
                                age_band: AgeBand::ALL[b % AgeBand::ALL.len()],
                                primary_need: PrimaryNeed::ALL[n % PrimaryNeed::ALL.len()],
                                source: IntroductionSource::ALL[s % IntroductionSource::ALL.len()],
                                outcomes,
                                outcome_dates,
                                last_contact_on: contact.map(by_closure),
                            },
                            neighbourhood: None,
                        }
                    },
                );
            proptest::collection::vec(one, 1..60)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            #[test]
            fn every_cover_relation_holds_on_the_truth(
                records in records(),
                monthly in any::<bool>(),
                start in day("2023-01-01")..day("2024-12-31"),
            ) {
                let granularity = if monthly { Granularity::Month } else { Granularity::Quarter };
                let start = Date::from_days_since_epoch(start);
                let rules = CountingRules { programme_start: Some(start), ..Default::default() };
                let mut periods = Period::range(
                    Period::containing(granularity, Date::parse("2023-04-01").unwrap()),
                    Period::containing(granularity, Date::parse("2026-03-31").unwrap()),
                );
                periods.extend(Period::range(Period::parse("FY2023").unwrap(), Period::parse("FY2025").unwrap()));
                let mut checked = 0;
                for period in periods {
                    for cover in covers_touching(period, granularity, Some(start)) {
                        let all: Vec<Period> = std::iter::once(cover.span).chain(cover.members.iter().copied()).collect();
                        let truth: Vec<u64> = all
                            .iter()
                            .flat_map(|p| aggregate_with(&records, *p, rules).counts)
                            .collect();
                        let slots = Cover {
                            span: 0,
                            members: (1..all.len()).collect(),
                            first_partial: cover.first_partial,
                        };
                        for r in cover_relations(&slots) {
                            let lhs: i64 = r.terms.iter().map(|&(c, k)| i64::from(k) * truth[c] as i64).sum();
                            let ok = match r.op { Op::Eq => lhs == r.rhs, Op::Le => lhs <= r.rhs };
                            let metric = &crate::metrics::catalogue().metrics()[r.terms[0].0 % METRIC_COUNT].id;
                            prop_assert!(ok, "{:?} {} over {:?}: {:?} breaks on the truth", cover.span, metric, cover.members, r);
                            checked += 1;
                        }
                    }
                }
                prop_assert!(checked > 0);
            }

            #[test]
            fn every_catalogue_relation_holds_on_the_truth(
                records in records(),
                monthly in any::<bool>(),
                at in day("2023-01-01")..day("2026-06-30"),
            ) {
                let granularity = if monthly { Granularity::Month } else { Granularity::Quarter };
                let day = Date::from_days_since_epoch(at);
                for period in [
                    Period::containing(granularity, day),
                    Period::containing(Granularity::FinancialYear, day),
                ] {
                    let truth = aggregate_with(&records, period, CountingRules::default()).counts;
                    for r in crate::disclosure::catalogue_relations(0) {
                        let lhs: i64 = r.terms.iter().map(|&(c, k)| i64::from(k) * truth[c] as i64).sum();
                        let ok = match r.op { Op::Eq => lhs == r.rhs, Op::Le => lhs <= r.rhs };
                        prop_assert!(ok, "{period}: {} breaks on the truth", crate::relations::describe(&r));
                    }
                }
            }
        }
    }
}
