//! Choosing hyper-parameters without scoring on the data that chose them.
//!
//! The unit is a *file* (an experiment, an equipment's history): every candidate configuration
//! has a confusion matrix per file, and a selection only ever pools the files it is allowed to
//! see. [`leave_one_group_out`] holds out one group of files at a time (for SKAB, a subfolder:
//! one kind of fault), selects on the others, and scores the held-out group with the choice, so
//! every file is scored by a configuration chosen without its labels.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::metrics::Confusion;

/// What a selection chose, and how it did on the files it was chosen on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Selection {
    /// Index of the chosen candidate.
    pub candidate: usize,
    /// Whether it met the false-alarm budget on the selection files (if no candidate does,
    /// the one with the fewest false alarms is chosen instead).
    pub met_budget: bool,
    /// Its pooled confusion on the selection files.
    pub on_selection: Confusion,
}

/// Confusion matrices pooled over `files`.
pub fn pooled(per_file: &[Confusion], files: &[usize]) -> Confusion {
    let mut c = Confusion::default();
    for &f in files {
        c.add(&per_file[f]);
    }
    c
}

/// Among `scores[candidate][file]`, the candidate with the best pooled F1 over `files` whose
/// pooled false-alarm rate is at most `far_budget`; ties go to the lower FAR, then to the
/// earlier candidate. If no candidate meets the budget, the one with the lowest FAR (then the
/// best F1). None only if there are no candidates.
pub fn select_under_far(scores: &[Vec<Confusion>], files: &[usize], far_budget: f64) -> Option<Selection> {
    let pooled: Vec<Confusion> = scores.iter().map(|per_file| pooled(per_file, files)).collect();
    let within = |c: &Confusion| c.far() <= far_budget;
    let best = |keep: &dyn Fn(&Confusion) -> bool, better: &dyn Fn(&Confusion, &Confusion) -> bool| {
        let mut best: Option<usize> = None;
        for (i, c) in pooled.iter().enumerate().filter(|(_, c)| keep(c)) {
            if best.is_none_or(|b| better(c, &pooled[b])) {
                best = Some(i);
            }
        }
        best
    };
    let by_f1 = |a: &Confusion, b: &Confusion| a.f1() > b.f1() || (a.f1() == b.f1() && a.far() < b.far());
    let by_far = |a: &Confusion, b: &Confusion| a.far() < b.far() || (a.far() == b.far() && a.f1() > b.f1());
    let (candidate, met_budget) = match best(&within, &by_f1) {
        Some(i) => (i, true),
        None => (best(&|_| true, &by_far)?, false),
    };
    Some(Selection { candidate, met_budget, on_selection: pooled[candidate] })
}

/// One fold of [`leave_one_group_out`].
#[derive(Debug, Clone, PartialEq)]
pub struct Fold {
    /// The held-out group.
    pub group: String,
    /// Its files (indices into the score matrices).
    pub files: Vec<usize>,
    /// Chosen on the files of all the other groups.
    pub choice: Selection,
    /// The choice's pooled confusion on the held-out files, never seen by the selection.
    pub held_out: Confusion,
}

/// For each distinct group (in order of first appearance in `groups`, one entry per file),
/// selects with [`select_under_far`] on the files of the other groups and scores the group's
/// own files. Needs at least two groups and one candidate.
pub fn leave_one_group_out<S: AsRef<str>>(
    scores: &[Vec<Confusion>],
    groups: &[S],
    far_budget: f64,
) -> Option<Vec<Fold>> {
    let all: Vec<usize> = (0..groups.len()).collect();
    folds_within(scores, groups, &all, |rest| select_under_far(scores, rest, far_budget))
}

/// The folds of leave-one-group-out over the files `within`, each choice made by `select` on
/// the fold's other files.
fn folds_within<S: AsRef<str>>(
    scores: &[Vec<Confusion>],
    groups: &[S],
    within: &[usize],
    select: impl Fn(&[usize]) -> Option<Selection>,
) -> Option<Vec<Fold>> {
    let mut names: Vec<&str> = Vec::new();
    for &f in within {
        let g = groups.get(f)?.as_ref();
        if !names.contains(&g) {
            names.push(g);
        }
    }
    if names.len() < 2 || scores.iter().any(|s| s.len() != groups.len()) {
        return None;
    }
    names
        .into_iter()
        .map(|name| {
            let (held, rest): (Vec<usize>, Vec<usize>) = within.iter().partition(|&&f| groups[f].as_ref() == name);
            let choice = select(&rest)?;
            let held_out = pooled(&scores[choice.candidate], &held);
            Some(Fold { group: name.to_string(), files: held, choice, held_out })
        })
        .collect()
}

/// A selection whose FAR budget is itself chosen without the held-out files: among `budgets`,
/// the one whose inner leave-one-group-out over `files` (grouped by `inner_groups`) gives the
/// best held-out F1 with a held-out FAR ≤ `far_target` (if none does, the smallest budget);
/// then [`select_under_far`] on all of `files` with it. Selecting right at the target leaves
/// no room for the optimism of choosing the best of many candidates; this measures how much
/// room is needed. Returns the budget and the selection.
pub fn select_nested<S: AsRef<str>>(
    scores: &[Vec<Confusion>],
    files: &[usize],
    inner_groups: &[S],
    budgets: &[f64],
    far_target: f64,
) -> Option<(f64, Selection)> {
    let mut best: Option<(f64, f64)> = None; // (budget, inner held-out F1)
    for &b in budgets {
        let inner = folds_within(scores, inner_groups, files, |rest| select_under_far(scores, rest, b))?;
        let c = pooled_held_out(&inner);
        if c.far() <= far_target && best.is_none_or(|(_, f1)| c.f1() > f1) {
            best = Some((b, c.f1()));
        }
    }
    let budget = match best {
        Some((b, _)) => b,
        None => budgets.iter().copied().fold(f64::INFINITY, f64::min),
    };
    Some((budget, select_under_far(scores, files, budget)?))
}

/// [`leave_one_group_out`] with [`select_nested`] as the selection: the outer folds hold out
/// each group of `groups`, the inner ones each group of `inner_groups` among the rest.
pub fn nested_leave_one_group_out<S: AsRef<str>, T: AsRef<str>>(
    scores: &[Vec<Confusion>],
    groups: &[S],
    inner_groups: &[T],
    budgets: &[f64],
    far_target: f64,
) -> Option<Vec<(f64, Fold)>> {
    if inner_groups.len() != groups.len() {
        return None;
    }
    let all: Vec<usize> = (0..groups.len()).collect();
    let budgets_used = std::cell::RefCell::new(Vec::new());
    let folds = folds_within(scores, groups, &all, |rest| {
        let (b, s) = select_nested(scores, rest, inner_groups, budgets, far_target)?;
        budgets_used.borrow_mut().push(b);
        Some(s)
    })?;
    Some(budgets_used.into_inner().into_iter().zip(folds).collect())
}

/// Pooled over the held-out groups: each file counted once, under the choice made without it.
pub fn pooled_held_out(folds: &[Fold]) -> Confusion {
    let mut c = Confusion::default();
    for f in folds {
        c.add(&f.held_out);
    }
    c
}

/// Mean over folds of the held-out F1, FAR and MAR (each group weighs the same).
pub fn mean_over_folds(folds: &[Fold]) -> (f64, f64, f64) {
    let n = folds.len().max(1) as f64;
    let sum = |m: fn(&Confusion) -> f64| folds.iter().map(|f| m(&f.held_out)).sum::<f64>() / n;
    (sum(Confusion::f1), sum(Confusion::far), sum(Confusion::mar))
}

/// Percentile bootstrap over files: resamples the files (with replacement, `reps` times, seeded)
/// and pools their confusions; returns the `(1 − level)/2` and `(1 + level)/2` quantiles of
/// `metric`. It measures how much a pooled score owes to which files happen to be in the
/// benchmark, given each file's confusion (the selection is not re-run).
pub fn bootstrap_interval(
    per_file: &[Confusion],
    metric: fn(&Confusion) -> f64,
    reps: usize,
    level: f64,
    seed: u64,
) -> Option<(f64, f64)> {
    if per_file.is_empty() || reps == 0 || !(level > 0.0 && level < 1.0) {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut values: Vec<f64> = (0..reps)
        .map(|_| {
            let mut c = Confusion::default();
            for _ in 0..per_file.len() {
                c.add(&per_file[rng.gen_range(0..per_file.len())]);
            }
            metric(&c)
        })
        .collect();
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((reps - 1) as f64 * q).round() as usize];
    Some((at((1.0 - level) / 2.0), at((1.0 + level) / 2.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(tp: u64, fp: u64, tn: u64, fn_: u64) -> Confusion {
        Confusion { tp, fp, tn, fn_ }
    }

    #[test]
    fn selection_takes_the_best_f1_within_the_far_budget() {
        // Two files; candidate 0 is the best F1 but alarms too often, candidate 1 is within
        // budget, candidate 2 within budget with a worse F1.
        let scores = vec![
            vec![c(90, 40, 60, 10), c(90, 40, 60, 10)],
            vec![c(70, 10, 90, 30), c(70, 10, 90, 30)],
            vec![c(50, 0, 100, 50), c(50, 0, 100, 50)],
        ];
        let s = select_under_far(&scores, &[0, 1], 0.15).unwrap();
        assert_eq!((s.candidate, s.met_budget), (1, true));
        assert_eq!(s.on_selection, c(140, 20, 180, 60));
        // With a loose budget the first one wins; with none met, the fewest false alarms.
        assert_eq!(select_under_far(&scores, &[0, 1], 0.5).unwrap().candidate, 0);
        let strict = select_under_far(&scores[..2], &[0, 1], 0.05).unwrap();
        assert_eq!((strict.candidate, strict.met_budget), (1, false));
        assert!(select_under_far(&[], &[0], 0.15).is_none());
    }

    #[test]
    fn selection_pools_only_the_files_it_is_given() {
        // Candidate 0 is perfect on file 0 and useless on file 1; candidate 1 the reverse.
        let scores = vec![vec![c(10, 0, 10, 0), c(0, 0, 10, 10)], vec![c(0, 0, 10, 10), c(10, 0, 10, 0)]];
        assert_eq!(select_under_far(&scores, &[0], 0.15).unwrap().candidate, 0);
        assert_eq!(select_under_far(&scores, &[1], 0.15).unwrap().candidate, 1);
    }

    #[test]
    fn leave_one_group_out_never_selects_on_the_held_out_group() {
        // Groups a, a, b. Candidate 0 is perfect on b only, candidate 1 on a only: holding out
        // b must choose 1 (from a) and score it on b, where it misses everything.
        let scores = vec![
            vec![c(0, 0, 10, 10), c(0, 0, 10, 10), c(10, 0, 10, 0)],
            vec![c(10, 0, 10, 0), c(10, 0, 10, 0), c(0, 0, 10, 10)],
        ];
        let folds = leave_one_group_out(&scores, &["a", "a", "b"], 0.15).unwrap();
        assert_eq!(folds.len(), 2);
        assert_eq!((folds[0].group.as_str(), folds[0].files.clone()), ("a", vec![0, 1]));
        assert_eq!(folds[0].choice.candidate, 0, "a held out: chosen on b");
        assert_eq!(folds[0].held_out, c(0, 0, 20, 20));
        assert_eq!(folds[1].choice.candidate, 1, "b held out: chosen on a");
        assert_eq!(folds[1].held_out, c(0, 0, 10, 10));
        assert_eq!(pooled_held_out(&folds), c(0, 0, 30, 30));
        assert_eq!(mean_over_folds(&folds), (0.0, 0.0, 1.0));
        assert!(leave_one_group_out(&scores, &["a", "a", "a"], 0.15).is_none(), "one group");
        assert!(leave_one_group_out(&scores, &["a", "b", "c", "d"], 0.15).is_none(), "more groups than files");
        assert!(leave_one_group_out(&scores, &["a", "b"], 0.15).is_none(), "groups do not match files");
    }

    #[test]
    fn nested_selection_tightens_the_budget_when_selection_is_optimistic() {
        // Four files. Candidate 0 alarms at 12 % on files 0–2 but 70 % on file 3; candidate 1
        // alarms at 4 % everywhere, with a lower F1.
        let good = c(98, 12, 88, 2);
        let scores = vec![vec![good, good, good, c(98, 70, 30, 2)], vec![c(50, 4, 96, 50); 4]];
        let files = ["f0", "f1", "f2", "f3"];
        // Selected on files 0–2 at 15 %, candidate 0 looks fine; on file 3 it then fails.
        assert_eq!(select_under_far(&scores, &[0, 1, 2], 0.15).unwrap().candidate, 0);
        // Inner leave-one-file-out sees it: at budget 15 %, holding out file 3 picks candidate
        // 0 (FAR 70 % there; the other folds pick 1), so the inner FAR is (3·4 + 70)/400 =
        // 20.5 % > 15 %, and the 5 % budget (candidate 1 everywhere, 4 %) is chosen.
        let (b, s) = select_nested(&scores, &[0, 1, 2, 3], &files, &[0.05, 0.15], 0.15).unwrap();
        assert_eq!((b, s.candidate), (0.05, 1));
        // With a 25 % target, 15 % passes and its inner F1 (248/365) beats 5 %'s (50/77).
        let (b, s) = select_nested(&scores, &[0, 1, 2, 3], &files, &[0.05, 0.15], 0.25).unwrap();
        assert_eq!(b, 0.15);
        assert_eq!(s.candidate, 1, "on all four files, candidate 0's FAR is 26.5 % > 15 %");
        // Outer folds record the budget each one used.
        let nested = nested_leave_one_group_out(&scores, &files, &files, &[0.05, 0.15], 0.15).unwrap();
        assert_eq!(nested.len(), 4);
        assert!(nested.iter().all(|(b, f)| f.files.len() == 1 && (*b == 0.05 || *b == 0.15)));
    }

    #[test]
    fn bootstrap_interval_reflects_how_much_files_differ() {
        let same = vec![c(80, 10, 90, 20); 30];
        let (lo, hi) = bootstrap_interval(&same, Confusion::far, 500, 0.9, 1).unwrap();
        assert!((lo - 0.1).abs() < 1e-12 && (hi - 0.1).abs() < 1e-12, "identical files: no spread");
        // Half the files never alarm falsely, half do at 40 %: pooled 20 %, and a real spread.
        let mixed: Vec<Confusion> =
            (0..30).map(|i| if i % 2 == 0 { c(80, 0, 100, 20) } else { c(80, 40, 60, 20) }).collect();
        let (lo, hi) = bootstrap_interval(&mixed, Confusion::far, 2_000, 0.9, 1).unwrap();
        assert!(lo < 0.2 && hi > 0.2 && lo > 0.1 && hi < 0.3, "[{lo}, {hi}]");
        assert_eq!(bootstrap_interval(&mixed, Confusion::far, 2_000, 0.9, 1), Some((lo, hi)), "seeded");
        assert!(bootstrap_interval(&[], Confusion::far, 100, 0.9, 1).is_none());
        assert!(bootstrap_interval(&mixed, Confusion::far, 100, 1.0, 1).is_none());
    }
}
