//! The site registry: which councils may submit, their adult populations (the
//! denominators of every rate), the network disclosure policy, and the unit
//! costs behind "estimated cost avoided".
//!
//! Read once at startup from a TOML file (see `services/hub/registry.toml`) and
//! validated strictly, so a typo fails the start rather than a report.
//! ONS codes change (Cumbria was split in 2023), so a site can carry a
//! `valid_until` date: periods starting after it are refused.
//!
//! Each site publishes one series: its `granularity` (month or quarter) is
//! fixed here, and [`Site::accepts`] refuses any other period kind, so an
//! attacker never sees a quarter beside its own three months. Changing it is
//! an operation (README, "Changing a site's series"): at start-up the hub
//! withdraws the site's releases of the old kind ([`crate::Hub::open`]).

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
    /// Adult (18+) residents, the denominator for rates per 10,000.
    pub adult_population: u64,
    /// The last day the code was in use, if it has been retired.
    pub valid_until: Option<Date>,
    /// The one period kind the site publishes (its series).
    pub granularity: Granularity,
}

/// How the registry (and its error messages) spell a granularity.
pub fn granularity_name(g: Granularity) -> &'static str {
    match g {
        Granularity::Month => "month",
        Granularity::Quarter => "quarter",
    }
}

impl Site {
    /// Whether the site may publish `period`: only periods of its series.
    /// (Longer spans, when the network adds them, are accepted here too.)
    pub fn accepts(&self, period: Period) -> bool {
        period.granularity() == self.granularity
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

/// The validated registry.
#[derive(Debug, Clone)]
pub struct Registry {
    sites: Vec<Site>,
    by_code: HashMap<String, usize>,
    policy: DisclosurePolicy,
    /// Unit cost by catalogue metric index.
    unit_costs: HashMap<usize, UnitCost>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    policy: RawPolicy,
    #[serde(default)]
    sites: Vec<RawSite>,
    #[serde(default)]
    unit_costs: Vec<RawUnitCost>,
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
        let mut sites = Vec::with_capacity(raw.sites.len());
        for (i, s) in raw.sites.into_iter().enumerate() {
            let at = format!("sites[{i}]");
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
            let granularity = s.granularity.parse::<Granularity>().map_err(|_| {
                format!(
                    "{at}.granularity {:?} must be \"month\" or \"quarter\" (the site's one series)",
                    s.granularity
                )
            })?;
            sites.push(Site {
                code: s.code,
                name: s.name,
                adult_population: s.adult_population,
                valid_until,
                granularity,
            });
        }
        Registry::new(sites, policy, Vec::new()).and_then(|mut reg| {
            for (i, u) in raw.unit_costs.into_iter().enumerate() {
                let at = format!("unit_costs[{i}]");
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
                if reg
                    .unit_costs
                    .insert(metrics::outcome(outcome), cost)
                    .is_some()
                {
                    return Err(format!("{at}: a second unit cost for {}", outcome.id()));
                }
            }
            Ok(reg)
        })
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

    /// The unit cost attached to a catalogue metric, if any.
    pub fn unit_cost(&self, metric: usize) -> Option<&UnitCost> {
        self.unit_costs.get(&metric)
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
