//! Which user's job a free worker takes next: fair between users instead of
//! one first-come first-served line.
//!
//! The pending jobs stay in the store (one queue per user, oldest first);
//! this module only picks the user. Rules, in order:
//!
//! 1. A user already running `cap` jobs waits (the per-user running cap).
//! 2. The user with the fewest running jobs goes first, so a newcomer gets the
//!    next free worker however many jobs the others have queued.
//! 3. Among those, the user served longest ago (or never, since this process
//!    started or since their queue last emptied) goes first: round robin.
//! 4. Then the user whose oldest waiting job is oldest, then the lower id.
//!
//! A user with 64 queued jobs thus holds at most `cap` workers, and another
//! user's job waits at most for one job of theirs to end (none at all while a
//! worker is free).

use std::collections::HashMap;

use chrono::{DateTime, Utc};

/// One user's waiting and running jobs, as the store counts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserQueue {
    /// The user.
    pub owner_id: i64,
    /// Their jobs waiting for a worker (at least one).
    pub pending: i64,
    /// Their jobs running now.
    pub running: i64,
    /// When their oldest waiting job was submitted.
    pub oldest: DateTime<Utc>,
}

/// Round-robin memory of the scheduler: when each user with waiting jobs was
/// last served. In memory only: after a restart everyone starts equal.
#[derive(Debug)]
pub struct FairQueue {
    /// Largest number of jobs of one user running at once (at least 1).
    cap: i64,
    /// Turn number of each user's latest claim.
    served: HashMap<i64, u64>,
    /// Claims so far.
    turn: u64,
}

impl FairQueue {
    /// A scheduler letting one user run at most `cap` jobs at once (0 is taken as 1).
    pub fn new(cap: usize) -> Self {
        FairQueue {
            cap: cap.max(1) as i64,
            served: HashMap::new(),
            turn: 0,
        }
    }

    /// The per-user running cap.
    pub fn cap(&self) -> usize {
        self.cap as usize
    }

    /// The user whose oldest job should run next, or None when every user
    /// with waiting jobs is at the cap (or nobody waits). Records the turn:
    /// call it only when a worker is free to claim that user's job.
    pub fn pick(&mut self, users: &[UserQueue]) -> Option<i64> {
        // Forget users with nothing waiting: when they come back they are
        // owed a turn before anyone who has been served while they were away.
        self.served
            .retain(|id, _| users.iter().any(|u| u.owner_id == *id));
        let next = users
            .iter()
            .filter(|u| u.pending > 0 && u.running < self.cap)
            .min_by_key(|u| {
                (
                    u.running,
                    self.served.get(&u.owner_id).copied().unwrap_or(0),
                    u.oldest,
                    u.owner_id,
                )
            })?
            .owner_id;
        self.turn += 1;
        self.served.insert(next, self.turn);
        Some(next)
    }

    /// Users with waiting jobs who are at the cap (for the metrics).
    pub fn capped(&self, users: &[UserQueue]) -> usize {
        users
            .iter()
            .filter(|u| u.pending > 0 && u.running >= self.cap)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    /// A toy queue: per user, the submission times of their waiting jobs.
    struct Sim {
        queues: Vec<(i64, Vec<i64>)>,
        running: HashMap<i64, i64>,
    }

    impl Sim {
        fn users(&self) -> Vec<UserQueue> {
            self.queues
                .iter()
                .filter(|(_, jobs)| !jobs.is_empty())
                .map(|(id, jobs)| UserQueue {
                    owner_id: *id,
                    pending: jobs.len() as i64,
                    running: self.running.get(id).copied().unwrap_or(0),
                    oldest: at(jobs[0]),
                })
                .collect()
        }

        /// Claims for `n` free workers; the users served, in order.
        fn claim(&mut self, q: &mut FairQueue, n: usize) -> Vec<i64> {
            let mut order = Vec::new();
            for _ in 0..n {
                let Some(id) = q.pick(&self.users()) else {
                    break;
                };
                let queue = &mut self.queues.iter_mut().find(|(u, _)| *u == id).unwrap().1;
                queue.remove(0);
                *self.running.entry(id).or_default() += 1;
                order.push(id);
            }
            order
        }

        fn finish(&mut self, id: i64) {
            *self.running.get_mut(&id).unwrap() -= 1;
        }
    }

    #[test]
    fn a_late_user_goes_before_an_earlier_users_backlog() {
        // A queued 64 jobs first; B then one; 4 workers, no effective cap.
        let mut q = FairQueue::new(4);
        let mut sim = Sim {
            queues: vec![(1, (0..64).collect()), (2, vec![100])],
            running: HashMap::new(),
        };
        // Two workers free: one job each, B's although it is the newest.
        assert_eq!(sim.claim(&mut q, 2), vec![1, 2]);
        // B has nothing more: A takes the other workers.
        assert_eq!(sim.claim(&mut q, 2), vec![1, 1]);
        // B submits again while A holds every worker: the next free one is B's.
        sim.queues[1].1.push(200);
        sim.finish(1);
        assert_eq!(sim.claim(&mut q, 1), vec![2]);
    }

    #[test]
    fn busy_users_take_turns() {
        // Three users with long queues share one worker in turn.
        let mut q = FairQueue::new(1);
        let mut sim = Sim {
            queues: vec![
                (1, (0..10).collect()),
                (2, (20..30).collect()),
                (3, (40..50).collect()),
            ],
            running: HashMap::new(),
        };
        let mut order: Vec<i64> = Vec::new();
        for _ in 0..9 {
            let served = sim.claim(&mut q, 1);
            order.extend(&served);
            sim.finish(served[0]);
        }
        assert_eq!(order, vec![1, 2, 3, 1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn the_fewest_running_go_first() {
        let mut q = FairQueue::new(8);
        let users = vec![
            UserQueue {
                owner_id: 1,
                pending: 5,
                running: 3,
                oldest: at(0),
            },
            UserQueue {
                owner_id: 2,
                pending: 5,
                running: 1,
                oldest: at(50),
            },
        ];
        assert_eq!(q.pick(&users), Some(2));
    }

    #[test]
    fn the_cap_holds_a_user_back_even_with_idle_workers() {
        let mut q = FairQueue::new(2);
        let mut sim = Sim {
            queues: vec![(1, (0..10).collect())],
            running: HashMap::new(),
        };
        // Four workers free, but one user gets only two of them.
        assert_eq!(sim.claim(&mut q, 4), vec![1, 1]);
        assert_eq!(q.capped(&sim.users()), 1);
        assert_eq!(q.pick(&sim.users()), None);
        // Another user gets a free worker at once.
        sim.queues.push((2, vec![100]));
        assert_eq!(sim.claim(&mut q, 4), vec![2]);
        // One of the first user's jobs ends: their next one may start.
        sim.finish(1);
        assert_eq!(sim.claim(&mut q, 4), vec![1]);
    }

    #[test]
    fn equal_users_go_in_submission_order_and_a_zero_cap_is_one() {
        let mut q = FairQueue::new(0);
        assert_eq!(q.cap(), 1);
        let mut sim = Sim {
            queues: vec![(7, vec![30]), (3, vec![10]), (5, vec![20])],
            running: HashMap::new(),
        };
        assert_eq!(sim.claim(&mut q, 5), vec![3, 5, 7]);
        assert_eq!(q.pick(&[]), None);
    }

    #[test]
    fn a_user_back_after_an_empty_queue_is_owed_a_turn() {
        let mut q = FairQueue::new(1);
        let mut sim = Sim {
            queues: vec![(1, (0..10).collect()), (2, vec![5])],
            running: HashMap::new(),
        };
        // One worker: A, B, then A again while B has nothing waiting.
        for want in [1, 2, 1, 1] {
            let served = sim.claim(&mut q, 1);
            assert_eq!(served, vec![want]);
            sim.finish(want);
        }
        // B submits again: served next, before A's older backlog.
        sim.queues[1].1.push(500);
        assert_eq!(sim.claim(&mut q, 1), vec![2]);
    }
}
