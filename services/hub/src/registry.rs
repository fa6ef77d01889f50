//! The site registry: which councils may submit, their adult populations (the
//! denominators of every rate), the network disclosure policy, and the unit
//! costs behind "estimated cost avoided".
//!
//! Read once at startup from a TOML file (see `services/hub/registry.toml`) and
//! validated strictly, so a typo fails the start rather than a report.
//! Each site publishes one series: its `granularity` (month or quarter) is
//! fixed here, and [`Site::accepts`] refuses any other period kind but the
//! fixed spans (financial year, programme to date), so an attacker never
//! sees a quarter beside its own three months. Changing it is an operation
//! (README, "Changing a site's series"): at start-up the hub withdraws the
//! site's releases of the old kind ([`crate::Hub::open`]).
//!
//! ONS codes change (Cumbria was split in 2023), so a site can carry a
//! `valid_from` and a `valid_until` date: periods ending before the first or
//! starting after the second are refused, and comparisons leave the site out
//! of them, so no report divides by a council that did not exist.
//!
//! Populations change too: a site lists its adult population by year
//! (`[[sites.populations]]`, the ONS mid-year estimates), and a period's
//! rates divide by the estimate for the period's year, or the latest earlier
//! one when that year is not published yet, never a later year's. A site
//! without a yearly list uses its one `adult_population` for every year.
//!
//! Every outcome has a unit cost with a cited source, or is excluded from
//! cost avoided with a reason (`[[unit_cost_exclusions]]`) that reports show;
//! a registry that prices some outcomes must account for all of them.

use std::collections::HashMap;
use std::path::Path;

use lacnet_core::Date;
use lacnet_core::disclosure::DisclosurePolicy;
use lacnet_core::metrics::{self, catalogue};
use lacnet_core::period::{Granularity, Period};
use lacnet_core::vocab::Outcome;
use serde::Deserialize;

use crate::HubError;

/// One council taking part in the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// ONS area code, e.g. `E06000034`.
    pub code: String,
    /// Name for reports.
    pub name: String,
    /// Adult (18+) residents, the denominator for rates per 10,000 when no
    /// yearly estimates are listed (and shown as the site's current figure).
    pub adult_population: u64,
    /// Adult population by year (`(year, adults)`, ascending), if listed.
    pub populations: Vec<(i32, u64)>,
    /// The mid-year the one `adult_population` estimates, when the registry
    /// says (`population_year`): reports show it beside every rate.
    pub population_year: Option<i32>,
    /// The registry marks `adult_population` as approximate (rounded, or
    /// not yet the published ONS figure): reports say so beside every rate.
    pub population_approximate: bool,
    /// The first day the code was in use, if it was created during the network's life.
    pub valid_from: Option<Date>,
    /// The last day the code was in use, if it has been retired.
    pub valid_until: Option<Date>,
    /// The one period kind the site publishes (its series).
    pub granularity: Granularity,
}

impl Site {
    /// Whether the site may publish `period`: periods of its series, and the
    /// fixed spans every site publishes beside it.
    pub fn accepts(&self, period: Period) -> bool {
        period.granularity() == self.granularity || period.granularity().is_span()
    }
}

impl Site {
    /// A site with one population for every year and no validity dates.
    pub fn new(code: &str, name: &str, adult_population: u64) -> Site {
        Site {
            code: code.to_owned(),
            name: name.to_owned(),
            adult_population,
            populations: Vec::new(),
            population_year: None,
            population_approximate: false,
            valid_from: None,
            valid_until: None,
            granularity: Granularity::Quarter,
        }
    }

    /// Whether the code was in use at some time during `period`.
    pub fn in_use_during(&self, period: Period) -> bool {
        let start = match period.granularity() {
            // The programme to date starts at each site's programme start,
            // which the hub does not know: its end decides.
            Granularity::ProgrammeToDate => period.end(),
            _ => period.start(),
        };
        self.valid_from.is_none_or(|f| period.end() >= f)
            && self.valid_until.is_none_or(|u| start <= u)
    }

    /// The adult population that `period`'s rates divide by, and the year of
    /// the estimate (0 for the site's one figure when the registry gives it no
    /// `population_year`): the estimate for
    /// the period's year, else the latest earlier one. `None` when the site
    /// did not exist during the period, or lists only later years.
    pub fn population_for(&self, period: Period) -> Option<(u64, i32)> {
        if !self.in_use_during(period) {
            return None;
        }
        if self.populations.is_empty() {
            return Some((self.adult_population, self.population_year.unwrap_or(0)));
        }
        let year = period.population_year();
        self.populations
            .iter()
            .rev()
            .find(|(y, _)| *y <= year)
            .map(|(y, n)| (*n, *y))
    }
}

/// An agreed cost attributed to each person with an outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitCost {
    /// The outcome it applies to.
    pub outcome: Outcome,
    /// Pence per person with the outcome.
    pub pence: u64,
    /// Where the figure comes from (shown next to every estimate).
    pub source: String,
}

/// An outcome deliberately left out of cost avoided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostExclusion {
    /// The outcome.
    pub outcome: Outcome,
    /// Why it is not costed (shown in reports).
    pub reason: String,
}

/// The validated registry.
#[derive(Debug, Clone)]
pub struct Registry {
    sites: Vec<Site>,
    by_code: HashMap<String, usize>,
    policy: DisclosurePolicy,
    /// Unit cost by catalogue metric index.
    unit_costs: HashMap<usize, UnitCost>,
    /// Outcomes excluded from costing, with the reason.
    exclusions: HashMap<Outcome, CostExclusion>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    policy: RawPolicy,
    #[serde(default)]
    sites: Vec<RawSite>,
    #[serde(default)]
    unit_costs: Vec<RawUnitCost>,
    #[serde(default)]
    unit_cost_exclusions: Vec<RawExclusion>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExclusion {
    outcome: String,
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPopulation {
    year: i32,
    adults: u64,
    /// Where the estimate comes from; documentation only.
    #[serde(default)]
    #[allow(dead_code)]
    source: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    threshold: u32,
    rounding_base: u32,
    secondary_suppression: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    code: String,
    name: String,
    adult_population: u64,
    valid_until: Option<String>,
    granularity: String,
    valid_from: Option<String>,
    #[serde(default)]
    populations: Vec<RawPopulation>,
    #[serde(default)]
    population_year: Option<i32>,
    #[serde(default)]
    population_approximate: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUnitCost {
    outcome: String,
    pence: u64,
    source: String,
    /// What one unit is (e.g. "one GP consultation"); documentation only.
    #[serde(default)]
    #[allow(dead_code)]
    basis: Option<String>,
}

/// ONS area code: a country letter then eight digits.
pub fn is_ons_code(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 9
        && matches!(b[0], b'E' | b'W' | b'S' | b'N')
        && b[1..].iter().all(u8::is_ascii_digit)
}

/// A site's population estimates by year, checked and sorted.
fn populations(at: &str, raw: &[RawPopulation]) -> Result<Vec<(i32, u64)>, String> {
    let mut populations = Vec::with_capacity(raw.len());
    for (j, p) in raw.iter().enumerate() {
        let at = format!("{at}.populations[{j}]");
        if !(Period::MIN_YEAR..=Period::MAX_YEAR).contains(&p.year) {
            return Err(format!(
                "{at}.year {} must be between {} and {}",
                p.year,
                Period::MIN_YEAR,
                Period::MAX_YEAR
            ));
        }
        if p.adults == 0 {
            return Err(format!("{at}.adults must be above 0"));
        }
        if populations.iter().any(|(y, _)| *y == p.year) {
            return Err(format!("{at}: a second estimate for {}", p.year));
        }
        populations.push((p.year, p.adults));
    }
    populations.sort_unstable();
    Ok(populations)
}

/// One site of the registry, checked; `at` names it in errors.
fn site(at: &str, s: RawSite) -> Result<Site, String> {
    if !is_ons_code(&s.code) {
        return Err(format!(
            "{at}.code {:?} is not an ONS code (a letter E, W, S or N then 8 digits)",
            s.code
        ));
    }
    if s.name.trim().is_empty() {
        return Err(format!("{at}.name is empty"));
    }
    if s.adult_population == 0 {
        return Err(format!("{at}.adult_population must be above 0"));
    }
    let valid_until = s
        .valid_until
        .as_deref()
        .map(Date::parse)
        .transpose()
        .map_err(|e| format!("{at}.valid_until: {e}"))?;
    let granularity = s
        .granularity
        .parse::<Granularity>()
        .ok()
        .filter(|g| !g.is_span())
        .ok_or_else(|| {
            format!(
                "{at}.granularity {:?} must be \"month\" or \"quarter\" (the site's one series)",
                s.granularity
            )
        })?;
    let valid_from = s
        .valid_from
        .as_deref()
        .map(Date::parse)
        .transpose()
        .map_err(|e| format!("{at}.valid_from: {e}"))?;
    if let (Some(f), Some(u)) = (valid_from, valid_until)
        && u < f
    {
        return Err(format!("{at}.valid_until {u} is before valid_from {f}"));
    }
    let populations = populations(at, &s.populations)?;
    if let Some(y) = s.population_year
        && !(Period::MIN_YEAR..=Period::MAX_YEAR).contains(&y)
    {
        return Err(format!(
            "{at}.population_year {y} must be between {} and {}",
            Period::MIN_YEAR,
            Period::MAX_YEAR
        ));
    }
    Ok(Site {
        code: s.code,
        name: s.name,
        adult_population: s.adult_population,
        populations,
        population_year: s.population_year,
        population_approximate: s.population_approximate,
        valid_from,
        valid_until,
        granularity,
    })
}

impl Registry {
    /// Reads and validates a registry file.
    pub fn load(path: &Path) -> Result<Registry, HubError> {
        let text = std::fs::read_to_string(path).map_err(|e| HubError::Registry {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Registry::parse(&text).map_err(|reason| HubError::Registry {
            path: path.to_owned(),
            reason,
        })
    }

    /// Parses and validates registry TOML; the error says what is wrong and where.
    pub fn parse(text: &str) -> Result<Registry, String> {
        let raw: RawRegistry = toml::from_str(text).map_err(|e| e.to_string())?;
        let policy = DisclosurePolicy {
            threshold: raw.policy.threshold,
            rounding_base: raw.policy.rounding_base,
            secondary_suppression: raw.policy.secondary_suppression,
        };
        policy.validate().map_err(|e| format!("[policy]: {e}"))?;
        let sites = raw
            .sites
            .into_iter()
            .enumerate()
            .map(|(i, s)| site(&format!("sites[{i}]"), s))
            .collect::<Result<Vec<_>, _>>()?;
        let mut reg = Registry::new(sites, policy, Vec::new())?;
        for (i, u) in raw.unit_costs.into_iter().enumerate() {
            reg.add_unit_cost(&format!("unit_costs[{i}]"), u)?;
        }
        for (i, x) in raw.unit_cost_exclusions.into_iter().enumerate() {
            reg.add_exclusion(&format!("unit_cost_exclusions[{i}]"), x)?;
        }
        reg.check_every_outcome_costed()?;
        Ok(reg)
    }

    /// Adds the unit cost at `at`, refusing a second one for an outcome.
    fn add_unit_cost(&mut self, at: &str, u: RawUnitCost) -> Result<(), String> {
        let outcome = Outcome::from_id(&u.outcome)
            .ok_or_else(|| format!("{at}.outcome {:?} is not an outcome id", u.outcome))?;
        if u.source.trim().is_empty() {
            return Err(format!(
                "{at}.source is empty: every unit cost needs a source"
            ));
        }
        let cost = UnitCost {
            outcome,
            pence: u.pence,
            source: u.source,
        };
        if self
            .unit_costs
            .insert(metrics::outcome(outcome), cost)
            .is_some()
        {
            return Err(format!("{at}: a second unit cost for {}", outcome.id()));
        }
        Ok(())
    }

    /// Adds the exclusion at `at`: an outcome not costed, with the reason.
    fn add_exclusion(&mut self, at: &str, x: RawExclusion) -> Result<(), String> {
        let outcome = Outcome::from_id(&x.outcome)
            .ok_or_else(|| format!("{at}.outcome {:?} is not an outcome id", x.outcome))?;
        if x.reason.trim().is_empty() {
            return Err(format!(
                "{at}.reason is empty: say why {} is not costed",
                outcome.id()
            ));
        }
        if self.unit_costs.contains_key(&metrics::outcome(outcome)) {
            return Err(format!(
                "{at}: {} has a unit cost and cannot also be excluded",
                outcome.id()
            ));
        }
        let ex = CostExclusion {
            outcome,
            reason: x.reason,
        };
        if self.exclusions.insert(outcome, ex).is_some() {
            return Err(format!("{at}: {} is excluded twice", outcome.id()));
        }
        Ok(())
    }

    /// Cost avoided must not silently leave an outcome out: once the
    /// network prices outcomes, each one is priced or excluded with a reason.
    fn check_every_outcome_costed(&self) -> Result<(), String> {
        if self.unit_costs.is_empty() && self.exclusions.is_empty() {
            return Ok(());
        }
        let missing: Vec<&str> = Outcome::ALL
            .iter()
            .filter(|o| {
                !self.unit_costs.contains_key(&metrics::outcome(**o))
                    && !self.exclusions.contains_key(o)
            })
            .map(|o| o.id())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(format!(
            "unit_costs: {} has neither a unit cost nor an entry in [[unit_cost_exclusions]] with a reason",
            missing.join(", ")
        ))
    }

    /// Builds a registry from parts (used by tests and benchmarks); checks codes are unique.
    pub fn new(
        sites: Vec<Site>,
        policy: DisclosurePolicy,
        unit_costs: Vec<UnitCost>,
    ) -> Result<Registry, String> {
        policy.validate().map_err(|e| format!("policy: {e}"))?;
        let mut by_code = HashMap::with_capacity(sites.len());
        for (i, s) in sites.iter().enumerate() {
            if !is_ons_code(&s.code) {
                return Err(format!("site code {:?} is not an ONS code", s.code));
            }
            if s.adult_population == 0 {
                return Err(format!("site {}: adult_population must be above 0", s.code));
            }
            if by_code.insert(s.code.clone(), i).is_some() {
                return Err(format!("site code {} is listed twice", s.code));
            }
        }
        let mut costs = HashMap::new();
        for u in unit_costs {
            if costs.insert(metrics::outcome(u.outcome), u).is_some() {
                return Err("an outcome has two unit costs".into());
            }
        }
        Ok(Registry {
            sites,
            by_code,
            policy,
            unit_costs: costs,
            exclusions: HashMap::new(),
        })
    }

    /// Every site, in registry order.
    pub fn sites(&self) -> &[Site] {
        &self.sites
    }

    /// The site with this code.
    pub fn site(&self, code: &str) -> Option<&Site> {
        self.by_code.get(code).map(|&i| &self.sites[i])
    }

    /// The network disclosure policy every submission must meet.
    pub fn policy(&self) -> &DisclosurePolicy {
        &self.policy
    }

    /// The unit cost attached to a catalogue metric, if any: the cost of its
    /// outcome, for the overall and the per-level outcome metrics alike.
    pub fn unit_cost(&self, metric: usize) -> Option<&UnitCost> {
        let outcome = catalogue().metrics().get(metric)?.outcome?;
        self.unit_costs.get(&metrics::outcome(outcome))
    }

    /// Why an outcome metric is left out of cost avoided, if it is.
    pub fn cost_exclusion(&self, metric: usize) -> Option<&CostExclusion> {
        let outcome = catalogue().metrics().get(metric)?.outcome?;
        self.exclusions.get(&outcome)
    }

    /// `(metric index, unit cost)` for every outcome with an agreed cost, in catalogue order.
    pub fn unit_costs(&self) -> Vec<(usize, &UnitCost)> {
        let mut v: Vec<_> = (0..catalogue().metrics().len())
            .filter_map(|i| self.unit_costs.get(&i).map(|u| (i, u)))
            .collect();
        v.sort_by_key(|(i, _)| *i);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = include_str!("../registry.toml");

    #[test]
    fn shipped_registry_is_valid_and_realistic() {
        let reg = Registry::parse(SHIPPED).unwrap();
        assert_eq!(reg.policy(), &DisclosurePolicy::default());
        for code in [
            "E06000015",
            "E06000034",
            "W06000011",
            "E06000046",
            "E10000029",
            "E10000007",
            "E10000024",
            "E10000018",
            "E06000014",
            "E10000006",
        ] {
            assert!(reg.site(code).is_some(), "{code}");
        }
        let thurrock = reg.site("E06000034").unwrap();
        assert_eq!(thurrock.name, "Thurrock");
        assert!((130_000..140_000).contains(&thurrock.adult_population));
        assert_eq!(
            reg.site("E10000006").unwrap().valid_until,
            Some(Date::parse("2023-03-31").unwrap())
        );
        assert!(
            reg.sites()
                .iter()
                .all(|s| s.granularity == Granularity::Quarter),
            "every shipped site publishes quarters"
        );
        let q1 = Period::parse("2024-Q1").unwrap();
        assert!(thurrock.accepts(q1));
        assert!(!thurrock.accepts(Period::parse("2024-01").unwrap()));
        let day = metrics::outcome(Outcome::AlternativeToDayServices);
        assert!(reg.unit_cost(day).unwrap().source.contains("PSSRU"));
        // Every outcome is priced with a source, or excluded with a reason.
        for o in Outcome::ALL {
            let m = metrics::outcome(*o);
            let priced = reg.unit_cost(m).is_some_and(|u| !u.source.is_empty());
            let excluded = reg.cost_exclusion(m).is_some_and(|x| !x.reason.is_empty());
            assert!(priced != excluded, "{}", o.id());
        }
        let crisis = metrics::outcome(Outcome::CrisisAvoided);
        assert!(reg.cost_exclusion(crisis).is_some());
        // Level 2 outcomes carry the same cost.
        let l2 = metrics::level_outcome(
            lacnet_core::vocab::SupportLevel::Level2,
            Outcome::AlternativeToDayServices,
        );
        assert_eq!(reg.unit_cost(l2), reg.unit_cost(day));
        // Cumbria until March 2023, its successors from April 2023.
        let p = |s: &str| Period::parse(s).unwrap();
        let cumbria = reg.site("E10000006").unwrap();
        let cumberland = reg.site("E06000063").unwrap();
        assert!(cumbria.in_use_during(p("2023-Q1")) && !cumbria.in_use_during(p("2023-Q2")));
        assert!(!cumberland.in_use_during(p("2023-Q1")) && cumberland.in_use_during(p("2023-Q2")));
        assert!(cumbria.in_use_during(p("FY2022")) && !cumbria.in_use_during(p("FY2023")));
        assert!(cumberland.population_for(p("2023-Q1")).is_none());
        // No yearly list yet: the one figure, with the year it approximates,
        // marked approximate so reports can say so.
        assert_eq!(thurrock.population_for(p("FY2015")), Some((134_700, 2022)));
        assert!(thurrock.population_approximate);
    }

    #[test]
    fn populations_follow_the_year_and_never_a_later_one() {
        let reg = with(
            "[[sites]]\ncode = \"E06000034\"\nname = \"T\"\ngranularity = \"quarter\"\nadult_population = 99\n\
             populations = [{ year = 2021, adults = 130000 }, { year = 2023, adults = 134000 }]\n\
             [[sites]]\ncode = \"E06000063\"\nname = \"C\"\ngranularity = \"quarter\"\nadult_population = 220000\nvalid_from = \"2023-04-01\"\n",
        )
        .unwrap();
        let t = reg.site("E06000034").unwrap();
        let p = |s: &str| Period::parse(s).unwrap();
        assert_eq!(t.population_for(p("2021-Q3")), Some((130_000, 2021)));
        assert_eq!(t.population_for(p("2022-Q3")), Some((130_000, 2021)));
        assert_eq!(t.population_for(p("FY2023")), Some((134_000, 2023)));
        assert_eq!(t.population_for(p("2026-01")), Some((134_000, 2023)));
        assert_eq!(t.population_for(p("2020-Q4")), None, "no earlier estimate");
        let c = reg.site("E06000063").unwrap();
        assert_eq!(c.population_for(p("2023-Q2")), Some((220_000, 0)));
        assert_eq!(c.population_for(p("FY2022")), None);
        assert!(c.in_use_during(p("PTD2023-04")) && !c.in_use_during(p("PTD2023-03")));
        let dup = "[[sites]]\ncode = \"E06000034\"\nname = \"T\"\ngranularity = \"quarter\"\nadult_population = 1\n\
             populations = [{ year = 2021, adults = 1 }, { year = 2021, adults = 2 }]\n";
        assert!(with(dup).unwrap_err().contains("sites[0].populations[1]"));
        let zero = "[[sites]]\ncode = \"E06000034\"\nname = \"T\"\ngranularity = \"quarter\"\nadult_population = 1\n\
             populations = [{ year = 2021, adults = 0 }]\n";
        assert!(with(zero).unwrap_err().contains("adults"));
        let backwards = "[[sites]]\ncode = \"E06000034\"\nname = \"T\"\ngranularity = \"quarter\"\nadult_population = 1\n\
             valid_from = \"2023-04-01\"\nvalid_until = \"2023-03-31\"\n";
        assert!(with(backwards).unwrap_err().contains("valid_until"));
    }

    #[test]
    fn every_outcome_is_priced_or_excluded_with_a_reason() {
        let one = "[[unit_costs]]\noutcome = \"volunteering\"\npence = 1\nsource = \"x\"\n";
        let e = with(one).unwrap_err();
        assert!(
            e.contains("crisis_avoided") && e.contains("unit_cost_exclusions"),
            "{e}"
        );
        let mut all = one.to_owned();
        for o in Outcome::ALL.iter().filter(|o| **o != Outcome::Volunteering) {
            all.push_str(&format!(
                "[[unit_cost_exclusions]]\noutcome = \"{}\"\nreason = \"no agreed figure\"\n",
                o.id()
            ));
        }
        let reg = with(&all).unwrap();
        let crisis = metrics::outcome(Outcome::CrisisAvoided);
        assert_eq!(
            reg.cost_exclusion(crisis).unwrap().reason,
            "no agreed figure"
        );
        let empty_reason =
            "[[unit_cost_exclusions]]\noutcome = \"crisis_avoided\"\nreason = \" \"\n";
        assert!(
            with(empty_reason)
                .unwrap_err()
                .contains("unit_cost_exclusions[0].reason")
        );
        let both =
            format!("{one}[[unit_cost_exclusions]]\noutcome = \"volunteering\"\nreason = \"x\"\n");
        assert!(with(&both).unwrap_err().contains("cannot also be excluded"));
    }

    fn with(extra: &str) -> Result<Registry, String> {
        Registry::parse(&format!(
            "[policy]\nthreshold = 7\nrounding_base = 5\nsecondary_suppression = true\n{extra}"
        ))
    }

    #[test]
    fn bad_entries_are_refused_with_their_place() {
        let site = |code: &str, pop: u64| {
            format!(
                "[[sites]]\ncode = \"{code}\"\nname = \"X\"\nadult_population = {pop}\n\
                 granularity = \"quarter\"\n"
            )
        };
        assert!(with(&site("E06000015", 10)).is_ok());
        assert!(
            with(&site("X123", 10))
                .unwrap_err()
                .contains("sites[0].code")
        );
        assert!(
            with(&site("E06000015", 0))
                .unwrap_err()
                .contains("adult_population")
        );
        let twice = format!("{}{}", site("E06000015", 10), site("E06000015", 10));
        assert!(with(&twice).unwrap_err().contains("twice"));
        let cost = "[[unit_costs]]\noutcome = \"teleportation\"\npence = 1\nsource = \"x\"\n";
        assert!(with(cost).unwrap_err().contains("unit_costs[0].outcome"));
        let no_source = "[[unit_costs]]\noutcome = \"volunteering\"\npence = 1\nsource = \"\"\n";
        assert!(with(no_source).unwrap_err().contains("source"));
        assert!(
            Registry::parse(
                "[policy]\nthreshold = 7\nrounding_base = 0\nsecondary_suppression = true\n"
            )
            .unwrap_err()
            .contains("[policy]")
        );
        let no_series = "[[sites]]\ncode = \"E06000015\"\nname = \"X\"\nadult_population = 1\n";
        assert!(with(no_series).unwrap_err().contains("granularity"));
        let yearly = site("E06000015", 10).replace("quarter", "year");
        let e = with(&yearly).unwrap_err();
        assert!(
            e.contains("sites[0].granularity") && e.contains("\"year\""),
            "{e}"
        );
        let bad_date = format!("{}valid_until = \"2023-02-30\"\n", site("E10000006", 5));
        assert!(with(&bad_date).unwrap_err().contains("valid_until"));
        assert!(
            with(
                "[[sites]]\ncode = \"E06000015\"\nname = \"X\"\nadult_population = 1\nbogus = 1\n"
            )
            .is_err()
        );
    }
}
