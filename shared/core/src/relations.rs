//! Relations between the people figures of one release, derived from how
//! they are counted rather than listed by hand.
//!
//! Every people figure (people supported, newly introduced, achieving an
//! outcome; overall and by support level) counts each person 0 or 1 times,
//! so a release's people figures are the sum, over its people, of each
//! person's own 0/1 figures. The figure vectors that real data can give are
//! therefore exactly the sums of single-person vectors: the cone those
//! vectors generate. Its facets are every linear relation an attacker can
//! know, and no more.
//!
//! [`derived`] finds them mechanically: it enumerates small record sets of
//! one person (one or two introductions, at either level, introduced before
//! or during the period, closed before, during, after or never, with an
//! outcome dated before, during or never), counts each with the real
//! aggregator ([`crate::aggregate`]), and keeps every inequality with
//! coefficients in {-1, 0, 1} that holds on every such person and is tight on
//! enough of them to be a facet. A test checks completeness within a box:
//! every figure vector that satisfies the relations is the sum of people who
//! exist, and every sum of people satisfies them.
//!
//! Introductions and their breakdowns count events, not people; their
//! tables are declared in the catalogue ([`crate::metrics::TableSpec`]),
//! and what ties them to people (a person new at a level has an
//! introduction at it) in [`crate::disclosure::catalogue_relations`].

use crate::aggregate::{CountingRules, aggregate_with};
use crate::date::Date;
use crate::exact::{Op, Relation};
use crate::metrics::{self, Aggregates, PEOPLE_ACTIVE, PEOPLE_NEW, catalogue};
use crate::period::Period;
use crate::pseudonym::{KeyId, Pseudonym};
use crate::record::{CaseFacts, PseudonymRecord};
use crate::vocab::{
    AgeBand, IntroductionSource, NO_OUTCOME_DATES, Outcome, OutcomeSet, PrimaryNeed, SupportLevel,
};
use std::sync::OnceLock;

/// A block of people figures whose relations are derived together: the
/// catalogue indices, in order.
pub type Block = Vec<usize>;

/// The blocks: people supported and newly introduced (overall and by
/// level), and for each outcome, people supported and achieving it.
pub fn blocks() -> Vec<Block> {
    let l1 = SupportLevel::Level1;
    let l2 = SupportLevel::Level2;
    let active = [
        PEOPLE_ACTIVE,
        metrics::level_people_active(l1),
        metrics::level_people_active(l2),
    ];
    let mut out = vec![
        active
            .iter()
            .copied()
            .chain([
                PEOPLE_NEW,
                metrics::level_people_new(l1),
                metrics::level_people_new(l2),
            ])
            .collect(),
    ];
    for o in Outcome::ALL {
        out.push(
            active
                .iter()
                .copied()
                .chain([
                    metrics::outcome(*o),
                    metrics::level_outcome(l1, *o),
                    metrics::level_outcome(l2, *o),
                ])
                .collect(),
        );
    }
    out
}

/// The period the people are counted in, for the derivation: any month.
fn period() -> Period {
    Period::containing(
        crate::period::Granularity::Month,
        Date::new(2024, 5, 1).unwrap_or_else(|_| Date::from_days_since_epoch(0)),
    )
}

fn day(m: u8, d: u8) -> Date {
    Date::new(2024, m, d).unwrap_or_else(|_| Date::from_days_since_epoch(0))
}

/// One introduction of the person, for the enumeration.
fn introduction(
    n: u8,
    level: SupportLevel,
    introduced: Date,
    closed: Option<Date>,
    outcome: Option<(Outcome, Date)>,
) -> PseudonymRecord {
    let mut outcomes = OutcomeSet::EMPTY;
    let mut outcome_dates = NO_OUTCOME_DATES;
    if let Some((o, on)) = outcome {
        outcomes.insert(o);
        outcome_dates[o.index()] = Some(on);
    }
    PseudonymRecord {
        record: Pseudonym([n; 32]),
        person: Pseudonym([0; 32]),
        key_id: KeyId::new("k1").unwrap_or_else(|_| unreachable_key()),
        facts: CaseFacts {
            introduced_on: introduced,
            closed_on: closed,
            support_level: level,
            age_band: AgeBand::From45To54,
            primary_need: PrimaryNeed::Other,
            source: IntroductionSource::SelfReferral,
            outcomes,
            outcome_dates,
            last_contact_on: None,
        },
        neighbourhood: None,
    }
}

/// "k1" is a valid key id; this is never reached.
fn unreachable_key() -> KeyId {
    panic!("k1 is a valid key id")
}

/// Every introduction validation allows, in the shapes that matter to a
/// month (May 2024): introduced before or during it; closed before, during,
/// after or never; the outcome `o` dated before or during it (within the
/// introduction's life), or none.
fn introductions(n: u8, o: Outcome) -> Vec<PseudonymRecord> {
    let mut out = Vec::new();
    for level in SupportLevel::ALL {
        for introduced in [day(4, 10), day(5, 10)] {
            for closed in [None, Some(day(4, 20)), Some(day(5, 20)), Some(day(6, 10))] {
                if closed.is_some_and(|c| c < introduced) {
                    continue;
                }
                for outcome in [None, Some(day(4, 15)), Some(day(5, 15))] {
                    let fits =
                        outcome.is_none_or(|on| on >= introduced && closed.is_none_or(|c| on <= c));
                    if fits {
                        out.push(introduction(
                            n,
                            *level,
                            introduced,
                            closed,
                            outcome.map(|on| (o, on)),
                        ));
                    }
                }
            }
        }
    }
    out
}

/// The distinct figure vectors of one person over `block`, from every record
/// set of one or two introductions, counted by the real aggregator.
pub fn generators(block: &[usize], outcome: Outcome) -> Vec<Vec<i64>> {
    let rules = CountingRules::default();
    let project = |a: &Aggregates| -> Vec<i64> {
        block
            .iter()
            .map(|&i| i64::try_from(a.counts[i]).unwrap_or(i64::MAX))
            .collect()
    };
    let mut out: Vec<Vec<i64>> = Vec::new();
    let firsts = introductions(1, outcome);
    let seconds = introductions(2, outcome);
    let mut add = |records: &[PseudonymRecord]| {
        let g = project(&aggregate_with(records, period(), rules));
        if g.iter().any(|&x| x != 0) && !out.contains(&g) {
            out.push(g);
        }
    };
    for a in &firsts {
        add(std::slice::from_ref(a));
        for b in &seconds {
            add(&[a.clone(), b.clone()]);
        }
    }
    out.sort();
    out
}

/// The rank of integer vectors (Gaussian elimination; the vectors are small).
fn rank(rows: &[Vec<i64>]) -> usize {
    let mut m: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| r.iter().map(|&x| x as f64).collect())
        .collect();
    let cols = m.first().map_or(0, Vec::len);
    let mut r = 0;
    for c in 0..cols {
        let Some(p) = (r..m.len()).find(|&i| m[i][c].abs() > 1e-9) else {
            continue;
        };
        m.swap(r, p);
        let pivot = m[r].clone();
        for (i, row) in m.iter_mut().enumerate() {
            if i != r && row[c].abs() > 1e-9 {
                let f = row[c] / pivot[c];
                for (x, p) in row.iter_mut().zip(&pivot).skip(c) {
                    *x -= f * p;
                }
            }
        }
        r += 1;
        if r == m.len() {
            break;
        }
    }
    r
}

/// The facets `c · x >= 0` (coefficients in {-1, 0, 1}) of the cone the
/// `generators` span, in `dim` dimensions.
pub fn facets(generators: &[Vec<i64>], dim: usize) -> Vec<Vec<i64>> {
    let mut out = Vec::new();
    let candidates = 3usize.pow(u32::try_from(dim).unwrap_or(0));
    for code in 1..candidates {
        let mut c = vec![0i64; dim];
        let mut k = code;
        for x in c.iter_mut() {
            *x = (k % 3) as i64 - 1;
            k /= 3;
        }
        if c.iter().all(|&x| x == 0) {
            continue;
        }
        let dot = |g: &Vec<i64>| c.iter().zip(g).map(|(a, b)| a * b).sum::<i64>();
        if generators.iter().any(|g| dot(g) < 0) {
            continue;
        }
        let tight: Vec<Vec<i64>> = generators.iter().filter(|g| dot(g) == 0).cloned().collect();
        if rank(&tight) + 1 == dim {
            out.push(c);
        }
    }
    out
}

/// The derived relations of every block, as catalogue-indexed relations
/// over cells `offset..`, computed once. Non-negativity (`x >= 0`) is left
/// out: every cell is already at least 0.
pub fn derived(offset: usize) -> Vec<Relation> {
    static FACETS: OnceLock<Vec<Vec<(usize, i32)>>> = OnceLock::new();
    let facets = FACETS.get_or_init(|| {
        let mut all: Vec<Vec<(usize, i32)>> = Vec::new();
        for (k, block) in blocks().iter().enumerate() {
            let outcome = Outcome::ALL[k.saturating_sub(1) % Outcome::ALL.len()];
            for c in facets(&generators(block, outcome), block.len()) {
                let terms: Vec<(usize, i32)> = block
                    .iter()
                    .zip(&c)
                    .filter(|(_, x)| **x != 0)
                    .map(|(&cell, &x)| (cell, i32::try_from(-x).unwrap_or(0)))
                    .collect();
                let nonnegativity = terms.len() == 1 && terms[0].1 < 0;
                if !nonnegativity && !all.contains(&terms) {
                    all.push(terms);
                }
            }
        }
        all
    });
    facets
        .iter()
        .map(|terms| Relation {
            terms: terms.iter().map(|&(c, k)| (c + offset, k)).collect(),
            op: Op::Le,
            rhs: 0,
        })
        .collect()
}

/// A relation in words, for tests and messages: `a + b - c <= 0`.
pub fn describe(r: &Relation) -> String {
    let mut s = String::new();
    for (i, &(cell, k)) in r.terms.iter().enumerate() {
        let sign = if k < 0 {
            "- "
        } else if i > 0 {
            "+ "
        } else {
            ""
        };
        let id = &catalogue().def(cell % metrics::METRIC_COUNT).id;
        s.push_str(&format!(
            "{sign}{}{id} ",
            if k.abs() == 1 {
                String::new()
            } else {
                format!("{} ", k.abs())
            }
        ));
    }
    s.push_str(match r.op {
        Op::Le => "<= 0",
        Op::Eq => "= 0",
    });
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Every vector in `[0, bound]^dim` that is a sum of generators.
    fn reachable(generators: &[Vec<i64>], dim: usize, bound: i64) -> HashSet<Vec<i64>> {
        let mut seen: HashSet<Vec<i64>> = HashSet::new();
        let mut frontier = vec![vec![0i64; dim]];
        seen.insert(vec![0; dim]);
        while let Some(x) = frontier.pop() {
            for g in generators {
                let y: Vec<i64> = x.iter().zip(g).map(|(a, b)| a + b).collect();
                if y.iter().all(|&v| v <= bound) && seen.insert(y.clone()) {
                    frontier.push(y);
                }
            }
        }
        seen
    }

    fn satisfies(facets: &[Vec<i64>], x: &[i64]) -> bool {
        facets
            .iter()
            .all(|c| c.iter().zip(x).map(|(a, b)| a * b).sum::<i64>() >= 0)
    }

    /// Completeness within a box: for each block, the vectors the derived
    /// relations allow (with every cell at least 0) are exactly the sums of
    /// real people, for every count up to 4.
    #[test]
    fn the_derived_relations_allow_exactly_what_real_people_give() {
        const BOUND: i64 = 4;
        for (k, block) in blocks().iter().enumerate().take(3) {
            let outcome = Outcome::ALL[k.saturating_sub(1) % Outcome::ALL.len()];
            let gens = generators(block, outcome);
            let dim = block.len();
            let facets = facets(&gens, dim);
            let real = reachable(&gens, dim, BOUND);
            let mut allowed = 0;
            let points = (BOUND + 1).pow(u32::try_from(dim).unwrap());
            for code in 0..points {
                let mut x = vec![0i64; dim];
                let mut c = code;
                for v in x.iter_mut() {
                    *v = c % (BOUND + 1);
                    c /= BOUND + 1;
                }
                let ok = satisfies(&facets, &x);
                assert_eq!(
                    ok,
                    real.contains(&x),
                    "block {k}: {x:?} is {} by the relations but {} by real people",
                    if ok { "allowed" } else { "refused" },
                    if real.contains(&x) {
                        "given"
                    } else {
                        "never given"
                    }
                );
                allowed += usize::from(ok);
            }
            assert!(allowed > 1, "block {k}");
        }
    }

    #[test]
    fn the_derivation_finds_the_relations_between_levels() {
        let all = derived(0);
        let has = |terms: &[(&str, i32)]| {
            let want: HashSet<(usize, i32)> = terms
                .iter()
                .map(|(id, k)| (catalogue().index_of(id).unwrap(), *k))
                .collect();
            all.iter()
                .any(|r| r.terms.iter().copied().collect::<HashSet<_>>() == want)
        };
        let listed: Vec<String> = all.iter().map(describe).collect();
        for expected in [
            // Each level's people are at most the whole.
            &[("level_1.people_active", 1), ("people_active", -1)][..],
            &[("level_2.people_new", 1), ("people_new", -1)],
            // The whole is at most the levels' sum.
            &[
                ("people_new", 1),
                ("level_1.people_new", -1),
                ("level_2.people_new", -1),
            ],
            // A person new at a level is active at it.
            &[("level_2.people_new", 1), ("level_2.people_active", -1)],
            // People achieving an outcome are active, at its level too.
            &[("outcome.volunteering", 1), ("people_active", -1)],
            &[
                ("level_1.outcome.crisis_avoided", 1),
                ("level_1.people_active", -1),
            ],
            // What a hand-written list missed: people new at both levels are
            // among those active at both.
            &[
                ("level_1.people_new", 1),
                ("level_2.people_new", 1),
                ("people_new", -1),
                ("level_1.people_active", -1),
                ("level_2.people_active", -1),
                ("people_active", 1),
            ],
        ] {
            assert!(has(expected), "missing {expected:?} in {listed:#?}");
        }
    }

    /// Protection keeps its promise on people figures: a programme to date
    /// (people figures only) of random real people, protected, leaves no
    /// withheld cell that could be small with fewer than 7 values under the
    /// derived relations. (An outcome at one level beside its overall figure
    /// and the other level's is narrowed by "people at both levels with the
    /// outcome are among those active at both", which no table holds.)
    #[test]
    fn protected_people_figures_keep_their_interval_under_the_derived_relations() {
        use crate::disclosure::{Count, DisclosurePolicy, catalogue_relations, release_alone};
        use crate::exact::{System, UNBOUNDED};
        use crate::metrics::METRIC_COUNT;
        use crate::period::Granularity;
        let policy = DisclosurePolicy::default();
        let carried = crate::release::carried(Granularity::ProgrammeToDate);
        let mut seed = 0x5eed_u64;
        let mut next = |n: usize| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize % n
        };
        let blocks = blocks();
        // First the case the long red team found: 27 people at Level 1, 62
        // at Level 2, none at both (89 round to 90; 25 and 60 leave at most
        // 1 at both levels), 12 with an outcome, 10 of them at Level 2: the
        // Level 1 figure is at most 1 + (12 - 8) = 5 unless more is withheld.
        let mut found = Aggregates::default();
        for (cell, v) in blocks[0].iter().zip([89, 27, 62, 89, 27, 62]) {
            found.counts[*cell] = v;
        }
        for (cell, v) in blocks[1].iter().zip([89, 27, 62, 12, 2, 10]) {
            found.counts[*cell] = v;
        }
        let mut truths = vec![found];
        let people = generators(&blocks[0], Outcome::ALL[0]);
        let outcome = generators(&blocks[1], Outcome::ALL[0]);
        for k in 0..200 {
            let mut truth = truths.pop().unwrap_or_default();
            for _ in 0..(if k == 0 { 0 } else { 20 + next(80) }) {
                // A person: their people flags, and for the first outcome a
                // person of the same level pattern with or without it.
                // Mostly people at one level, as at real sites: then the
                // people at both levels are few, and so is the slack.
                let single: Vec<&Vec<i64>> = people.iter().filter(|g| g[1] + g[2] == 1).collect();
                let g = if next(20) == 0 {
                    &people[next(people.len())]
                } else {
                    single[next(single.len())]
                };
                for (cell, v) in blocks[0].iter().zip(g) {
                    truth.counts[*cell] += *v as u64;
                }
                let same: Vec<&Vec<i64>> = outcome.iter().filter(|o| o[..3] == g[..3]).collect();
                if next(3) == 0 && !same.is_empty() {
                    let o = same[next(same.len())];
                    for (cell, v) in blocks[1].iter().zip(o).skip(3) {
                        truth.counts[*cell] += *v as u64;
                    }
                }
            }
            let published = release_alone(&truth, &carried, &policy);
            let bounds = crate::disclosure::attacker_bounds(
                &published.counts,
                catalogue().tables(),
                &policy,
            );
            let system = System {
                lo: bounds.iter().map(|b| b.lo as i64).collect(),
                hi: bounds
                    .iter()
                    .map(|b| b.hi.map_or(UNBOUNDED, |h| h as i64))
                    .collect(),
                relations: catalogue_relations(0),
            };
            for c in 0..METRIC_COUNT {
                if published.counts[c] == Count::Suppressed {
                    let r = system.range(c).expect("the truth is a solution");
                    assert!(
                        r.lo > 7 || r.values() >= 7,
                        "{} narrowed to {}..={}",
                        catalogue().def(c).id,
                        r.lo,
                        r.hi
                    );
                }
            }
        }
    }
}
