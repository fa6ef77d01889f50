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

use microlp::{ComparisonOp, OptimizationDirection, Problem, SolutionStatus, Variable};

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
    fn problem(&self, cell: usize, direction: OptimizationDirection) -> (Problem, Vec<Variable>) {
        self.weighted(&[(cell, 1.0)], direction)
    }

    /// The integer program with objective `Σ weight · cell`.
    fn weighted(
        &self,
        objective: &[(usize, f64)],
        direction: OptimizationDirection,
    ) -> (Problem, Vec<Variable>) {
        let mut p = Problem::new(direction);
        let clamp = |v: i64| i32::try_from(v.clamp(0, UNBOUNDED)).unwrap_or(i32::MAX);
        let mut weights = vec![0.0; self.lo.len()];
        for &(c, w) in objective {
            weights[c] += w;
        }
        let vars: Vec<_> = (0..self.lo.len())
            .map(|c| p.add_integer_var(weights[c], (clamp(self.lo[c]), clamp(self.hi[c]))))
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
        (p, vars)
    }

    /// The optimum of `cell`, and the solution as a point when it checks out.
    fn optimum(
        &self,
        cell: usize,
        direction: OptimizationDirection,
    ) -> Option<(i64, Option<Vec<i64>>)> {
        let (problem, vars) = self.problem(cell, direction);
        let solution = problem
            .solve_with(budget(RANGE_NODES))
            .ok()?
            .into_solution()
            .ok()?;
        // An unproven incumbent is not the attacker's best: treat it as no answer.
        if solution.status() != SolutionStatus::Optimal {
            return None;
        }
        let point = self.point(&solution, &vars);
        Some((solution.objective().round() as i64, point))
    }

    /// A solver's solution as integers, if it meets every bound and relation
    /// exactly (the solver works in floating point, within tolerances).
    fn point(&self, solution: &microlp::Solution, vars: &[Variable]) -> Option<Vec<i64>> {
        let x: Vec<i64> = vars
            .iter()
            .map(|v| solution.var_value(*v).round() as i64)
            .collect();
        self.satisfied_by(&x).then_some(x)
    }

    /// Whether `x` meets every cell's bounds and every relation.
    pub fn satisfied_by(&self, x: &[i64]) -> bool {
        x.len() == self.lo.len()
            && x.iter()
                .enumerate()
                .all(|(c, &v)| self.lo[c].max(0) <= v && v <= self.hi[c].min(UNBOUNDED))
            && self.relations.iter().all(|r| {
                let lhs: i64 = r.terms.iter().map(|&(c, k)| i64::from(k) * x[c]).sum();
                match r.op {
                    Op::Eq => lhs == r.rhs,
                    Op::Le => lhs <= r.rhs,
                }
            })
    }

    /// The exact feasible range of `cell`.
    pub fn range(&self, cell: usize) -> Option<Range> {
        let (lo, _) = self.optimum(cell, OptimizationDirection::Minimize)?;
        let (hi, _) = self.optimum(cell, OptimizationDirection::Maximize)?;
        Some(Range { lo, hi })
    }
}

/// Branch-and-bound nodes one exact range may take. The bound keeps a hard
/// instance from stalling publication, and being a count, not a clock, it
/// gives the same answer on every machine. A range not proven within it
/// counts as narrowed, which withholds more: it costs utility, never privacy.
const RANGE_NODES: u64 = 20_000;

/// Nodes for one witness search: any feasible point is a witness, proven
/// optimal or not.
const SWEEP_NODES: u64 = 20;

fn budget(nodes: u64) -> microlp::SolveOptions {
    let mut options = microlp::SolveOptions::default();
    options.node_limit = Some(nodes);
    options
}

/// Below this many open cells a sweep is not worth its programs.
const FEW: usize = 4;

/// At most this many programs in a [`Prover::sweep`].
const SWEEP_ROUNDS: usize = 32;

/// Proves cells wide without solving for each: every feasible integer point
/// found on the way is a witness, and a cell that takes values `a` and `b`
/// in two feasible points has at least `|a - b| + 1` possible values.
///
/// Disclosure control needs to know that every withheld cell keeps its
/// protection interval. Solving two integer programs per cell costs too
/// much once a financial year is protected with its twelve months (over a
/// thousand cells); a few programs whose objectives push many cells at once
/// prove most of them wide, and only the rest are solved one by one. A
/// witness is checked exactly against the system before it is believed.
///
/// Witnesses stay valid while the system only loses information (a
/// published cell withheld widens its bounds), so one prover serves every
/// round of secondary suppression over the same cells.
pub struct Prover {
    low: Vec<i64>,
    high: Vec<i64>,
}

impl Prover {
    /// A prover over `cells` cells, with no witnesses yet.
    pub fn new(cells: usize) -> Self {
        Prover {
            low: vec![i64::MAX; cells],
            high: vec![i64::MIN; cells],
        }
    }

    fn observe(&mut self, x: &[i64]) {
        for (c, &v) in x.iter().enumerate() {
            self.low[c] = self.low[c].min(v);
            self.high[c] = self.high[c].max(v);
        }
    }

    /// Whether the witnesses so far show `cell` taking at least `values` values.
    pub fn shown_wide(&self, cell: usize, values: u64) -> bool {
        self.high[cell] >= self.low[cell]
            && u64::try_from(self.high[cell] - self.low[cell] + 1).unwrap_or(0) >= values
    }

    /// Looks for witnesses that spread `cells` apart: one point with every
    /// cell as low as it goes together, then points that push each cell up
    /// to `values - 1` above its lowest value seen (and down as far below
    /// its highest), all cells at once, until a round proves no more wide.
    ///
    /// The push is capped per cell: maximising a plain sum would pile the
    /// whole of a table's total on one part, where the cap makes the solver
    /// spread it over every part that can take it.
    pub fn sweep(&mut self, system: &System, cells: &[usize], values: u64) {
        let open = |p: &Prover| -> Vec<usize> {
            cells
                .iter()
                .copied()
                .filter(|&c| !p.shown_wide(c, values))
                .collect()
        };
        let reach = i64::try_from(values.saturating_sub(1)).unwrap_or(i64::MAX);
        let mut pending = open(self);
        // A handful left costs less solved one by one than swept.
        if pending.len() <= FEW {
            return;
        }
        let low: Vec<(usize, f64)> = pending.iter().map(|&c| (c, 1.0)).collect();
        let (problem, vars) = system.weighted(&low, OptimizationDirection::Minimize);
        self.witness(system, problem, &vars);
        // Up until a round proves nothing more, then down likewise, then up
        // again (what came down may make room to go up).
        let mut up = true;
        let mut phases = 0;
        for _ in 0..SWEEP_ROUNDS {
            if pending.is_empty() || phases == 3 {
                return;
            }
            let (mut problem, vars) = system.weighted(&[], OptimizationDirection::Maximize);
            for &c in &pending {
                // A gain from 0 to 1 for each cell, earned in proportion to
                // how far it moves toward `reach` beyond what was seen: up,
                // x_c >= (low_c + reach) · gain; down, x_c <= box_hi -
                // (box_hi - high_c + reach) · gain. A gain of 0 asks nothing
                // of the cell, so cells that cannot move do not hold back
                // those that can.
                let gain = problem.add_var(1.0, (0.0, 1.0));
                if up {
                    let target = self.low[c].saturating_add(reach);
                    if !(0..=UNBOUNDED).contains(&target) {
                        continue;
                    }
                    problem.add_constraint(
                        [(gain, target as f64), (vars[c], -1.0)].as_slice(),
                        ComparisonOp::Le,
                        0.0,
                    );
                } else {
                    let top = system.hi[c].min(UNBOUNDED);
                    // Saturating: a witness above `top` only comes from a
                    // system the truth does not satisfy, which must not panic.
                    let drop = top.saturating_sub(self.high[c].saturating_sub(reach));
                    if top >= UNBOUNDED || !(0..=UNBOUNDED).contains(&drop) {
                        continue;
                    }
                    problem.add_constraint(
                        [(gain, drop as f64), (vars[c], 1.0)].as_slice(),
                        ComparisonOp::Le,
                        top as f64,
                    );
                }
            }
            self.witness(system, problem, &vars);
            let before = pending.len();
            pending = open(self);
            // Cells proven drop out, so the next push spreads over fewer.
            if pending.len() == before {
                up = !up;
                phases += 1;
            }
        }
    }

    /// Solves `problem` (built over `system`'s cells as `vars`) and keeps
    /// its solution as a witness if it checks out.
    fn witness(&mut self, system: &System, problem: Problem, vars: &[Variable]) {
        if let Some(x) = problem
            .solve_with(budget(SWEEP_NODES))
            .ok()
            .and_then(|o| o.into_solution().ok())
            .and_then(|s| system.point(&s, vars))
        {
            self.observe(&x);
        }
    }

    /// The exact range of `cell`; both solutions join the witnesses.
    pub fn range(&mut self, system: &System, cell: usize) -> Option<Range> {
        let (lo, low) = system.optimum(cell, OptimizationDirection::Minimize)?;
        if let Some(x) = low {
            self.observe(&x);
        }
        let (hi, high) = system.optimum(cell, OptimizationDirection::Maximize)?;
        if let Some(x) = high {
            self.observe(&x);
        }
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

    mod witnesses {
        use super::super::*;
        use proptest::prelude::*;

        /// Tables of 2 to 5 parts over random true values; each cell either
        /// published (a box of 5 around its truth) or withheld ([0, ∞)),
        /// some tables sharing their total.
        fn systems() -> impl Strategy<Value = (System, Vec<i64>)> {
            (
                proptest::collection::vec(proptest::collection::vec(0i64..30, 2..6), 1..5),
                proptest::collection::vec(any::<bool>(), 32),
                any::<bool>(),
            )
                .prop_map(|(tables, withheld, shared)| {
                    let mut truth: Vec<i64> = Vec::new();
                    let mut relations = Vec::new();
                    let shared_total = 0;
                    for (t, parts) in tables.iter().enumerate() {
                        let sum: i64 = parts.iter().sum();
                        let total = if shared && t > 0 && sum == truth[shared_total] {
                            shared_total
                        } else {
                            truth.push(sum);
                            truth.len() - 1
                        };
                        let first = truth.len();
                        truth.extend(parts);
                        let cells: Vec<usize> = (first..truth.len()).collect();
                        relations.push(Relation::sum(total, &cells));
                    }
                    let (lo, hi) = truth
                        .iter()
                        .enumerate()
                        .map(|(c, &v)| {
                            if withheld[c % withheld.len()] {
                                (0, UNBOUNDED)
                            } else {
                                ((v - 2).max(0), v + 2)
                            }
                        })
                        .unzip();
                    (System { lo, hi, relations }, truth)
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(96))]
            /// A cell the witnesses call wide is wide: the witnesses are
            /// feasible points, checked before they are believed.
            #[test]
            fn cells_shown_wide_are_wide((system, truth) in systems()) {
                prop_assert!(system.satisfied_by(&truth));
                let cells: Vec<usize> = (0..truth.len()).collect();
                let mut prover = Prover::new(truth.len());
                prover.sweep(&system, &cells, 7);
                for &c in &cells {
                    let exact = system.range(c).expect("the truth is a solution");
                    if prover.shown_wide(c, 7) {
                        prop_assert!(exact.values() >= 7, "cell {c}: shown wide, exactly {exact:?}");
                    }
                    prop_assert!(exact.lo <= truth[c] && truth[c] <= exact.hi);
                }
            }
        }
    }
}
