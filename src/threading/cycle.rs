//! The search of the wait-for graph: "lock -> owner -> lock that owner waits for -> ..."
//! from the lock a thread wants. Reaching the thread itself again is a cycle: a deadlock.
//!
//! Why a reported cycle is real: each edge is read as "node N is in wait episode s, owns
//! lock L, and is still in episode s", and all episodes are checked again at the end. A
//! thread inside an acquire cannot release anything, so at the moment of the final checks
//! every member of the cycle owns its lock and waits for the next one, and the caller
//! itself is one of them: no one can ever move.

use super::graph::{LockCore, ThreadNode};
use super::DeadlockEdge;
use crate::sync::Arc;
use std::ptr;

/// The longest chain of threads a walk follows before it gives up.
const MAX_CYCLE: usize = 64;

struct Step {
    node: &'static ThreadNode,
    seq: u64,
    waits: Arc<LockCore>,
}

/// Walks the wait-for graph from `wanted`; returns the cycle through `me`, if there is one.
pub(crate) fn find_cycle(
    me: &'static ThreadNode,
    wanted: &Arc<LockCore>,
) -> Option<Vec<DeadlockEdge>> {
    let mut steps: Vec<Step> = Vec::new();
    let mut current = Arc::clone(wanted);
    let mut closed = false;
    for _ in 0..MAX_CYCLE {
        let node = current.owner()?;
        if ptr::eq(node, me) {
            closed = true;
            break;
        }
        let (waits, seq) = node.snapshot()?;
        // Still the owner while in that same wait episode: the edge held during it.
        if !current.owned_by(node) {
            return None;
        }
        match node.snapshot() {
            Some((_, again)) if again == seq => {}
            _ => return None,
        }
        if steps.iter().any(|step| ptr::eq(step.node, node)) {
            // A cycle that does not pass through us: its members report it themselves.
            return None;
        }
        steps.push(Step {
            node,
            seq,
            waits: Arc::clone(&waits),
        });
        current = waits;
    }
    if !closed {
        return None;
    }
    for step in &steps {
        match step.node.snapshot() {
            Some((_, seq)) if seq == step.seq => {}
            _ => return None,
        }
    }
    let mut edges = Vec::with_capacity(steps.len() + 1);
    let holder_of = |index: usize| {
        steps
            .get(index)
            .map_or_else(|| me.name.clone(), |step| step.node.name.clone())
    };
    edges.push(DeadlockEdge {
        thread: me.name.clone(),
        waits_for: wanted.name.clone(),
        held_by: holder_of(0),
    });
    for (index, step) in steps.iter().enumerate() {
        edges.push(DeadlockEdge {
            thread: step.node.name.clone(),
            waits_for: step.waits.name.clone(),
            held_by: holder_of(index + 1),
        });
    }
    Some(edges)
}
