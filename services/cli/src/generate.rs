//! `lacnet generate`: synthetic, realistic records for a site profile, as
//! lacnet CSV, from a fixed seed (the same seed always gives the same file).
//!
//! Each profile starts with the figures its site published for its first
//! months (the seeds): Thurrock worked with 256 people aged 18 to 98 in its
//! first 14 months, 31% older people and 27% with mental health needs; 19
//! found alternatives to day services and 18 took up volunteering. Derby
//! worked with about 50 people at Level 2 in its first year. After that
//! window each site carries on at its own steady rate. Shares and outcome
//! counts are assigned by quota within each cohort, so the published
//! figures come out exactly, while who gets what is shuffled.
//! The profiles differ on purpose (Derby's outcomes lean to avoided crises
//! and social care referrals, Swansea's to community connection and
//! volunteering), so a network comparison shows real differences.
//!
//! NHS numbers come from [`lacnet_core::validate::synthetic_nhs_number`] in the
//! `999` test range, which the NHS never issues to patients.

use std::io::Write;
use std::path::PathBuf;

use lacnet_core::Date;
use lacnet_core::validate::synthetic_nhs_number;
use lacnet_core::vocab::{IntroductionSource as Src, Outcome as Out, PrimaryNeed as Need};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::Outcome;
use crate::columns::header;
use crate::error::CliError;

/// `lacnet generate`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// Site profile: derby, thurrock or swansea (or its ONS code).
    #[arg(long)]
    pub site: String,
    /// Random seed: the same seed gives the same file.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Last introduction date (YYYY-MM-DD) [default: the end of the profile's published first window].
    #[arg(long)]
    pub until: Option<String>,
    /// Exactly this many rows over the same span (e.g. 1000000 for a load test).
    #[arg(long)]
    pub rows: Option<usize>,
    /// Output file [default: standard output].
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

/// `lacnet generate`: writes the plan's rows to `--out` or standard output,
/// with no date later than `today`.
pub fn command(args: GenerateArgs, today: Date) -> Result<Outcome, CliError> {
    let until = args
        .until
        .map(|u| {
            Date::parse(&u).map_err(|source| CliError::Date {
                what: "--until",
                value: u,
                source,
            })
        })
        .transpose()?;
    let plan = Plan {
        profile: profile(&args.site)?,
        seed: args.seed,
        until,
        rows: args.rows,
    };
    let Some(path) = args.out else {
        write_csv(&plan, std::io::stdout().lock(), today)?;
        return Ok(Outcome::Done);
    };
    let f = std::fs::File::create(&path).map_err(|e| CliError::io("cannot create", &path, e))?;
    let n = write_csv(&plan, std::io::BufWriter::new(f), today)?;
    eprintln!(
        "wrote {n} rows for {} to {}",
        plan.profile.name,
        path.display()
    );
    Ok(Outcome::Done)
}

/// A site's synthetic population.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Short name used on the command line, e.g. `thurrock`.
    pub key: &'static str,
    /// Display name.
    pub name: &'static str,
    /// ONS code.
    pub code: &'static str,
    /// First day of the programme (the first cohort starts here).
    pub start: (i32, u8, u8),
    /// Length of the first cohort, in months (the published evaluation window).
    pub first_months: u32,
    /// People introduced in the first cohort.
    pub first_people: usize,
    /// People introduced per month afterwards.
    pub later_per_month: usize,
    /// Share of people at Level 2.
    pub level2_share: f64,
    /// Youngest and oldest age.
    pub ages: (u32, u32),
    /// Primary needs, as shares summing to 1.
    pub needs: &'static [(Need, f64)],
    /// Introduction sources, as shares summing to 1.
    pub sources: &'static [(Src, f64)],
    /// Outcomes, as the share of people achieving each.
    pub outcomes: &'static [(Out, f64)],
    /// Share of records carrying an NHS number.
    pub nhs_share: f64,
    /// First case id number and its prefix.
    pub case_prefix: &'static str,
    /// First ward code number (E05 + 6 digits) and how many wards.
    pub wards: (u32, u32),
}

/// Thurrock, following the seeds' evaluation of its first 14 months.
pub const THURROCK: Profile = Profile {
    key: "thurrock",
    name: "Thurrock",
    code: "E06000034",
    start: (2013, 6, 1),
    first_months: 14,
    first_people: 256,
    later_per_month: 25,
    level2_share: 0.55,
    ages: (18, 98),
    needs: &[
        (Need::OlderPeopleFrailty, 0.31),
        (Need::MentalHealth, 0.27),
        (Need::LearningDisability, 0.10),
        (Need::PhysicalDisability, 0.09),
        (Need::SensoryImpairment, 0.03),
        (Need::MemoryCognition, 0.04),
        (Need::LongTermCondition, 0.06),
        (Need::Carer, 0.04),
        (Need::SocialIsolation, 0.05),
        (Need::Other, 0.01),
    ],
    sources: &[
        (Src::SelfReferral, 0.18),
        (Src::FamilyFriend, 0.10),
        (Src::GpHealth, 0.16),
        (Src::AdultSocialCare, 0.22),
        (Src::MentalHealthTeam, 0.12),
        (Src::Housing, 0.08),
        (Src::PoliceFire, 0.04),
        (Src::VoluntaryCommunity, 0.08),
        (Src::Other, 0.02),
    ],
    // 19 of 256 found alternatives to day services, 18 volunteering, "over 90" reconnected.
    outcomes: &[
        (Out::AlternativeToDayServices, 19.0 / 256.0),
        (Out::Volunteering, 18.0 / 256.0),
        (Out::CommunityConnection, 92.0 / 256.0),
        (Out::ReducedGpAeUse, 30.0 / 256.0),
        (Out::CrisisAvoided, 24.0 / 256.0),
        (Out::SocialCareReferralAvoided, 20.0 / 256.0),
        (Out::TenancySustained, 8.0 / 256.0),
        (Out::TrainingEmployment, 6.0 / 256.0),
        (Out::CarerSupported, 10.0 / 256.0),
    ],
    nhs_share: 0.85,
    case_prefix: "THK",
    wards: (2_221, 20),
};

/// Derby: about 50 people at Level 2 in its first year, with outcomes that
/// lean to avoided crises, GP and A&E use and social care referrals (the
/// kind behind its £800,000 first-year saving).
pub const DERBY: Profile = Profile {
    key: "derby",
    name: "Derby",
    code: "E06000015",
    start: (2012, 4, 1),
    first_months: 12,
    first_people: 130,
    later_per_month: 45,
    level2_share: 50.0 / 130.0,
    ages: (18, 96),
    needs: &[
        (Need::OlderPeopleFrailty, 0.22),
        (Need::MentalHealth, 0.18),
        (Need::LearningDisability, 0.20),
        (Need::PhysicalDisability, 0.12),
        (Need::SensoryImpairment, 0.04),
        (Need::MemoryCognition, 0.06),
        (Need::LongTermCondition, 0.07),
        (Need::Carer, 0.05),
        (Need::SocialIsolation, 0.05),
        (Need::Other, 0.01),
    ],
    sources: &[
        (Src::SelfReferral, 0.12),
        (Src::FamilyFriend, 0.08),
        (Src::GpHealth, 0.26),
        (Src::AdultSocialCare, 0.24),
        (Src::MentalHealthTeam, 0.08),
        (Src::Housing, 0.10),
        (Src::PoliceFire, 0.03),
        (Src::VoluntaryCommunity, 0.07),
        (Src::Other, 0.02),
    ],
    outcomes: &[
        (Out::CrisisAvoided, 0.22),
        (Out::CommunityConnection, 0.40),
        (Out::Volunteering, 0.06),
        (Out::AlternativeToDayServices, 0.12),
        (Out::ReducedGpAeUse, 0.30),
        (Out::TenancySustained, 0.05),
        (Out::SocialCareReferralAvoided, 0.25),
        (Out::TrainingEmployment, 0.04),
        (Out::CarerSupported, 0.06),
    ],
    nhs_share: 0.9,
    case_prefix: "DBY",
    wards: (1_820, 17),
};

/// Swansea: started later, an older population, and outcomes that lean to
/// community connection and volunteering rather than service substitution.
pub const SWANSEA: Profile = Profile {
    key: "swansea",
    name: "Swansea",
    code: "W06000011",
    start: (2015, 1, 1),
    first_months: 12,
    first_people: 200,
    later_per_month: 30,
    level2_share: 0.40,
    ages: (18, 99),
    needs: &[
        (Need::OlderPeopleFrailty, 0.40),
        (Need::MentalHealth, 0.15),
        (Need::LearningDisability, 0.06),
        (Need::PhysicalDisability, 0.08),
        (Need::SensoryImpairment, 0.05),
        (Need::MemoryCognition, 0.08),
        (Need::LongTermCondition, 0.06),
        (Need::Carer, 0.04),
        (Need::SocialIsolation, 0.07),
        (Need::Other, 0.01),
    ],
    sources: &[
        (Src::SelfReferral, 0.25),
        (Src::FamilyFriend, 0.15),
        (Src::GpHealth, 0.12),
        (Src::AdultSocialCare, 0.12),
        (Src::MentalHealthTeam, 0.06),
        (Src::Housing, 0.08),
        (Src::PoliceFire, 0.04),
        (Src::VoluntaryCommunity, 0.16),
        (Src::Other, 0.02),
    ],
    outcomes: &[
        (Out::CrisisAvoided, 0.08),
        (Out::CommunityConnection, 0.50),
        (Out::Volunteering, 0.15),
        (Out::AlternativeToDayServices, 0.03),
        (Out::ReducedGpAeUse, 0.10),
        (Out::TenancySustained, 0.10),
        (Out::SocialCareReferralAvoided, 0.08),
        (Out::TrainingEmployment, 0.09),
        (Out::CarerSupported, 0.04),
    ],
    nhs_share: 0.8,
    case_prefix: "SWA",
    wards: (1_000, 36),
};

/// Every profile `generate` knows.
pub const PROFILES: &[&Profile] = &[&DERBY, &THURROCK, &SWANSEA];

/// Finds a profile by key, name or ONS code.
pub fn profile(name: &str) -> Result<&'static Profile, CliError> {
    let want = name.to_ascii_lowercase();
    PROFILES
        .iter()
        .copied()
        .find(|p| p.key == want || p.code.eq_ignore_ascii_case(name))
        .ok_or_else(|| CliError::UnknownProfile {
            name: name.to_owned(),
            known: PROFILES
                .iter()
                .map(|p| p.key)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

impl Profile {
    /// First day of the programme.
    pub fn start_date(&self) -> Date {
        let (y, m, d) = self.start;
        Date::new(y, m, d).unwrap_or_else(|_| Date::from_days_since_epoch(0))
    }

    /// The day after the first cohort's window.
    pub fn first_window_end(&self) -> Date {
        add_months(self.start_date(), self.first_months)
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The site.
    pub profile: &'static Profile,
    /// Random seed.
    pub seed: u64,
    /// Last day introductions may fall on; `None` = the end of the first window.
    pub until: Option<Date>,
    /// Exactly this many rows over the same span, instead of the profile's rates.
    pub rows: Option<usize>,
}

/// A month-aligned date `months` after `d` (day 1 stays day 1).
fn add_months(d: Date, months: u32) -> Date {
    let total = d.year() * 12 + i32::from(d.month()) - 1 + months as i32;
    Date::new(total.div_euclid(12), (total.rem_euclid(12) + 1) as u8, 1).unwrap_or(d)
}

/// One cohort: people introduced between `from` (inclusive) and `to` (exclusive).
struct Cohort {
    from: Date,
    to: Date,
    people: usize,
    /// Share of records that re-introduce someone seen before.
    repeat_share: f64,
}

fn cohorts(plan: &Plan) -> Vec<Cohort> {
    let p = plan.profile;
    let start = p.start_date();
    let first_end = p.first_window_end();
    let until = plan
        .until
        .map(|u| Date::from_days_since_epoch(u.days_since_epoch() + 1))
        .unwrap_or(first_end);
    if let Some(rows) = plan.rows {
        return vec![Cohort {
            from: start,
            to: until.max(Date::from_days_since_epoch(start.days_since_epoch() + 1)),
            people: rows,
            repeat_share: 0.0,
        }];
    }
    let mut out = vec![Cohort {
        from: start,
        to: first_end.min(until),
        people: if until < first_end {
            // A shorter window keeps the first cohort's monthly rate.
            let span = (until.days_since_epoch() - start.days_since_epoch()).max(0) as f64;
            let full = (first_end.days_since_epoch() - start.days_since_epoch()) as f64;
            (p.first_people as f64 * span / full).round() as usize
        } else {
            p.first_people
        },
        repeat_share: 0.0,
    }];
    // Later years, one cohort per 12 months so each year's shares come out exactly.
    let mut from = first_end;
    while from < until {
        let to = add_months(from, 12).min(until);
        let days = (to.days_since_epoch() - from.days_since_epoch()) as f64;
        let people = (p.later_per_month as f64 * days / 30.44).round() as usize;
        out.push(Cohort {
            from,
            to,
            people,
            repeat_share: 0.06,
        });
        from = to;
    }
    out
}

/// Largest-remainder quotas of `n` for `shares`.
fn quotas(n: usize, shares: &[f64]) -> Vec<usize> {
    let total: f64 = shares.iter().sum();
    let exact: Vec<f64> = shares.iter().map(|s| n as f64 * s / total).collect();
    let mut q: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut left = n.saturating_sub(q.iter().sum());
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by(|&a, &b| {
        let ra = exact[a] - exact[a].floor();
        let rb = exact[b] - exact[b].floor();
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    for i in order {
        if left == 0 {
            break;
        }
        q[i] += 1;
        left -= 1;
    }
    q
}

/// `n` labels in the given shares, shuffled.
fn labels<T: Copy>(rng: &mut StdRng, n: usize, items: &[(T, f64)]) -> Vec<T> {
    let shares: Vec<f64> = items.iter().map(|(_, s)| *s).collect();
    let mut out = Vec::with_capacity(n);
    for ((item, _), k) in items.iter().zip(quotas(n, &shares)) {
        out.extend(std::iter::repeat_n(*item, k));
    }
    out.shuffle(rng);
    out
}

/// An age for a need: older people and memory needs are 65+, carers span the ages.
fn age_for(rng: &mut StdRng, need: Need, (lo, hi): (u32, u32)) -> u32 {
    let (a, b) = match need {
        Need::OlderPeopleFrailty | Need::MemoryCognition => (65, hi),
        Need::Carer => (30, 85),
        Need::MentalHealth | Need::LearningDisability => (lo, 64),
        _ => (lo, 80),
    };
    rng.random_range(a.max(lo)..=b.min(hi))
}

/// One generated row.
struct Row {
    case: String,
    nhs: String,
    introduced: Date,
    closed: Option<Date>,
    level: u8,
    age: u32,
    need: Need,
    source: Src,
    outcomes: Vec<Out>,
    /// The day the outcomes were achieved.
    achieved: Date,
    ward: String,
}

/// Writes the plan's rows as lacnet CSV to `out`; returns how many rows.
pub fn write_csv(plan: &Plan, out: impl Write, today: Date) -> Result<u64, CliError> {
    let p = plan.profile;
    let mut rng = StdRng::seed_from_u64(plan.seed ^ fnv(p.code));
    let mut w = csv::Writer::from_writer(out);
    w.write_record(header())?;
    // Site-specific starting points keep two sites' synthetic people apart.
    let mut next_prefix: u64 = 990_000_000 + fnv(p.code) % 9_000_000;
    let mut known_nhs: Vec<String> = Vec::new();
    let mut case_no: u64 = 0;
    let mut rows: u64 = 0;
    for (ci, c) in cohorts(plan).into_iter().enumerate() {
        let n = c.people;
        if n == 0 {
            continue;
        }
        let needs = labels(&mut rng, n, p.needs);
        let sources = labels(&mut rng, n, p.sources);
        let level2 = (n as f64 * p.level2_share).round() as usize;
        let levels = labels(
            &mut rng,
            n,
            &[(2u8, level2 as f64), (1u8, (n - level2.min(n)) as f64)],
        );
        let mut outcomes: Vec<Vec<Out>> = vec![Vec::new(); n];
        for &(o, share) in p.outcomes {
            let k = ((n as f64 * share).round() as usize).min(n);
            for i in rand::seq::index::sample(&mut rng, n, k) {
                outcomes[i].push(o);
            }
        }
        let days = (c.to.days_since_epoch() - c.from.days_since_epoch()).max(1);
        let mut ages: Vec<u32> = (0..n)
            .map(|i| age_for(&mut rng, needs[i], p.ages))
            .collect();
        if ci == 0 {
            // The first cohort spans the profile's whole age range, as the seeds report.
            if let Some(i) = needs.iter().position(|n| *n == Need::MentalHealth) {
                ages[i] = p.ages.0;
            }
            if let Some(i) = needs.iter().position(|n| *n == Need::OlderPeopleFrailty) {
                ages[i] = p.ages.1;
            }
        }
        for i in 0..n {
            case_no += 1;
            let introduced =
                Date::from_days_since_epoch(c.from.days_since_epoch() + rng.random_range(0..days));
            let repeat = !known_nhs.is_empty() && rng.random_bool(c.repeat_share);
            let nhs = if repeat {
                known_nhs[rng.random_range(0..known_nhs.len())].clone()
            } else if rng.random_bool(p.nhs_share) {
                let n = synthetic_nhs_number(next_prefix);
                next_prefix = n[..9].parse::<u64>().unwrap_or(next_prefix) + 1;
                known_nhs.push(n.clone());
                n
            } else {
                String::new()
            };
            let stay = if levels[i] == 2 {
                rng.random_range(90..540)
            } else {
                rng.random_range(0..42)
            };
            let closed = Date::from_days_since_epoch(introduced.days_since_epoch() + stay);
            // Each outcome is dated a third of the way through the stay, and
            // within the cohort's window (the seeds count outcomes there),
            // the closure and today. No random draw: the rest of the file
            // stays as it was before outcomes had dates.
            let achieved = Date::from_days_since_epoch(
                (introduced.days_since_epoch() + stay / 3)
                    .min(c.to.days_since_epoch() - 1)
                    .min(today.days_since_epoch())
                    .max(introduced.days_since_epoch()),
            );
            let ward_no = p.wards.0 + rng.random_range(0..p.wards.1.max(1));
            let row = Row {
                case: format!("{}-{case_no:06}", p.case_prefix),
                nhs,
                introduced,
                // Still open if it would close after today.
                closed: (closed <= today).then_some(closed),
                level: levels[i],
                age: ages[i],
                need: needs[i],
                source: sources[i],
                outcomes: std::mem::take(&mut outcomes[i]),
                achieved: achieved.min(closed),
                ward: format!("E05{ward_no:06}"),
            };
            write_row(&mut w, &row)?;
            rows += 1;
        }
    }
    w.flush().map_err(csv::Error::from)?;
    Ok(rows)
}

fn write_row<W: Write>(w: &mut csv::Writer<W>, r: &Row) -> Result<(), csv::Error> {
    let outcomes: Vec<String> = r
        .outcomes
        .iter()
        .map(|o| format!("{}@{}", o.id(), r.achieved))
        .collect();
    // Some records carry a year of birth instead of an age, as some case systems
    // do; the agent works the age out as the introduction year minus it.
    let (age, yob) = if r.case.ends_with('5') {
        (
            String::new(),
            (r.introduced.year() - r.age as i32).to_string(),
        )
    } else {
        (r.age.to_string(), String::new())
    };
    w.write_record([
        r.case.as_str(),
        r.nhs.as_str(),
        &r.introduced.to_string(),
        &r.closed.map(|d| d.to_string()).unwrap_or_default(),
        &r.level.to_string(),
        &age,
        &yob,
        r.need.id(),
        r.source.id(),
        &outcomes.join(";"),
        r.ward.as_str(),
        // Case systems that record contacts fill this; the generator leaves
        // it empty, so open cases go quiet 12 months after introduction.
        "",
    ])
}

/// FNV-1a: a stable per-site salt for the seed (std's hasher may change between releases).
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_add_up_and_follow_the_shares() {
        assert_eq!(quotas(256, &[0.31, 0.27, 0.42]), vec![79, 69, 108]);
        assert_eq!(quotas(10, &[1.0, 1.0, 1.0]).iter().sum::<usize>(), 10);
    }

    #[test]
    fn the_same_seed_gives_the_same_file() {
        let plan = Plan {
            profile: &DERBY,
            seed: 7,
            until: None,
            rows: None,
        };
        let today = Date::new(2025, 1, 1).unwrap();
        let mut a = Vec::new();
        let mut b = Vec::new();
        write_csv(&plan, &mut a, today).unwrap();
        write_csv(&plan, &mut b, today).unwrap();
        assert_eq!(a, b);
        let rows = a.iter().filter(|c| **c == b'\n').count() - 1;
        assert_eq!(rows, 130);
    }
}
