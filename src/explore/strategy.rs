//! Who runs next: random with a seed, PCT, a bounded depth-first search, and replay.
//!
//! The scheduler asks a strategy only when two or more threads could run (a *fresh*
//! choice), or again at the same decision when the thread it chose had to wait (a
//! *retry*, see `sched.rs`). Every answer goes into the schedule string, so replaying the
//! answers in order reproduces the run exactly.
//!
//! PCT follows Burckhardt et al., "A Randomized Scheduler with Probabilistic Guarantees
//! of Finding Bugs" (ASPLOS 2010), with the step bound learnt from earlier schedules as
//! Coyote and shuttle do: every thread gets a random priority, the highest runnable one
//! runs, and at `depth - 1` random steps the running thread drops below all others. A
//! bug that needs `depth` ordering constraints among `n` threads and `k` steps is found
//! with probability at least `1 / (n * k^(depth-1))` per schedule. A thread that spins
//! (retries in a loop, as a remover polling an empty list does) would keep the baton for
//! ever under fixed priorities, so after [`PCT_HORIZON`] choices a schedule goes on with
//! random choices, as Coyote's fair PCT does; the change points lie within the horizon.

use super::sched::TaskId;

/// Whether a choice is a new decision or the same decision again.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Pick {
    Fresh,
    Retry,
}

/// A way of choosing among runnable threads, kept from one schedule to the next.
pub(crate) trait Strategy: Send {
    /// Prepares the next schedule; `false` when there is none left.
    fn begin(&mut self) -> bool;
    /// One of `candidates` (ascending task ids, never empty). `current` is the thread
    /// that gave up the baton, if it can run on.
    fn choose(&mut self, candidates: &[TaskId], current: Option<TaskId>, pick: Pick) -> TaskId;
    /// Whether every schedule was tried (only a search can say so).
    fn exhausted(&self) -> bool {
        false
    }
    /// Whether the run asked exactly the questions a replayed schedule answers.
    fn faithful(&self) -> bool {
        true
    }
}

/// splitmix64: small, fast, and the same numbers on every machine for a seed.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Uniformly random among the runnable threads.
pub(crate) struct Random {
    rng: Rng,
    left: usize,
}

impl Random {
    pub(crate) fn new(seed: u64, schedules: usize) -> Self {
        Self {
            rng: Rng::new(seed),
            left: schedules,
        }
    }
}

impl Strategy for Random {
    fn begin(&mut self) -> bool {
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        true
    }

    fn choose(&mut self, candidates: &[TaskId], _: Option<TaskId>, _: Pick) -> TaskId {
        candidates[self.rng.below(candidates.len())]
    }
}

/// How many choices of a schedule PCT makes by priority before it turns to random ones.
pub(crate) const PCT_HORIZON: usize = 500;

/// Probabilistic concurrency testing with a bug depth.
pub(crate) struct Pct {
    rng: Rng,
    left: usize,
    depth: usize,
    /// Priority by task id; higher runs first. Initial ones are above every change point's.
    priorities: Vec<u64>,
    change_points: Vec<usize>,
    steps: usize,
    /// The most choices any schedule so far needed: the range of the change points.
    max_steps: usize,
}

impl Pct {
    pub(crate) fn new(seed: u64, depth: usize, schedules: usize) -> Self {
        Self {
            rng: Rng::new(seed),
            left: schedules,
            depth: depth.max(1),
            priorities: Vec::new(),
            change_points: Vec::new(),
            steps: 0,
            max_steps: 0,
        }
    }

    fn priority(&mut self, task: TaskId) -> u64 {
        while self.priorities.len() <= task {
            // The top bit keeps every initial priority above the change points' 1..depth.
            let p = self.rng.next_u64() | (1 << 63);
            self.priorities.push(p);
        }
        self.priorities[task]
    }
}

impl Strategy for Pct {
    fn begin(&mut self) -> bool {
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        self.max_steps = self.max_steps.max(self.steps).min(PCT_HORIZON);
        self.steps = 0;
        self.priorities.clear();
        self.change_points.clear();
        // The first schedule has no change points: it measures the number of steps.
        if self.max_steps > 1 {
            let wanted = (self.depth - 1).min(self.max_steps - 1);
            while self.change_points.len() < wanted {
                let point = 1 + self.rng.below(self.max_steps);
                if !self.change_points.contains(&point) {
                    self.change_points.push(point);
                }
            }
            self.change_points.sort_unstable();
        }
        true
    }

    fn choose(&mut self, candidates: &[TaskId], current: Option<TaskId>, pick: Pick) -> TaskId {
        if self.steps >= PCT_HORIZON {
            return candidates[self.rng.below(candidates.len())];
        }
        if pick == Pick::Fresh {
            self.steps += 1;
            if let (Some(at), Some(current)) = (
                self.change_points.iter().position(|&p| p == self.steps),
                current,
            ) {
                self.priority(current);
                self.priorities[current] = (self.depth - at) as u64;
            }
        }
        let mut best = candidates[0];
        let mut best_priority = self.priority(best);
        for &task in &candidates[1..] {
            let p = self.priority(task);
            if p > best_priority {
                best = task;
                best_priority = p;
            }
        }
        best
    }
}

/// One decision of the search: the threads that could run and those already tried.
#[derive(Debug)]
struct Node {
    options: Vec<TaskId>,
    tried: Vec<TaskId>,
    /// The answers given at this decision in the current schedule, in order: all but the
    /// last had to wait (a retry followed).
    answers: Vec<TaskId>,
}

/// A depth-first search of every schedule, bounded by a number of schedules.
pub(crate) struct Dfs {
    stack: Vec<Node>,
    /// The decision the current schedule is at (-1 before the first).
    at: Option<usize>,
    answer: usize,
    started: bool,
    left: usize,
    complete: bool,
}

impl Dfs {
    pub(crate) fn new(max_schedules: usize) -> Self {
        Self {
            stack: Vec::new(),
            at: None,
            answer: 0,
            started: false,
            left: max_schedules,
            complete: false,
        }
    }

    fn answer_here(&mut self, candidates: &[TaskId]) -> TaskId {
        let node = &mut self.stack[self.at.expect("a decision is open")];
        if let Some(&again) = node.answers.get(self.answer) {
            if candidates.contains(&again) {
                return again;
            }
        }
        // New ground: the first option not tried yet (or the first candidate if the
        // program did not behave as in the schedule before, which a search cannot fix).
        let next = candidates
            .iter()
            .copied()
            .find(|c| !node.tried.contains(c))
            .unwrap_or(candidates[0]);
        node.answers.truncate(self.answer);
        node.answers.push(next);
        if !node.tried.contains(&next) {
            node.tried.push(next);
        }
        next
    }
}

impl Strategy for Dfs {
    fn begin(&mut self) -> bool {
        if self.started {
            if let Some(at) = self.at {
                self.stack.truncate(at + 1);
            } else {
                self.stack.clear();
            }
            // Back up to the deepest decision with an option left.
            loop {
                let Some(node) = self.stack.last_mut() else {
                    self.complete = true;
                    return false;
                };
                if let Some(&untried) = node.options.iter().find(|o| !node.tried.contains(o)) {
                    node.answers.pop();
                    node.answers.push(untried);
                    node.tried.push(untried);
                    break;
                }
                self.stack.pop();
            }
        }
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        self.started = true;
        self.at = None;
        self.answer = 0;
        true
    }

    fn choose(&mut self, candidates: &[TaskId], _: Option<TaskId>, pick: Pick) -> TaskId {
        match pick {
            Pick::Fresh => {
                let at = self.at.map_or(0, |at| at + 1);
                self.at = Some(at);
                self.answer = 0;
                if at == self.stack.len() {
                    self.stack.push(Node {
                        options: candidates.to_vec(),
                        tried: Vec::new(),
                        answers: Vec::new(),
                    });
                }
            }
            Pick::Retry => self.answer += 1,
        }
        self.answer_here(candidates)
    }

    fn exhausted(&self) -> bool {
        self.complete
    }
}

/// The answers of a recorded schedule, in order.
pub(crate) struct Replay {
    answers: Vec<TaskId>,
    next: usize,
    done: bool,
    /// Set when the program asked something the schedule cannot answer.
    mismatch: bool,
}

impl Replay {
    pub(crate) fn new(answers: Vec<TaskId>) -> Self {
        Self {
            answers,
            next: 0,
            done: false,
            mismatch: false,
        }
    }
}

impl Strategy for Replay {
    fn begin(&mut self) -> bool {
        !std::mem::replace(&mut self.done, true)
    }

    fn choose(&mut self, candidates: &[TaskId], _: Option<TaskId>, _: Pick) -> TaskId {
        let answer = self.answers.get(self.next).copied();
        self.next += 1;
        match answer {
            Some(task) if candidates.contains(&task) => task,
            _ => {
                self.mismatch = true;
                candidates[0]
            }
        }
    }

    fn faithful(&self) -> bool {
        !self.mismatch && self.next == self.answers.len()
    }
}
