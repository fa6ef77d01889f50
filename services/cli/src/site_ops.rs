//! Operating a site agent: `lacnet status` (records, outbox, last push, key
//! ids), `lacnet preview` (exactly what would go to the hub for a period, as
//! a table) and `lacnet erase` (forget one person). Output carries counts,
//! pseudonymous key fingerprints and aggregates only: never an identifier.

use lacnet_clock::Clock;
use lacnet_core::metrics::catalogue;
use lacnet_core::{Date, Period};
use lacnet_proto::common::v1 as pb;
use lacnet_proto::convert::period_to_proto;
use lacnet_proto::site::v1::site_agent_client::SiteAgentClient;
use lacnet_proto::site::v1::{
    AgentStatus, ErasePersonRequest, GetStatusRequest, LocalEvaluation, LocalEvaluationRequest,
    PreviewSubmissionRequest, PreviewSubmissionResponse, erase_person_request::Identifier,
};
use tonic::transport::Channel;

use crate::Outcome;
use crate::config::{EndpointFlags, OperatorFlags};
use crate::error::{CliError, Service};
use crate::report::model::{parse_period, policy_text};
use crate::report::table::Table;

/// `lacnet status`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub conn: OperatorFlags,
}

/// `lacnet preview`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct PreviewArgs {
    /// The period, e.g. 2016-Q1 or 2016-03.
    #[arg(long)]
    pub period: String,
    #[command(flatten)]
    pub conn: OperatorFlags,
}

/// `lacnet evaluation`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct EvaluationArgs {
    /// The span: a financial year (FY2024 = April 2024 to March 2025) or
    /// the programme to date (PTD2024-09, from the programme start to the
    /// end of September 2024).
    #[arg(long)]
    pub span: String,
    /// Write JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: OperatorFlags,
}

/// `lacnet erase`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct EraseArgs {
    /// The person's NHS number.
    #[arg(long, conflicts_with = "case_id", required_unless_present = "case_id")]
    pub nhs_number: Option<String>,
    /// A local case id of the person.
    #[arg(long)]
    pub case_id: Option<String>,
    #[command(flatten)]
    pub conn: OperatorFlags,
}

/// A site agent client as its operator, from the operator's flags.
async fn operator_client(
    conn: OperatorFlags,
    clock: &dyn Clock,
) -> Result<(SiteAgentClient<Channel>, String), CliError> {
    let endpoint = EndpointFlags::from(conn).operator()?;
    let c = crate::client::agent(&endpoint, clock).await?;
    Ok((c, endpoint.url))
}

/// `lacnet status`.
pub async fn status_command(args: StatusArgs, clock: &dyn Clock) -> Result<Outcome, CliError> {
    let (mut c, url) = operator_client(args.conn, clock).await?;
    let s = status(&mut c, &url).await?;
    print!("{}", render_status(&s, clock.now_unix()));
    Ok(Outcome::Done)
}

/// `lacnet preview`.
pub async fn preview_command(args: PreviewArgs, clock: &dyn Clock) -> Result<Outcome, CliError> {
    let (mut c, url) = operator_client(args.conn, clock).await?;
    let s = preview(&mut c, &url, parse_period(&args.period)?).await?;
    print!("{}", render_preview(&s));
    Ok(Outcome::Done)
}

/// `lacnet evaluation`.
pub async fn evaluation_command(
    args: EvaluationArgs,
    clock: &dyn Clock,
) -> Result<Outcome, CliError> {
    let (mut c, url) = operator_client(args.conn, clock).await?;
    let e = evaluation(&mut c, &url, parse_period(&args.span)?).await?;
    print!("{}", render_evaluation(&e, args.json)?);
    Ok(Outcome::Done)
}

/// `lacnet erase`: [`Outcome::NotFound`] when no record has the id.
pub async fn erase_command(args: EraseArgs, clock: &dyn Clock) -> Result<Outcome, CliError> {
    let endpoint = EndpointFlags::from(args.conn).operator()?;
    let (who, what) = match (args.nhs_number, args.case_id) {
        (Some(n), _) => (Who::Nhs(n), "that NHS number"),
        (None, Some(c)) => (Who::Case(c), "that case id"),
        (None, None) => return Err(CliError::NoPersonId),
    };
    let mut c = crate::client::agent(&endpoint, clock).await?;
    let n = erase(&mut c, &endpoint.url, who).await?;
    if n == 0 {
        eprintln!(
            "error: no record at this site agent has {what}: nothing was erased. \
             Check the id (a case id must match exactly, and the person may already be erased)."
        );
        return Ok(Outcome::NotFound);
    }
    println!("erased {n} record(s); the affected periods are re-aggregated and sent again");
    println!(
        "the agent now refuses this person's rows if an old export is imported again \
         (`lacnet import --readmit-erased` lets them back if they return)"
    );
    Ok(Outcome::Done)
}

/// Fetches the agent's status.
pub async fn status(
    client: &mut SiteAgentClient<Channel>,
    url: &str,
) -> Result<AgentStatus, CliError> {
    Ok(client
        .get_status(GetStatusRequest {})
        .await
        .map_err(|s| Service::Agent.status_error(url, s))?
        .into_inner())
}

/// `2014-07-31 12:00:00 UTC`.
pub fn utc(unix: i64) -> String {
    let d = Date::from_unix_seconds(unix);
    let s = unix.rem_euclid(86_400);
    format!("{d} {:02}:{:02}:{:02} UTC", s / 3600, s / 60 % 60, s % 60)
}

/// The status as a two-column table.
pub fn render_status(s: &AgentStatus, now_unix: i64) -> String {
    let last_push = if s.last_push_unix == 0 {
        "never".to_owned()
    } else {
        format!(
            "{} ({} s ago)",
            utc(s.last_push_unix),
            (now_unix - s.last_push_unix).max(0)
        )
    };
    let granularity =
        lacnet_core::Granularity::from_code(s.granularity).map_or("unknown", |g| g.label());
    let mut t = Table::new(["", ""]);
    t.row(["site", s.site_code.as_str()]);
    t.row(["records", &s.record_count.to_string()]);
    t.row([
        "outbox",
        &format!("{} submission(s) waiting", s.outbox_depth),
    ]);
    t.row(["last push", &last_push]);
    if !s.last_push_error.is_empty() {
        t.row(["last push error", s.last_push_error.as_str()]);
    }
    if !s.lost_periods.is_empty() {
        // The agent lost state: the hub keeps newer figures until the re-import.
        let periods: Vec<String> = s
            .lost_periods
            .iter()
            .map(|l| {
                let ours = if l.agent_revision == 0 {
                    "none".to_owned()
                } else {
                    l.agent_revision.to_string()
                };
                format!(
                    "{} (hub revision {}, ours {ours})",
                    l.period, l.hub_revision
                )
            })
            .collect();
        t.row(["LOST STATE", &periods.join("; ")]);
        t.row(["what to do", s.lost_advice.as_str()]);
    }
    if s.last_reconcile_unix > 0 {
        t.row([
            "compared with hub",
            &format!(
                "{} ({} s ago)",
                utc(s.last_reconcile_unix),
                (now_unix - s.last_reconcile_unix).max(0)
            ),
        ]);
    }
    if s.dead_letters > 0 {
        // Refused for good by the hub: an operator has to act (see the reason).
        t.row([
            "dead letters",
            &format!(
                "{} refused by the hub for good; latest for {}: {}",
                s.dead_letters, s.last_dead_letter_period, s.last_dead_letter_reason
            ),
        ]);
    }
    t.row([
        "active key",
        &format!(
            "{} (fingerprint {})",
            s.active_key_id, s.active_key_fingerprint
        ),
    ]);
    t.row(["key ids", &s.key_ids.join(", ")]);
    t.row([
        "policy",
        &s.policy
            .as_ref()
            .map_or_else(|| "unknown".into(), policy_text),
    ]);
    t.row(["periods", granularity]);
    t.render_plain()
}

/// Tells the agent the council's full export is re-imported; returns the
/// periods it released from hold.
pub async fn confirm_full_import(
    client: &mut SiteAgentClient<Channel>,
    url: &str,
) -> Result<Vec<String>, CliError> {
    Ok(client
        .confirm_full_import(lacnet_proto::site::v1::ConfirmFullImportRequest {})
        .await
        .map_err(|s| Service::Agent.status_error(url, s))?
        .into_inner()
        .released_periods)
}

/// What the agent would send for `period`, and whether and when.
pub async fn preview(
    client: &mut SiteAgentClient<Channel>,
    url: &str,
    period: Period,
) -> Result<PreviewSubmissionResponse, CliError> {
    Ok(client
        .preview_submission(PreviewSubmissionRequest {
            period: Some(period_to_proto(period)),
        })
        .await
        .map_err(|s| Service::Agent.status_error(url, s))?
        .into_inner())
}

/// The site's exact figures over a span (operators only, audited at the agent).
pub async fn evaluation(
    client: &mut SiteAgentClient<Channel>,
    url: &str,
    span: Period,
) -> Result<LocalEvaluation, CliError> {
    Ok(client
        .get_local_evaluation(LocalEvaluationRequest {
            span: Some(period_to_proto(span)),
        })
        .await
        .map_err(|s| Service::Agent.status_error(url, s))?
        .into_inner())
}

/// The evaluation in the form sites quote: the headline figures with shares
/// of people introduced, then every figure exactly (or all of it as JSON).
pub fn render_evaluation(e: &LocalEvaluation, json: bool) -> Result<String, CliError> {
    let get = |id: &str| {
        e.cells
            .iter()
            .find(|c| c.metric == id)
            .map_or(0, |c| c.value)
    };
    if json {
        let cells: serde_json::Map<String, serde_json::Value> = e
            .cells
            .iter()
            .map(|c| (c.metric.clone(), serde_json::Value::from(c.value)))
            .collect();
        let v = serde_json::json!({
            "site_code": e.site_code,
            "from": e.from,
            "to": e.to,
            "inactivity_months": e.inactivity_months,
            "youngest_age_band": e.youngest_band,
            "oldest_age_band": e.oldest_band,
            "figures": cells,
        });
        return Ok(serde_json::to_string_pretty(&v)? + "\n");
    }
    let people = get("people_new");
    let introductions = get("introductions_new");
    let pct = |n: u64| {
        if introductions == 0 {
            "-".to_owned()
        } else {
            format!("{:.0}%", n as f64 * 100.0 / introductions as f64)
        }
    };
    let band = |b: &str| b.replace('_', "-").replace("-plus", "+");
    let mut out = format!(
        "Local evaluation for site {}, {} to {} (exact figures: for the council's own use, never sent to the hub)\n\n",
        e.site_code, e.from, e.to
    );
    out.push_str(&format!(
        "{people} people introduced (Level 2: {}), age bands {} to {}; {} people supported in all.\n",
        get("level_2.people_new"),
        band(&e.youngest_band),
        band(&e.oldest_band),
        get("people_active"),
    ));
    for (id, what) in [
        ("primary_need.older_people_frailty", "older people"),
        ("primary_need.mental_health", "mental health"),
        ("primary_need.learning_disability", "learning disability"),
        ("primary_need.physical_disability", "physical disability"),
    ] {
        // Needs are recorded per introduction: shares are of introductions.
        out.push_str(&format!(
            "  {} {what} ({} of introductions)\n",
            get(id),
            pct(get(id))
        ));
    }
    out.push_str(&format!(
        "{} open cases gone quiet (no contact for {} months) at {}.\n\n",
        get("cases_stale"),
        e.inactivity_months,
        e.to
    ));
    let mut t = Table::new(["metric", "label", "value"]);
    for c in &e.cells {
        t.row([c.metric.as_str(), c.label.as_str(), &c.value.to_string()]);
    }
    out.push_str(&t.render());
    Ok(out)
}

/// A preview as a table: the decision, then one row per metric, suppressed
/// cells marked.
pub fn render_preview(preview: &PreviewSubmissionResponse) -> String {
    let mut out = format!("Decision: {}: {}\n", preview.decision, preview.reason);
    match &preview.submission {
        Some(s) => out.push_str(&render_submission(s)),
        None => out.push_str("(no submission)\n"),
    }
    out
}

fn render_submission(s: &pb::Submission) -> String {
    let period = s
        .period
        .as_ref()
        .and_then(|p| lacnet_proto::convert::period_from_proto(Some(p), "period").ok())
        .map_or_else(|| "?".to_owned(), |p| p.to_string());
    let mut out = format!(
        "What site {} would send the hub for {period} (revision {}, digest {}):\npolicy: {}\n\n",
        s.site_code,
        s.revision,
        s.digest.get(..16).unwrap_or(&s.digest),
        s.policy
            .as_ref()
            .map_or_else(|| "unknown".into(), policy_text),
    );
    let mut t = Table::new(["metric", "label", "value"]);
    for c in &s.cells {
        let label = catalogue()
            .index_of(&c.metric)
            .map_or("", |i| catalogue().def(i).label.as_str());
        let value = match c.count.as_ref().and_then(|c| c.kind) {
            Some(pb::count::Kind::Value(v)) => v.to_string(),
            Some(pb::count::Kind::Suppressed(_)) => "suppressed".to_owned(),
            Some(pb::count::Kind::NotReleased(_)) => {
                "not released for this kind of period".to_owned()
            }
            None => "?".to_owned(),
        };
        t.row([c.metric.as_str(), label, &value]);
    }
    out.push_str(&t.render());
    out
}

/// Who to erase.
#[derive(Debug, Clone)]
pub enum Who {
    /// By NHS number.
    Nhs(String),
    /// By the council's case id.
    Case(String),
}

/// Erases every record of one person; returns how many went.
pub async fn erase(
    client: &mut SiteAgentClient<Channel>,
    url: &str,
    who: Who,
) -> Result<u32, CliError> {
    let identifier = match who {
        Who::Nhs(n) => Identifier::NhsNumber(n),
        Who::Case(c) => Identifier::LocalCaseId(c),
    };
    Ok(client
        .erase_person(ErasePersonRequest {
            identifier: Some(identifier),
        })
        .await
        .map_err(|s| Service::Agent.status_error(url, s))?
        .into_inner()
        .records_erased)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_evaluation_reads_like_the_sites_own_reports() {
        let cell = |metric: &str, value: u64| lacnet_proto::site::v1::ExactCell {
            metric: metric.into(),
            label: String::new(),
            value,
        };
        let e = LocalEvaluation {
            site_code: "E06000034".into(),
            from: "2013-06-01".into(),
            to: "2014-07-31".into(),
            inactivity_months: 12,
            youngest_band: "18_24".into(),
            oldest_band: "85_plus".into(),
            cells: vec![
                cell("people_new", 256),
                cell("introductions_new", 256),
                cell("people_active", 256),
                cell("primary_need.older_people_frailty", 79),
                cell("primary_need.mental_health", 69),
                cell("level_2.people_new", 143),
            ],
            ..Default::default()
        };
        let text = render_evaluation(&e, false).unwrap();
        assert!(
            text.contains("256 people introduced (Level 2: 143), age bands 18-24 to 85+"),
            "{text}"
        );
        assert!(
            text.contains("79 older people (31% of introductions)"),
            "{text}"
        );
        assert!(
            text.contains("69 mental health (27% of introductions)"),
            "{text}"
        );
        assert!(text.contains("never sent to the hub"), "{text}");
        let json: serde_json::Value =
            serde_json::from_str(&render_evaluation(&e, true).unwrap()).unwrap();
        assert_eq!(json["figures"]["primary_need.mental_health"], 69);
        assert_eq!(json["from"], "2013-06-01");
    }

    #[test]
    fn status_names_lost_periods_and_what_to_do() {
        let mut s = AgentStatus {
            site_code: "E06000034".into(),
            ..Default::default()
        };
        assert!(!render_status(&s, 100).contains("LOST"));
        s.lost_periods.push(lacnet_proto::site::v1::LostPeriod {
            period: "2025-Q1".into(),
            hub_revision: 20,
            agent_revision: 10,
        });
        s.lost_advice = "re-import the latest full export".into();
        let text = render_status(&s, 100);
        assert!(text.contains("LOST STATE"), "{text}");
        assert!(
            text.contains("2025-Q1 (hub revision 20, ours 10)"),
            "{text}"
        );
        assert!(text.contains("re-import the latest full export"), "{text}");
    }

    #[test]
    fn status_shows_dead_letters_only_when_there_are_some() {
        let mut s = AgentStatus {
            site_code: "E06000034".into(),
            record_count: 12,
            ..Default::default()
        };
        let quiet = render_status(&s, 100);
        assert!(quiet.contains("E06000034"));
        assert!(!quiet.contains("dead letters"));
        s.dead_letters = 2;
        s.last_dead_letter_period = "2025-Q1".into();
        s.last_dead_letter_reason = "FailedPrecondition: policy".into();
        let loud = render_status(&s, 100);
        assert!(loud.contains("dead letters"), "{loud}");
        assert!(loud.contains("2 refused"), "{loud}");
        assert!(
            loud.contains("2025-Q1: FailedPrecondition: policy"),
            "{loud}"
        );
    }
}
