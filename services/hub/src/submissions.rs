//! `lacnet.hub.v1.Submissions`: where site agents push their protected
//! aggregates. The hub trusts nothing it receives and checks, in order:
//!
//! 1. identity (mTLS certificate → `Peer`) and role: a site, submitting as itself;
//! 2. the site is in the registry, and its code was still in use for the period;
//! 3. the period is well-formed and not in the future, and the revision is
//!    one an honest agent could send ([`check_revision`]);
//! 4. the cells: every catalogue metric exactly once, no unknown ids, every count set;
//! 5. the digest, recomputed with `lacnet_core::submission::digest`;
//! 6. the site's policy is valid and at least as strict as the network's;
//! 7. disclosure control (`check_policy`, defence in depth), then consistency;
//! 8. storage: duplicate (the current release's content, under any revision
//!    number), a new current release (the one it replaces is deleted), or a
//!    late older revision, refused unstored as SUPERSEDED, so an agent
//!    restored from a backup learns that its figures are not the ones
//!    reported and re-sends them above `current_revision`.
//!
//! Every outcome, accepted or refused, goes to the audit log and the metrics.
//!
//! `ListReleases` answers an agent's anti-entropy question, "which of my
//! releases do you hold?", one bounded page at a time, for the calling site only.

use std::time::Instant;

use lacnet_core::disclosure::{self, Count, Published};
use lacnet_core::metrics::{METRIC_COUNT, catalogue};
use lacnet_core::submission;
use lacnet_core::{Date, Period};
use lacnet_proto::common::v1 as pb;
use lacnet_proto::hub::v1::submissions_server::Submissions;
use lacnet_proto::hub::v1::{
    ListReleasesRequest, ListReleasesResponse, ReceiptStatus, ReleaseSummary, SubmitReceipt,
    SubmitRequest,
};
use lacnet_tls::Peer;
use tracing::instrument;

use crate::bounded::{self, Alphabet};
use crate::store::{AuditEvent, StoreOutcome, StoredSubmission};
use crate::{Hub, HubError, authz};
use lacnet_proto::convert::{
    count_from_proto, period_from_proto, period_to_proto, policy_from_proto, published_from_packed,
};

/// The tonic service.
#[derive(Debug, Clone)]
pub struct SubmissionsService {
    hub: Hub,
}

impl SubmissionsService {
    /// Wraps an open hub.
    pub fn new(hub: Hub) -> SubmissionsService {
        SubmissionsService { hub }
    }
}

/// How far ahead of the hub's clock a revision may be, in milliseconds: one
/// day. Agents number revisions with their own clock in milliseconds, so an
/// honest revision is at most "now" plus the agents' clock skew. A revision
/// far beyond that (2^64 − 1, say) would stay the highest for good, and the
/// period could never be corrected again.
pub const MAX_REVISION_SKEW_MS: u64 = 24 * 60 * 60 * 1000;

/// Refuses a revision no honest agent could send: 0 (the proto default, so
/// an unset field), or more than [`MAX_REVISION_SKEW_MS`] ahead of `now_ms`.
///
/// There is deliberately no other lower bound: agents before time-based
/// revisions counted 1, 2, 3, and their figures must still be accepted. A low
/// revision can never freeze a period, since any later one outranks it.
pub fn check_revision(revision: u64, now_ms: u64) -> Result<(), HubError> {
    if revision == 0 {
        return Err(HubError::invalid(
            "submission.revision",
            "is required (revisions start at 1)",
        ));
    }
    let limit = now_ms.saturating_add(MAX_REVISION_SKEW_MS);
    if revision > limit {
        return Err(HubError::invalid(
            "submission.revision",
            format!(
                "{revision} is more than one day ahead of the hub's clock (now {now_ms} ms since \
                 the Unix epoch); revisions are Unix milliseconds, and one this far ahead would \
                 freeze the period for good"
            ),
        ));
    }
    Ok(())
}

/// A peer for logs and the audit log, or `unknown` when the certificate named none.
pub(crate) fn peer_label(peer: &Result<Peer, tonic::Status>) -> String {
    match peer {
        Ok(p) => p.to_string(),
        Err(_) => "unknown".to_string(),
    }
}

/// The figures a submission declares structural zeros (the site never
/// serves their people, and refuses their records), by catalogue index. Each
/// must name a metric and be published as 0.
fn structural_zeros(
    declared: &[String],
    published: &Published,
) -> Result<[bool; METRIC_COUNT], HubError> {
    let mut zero = [false; METRIC_COUNT];
    if declared.len() > METRIC_COUNT {
        return Err(HubError::invalid(
            "submission.structural_zeros",
            format!(
                "names {} figures; the catalogue has {METRIC_COUNT}",
                declared.len()
            ),
        ));
    }
    for (i, id) in declared.iter().enumerate() {
        let field = || format!("submission.structural_zeros[{i}]");
        let Some(c) = catalogue().index_of(id) else {
            return Err(HubError::invalid(
                field(),
                "is not a metric id of the catalogue",
            ));
        };
        if published.counts[c] != Count::Value(0) {
            return Err(HubError::invalid(
                field(),
                format!("{id} is declared a structural zero but is not published as 0"),
            ));
        }
        zero[c] = true;
    }
    Ok(zero)
}

/// The published table from wire cells: every catalogue metric exactly once.
///
/// Agents send the cells in catalogue order, so each cell's id is first
/// compared with the catalogue's id at its position, and looked up only
/// when it differs; field names are built only for a refusal.
pub fn cells_to_published(cells: &[pb::Cell]) -> Result<Published, HubError> {
    let cat = catalogue();
    let mut counts: [Option<Count>; METRIC_COUNT] = [None; METRIC_COUNT];
    for (i, cell) in cells.iter().enumerate() {
        let index = match cat.metrics().get(i) {
            Some(def) if def.id == cell.metric => i,
            _ => cat.index_of(&cell.metric).ok_or_else(|| {
                HubError::invalid(
                    format!("submission.cells[{i}].metric"),
                    format!("unknown metric id {:?}", cell.metric),
                )
            })?,
        };
        let count = count_from_proto(cell.count.as_ref(), "")
            .map_err(|e| HubError::invalid(format!("submission.cells[{i}].count"), e.reason))?;
        if counts[index].replace(count).is_some() {
            return Err(HubError::invalid(
                format!("submission.cells[{i}].metric"),
                format!("metric {} appears more than once", cell.metric),
            ));
        }
    }
    let missing: Vec<&str> = counts
        .iter()
        .enumerate()
        .filter(|(_, c)| c.is_none())
        .map(|(i, _)| cat.def(i).id.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(HubError::invalid(
            "submission.cells",
            format!("missing metrics: {}", missing.join(", ")),
        ));
    }
    Ok(Published {
        counts: counts.map(|c| c.unwrap_or(Count::Suppressed)),
    })
}

/// The published table, from whichever form the cells came in: named
/// (`cells`) or compact (`packed`, what agents send from this release on).
pub fn published_of(sub: &pb::Submission) -> Result<Published, HubError> {
    match &sub.packed {
        None => cells_to_published(&sub.cells),
        Some(_) if !sub.cells.is_empty() => Err(HubError::invalid(
            "submission.packed",
            "is set beside submission.cells: a submission carries its figures once, named or packed",
        )),
        Some(packed) => Ok(published_from_packed(packed, "submission.packed")?),
    }
}

/// The release as the network publishes it for `period`'s kind: a figure
/// the kind does not carry ([`lacnet_core::release`]) is dropped, so an agent
/// from before the release plan (which sent every figure for every period)
/// can publish no more than the plan allows; a figure the kind carries must
/// be a value or withheld.
pub fn to_release_plan(mut published: Published, period: Period) -> Result<Published, HubError> {
    let carried = lacnet_core::release::carried(period.granularity());
    for (i, count) in published.counts.iter_mut().enumerate() {
        if !carried[i] {
            *count = Count::NotReleased;
        } else if *count == Count::NotReleased {
            return Err(HubError::invalid(
                "submission.cells",
                format!(
                    "metric {} is part of every {} release: it must be a value or suppressed, not not_released",
                    catalogue().def(i).id,
                    period.granularity().label()
                ),
            ));
        }
    }
    Ok(published)
}

/// Bounds every string of a submission (length, then alphabet) before
/// anything logs, stores or echoes it; see [`crate::bounded`].
pub fn check_strings(sub: &pb::Submission) -> Result<(), HubError> {
    bounded::check(
        "submission.site_code",
        &sub.site_code,
        bounded::MAX_SITE_CODE_LEN,
        Alphabet::SiteCode,
    )?;
    bounded::check(
        "submission.digest",
        &sub.digest,
        bounded::DIGEST_LEN,
        Alphabet::LowerHex,
    )?;
    let ids = catalogue().metrics();
    for (i, cell) in sub.cells.iter().enumerate() {
        // Agents send the catalogue's ids in its order, and those are
        // bounded: only another id needs reading. The field is named only
        // for a refusal: a submission has over a hundred cells.
        if ids.get(i).is_some_and(|def| def.id == cell.metric) {
            continue;
        }
        if let Some(reason) =
            bounded::fault(&cell.metric, bounded::MAX_METRIC_ID_LEN, Alphabet::MetricId)
        {
            return Err(HubError::invalid(
                format!("submission.cells[{i}].metric"),
                reason,
            ));
        }
    }
    Ok(())
}

/// What a submission looked like, for the audit log of a refusal: each
/// part once it has passed its checks (so never an unbounded string).
#[derive(Debug, Default)]
pub struct Described {
    /// The site code, once bounded and well-formed.
    pub site: Option<String>,
    /// The period, once parsed.
    pub period: Option<String>,
    /// The revision, once the strings are bounded.
    pub revision: Option<u64>,
}

/// How many inconsistent cells a refusal names before it only counts the rest.
const MAX_NAMED_FINDINGS: usize = 5;

/// Every check of one submission that needs no store, in order: the caller's
/// role, bounded strings, the site (itself, and in the registry), the
/// revision, the period (started by `now_ms`, within the site's validity),
/// the cells, the policy (valid and at least as strict as the network's),
/// the digest, and disclosure control. Returns what would be stored,
/// received at `now_ms`.
///
/// Pure, so the hub's decoding and validation can be tested with arbitrary
/// hostile submissions without a server (`tests/properties.rs`).
pub fn check_submission(
    registry: &crate::Registry,
    peer: &Peer,
    sub: &pb::Submission,
    now_ms: u64,
    described: &mut Described,
) -> Result<StoredSubmission, HubError> {
    if !matches!(peer, Peer::Site(_)) {
        // Refuse the role before looking at the payload.
        authz::may_submit(peer, "")?;
    }
    check_strings(sub)?;
    described.site = Some(sub.site_code.clone()).filter(|s| crate::registry::is_ons_code(s));
    described.revision = Some(sub.revision);
    authz::may_submit(peer, &sub.site_code)?;
    let site = registry.site(&sub.site_code).ok_or_else(|| {
        HubError::invalid(
            "submission.site_code",
            format!("{} is not a site in the network registry", sub.site_code),
        )
    })?;
    check_revision(sub.revision, now_ms)?;
    let period = period_from_proto(sub.period.as_ref(), "submission.period")?;
    described.period = Some(period.to_string());
    check_series(site, period)?;
    let now_secs = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
    check_in_use(site, period, Date::from_unix_seconds(now_secs))?;
    let published = published_of(sub)?;
    let policy = policy_from_proto(sub.policy.as_ref(), "submission.policy")?;
    policy
        .validate()
        .map_err(|e| HubError::invalid("submission.policy", e.to_string()))?;
    let expected = submission::digest(&site.code, period, &policy, &published);
    if sub.digest != expected {
        return Err(HubError::invalid(
            "submission.digest",
            "does not match the submission's content (site, period, policy and cells)",
        ));
    }
    check_strict_enough(&policy, registry.policy())?;
    // The site's own (at least as strict) policy is the one the attacker's
    // view depends on, so that is what the cells are audited against.
    let zero = structural_zeros(&sub.structural_zeros, &published)?;
    disclosure::check_policy_with_zeros(&published, &policy, &zero)
        .map_err(|v| HubError::PolicyViolation(v.iter().map(ToString::to_string).collect()))?;
    disclosure::check_consistency(&published, &policy).map_err(|v| {
        // The first few say what is wrong; a thousand would only bury them.
        let mut named: Vec<String> = v
            .iter()
            .take(MAX_NAMED_FINDINGS)
            .map(ToString::to_string)
            .collect();
        if v.len() > MAX_NAMED_FINDINGS {
            named.push(format!("and {} more", v.len() - MAX_NAMED_FINDINGS));
        }
        HubError::invalid("submission.cells", named.join("; "))
    })?;
    let published = to_release_plan(published, period)?;
    Ok(StoredSubmission {
        site_code: site.code.clone(),
        period,
        revision: sub.revision,
        digest: expected,
        policy,
        counts: published.counts.to_vec(),
        generated_at_unix: sub.generated_at_unix,
        received_at_unix: now_secs,
        revised: false,
    })
}

/// A period is accepted once it has begun (by `today`) and only while the
/// site's code was in use.
fn check_in_use(site: &crate::Site, period: Period, today: Date) -> Result<(), HubError> {
    // The programme to date runs from each site's own start: its last
    // month is what must have begun.
    let begins = match period.granularity() {
        lacnet_core::Granularity::ProgrammeToDate => {
            lacnet_core::Period::containing(lacnet_core::Granularity::Month, period.end()).start()
        }
        _ => period.start(),
    };
    if begins > today {
        return Err(HubError::invalid(
            "submission.period",
            format!("{period} has not started yet (today is {today})"),
        ));
    }
    if site.in_use_during(period) {
        return Ok(());
    }
    let why = match (site.valid_from, site.valid_until) {
        (_, Some(until)) if begins > until => {
            format!(
                "site code {} was retired on {until}; {period} starts after it",
                site.code
            )
        }
        (Some(from), _) => {
            format!(
                "site code {} is in use from {from}; {period} ends before it",
                site.code
            )
        }
        _ => format!("site code {} was not in use during {period}", site.code),
    };
    Err(HubError::invalid("submission.period", why))
}

/// A site's policy may be stricter than the network's, never looser.
fn check_strict_enough(
    policy: &lacnet_core::DisclosurePolicy,
    network: &lacnet_core::DisclosurePolicy,
) -> Result<(), HubError> {
    if policy.at_least_as_strict_as(network) {
        return Ok(());
    }
    Err(HubError::PolicyViolation(vec![format!(
        "site policy (threshold {}, rounding base {}, secondary suppression {}) is looser \
         than the network policy (threshold {}, rounding base {}, secondary suppression {})",
        policy.threshold,
        policy.rounding_base,
        policy.secondary_suppression,
        network.threshold,
        network.rounding_base,
        network.secondary_suppression
    )]))
}

impl Hub {
    /// Validates, authorises and stores one submission (everything but the tonic glue).
    async fn submit(
        &self,
        peer: &Result<Peer, tonic::Status>,
        sub: Option<pb::Submission>,
        described: &mut Described,
    ) -> Result<SubmitReceipt, HubError> {
        let peer = peer
            .as_ref()
            .map_err(|s| HubError::Unauthenticated(s.message().to_string()))?;
        let Some(sub) = sub else {
            if !matches!(peer, Peer::Site(_)) {
                authz::may_submit(peer, "")?;
            }
            return Err(HubError::invalid("submission", "is required"));
        };
        let stored = check_submission(
            self.registry(),
            peer,
            &sub,
            self.clock().now_ms(),
            described,
        )?;
        let period = stored.period;
        let digest = stored.digest.clone();
        let stored_site = stored.site_code.clone();
        self.check_store()?;
        // Audited in the same job, so the entry is durable with the submission.
        let audit = AuditEvent {
            at_unix: self.clock().now_unix(),
            event: "submit".into(),
            peer: peer.to_string(),
            site: Some(stored_site.clone()),
            period: Some(period.to_string()),
            revision: Some(sub.revision),
            outcome: String::new(),
            reason: None,
            digest: Some(digest.clone()),
            generated_at_unix: None,
            received_at_unix: None,
        };
        // Answered once on disk; concurrent submitters share the fsync.
        let receipt = self
            .store()
            .record(stored, audit)
            .await
            .map_err(|e| self.store_error(e))?;
        let status = match receipt.outcome {
            StoreOutcome::New => ReceiptStatus::New,
            StoreOutcome::Duplicate => ReceiptStatus::Duplicate,
            StoreOutcome::Superseded => ReceiptStatus::Superseded,
        };
        Ok(SubmitReceipt {
            status: status as i32,
            site_code: stored_site,
            period: Some(period_to_proto(period)),
            revision: sub.revision,
            digest,
            current_revision: receipt.current_revision,
            received_at_unix: receipt.received_at_unix,
            current_digest: receipt.current_digest,
            store_id: self.store().store_id().to_owned(),
        })
    }

    /// One page of the calling site's current releases.
    fn list_releases(
        &self,
        peer: &Result<Peer, tonic::Status>,
        req: &ListReleasesRequest,
    ) -> Result<ListReleasesResponse, HubError> {
        let peer = peer
            .as_ref()
            .map_err(|s| HubError::Unauthenticated(s.message().to_string()))?;
        if !matches!(peer, Peer::Site(_)) {
            authz::may_list_releases(peer, "")?;
        }
        let (size, after) = check_list_request(req)?;
        authz::may_list_releases(peer, &req.site_code)?;
        let (page, more) = self.store().releases_of(&req.site_code, after, size);
        let next_page_token = match (more, page.last()) {
            (true, Some(last)) => last.period.to_string(),
            _ => String::new(),
        };
        Ok(ListReleasesResponse {
            releases: page
                .into_iter()
                .map(|r| ReleaseSummary {
                    period: Some(period_to_proto(r.period)),
                    revision: r.revision,
                    digest: r.digest,
                })
                .collect(),
            next_page_token,
            store_id: self.store().store_id().to_owned(),
            accepts_packed_cells: true,
        })
    }

    /// Writes an audit entry; a failure to audit is logged, never hidden.
    pub(crate) async fn audit(&self, event: AuditEvent) {
        if self.check_store().is_err() {
            // Already failed and logged; the hub is draining for a restart.
            return;
        }
        if let Err(e) = self.store().audit(event).await {
            let e = self.store_error(e);
            tracing::error!(error = %e, "writing the audit log failed");
            self.metrics().internal_errors.inc();
        }
    }

    /// Counts, logs and audits a refused or failed request.
    pub(crate) async fn refused(
        &self,
        event: &str,
        peer: &str,
        site: Option<String>,
        period: Option<String>,
        revision: Option<u64>,
        error: &HubError,
    ) {
        // Whoever built the message, only a bounded excerpt reaches the log and the audit log.
        let reason = bounded::bounded_reason(&error.to_string());
        if error.is_refusal() {
            self.metrics().refusals.inc(error.kind());
            tracing::warn!(peer = %peer, event, site = ?site, period = ?period, reason = %reason, "request refused");
        } else {
            self.metrics().internal_errors.inc();
        }
        self.audit(AuditEvent {
            at_unix: self.clock().now_unix(),
            event: event.to_string(),
            peer: peer.to_string(),
            site,
            period,
            revision,
            outcome: if error.is_refusal() {
                "refused".into()
            } else {
                "error".into()
            },
            reason: Some(if error.is_refusal() {
                reason
            } else {
                "internal error".into()
            }),
            digest: None,
            generated_at_unix: None,
            received_at_unix: None,
        })
        .await;
    }
}

/// Releases in a `ListReleases` page when the caller does not say.
pub const DEFAULT_PAGE_SIZE: usize = 200;
/// Most releases in one `ListReleases` page.
pub const MAX_PAGE_SIZE: usize = 1000;

/// Checks a `ListReleases` request's fields: the page size it asks for
/// (0 for the default) and the period the page token names (the last one
/// of the previous page).
pub fn check_list_request(
    req: &ListReleasesRequest,
) -> Result<(usize, Option<lacnet_core::Period>), HubError> {
    bounded::check(
        "site_code",
        &req.site_code,
        bounded::MAX_SITE_CODE_LEN,
        Alphabet::SiteCode,
    )?;
    if req.site_code.is_empty() {
        return Err(HubError::invalid("site_code", "is required"));
    }
    let size = match req.page_size as usize {
        0 => DEFAULT_PAGE_SIZE,
        n if n > MAX_PAGE_SIZE => {
            return Err(HubError::invalid(
                "page_size",
                format!("{n} is above the largest page, {MAX_PAGE_SIZE}"),
            ));
        }
        n => n,
    };
    let after = if req.page_token.is_empty() {
        None
    } else {
        // A token is a period name (at most a dozen characters); anything
        // longer is refused before it is parsed or echoed.
        if req.page_token.len() > 16 {
            return Err(HubError::invalid(
                "page_token",
                "is not a token this hub gave out",
            ));
        }
        Some(
            lacnet_core::Period::parse(&req.page_token)
                .map_err(|_| HubError::invalid("page_token", "is not a token this hub gave out"))?,
        )
    };
    Ok((size, after))
}

/// Refuses a period outside the site's registered series (FAILED_PRECONDITION):
/// one site publishing months beside quarters lets the quarter be differenced
/// against its months.
pub fn check_series(site: &crate::Site, period: lacnet_core::Period) -> Result<(), HubError> {
    if site.accepts(period) {
        return Ok(());
    }
    Err(HubError::WrongSeries(format!(
        "submission.period: site {} publishes {} periods (its registered granularity), \
         not a {} ({period}); changing a site's series is an explicit operation \
         (see the README, \"Changing a site's series\")",
        site.code,
        site.granularity.label(),
        period.granularity().label(),
    )))
}

#[tonic::async_trait]
impl Submissions for SubmissionsService {
    #[instrument(skip_all, fields(peer, site, period, revision))]
    async fn submit(
        &self,
        request: tonic::Request<SubmitRequest>,
    ) -> Result<tonic::Response<SubmitReceipt>, tonic::Status> {
        let started = Instant::now();
        let peer = lacnet_tls::peer_of(&request);
        let label = peer_label(&peer);
        let span = tracing::Span::current();
        span.record("peer", label.as_str());
        let sub = request.into_inner().submission;
        let packed = sub.as_ref().is_some_and(|s| s.packed.is_some());
        let mut described = Described::default();
        let result = self.hub.submit(&peer, sub, &mut described).await;
        let metrics = self.hub.metrics();
        if packed {
            metrics.packed_submissions.inc();
        }
        metrics
            .submit_latency
            .observe(started.elapsed().as_secs_f64());
        if let Some(site) = &described.site {
            span.record("site", site.as_str());
        }
        if let Some(period) = &described.period {
            span.record("period", period.as_str());
        }
        if let Some(rev) = described.revision {
            span.record("revision", rev);
        }
        match result {
            Ok(receipt) => {
                let outcome = match ReceiptStatus::try_from(receipt.status) {
                    Ok(ReceiptStatus::New) => StoreOutcome::New,
                    Ok(ReceiptStatus::Duplicate) => StoreOutcome::Duplicate,
                    _ => StoreOutcome::Superseded,
                };
                metrics.submissions.inc(outcome);
                tracing::info!(
                    peer = %label,
                    outcome = outcome.name(),
                    current_revision = receipt.current_revision,
                    "submission accepted"
                );
                Ok(tonic::Response::new(receipt))
            }
            Err(e) => {
                metrics.submissions.inc(e.kind());
                self.hub
                    .refused(
                        "submit",
                        &label,
                        described.site,
                        described.period,
                        described.revision,
                        &e,
                    )
                    .await;
                Err(e.into())
            }
        }
    }

    #[instrument(skip_all, fields(peer))]
    async fn list_releases(
        &self,
        request: tonic::Request<ListReleasesRequest>,
    ) -> Result<tonic::Response<ListReleasesResponse>, tonic::Status> {
        let peer = lacnet_tls::peer_of(&request);
        let label = peer_label(&peer);
        tracing::Span::current().record("peer", label.as_str());
        let req = request.into_inner();
        match self.hub.list_releases(&peer, &req) {
            Ok(page) => {
                self.hub.metrics().releases_listed.inc();
                tracing::debug!(peer = %label, releases = page.releases.len(), "releases listed");
                Ok(tonic::Response::new(page))
            }
            Err(e) => {
                // Only a bounded, well-formed site code reaches the audit log.
                let site = Some(req.site_code.clone()).filter(|s| crate::registry::is_ons_code(s));
                self.hub
                    .refused("list_releases", &label, site, None, None, &e)
                    .await;
                Err(e.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lacnet_proto::convert::count_to_proto;

    fn cells() -> Vec<pb::Cell> {
        catalogue()
            .metrics()
            .iter()
            .map(|m| pb::Cell {
                metric: m.id.clone(),
                count: Some(count_to_proto(Count::Value(0))),
            })
            .collect()
    }

    #[test]
    fn revisions_must_be_set_and_not_far_in_the_future() {
        let now = 1_750_000_000_000;
        for ok in [1, 2, 3, now, now + MAX_REVISION_SKEW_MS] {
            assert!(check_revision(ok, now).is_ok(), "{ok}");
        }
        for bad in [0, now + MAX_REVISION_SKEW_MS + 1, u64::MAX] {
            let e = check_revision(bad, now).unwrap_err();
            assert!(
                matches!(&e, HubError::InvalidArgument { field, .. } if field == "submission.revision"),
                "{bad}: {e}"
            );
        }
        // A clock near the end of time neither wraps nor refuses everything.
        assert!(check_revision(u64::MAX, u64::MAX - 1).is_ok());
    }

    #[test]
    fn list_requests_are_bounded_and_name_the_field() {
        let req = |site: &str, size: u32, token: &str| ListReleasesRequest {
            site_code: site.into(),
            page_size: size,
            page_token: token.into(),
        };
        assert_eq!(
            check_list_request(&req("E06000034", 0, "")).unwrap(),
            (DEFAULT_PAGE_SIZE, None)
        );
        let (n, after) = check_list_request(&req("E06000034", 5, "2025-Q1")).unwrap();
        assert_eq!(
            (n, after.map(|p| p.to_string())),
            (5, Some("2025-Q1".into()))
        );
        for (bad, field) in [
            (req("", 0, ""), "site_code"),
            (req("E06 000034", 0, ""), "site_code"),
            (req("E06000034", 1001, ""), "page_size"),
            (req("E06000034", 0, "nonsense"), "page_token"),
            (req("E06000034", 0, &"9".repeat(100)), "page_token"),
        ] {
            let e = check_list_request(&bad).unwrap_err();
            assert!(
                matches!(&e, HubError::InvalidArgument { field: f, .. } if f == field),
                "{e}"
            );
        }
    }

    #[test]
    fn cells_must_cover_the_catalogue_exactly_once() {
        assert!(cells_to_published(&cells()).is_ok());
        let mut missing = cells();
        missing.pop();
        let e = cells_to_published(&missing).unwrap_err().to_string();
        assert!(e.contains("missing metrics"), "{e}");
        let mut twice = cells();
        twice.push(twice[0].clone());
        assert!(
            cells_to_published(&twice)
                .unwrap_err()
                .to_string()
                .contains("more than once")
        );
        let mut unknown = cells();
        unknown[3].metric = "bogus".into();
        let e = cells_to_published(&unknown).unwrap_err().to_string();
        assert!(e.contains("cells[3].metric") && e.contains("bogus"), "{e}");
        let mut unset = cells();
        unset[2].count = Some(pb::Count { kind: None });
        assert!(
            cells_to_published(&unset)
                .unwrap_err()
                .to_string()
                .contains("cells[2].count")
        );
    }

    #[test]
    fn a_release_keeps_only_what_its_period_kind_carries() {
        use lacnet_core::metrics::{CASES_STALE, INTRODUCTIONS_NEW};
        let p = |s: &str| Period::parse(s).unwrap();
        let full = cells_to_published(&cells()).unwrap();
        // An agent from before the release plan sent every figure for a
        // month: the hub keeps the month's figures and drops the rest.
        let month = to_release_plan(full.clone(), p("2024-05")).unwrap();
        let need = catalogue().index_of("primary_need.carer").unwrap();
        assert_eq!(month.counts[INTRODUCTIONS_NEW], Count::Value(0));
        assert_eq!(month.counts[need], Count::NotReleased);
        let kept = month
            .counts
            .iter()
            .filter(|c| **c != Count::NotReleased)
            .count();
        assert_eq!(kept, 11);
        let year = to_release_plan(full, p("FY2024")).unwrap();
        assert_eq!(year.counts[need], Count::Value(0));
        assert_eq!(year.counts[CASES_STALE], Count::NotReleased);
        // A figure the kind carries cannot be left out.
        let mut gap = month.clone();
        gap.counts[INTRODUCTIONS_NEW] = Count::NotReleased;
        let e = to_release_plan(gap, p("2024-05")).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("introductions_new"), "{e}");
    }
}
