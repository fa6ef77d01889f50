//! `lacnet import`: streams a CSV file into a site agent over mTLS.
//!
//! ```text
//! CSV file ─▶ reader thread (csv, mapping, csv_format) ─▶ rows ─▶ StreamRecords call per chunk ─▶ agent
//!                 │ local rejections                                    │ per-record rejections
//!                 └────────────────────────▶ rejects CSV ◀──────────────┘
//! ```
//!
//! Memory stays nearly flat whatever the file size: the reader thread parses
//! ahead by a bounded channel, and only the current chunk is held (to name
//! the line of each rejection; a row the agent rejects is read again from
//! its place in the file for the rejects file). What grows is one 64-bit
//! fingerprint per row, so a case id seen twice in the file is caught with
//! both line numbers. Each chunk is one `StreamRecords` call, so the
//! agent's one summary per call covers a known set of lines. The summary
//! lists at most the first rejections; when a chunk has more, the chunk is
//! sent again through `UpsertRecords`, which answers for every record (and
//! is safe: re-sending a record leaves it unchanged).
//!
//! The rejects file is the council's own: one row per rejected row, naming
//! the line, the columns, the fields and the reasons, followed by the
//! original row under the original header. So someone can fix the cells and
//! import the rejects file alone (with the same `--map`): the four
//! `lacnet_*` columns are ignored. Every cell is bounded ([`MAX_CELL_CHARS`])
//! and neutralised against spreadsheet formula injection. Nothing from a row is printed or logged.

use std::collections::HashMap;
use std::fs::File;
use std::hash::BuildHasher;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use csv::StringRecord;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lacnet_clock::Clock;
use lacnet_proto::site::v1::site_agent_client::SiteAgentClient;
use lacnet_proto::site::v1::{Record, UpsertRecordsRequest, Verdict};
use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::Outcome;
use crate::columns::{COLUMNS, Field, bounded, echo};
use crate::config::{AgentFlags, EndpointFlags};
use crate::csv_format::{Layout, Problem};
use crate::error::{CliError, Service};
use crate::mapping::Mapping;

/// Rows per `StreamRecords` call.
pub const DEFAULT_CHUNK_ROWS: usize = 50_000;
/// Records per `UpsertRecords` call when a chunk's rejections must be listed in full.
const UPSERT_BATCH: usize = 1_000;
/// Rows the reader thread hands over at a time.
const READ_BATCH: usize = 512;

/// `lacnet import`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// The CSV file (lacnet's format, or a case system's export with --map).
    #[arg(required_unless_present = "columns")]
    pub file: Option<PathBuf>,
    /// Print the CSV columns and the accepted codes, then exit.
    #[arg(long, conflicts_with_all = ["map", "rejects"])]
    pub columns: bool,
    /// Mapping file (TOML) from a case system's columns and codes onto lacnet's.
    #[arg(long)]
    pub map: Option<PathBuf>,
    /// Where rejected rows go [default: <file>.rejects.csv beside the input].
    #[arg(long)]
    pub rejects: Option<PathBuf>,
    /// Rows per StreamRecords call.
    #[arg(long, default_value_t = DEFAULT_CHUNK_ROWS)]
    pub chunk_rows: usize,
    /// Never draw the progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Re-admit people erased at the agent, who are otherwise refused
    /// (use only when a person has really returned, not to re-load an old export).
    #[arg(long)]
    pub readmit_erased: bool,
    /// The file is the council's latest full export, re-imported after
    /// the agent lost state (`lacnet status` lists lost periods): once
    /// every row is accepted, tell the agent, which then publishes those
    /// periods again over the hub's releases.
    #[arg(long)]
    pub full_export: bool,
    #[command(flatten)]
    pub conn: AgentFlags,
}

/// `lacnet import`: imports the file and prints what happened; with
/// `--columns`, prints the format instead.
pub async fn command(args: ImportArgs, clock: &dyn Clock) -> Result<Outcome, CliError> {
    let Some(file) = args.file.filter(|_| !args.columns) else {
        print!("{}", crate::csv_format::columns_help());
        return Ok(Outcome::Done);
    };
    let endpoint = EndpointFlags::from(args.conn).agent()?;
    let mut opts = ImportOptions::new(&file);
    if let Some(m) = args.map {
        opts.mapping = Mapping::load(&m)?;
    }
    if let Some(r) = args.rejects {
        opts.rejects = r;
    }
    opts.chunk_rows = args.chunk_rows;
    opts.progress = !args.quiet;
    opts.readmit_erased = args.readmit_erased;
    let c = crate::client::agent(&endpoint, clock).await?;
    let r = import(c.clone(), &endpoint.url, &opts).await?;
    println!(
        "{} rows: {} accepted, {} rejected ({} here, {} by the agent) in {:.1} s, {:.0} rows/s",
        r.rows,
        r.accepted,
        r.rejected,
        r.rejected_locally,
        r.rejected - r.rejected_locally,
        r.elapsed.as_secs_f64(),
        r.rate()
    );
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(path) = r.rejects {
        println!(
            "rejected rows (line, column, field, reason, then the row as it was): {}",
            path.display()
        );
        println!("fix them there and import that file alone (with the same --map, if any)");
        if args.full_export {
            println!(
                "not confirmed as a full export: fix the rejected rows and import the file again"
            );
        }
        return Ok(Outcome::RowsRejected);
    }
    if args.full_export {
        let released = crate::site_ops::confirm_full_import(&mut c.clone(), &endpoint.url).await?;
        if released.is_empty() {
            println!("full export confirmed: no period was held back");
        } else {
            println!(
                "full export confirmed: {} publish again from the re-imported records",
                released.join(", ")
            );
        }
    }
    Ok(Outcome::Done)
}

/// What to import and how.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The CSV file.
    pub csv: PathBuf,
    /// Column renames and code translations (the identity for lacnet's own format).
    pub mapping: Mapping,
    /// Where rejected rows go.
    pub rejects: PathBuf,
    /// Rows per `StreamRecords` call.
    pub chunk_rows: usize,
    /// Draw a progress bar (on a terminal only).
    pub progress: bool,
    /// Ask the agent to re-admit people it erased (otherwise their rows are refused).
    pub readmit_erased: bool,
}

impl ImportOptions {
    /// Defaults for `csv`: lacnet's format, rejects beside it as `<name>.rejects.csv`.
    pub fn new(csv: impl Into<PathBuf>) -> ImportOptions {
        let csv = csv.into();
        ImportOptions {
            rejects: default_rejects_path(&csv),
            csv,
            mapping: Mapping::default(),
            chunk_rows: DEFAULT_CHUNK_ROWS,
            progress: false,
            readmit_erased: false,
        }
    }
}

/// `data/derby.csv` → `data/derby.rejects.csv`.
pub fn default_rejects_path(csv: &Path) -> PathBuf {
    let stem = csv
        .file_stem()
        .map_or_else(|| "import".into(), |s| s.to_string_lossy().into_owned());
    csv.with_file_name(format!("{stem}.rejects.csv"))
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportReport {
    /// Data rows read.
    pub rows: u64,
    /// Rows the agent accepted (new, updated or unchanged).
    pub accepted: u64,
    /// Rows refused, here or by the agent.
    pub rejected: u64,
    /// Of those, rows refused here before sending.
    pub rejected_locally: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// The rejects file, if anything was rejected.
    pub rejects: Option<PathBuf>,
    /// Things that look wrong but stopped no row, e.g. an optional column
    /// empty in every row (often a mapping that points at the wrong column).
    pub warnings: Vec<String>,
}

impl ImportReport {
    /// Rows per second over the whole import.
    pub fn rate(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// One unit of the reader thread's output.
// Rows are the common case and bad rows the rare one: boxing the record to
// shrink the enum would cost an allocation per row.
#[allow(clippy::large_enum_variant)]
enum Item {
    /// A row that became a record, and where it starts in the file.
    Row {
        line: u64,
        record: Record,
        at: csv::Position,
    },
    /// A row refused here (`row` is `None` when it could not be read as text).
    Bad {
        line: u64,
        problems: Vec<Problem>,
        row: Option<StringRecord>,
    },
}

/// A batch of items, with how far into the file the reader has got.
struct Batch {
    items: Vec<Item>,
    bytes_read: u64,
    /// On the last batch only: which columns held a value in some row.
    filled: Option<Vec<bool>>,
}

/// The rejects CSV, created with its header on the first rejection.
struct Rejects {
    path: PathBuf,
    header: StringRecord,
    writer: Option<csv::Writer<File>>,
}

/// Diagnostic columns written before the original row. Their names are ones
/// no lacnet column or mapping uses, so the file imports as it stands.
const REJECT_COLUMNS: [&str; 4] = [
    "lacnet_line",
    "lacnet_column",
    "lacnet_field",
    "lacnet_reason",
];

/// Longest cell copied from the file into the rejects file, in characters:
/// far more than any lacnet value needs (a case id is at most 64).
pub const MAX_CELL_CHARS: usize = 256;
/// Longest list of reasons written for one row, in characters.
const MAX_REASONS_CHARS: usize = 4096;

/// A cell as the rejects file writes it: at most `max` characters, and with
/// a leading `'` when a spreadsheet would run it as a formula (`=`, `+`, `-`,
/// `@`, tab or carriage return first, as the OWASP guidance on CSV injection
/// advises).
pub fn safe_cell(value: &str, max: usize) -> String {
    let v = bounded(value, max);
    if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v
    }
}

impl Rejects {
    fn new(path: PathBuf, header: StringRecord) -> Rejects {
        Rejects {
            path,
            header,
            writer: None,
        }
    }

    /// One rejected row: every problem in it, then the row itself.
    fn write(
        &mut self,
        line: u64,
        problems: &[Problem],
        row: Option<&StringRecord>,
    ) -> Result<(), CliError> {
        if self.writer.is_none() {
            let file = File::create(&self.path)
                .map_err(|e| CliError::io("cannot create the rejects file", &self.path, e))?;
            // Flexible: a row with the wrong number of fields is copied as it was.
            let mut w = csv::WriterBuilder::new().flexible(true).from_writer(file);
            let header: Vec<String> = REJECT_COLUMNS
                .iter()
                .map(|c| (*c).to_owned())
                .chain(self.header.iter().map(|h| safe_cell(h, MAX_CELL_CHARS)))
                .collect();
            w.write_record(&header).map_err(|e| self.err(e))?;
            self.writer = Some(w);
        }
        let join =
            |f: &dyn Fn(&Problem) -> String| problems.iter().map(f).collect::<Vec<_>>().join("; ");
        let mut cells = vec![
            line.to_string(),
            join(&|p| {
                if p.column > 0 {
                    p.column.to_string()
                } else {
                    String::new()
                }
            }),
            safe_cell(&join(&|p| p.field.clone()), MAX_REASONS_CHARS),
            safe_cell(&join(&|p| p.reason.clone()), MAX_REASONS_CHARS),
        ];
        cells.extend(
            row.into_iter()
                .flat_map(|r| r.iter().map(|c| safe_cell(c, MAX_CELL_CHARS))),
        );
        let result = match self.writer.as_mut() {
            Some(w) => w.write_record(&cells),
            None => Ok(()),
        };
        result.map_err(|e| self.err(e))
    }

    fn err(&self, e: csv::Error) -> CliError {
        CliError::io(
            "cannot write the rejects file",
            &self.path,
            std::io::Error::other(e.to_string()),
        )
    }

    fn finish(mut self) -> Result<Option<PathBuf>, CliError> {
        match self.writer.take() {
            Some(mut w) => {
                w.flush()
                    .map_err(|e| CliError::io("cannot write the rejects file", &self.path, e))?;
                Ok(Some(self.path))
            }
            None => {
                // A rejects file left from an earlier run would now be misleading.
                let _ = std::fs::remove_file(&self.path);
                Ok(None)
            }
        }
    }
}

/// What the reader thread sends: batches of rows, or the error that stopped it.
type Batches = mpsc::Receiver<Result<Batch, CliError>>;

/// Reads the header and starts the reader thread; also returns the header and the file's size.
fn start_reader(opts: &ImportOptions) -> Result<(Layout, StringRecord, Batches, u64), CliError> {
    let file = File::open(&opts.csv)
        .map_err(|e| CliError::io("cannot read the CSV file", &opts.csv, e))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(BufReader::with_capacity(1 << 20, file));
    let header = reader
        .headers()
        .map_err(|source| CliError::Csv {
            path: opts.csv.clone(),
            line: 1,
            source,
        })?
        .clone();
    let layout =
        Layout::from_header(&header, &opts.mapping).map_err(|source| CliError::Header {
            path: opts.csv.clone(),
            source,
        })?;
    let (tx, rx) = mpsc::channel::<Result<Batch, CliError>>(16);
    let thread_layout = layout.clone();
    let mapping = opts.mapping.clone();
    let path = opts.csv.clone();
    let readmit = opts.readmit_erased;
    std::thread::spawn(move || read_rows(reader, thread_layout, mapping, path, readmit, tx));
    Ok((layout, header, rx, size))
}

fn read_rows(
    mut reader: csv::Reader<BufReader<File>>,
    layout: Layout,
    mapping: Mapping,
    path: PathBuf,
    readmit_erased: bool,
    tx: mpsc::Sender<Result<Batch, CliError>>,
) {
    let mut row = StringRecord::new();
    let mut items = Vec::with_capacity(READ_BATCH);
    let mut rows = RowReader::new(layout, mapping, readmit_erased);
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut row) {
            Ok(false) => break,
            Ok(true) => items.push(rows.item(line, &row)),
            // A row that is not valid UTF-8 is one bad row; the reader carries on after it.
            Err(e) if matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) => {
                items.push(not_utf8(&e, line));
            }
            Err(e) => {
                let line = e.position().map_or(line, |p| p.line());
                let _ = tx.blocking_send(Err(CliError::Csv {
                    path,
                    line,
                    source: e,
                }));
                return;
            }
        }
        if items.len() == READ_BATCH {
            let batch = Batch {
                items: std::mem::replace(&mut items, Vec::with_capacity(READ_BATCH)),
                bytes_read: reader.position().byte(),
                filled: None,
            };
            if tx.blocking_send(Ok(batch)).is_err() {
                return; // the importer stopped
            }
        }
    }
    let bytes_read = reader.position().byte();
    let _ = tx.blocking_send(Ok(Batch {
        items,
        bytes_read,
        filled: Some(rows.filled),
    }));
}

/// Turns rows into items on the reader thread, remembering what it has seen.
struct RowReader {
    layout: Layout,
    mapping: Mapping,
    readmit_erased: bool,
    /// Which columns held a value in some row.
    filled: Vec<bool>,
    /// Case id fingerprint → the line it was first sent from. A random key:
    /// collisions (about 1 in 10^7 for a million rows) cannot be aimed at.
    hasher: std::collections::hash_map::RandomState,
    seen: HashMap<u64, u64>,
    /// The 1-based column of `local_case_id`, for duplicate rejections.
    case_column: usize,
}

impl RowReader {
    fn new(layout: Layout, mapping: Mapping, readmit_erased: bool) -> RowReader {
        let case_column = layout
            .fields()
            .find(|(f, _)| *f == Field::LocalCaseId)
            .map_or(0, |(_, c)| c);
        RowReader {
            filled: vec![false; layout.width()],
            layout,
            mapping,
            readmit_erased,
            hasher: std::collections::hash_map::RandomState::new(),
            seen: HashMap::new(),
            case_column,
        }
    }

    /// One row read at `line` (or later, for a row that spans lines).
    fn item(&mut self, line: u64, row: &StringRecord) -> Item {
        let at = row.position().cloned().unwrap_or_else(csv::Position::new);
        let line = at.line().max(line);
        if row.len() == self.filled.len() {
            for (f, cell) in self.filled.iter_mut().zip(row.iter()) {
                *f |= !cell.trim().is_empty();
            }
        }
        let mut record = match self.layout.parse(row, &self.mapping) {
            Ok(record) => record,
            Err(problems) => {
                return Item::Bad {
                    line,
                    problems,
                    row: Some(row.clone()),
                };
            }
        };
        let id = self.hasher.hash_one(record.local_case_id.trim());
        if let Some(&first) = self.seen.get(&id) {
            return Item::Bad {
                line,
                problems: vec![Problem {
                    column: self.case_column,
                    field: "local_case_id".into(),
                    reason: format!(
                        "the same case id as line {first}, which was sent: \
                         each introduction needs its own case id"
                    ),
                }],
                row: Some(row.clone()),
            };
        }
        self.seen.insert(id, line);
        record.readmit_erased = self.readmit_erased;
        Item::Row { line, record, at }
    }
}

/// A row that is not valid UTF-8, as a rejection naming its line and column.
fn not_utf8(e: &csv::Error, line: u64) -> Item {
    let (line, column) = match e.kind() {
        csv::ErrorKind::Utf8 { pos, err } => {
            (pos.as_ref().map_or(line, |p| p.line()), err.field() + 1)
        }
        _ => (line, 0),
    };
    Item::Bad {
        line,
        problems: vec![Problem {
            column,
            field: "row".into(),
            reason: "is not valid UTF-8 (save the export as UTF-8)".into(),
        }],
        row: None,
    }
}

fn progress_bar(size: u64, show: bool) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(
        Some(size.max(1)),
        if show && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} [{bar:30}] {percent:>3}%  {msg}  ({elapsed})")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}

/// Imports the file into the agent behind `client` (at `url`, for messages).
pub async fn import(
    client: SiteAgentClient<Channel>,
    url: &str,
    opts: &ImportOptions,
) -> Result<ImportReport, CliError> {
    let started = Instant::now();
    let (layout, header, rx, size) = start_reader(opts)?;
    let pb = progress_bar(size, opts.progress);
    let mut items = Items {
        rx,
        pending: Vec::new().into_iter(),
        filled: None,
    };
    let mut out = Verdicts {
        layout: &layout,
        rejects: Rejects::new(opts.rejects.clone(), header.clone()),
        rows: Rows::new(&opts.csv),
    };
    let mut report = ImportReport::default();
    let mut input_done = false;
    let chunk_rows = opts.chunk_rows.max(1);
    while !input_done {
        let mut chunk: Vec<(u64, Record, csv::Position)> = Vec::new();
        let mut call: Option<Call> = None;
        while chunk.len() < chunk_rows {
            let Some(item) = items.next(&pb).await? else {
                input_done = true;
                break;
            };
            report.rows += 1;
            match item {
                Item::Bad {
                    line,
                    problems,
                    row,
                } => {
                    report.rejected += 1;
                    report.rejected_locally += 1;
                    out.rejects.write(line, &problems, row.as_ref())?;
                }
                Item::Row { line, record, at } => {
                    let call = call.get_or_insert_with(|| Call::open(&client));
                    let sent = call.tx.send(record.clone()).await.is_ok();
                    chunk.push((line, record, at));
                    // A closed stream means the call failed; its error is read below.
                    if !sent {
                        break;
                    }
                }
            }
            if report.rows % 1024 == 0 {
                pb.set_message(progress_message(&report, started));
            }
        }
        let Some(call) = call else { continue };
        let summary = call.finish(url).await?;
        if summary.received != chunk.len() as u64 {
            return Err(CliError::ShortChunk {
                received: summary.received,
                sent: chunk.len() as u64,
                first_line: chunk.first().map_or(0, |(l, _, _)| *l),
            });
        }
        report.accepted += summary.accepted;
        report.rejected += summary.rejected;
        if summary.rejections_truncated {
            upsert_for_verdicts(&client, url, &chunk, &mut out).await?;
        } else {
            for v in &summary.rejections {
                if let Some((line, _, at)) = chunk.get(v.index as usize) {
                    out.write(*line, at, &v.violations)?;
                }
            }
        }
        pb.set_message(progress_message(&report, started));
    }
    pb.finish_and_clear();
    report.warnings = empty_columns(&layout, &header, items.filled.as_deref(), report.rows);
    report.elapsed = started.elapsed();
    report.rejects = out.rejects.finish()?;
    Ok(report)
}

/// The reader thread's batches, one item at a time.
struct Items {
    rx: Batches,
    pending: std::vec::IntoIter<Item>,
    /// From the last batch: which columns held a value in some row.
    filled: Option<Vec<bool>>,
}

impl Items {
    /// The next item, or `None` at the end of the file; moves `pb` on by
    /// each batch the reader finishes.
    async fn next(&mut self, pb: &ProgressBar) -> Result<Option<Item>, CliError> {
        loop {
            if let Some(item) = self.pending.next() {
                return Ok(Some(item));
            }
            match self.rx.recv().await {
                Some(Ok(batch)) => {
                    pb.set_position(batch.bytes_read);
                    if batch.filled.is_some() {
                        self.filled = batch.filled;
                    }
                    self.pending = batch.items.into_iter();
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(None),
            }
        }
    }
}

/// The `StreamRecords` call of one chunk, opened on its first record.
struct Call {
    tx: mpsc::Sender<Record>,
    task: tokio::task::JoinHandle<
        Result<tonic::Response<lacnet_proto::site::v1::IngestSummary>, tonic::Status>,
    >,
}

impl Call {
    fn open(client: &SiteAgentClient<Channel>) -> Call {
        let (tx, rx) = mpsc::channel::<Record>(1024);
        let mut c = client.clone();
        let task = tokio::spawn(async move {
            c.stream_records(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
        });
        Call { tx, task }
    }

    /// Ends the stream and waits for the agent's summary of it.
    async fn finish(self, url: &str) -> Result<lacnet_proto::site::v1::IngestSummary, CliError> {
        drop(self.tx);
        Ok(self
            .task
            .await
            .map_err(|source| CliError::Task {
                what: "the import task failed",
                source,
            })?
            .map_err(|s| Service::Agent.status_error(url, s))?
            .into_inner())
    }
}

/// Where the agent's rejections go: the rejects file, with each rejected
/// row read again from the file.
struct Verdicts<'a> {
    layout: &'a Layout,
    rejects: Rejects,
    rows: Rows,
}

impl Verdicts<'_> {
    /// One row the agent rejected, with its field violations.
    fn write(
        &mut self,
        line: u64,
        at: &csv::Position,
        violations: &[lacnet_proto::common::v1::FieldViolation],
    ) -> Result<(), CliError> {
        let mut problems: Vec<Problem> = violations
            .iter()
            .map(|fv| Problem {
                column: self.layout.column_of(&fv.field).unwrap_or(0),
                field: fv.field.clone(),
                reason: fv.reason.clone(),
            })
            .collect();
        if problems.is_empty() {
            problems.push(Problem {
                column: 0,
                field: String::new(),
                reason: "rejected by the site agent".into(),
            });
        }
        let row = self.rows.fetch(at);
        self.rejects.write(line, &problems, row)
    }
}

/// Warnings for optional lacnet columns that are in the header but empty in
/// every row: a mapping that points at the wrong column looks just like this.
fn empty_columns(
    layout: &Layout,
    header: &StringRecord,
    filled: Option<&[bool]>,
    rows: u64,
) -> Vec<String> {
    let Some(filled) = filled else {
        return Vec::new();
    };
    if rows == 0 {
        return Vec::new();
    }
    let is_filled = |col: usize| filled.get(col - 1).copied().unwrap_or(true);
    // An age or a year of birth is enough: one of the pair may be empty throughout.
    let ages_filled = layout
        .fields()
        .any(|(f, col)| matches!(f, Field::AgeYears | Field::YearOfBirth) && is_filled(col));
    layout
        .fields()
        .filter(|(f, col)| {
            let required = COLUMNS.iter().any(|c| c.field == *f && c.required);
            let pair = matches!(f, Field::AgeYears | Field::YearOfBirth) && ages_filled;
            !required && !pair && !is_filled(*col)
        })
        .map(|(f, col)| {
            format!(
                "column {col} ({:?}, lacnet's {}) is empty in all {rows} rows: is the mapping or the export right?",
                echo(header.get(col - 1).unwrap_or_default()),
                f.name()
            )
        })
        .collect()
}

/// Reads single rows again by their place in the file: the agent's
/// rejections are few, so the importer need not hold every row it sent.
struct Rows {
    path: PathBuf,
    reader: Option<csv::Reader<BufReader<File>>>,
    row: StringRecord,
}

impl Rows {
    fn new(path: &Path) -> Rows {
        Rows {
            path: path.to_owned(),
            reader: None,
            row: StringRecord::new(),
        }
    }

    /// The row that starts at `at`, or `None` if it cannot be read again.
    fn fetch(&mut self, at: &csv::Position) -> Option<&StringRecord> {
        if self.reader.is_none() {
            let file = File::open(&self.path).ok()?;
            self.reader = Some(
                csv::ReaderBuilder::new()
                    .flexible(true)
                    .has_headers(false)
                    .from_reader(BufReader::new(file)),
            );
        }
        let reader = self.reader.as_mut()?;
        reader.seek(at.clone()).ok()?;
        reader
            .read_record(&mut self.row)
            .ok()
            .filter(|read| *read)
            .map(|_| &self.row)
    }
}

/// Sends a chunk again through `UpsertRecords` to learn every rejection in it.
async fn upsert_for_verdicts(
    client: &SiteAgentClient<Channel>,
    url: &str,
    chunk: &[(u64, Record, csv::Position)],
    out: &mut Verdicts<'_>,
) -> Result<(), CliError> {
    let mut c = client.clone();
    for part in chunk.chunks(UPSERT_BATCH) {
        let reply = c
            .upsert_records(UpsertRecordsRequest {
                records: part.iter().map(|(_, r, _)| r.clone()).collect(),
            })
            .await
            .map_err(|s| Service::Agent.status_error(url, s))?
            .into_inner();
        for v in reply.verdicts {
            if v.verdict == Verdict::Rejected as i32
                && let Some((line, _, at)) = part.get(v.index as usize)
            {
                out.write(*line, at, &v.violations)?;
            }
        }
    }
    Ok(())
}

fn progress_message(r: &ImportReport, started: Instant) -> String {
    let rate = r.rows as f64 / started.elapsed().as_secs_f64().max(1e-3);
    format!(
        "{} rows, {:.0} rows/s, {} accepted, {} rejected",
        r.rows, rate, r.accepted, r.rejected
    )
}
