//! Protecting a release jointly with the site's other releases about the
//! same people: a month or quarter with its financial year and programme to
//! date, a span with the periods it covers (see [`lacnet_core::linked`]).
//!
//! An attacker holds every release the site has published. What they hold of
//! a linked release is its last enqueued submission, read against that
//! period's *current* true counts ([`disclosure::as_known`]): a cell the
//! truth has since moved away from (a held revision) is read as withheld, so
//! the joint system is always one the truth satisfies.

use std::collections::{BTreeSet, HashMap};

use lacnet_core::disclosure::{self, Count, Cover, DisclosurePolicy, Published};
use lacnet_core::linked::{PeriodCover, covers_touching};
use lacnet_core::metrics::METRIC_COUNT;
use lacnet_core::{Date, Granularity, Period};

use crate::AgentError;
use crate::plan::Snapshot;

/// Releases a new release is protected against, in the order they are
/// decided: months or quarters first, then financial years, then the
/// programme to date from the earliest, so each span meets the releases it
/// covers as they will be published.
pub fn publication_order(periods: &mut [Period]) {
    periods.sort_by_key(|p| {
        let rank = match p.granularity() {
            Granularity::Month | Granularity::Quarter => 0,
            Granularity::FinancialYear => 1,
            Granularity::ProgrammeToDate => 2,
        };
        (rank, p.end(), *p)
    });
}

/// How many steps along the covers a release's system reaches: its own
/// covers, then the covers of every release in those, and once more. Two
/// steps join a month to its year, the programmes to date around the year,
/// and the year beside each of them, and a first programme to date to the
/// year its months are in; the third takes in those years' own periods.
/// Each step roughly doubles the publishing time of a monthly site; the long
/// red team run still finds cells narrowed to 6 values over the whole
/// series at three (see `docs/disclosure.md`, Measured).
const REACH: usize = 3;

/// The covers a release of `period` is protected with: every cover within
/// [`REACH`] steps whose span `exists`.
fn block(
    period: Period,
    granularity: Granularity,
    programme_start: Option<Date>,
    mut exists: impl FnMut(Period) -> Result<bool, AgentError>,
) -> Result<Vec<PeriodCover>, AgentError> {
    let mut covers: Vec<PeriodCover> = Vec::new();
    let mut seen: BTreeSet<Period> = BTreeSet::from([period]);
    let mut frontier = vec![period];
    for _ in 0..REACH {
        let mut next = Vec::new();
        for p in frontier {
            for c in covers_touching(p, granularity, programme_start) {
                if covers.iter().any(|k| k.span == c.span) {
                    continue;
                }
                if c.span != period && !exists(c.span)? {
                    continue;
                }
                for q in std::iter::once(c.span).chain(c.members.iter().copied()) {
                    if seen.insert(q) {
                        next.push(q);
                    }
                }
                covers.push(c);
            }
        }
        frontier = next;
    }
    Ok(covers)
}

/// Every period whose true counts protecting `periods` needs: the spans and
/// members of every cover in their blocks whose span is among `periods` or
/// was published before (a cover without its span tells nothing).
pub fn neighbours(
    snapshot: &dyn Snapshot,
    periods: &[Period],
    granularity: Granularity,
    programme_start: Option<Date>,
) -> Result<BTreeSet<Period>, AgentError> {
    let mut out = BTreeSet::new();
    for p in periods {
        let exists =
            |span: Period| Ok(periods.contains(&span) || snapshot.last_release(span)?.is_some());
        for c in block(*p, granularity, programme_start, exists)? {
            out.insert(c.span);
            out.extend(c.members);
        }
    }
    Ok(out)
}

/// The site's releases as an attacker holds them, during one round of
/// publishing (or one preview).
pub struct Released<'a> {
    snapshot: &'a dyn Snapshot,
    policy: DisclosurePolicy,
    granularity: Granularity,
    programme_start: Option<Date>,
    /// Current true counts of every period involved.
    truth: HashMap<Period, Vec<u64>>,
    /// Releases decided for publication in this round, which supersede the store's.
    this_round: HashMap<Period, Vec<Count>>,
    /// The site's structural zeros ([`lacnet_core::structural`]).
    zero: [bool; METRIC_COUNT],
}

impl<'a> Released<'a> {
    /// A view over `snapshot`'s last releases, with the current `truth` of
    /// every period that [`neighbours`] named.
    pub fn new(
        snapshot: &'a dyn Snapshot,
        policy: DisclosurePolicy,
        granularity: Granularity,
        programme_start: Option<Date>,
        truth: HashMap<Period, Vec<u64>>,
        zero: [bool; METRIC_COUNT],
    ) -> Self {
        Released {
            snapshot,
            policy,
            granularity,
            programme_start,
            truth,
            this_round: HashMap::new(),
            zero,
        }
    }

    /// Records that `period` will be published as `published` in this round.
    pub fn publish(&mut self, period: Period, published: &Published) {
        self.this_round.insert(period, published.counts.to_vec());
    }

    /// Whether any release of `period` exists or is about to.
    fn exists(&self, period: Period) -> Result<bool, AgentError> {
        Ok(self.this_round.contains_key(&period) || self.snapshot.last_release(period)?.is_some())
    }

    /// What an attacker holds of `period`'s release that the truth still
    /// gives. A period never published has no activity (every period with a
    /// record in it is published once it closes), which an attacker may
    /// assume: it reads as zeros when it truly is all zeros, else as unknown.
    fn known(&self, period: Period) -> Result<Vec<Count>, AgentError> {
        if let Some(counts) = self.this_round.get(&period) {
            return Ok(counts.clone());
        }
        let truth = self.truth.get(&period).map(Vec::as_slice);
        let Some(truth) = truth.filter(|t| t.len() == METRIC_COUNT) else {
            return Ok(vec![Count::Suppressed; METRIC_COUNT]);
        };
        Ok(match self.snapshot.last_release(period)? {
            Some(last) => disclosure::as_known(&last.counts, truth, &self.policy),
            None if truth.iter().all(|&v| v == 0) => vec![Count::Value(0); METRIC_COUNT],
            None => vec![Count::Suppressed; METRIC_COUNT],
        })
    }

    /// Protects `period`'s true counts `values` jointly with every linked
    /// release of its block that exists. A cover whose span was never
    /// published tells an attacker nothing about its members, so it is left
    /// out.
    pub fn protect(&self, period: Period, values: &[u64]) -> Result<Published, AgentError> {
        let covers = block(period, self.granularity, self.programme_start, |span| {
            self.exists(span)
        })?;
        let mut slots: Vec<Period> = vec![period];
        let mut slot = |p: Period| match slots.iter().position(|s| *s == p) {
            Some(i) => i,
            None => {
                slots.push(p);
                slots.len() - 1
            }
        };
        let covers: Vec<Cover> = covers
            .iter()
            .map(|c| Cover {
                span: slot(c.span),
                members: c.members.iter().map(|m| slot(*m)).collect(),
                first_partial: c.first_partial,
            })
            .collect();
        let linked = slots[1..]
            .iter()
            .map(|p| self.known(*p))
            .collect::<Result<Vec<_>, _>>()?;
        let carried = lacnet_core::release::carried(period.granularity());
        let out = disclosure::protect_covered(
            values,
            &carried,
            &self.zero,
            &linked,
            &covers,
            &self.policy,
        );
        let mut counts = [Count::Suppressed; METRIC_COUNT];
        counts.copy_from_slice(&out);
        Ok(Published { counts })
    }
}
