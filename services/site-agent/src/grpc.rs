//! The `lacnet.site.v1.SiteAgent` tonic service: authorisation, limits and
//! proto ↔ domain conversion. The work happens in [`crate::ingest`],
//! [`crate::publish`] and [`crate::store`].
//!
//! Callers hold a client certificate from the council CA naming exactly one
//! lacnet identity, and each role may call only its own methods ([`Role`]):
//! the council case system (`spiffe://lacnet/council/<name>`) pushes records;
//! an operator (`spiffe://lacnet/operator/<name>`) reads status, previews,
//! reads the local evaluation (the council's exact figures) and erases. Operators do not ingest, so an operator's certificate on a
//! laptop cannot inject records, and the case system cannot erase people or
//! read what would leave the building. Anything else, including a council-CA
//! certificate with no lacnet identity, is refused and logged with the
//! caller. Spans and logs carry counts, never values.

use std::time::Instant;

use lacnet_core::pseudonym::Pseudonym;
use lacnet_core::validate::{PersonId, RecordInput, normalise_nhs_number};
use lacnet_proto::site::v1::site_agent_server::SiteAgent;
use lacnet_proto::site::v1::{
    AgentStatus, ConfirmFullImportRequest, ConfirmFullImportResponse, ErasePersonRequest,
    ErasePersonResponse, GetStatusRequest, IngestSummary, LocalEvaluation, LocalEvaluationRequest,
    LostPeriod, PreviewSubmissionRequest, PreviewSubmissionResponse, Record, RecordVerdict,
    UpsertRecordsRequest, UpsertRecordsResponse, Verdict, erase_person_request,
};
use lacnet_tls::Peer;
use tonic::{Request, Response, Status, Streaming};
use tracing::instrument;

use crate::convert::{record_input, violation};
use crate::ingest::{self, ApplyContext, Item, Outcome};
use crate::metrics::RejectionReason;
use crate::{Agent, AgentError, MAX_STREAM_REJECTIONS, STREAM_CHUNK, STREAM_CHUNK_BYTES, publish};
use lacnet_proto::convert::{period_from_proto, policy_to_proto};
use lacnet_store::Durability;

/// The tonic service.
#[derive(Debug, Clone)]
pub struct SiteAgentService {
    agent: Agent,
}

impl SiteAgentService {
    /// Wraps an open agent.
    pub fn new(agent: Agent) -> SiteAgentService {
        SiteAgentService { agent }
    }
}

/// What a method does, and so which identity may call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Push records (`UpsertRecords`, `StreamRecords`) and confirm that a full
    /// export was re-imported (`ConfirmFullImport`): council case systems only.
    Ingest,
    /// Run the agent (`GetStatus`, `PreviewSubmission`, `GetLocalEvaluation`,
    /// `ErasePerson`): operators only.
    Operate,
}

/// Whether `peer` may act in `role`; the refusal says which identity would do.
pub fn may(peer: &Peer, role: Role) -> Result<(), String> {
    match (role, peer) {
        (Role::Ingest, Peer::Council(_)) | (Role::Operate, Peer::Operator(_)) => Ok(()),
        (Role::Ingest, other) => Err(format!(
            "{other} may not push records: use the case system's council certificate \
             (spiffe://lacnet/council/<name>)"
        )),
        (Role::Operate, other) => Err(format!(
            "{other} may not read status, preview, read the local evaluation or erase: use an operator certificate \
             (spiffe://lacnet/operator/<name>)"
        )),
    }
}

/// Checks the caller's identity for `method` in `role`: a certificate that
/// names no single well-formed lacnet identity is UNAUTHENTICATED, a known
/// caller in the wrong role PERMISSION_DENIED. Each refusal is logged with the
/// caller (a role and a name, or why the certificate names nobody).
fn authorise<T>(req: &Request<T>, method: &'static str, role: Role) -> Result<(), Status> {
    match lacnet_tls::peer_of(req) {
        Ok(peer) => match may(&peer, role) {
            Ok(()) => {
                tracing::debug!(caller = %peer, method, "authorised");
                Ok(())
            }
            Err(reason) => {
                tracing::warn!(caller = %peer, method, ?role, "refused: wrong role");
                Err(Status::permission_denied(reason))
            }
        },
        Err(status) => {
            tracing::warn!(caller = "unauthenticated", method, reason = %status.message(), "refused: no lacnet identity");
            Err(status)
        }
    }
}

/// Validates and pseudonymises on the blocking pool; the raw inputs are dropped there.
/// `readmit` holds the positions of the records that re-admit an erased person.
fn prepare_chunk(
    agent: &Agent,
    inputs: Vec<RecordInput>,
    readmit: Vec<usize>,
    threads: usize,
) -> tokio::task::JoinHandle<Vec<Item>> {
    let a = agent.clone();
    let today = agent.today();
    agent.spawn_blocking(move || {
        let mut items = ingest::prepare(
            &inputs,
            &a.options().keys,
            &a.options().never_served,
            today,
            threads,
        );
        for i in readmit {
            if let Some(Item::Valid(p)) = items.get_mut(i) {
                p.readmit_erased = true;
            }
        }
        items
    })
}

/// Applies prepared items on the store's writer thread; with `durable`,
/// answers only once the writes are on disk (group commit: one flush covers
/// every caller whose chunk was applied meanwhile).
async fn apply_chunk(
    agent: &Agent,
    items: Vec<Item>,
    durable: bool,
) -> Result<Vec<Outcome>, AgentError> {
    let a = agent.clone();
    let cx = ApplyContext {
        granularity: a.options().granularity,
        today: a.today(),
        generation: a.inner().next_generation(),
    };
    let durability = if durable {
        Durability::Flush
    } else {
        Durability::Deferred
    };
    let (outcomes, changed) = agent
        .store()
        .write("ingest", durability, move |w| {
            ingest::apply(w, items, a.options().keys.active().0.as_str(), cx)
        })
        .await?;
    let m = &agent.inner().metrics;
    for o in &outcomes {
        match o {
            Outcome::Rejected(v) => m
                .rejected
                .inc(v.first().map_or(RejectionReason::Other, |f| f.kind.into())),
            _ => {
                m.ingested.inc();
            }
        }
    }
    if changed {
        agent.inner().changed.notify_one();
    }
    Ok(outcomes)
}

/// A chunk of a stream being prepared: the index of its first record, and
/// the pseudonymising task.
type PreparedChunk = (u64, tokio::task::JoinHandle<Vec<Item>>);

/// Writes a stream's prepared chunks in order and tallies the verdicts.
/// The summary is the stream's only acknowledgement: one flush at the end
/// covers every chunk (sled also flushes in the background), so the disk
/// never stalls the pipeline.
async fn write_chunks(
    agent: &Agent,
    mut rx: tokio::sync::mpsc::Receiver<PreparedChunk>,
) -> Result<IngestSummary, AgentError> {
    let mut summary = IngestSummary::default();
    while let Some((base, handle)) = rx.recv().await {
        let started = Instant::now();
        let items = handle.await?;
        let outcomes = apply_chunk(agent, items, false).await?;
        agent
            .metrics()
            .ingest_latency
            .observe(started.elapsed().as_secs_f64());
        tally(&mut summary, base, outcomes);
    }
    agent.flush().await?;
    Ok(summary)
}

/// Adds a chunk's verdicts, starting at record `base`, to the summary.
fn tally(summary: &mut IngestSummary, base: u64, outcomes: Vec<Outcome>) {
    for (i, o) in outcomes.into_iter().enumerate() {
        summary.received += 1;
        if !matches!(o, Outcome::Rejected(_)) {
            summary.accepted += 1;
            continue;
        }
        summary.rejected += 1;
        if summary.rejections.len() < MAX_STREAM_REJECTIONS {
            let index = u32::try_from(base + i as u64).unwrap_or(u32::MAX);
            summary.rejections.push(verdict(index, o));
        } else {
            summary.rejections_truncated = true;
        }
    }
}

/// Reads the stream into chunks, bounded by records and by bytes (a stream
/// of huge records must not pile up thousands of them in memory), and hands
/// each to be prepared. Returns the stream's error, if it broke, and how
/// many records were handed on.
async fn read_chunks(
    agent: &Agent,
    mut stream: Streaming<Record>,
    tx: tokio::sync::mpsc::Sender<PreparedChunk>,
) -> (Option<Status>, u64) {
    let mut chunk: Vec<RecordInput> = Vec::with_capacity(STREAM_CHUNK);
    let mut readmit: Vec<usize> = Vec::new();
    let mut chunk_bytes: usize = 0;
    let mut next: u64 = 0;
    let failed = loop {
        let r = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => break None,
            Err(status) => break Some(status),
        };
        chunk_bytes += approx_bytes(&r);
        if r.readmit_erased {
            readmit.push(chunk.len());
        }
        chunk.push(record_input(r));
        if chunk.len() < STREAM_CHUNK && chunk_bytes < STREAM_CHUNK_BYTES {
            continue;
        }
        chunk_bytes = 0;
        let full = std::mem::replace(&mut chunk, Vec::with_capacity(STREAM_CHUNK));
        let n = full.len() as u64;
        let marks = std::mem::take(&mut readmit);
        if tx
            .send((next, prepare_chunk(agent, full, marks, 1)))
            .await
            .is_err()
        {
            break None; // the writer failed; its error is reported by the caller
        }
        next += n;
    };
    if failed.is_none() && !chunk.is_empty() {
        let _ = tx
            .send((next, prepare_chunk(agent, chunk, readmit, 1)))
            .await;
    }
    (failed, next)
}

/// Roughly how much memory a decoded record holds: enough to bound a chunk.
fn approx_bytes(r: &Record) -> usize {
    64 + r.local_case_id.len()
        + r.nhs_number.len()
        + r.introduced_on.len()
        + r.closed_on.len()
        + r.ward_code.len()
        + r.outcomes.len() * std::mem::size_of::<i32>()
}

fn verdict(index: u32, outcome: Outcome) -> RecordVerdict {
    let (verdict, violations) = match outcome {
        Outcome::New => (Verdict::AcceptedNew, Vec::new()),
        Outcome::Updated => (Verdict::AcceptedUpdated, Vec::new()),
        Outcome::Unchanged => (Verdict::AcceptedUnchanged, Vec::new()),
        Outcome::Rejected(v) => (Verdict::Rejected, v.into_iter().map(violation).collect()),
    };
    RecordVerdict {
        index,
        verdict: verdict as i32,
        violations,
    }
}

#[tonic::async_trait]
impl SiteAgent for SiteAgentService {
    #[instrument(skip_all, fields(site = %self.agent.options().site_code, records))]
    async fn upsert_records(
        &self,
        request: Request<UpsertRecordsRequest>,
    ) -> Result<Response<UpsertRecordsResponse>, Status> {
        authorise(&request, "UpsertRecords", Role::Ingest)?;
        let records = request.into_inner().records;
        let max = self.agent.options().max_batch;
        tracing::Span::current().record("records", records.len());
        if records.len() > max {
            return Err(AgentError::invalid(
                "records",
                format!(
                    "at most {max} records per UpsertRecords call, got {}; use StreamRecords for bulk ingest",
                    records.len()
                ),
            )
            .into());
        }
        let started = Instant::now();
        let readmit = records
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.readmit_erased.then_some(i))
            .collect();
        let inputs: Vec<RecordInput> = records.into_iter().map(record_input).collect();
        let items = prepare_chunk(&self.agent, inputs, readmit, self.agent.inner().threads)
            .await
            .map_err(AgentError::from)?;
        let outcomes = apply_chunk(&self.agent, items, true).await?;
        self.agent
            .metrics()
            .ingest_latency
            .observe(started.elapsed().as_secs_f64());
        let mut reply = UpsertRecordsResponse::default();
        for (i, o) in outcomes.into_iter().enumerate() {
            if matches!(o, Outcome::Rejected(_)) {
                reply.rejected += 1;
            } else {
                reply.accepted += 1;
            }
            reply.verdicts.push(verdict(i as u32, o));
        }
        tracing::info!(
            accepted = reply.accepted,
            rejected = reply.rejected,
            "upsert done"
        );
        Ok(Response::new(reply))
    }

    #[instrument(skip_all, fields(site = %self.agent.options().site_code))]
    async fn stream_records(
        &self,
        request: Request<Streaming<Record>>,
    ) -> Result<Response<IngestSummary>, Status> {
        authorise(&request, "StreamRecords", Role::Ingest)?;
        let stream = request.into_inner();
        // Up to two chunks being prepared while one is written: flat memory, both cores busy.
        let (tx, rx) = tokio::sync::mpsc::channel::<PreparedChunk>(2);
        // Not spawned: a call cut off at shutdown drops the writer with it,
        // so no task outlives the call holding the agent (and its store).
        let writer = write_chunks(&self.agent, rx);
        let reader = read_chunks(&self.agent, stream, tx);
        let (summary, (failed, next)) = tokio::join!(writer, reader);
        if let Some(status) = failed {
            // Chunks before the error are stored (each record is idempotent, so
            // re-sending the whole stream is safe); say where it broke.
            return Err(Status::new(
                status.code(),
                format!("stream failed after {next} records: {}", status.message()),
            ));
        }
        let summary = summary?;
        tracing::info!(
            received = summary.received,
            accepted = summary.accepted,
            rejected = summary.rejected,
            "stream ingest done"
        );
        Ok(Response::new(summary))
    }

    #[instrument(skip_all, fields(site = %self.agent.options().site_code))]
    async fn erase_person(
        &self,
        request: Request<ErasePersonRequest>,
    ) -> Result<Response<ErasePersonResponse>, Status> {
        authorise(&request, "ErasePerson", Role::Operate)?;
        let ring = &self.agent.options().keys;
        let (persons, records): (Vec<Pseudonym>, Vec<Pseudonym>) =
            match request.into_inner().identifier {
                Some(erase_person_request::Identifier::NhsNumber(raw)) => {
                    let digits = normalise_nhs_number(&raw).ok_or_else(|| {
                        AgentError::invalid(
                            "nhs_number",
                            "must be 10 digits that pass the modulus-11 check",
                        )
                    })?;
                    let id = PersonId::Nhs(digits);
                    (
                        ring.iter().map(|(_, p)| p.person(&id)).collect(),
                        Vec::new(),
                    )
                }
                Some(erase_person_request::Identifier::LocalCaseId(raw)) => {
                    let case = raw.trim();
                    if case.is_empty() {
                        return Err(AgentError::invalid("local_case_id", "is required").into());
                    }
                    let id = PersonId::LocalCase(case.to_owned());
                    (
                        ring.iter().map(|(_, p)| p.person(&id)).collect(),
                        ring.iter().map(|(_, p)| p.record(case)).collect(),
                    )
                }
                None => {
                    return Err(AgentError::invalid(
                        "identifier",
                        "one of nhs_number or local_case_id is required",
                    )
                    .into());
                }
            };
        let cx = ApplyContext {
            granularity: self.agent.options().granularity,
            today: self.agent.today(),
            generation: self.agent.inner().next_generation(),
        };
        let erased = self
            .agent
            .store()
            .write("erase", Durability::Flush, move |w| {
                ingest::erase(w, &persons, &records, cx)
            })
            .await?;
        self.agent.metrics().erased.inc_by(u64::from(erased));
        if erased > 0 {
            self.agent.inner().changed.notify_one();
        }
        tracing::info!(records_erased = erased, "erasure done");
        Ok(Response::new(ErasePersonResponse {
            records_erased: erased,
        }))
    }

    #[instrument(skip_all, fields(site = %self.agent.options().site_code))]
    async fn preview_submission(
        &self,
        request: Request<PreviewSubmissionRequest>,
    ) -> Result<Response<PreviewSubmissionResponse>, Status> {
        authorise(&request, "PreviewSubmission", Role::Operate)?;
        let period = period_from_proto(request.get_ref().period.as_ref(), "period")
            .map_err(AgentError::from)?;
        let preview = publish::preview(&self.agent, period).await?;
        let publishable_on = match &preview.decision {
            publish::Decision::Embargoed { until } => until.to_string(),
            _ => String::new(),
        };
        let mut reason = preview.decision.explain(&self.agent.options().policy);
        let mut decision = preview.decision.name().to_owned();
        // The publisher holds a lost period back whatever the data say.
        let digest = &preview.submission.digest;
        if let Some(mark) = self.agent.store().lost_periods()?.get(&period)
            && (mark.hub.digest.is_empty() || mark.hub.digest != *digest)
        {
            decision = "held".to_owned();
            reason = format!(
                "held: the hub holds a newer release of this period (revision {}) than this agent; {}",
                mark.hub.revision,
                crate::reconcile::LOSS_ADVICE
            );
        }
        Ok(Response::new(PreviewSubmissionResponse {
            reason,
            decision,
            publishable_on,
            submission: Some(preview.submission),
        }))
    }

    #[instrument(skip_all, fields(site = %self.agent.options().site_code))]
    async fn get_local_evaluation(
        &self,
        request: Request<LocalEvaluationRequest>,
    ) -> Result<Response<LocalEvaluation>, Status> {
        const METHOD: &str = "GetLocalEvaluation";
        // Exact figures: every call is audited, refusals (by `authorise`) included.
        if let Err(status) = authorise(&request, METHOD, Role::Operate) {
            tracing::warn!(target: "lacnet::audit", method = METHOD, outcome = "refused", code = ?status.code(), "local evaluation");
            return Err(status);
        }
        let caller = lacnet_tls::peer_of(&request)
            .map(|p| p.to_string())
            .unwrap_or_default();
        let result = match period_from_proto(request.get_ref().span.as_ref(), "span") {
            Ok(span) => crate::evaluation::local_evaluation(&self.agent, span)
                .await
                .map(|e| (span, e)),
            Err(e) => Err(AgentError::from(e)),
        };
        match result {
            Ok((span, body)) => {
                tracing::info!(target: "lacnet::audit", caller = %caller, method = METHOD, span = %span, outcome = "served", "local evaluation");
                Ok(Response::new(body))
            }
            Err(e) => {
                tracing::info!(target: "lacnet::audit", caller = %caller, method = METHOD, outcome = "refused", reason = %e, "local evaluation");
                Err(e.into())
            }
        }
    }

    #[instrument(skip_all, fields(site = %self.agent.options().site_code))]
    async fn get_status(
        &self,
        request: Request<GetStatusRequest>,
    ) -> Result<Response<AgentStatus>, Status> {
        authorise(&request, "GetStatus", Role::Operate)?;
        let o = self.agent.options();
        let store = self.agent.store();
        let (last_push_unix, last_push_error) = store.push_status()?;
        let (active_id, active) = o.keys.active();
        // Dead letters are rare and small (one per refused revision), so
        // reading them all to find the latest is cheap.
        let dead = store.dead_letters()?;
        self.agent.metrics().dead_letters.set(dead.len() as i64);
        let latest_dead = dead.iter().max_by_key(|d| d.seq);
        let lost = store.lost_periods()?;
        self.agent.metrics().lost_periods.set(lost.len() as i64);
        Ok(Response::new(AgentStatus {
            lost_advice: if lost.is_empty() {
                String::new()
            } else {
                crate::reconcile::LOSS_ADVICE.to_owned()
            },
            lost_periods: lost
                .into_iter()
                .map(|(p, mark)| LostPeriod {
                    period: p.to_string(),
                    hub_revision: mark.hub.revision,
                    agent_revision: mark.agent_revision.unwrap_or(0),
                })
                .collect(),
            last_reconcile_unix: self
                .agent
                .inner()
                .last_reconcile
                .load(std::sync::atomic::Ordering::Relaxed),
            publish_rounds: self
                .agent
                .inner()
                .publish_rounds
                .load(std::sync::atomic::Ordering::Relaxed),
            releases_enqueued: self
                .agent
                .inner()
                .releases_enqueued
                .load(std::sync::atomic::Ordering::Relaxed),
            periods_pending: store.dirty_periods()?.len() as u64,
            site_code: o.site_code.clone(),
            record_count: store.record_count()?,
            active_key_id: active_id.to_string(),
            key_ids: o.keys.iter().map(|(id, _)| id.to_string()).collect(),
            outbox_depth: store.outbox_len() as u64,
            last_push_unix,
            last_push_error,
            policy: Some(policy_to_proto(&o.policy)),
            granularity: o.granularity.code(),
            active_key_fingerprint: active.fingerprint(),
            dead_letters: dead.len() as u64,
            last_dead_letter_reason: latest_dead.map(|d| d.reason.clone()).unwrap_or_default(),
            last_dead_letter_period: latest_dead
                .and_then(|d| period_from_proto(d.submission.period.as_ref(), "period").ok())
                .map(|p| p.to_string())
                .unwrap_or_default(),
        }))
    }

    #[instrument(skip_all, fields(site = %self.agent.options().site_code))]
    async fn confirm_full_import(
        &self,
        request: Request<ConfirmFullImportRequest>,
    ) -> Result<Response<ConfirmFullImportResponse>, Status> {
        // The case system that sent the export is the one that knows it was full.
        authorise(&request, "ConfirmFullImport", Role::Ingest)?;
        let released = crate::reconcile::confirm_full_import(&self.agent).await?;
        tracing::info!(released = released.len(), "full import confirmed");
        Ok(Response::new(ConfirmFullImportResponse {
            released_periods: released.iter().map(ToString::to_string).collect(),
        }))
    }
}
