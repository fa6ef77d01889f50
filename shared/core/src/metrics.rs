//! The metric catalogue: the one list of everything a site publishes.
//!
//! Aggregation fills it, disclosure control protects it, the hub compares it.
//! Adding a metric means adding it here (and counting it in `aggregate.rs`);
//! every other layer iterates the catalogue.
//!
//! Metrics are laid out densely so aggregation can count into a fixed array.
//! Breakdown metrics form *tables* (parts that add up to a total), which is
//! what secondary suppression has to protect.
//!
//! Every metric is published for every kind of period: months or quarters
//! (a site's series) and the spans, financial year and programme to date.
//! A span's figures are computed from the records, never summed from its
//! quarters; each metric's [`Additivity`] says how the span's true value
//! relates to the true values of the periods inside it, which is what
//! disclosure control needs to protect spans and quarters jointly.
//!
//! Support levels are kept apart: Level 1 (information and advice) and
//! Level 2 (a longer-term relationship) are different work, so people,
//! closures, age group, primary need, introduction source and outcomes are
//! also published per level (`level_2.*`), and a report can show Level 2
//! alone, the like-for-like figure sites quote.

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
/// Open introductions that, at the period's last day, had gone quiet: no
/// contact, outcome or introduction within the site's inactivity limit. They
/// no longer count as active; this count makes the data quality visible.
pub const CASES_STALE: usize = 4;
const SUPPORT_LEVEL_BASE: usize = 5;
const AGE_BAND_BASE: usize = SUPPORT_LEVEL_BASE + 2;
/// Age groups other than under 18, which is already the age band `under_18`.
const AGE_GROUP_BASE: usize = AGE_BAND_BASE + 9;
const PRIMARY_NEED_BASE: usize = AGE_GROUP_BASE + 2;
const SOURCE_BASE: usize = PRIMARY_NEED_BASE + 10;
const OUTCOME_BASE: usize = SOURCE_BASE + 9;
/// Start of the per-support-level blocks.
const LEVEL_BASE: usize = OUTCOME_BASE + 9;
// Offsets within one level's block.
const L_PEOPLE_ACTIVE: usize = 0;
const L_PEOPLE_NEW: usize = 1;
const L_CLOSURES: usize = 2;
const L_AGE_GROUP: usize = 3;
const L_PRIMARY_NEED: usize = L_AGE_GROUP + 3;
const L_SOURCE: usize = L_PRIMARY_NEED + 10;
const L_OUTCOME: usize = L_SOURCE + 9;
/// Metrics per support level.
const LEVEL_BLOCK: usize = L_OUTCOME + 9;
/// Number of metrics in the catalogue.
pub const METRIC_COUNT: usize = LEVEL_BASE + 2 * LEVEL_BLOCK;

fn level_base(level: SupportLevel) -> usize {
    LEVEL_BASE + level.index() * LEVEL_BLOCK
}

/// Distinct people with an introduction at `level` active in the period.
/// A person supported at both levels counts at each, so the levels do not
/// add up to `people_active`.
pub fn level_people_active(level: SupportLevel) -> usize {
    level_base(level) + L_PEOPLE_ACTIVE
}

/// Distinct people newly introduced at `level` in the period.
pub fn level_people_new(level: SupportLevel) -> usize {
    level_base(level) + L_PEOPLE_NEW
}

/// Introductions at `level` closed in the period.
pub fn level_closures(level: SupportLevel) -> usize {
    level_base(level) + L_CLOSURES
}

/// New introductions at `level` in an age group (under 18, 18-64, 65+).
pub fn level_age_group(level: SupportLevel, group: AgeGroup) -> usize {
    level_base(level) + L_AGE_GROUP + group.index()
}

/// New introductions at `level` with a primary need.
pub fn level_primary_need(level: SupportLevel, need: PrimaryNeed) -> usize {
    level_base(level) + L_PRIMARY_NEED + need.index()
}

/// New introductions at `level` from a source.
pub fn level_source(level: SupportLevel, source: IntroductionSource) -> usize {
    level_base(level) + L_SOURCE + source.index()
}

/// Distinct people who achieved an outcome in the period on an introduction at `level`.
pub fn level_outcome(level: SupportLevel, outcome: Outcome) -> usize {
    level_base(level) + L_OUTCOME + outcome.index()
}

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

/// Index of the metric counting people who achieved an outcome in the period.
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

/// How a metric's true value over a span (a financial year, the programme to
/// date) relates to its true values over the periods inside it. Disclosure
/// control uses this to protect a span and its quarters jointly: an attacker
/// holding both knows these relations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Additivity {
    /// Counts events dated in the period (introductions, closures): the
    /// span's value is exactly the sum of its parts' values.
    Sum,
    /// Counts distinct people: the span's value is at least the largest part
    /// and at most the sum of the parts (a person in several parts counts once).
    Distinct,
    /// A stock measured on the period's last day: the span's value equals the
    /// value of the part that ends on the same day.
    AtEnd,
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
    /// For the per-level metrics (`level_2.*`), the support level.
    pub support_level: Option<SupportLevel>,
    /// How the metric behaves across periods (see [`Additivity`]).
    pub across_periods: Additivity,
}

impl MetricDef {
    /// What the figure counts, in a sentence or two for a report's glossary:
    /// written from the same facts the catalogue is built from (its group,
    /// kind and how it behaves over a span), so a new metric is described
    /// the day it is added.
    pub fn description(&self) -> String {
        let base = self
            .support_level
            .and_then(|l| self.id.strip_prefix(&format!("{}.", l.id())))
            .unwrap_or(&self.id);
        let group = base.split('.').next().unwrap_or(base);
        let of_intros = match self.support_level {
            Some(_) => "the period's new introductions at this level",
            None => "the period's new introductions",
        };
        let mut text = match group {
            "people_active" => "Distinct people with an introduction open at any time in the period, \
                                leaving out open cases gone quiet. Over a financial year or the programme \
                                to date each person counts once, so quarters never add up to it."
                .to_owned(),
            "people_new" => "Distinct people introduced in the period: a person introduced twice counts \
                             once (compare New introductions, which counts both)."
                .to_owned(),
            "introductions_new" => "Introductions made in the period, so a person introduced twice \
                                    counts twice; a financial year's figure is the sum of its quarters'."
                .to_owned(),
            "closures" => "Introductions closed in the period.".to_owned(),
            "cases_stale" => "Open introductions with no contact, outcome or new introduction within \
                              the site's inactivity limit by the period's last day; they are not \
                              counted as people supported."
                .to_owned(),
            "support_level" => format!("Share of {of_intros} made at this support level."),
            "age_band" | "age_group" => {
                format!("Share of {of_intros} whose person was in this age group when introduced.")
            }
            "primary_need" => format!("Share of {of_intros} with this primary need."),
            "source" => format!("Share of {of_intros} that came from this source."),
            "outcome" => "People who achieved this outcome in the period (each person once over a \
                          span), as a share of the people supported."
                .to_owned(),
            _ => String::new(),
        };
        if let Some(l) = self.support_level {
            text.push_str(&format!(" {} introductions only.", l.label()));
        }
        text
    }
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
    fingerprint: String,
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

    /// Names this catalogue's metrics and their order: 16 lower-case hex
    /// digits of SHA-256 over the ids in order. Figures sent by position
    /// (packed cells) carry it, so the hub never reads them against another
    /// catalogue.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

fn fingerprint(metrics: &[MetricDef]) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for m in metrics {
        hash.update(m.id.as_bytes());
        hash.update(b"\n");
    }
    let mut hex = crate::hex::encode(&hash.finalize());
    hex.truncate(16);
    hex
}

/// The catalogue, built once.
pub fn catalogue() -> &'static Catalogue {
    static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();
    CATALOGUE.get_or_init(build)
}

fn build() -> Catalogue {
    let mut metrics = Vec::with_capacity(METRIC_COUNT);
    let mut push =
        |id: String, label: String, group: &'static str, kind, outcome: Option<Outcome>| {
            // Introductions, closures and every breakdown of new introductions
            // count dated events; people and outcomes count distinct persons
            // (an outcome counts once per person over a span); the stale count is
            // a stock on the last day.
            let across_periods = if group == "headline" || group.ends_with(".headline") {
                if id.ends_with("introductions_new") || id.ends_with("closures") {
                    Additivity::Sum
                } else if id == "cases_stale" {
                    Additivity::AtEnd
                } else {
                    Additivity::Distinct
                }
            } else if outcome.is_some() {
                Additivity::Distinct
            } else {
                Additivity::Sum
            };
            let support_level = SupportLevel::ALL
                .iter()
                .copied()
                .find(|l| id.starts_with(&format!("{}.", l.id())));
            metrics.push(MetricDef {
                id,
                label,
                group,
                kind,
                outcome,
                support_level,
                across_periods,
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
    push(
        "cases_stale".into(),
        "Open cases gone quiet (no contact within the inactivity limit)".into(),
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
    for l in SupportLevel::ALL {
        let short = match l {
            SupportLevel::Level1 => "Level 1",
            SupportLevel::Level2 => "Level 2",
        };
        let (headline, age, need, src, out) = match l {
            SupportLevel::Level1 => (
                "level_1.headline",
                "level_1.age_group",
                "level_1.primary_need",
                "level_1.source",
                "level_1.outcome",
            ),
            SupportLevel::Level2 => (
                "level_2.headline",
                "level_2.age_group",
                "level_2.primary_need",
                "level_2.source",
                "level_2.outcome",
            ),
        };
        let of_level = MetricKind::Proportion {
            denominator: support_level(*l),
        };
        push(
            format!("{}.people_active", l.id()),
            format!("{short}: people supported (active)"),
            headline,
            MetricKind::Count,
            None,
        );
        push(
            format!("{}.people_new", l.id()),
            format!("{short}: people newly introduced"),
            headline,
            MetricKind::Count,
            None,
        );
        push(
            format!("{}.closures", l.id()),
            format!("{short}: introductions closed"),
            headline,
            MetricKind::Count,
            None,
        );
        for g in AgeGroup::ALL {
            push(
                format!("{}.age_group.{}", l.id(), g.id()),
                format!("{short}: age {}", g.label()),
                age,
                of_level,
                None,
            );
        }
        for n in PrimaryNeed::ALL {
            push(
                format!("{}.primary_need.{}", l.id(), n.id()),
                format!("{short}: {}", n.label()),
                need,
                of_level,
                None,
            );
        }
        for s in IntroductionSource::ALL {
            push(
                format!("{}.source.{}", l.id(), s.id()),
                format!("{short}: introduced by {}", s.label()),
                src,
                of_level,
                None,
            );
        }
        for o in Outcome::ALL {
            push(
                format!("{}.outcome.{}", l.id(), o.id()),
                format!("{short}: {}", o.label()),
                out,
                MetricKind::Proportion {
                    denominator: level_people_active(*l),
                },
                Some(*o),
            );
        }
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
    let mut tables = tables;
    // The support-level cross-tabs: each level's rows add up to that level's
    // new introductions, and each column's levels add up to the overall cell.
    // (People and outcomes by level are distinct people, not a table: a
    // person supported at both levels counts at each.)
    let levels = SupportLevel::ALL;
    tables.push(TableSpec {
        name: "closures.by_level",
        total: CLOSURES,
        parts: levels.iter().map(|l| level_closures(*l)).collect(),
    });
    for l in levels {
        let (age, need, src) = match l {
            SupportLevel::Level1 => (
                "level_1.age_group",
                "level_1.primary_need",
                "level_1.source",
            ),
            SupportLevel::Level2 => (
                "level_2.age_group",
                "level_2.primary_need",
                "level_2.source",
            ),
        };
        tables.push(TableSpec {
            name: age,
            total: support_level(*l),
            parts: AgeGroup::ALL
                .iter()
                .map(|g| level_age_group(*l, *g))
                .collect(),
        });
        tables.push(TableSpec {
            name: need,
            total: support_level(*l),
            parts: PrimaryNeed::ALL
                .iter()
                .map(|n| level_primary_need(*l, *n))
                .collect(),
        });
        tables.push(TableSpec {
            name: src,
            total: support_level(*l),
            parts: IntroductionSource::ALL
                .iter()
                .map(|s| level_source(*l, *s))
                .collect(),
        });
    }
    for g in AgeGroup::ALL {
        tables.push(TableSpec {
            name: "age_group.by_level",
            total: age_group(*g),
            parts: levels.iter().map(|l| level_age_group(*l, *g)).collect(),
        });
    }
    for n in PrimaryNeed::ALL {
        tables.push(TableSpec {
            name: "primary_need.by_level",
            total: primary_need(*n),
            parts: levels.iter().map(|l| level_primary_need(*l, *n)).collect(),
        });
    }
    for s in IntroductionSource::ALL {
        tables.push(TableSpec {
            name: "source.by_level",
            total: source(*s),
            parts: levels.iter().map(|l| level_source(*l, *s)).collect(),
        });
    }
    Catalogue {
        fingerprint: fingerprint(&metrics),
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
    /// Adds another table's counts: the counts of two disjoint sets of
    /// people (every count is a sum over people or over their records).
    pub fn add(&mut self, other: &Aggregates) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
    }

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
        assert_eq!(c.def(CASES_STALE).id, "cases_stale");
        let l2 = SupportLevel::Level2;
        assert_eq!(
            c.def(level_primary_need(l2, PrimaryNeed::MentalHealth)).id,
            "level_2.primary_need.mental_health"
        );
        assert_eq!(
            c.def(level_outcome(l2, Outcome::CarerSupported)).id,
            "level_2.outcome.carer_supported"
        );
        assert_eq!(
            c.def(level_age_group(SupportLevel::Level1, AgeGroup::Under18))
                .id,
            "level_1.age_group.under_18"
        );
        assert_eq!(c.def(level_people_active(l2)).id, "level_2.people_active");
        assert_eq!(
            c.def(METRIC_COUNT - 1).id,
            "level_2.outcome.carer_supported"
        );
        for m in c.metrics() {
            assert_eq!(
                m.support_level.is_some(),
                m.id.starts_with("level_"),
                "{}",
                m.id
            );
        }
    }

    #[test]
    fn additivity_says_which_figures_can_be_summed_over_a_span() {
        let c = catalogue();
        let of = |id: &str| c.def(c.index_of(id).unwrap()).across_periods;
        for id in [
            "introductions_new",
            "closures",
            "primary_need.mental_health",
            "support_level.level_2",
            "level_2.closures",
            "level_2.source.self",
            "level_1.age_group.65_plus",
        ] {
            assert_eq!(of(id), Additivity::Sum, "{id}");
        }
        for id in [
            "people_active",
            "people_new",
            "outcome.volunteering",
            "level_2.people_active",
            "level_2.people_new",
            "level_2.outcome.crisis_avoided",
        ] {
            assert_eq!(of(id), Additivity::Distinct, "{id}");
        }
        assert_eq!(of("cases_stale"), Additivity::AtEnd);
        // Every part of a table counts the same kind of thing as its total,
        // so a table over a span is a table over its parts too.
        for t in c.tables() {
            for p in &t.parts {
                assert_eq!(
                    c.def(*p).across_periods,
                    c.def(t.total).across_periods,
                    "{}",
                    t.name
                );
            }
        }
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

    #[test]
    fn every_metric_has_a_description_and_the_two_people_counts_differ() {
        let c = catalogue();
        for m in c.metrics() {
            assert!(m.description().len() > 20, "{} has no description", m.id);
        }
        let d = |id: &str| c.def(c.index_of(id).unwrap()).description();
        assert_ne!(d("people_new"), d("introductions_new"));
        assert!(d("people_new").contains("counts once"));
        assert!(
            d("level_2.people_active")
                .ends_with("Level 2 (longer-term support) introductions only."),
            "{}",
            d("level_2.people_active")
        );
    }
}
