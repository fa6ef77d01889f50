//! Anti-entropy with the hub: the agent asks which of its releases the hub
//! holds (`Submissions.ListReleases`, paged, for this site only) and
//! compares the answer with its own last submissions ([`plan`]).
//!
//! ```text
//! outbox.rs pusher ──ListReleases──▶ hub      (start-up, every --reconcile-interval-secs,
//!        │                                      and when a receipt names another hub store)
//!        ▼
//!   plan(agent's last submissions, hub's releases)
//!        ├─ hub lacks it, or holds an older revision ─▶ re-send the stored last submission
//!        ├─ hub holds a newer revision than the agent  ─▶ lost: held back, reported
//!        └─ same digest                                ─▶ in sync
//! ```
//!
//! A re-send is the very submission published before (same revision, same
//! digest, same cells), put back in the outbox: not a new release, so the
//! embargo and the release gate have nothing to decide, and no figure is
//! computed for it.
//!
//! A hub holding a newer revision than the agent's last means the agent has
//! lost state (restored from an older backup, or a wiped volume with the same
//! key). Its records cannot be trusted to be complete, so the period is held
//! back (the publisher never sends it, see [`crate::Store`]'s `held_by_loss`)
//! and reported in `GetStatus`, the `lacnet_agent_lost_periods` gauge and an
//! ERROR log line, until the council re-imports its latest full export and
//! confirms it ([`confirm_full_import`]). Then the hub's releases of those
//! periods are overruled: the agent's figures replace them, above their revision.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use lacnet_core::{Granularity, Period};
use lacnet_proto::convert::period_from_proto;
use lacnet_proto::hub::v1::ListReleasesRequest;
use lacnet_proto::hub::v1::submissions_client::SubmissionsClient;
use lacnet_store::Durability;
use tonic::transport::Channel;

use crate::store::{HubRelease, LostMark};
use crate::{Agent, AgentError};

/// What an operator does about lost periods: in the log line and `GetStatus`.
pub const LOSS_ADVICE: &str = "this agent lost state (restored from an older backup, or its data \
     directory was lost): re-import the council's latest full export with `lacnet import --full-export FILE`; \
     until then these periods are held back and the hub keeps its newer figures";

/// Releases asked for per `ListReleases` page.
const PAGE_SIZE: u32 = 500;

/// Pages read in one comparison at most: far more releases than a site
/// publishes, so a hub whose page tokens never end cannot hold the agent.
const MAX_PAGES: usize = 100;

/// Longest wait for one `ListReleases` page.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What the agent knows of its own releases when it compares.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Each period's last submission: (revision, digest).
    pub last: BTreeMap<Period, HubRelease>,
    /// Periods with a submission waiting in the outbox (it goes anyway).
    pub queued: BTreeSet<Period>,
    /// (period, revision) of dead letters: the hub refused them for good.
    pub dead: BTreeSet<(Period, u64)>,
    /// Hub releases the operator let re-imported records overrule.
    pub overruled: BTreeMap<Period, HubRelease>,
    /// The last release of each period the hub acknowledged.
    pub acked: BTreeMap<Period, HubRelease>,
    /// The agent's reporting series.
    pub granularity: Option<Granularity>,
}

/// What one comparison decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Periods whose last submission goes to the hub again.
    pub resend: Vec<Period>,
    /// Periods the hub holds newer releases of.
    pub lost: Vec<(Period, LostMark)>,
    /// Periods the hub holds exactly as the agent does (or whose hub
    /// release was overruled): any lost mark they carry goes.
    pub settled: Vec<Period>,
}

/// Compares the agent's releases with the hub's, period by period. Pure.
pub fn plan(snapshot: &Snapshot, hub: &BTreeMap<Period, HubRelease>) -> Plan {
    let mut out = Plan::default();
    let periods: BTreeSet<Period> = snapshot.last.keys().chain(hub.keys()).copied().collect();
    for period in periods {
        // Another series' releases are the hub's to withdraw, not ours.
        if !period.is_span()
            && snapshot
                .granularity
                .is_some_and(|g| g != period.granularity())
        {
            continue;
        }
        let ours = snapshot.last.get(&period);
        match (ours, hub.get(&period)) {
            (None, None) => {}
            (Some(l), None) => {
                if !snapshot.queued.contains(&period)
                    && !snapshot.dead.contains(&(period, l.revision))
                {
                    out.resend.push(period);
                }
            }
            (Some(l), Some(h)) if l.digest == h.digest => out.settled.push(period),
            // The hub is behind: it holds at most what it acknowledged to
            // this agent (a hub restored from a backup, or a push in flight).
            (Some(l), Some(h))
                if h.revision < l.revision
                    && snapshot
                        .acked
                        .get(&period)
                        .is_some_and(|a| a.revision >= h.revision) =>
            {
                if !snapshot.queued.contains(&period)
                    && !snapshot.dead.contains(&(period, l.revision))
                {
                    out.resend.push(period);
                }
            }
            // The hub holds a release this agent does not know: at or above
            // its own last one, or above anything the hub ever acknowledged
            // to it (it published again after losing state).
            (ours, Some(h)) => {
                let overruled = snapshot
                    .overruled
                    .get(&period)
                    .is_some_and(|o| o.revision >= h.revision);
                if overruled {
                    out.settled.push(period);
                } else {
                    out.lost.push((
                        period,
                        LostMark {
                            hub: h.clone(),
                            agent_revision: ours.map(|l| l.revision),
                        },
                    ));
                }
            }
        }
    }
    out
}

/// How a comparison ended.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Submissions put back in the outbox.
    pub resent: usize,
    /// Every period now held back as lost.
    pub lost: Vec<Period>,
    /// Lost periods found in this comparison that were not marked before.
    pub newly_lost: Vec<Period>,
    /// The hub's store id.
    pub store_id: String,
    /// Whether the hub reads packed cells (`Submission.packed`).
    pub accepts_packed: bool,
}

/// What one listing of the hub says.
struct Listing {
    releases: BTreeMap<Period, HubRelease>,
    store_id: String,
    accepts_packed: bool,
}

/// Every release the hub holds for this site, page by page, with the hub's
/// store id and whether it reads packed cells. An error is worth retrying
/// (the hub down, a timeout, a page that does not parse).
async fn fetch(client: &mut SubmissionsClient<Channel>, site: &str) -> Result<Listing, String> {
    let mut all = BTreeMap::new();
    let mut token = String::new();
    let mut store_id: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let call = client.list_releases(ListReleasesRequest {
            site_code: site.to_owned(),
            page_size: PAGE_SIZE,
            page_token: token.clone(),
        });
        let page = match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Err(_) => return Err("the hub did not answer ListReleases in time".into()),
            Ok(Err(status)) => {
                return Err(format!(
                    "ListReleases: {:?}: {}",
                    status.code(),
                    status.message()
                ));
            }
            Ok(Ok(reply)) => reply.into_inner(),
        };
        // A hub restored between two pages answers from another store:
        // start again rather than mix them.
        match &store_id {
            Some(id) if *id != page.store_id => {
                return Err("the hub's store changed while its releases were listed".into());
            }
            _ => store_id = Some(page.store_id.clone()),
        }
        for r in page.releases {
            let period = period_from_proto(r.period.as_ref(), "releases.period")
                .map_err(|e| format!("the hub listed a release with {e}"))?;
            all.insert(
                period,
                HubRelease {
                    revision: r.revision,
                    digest: r.digest,
                },
            );
        }
        if page.next_page_token.is_empty() {
            return Ok(Listing {
                releases: all,
                store_id: store_id.unwrap_or_default(),
                accepts_packed: page.accepts_packed_cells,
            });
        }
        if page.next_page_token == token {
            return Err("the hub repeated a page token".into());
        }
        token = page.next_page_token;
    }
    Err(format!("the hub's release list ran past {MAX_PAGES} pages"))
}

/// The agent's side of the comparison, read from its store.
fn snapshot(agent: &Agent) -> Result<Snapshot, AgentError> {
    let store = agent.store();
    let mut last = BTreeMap::new();
    for s in store.last_submissions()? {
        if let Ok(p) = period_from_proto(s.period.as_ref(), "period") {
            last.insert(
                p,
                HubRelease {
                    revision: s.revision,
                    digest: s.digest,
                },
            );
        }
    }
    let dead = store
        .dead_letters()?
        .into_iter()
        .filter_map(|d| {
            period_from_proto(d.submission.period.as_ref(), "period")
                .ok()
                .map(|p| (p, d.submission.revision))
        })
        .collect();
    Ok(Snapshot {
        last,
        queued: store.queued_periods()?,
        dead,
        overruled: store.overruled()?,
        acked: store.acked()?,
        granularity: Some(agent.options().granularity),
    })
}

/// Compares once with the hub and acts on the [`plan`]: re-sends, lost
/// marks set and cleared. `Err` is a message worth retrying after a backoff.
pub async fn reconcile_once(
    agent: &Agent,
    client: &mut SubmissionsClient<Channel>,
) -> Result<Outcome, String> {
    let site = agent.options().site_code.clone();
    let Listing {
        releases: hub,
        store_id,
        accepts_packed,
    } = fetch(client, &site).await?;
    let snap = snapshot(agent).map_err(|e| e.to_string())?;
    let plan = plan(&snap, &hub);
    let generation = agent.inner().next_generation();
    let (resent, newly_lost) = agent
        .store()
        .write("reconcile", Durability::Flush, move |w| {
            let mut resent = 0;
            for period in plan.resend {
                let Some(last) = w.last_submission(period)? else {
                    continue;
                };
                // The planned submission only: a newer one is queued by now.
                let planned = snap.last.get(&period);
                if planned.is_none_or(|p| p.revision != last.revision || p.digest != last.digest) {
                    continue;
                }
                // The same bytes as before, under the same revision; `None`
                // keeps the true counts, and a fresh generation clears no dirty mark.
                w.enqueue(period, &last, None, generation)?;
                resent += 1;
            }
            let mut newly = Vec::new();
            for (period, mark) in plan.lost {
                if w.lost(period)?.is_none() {
                    newly.push(period);
                }
                w.mark_lost(period, &mark)?;
            }
            for period in plan.settled {
                w.clear_lost(period)?;
                // The hub holds our last release: acknowledged, as far as
                // a later comparison needs to know (older stores never noted it).
                if let Some(l) = snap.last.get(&period)
                    && hub_of(&hub, period).is_some_and(|h| h.digest == l.digest)
                {
                    w.set_acked(period, l)?;
                }
            }
            Ok((resent, newly))
        })
        .await
        .map_err(|e| e.to_string())?;
    let lost: Vec<Period> = agent
        .store()
        .lost_periods()
        .map_err(|e| e.to_string())?
        .into_keys()
        .collect();
    Ok(Outcome {
        resent,
        lost,
        newly_lost,
        store_id,
        accepts_packed,
    })
}

fn hub_of(hub: &BTreeMap<Period, HubRelease>, period: Period) -> Option<&HubRelease> {
    hub.get(&period)
}

/// Records a lost period learnt from a push receipt (SUPERSEDED, or
/// ALREADY_EXISTS) for `sub`, outbox entry `seq`, unless the period's
/// last submission has moved on; the entry leaves the outbox either way.
pub async fn lost_by_receipt(
    agent: &Agent,
    seq: u64,
    period: Period,
    sub: &lacnet_proto::common::v1::Submission,
    hub: HubRelease,
) -> Result<bool, AgentError> {
    let (revision, digest) = (sub.revision, sub.digest.clone());
    agent
        .store()
        .write("reconcile", Durability::Flush, move |w| {
            let still_latest = w
                .last_submission(period)?
                .is_some_and(|l| l.revision == revision && l.digest == digest);
            w.remove_from_outbox(seq, Some(period), None)?;
            if still_latest {
                w.mark_lost(
                    period,
                    &LostMark {
                        hub,
                        agent_revision: Some(revision),
                    },
                )?;
            }
            Ok(still_latest)
        })
        .await
}

/// Whether re-imported records may overrule the hub's release of `period`
/// at `hub_revision` (the operator confirmed a full re-import since the
/// loss was found): then an outranked submission is re-issued above it.
pub fn overrules(agent: &Agent, period: Period, hub_revision: u64) -> bool {
    agent
        .store()
        .overruled()
        .ok()
        .and_then(|o| o.get(&period).map(|r| r.revision >= hub_revision))
        .unwrap_or(false)
}

/// The council has re-imported its latest full export: every lost period
/// is released from hold and recomputed, and the hub's release of each is
/// overruled (the agent's figures replace it, above its revision). Returns
/// the periods released.
pub async fn confirm_full_import(agent: &Agent) -> Result<Vec<Period>, AgentError> {
    let generation = agent.inner().next_generation();
    let released = agent
        .store()
        .write("reconcile", Durability::Flush, move |w| {
            let lost = w.lost_periods()?;
            for (period, mark) in &lost {
                w.overrule(*period, &mark.hub)?;
                w.clear_lost(*period)?;
                // Its last submission may never have reached the hub (held
                // back when the loss was found): the recomputation decides anew.
                w.forget_last(*period)?;
                w.mark_dirty(*period, generation)?;
            }
            Ok(lost.into_keys().collect::<Vec<_>>())
        })
        .await?;
    agent.metrics().lost_periods.set(0);
    if !released.is_empty() {
        tracing::warn!(
            periods = %names(&released),
            "full export re-imported: the periods held back after a loss of state publish again, over the hub's releases"
        );
        agent.inner().changed.notify_one();
    }
    Ok(released)
}

/// `2025-Q1, 2025-Q2` for logs.
pub fn names(periods: &[Period]) -> String {
    periods
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Period {
        Period::parse(s).unwrap()
    }

    fn rel(revision: u64, digest: &str) -> HubRelease {
        HubRelease {
            revision,
            digest: digest.into(),
        }
    }

    #[test]
    fn resends_what_the_hub_lacks_or_holds_older_and_reports_what_it_holds_newer() {
        let mut snap = Snapshot {
            granularity: Some(Granularity::Quarter),
            ..Snapshot::default()
        };
        snap.last.insert(p("2025-Q1"), rel(10, "a"));
        snap.last.insert(p("2025-Q2"), rel(20, "b"));
        snap.last.insert(p("2025-Q3"), rel(30, "c"));
        snap.last.insert(p("2025-Q4"), rel(40, "d"));
        snap.last.insert(p("FY2025"), rel(50, "e"));
        snap.acked.insert(p("2025-Q2"), rel(15, "old"));
        let mut hub = BTreeMap::new();
        // Q1 missing at the hub; Q2 older there; Q3 the same; Q4 newer there.
        hub.insert(p("2025-Q2"), rel(15, "old"));
        hub.insert(p("2025-Q3"), rel(30, "c"));
        hub.insert(p("2025-Q4"), rel(45, "newer"));
        // Same digest under another number: in sync.
        hub.insert(p("FY2025"), rel(7, "e"));
        // The hub holds a period this agent has never published: lost too.
        hub.insert(p("2024-Q4"), rel(5, "x"));
        // A month at a quarterly site: another series, left alone.
        hub.insert(p("2025-01"), rel(5, "m"));
        let plan = plan(&snap, &hub);
        assert_eq!(plan.resend, vec![p("2025-Q1"), p("2025-Q2")]);
        assert_eq!(
            plan.lost,
            vec![
                (
                    p("2024-Q4"),
                    LostMark {
                        hub: rel(5, "x"),
                        agent_revision: None
                    }
                ),
                (
                    p("2025-Q4"),
                    LostMark {
                        hub: rel(45, "newer"),
                        agent_revision: Some(40)
                    }
                ),
            ]
        );
        assert_eq!(plan.settled, vec![p("2025-Q3"), p("FY2025")]);
    }

    #[test]
    fn queued_dead_and_overruled_periods_are_left_alone() {
        let mut snap = Snapshot::default();
        snap.last.insert(p("2025-Q1"), rel(10, "a"));
        snap.last.insert(p("2025-Q2"), rel(20, "b"));
        snap.last.insert(p("2025-Q3"), rel(30, "c"));
        snap.queued.insert(p("2025-Q1"));
        snap.dead.insert((p("2025-Q2"), 20));
        // The operator confirmed a re-import over the hub's revision 35.
        snap.overruled.insert(p("2025-Q3"), rel(35, "h"));
        let mut hub = BTreeMap::new();
        hub.insert(p("2025-Q3"), rel(35, "h"));
        let plan = plan(&snap, &hub);
        assert!(plan.resend.is_empty(), "{plan:?}");
        assert!(plan.lost.is_empty(), "{plan:?}");
        assert_eq!(plan.settled, vec![p("2025-Q3")]);
        // A later release at the hub than the one overruled is a new loss.
        hub.insert(p("2025-Q3"), rel(36, "i"));
        assert_eq!(plan_lost(&snap, &hub), vec![p("2025-Q3")]);
        // Equal revisions with other content: the hub holds what we do not.
        hub.insert(p("2025-Q3"), rel(30, "z"));
        snap.overruled.clear();
        assert_eq!(plan_lost(&snap, &hub), vec![p("2025-Q3")]);
    }

    #[test]
    fn a_release_made_after_losing_state_does_not_outrank_the_hubs() {
        // Restored from a backup in which the hub had acknowledged revision
        // 10; the hub has since published 20; the restored agent, before it
        // compared, computed 30 from its older records.
        let mut snap = Snapshot::default();
        snap.last.insert(p("2025-Q1"), rel(30, "partial"));
        snap.queued.insert(p("2025-Q1"));
        snap.acked.insert(p("2025-Q1"), rel(10, "b"));
        let mut hub = BTreeMap::new();
        hub.insert(p("2025-Q1"), rel(20, "complete"));
        assert_eq!(plan_lost(&snap, &hub), vec![p("2025-Q1")]);
        // A wiped agent never had anything acknowledged: the same.
        snap.acked.clear();
        assert_eq!(plan_lost(&snap, &hub), vec![p("2025-Q1")]);
        // The hub restored to revision 10, which it did acknowledge: behind.
        snap.acked.insert(p("2025-Q1"), rel(25, "c"));
        snap.queued.clear();
        hub.insert(p("2025-Q1"), rel(10, "b"));
        let plan = plan(&snap, &hub);
        assert_eq!((plan.resend, plan.lost.len()), (vec![p("2025-Q1")], 0));
    }

    fn plan_lost(snap: &Snapshot, hub: &BTreeMap<Period, HubRelease>) -> Vec<Period> {
        plan(snap, hub).lost.into_iter().map(|(p, _)| p).collect()
    }
}
