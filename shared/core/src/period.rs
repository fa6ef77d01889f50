//! Fixed reporting periods: calendar months or quarters.
//!
//! Periods are the only way to slice aggregates. Because they never overlap,
//! nobody can ask for two overlapping subsets and subtract one from the other
//! (a differencing attack).

use crate::date::Date;
use serde::{Deserialize, Serialize};
use std::fmt;

/// How long a reporting period is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Granularity {
    /// A calendar month.
    Month,
    /// A calendar quarter (January-March is Q1).
    Quarter,
}

impl Granularity {
    /// The proto enum number.
    pub fn code(self) -> i32 {
        match self {
            Granularity::Month => 1,
            Granularity::Quarter => 2,
        }
    }

    /// From the proto enum number; `None` for unspecified or unknown.
    pub fn from_code(code: i32) -> Option<Self> {
        match code {
            1 => Some(Granularity::Month),
            2 => Some(Granularity::Quarter),
            _ => None,
        }
    }

    fn periods_per_year(self) -> u32 {
        match self {
            Granularity::Month => 12,
            Granularity::Quarter => 4,
        }
    }
}

impl std::str::FromStr for Granularity {
    type Err = PeriodError;
    fn from_str(s: &str) -> Result<Self, PeriodError> {
        match s.to_ascii_lowercase().as_str() {
            "month" | "monthly" => Ok(Granularity::Month),
            "quarter" | "quarterly" => Ok(Granularity::Quarter),
            _ => Err(PeriodError::Granularity),
        }
    }
}

/// Why a period was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    /// The granularity is missing or unknown.
    #[error("granularity must be month or quarter")]
    Granularity,
    /// The month or quarter number is out of range.
    #[error("index must be 1-12 for a month or 1-4 for a quarter")]
    Index,
    /// The year is out of range.
    #[error("year must be between 1 and 9999")]
    Year,
    /// The text is not `YYYY-MM` or `YYYY-Qn`.
    #[error("must be written YYYY-MM (a month) or YYYY-Qn (a quarter)")]
    Format,
}

/// One calendar month or quarter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Period {
    granularity: Granularity,
    year: i32,
    index: u32,
}

impl Period {
    /// A period from its parts: index is 1-12 for months, 1-4 for quarters.
    pub fn new(granularity: Granularity, year: i32, index: u32) -> Result<Period, PeriodError> {
        if !(1..=9999).contains(&year) {
            return Err(PeriodError::Year);
        }
        if index == 0 || index > granularity.periods_per_year() {
            return Err(PeriodError::Index);
        }
        Ok(Period {
            granularity,
            year,
            index,
        })
    }

    /// The period of this granularity that contains `date`.
    pub fn containing(granularity: Granularity, date: Date) -> Period {
        let month = u32::from(date.month());
        let index = match granularity {
            Granularity::Month => month,
            Granularity::Quarter => (month - 1) / 3 + 1,
        };
        Period {
            granularity,
            year: date.year(),
            index,
        }
    }

    /// Month or quarter.
    pub fn granularity(self) -> Granularity {
        self.granularity
    }

    /// The calendar year.
    pub fn year(self) -> i32 {
        self.year
    }

    /// Month (1-12) or quarter (1-4) number.
    pub fn index(self) -> u32 {
        self.index
    }

    fn first_month(self) -> u8 {
        match self.granularity {
            Granularity::Month => self.index as u8,
            Granularity::Quarter => ((self.index - 1) * 3 + 1) as u8,
        }
    }

    fn last_month(self) -> u8 {
        match self.granularity {
            Granularity::Month => self.index as u8,
            Granularity::Quarter => (self.index * 3) as u8,
        }
    }

    /// First day of the period.
    pub fn start(self) -> Date {
        Date::from_days_since_epoch(ymd_days(self.year, self.first_month(), 1))
    }

    /// Last day of the period (inclusive).
    pub fn end(self) -> Date {
        let m = self.last_month();
        Date::from_days_since_epoch(ymd_days(
            self.year,
            m,
            crate::date::days_in_month(self.year, m),
        ))
    }

    /// Whether `date` falls within the period.
    pub fn contains(self, date: Date) -> bool {
        self.start() <= date && date <= self.end()
    }

    /// The following period of the same granularity.
    pub fn next(self) -> Period {
        if self.index == self.granularity.periods_per_year() {
            Period {
                year: self.year + 1,
                index: 1,
                ..self
            }
        } else {
            Period {
                index: self.index + 1,
                ..self
            }
        }
    }

    /// A sortable ordinal; consecutive periods differ by one.
    pub fn ordinal(self) -> i64 {
        i64::from(self.year) * i64::from(self.granularity.periods_per_year())
            + i64::from(self.index)
            - 1
    }

    /// Every period from `from` to `to` inclusive; empty if they differ in
    /// granularity or `to` is before `from`.
    pub fn range(from: Period, to: Period) -> Vec<Period> {
        if from.granularity != to.granularity || to < from {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut p = from;
        while p <= to {
            out.push(p);
            p = p.next();
        }
        out
    }

    /// Parses `YYYY-MM` (month) or `YYYY-Qn` (quarter).
    pub fn parse(s: &str) -> Result<Period, PeriodError> {
        let (year, rest) = s.split_once('-').ok_or(PeriodError::Format)?;
        if year.len() != 4 || !year.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PeriodError::Format);
        }
        let year: i32 = year.parse().map_err(|_| PeriodError::Format)?;
        if let Some(q) = rest.strip_prefix('Q').or_else(|| rest.strip_prefix('q')) {
            let index: u32 = q.parse().map_err(|_| PeriodError::Format)?;
            return Period::new(Granularity::Quarter, year, index);
        }
        if rest.len() != 2 || !rest.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PeriodError::Format);
        }
        let index: u32 = rest.parse().map_err(|_| PeriodError::Format)?;
        Period::new(Granularity::Month, year, index)
    }
}

fn ymd_days(year: i32, month: u8, day: u8) -> i64 {
    Date::new(year, month, day)
        .map(Date::days_since_epoch)
        .unwrap_or_default()
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.granularity {
            Granularity::Month => write!(f, "{:04}-{:02}", self.year, self.index),
            Granularity::Quarter => write!(f, "{:04}-Q{}", self.year, self.index),
        }
    }
}

impl std::str::FromStr for Period {
    type Err = PeriodError;
    fn from_str(s: &str) -> Result<Self, PeriodError> {
        Period::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Date {
        Date::parse(s).unwrap()
    }

    #[test]
    fn quarters_and_months_have_the_right_bounds() {
        let q = Period::parse("2024-Q1").unwrap();
        assert_eq!(q.start(), d("2024-01-01"));
        assert_eq!(q.end(), d("2024-03-31"));
        let m = Period::parse("2024-02").unwrap();
        assert_eq!(m.end(), d("2024-02-29"));
        assert_eq!(
            Period::containing(Granularity::Quarter, d("2025-11-23")).to_string(),
            "2025-Q4"
        );
        assert!(q.contains(d("2024-03-31")) && !q.contains(d("2024-04-01")));
    }

    #[test]
    fn periods_step_across_years_and_refuse_bad_text() {
        let q4 = Period::parse("2024-Q4").unwrap();
        assert_eq!(q4.next().to_string(), "2025-Q1");
        assert_eq!(q4.next().ordinal(), q4.ordinal() + 1);
        assert_eq!(Period::range(q4, q4.next().next()).len(), 3);
        assert_eq!(Period::parse("2024-Q5"), Err(PeriodError::Index));
        assert_eq!(Period::parse("2024-13"), Err(PeriodError::Index));
        assert_eq!(Period::parse("2024/01"), Err(PeriodError::Format));
        assert_eq!(Period::parse("24-01"), Err(PeriodError::Format));
    }
}
