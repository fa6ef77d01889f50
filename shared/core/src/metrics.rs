//! The metric catalogue: the one list of everything a site publishes.
//!
//! Aggregation fills it, disclosure control protects it, the hub compares it.
//! Adding a metric means adding it here (and counting it in `aggregate.rs`);
//! every other layer iterates the catalogue.
//!
//! Metrics are laid out densely so aggregation can count into a fixed array.
//! Breakdown metrics form *tables* (parts that add up to a total), which is
//! what secondary suppression has to protect.

use crate::vocab::{AgeBand, AgeGroup, IntroductionSource, Outcome, PrimaryNeed, SupportLevel};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Distinct people with at least one introduction open during the period.
pub const PEOPLE_ACTIVE: usize = 0;
/// Distinct people introduced during the period.
pub const PEOPLE_NEW: usize = 1;
/// Introductions made during the period (a person introduced twice counts twice).
pub const INTRODUCTIONS_NEW: usize = 2;
/// Introductions closed during the period.
pub const CLOSURES: usize = 3;
const SUPPORT_LEVEL_BASE: usize = 4;
const AGE_BAND_BASE: usize = SUPPORT_LEVEL_BASE + 2;
/// Age groups other than under 18, which is already the age band `under_18`.
const AGE_GROUP_BASE: usize = AGE_BAND_BASE + 9;
const PRIMARY_NEED_BASE: usize = AGE_GROUP_BASE + 2;
const SOURCE_BASE: usize = PRIMARY_NEED_BASE + 10;
const OUTCOME_BASE: usize = SOURCE_BASE + 9;
/// Number of metrics in the catalogue.
pub const METRIC_COUNT: usize = OUTCOME_BASE + 9;

/// Index of the metric counting introductions at a support level.
pub fn support_level(level: SupportLevel) -> usize {
    SUPPORT_LEVEL_BASE + level.index()
}

/// Index of the metric counting introductions in an age band.
pub fn age_band(band: AgeBand) -> usize {
    AGE_BAND_BASE + band.index()
}

/// Index of the metric counting introductions in an age group.
/// Under 18 is its own band, so it maps to that band's metric.
pub fn age_group(group: AgeGroup) -> usize {
    match group {
        AgeGroup::Under18 => age_band(AgeBand::Under18),
        AgeGroup::From18To64 => AGE_GROUP_BASE,
        AgeGroup::From65 => AGE_GROUP_BASE + 1,
    }
}

/// Index of the metric counting introductions with a primary need.
pub fn primary_need(need: PrimaryNeed) -> usize {
    PRIMARY_NEED_BASE + need.index()
}

/// Index of the metric counting introductions from a source.
pub fn source(source: IntroductionSource) -> usize {
    SOURCE_BASE + source.index()
}

/// Index of the metric counting active people with an outcome.
pub fn outcome(outcome: Outcome) -> usize {
    OUTCOME_BASE + outcome.index()
}

/// Whether a metric is a plain count or a part of some denominator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A count with no natural denominator; compared as a rate per 10,000 adults.
    Count,
    /// A count that is also a proportion of the metric at `denominator`.
    Proportion {
        /// Catalogue index of the denominator.
        denominator: usize,
    },
}

/// One published metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricDef {
    /// Stable id used on the wire, e.g. `age_band.65_74`.
    pub id: String,
    /// Label for reports.
    pub label: String,
    /// The group it belongs to, e.g. `age_band`.
    pub group: &'static str,
    /// Count or proportion.
    pub kind: MetricKind,
    /// For outcome metrics, the outcome (unit costs attach to these).
    pub outcome: Option<Outcome>,
}

/// A set of cells whose parts add up exactly to a total cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// Name for messages, e.g. `age_band`.
    pub name: &'static str,
    /// Catalogue index of the total.
    pub total: usize,
    /// Catalogue indices of the parts.
    pub parts: Vec<usize>,
}

/// The catalogue: metric definitions, a lookup by id, and the additive tables.
#[derive(Debug)]
pub struct Catalogue {
    metrics: Vec<MetricDef>,
    by_id: HashMap<String, usize>,
    tables: Vec<TableSpec>,
}

impl Catalogue {
    /// Every metric, in index order.
    pub fn metrics(&self) -> &[MetricDef] {
        &self.metrics
    }

    /// The metric at `index`.
    pub fn def(&self, index: usize) -> &MetricDef {
        &self.metrics[index]
    }

    /// The index of a metric id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// The additive tables (used by secondary suppression and consistency checks).
    pub fn tables(&self) -> &[TableSpec] {
        &self.tables
    }
}

/// The catalogue, built once.
pub fn catalogue() -> &'static Catalogue {
    static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();
    CATALOGUE.get_or_init(build)
}

fn build() -> Catalogue {
    let mut metrics = Vec::with_capacity(METRIC_COUNT);
    let mut push = |id: String, label: String, group: &'static str, kind, outcome| {
        metrics.push(MetricDef {
            id,
            label,
            group,
            kind,
            outcome,
        });
    };
    let of_intros = MetricKind::Proportion {
        denominator: INTRODUCTIONS_NEW,
    };
    push(
        "people_active".into(),
        "People supported (active)".into(),
        "headline",
        MetricKind::Count,
        None,
    );
    push(
        "people_new".into(),
        "People newly introduced".into(),
        "headline",
        MetricKind::Count,
        None,
    );
    push(
        "introductions_new".into(),
        "New introductions".into(),
        "headline",
        MetricKind::Count,
        None,
    );
    push(
        "closures".into(),
        "Introductions closed".into(),
        "headline",
        MetricKind::Count,
        None,
    );
    for l in SupportLevel::ALL {
        push(
            format!("support_level.{}", l.id()),
            l.label().into(),
            "support_level",
            of_intros,
            None,
        );
    }
    for b in AgeBand::ALL {
        push(
            format!("age_band.{}", b.id()),
            format!("Age {}", b.label()),
            "age_band",
            of_intros,
            None,
        );
    }
    for g in [AgeGroup::From18To64, AgeGroup::From65] {
        push(
            format!("age_group.{}", g.id()),
            format!("Age {}", g.label()),
            "age_group",
            of_intros,
            None,
        );
    }
    for n in PrimaryNeed::ALL {
        push(
            format!("primary_need.{}", n.id()),
            n.label().into(),
            "primary_need",
            of_intros,
            None,
        );
    }
    for s in IntroductionSource::ALL {
        push(
            format!("source.{}", s.id()),
            format!("Introduced by: {}", s.label()),
            "source",
            of_intros,
            None,
        );
    }
    for o in Outcome::ALL {
        push(
            format!("outcome.{}", o.id()),
            o.label().into(),
            "outcome",
            MetricKind::Proportion {
                denominator: PEOPLE_ACTIVE,
            },
            Some(*o),
        );
    }
    let by_id = metrics
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id.clone(), i))
        .collect();

    let all = |range: std::ops::Range<usize>| range.collect::<Vec<_>>();
    let tables = vec![
        TableSpec {
            name: "support_level",
            total: INTRODUCTIONS_NEW,
            parts: all(SUPPORT_LEVEL_BASE..AGE_BAND_BASE),
        },
        TableSpec {
            name: "age_band",
            total: INTRODUCTIONS_NEW,
            parts: all(AGE_BAND_BASE..AGE_GROUP_BASE),
        },
        TableSpec {
            name: "age_group",
            total: INTRODUCTIONS_NEW,
            parts: AgeGroup::ALL.iter().map(|g| age_group(*g)).collect(),
        },
        TableSpec {
            name: "age_group.18_64",
            total: age_group(AgeGroup::From18To64),
            parts: AgeBand::ALL
                .iter()
                .filter(|b| b.group() == AgeGroup::From18To64)
                .map(|b| age_band(*b))
                .collect(),
        },
        TableSpec {
            name: "age_group.65_plus",
            total: age_group(AgeGroup::From65),
            parts: AgeBand::ALL
                .iter()
                .filter(|b| b.group() == AgeGroup::From65)
                .map(|b| age_band(*b))
                .collect(),
        },
        TableSpec {
            name: "primary_need",
            total: INTRODUCTIONS_NEW,
            parts: all(PRIMARY_NEED_BASE..SOURCE_BASE),
        },
        TableSpec {
            name: "source",
            total: INTRODUCTIONS_NEW,
            parts: all(SOURCE_BASE..OUTCOME_BASE),
        },
    ];
    Catalogue {
        metrics,
        by_id,
        tables,
    }
}

/// True (unprotected) counts for one site and period, indexed by catalogue index.
/// These never leave the site: only [`crate::disclosure::Published`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregates {
    /// Counts by catalogue index.
    pub counts: [u64; METRIC_COUNT],
}

impl Default for Aggregates {
    fn default() -> Self {
        Aggregates {
            counts: [0; METRIC_COUNT],
        }
    }
}

impl Aggregates {
    /// The count of a metric by id, if the id exists.
    pub fn get(&self, id: &str) -> Option<u64> {
        catalogue().index_of(id).map(|i| self.counts[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_dense_unique_and_consistent() {
        let c = catalogue();
        assert_eq!(c.metrics().len(), METRIC_COUNT);
        for (i, m) in c.metrics().iter().enumerate() {
            assert_eq!(c.index_of(&m.id), Some(i), "{}", m.id);
        }
        assert_eq!(
            c.def(outcome(Outcome::CarerSupported)).id,
            "outcome.carer_supported"
        );
        assert_eq!(c.def(age_group(AgeGroup::From65)).id, "age_group.65_plus");
        assert_eq!(c.def(source(IntroductionSource::Other)).id, "source.other");
    }

    #[test]
    fn every_table_part_is_a_proportion_of_something_and_no_part_repeats() {
        for t in catalogue().tables() {
            let mut seen = std::collections::HashSet::new();
            for p in &t.parts {
                assert!(seen.insert(*p), "{} repeats a part", t.name);
                assert!(!t.parts.contains(&t.total));
            }
        }
    }
}
