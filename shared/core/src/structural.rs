//! Structural zeros: the categories a site never serves.
//!
//! Local Area Coordination works with adults, so a site's count of people
//! under 18 is 0 by the service's design, not by chance. Withheld like any
//! other small count, such a cell costs a complement elsewhere in its table
//! for nothing: everyone knows it is 0. A site names the categories it never
//! serves (its agent's `--never-serves`); the agent then refuses any record in
//! one at ingest, so the count really is 0 in every period, and publishes it
//! as 0. Disclosure control treats it as the known value it is: a relation
//! `cell = 0` in every release's system, never a cell to withhold.
//!
//! A category is named like the figure that counts it: `age_band.under_18`,
//! `primary_need.carer`, `source.police_fire`.

use crate::metrics::{self, METRIC_COUNT};
use crate::record::{CaseFacts, PseudonymRecord};
use crate::validate::{FieldViolation, RecordField, ValidRecord};
use crate::vocab::{AgeBand, AgeGroup, IntroductionSource, PrimaryNeed, SupportLevel};

/// One category of people a site may declare it never serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// People introduced in an age band.
    AgeBand(AgeBand),
    /// People introduced with a primary need.
    Need(PrimaryNeed),
    /// People introduced by a source.
    Source(IntroductionSource),
}

impl Category {
    /// Parses a category named like its figure, e.g. `age_band.under_18`.
    pub fn parse(text: &str) -> Result<Category, String> {
        let text = text.trim();
        let (kind, id) = text.split_once('.').unwrap_or((text, ""));
        let found = match kind {
            "age_band" => AgeBand::from_id(id).map(Category::AgeBand),
            "primary_need" => PrimaryNeed::from_id(id).map(Category::Need),
            "source" => IntroductionSource::from_id(id).map(Category::Source),
            _ => {
                return Err(format!(
                    "{text:?} is not a category: name one as age_band.<band>, primary_need.<need> or source.<source> (e.g. age_band.under_18)"
                ));
            }
        };
        found.ok_or_else(|| {
            let ids: Vec<&str> = match kind {
                "age_band" => AgeBand::ALL.iter().map(|b| b.id()).collect(),
                "primary_need" => PrimaryNeed::ALL.iter().map(|n| n.id()).collect(),
                _ => IntroductionSource::ALL.iter().map(|s| s.id()).collect(),
            };
            format!("{text:?}: no {kind} {id:?}; one of {}", ids.join(", "))
        })
    }

    /// Its name, as [`Category::parse`] reads it.
    pub fn id(self) -> String {
        match self {
            Category::AgeBand(b) => format!("age_band.{}", b.id()),
            Category::Need(n) => format!("primary_need.{}", n.id()),
            Category::Source(s) => format!("source.{}", s.id()),
        }
    }

    fn holds(self, facts: &CaseFacts) -> bool {
        match self {
            Category::AgeBand(b) => facts.age_band == b,
            Category::Need(n) => facts.primary_need == n,
            Category::Source(s) => facts.source == s,
        }
    }
}

/// The categories a site never serves (none by default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NeverServed(Vec<Category>);

impl NeverServed {
    /// Parses every item of a list such as `--never-serves`; the first bad
    /// one is the error.
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<NeverServed, String> {
        let mut out = Vec::new();
        for item in items
            .iter()
            .map(AsRef::as_ref)
            .filter(|i| !i.trim().is_empty())
        {
            let c = Category::parse(item)?;
            if !out.contains(&c) {
                out.push(c);
            }
        }
        Ok(NeverServed(out))
    }

    /// Whether the site declares no category.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The declared categories.
    pub fn categories(&self) -> &[Category] {
        &self.0
    }

    /// The figures that count only people in declared categories: 0 by
    /// policy in every release. An age group is among them when every band
    /// in it is declared.
    pub fn zero_cells(&self) -> [bool; METRIC_COUNT] {
        let mut zero = [false; METRIC_COUNT];
        for c in &self.0 {
            match *c {
                Category::AgeBand(b) => zero[metrics::age_band(b)] = true,
                Category::Need(n) => {
                    zero[metrics::primary_need(n)] = true;
                    for l in SupportLevel::ALL {
                        zero[metrics::level_primary_need(*l, n)] = true;
                    }
                }
                Category::Source(s) => {
                    zero[metrics::source(s)] = true;
                    for l in SupportLevel::ALL {
                        zero[metrics::level_source(*l, s)] = true;
                    }
                }
            }
        }
        for g in AgeGroup::ALL {
            let all_declared = AgeBand::ALL
                .iter()
                .filter(|b| b.group() == *g)
                .all(|b| self.0.contains(&Category::AgeBand(*b)));
            if all_declared {
                zero[metrics::age_group(*g)] = true;
                for l in SupportLevel::ALL {
                    zero[metrics::level_age_group(*l, *g)] = true;
                }
            }
        }
        zero
    }

    /// The declared category a stored record is in, if any: a store that
    /// holds one cannot publish that category's figures as 0.
    pub fn category_of(&self, r: &PseudonymRecord) -> Option<Category> {
        self.0.iter().copied().find(|c| c.holds(&r.facts))
    }

    /// Why a valid record is refused: it is in a declared category.
    pub fn refuses(&self, r: &ValidRecord) -> Option<FieldViolation> {
        let c = self.0.iter().find(|c| c.holds(&r.facts))?;
        let (kind, field) = match c {
            Category::AgeBand(_) => (RecordField::Age, "age"),
            Category::Need(_) => (RecordField::PrimaryNeed, "primary_need"),
            Category::Source(_) => (RecordField::IntroductionSource, "introduction_source"),
        };
        Some(FieldViolation {
            kind,
            field: field.to_owned(),
            reason: format!(
                "the site never serves {} (its --never-serves policy), so it publishes that figure as 0; correct the record, or change the policy",
                c.id()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_18_is_zero_in_its_band_and_in_each_level_s_group() {
        let never = NeverServed::parse(&["age_band.under_18"]).unwrap();
        let zero = never.zero_cells();
        assert!(zero[metrics::age_band(AgeBand::Under18)]);
        for l in SupportLevel::ALL {
            assert!(zero[metrics::level_age_group(*l, AgeGroup::Under18)]);
            assert!(!zero[metrics::level_age_group(*l, AgeGroup::From18To64)]);
        }
        assert!(!zero[metrics::age_group(AgeGroup::From65)]);
        assert_eq!(
            zero.iter().filter(|z| **z).count(),
            1 + SupportLevel::ALL.len()
        );
    }

    #[test]
    fn a_group_is_zero_only_when_every_band_in_it_is_declared() {
        let some = NeverServed::parse(&["age_band.65_74", "age_band.75_84"]).unwrap();
        assert!(!some.zero_cells()[metrics::age_group(AgeGroup::From65)]);
        let all =
            NeverServed::parse(&["age_band.65_74", "age_band.75_84", "age_band.85_plus"]).unwrap();
        assert!(all.zero_cells()[metrics::age_group(AgeGroup::From65)]);
        let need = NeverServed::parse(&["primary_need.carer"]).unwrap();
        let zero = need.zero_cells();
        assert!(zero[metrics::primary_need(PrimaryNeed::Carer)]);
        assert!(zero[metrics::level_primary_need(SupportLevel::Level2, PrimaryNeed::Carer)]);
    }

    #[test]
    fn a_bad_category_is_named_with_the_choices() {
        let e = NeverServed::parse(&["age_band.under_16"]).unwrap_err();
        assert!(e.contains("under_16") && e.contains("under_18"), "{e}");
        let e = NeverServed::parse(&["ward.E05000001"]).unwrap_err();
        assert!(e.contains("age_band.<band>"), "{e}");
        assert!(NeverServed::parse(&[" ", ""]).unwrap().is_empty());
    }
}
