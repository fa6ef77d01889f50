//! The release plan: which figures each kind of period carries.
//!
//! Small counts published often are what an attacker holding the whole
//! series works with: a month's breakdown by need or source is a handful of
//! people, and every span that covers the month ties it to others by
//! definition. So the granularity of a figure follows its counts:
//!
//! * a **month** carries the headline figures: people supported and newly
//!   introduced, new introductions, closures, open cases gone quiet, and
//!   people supported, newly introduced and closed by support level;
//! * a **quarter** carries those, new introductions by support level
//!   (`support_level.*`), the two adult age groups, and each outcome: a
//!   quarter's counts are about three months' worth. A month's introductions
//!   at a level sit beside its people newly introduced at that level, which
//!   they bound, and the whole series ties both to the years: the long red
//!   team run narrowed such pairs of small monthly cells to 6 values;
//! * a **financial year** carries every breakdown (age bands, needs,
//!   sources, outcomes, and each by support level), but not the stock of
//!   cases gone quiet, which is its last month's or quarter's figure;
//! * the **programme to date** carries the counts of distinct people (people
//!   supported and newly introduced, people with each outcome, overall and
//!   by level): the figures a site quotes ("256 people in the first 14
//!   months"). Its events (introductions, closures, breakdowns) are the sum
//!   of the financial years', which an analyst adds up; publishing them again
//!   would only tie the years together. It is published at financial-year
//!   ends only (see the site agent's `publish.rs`), so consecutive
//!   programmes to date differ by a whole year, never by a month.
//!
//! A figure a period kind does not carry is [`Count::NotReleased`] in that
//! release: it says nothing about the count, and it is no part of what
//! disclosure control protects or what an attacker learns.
//!
//! [`Count::NotReleased`]: crate::disclosure::Count::NotReleased

use crate::metrics::{Additivity, METRIC_COUNT, catalogue};
use crate::period::Granularity;

/// Whether a release of a `granularity` period carries the metric at `index`.
pub fn carries(granularity: Granularity, index: usize) -> bool {
    let def = catalogue().def(index);
    let headline = def.group == "headline" || def.group.ends_with(".headline");
    match granularity {
        Granularity::Month => headline,
        Granularity::Quarter => {
            headline
                || def.group == "support_level"
                || def.group == "age_group"
                || def.group == "outcome"
        }
        Granularity::FinancialYear => def.across_periods != Additivity::AtEnd,
        Granularity::ProgrammeToDate => def.across_periods == Additivity::Distinct,
    }
}

/// [`carries`] for every metric, indexed like the catalogue.
pub fn carried(granularity: Granularity) -> [bool; METRIC_COUNT] {
    let mut out = [false; METRIC_COUNT];
    for (i, c) in out.iter_mut().enumerate() {
        *c = carries(granularity, i);
    }
    out
}

/// Words for a figure a period kind does not carry, for reports: which
/// kinds of period do carry it.
pub fn carried_by(index: usize) -> &'static str {
    let kinds = [
        Granularity::Month,
        Granularity::Quarter,
        Granularity::FinancialYear,
        Granularity::ProgrammeToDate,
    ]
    .map(|g| carries(g, index));
    match kinds {
        [_, true, true, true] => "quarters, financial years and the programme to date",
        [_, true, true, false] => "quarters and financial years",
        [_, false, true, true] => "financial years and the programme to date",
        [_, false, true, false] => "financial years",
        [_, _, false, _] => "months and quarters",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{self, INTRODUCTIONS_NEW, PEOPLE_ACTIVE};
    use crate::vocab::{AgeGroup, Outcome, PrimaryNeed, SupportLevel};

    #[test]
    fn months_carry_headlines_and_years_carry_every_breakdown() {
        let month = carried(Granularity::Month);
        let quarter = carried(Granularity::Quarter);
        let year = carried(Granularity::FinancialYear);
        let ptd = carried(Granularity::ProgrammeToDate);
        assert_eq!(month.iter().filter(|c| **c).count(), 11);
        for i in [PEOPLE_ACTIVE, INTRODUCTIONS_NEW, metrics::CASES_STALE] {
            assert!(month[i] && quarter[i]);
        }
        let l2 = SupportLevel::Level2;
        assert!(month[metrics::level_people_new(l2)] && month[metrics::level_people_active(l2)]);
        assert!(!month[metrics::support_level(l2)] && quarter[metrics::support_level(l2)]);
        let need = metrics::primary_need(PrimaryNeed::Carer);
        assert!(!month[need] && !quarter[need] && year[need] && !ptd[need]);
        let outcome = metrics::outcome(Outcome::Volunteering);
        assert!(!month[outcome] && quarter[outcome] && year[outcome] && ptd[outcome]);
        let older = metrics::age_group(AgeGroup::From65);
        assert!(!month[older] && quarter[older] && year[older]);
        // A year's stock of quiet cases is its last period's; the programme
        // to date's events are the years' sum.
        assert!(!year[metrics::CASES_STALE] && !ptd[metrics::CASES_STALE]);
        assert!(!ptd[INTRODUCTIONS_NEW] && ptd[PEOPLE_ACTIVE]);
        // Every metric is published somewhere, in a year at the latest.
        for i in 0..METRIC_COUNT {
            assert!(year[i] || month[i], "{}", catalogue().def(i).id);
        }
        assert_eq!(carried_by(need), "financial years");
        assert_eq!(
            carried_by(outcome),
            "quarters, financial years and the programme to date"
        );
    }
}
