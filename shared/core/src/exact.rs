//! The exact attacker: integer programming over every published cell.
//!
//! Interval propagation (the fast view in `disclosure.rs`) gives bounds that
//! are never narrower than the truth allows, so it can miss what an attacker
//! with a solver finds once tables share cells (age groups over bands, a
//! year over its quarters). This module asks the real question for one cell:
//! over all integer tables consistent with what was published, what are its
//! smallest and largest values? Disclosure control uses it to confirm every
//! suppressed cell keeps its protection interval; the red-team suite attacks
//! with an independent formulation of the same question.

use microlp::{ComparisonOp, OptimizationDirection, Problem, SolutionStatus};

/// Upper bound given to cells nobody bounded. Far above any real count, and
/// small enough for the solver's `i32` bounds and exact `f64` arithmetic.
pub const UNBOUNDED: i64 = 1 << 24;

/// A linear relation between cells: `Σ coeff·cell (op) rhs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// Cells and their coefficients.
    pub terms: Vec<(usize, i32)>,
    /// How the sum compares with `rhs`.
    pub op: Op,
    /// The right-hand side.
    pub rhs: i64,
}

/// Comparison in a [`Relation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Equal.
    Eq,
    /// At most.
    Le,
}

impl Relation {
    /// `total = Σ parts`.
    pub fn sum(total: usize, parts: &[usize]) -> Relation {
        let mut terms = vec![(total, -1)];
        terms.extend(parts.iter().map(|&p| (p, 1)));
        Relation {
            terms,
            op: Op::Eq,
            rhs: 0,
        }
    }

    /// `small <= big`.
    pub fn at_most(small: usize, big: usize) -> Relation {
        Relation {
            terms: vec![(small, 1), (big, -1)],
            op: Op::Le,
            rhs: 0,
        }
    }

    /// `total <= Σ parts`.
    pub fn at_most_sum(total: usize, parts: &[usize]) -> Relation {
        let mut terms = vec![(total, 1)];
        terms.extend(parts.iter().map(|&p| (p, -1)));
        Relation {
            terms,
            op: Op::Le,
            rhs: 0,
        }
    }
}

/// What the attacker knows: each cell's interval, and the relations.
#[derive(Debug, Clone, Default)]
pub struct System {
    /// Each cell's lowest possible value.
    pub lo: Vec<i64>,
    /// Each cell's highest possible value, [`UNBOUNDED`] for none.
    pub hi: Vec<i64>,
    /// Relations between cells.
    pub relations: Vec<Relation>,
}

/// The exact range of one cell, or `None` when no table fits the data
/// (published cells that contradict each other) or the solver gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// Smallest feasible value.
    pub lo: i64,
    /// Largest feasible value; [`UNBOUNDED`] when nothing bounds it.
    pub hi: i64,
}

impl Range {
    /// How many integer values the cell may take.
    pub fn values(&self) -> u64 {
        u64::try_from(self.hi - self.lo + 1).unwrap_or(0)
    }
}

impl System {
    fn problem(&self, cell: usize, direction: OptimizationDirection) -> Problem {
        let mut p = Problem::new(direction);
        let clamp = |v: i64| i32::try_from(v.clamp(0, UNBOUNDED)).unwrap_or(i32::MAX);
        let vars: Vec<_> = (0..self.lo.len())
            .map(|c| {
                let objective = if c == cell { 1.0 } else { 0.0 };
                p.add_integer_var(objective, (clamp(self.lo[c]), clamp(self.hi[c])))
            })
            .collect();
        for r in &self.relations {
            let terms: Vec<_> = r
                .terms
                .iter()
                .map(|&(c, k)| (vars[c], f64::from(k)))
                .collect();
            let op = match r.op {
                Op::Eq => ComparisonOp::Eq,
                Op::Le => ComparisonOp::Le,
            };
            // Counts stay far below 2^53, so the conversion is exact.
            p.add_constraint(terms.as_slice(), op, r.rhs as f64);
        }
        p
    }

    fn optimum(&self, cell: usize, direction: OptimizationDirection) -> Option<i64> {
        let solution = self
            .problem(cell, direction)
            .solve()
            .ok()?
            .into_solution()
            .ok()?;
        // An unproven incumbent is not the attacker's best: treat it as no answer.
        if solution.status() != SolutionStatus::Optimal {
            return None;
        }
        Some(solution.objective().round() as i64)
    }

    /// The exact feasible range of `cell`.
    pub fn range(&self, cell: usize) -> Option<Range> {
        let lo = self.optimum(cell, OptimizationDirection::Minimize)?;
        let hi = self.optimum(cell, OptimizationDirection::Maximize)?;
        Some(Range { lo, hi })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_of_a_published_total_is_bounded_by_the_other_parts() {
        // total in [28, 32]; a in [8, 12]; b suppressed: b in [16, 24].
        let s = System {
            lo: vec![28, 8, 0],
            hi: vec![32, 12, UNBOUNDED],
            relations: vec![Relation::sum(0, &[1, 2])],
        };
        assert_eq!(s.range(2), Some(Range { lo: 16, hi: 24 }));
        assert_eq!(s.range(2).unwrap().values(), 9);
    }

    #[test]
    fn shared_totals_narrow_more_than_one_table_alone() {
        // Cells: 0 = total; 1, 2 = table A's parts; 3, 4 = table B's parts.
        // A: 1 + 2 = 0 and B: 3 + 4 = 0, with 1 in [8, 12], 2 unknown,
        // 3 in [18, 22], 4 in [0, 2]: the total is in [18, 24], so cell 2 is
        // in [6, 16].
        let s = System {
            lo: vec![0, 8, 0, 18, 0],
            hi: vec![UNBOUNDED, 12, UNBOUNDED, 22, 2],
            relations: vec![Relation::sum(0, &[1, 2]), Relation::sum(0, &[3, 4])],
        };
        assert_eq!(s.range(0), Some(Range { lo: 18, hi: 24 }));
        assert_eq!(s.range(2), Some(Range { lo: 6, hi: 16 }));
    }

    #[test]
    fn contradictions_and_inequalities() {
        let s = System {
            lo: vec![10, 0],
            hi: vec![12, 5],
            relations: vec![Relation::at_most(0, 1)],
        };
        assert_eq!(s.range(1), None, "10..12 cannot be at most 0..5");
        let s = System {
            lo: vec![3, 0, 0],
            hi: vec![4, UNBOUNDED, 1],
            relations: vec![Relation::at_most_sum(0, &[1, 2]), Relation::at_most(1, 0)],
        };
        assert_eq!(s.range(1), Some(Range { lo: 2, hi: 4 }));
    }
}
