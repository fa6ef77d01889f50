//! Disclosure control: what makes aggregates safe to leave a site.
//!
//! Sits between aggregation and submission. The site agent runs [`apply`] on
//! a period's true [`Aggregates`] and sends only the resulting [`Published`]
//! table; the hub re-runs [`check_policy`] and [`check_consistency`] on what it
//! receives, as defence in depth.
//!
//! The rules follow NHS Digital and OpenSAFELY practice:
//!
//! * **Primary suppression.** A count from 0 to the threshold becomes
//!   [`Count::Suppressed`]. Zero is a small count like any other: a published
//!   0 beside one withheld cell would give the withheld cell away as the
//!   total, and say that everyone in it shares an attribute. (A threshold of
//!   0 turns primary suppression off, and then 0 is published.) A count above
//!   the threshold that would *round* to the threshold or below (11 with
//!   threshold 10 and base 5) is suppressed too, so a published value is
//!   never within the threshold.
//! * **Rounding.** Every other count is rounded to the nearest multiple of the
//!   rounding base. With an odd base an integer never sits half way; with an
//!   even base a half way value is rounded *up* (with base 10, 15 becomes 20).
//! * **Totals** are ordinary cells: computed from true values before rounding,
//!   then suppressed or rounded like any other cell.
//! * **Secondary (complementary) suppression with a protection interval.** No
//!   suppressed cell may be narrowed, from the published cells of every table
//!   it belongs to, to fewer values than the threshold
//!   ([`DisclosurePolicy::protection_interval`], 7 by default). This is judged
//!   from an attacker's view built only from published data: first by fast
//!   interval propagation ([`attacker_bounds`]), then exactly, by integer
//!   programming over all the tables at once ([`crate::exact`]). More cells
//!   are suppressed until every suppressed cell keeps its interval.
//! * **Linked releases.** Tables about the same people in other releases (a
//!   financial year and its quarters) are protected jointly: [`protect_linked`]
//!   takes their published cells as fixed and the declared relations between
//!   them, and suppresses cells of the new release until no suppressed cell
//!   of any of them is narrowed below its interval.

use crate::exact::{self, Relation, System, UNBOUNDED};
use crate::metrics::{
    Aggregates, INTRODUCTIONS_NEW, METRIC_COUNT, PEOPLE_ACTIVE, PEOPLE_NEW, TableSpec, catalogue,
};
use crate::vocab::Outcome;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A published count: a (rounded) value, or withheld. `Value(0)` is a true zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Count {
    /// A value after rounding.
    Value(u64),
    /// Withheld by disclosure control. The true count may be 0 or any small
    /// count (or a larger one withheld for another's sake); never encode it as 0.
    Suppressed,
    /// Not part of this kind of period's release ([`crate::release`]): says
    /// nothing about the count, and disclosure control neither protects it
    /// nor lets an attacker learn from it.
    NotReleased,
}

impl Count {
    /// The published value, if there is one.
    pub fn value(self) -> Option<u64> {
        match self {
            Count::Value(v) => Some(v),
            Count::Suppressed | Count::NotReleased => None,
        }
    }
}

/// The site's (or network's) disclosure rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DisclosurePolicy {
    /// Counts from 1 to this are suppressed; 0 turns primary suppression off.
    pub threshold: u32,
    /// Other counts are rounded to the nearest multiple; 1 means no rounding.
    pub rounding_base: u32,
    /// Whether complementary suppression protects suppressed cells in tables.
    pub secondary_suppression: bool,
}

impl DisclosurePolicy {
    /// The network's default: counts 1 to 7 withheld, the rest rounded to
    /// 5, secondary suppression on. Configuration defaults read it from here.
    pub const DEFAULT: DisclosurePolicy = DisclosurePolicy {
        threshold: 7,
        rounding_base: 5,
        secondary_suppression: true,
    };
}

impl Default for DisclosurePolicy {
    fn default() -> Self {
        DisclosurePolicy::DEFAULT
    }
}

/// The largest threshold and rounding base a policy may set.
pub const POLICY_LIMIT: u32 = 1000;

/// Why a disclosure policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DisclosureError {
    /// The rounding base is 0 (use 1 for no rounding).
    #[error("rounding base must be at least 1 (1 means no rounding), got 0")]
    RoundingBaseZero,
    /// The rounding base is above [`POLICY_LIMIT`].
    #[error("rounding base must be at most {POLICY_LIMIT}, got {0}")]
    RoundingBaseTooLarge(u32),
    /// The suppression threshold is above [`POLICY_LIMIT`].
    #[error("suppression threshold must be at most {POLICY_LIMIT}, got {0}")]
    ThresholdTooLarge(u32),
}

impl DisclosurePolicy {
    /// Checks the policy is usable: `1 <= rounding_base <= 1000` and `threshold <= 1000`.
    pub fn validate(&self) -> Result<(), DisclosureError> {
        if self.rounding_base == 0 {
            return Err(DisclosureError::RoundingBaseZero);
        }
        if self.rounding_base > POLICY_LIMIT {
            return Err(DisclosureError::RoundingBaseTooLarge(self.rounding_base));
        }
        if self.threshold > POLICY_LIMIT {
            return Err(DisclosureError::ThresholdTooLarge(self.threshold));
        }
        Ok(())
    }

    /// Whether this (site) policy protects at least as much as the `network`'s:
    /// a threshold at least as high, a rounding base that is a multiple of the
    /// network's (so every published value is also a multiple of the network's
    /// base), and secondary suppression on if the network requires it.
    pub fn at_least_as_strict_as(&self, network: &DisclosurePolicy) -> bool {
        self.threshold >= network.threshold
            && self.base() % network.base() == 0
            && (self.secondary_suppression || !network.secondary_suppression)
    }

    /// The fewest values an attacker may be left with for a suppressed cell:
    /// the threshold (a withheld cell is a priori one of `0..=threshold`), and
    /// never fewer than 2, so no suppressed cell is ever pinned.
    pub fn protection_interval(&self) -> u64 {
        u64::from(self.threshold).max(2)
    }

    /// Whether zero counts are withheld like other small counts.
    fn zero_is_small(&self) -> bool {
        self.threshold > 0
    }

    /// The rounding base as a divisor; an invalid 0 is read as 1 so nothing here divides by zero.
    fn base(&self) -> u64 {
        u64::from(self.rounding_base.max(1))
    }
}

/// One site's published table for one period, indexed like the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Published counts by catalogue index.
    pub counts: [Count; METRIC_COUNT],
}

/// Rounds to the nearest multiple of `base`, a half way value going up.
fn round_to(value: u64, base: u64) -> u64 {
    let down = value - value % base;
    // Near u64::MAX rounding up would overflow: round down instead.
    if (value % base) * 2 >= base {
        down.checked_add(base).unwrap_or(down)
    } else {
        down
    }
}

/// Primary suppression and rounding of one true count.
fn primary(value: u64, policy: &DisclosurePolicy) -> Count {
    if value == 0 && !policy.zero_is_small() {
        return Count::Value(0);
    }
    let rounded = round_to(value, policy.base());
    // A published value is never within the threshold (11 rounds to 10 under
    // threshold 10, base 5), never a 0 that is not a true zero, and with
    // primary suppression on, never 0 at all.
    if value <= u64::from(policy.threshold)
        || rounded <= u64::from(policy.threshold)
        || rounded == 0
    {
        Count::Suppressed
    } else {
        Count::Value(rounded)
    }
}

/// Protects `aggregates` under `policy` using the catalogue's tables, as a
/// release carrying every figure.
pub fn apply(aggregates: &Aggregates, policy: &DisclosurePolicy) -> Published {
    release_alone(aggregates, &[true; METRIC_COUNT], policy)
}

/// Protects `aggregates` under `policy` as a release carrying the figures
/// marked in `carried` (the others are [`Count::NotReleased`]), on its own.
pub fn release_alone(
    aggregates: &Aggregates,
    carried: &[bool; METRIC_COUNT],
    policy: &DisclosurePolicy,
) -> Published {
    let out = protect_linked(&aggregates.counts, carried, &[], &[], policy);
    let mut counts = [Count::Suppressed; METRIC_COUNT];
    counts.copy_from_slice(&out);
    Published { counts }
}

/// The relations every catalogue release satisfies, over cells `offset..`:
/// its tables; the relations between its people figures, derived from how
/// they are counted ([`crate::relations`]); and that a person newly
/// introduced (overall, or at a level) has a new introduction (at it).
pub fn catalogue_relations(offset: usize) -> Vec<Relation> {
    use crate::metrics::{level_people_new, support_level};
    use crate::vocab::SupportLevel;
    let shift = |c: usize| c + offset;
    let mut out: Vec<Relation> = catalogue()
        .tables()
        .iter()
        .map(|t| {
            let parts: Vec<usize> = t.parts.iter().map(|&p| shift(p)).collect();
            Relation::sum(shift(t.total), &parts)
        })
        .collect();
    out.extend(crate::relations::derived(offset));
    out.push(Relation::at_most(
        shift(PEOPLE_NEW),
        shift(INTRODUCTIONS_NEW),
    ));
    for l in SupportLevel::ALL {
        out.push(Relation::at_most(
            shift(level_people_new(*l)),
            shift(support_level(*l)),
        ));
    }
    out
}

fn catalogue_subsets() -> impl Iterator<Item = (usize, usize)> {
    [(PEOPLE_NEW, INTRODUCTIONS_NEW), (PEOPLE_NEW, PEOPLE_ACTIVE)]
        .into_iter()
        .chain(
            Outcome::ALL
                .iter()
                .map(|o| (crate::metrics::outcome(*o), PEOPLE_ACTIVE)),
        )
}

/// Protects a new catalogue release jointly with releases already published
/// about the same people.
///
/// `linked` holds the published cells of the other releases, laid out one
/// after another after the new release's [`METRIC_COUNT`] cells; `links`
/// relates cells of that joint layout (each linked release's own catalogue
/// relations, and how the releases relate, e.g. a year's new introductions
/// are the sum of its quarters'). Cells of `linked` never change: only the
/// new release's cells are suppressed until no suppressed cell of any
/// release is narrowed below the protection interval.
pub fn protect_linked(
    values: &[u64],
    carried: &[bool],
    linked: &[Count],
    links: &[Relation],
    policy: &DisclosurePolicy,
) -> Vec<Count> {
    let mut relations = catalogue_relations(0);
    relations.extend_from_slice(links);
    let tables: Vec<&TableSpec> = catalogue().tables().iter().collect();
    protect_joint(values, carried, linked, &tables, &relations, policy)
}

/// A span and the releases it covers, as slots of a joint layout: slot `s`
/// holds the cells `s * METRIC_COUNT..(s + 1) * METRIC_COUNT`.
///
/// The members partition the span's days, in order: a financial year's
/// quarters or months, or a programme to date's previous programme to date
/// followed by the periods since. When the programme started after the first
/// member's first day (`first_partial`), that member also counts days before
/// the span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cover {
    /// The span's slot.
    pub span: usize,
    /// The members' slots, in date order.
    pub members: Vec<usize>,
    /// Whether the first member starts before the span.
    pub first_partial: bool,
}

/// What a [`Cover`] tells an attacker, metric by metric, from each metric's
/// [`Additivity`](crate::metrics::Additivity): events add up; distinct people
/// are at least those of any member inside the span and at most the members'
/// sum; a stock on the last day is the last member's.
pub fn cover_relations(cover: &Cover) -> Vec<Relation> {
    use crate::metrics::Additivity;
    let Some(&last) = cover.members.last() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, def) in catalogue().metrics().iter().enumerate() {
        let span = cover.span * METRIC_COUNT + i;
        let members: Vec<usize> = cover.members.iter().map(|m| m * METRIC_COUNT + i).collect();
        match def.across_periods {
            Additivity::Sum if cover.first_partial => {
                out.push(Relation::at_most_sum(span, &members));
            }
            Additivity::Sum => out.push(Relation::sum(span, &members)),
            Additivity::Distinct => {
                out.push(Relation::at_most_sum(span, &members));
                let inside = usize::from(cover.first_partial);
                out.extend(
                    members[inside..]
                        .iter()
                        .map(|&m| Relation::at_most(m, span)),
                );
            }
            Additivity::AtEnd => {
                out.push(Relation::sum(span, &[last * METRIC_COUNT + i]));
            }
        }
    }
    out
}

/// What an attacker holding an earlier release `published` knows that is
/// still true of the period's current `truth`: each published cell the
/// current truth would still give. A cell the truth has since moved away
/// from is read as withheld, so the joint system stays one the truth
/// satisfies (a stale cell tells an attacker only something approximate,
/// which the release gate keeps to changes of more than the threshold).
pub fn as_known(published: &[Count], truth: &[u64], policy: &DisclosurePolicy) -> Vec<Count> {
    published
        .iter()
        .zip(truth)
        .map(|(&c, &t)| match c {
            Count::Value(_) if c == primary(t, policy) => c,
            Count::NotReleased => Count::NotReleased,
            _ => Count::Suppressed,
        })
        .collect()
}

/// Protects a new release (slot 0 of the joint layout) jointly with the
/// `linked` releases (slots 1, 2, …, each a full catalogue release, fixed)
/// and the spans that tie them together.
///
/// `zero` marks the site's structural zeros ([`crate::structural`]): figures
/// that are 0 in every release by the site's published policy. Every
/// release's system knows them as 0, as an attacker does; the new release
/// publishes them as 0 and never withholds them.
pub fn protect_covered(
    values: &[u64],
    carried: &[bool],
    zero: &[bool],
    linked: &[Vec<Count>],
    covers: &[Cover],
    policy: &DisclosurePolicy,
) -> Vec<Count> {
    let mut flat = Vec::with_capacity(linked.len() * METRIC_COUNT);
    let mut links = Vec::new();
    for (k, release) in linked.iter().enumerate() {
        debug_assert_eq!(release.len(), METRIC_COUNT);
        flat.extend_from_slice(release);
        links.extend(catalogue_relations((k + 1) * METRIC_COUNT));
    }
    for cover in covers {
        links.extend(cover_relations(cover));
    }
    let is_zero = |i: usize| zero.get(i).copied().unwrap_or(false);
    for slot in 0..=linked.len() {
        for c in (0..METRIC_COUNT).filter(|c| is_zero(*c)) {
            links.push(Relation::sum(slot * METRIC_COUNT + c, &[]));
        }
    }
    let open: Vec<bool> = carried
        .iter()
        .enumerate()
        .map(|(i, &c)| c && !is_zero(i))
        .collect();
    let mut out = protect_linked(values, &open, &flat, &links, policy);
    for (i, cell) in out.iter_mut().enumerate().take(carried.len()) {
        if carried[i] && is_zero(i) {
            *cell = Count::Value(0);
        }
    }
    out
}

/// Protects arbitrary cells related by `tables`.
///
/// Tables that name a cell beyond `values` are ignored.
pub fn protect(values: &[u64], tables: &[TableSpec], policy: &DisclosurePolicy) -> Vec<Count> {
    let tables: Vec<&TableSpec> = tables
        .iter()
        .filter(|t| in_range(t, values.len()))
        .collect();
    let relations: Vec<Relation> = tables
        .iter()
        .map(|t| Relation::sum(t.total, &t.parts))
        .collect();
    let carried = vec![true; values.len()];
    protect_joint(values, &carried, &[], &tables, &relations, policy)
}

/// The secondary suppression loop over a joint layout: `values` (the new
/// release, which may change) followed by `linked` (fixed).
///
/// `tables` drive the fast propagation and name tables in messages;
/// `relations` are everything the attacker knows, for the exact check.
fn protect_joint(
    values: &[u64],
    carried: &[bool],
    linked: &[Count],
    tables: &[&TableSpec],
    relations: &[Relation],
    policy: &DisclosurePolicy,
) -> Vec<Count> {
    let n = values.len();
    let mut out = primary_release(values, carried, policy);
    if !policy.secondary_suppression {
        return out;
    }
    let required = policy.protection_interval();
    // Withholding more cells only widens every range, so a cell once shown
    // to keep its interval keeps it in every later round: each cell costs
    // the solver at most once, plus once per round it was found narrowed.
    let mut certified = vec![false; n + linked.len()];
    let mut prover = exact::Prover::new(n + linked.len());
    let mut in_tables = vec![false; n];
    for c in tables.iter().flat_map(|t| cells(t)).filter(|&c| c < n) {
        in_tables[c] = true;
    }
    // Only cells of tables can widen what tables narrow: a headline or
    // outcome count (tied to others only by "at most") is never withheld
    // for another cell's sake.
    let tabled = |c: &[usize]| -> Vec<usize> {
        c.iter()
            .copied()
            .filter(|&x| x < n && in_tables[x])
            .collect()
    };
    let all: Vec<usize> = (0..n).filter(|&c| in_tables[c]).collect();
    // Each round suppresses one more cell of the new release or stops, so
    // this ends within `n` rounds.
    loop {
        let mut joint = out.clone();
        joint.extend_from_slice(linked);
        let view = AttackerView::build(&joint, tables, policy);
        // Fast: propagation already narrows a suppressed cell.
        let quick = (0..joint.len())
            .find(|&c| joint[c] == Count::Suppressed && view.narrow(c, required, policy.threshold))
            .map(|c| widen_near(c, &out, &view, tables, relations, required));
        let exposures = match quick {
            Some((parts, others)) => vec![Candidates::Near { parts, others }],
            None => exact_exposure(
                &joint,
                &view,
                relations,
                required,
                policy.threshold,
                &mut certified,
                &mut prover,
                n,
            ),
        };
        // One more cell for each narrowed cell, unless a cell withheld this
        // round is already among its candidates (it may be widened now: the
        // next round tells).
        let mut withheld_now: Vec<usize> = Vec::new();
        for exposure in exposures {
            let Some(tiers) = tiers_of(exposure, &withheld_now, &tabled, &all) else {
                continue;
            };
            let cell = tiers.iter().find_map(|c| cheapest(values, &out, c, policy));
            if let Some(cell) = cell {
                out[cell] = Count::Suppressed;
                withheld_now.push(cell);
            }
        }
        if withheld_now.is_empty() {
            return out;
        }
    }
}

/// Each cell suppressed or rounded on its own (primary suppression); a
/// figure the period does not carry is not released.
fn primary_release(values: &[u64], carried: &[bool], policy: &DisclosurePolicy) -> Vec<Count> {
    values
        .iter()
        .zip(carried.iter().chain(std::iter::repeat(&true)))
        .map(|(&v, &carried)| {
            if carried {
                primary(v, policy)
            } else {
                Count::NotReleased
            }
        })
        .collect()
}

/// The cells to try for a withheld cell `c` that propagation narrows: the
/// parts of the table that narrowed it last (withholding parts of another
/// table the cell is in would not help), then the parts of every table
/// sharing a cell with it, its total last.
fn widen_near(
    c: usize,
    out: &[Count],
    view: &AttackerView,
    tables: &[&TableSpec],
    relations: &[Relation],
    required: u64,
) -> (Vec<usize>, Vec<usize>) {
    let t = view.by_table[c]
        .and_then(|t| tables.get(t))
        .or_else(|| tables.iter().find(|t| cells(t).any(|x| x == c)));
    let Some(t) = t else {
        return candidates_near(c, relations);
    };
    // Withheld parts that other tables pin (a group whose bands are
    // published) widen nothing until a part of that other table is withheld
    // too: those come before the total, which many tables share.
    let mut parts = t.parts.clone();
    for &p in &t.parts {
        let pinned = p != c
            && out.get(p) == Some(&Count::Suppressed)
            && view.hi[p] - view.lo[p] + 1 < i128::from(required);
        if let Some(other) = view.by_table[p].and_then(|o| tables.get(o)) {
            if pinned && !std::ptr::eq(*other, *t) {
                parts.extend(other.parts.iter().copied());
            }
        }
    }
    // Then the parts of every table sharing a cell with this one, before
    // its total.
    let mut near: Vec<usize> = tables
        .iter()
        .filter(|o| cells(o).any(|x| cells(t).any(|y| y == x)))
        .flat_map(|o| o.parts.iter().copied())
        .filter(|&x| x != t.total)
        .collect();
    near.push(t.total);
    (parts, near)
}

/// The tiers of cells to withhold for one narrowed cell, nearest first;
/// `None` when a cell withheld this round is already among the nearest.
///
/// Parts first (the old rule: the smallest part, failing that the total);
/// when nothing near is left to withhold, the whole release (`all`): with
/// everything withheld it reveals nothing beyond what was already
/// published.
fn tiers_of(
    exposure: Candidates,
    withheld_now: &[usize],
    tabled: &dyn Fn(&[usize]) -> Vec<usize>,
    all: &[usize],
) -> Option<Vec<Vec<usize>>> {
    match exposure {
        Candidates::Near { parts, others } => {
            if parts
                .iter()
                .chain(&others)
                .any(|c| withheld_now.contains(c))
            {
                return None;
            }
            // Then any published cell related to it, a headline or outcome
            // included: the derived relations tie people figures to each
            // other and to nothing in a table, and a narrowed cell is never
            // left as it is. Then outcomes, then figures by level, then any
            // table cell.
            let related: Vec<usize> = parts.iter().chain(&others).copied().collect();
            let mut tiers = vec![tabled(&parts), tabled(&others)];
            tiers.extend(by_prominence(&related));
            tiers.push(all.to_vec());
            Some(tiers)
        }
        Candidates::Linked(tiers) => {
            if tiers
                .first()
                .is_some_and(|t| t.iter().any(|c| withheld_now.contains(c)))
            {
                return None;
            }
            // Beyond the nearest cells, cells of tables first (as for the
            // new release's own cells); last, any cell of the new release
            // the relations reach, headlines included.
            Some(
                tiers
                    .iter()
                    .enumerate()
                    .map(|(k, t)| {
                        if k == 0 || k >= 3 {
                            t.clone()
                        } else {
                            tabled(t)
                        }
                    })
                    .collect(),
            )
        }
    }
}

/// `cells` in two tiers by what withholding them costs readers: outcomes
/// and other figures first, then figures by support level. The overall
/// headlines (people supported and newly introduced, new introductions,
/// closures) are never among them: they are withheld for another cell's
/// sake only as its nearest cell.
fn by_prominence(cells: &[usize]) -> Vec<Vec<usize>> {
    let group = |x: usize| catalogue().metrics()[x % METRIC_COUNT].group;
    let mut tiers = vec![Vec::new(), Vec::new()];
    for &x in cells {
        match group(x) {
            "headline" => {}
            g if g.ends_with(".headline") => tiers[1].push(x),
            _ => tiers[0].push(x),
        }
    }
    tiers
}

/// The published cell of the new release among `candidates` whose
/// withholding costs least: the smallest true value. A published true zero
/// (only when zeros are not small) is never withheld: the attacker reads a
/// withheld cell as at least 1 then.
fn cheapest(
    values: &[u64],
    out: &[Count],
    candidates: &[usize],
    policy: &DisclosurePolicy,
) -> Option<usize> {
    candidates
        .iter()
        .copied()
        .filter(|&c| c < values.len() && matches!(out[c], Count::Value(_)))
        .filter(|&c| values[c] > 0 || policy.zero_is_small())
        .min_by_key(|&c| (values[c], c))
}

/// Runs the exact attacker on every suppressed cell that propagation left
/// wide and no earlier round certified; returns, for each one found
/// narrowed, the cells related to it (the candidates for more suppression).
/// Empty when every cell holds.
#[allow(clippy::too_many_arguments)]
fn exact_exposure(
    joint: &[Count],
    view: &AttackerView,
    relations: &[Relation],
    required: u64,
    threshold: u32,
    certified: &mut [bool],
    prover: &mut exact::Prover,
    new_cells: usize,
) -> Vec<Candidates> {
    let suppressed: Vec<usize> = (0..joint.len())
        .filter(|&c| joint[c] == Count::Suppressed && !certified[c])
        .collect();
    if suppressed.is_empty() {
        return Vec::new();
    }
    let system = attacker_system(joint, view, relations);
    prover.sweep(&system, &suppressed, required);
    for &c in &suppressed {
        certified[c] = prover.shown_wide(c, required);
    }
    // Every open cell is solved, not only up to the first narrowed one:
    // those that hold are certified for good, and every narrowed one gets
    // its fix in the same round.
    let mut narrowed_cells = Vec::new();
    for &c in &suppressed {
        if certified[c] {
            continue;
        }
        let narrowed = match prover.range(&system, c) {
            Some(r) => r.values() < required && r.lo <= i64::from(threshold),
            // Only contradictory input has no solution; the solver giving up
            // is treated as exposure, which costs utility, never privacy.
            None => true,
        };
        if narrowed {
            narrowed_cells.push(candidates_for(c, relations, new_cells));
        } else {
            certified[c] = true;
        }
    }
    narrowed_cells
}

/// Cells of the new release (the first `new_cells`) whose withholding could
/// widen `c`'s range. For a cell of the new release, [`candidates_near`].
/// For a cell of a linked release, which cannot change, the nearest cells
/// of the new release through the relations: a month's cell narrowed by its
/// year is widened by withholding the year's cell for the same metric.
/// The flag says the candidates came the second way.
fn candidates_for(c: usize, relations: &[Relation], new_cells: usize) -> Candidates {
    if c < new_cells {
        let (parts, others) = candidates_near(c, relations);
        return Candidates::Near { parts, others };
    }
    Candidates::Linked(linked_tiers(c, relations, new_cells))
}

/// What may be withheld for one narrowed cell.
enum Candidates {
    /// A cell of the new release: the parts of its tables, then the rest
    /// of what it is related to, then (as before linking) any tabled cell.
    Near {
        parts: Vec<usize>,
        others: Vec<usize>,
    },
    /// A cell of a linked release: tiers tried in order, nearest first,
    /// never falling back to the whole release.
    Linked(Vec<Vec<usize>>),
}

/// The tiers for a linked cell `c`, walking out one relation at a time:
/// the first new-release cells reached (the year's cell for the month's
/// metric widens the month most directly), then the parts of the tables
/// they are in, then cells further out. Headline figures are only ever the
/// nearest.
fn linked_tiers(c: usize, relations: &[Relation], new_cells: usize) -> Vec<Vec<usize>> {
    let headline = |x: usize| {
        let group = catalogue().metrics()[x % METRIC_COUNT].group;
        group == "headline" || group.ends_with(".headline")
    };
    let mut seen = vec![c];
    let mut frontier = vec![c];
    let mut first: Vec<usize> = Vec::new();
    let mut near: Vec<usize> = Vec::new();
    let mut further: Vec<usize> = Vec::new();
    for _ in 0..8 {
        let mut next: Vec<usize> = relations
            .iter()
            .filter(|r| r.terms.iter().any(|(x, _)| frontier.contains(x)))
            .flat_map(|r| r.terms.iter().map(|&(x, _)| x))
            .filter(|x| !seen.contains(x))
            .collect();
        next.sort_unstable();
        next.dedup();
        if next.is_empty() {
            break;
        }
        let reached = next.iter().copied().filter(|&x| x < new_cells);
        if first.is_empty() {
            first = reached.collect();
            near.extend(
                first
                    .iter()
                    .flat_map(|&r| candidates_near(r, relations).0)
                    .filter(|&x| x < new_cells && !first.contains(&x)),
            );
        } else {
            further.extend(reached);
        }
        seen.extend(&next);
        frontier = next;
    }
    let keep = |cells: Vec<usize>| {
        let mut kept: Vec<usize> = Vec::new();
        for x in cells {
            if !headline(x) && !kept.contains(&x) {
                kept.push(x);
            }
        }
        kept
    };
    let mut reached: Vec<usize> = near.iter().chain(&further).copied().collect();
    reached.sort_unstable();
    reached.dedup();
    let near = keep(near);
    let further: Vec<usize> = keep(further)
        .into_iter()
        .filter(|x| !near.contains(x))
        .collect();
    // Outcomes, then figures by level; the overall headlines only ever as
    // the nearest cell.
    let mut tiers = vec![first, near, further];
    tiers.extend(by_prominence(&reached));
    tiers
}

/// Cells whose withholding could widen `c`'s range: the parts of the tables
/// `c` belongs to (withholding a part costs less than a total that many
/// tables share), and every other cell related to `c` (totals, and the
/// wholes of subsets such as people supported).
fn candidates_near(c: usize, relations: &[Relation]) -> (Vec<usize>, Vec<usize>) {
    let with_c = || {
        relations
            .iter()
            .filter(|r| r.terms.iter().any(|&(x, _)| x == c))
    };
    let mut parts: Vec<usize> = with_c()
        .filter(|r| r.op == exact::Op::Eq)
        .flat_map(|r| r.terms.iter().filter(|&&(_, k)| k > 0).map(|&(x, _)| x))
        .collect();
    parts.sort_unstable();
    parts.dedup();
    let mut rest: Vec<usize> = with_c()
        .flat_map(|r| r.terms.iter().map(|&(x, _)| x))
        .filter(|x| !parts.contains(x))
        .collect();
    rest.sort_unstable();
    rest.dedup();
    (parts, rest)
}

/// The exact attacker's system: each cell's propagated bounds (sound, and
/// they make the integer programs smaller) and every relation.
fn attacker_system(joint: &[Count], view: &AttackerView, relations: &[Relation]) -> System {
    let clamp = |x: i128| i64::try_from(x.clamp(0, i128::from(UNBOUNDED))).unwrap_or(UNBOUNDED);
    System {
        lo: (0..joint.len()).map(|c| clamp(view.lo[c])).collect(),
        hi: (0..joint.len()).map(|c| clamp(view.hi[c])).collect(),
        relations: relations.to_vec(),
    }
}

fn in_range(table: &TableSpec, len: usize) -> bool {
    table.total < len && table.parts.iter().all(|&p| p < len)
}

fn cells(table: &TableSpec) -> impl Iterator<Item = usize> + '_ {
    std::iter::once(table.total).chain(table.parts.iter().copied())
}

/// What an attacker can know about one cell's true value from published data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// The smallest possible true value.
    pub lo: u64,
    /// The largest possible true value; `None` when unbounded.
    pub hi: Option<u64>,
}

/// Stands for "no upper bound". Far above any u64, yet sums of millions of
/// these still fit in an i128, so interval arithmetic never overflows.
const INF: i128 = 1 << 100;

/// Interval bounds per cell, as an attacker derives them from published data only.
struct AttackerView {
    lo: Vec<i128>,
    hi: Vec<i128>,
    /// The table that last tightened each cell (names the table in messages).
    by_table: Vec<Option<usize>>,
    /// Some cell's bounds became empty: the published cells contradict each other.
    contradictory: bool,
}

impl AttackerView {
    /// Bounds from each published cell alone, before any table is used.
    ///
    /// A published non-zero `r` means a true value that rounds to `r` and is
    /// above the threshold; `Value(0)` means exactly 0; `Suppressed` means
    /// anything from 0 (from 1 when zeros are published) up (the attacker
    /// cannot tell primary from secondary suppression).
    fn cellwise(counts: &[Count], policy: &DisclosurePolicy) -> Self {
        let base = policy.base();
        let mut lo = Vec::with_capacity(counts.len());
        let mut hi = Vec::with_capacity(counts.len());
        for count in counts {
            let (l, h) = match *count {
                Count::Value(0) => (0, 0),
                Count::Value(r) => {
                    // Exactly the integers that round to r: [r - floor(b/2), r - floor(b/2) + b - 1].
                    let from = i128::from(r) - i128::from(base / 2);
                    let to = from + i128::from(base) - 1;
                    let above = (i128::from(policy.threshold) + 1).max(1);
                    // A value inside the threshold breaks the policy (check_policy says so);
                    // keep the rounding interval rather than an empty one.
                    let from = if from.max(above) <= to {
                        from.max(above)
                    } else {
                        from.max(1)
                    };
                    (from, to)
                }
                Count::Suppressed if policy.zero_is_small() => (0, INF),
                Count::Suppressed => (1, INF),
                // Says nothing: any count at all.
                Count::NotReleased => (0, INF),
            };
            lo.push(l);
            hi.push(h);
        }
        AttackerView {
            lo,
            hi,
            by_table: vec![None; counts.len()],
            contradictory: false,
        }
    }

    /// Cell bounds, tightened by every table's equation (parts add up to the
    /// total) until nothing changes. For one table and integer bounds this is
    /// the exact feasible range of each cell; across tables sharing cells it
    /// propagates what one table reveals into the others.
    fn build(counts: &[Count], tables: &[&TableSpec], policy: &DisclosurePolicy) -> Self {
        let mut view = Self::cellwise(counts, policy);
        // Bounds only shrink and are integers, so this settles; the cap keeps
        // adversarial input cheap (every intermediate state is still sound).
        for _ in 0..64 {
            let mut changed = false;
            for (t, table) in tables.iter().enumerate() {
                changed |= view.tighten(t, table);
                if view.contradictory {
                    break;
                }
            }
            // Contradictory input (check_consistency rejects it) could otherwise
            // push bounds apart without limit.
            if !changed || view.contradictory {
                break;
            }
        }
        view
    }

    /// Applies one table's equation; returns whether any bound moved.
    fn tighten(&mut self, t: usize, table: &TableSpec) -> bool {
        let mut changed = false;
        let sum_lo: i128 = table.parts.iter().map(|&p| self.lo[p]).sum();
        let sum_hi: i128 = table.parts.iter().map(|&p| self.hi[p]).sum();
        changed |= self.set(table.total, t, sum_lo, sum_hi);
        let (total_lo, total_hi) = (self.lo[table.total], self.hi[table.total]);
        for &p in &table.parts {
            let others_lo = sum_lo - self.lo[p];
            let others_hi = sum_hi - self.hi[p];
            changed |= self.set(p, t, total_lo - others_hi, total_hi - others_lo);
        }
        changed
    }

    fn set(&mut self, cell: usize, table: usize, lo: i128, hi: i128) -> bool {
        // Anything near INF is still "unbounded": keeps INF - k from looking like progress.
        let hi = if hi >= INF / 2 { INF } else { hi };
        let mut changed = false;
        if lo > self.lo[cell] {
            self.lo[cell] = lo;
            changed = true;
        }
        if hi < self.hi[cell] {
            self.hi[cell] = hi;
            changed = true;
        }
        if changed {
            self.by_table[cell] = Some(table);
            self.contradictory |= self.lo[cell] > self.hi[cell];
        }
        changed
    }

    /// Whether the cell is left with fewer than `required` values while it
    /// could still be a small count (a cell known to be above the threshold
    /// is a large count, and narrowing it discloses nothing more than
    /// publishing it rounded would).
    fn narrow(&self, cell: usize, required: u64, threshold: u32) -> bool {
        self.hi[cell] - self.lo[cell] + 1 < i128::from(required)
            && self.lo[cell] <= i128::from(threshold)
    }

    fn bounds(&self, cell: usize) -> Bounds {
        let clamp = |x: i128| u64::try_from(x.max(0)).unwrap_or(u64::MAX);
        Bounds {
            lo: clamp(self.lo[cell]),
            hi: (self.hi[cell] < INF).then(|| clamp(self.hi[cell])),
        }
    }
}

/// The bounds an attacker can put on every cell's true value from the
/// published `counts`, the (public) `policy` and the `tables` alone.
///
/// This is the view secondary suppression defends against and
/// [`check_cells`] audits: a suppressed cell with `lo == hi` is recovered.
pub fn attacker_bounds(
    counts: &[Count],
    tables: &[TableSpec],
    policy: &DisclosurePolicy,
) -> Vec<Bounds> {
    let tables: Vec<&TableSpec> = tables
        .iter()
        .filter(|t| in_range(t, counts.len()))
        .collect();
    let view = AttackerView::build(counts, &tables, policy);
    (0..counts.len()).map(|c| view.bounds(c)).collect()
}

/// Which disclosure rule a published cell breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyRule {
    /// A published value from 1 to the threshold: it must be suppressed.
    MustBeSuppressed {
        /// The published value.
        value: u64,
        /// The policy's threshold.
        threshold: u32,
    },
    /// A published value that is not a multiple of the rounding base.
    MustBeRounded {
        /// The published value.
        value: u64,
        /// The policy's rounding base.
        base: u32,
    },
    /// A suppressed cell that a table's other cells narrow to fewer values
    /// than the protection interval (one value: recovered exactly).
    Recoverable {
        /// The table that gives it away.
        table: String,
        /// How many values the attacker is left with.
        values: u64,
        /// The policy's protection interval.
        required: u64,
    },
}

/// A published cell that breaks the disclosure policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyViolation {
    /// Metric id (e.g. `age_band.18_24`), or `cell[i]` from [`check_cells`].
    pub metric: String,
    /// The broken rule.
    pub rule: PolicyRule,
}

impl fmt::Display for PolicyViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let metric = &self.metric;
        match &self.rule {
            PolicyRule::MustBeSuppressed { value, threshold } => write!(
                f,
                "metric {metric}: value {value} is within the suppression threshold {threshold} and must be suppressed"
            ),
            PolicyRule::MustBeRounded { value, base } => {
                write!(
                    f,
                    "metric {metric}: value {value} must be rounded to base {base}"
                )
            }
            PolicyRule::Recoverable {
                table,
                values,
                required,
            } => write!(
                f,
                "metric {metric}: suppressed value is narrowed to {values} possible value(s) by table {table} and its other published cells, fewer than the protection interval of {required} (needs secondary suppression)"
            ),
        }
    }
}

impl std::error::Error for PolicyViolation {}

/// Audits a published catalogue table against `policy` (the hub's defence in depth).
///
/// Call it with the policy the site declared, after checking that policy is
/// [`DisclosurePolicy::at_least_as_strict_as`] the network's: the attacker's
/// view depends on the rounding base and threshold actually used.
pub fn check_policy(
    published: &Published,
    policy: &DisclosurePolicy,
) -> Result<(), Vec<PolicyViolation>> {
    check_policy_with_zeros(published, policy, &[])
}

/// [`check_policy`] for a site that declares structural zeros (`zero`, by
/// catalogue index; see [`crate::structural`]): a 0 published there is the
/// site's policy, not a small count shown.
pub fn check_policy_with_zeros(
    published: &Published,
    policy: &DisclosurePolicy,
    zero: &[bool],
) -> Result<(), Vec<PolicyViolation>> {
    let metrics = catalogue().metrics();
    check_with_names(
        &published.counts,
        catalogue().tables(),
        policy,
        |i| metrics[i].id.clone(),
        zero,
    )
}

/// Audits arbitrary cells related by `tables`; violations name cells `cell[i]`.
pub fn check_cells(
    counts: &[Count],
    tables: &[TableSpec],
    policy: &DisclosurePolicy,
) -> Result<(), Vec<PolicyViolation>> {
    check_with_names(counts, tables, policy, |i| format!("cell[{i}]"), &[])
}

fn check_with_names(
    counts: &[Count],
    tables: &[TableSpec],
    policy: &DisclosurePolicy,
    name: impl Fn(usize) -> String,
    zero: &[bool],
) -> Result<(), Vec<PolicyViolation>> {
    let mut violations = Vec::new();
    for (i, count) in counts.iter().enumerate() {
        let Count::Value(value) = *count else {
            continue;
        };
        let structural = value == 0 && zero.get(i).copied().unwrap_or(false);
        if structural {
            continue;
        }
        if value <= u64::from(policy.threshold) && (value >= 1 || policy.zero_is_small()) {
            let rule = PolicyRule::MustBeSuppressed {
                value,
                threshold: policy.threshold,
            };
            violations.push(PolicyViolation {
                metric: name(i),
                rule,
            });
        } else if value % policy.base() != 0 {
            let rule = PolicyRule::MustBeRounded {
                value,
                base: policy.rounding_base,
            };
            violations.push(PolicyViolation {
                metric: name(i),
                rule,
            });
        }
    }
    if policy.secondary_suppression {
        let tables: Vec<&TableSpec> = tables
            .iter()
            .filter(|t| in_range(t, counts.len()))
            .collect();
        let view = AttackerView::build(counts, &tables, policy);
        let required = policy.protection_interval();
        for (i, count) in counts.iter().enumerate() {
            if *count == Count::Suppressed && view.narrow(i, required, policy.threshold) {
                let table = view.by_table[i].map_or("?", |t| tables[t].name).to_string();
                let values = u64::try_from((view.hi[i] - view.lo[i] + 1).max(0)).unwrap_or(0);
                violations.push(PolicyViolation {
                    metric: name(i),
                    rule: PolicyRule::Recoverable {
                        table,
                        values,
                        required,
                    },
                });
            }
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(violations)
    }
}

/// A published table that cannot come from any true counts (e.g. a part larger than its total).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inconsistency {
    /// The metric ids involved.
    pub metrics: Vec<String>,
    /// What is impossible, for people.
    pub message: String,
}

impl fmt::Display for Inconsistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.metrics.join(", "))
    }
}

impl std::error::Error for Inconsistency {}

/// Checks a published catalogue table could come from real counts under `policy`.
///
/// Uses the same per-cell bounds as the attacker's view: for each table the
/// parts' bounds must allow the total's, and a subset (people newly
/// introduced, people with an outcome) can never exceed the whole it is drawn
/// from. Bounds are compared loosely (a part's lowest possible value against
/// the whole's highest), so rounding alone never causes a rejection.
pub fn check_consistency(
    published: &Published,
    policy: &DisclosurePolicy,
) -> Result<(), Vec<Inconsistency>> {
    let cat = catalogue();
    let id = |i: usize| cat.def(i).id.clone();
    let view = AttackerView::cellwise(&published.counts, policy);
    let show = |i: usize| match view.bounds(i).hi {
        Some(hi) => hi.to_string(),
        None => "unbounded".to_string(),
    };
    let mut found = Vec::new();
    for table in cat.tables() {
        let sum_lo: i128 = table.parts.iter().map(|&p| view.lo[p]).sum();
        let sum_hi: i128 = table.parts.iter().map(|&p| view.hi[p]).sum();
        // Named only for a finding: this runs on every submission the hub takes.
        let metrics = || {
            let mut ids = vec![id(table.total)];
            ids.extend(table.parts.iter().map(|&p| id(p)));
            ids
        };
        if sum_lo > view.hi[table.total] {
            found.push(Inconsistency {
                message: format!(
                    "table {}: the parts add up to at least {sum_lo} but the total {} is at most {}",
                    table.name,
                    id(table.total),
                    show(table.total)
                ),
                metrics: metrics(),
            });
        } else if sum_hi < view.lo[table.total] {
            found.push(Inconsistency {
                message: format!(
                    "table {}: the parts add up to at most {sum_hi} but the total {} is at least {}",
                    table.name,
                    id(table.total),
                    view.lo[table.total]
                ),
                metrics: metrics(),
            });
        }
    }
    for (part, whole) in catalogue_subsets() {
        if view.lo[part] > view.hi[whole] {
            found.push(Inconsistency {
                message: format!(
                    "{} is at least {} but cannot exceed {}, which is at most {}",
                    id(part),
                    view.lo[part],
                    id(whole),
                    show(whole)
                ),
                metrics: vec![id(part), id(whole)],
            });
        }
    }
    if found.is_empty() { Ok(()) } else { Err(found) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{self, Aggregates};
    use crate::vocab::{AgeBand, AgeGroup, IntroductionSource, PrimaryNeed, SupportLevel};
    use Count::{Suppressed as S, Value as V};
    use proptest::prelude::*;

    fn policy(threshold: u32, rounding_base: u32) -> DisclosurePolicy {
        DisclosurePolicy {
            threshold,
            rounding_base,
            secondary_suppression: true,
        }
    }

    /// One table: cell 0 is the total, cells 1.. the parts.
    fn flat(parts: usize) -> Vec<TableSpec> {
        vec![TableSpec {
            name: "t",
            total: 0,
            parts: (1..=parts).collect(),
        }]
    }

    /// Total first, then the parts.
    fn with_total(parts: &[u64]) -> Vec<u64> {
        std::iter::once(parts.iter().sum())
            .chain(parts.iter().copied())
            .collect()
    }

    #[test]
    fn rounding_goes_to_the_nearest_multiple_and_half_way_goes_up() {
        assert_eq!(round_to(12, 5), 10);
        assert_eq!(round_to(13, 5), 15);
        assert_eq!(round_to(8, 5), 10);
        assert_eq!(round_to(14, 10), 10);
        assert_eq!(round_to(15, 10), 20);
        assert_eq!(round_to(3, 2), 4);
        assert_eq!(round_to(17, 1), 17);
        assert_eq!(round_to(u64::MAX, 10), u64::MAX - 5);
    }

    #[test]
    fn policy_validation_and_strictness() {
        assert_eq!(DisclosurePolicy::default().validate(), Ok(()));
        assert_eq!(policy(0, 1).validate(), Ok(()));
        assert_eq!(
            policy(7, 0).validate(),
            Err(DisclosureError::RoundingBaseZero)
        );
        assert_eq!(
            policy(7, 1001).validate(),
            Err(DisclosureError::RoundingBaseTooLarge(1001))
        );
        assert_eq!(
            policy(1001, 5).validate(),
            Err(DisclosureError::ThresholdTooLarge(1001))
        );
        assert_eq!(policy(1000, 1000).validate(), Ok(()));

        let network = DisclosurePolicy::default();
        assert!(network.at_least_as_strict_as(&network));
        assert!(policy(10, 10).at_least_as_strict_as(&network));
        assert!(
            !policy(6, 5).at_least_as_strict_as(&network),
            "lower threshold"
        );
        assert!(
            !policy(7, 2).at_least_as_strict_as(&network),
            "base not a multiple"
        );
        assert!(
            !policy(7, 7).at_least_as_strict_as(&network),
            "base not a multiple"
        );
        let no_secondary = DisclosurePolicy {
            secondary_suppression: false,
            ..network
        };
        assert!(!no_secondary.at_least_as_strict_as(&network));
        assert!(network.at_least_as_strict_as(&no_secondary));
    }

    #[test]
    fn unrounded_table_with_a_recoverable_small_part_loses_its_next_smallest_part() {
        // 3 is suppressed; 32 - 9 - 20 would give it away, so 9 goes too.
        let out = protect(&with_total(&[3, 9, 20]), &flat(3), &policy(7, 1));
        assert_eq!(out, vec![V(32), S, S, V(20)]);
        assert_eq!(check_cells(&out, &flat(3), &policy(7, 1)), Ok(()));
    }

    #[test]
    fn rounding_alone_can_protect_a_small_part() {
        // The total 32 publishes as 30 (28..=32), 9 as 10 (8..=12), 20 as 20 (18..=22):
        // the suppressed 3 can be anything from 0 to 6: seven values.
        let out = protect(&with_total(&[3, 9, 20]), &flat(3), &policy(7, 5));
        assert_eq!(out, vec![V(30), S, V(10), V(20)]);
        let bounds = attacker_bounds(&out, &flat(3), &policy(7, 5));
        assert_eq!(bounds[1], Bounds { lo: 0, hi: Some(6) });
    }

    #[test]
    fn without_secondary_suppression_only_small_counts_go() {
        let p = DisclosurePolicy {
            secondary_suppression: false,
            ..policy(7, 1)
        };
        assert_eq!(
            protect(&with_total(&[3, 9, 20]), &flat(3), &p),
            vec![V(32), S, V(9), V(20)]
        );
    }

    #[test]
    fn zero_is_a_small_count() {
        // 0 and 5 are withheld; together they are 25 - 20 = 5, which leaves
        // each only 0..=5 (six values), so 20 goes too.
        let out = protect(&with_total(&[0, 5, 20]), &flat(3), &policy(7, 1));
        assert_eq!(out, vec![V(25), S, S, S]);
        let out = protect(&with_total(&[0, 0, 0]), &flat(3), &policy(7, 5));
        assert_eq!(out, vec![S; 4]);
        // All but one part published as 0 would make the last one the total.
        let out = protect(&with_total(&[0, 0, 40, 3]), &flat(4), &policy(7, 5));
        assert!(!out.contains(&V(0)), "{out:?}");
        // With no threshold, a count that would round to 0 is withheld, not shown as a zero.
        let out = protect(&with_total(&[0, 2, 30]), &flat(3), &policy(0, 5));
        assert_eq!(out[1], V(0));
        assert_eq!(out[2], S);
    }

    #[test]
    fn totals_are_rounded_from_true_totals_not_summed_from_rounded_parts() {
        let out = protect(&with_total(&[12, 12, 12]), &flat(3), &policy(7, 5));
        assert_eq!(out, vec![V(35), V(10), V(10), V(10)]);
    }

    #[test]
    fn suppressed_cells_keep_the_protection_interval_not_just_two_values() {
        // 3 and 4 withheld beside an exact 20 of 27: together they are 7, so
        // each is one of 0..=7 (eight values): enough.
        let out = protect(&with_total(&[3, 4, 20]), &flat(3), &policy(7, 1));
        assert_eq!(out, vec![V(27), S, S, V(20)]);
        // 1 and 2 beside 20 of 23: each one of 0..=3 (four values): not
        // enough, although neither is recovered exactly. 20 goes too.
        let out = protect(&with_total(&[1, 2, 20]), &flat(3), &policy(7, 1));
        assert_eq!(out, vec![V(23), S, S, S]);
        // The checker sees the narrow version too.
        let leaky = vec![V(23), S, S, V(20)];
        let err = check_cells(&leaky, &flat(3), &policy(7, 1)).unwrap_err();
        assert_eq!(err.len(), 2);
        assert!(err.iter().all(|v| v.rule
            == PolicyRule::Recoverable {
                table: "t".into(),
                values: 4,
                required: 7
            }));
    }

    #[test]
    fn check_cells_rejects_each_rule_with_a_precise_message() {
        let p = policy(7, 5);
        let err = check_cells(&[V(5)], &[], &p).unwrap_err();
        assert_eq!(
            err[0].rule,
            PolicyRule::MustBeSuppressed {
                value: 5,
                threshold: 7
            }
        );
        assert_eq!(
            err[0].to_string(),
            "metric cell[0]: value 5 is within the suppression threshold 7 and must be suppressed"
        );
        let err = check_cells(&[V(12)], &[], &p).unwrap_err();
        assert_eq!(
            err[0].rule,
            PolicyRule::MustBeRounded { value: 12, base: 5 }
        );
        assert_eq!(
            err[0].to_string(),
            "metric cell[0]: value 12 must be rounded to base 5"
        );
        // A lone suppressed part with an exact total, no rounding: 32 - 9 - 20 = 3.
        let err = check_cells(&[V(32), S, V(9), V(20)], &flat(3), &policy(7, 1)).unwrap_err();
        assert_eq!(
            err,
            vec![PolicyViolation {
                metric: "cell[1]".into(),
                rule: PolicyRule::Recoverable {
                    table: "t".into(),
                    values: 1,
                    required: 7
                }
            }]
        );
        assert!(
            err[0]
                .to_string()
                .contains("narrowed to 1 possible value(s) by table t"),
            "{}",
            err[0]
        );
        // The same table is fine when secondary suppression is not part of the policy.
        let lax = DisclosurePolicy {
            secondary_suppression: false,
            ..policy(7, 1)
        };
        assert_eq!(
            check_cells(&[V(32), S, V(9), V(20)], &flat(3), &lax),
            Ok(())
        );
        // Zero is a small count, allowed only when primary suppression is off.
        let err = check_cells(&[V(0), V(10), S], &[], &p).unwrap_err();
        assert_eq!(
            err[0].rule,
            PolicyRule::MustBeSuppressed {
                value: 0,
                threshold: 7
            }
        );
        assert_eq!(check_cells(&[V(0), V(10), S], &[], &policy(0, 5)), Ok(()));
    }

    #[test]
    fn check_policy_names_catalogue_metrics() {
        let mut published = apply(&Aggregates::default(), &DisclosurePolicy::default());
        published.counts[metrics::age_band(AgeBand::From18To24)] = V(5);
        let err = check_policy(&published, &DisclosurePolicy::default()).unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(
            err[0].to_string(),
            "metric age_band.18_24: value 5 is within the suppression threshold 7 and must be suppressed"
        );

        // A lone suppressed support level beside an exact total, with no rounding.
        let p = policy(7, 1);
        let published = apply(
            &sample(3, 20),
            &DisclosurePolicy {
                secondary_suppression: false,
                ..p
            },
        );
        assert_eq!(
            published.counts[metrics::support_level(SupportLevel::Level1)],
            S
        );
        let err = check_policy(&published, &p).unwrap_err();
        assert!(
            err.iter().any(|v| v.metric == "support_level.level_1"
                && v.rule
                    == PolicyRule::Recoverable {
                        table: "support_level".into(),
                        values: 1,
                        required: 7,
                    }),
            "{err:?}"
        );
    }

    #[test]
    fn check_consistency_rejects_a_part_larger_than_its_total() {
        let p = DisclosurePolicy::default();
        let mut published = apply(&Aggregates::default(), &p);
        published.counts[INTRODUCTIONS_NEW] = V(20);
        published.counts[metrics::age_band(AgeBand::From65To74)] = V(50);
        published.counts[metrics::age_group(AgeGroup::From65)] = V(50);
        let err = check_consistency(&published, &p).unwrap_err();
        assert!(
            err.iter()
                .any(|i| i.metrics.contains(&"age_band.65_74".to_string())
                    && i.message.starts_with("table age_band:")),
            "{err:?}"
        );
        assert!(
            err.iter()
                .any(|i| i.metrics.contains(&"age_group.65_plus".to_string())),
            "{err:?}"
        );

        let mut published = apply(&sample(20, 20), &p);
        assert_eq!(check_consistency(&published, &p), Ok(()));
        published.counts[PEOPLE_NEW] = V(60);
        published.counts[PEOPLE_ACTIVE] = V(50);
        published.counts[INTRODUCTIONS_NEW] = V(40);
        let err = check_consistency(&published, &p).unwrap_err();
        assert_eq!(err.len(), 2, "{err:?}");
        assert_eq!(
            err[0].metrics,
            vec!["people_new".to_string(), "introductions_new".to_string()]
        );
        assert_eq!(
            err[1].metrics,
            vec!["people_new".to_string(), "people_active".to_string()]
        );
        assert_eq!(
            err[1].to_string(),
            "people_new is at least 58 but cannot exceed people_active, which is at most 52 (people_new, people_active)"
        );
        // An empty period publishes nothing but withheld cells, which fit any truth.
        let published = apply(&Aggregates::default(), &p);
        assert!(published.counts.iter().all(|c| *c == S));
        assert_eq!(check_consistency(&published, &p), Ok(()));
    }

    /// A consistent period: `level_1 + level_2` introductions, all aged 18-24,
    /// all with need and source "other", one introduction per person.
    fn sample(level_1: u64, level_2: u64) -> Aggregates {
        let n = level_1 + level_2;
        let mut a = Aggregates::default();
        for cell in [
            INTRODUCTIONS_NEW,
            PEOPLE_NEW,
            PEOPLE_ACTIVE,
            metrics::age_band(AgeBand::From18To24),
            metrics::age_group(AgeGroup::From18To64),
            metrics::primary_need(PrimaryNeed::Other),
            metrics::source(IntroductionSource::Other),
        ] {
            a.counts[cell] = n;
        }
        a.counts[metrics::support_level(SupportLevel::Level1)] = level_1;
        a.counts[metrics::support_level(SupportLevel::Level2)] = level_2;
        // The support-level cross-tabs (issue 10) of the same introductions.
        for (l, v) in [
            (SupportLevel::Level1, level_1),
            (SupportLevel::Level2, level_2),
        ] {
            a.counts[metrics::level_age_group(l, AgeGroup::From18To64)] = v;
            a.counts[metrics::level_primary_need(l, PrimaryNeed::Other)] = v;
            a.counts[metrics::level_source(l, IntroductionSource::Other)] = v;
        }
        a
    }

    /// Realistic, internally consistent aggregates built from individual introductions.
    fn aggregates() -> impl Strategy<Value = Aggregates> {
        let intro = (0..2usize, 0..9usize, 0..10usize, 0..9usize);
        (
            prop::collection::vec(intro, 0..120),
            0u64..40,
            prop::collection::vec(0u64..=100, 9),
        )
            .prop_map(|(intros, extra_active, outcome_pct)| {
                let mut a = Aggregates::default();
                let n = intros.len() as u64;
                a.counts[INTRODUCTIONS_NEW] = n;
                a.counts[metrics::CLOSURES] = extra_active / 2;
                a.counts[metrics::level_closures(SupportLevel::Level1)] = extra_active / 2;
                for (level, band, need, source) in intros {
                    let band = AgeBand::ALL[band];
                    // The support-level cross-tabs (issue 10) of the same introductions.
                    let l = SupportLevel::ALL[level];
                    a.counts[metrics::level_age_group(l, band.group())] += 1;
                    a.counts[metrics::level_primary_need(l, PrimaryNeed::ALL[need])] += 1;
                    a.counts[metrics::level_source(l, IntroductionSource::ALL[source])] += 1;
                    a.counts[metrics::support_level(SupportLevel::ALL[level])] += 1;
                    a.counts[metrics::age_band(band)] += 1;
                    if band != AgeBand::Under18 {
                        a.counts[metrics::age_group(band.group())] += 1;
                    }
                    a.counts[metrics::primary_need(PrimaryNeed::ALL[need])] += 1;
                    a.counts[metrics::source(IntroductionSource::ALL[source])] += 1;
                }
                // People as real records give them: at each level, a
                // quarter of the new introductions repeat a person; the
                // people active but not new are at Level 1; nobody is at
                // both levels, so the overall figures are the levels' sums.
                let (l1, l2) = (SupportLevel::Level1, SupportLevel::Level2);
                for l in [l1, l2] {
                    let intros = a.counts[metrics::support_level(l)];
                    a.counts[metrics::level_people_new(l)] = intros - intros / 4;
                    a.counts[metrics::level_people_active(l)] =
                        a.counts[metrics::level_people_new(l)];
                }
                a.counts[metrics::level_people_active(l1)] += extra_active;
                for w in [PEOPLE_NEW, PEOPLE_ACTIVE] {
                    let level = |l| match w {
                        PEOPLE_NEW => metrics::level_people_new(l),
                        _ => metrics::level_people_active(l),
                    };
                    a.counts[w] = a.counts[level(l1)] + a.counts[level(l2)];
                }
                for (o, pct) in Outcome::ALL.iter().zip(outcome_pct) {
                    let at = |l| a.counts[metrics::level_people_active(l)] * pct / 100;
                    let (o1, o2) = (at(l1), at(l2));
                    a.counts[metrics::level_outcome(l1, *o)] = o1;
                    a.counts[metrics::level_outcome(l2, *o)] = o2;
                    a.counts[metrics::outcome(*o)] = o1 + o2;
                }
                a
            })
    }

    fn any_policy() -> impl Strategy<Value = DisclosurePolicy> {
        (
            0u32..=10,
            prop_oneof![Just(1u32), Just(2), Just(3), Just(5), Just(10)],
            any::<bool>(),
        )
            .prop_map(|(threshold, rounding_base, secondary_suppression)| {
                DisclosurePolicy {
                    threshold,
                    rounding_base,
                    secondary_suppression,
                }
            })
    }

    proptest! {
        #[test]
        fn check_policy_and_consistency_accept_whatever_apply_publishes(a in aggregates(), p in any_policy()) {
            let published = apply(&a, &p);
            prop_assert_eq!(check_policy(&published, &p), Ok(()));
            prop_assert_eq!(check_consistency(&published, &p), Ok(()));
            for (count, &value) in published.counts.iter().zip(a.counts.iter()) {
                if p.threshold == 0 {
                    // Without primary suppression a zero is published as zero, and nothing else is.
                    prop_assert_eq!(value == 0, *count == V(0));
                } else {
                    // Otherwise zero is a small count: never published.
                    prop_assert_ne!(*count, V(0));
                }
            }
        }

        #[test]
        fn check_cells_accepts_whatever_protect_publishes(
            parts in prop::collection::vec(0u64..=40, 1..=8),
            p in any_policy(),
        ) {
            let values = with_total(&parts);
            let out = protect(&values, &flat(parts.len()), &p);
            prop_assert_eq!(check_cells(&out, &flat(parts.len()), &p), Ok(()));
        }
    }

    // ---- The attacker test -------------------------------------------------
    //
    // An independent brute-force attacker: it shares no code with the interval
    // logic above. It lists, for each published cell, every true value that
    // could have produced it, then searches for full assignments of true values
    // that satisfy every table's equation. A suppressed cell that takes only one
    // value across all of them has been recovered.

    /// Largest true value the attacker considers for a suppressed leaf (true
    /// leaves are at most 25). A bounded attacker sees fewer alternatives, so
    /// the bound only makes the test stricter; it keeps the search short.
    const LEAF_BOUND: u64 = 40;
    /// Largest true value considered for a suppressed sum (any sum of bounded leaves fits).
    const SUM_BOUND: u64 = 9 * LEAF_BOUND;

    /// Nearest multiple of `base`, half way up, written differently from `round_to`.
    fn brute_round(v: u64, base: u64) -> u64 {
        base * ((2 * v + base) / (2 * base))
    }

    /// Every true value consistent with one published cell.
    fn candidates(c: Count, threshold: u64, base: u64, bound: u64) -> Vec<u64> {
        match c {
            V(0) => vec![0],
            V(r) => (1..=SUM_BOUND)
                .filter(|&v| v > threshold && brute_round(v, base) == r)
                .collect(),
            S if threshold > 0 => (0..=bound).collect(),
            S => (1..=bound).collect(),
            Count::NotReleased => (0..=bound).collect(),
        }
    }

    /// Cells: some leaves, and sums (a cell equal to the sum of some leaves).
    struct Shape {
        leaves: Vec<usize>,
        sums: Vec<(usize, Vec<usize>)>,
    }

    struct Search<'a> {
        shape: &'a Shape,
        cands: Vec<Vec<u64>>,
        /// For each sum, its leaves' positions in `shape.leaves` order, as a mask.
        member: Vec<Vec<bool>>,
    }

    impl Search<'_> {
        /// Is there an assignment of leaves so that every cell's value is one of its candidates?
        fn feasible(&self) -> bool {
            let mut partial = vec![0u64; self.shape.sums.len()];
            self.dfs(0, &mut partial)
        }

        fn dfs(&self, depth: usize, partial: &mut [u64]) -> bool {
            // Prune: every sum must still be able to reach one of its candidates.
            for (s, (cell, _)) in self.shape.sums.iter().enumerate() {
                let (mut min, mut max) = (partial[s], partial[s]);
                for (pos, &leaf) in self.shape.leaves.iter().enumerate().skip(depth) {
                    if self.member[s][pos] {
                        min += self.cands[leaf][0];
                        max += self.cands[leaf][self.cands[leaf].len() - 1];
                    }
                }
                let c = &self.cands[*cell];
                if min > c[c.len() - 1] || max < c[0] {
                    return false;
                }
                if min == max && c.binary_search(&min).is_err() {
                    return false;
                }
            }
            if depth == self.shape.leaves.len() {
                return true;
            }
            let leaf = self.shape.leaves[depth];
            for &v in &self.cands[leaf] {
                for (s, m) in self.member.iter().enumerate() {
                    if m[depth] {
                        partial[s] += v;
                    }
                }
                let ok = self.dfs(depth + 1, partial);
                for (s, m) in self.member.iter().enumerate() {
                    if m[depth] {
                        partial[s] -= v;
                    }
                }
                if ok {
                    return true;
                }
            }
            false
        }
    }

    /// Runs the attacker on `published`; returns the suppressed cells it
    /// narrows to fewer values than the policy's protection interval.
    fn brute_force_recovered(
        shape: &Shape,
        truth: &[u64],
        published: &[Count],
        p: &DisclosurePolicy,
    ) -> Vec<usize> {
        let (threshold, base) = (u64::from(p.threshold), u64::from(p.rounding_base));
        let sum_cells: Vec<usize> = shape.sums.iter().map(|(c, _)| *c).collect();
        let cands: Vec<Vec<u64>> = published
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                candidates(
                    c,
                    threshold,
                    base,
                    if sum_cells.contains(&i) {
                        SUM_BOUND
                    } else {
                        LEAF_BOUND
                    },
                )
            })
            .collect();
        // Sanity: the truth is one of the attacker's candidate worlds.
        for (i, &t) in truth.iter().enumerate() {
            assert!(
                cands[i].contains(&t),
                "true value {t} of cell {i} not a candidate of {:?}",
                published[i]
            );
        }
        for (cell, leaves) in &shape.sums {
            assert_eq!(truth[*cell], leaves.iter().map(|&l| truth[l]).sum::<u64>());
        }
        let member = shape
            .sums
            .iter()
            .map(|(_, ls)| shape.leaves.iter().map(|l| ls.contains(l)).collect())
            .collect();
        let mut search = Search {
            shape,
            cands: cands.clone(),
            member,
        };
        assert!(search.feasible(), "the true table must be feasible");
        let mut recovered = Vec::new();
        for (i, &c) in published.iter().enumerate() {
            if c != S {
                continue;
            }
            // The guarantee is about cells that could be small: one the
            // attacker knows is above the threshold (an 11 withheld because
            // it rounds to 10, under threshold 10) tells no more than a
            // published rounded value would, as the red team counts it.
            let could_be_small = cands[i].iter().any(|&v| {
                v <= u64::from(p.threshold) && {
                    search.cands[i] = vec![v];
                    let ok = search.feasible();
                    search.cands[i] = cands[i].clone();
                    ok
                }
            });
            if !could_be_small {
                continue;
            }
            // Look for any value other than the truth, nearest first.
            let mut others: Vec<u64> = cands[i]
                .iter()
                .copied()
                .filter(|&v| v != truth[i])
                .collect();
            others.sort_by_key(|&v| v.abs_diff(truth[i]));
            let needed = usize::try_from(p.protection_interval() - 1).unwrap_or(usize::MAX);
            let alternatives = others
                .into_iter()
                .filter(|&v| {
                    search.cands[i] = vec![v];
                    let ok = search.feasible();
                    search.cands[i] = cands[i].clone();
                    ok
                })
                .take(needed)
                .count();
            if alternatives < needed {
                recovered.push(i);
            }
        }
        recovered
    }

    fn attack_policy() -> impl Strategy<Value = DisclosurePolicy> {
        (
            2u32..=10,
            prop_oneof![Just(1u32), Just(2), Just(5), Just(10)],
        )
            .prop_map(|(threshold, rounding_base)| DisclosurePolicy {
                threshold,
                rounding_base,
                secondary_suppression: true,
            })
    }

    /// The case proptest found: 11 is withheld under threshold 10 because it
    /// rounds to 10, and the table pins it to 11..=19, above the threshold:
    /// not a small count narrowed.
    #[test]
    fn a_large_count_withheld_for_its_rounding_is_not_a_small_one_recovered() {
        let p = DisclosurePolicy {
            threshold: 10,
            rounding_base: 5,
            secondary_suppression: true,
        };
        let truth = with_total(&[17, 11]);
        let published = protect(&truth, &flat(2), &p);
        assert_eq!(published[2], Count::Suppressed);
        let shape = Shape {
            leaves: vec![1, 2],
            sums: vec![(0, vec![1, 2])],
        };
        assert!(brute_force_recovered(&shape, &truth, &published, &p).is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn brute_force_attacker_recovers_nothing_from_one_table(
            parts in prop::collection::vec(0u64..=25, 2..=5),
            p in attack_policy(),
        ) {
            let truth = with_total(&parts);
            let tables = flat(parts.len());
            let published = protect(&truth, &tables, &p);
            let shape = Shape { leaves: (1..truth.len()).collect(), sums: vec![(0, (1..truth.len()).collect())] };
            let recovered = brute_force_recovered(&shape, &truth, &published, &p);
            prop_assert!(recovered.is_empty(), "recovered cells {:?} of {:?} published {:?}", recovered, truth, published);
        }

    }

    proptest! {
        // Counting every alternative world is exponential in the leaves, and
        // some seeds take minutes: a fixed seed keeps CI's run short and
        // repeatable (set PROPTEST_RNG_SEED to explore others).
        #![proptest_config(ProptestConfig {
            cases: 24,
            rng_seed: proptest::test_runner::RngSeed::Fixed(
                std::env::var("PROPTEST_RNG_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20_261_130),
            ),
            ..ProptestConfig::default()
        })]

        #[test]
        fn brute_force_attacker_recovers_nothing_from_a_two_level_hierarchy(
            groups in prop::collection::vec(prop::collection::vec(0u64..=16, 1..=3), 2..=3),
            p in attack_policy(),
        ) {
            // Cell 0: grand total; 1..=G: group totals; then the leaves, group by group.
            // Tables like the age tables: total = groups, group = its leaves, total = all leaves.
            let g = groups.len();
            let mut truth = vec![0u64; 1 + g];
            let mut tables = Vec::new();
            let mut sums = Vec::new();
            let mut all_leaves = Vec::new();
            for (k, leaves) in groups.iter().enumerate() {
                let cells: Vec<usize> = (truth.len()..truth.len() + leaves.len()).collect();
                truth.extend(leaves);
                truth[1 + k] = leaves.iter().sum();
                tables.push(TableSpec { name: "group", total: 1 + k, parts: cells.clone() });
                sums.push((1 + k, cells.clone()));
                all_leaves.extend(cells);
            }
            truth[0] = truth[1..=g].iter().sum();
            tables.push(TableSpec { name: "top", total: 0, parts: (1..=g).collect() });
            tables.push(TableSpec { name: "flat", total: 0, parts: all_leaves.clone() });
            sums.push((0, all_leaves.clone()));
            let published = protect(&truth, &tables, &p);
            prop_assert_eq!(check_cells(&published, &tables, &p), Ok(()));
            let shape = Shape { leaves: all_leaves, sums };
            let recovered = brute_force_recovered(&shape, &truth, &published, &p);
            prop_assert!(recovered.is_empty(), "recovered cells {:?} of {:?} published {:?}", recovered, truth, published);
        }
    }
}
