//! Applying events, in order, to the projections the read endpoints use: the state machine.
//!
//! A [`Projector`] starts from the stored rows a batch touches (loaded by the store under the
//! organization's ingest lock), applies each new event in order, and either refuses the batch at
//! the first event its state forbids ([`Conflict`]) or yields the rows to write back.
//!
//! Rules (PolyAI's handoff states, and Baton's decisions where PolyAI is silent):
//! - A session starts once and ends once; ending, or handing off from, a session never started
//!   is a conflict.
//! - Handoffs follow PolyAI: `handoff_initiated → handoff_completed | handoff_failed`,
//!   `handoff_failed → handoff_initiated` (a retry: same `handoff_id`, `attempts` + 1, counted
//!   once, in the bucket of its first initiation). Custom topic states (`handoff.state`) apply
//!   while the handoff is open (initiated or in a custom state) and may be followed by
//!   completion or failure; a completed handoff is final.
//! - Baton adds `handoff_abandoned` (`handoff.abandoned`: the customer left before a person
//!   accepted): from an open handoff only, and final like a completion (no retry: a customer who
//!   comes back starts a new handoff). A failed handoff is not open, so it cannot be abandoned.
//! - A retry keeps the handoff's session and first initiation time; its reasons and references
//!   are added to the handoff's, and its destination, summary, explanation, sentiment and shared
//!   id replace the stored ones when given. `data` objects are merged key by key (later keys win).
//! - `shared_id` is unique per organization. A call id is recorded once.
//! - An agent deleted keeps its last name; an agent never declared is named by its id.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::events::{
    AgentDeleted, AgentStatus, AgentUpserted, CallCompleted, Channel, Event, EventKind,
    HandoffAbandoned, HandoffCompleted, HandoffFailed, HandoffInitiated, HandoffState, Reason,
    Reference, SessionEnded, SessionStarted, states,
};

/// A stored session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    /// Its id.
    pub session_id: String,
    /// Its channel.
    pub channel: Channel,
    /// Its agent (project).
    pub agent_id: Option<String>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// Final sentiment.
    pub sentiment: Option<String>,
}

/// A stored handoff.
#[derive(Debug, Clone, PartialEq)]
pub struct HandoffRow {
    /// Its id.
    pub handoff_id: String,
    /// Its session.
    pub session_id: String,
    /// The id shared with the client's systems.
    pub shared_id: Option<String>,
    /// Current state.
    pub state: String,
    /// Initiations (1 + retries).
    pub attempts: i32,
    /// State changes recorded so far (numbering of the history).
    pub transitions: i32,
    /// Reasons (distinct, first-seen order).
    pub reasons: Vec<Reason>,
    /// Sentiment at handoff.
    pub sentiment: Option<String>,
    /// Where it was sent.
    pub destination: Option<String>,
    /// Summary for the human.
    pub summary: Option<String>,
    /// The AI's reasoning for handing off.
    pub explanation: Option<String>,
    /// PolyAI handoff state payload.
    pub data: Map<String, Value>,
    /// The human who took it.
    pub operator_id: Option<String>,
    /// The last failure's message.
    pub error: Option<String>,
    /// First initiation.
    pub initiated_at: DateTime<Utc>,
    /// Latest initiation.
    pub last_initiated_at: DateTime<Utc>,
    /// Completion.
    pub completed_at: Option<DateTime<Utc>>,
    /// Latest failure.
    pub failed_at: Option<DateTime<Utc>>,
    /// Latest change.
    pub updated_at: DateTime<Utc>,
}

/// A stored agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRow {
    /// Its id.
    pub agent_id: String,
    /// Its (last) name.
    pub name: String,
    /// Its status.
    pub status: AgentStatus,
    /// When it was deleted.
    pub deleted_at: Option<DateTime<Utc>>,
}

/// One entry of a handoff's state history.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The handoff.
    pub handoff_id: String,
    /// 1, 2, … per handoff.
    pub seq: i32,
    /// The state entered.
    pub state: String,
    /// When.
    pub occurred_at: DateTime<Utc>,
    /// The event that caused it.
    pub event_id: String,
}

/// Why a batch was refused: the first event the stored state forbids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// Index of the event in the batch.
    pub index: usize,
    /// The event's id.
    pub event_id: String,
    /// What the state forbids.
    pub message: String,
}

/// The stored rows a batch touches, as loaded before applying it.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Sessions by id.
    pub sessions: HashMap<String, SessionRow>,
    /// Handoffs by id.
    pub handoffs: HashMap<String, HandoffRow>,
    /// `shared_id → handoff_id` of stored handoffs whose shared id the batch names.
    pub shared_ids: HashMap<String, String>,
    /// Agents by id.
    pub agents: HashMap<String, AgentRow>,
    /// Call ids already recorded.
    pub calls: HashSet<String>,
}

/// What applying a batch produced: the rows to write back.
#[derive(Debug, Default)]
pub struct Changes {
    /// Sessions created or changed.
    pub sessions: Vec<SessionRow>,
    /// Handoffs created or changed.
    pub handoffs: Vec<HandoffRow>,
    /// New history entries.
    pub transitions: Vec<Transition>,
    /// New `(handoff_id, reference)` pairs (after the store writes them: only those it stored,
    /// without pairs stored by an earlier batch).
    pub references: Vec<(String, Reference)>,
    /// Agents created or changed.
    pub agents: Vec<AgentRow>,
    /// New calls.
    pub calls: Vec<CallCompleted>,
    /// For each handoff first initiated in this batch: its id (for rollups).
    pub new_handoffs: Vec<String>,
    /// The stored state, before this batch, of the changed sessions that existed already
    /// (rollups subtract it and add the new state).
    pub sessions_before: HashMap<String, SessionRow>,
    /// The stored state, before this batch, of the changed handoffs that existed already.
    pub handoffs_before: HashMap<String, HandoffRow>,
}

/// Applies events in order over loaded rows.
#[derive(Debug)]
pub struct Projector {
    loaded: Loaded,
    original_sessions: HashMap<String, SessionRow>,
    original_handoffs: HashMap<String, HandoffRow>,
    dirty_sessions: Dirty,
    dirty_handoffs: Dirty,
    dirty_agents: Dirty,
    changes: Changes,
}

/// Ids touched by a batch, in first-touch order.
#[derive(Debug, Default)]
struct Dirty {
    order: Vec<String>,
    seen: HashSet<String>,
}

impl Dirty {
    fn mark(&mut self, id: &str) {
        if !self.seen.contains(id) {
            self.seen.insert(id.to_owned());
            self.order.push(id.to_owned());
        }
    }
}

impl Projector {
    /// Starts from the stored rows.
    pub fn new(loaded: Loaded) -> Projector {
        Projector {
            original_sessions: loaded.sessions.clone(),
            original_handoffs: loaded.handoffs.clone(),
            loaded,
            dirty_sessions: Dirty::default(),
            dirty_handoffs: Dirty::default(),
            dirty_agents: Dirty::default(),
            changes: Changes::default(),
        }
    }

    /// Applies the event at `index` of the batch.
    pub fn apply(&mut self, index: usize, event: &Event) -> Result<(), Conflict> {
        let conflict = |message: String| Conflict {
            index,
            event_id: event.id.clone(),
            message,
        };
        let at = event.occurred_at;
        match &event.kind {
            EventKind::SessionStarted(SessionStarted {
                session_id,
                channel,
                agent_id,
            }) => {
                if self.loaded.sessions.contains_key(session_id) {
                    return Err(conflict(format!(
                        "session `{session_id}` has already started"
                    )));
                }
                self.loaded.sessions.insert(
                    session_id.clone(),
                    SessionRow {
                        session_id: session_id.clone(),
                        channel: *channel,
                        agent_id: agent_id.clone(),
                        started_at: at,
                        ended_at: None,
                        sentiment: None,
                    },
                );
                self.dirty_sessions.mark(session_id);
            }
            EventKind::SessionEnded(SessionEnded {
                session_id,
                sentiment,
            }) => {
                let Some(session) = self.loaded.sessions.get_mut(session_id) else {
                    return Err(conflict(format!(
                        "session `{session_id}` was never started"
                    )));
                };
                if session.ended_at.is_some() {
                    return Err(conflict(format!(
                        "session `{session_id}` has already ended"
                    )));
                }
                session.ended_at = Some(at);
                session.sentiment = sentiment.clone();
                self.dirty_sessions.mark(session_id);
            }
            EventKind::HandoffInitiated(h) => self.initiate(h, event, at).map_err(conflict)?,
            EventKind::HandoffCompleted(HandoffCompleted {
                handoff_id,
                operator_id,
            }) => {
                let h = self
                    .open_handoff(handoff_id, "handoff.completed")
                    .map_err(conflict)?;
                h.state = states::COMPLETED.to_owned();
                h.completed_at = Some(at);
                h.operator_id = operator_id.clone();
                self.transition(handoff_id, states::COMPLETED, event);
            }
            EventKind::HandoffFailed(HandoffFailed { handoff_id, error }) => {
                let h = self
                    .open_handoff(handoff_id, "handoff.failed")
                    .map_err(conflict)?;
                h.state = states::FAILED.to_owned();
                h.failed_at = Some(at);
                h.error = error.clone();
                self.transition(handoff_id, states::FAILED, event);
            }
            EventKind::HandoffAbandoned(HandoffAbandoned { handoff_id }) => {
                let h = self
                    .open_handoff(handoff_id, "handoff.abandoned")
                    .map_err(conflict)?;
                h.state = states::ABANDONED.to_owned();
                self.transition(handoff_id, states::ABANDONED, event);
            }
            EventKind::HandoffState(HandoffState {
                handoff_id,
                state,
                data,
            }) => {
                let h = self
                    .open_handoff(handoff_id, "handoff.state")
                    .map_err(conflict)?;
                h.state = state.clone();
                if let Some(data) = data {
                    merge(&mut h.data, data);
                }
                self.transition(handoff_id, state, event);
            }
            EventKind::AgentUpserted(AgentUpserted {
                agent_id,
                name,
                status,
            }) => {
                self.loaded.agents.insert(
                    agent_id.clone(),
                    AgentRow {
                        agent_id: agent_id.clone(),
                        name: name.clone(),
                        status: *status,
                        deleted_at: None,
                    },
                );
                self.dirty_agents.mark(agent_id);
            }
            EventKind::AgentDeleted(AgentDeleted { agent_id }) => {
                let agent = self
                    .loaded
                    .agents
                    .entry(agent_id.clone())
                    .or_insert_with(|| AgentRow {
                        agent_id: agent_id.clone(),
                        name: agent_id.clone(),
                        status: AgentStatus::Active,
                        deleted_at: None,
                    });
                agent.deleted_at.get_or_insert(at);
                self.dirty_agents.mark(agent_id);
            }
            EventKind::CallCompleted(call) => {
                if !self.loaded.calls.insert(call.call_id.clone()) {
                    return Err(conflict(format!(
                        "call `{}` is already recorded",
                        call.call_id
                    )));
                }
                self.changes.calls.push(call.clone());
            }
        }
        Ok(())
    }

    fn initiate(
        &mut self,
        h: &HandoffInitiated,
        event: &Event,
        at: DateTime<Utc>,
    ) -> Result<(), String> {
        if !self.loaded.sessions.contains_key(&h.session_id) {
            return Err(format!(
                "session `{}` was never started; send session.started first",
                h.session_id
            ));
        }
        if let Some(shared) = &h.shared_id
            && let Some(owner) = self.loaded.shared_ids.get(shared)
            && owner != &h.handoff_id
        {
            return Err(format!(
                "shared_id `{shared}` already belongs to handoff `{owner}`"
            ));
        }
        match self.loaded.handoffs.get_mut(&h.handoff_id) {
            Some(existing) => {
                if existing.state != states::FAILED {
                    return Err(format!(
                        "handoff `{}` is {}; handoff.initiated may only start a new handoff or retry a failed one",
                        h.handoff_id, existing.state
                    ));
                }
                if existing.session_id != h.session_id {
                    return Err(format!(
                        "handoff `{}` belongs to session `{}`, not `{}`",
                        h.handoff_id, existing.session_id, h.session_id
                    ));
                }
                if let Some(old) = &existing.shared_id
                    && h.shared_id.as_ref().is_some_and(|s| s != old)
                {
                    return Err(format!(
                        "handoff `{}` already has shared_id `{old}`",
                        h.handoff_id
                    ));
                }
                existing.attempts += 1;
                existing.state = states::INITIATED.to_owned();
                existing.last_initiated_at = at;
                for r in &h.reasons {
                    if !existing.reasons.contains(r) {
                        existing.reasons.push(*r);
                    }
                }
                replace_if_some(&mut existing.shared_id, &h.shared_id);
                replace_if_some(&mut existing.sentiment, &h.sentiment);
                replace_if_some(&mut existing.destination, &h.destination);
                replace_if_some(&mut existing.summary, &h.summary);
                replace_if_some(&mut existing.explanation, &h.explanation);
                if let Some(data) = &h.data {
                    merge(&mut existing.data, data);
                }
            }
            None => {
                self.loaded.handoffs.insert(
                    h.handoff_id.clone(),
                    HandoffRow {
                        handoff_id: h.handoff_id.clone(),
                        session_id: h.session_id.clone(),
                        shared_id: h.shared_id.clone(),
                        state: states::INITIATED.to_owned(),
                        attempts: 1,
                        transitions: 0,
                        reasons: h.reasons.clone(),
                        sentiment: h.sentiment.clone(),
                        destination: h.destination.clone(),
                        summary: h.summary.clone(),
                        explanation: h.explanation.clone(),
                        data: h.data.clone().unwrap_or_default(),
                        operator_id: None,
                        error: None,
                        initiated_at: at,
                        last_initiated_at: at,
                        completed_at: None,
                        failed_at: None,
                        updated_at: at,
                    },
                );
                self.changes.new_handoffs.push(h.handoff_id.clone());
            }
        }
        if let Some(shared) = &h.shared_id {
            self.loaded
                .shared_ids
                .insert(shared.clone(), h.handoff_id.clone());
        }
        for r in &h.references {
            self.changes
                .references
                .push((h.handoff_id.clone(), r.clone()));
        }
        self.transition(&h.handoff_id, states::INITIATED, event);
        Ok(())
    }

    /// The handoff, which must exist and be open (initiated or in a custom state).
    fn open_handoff(&mut self, handoff_id: &str, what: &str) -> Result<&mut HandoffRow, String> {
        let Some(h) = self.loaded.handoffs.get_mut(handoff_id) else {
            return Err(format!("handoff `{handoff_id}` was never initiated"));
        };
        if [states::COMPLETED, states::FAILED, states::ABANDONED].contains(&h.state.as_str()) {
            return Err(format!(
                "handoff `{handoff_id}` is {}; {what} is not allowed from there",
                h.state
            ));
        }
        Ok(h)
    }

    fn transition(&mut self, handoff_id: &str, state: &str, event: &Event) {
        if let Some(h) = self.loaded.handoffs.get_mut(handoff_id) {
            h.transitions += 1;
            h.updated_at = event.occurred_at;
            self.changes.transitions.push(Transition {
                handoff_id: handoff_id.to_owned(),
                seq: h.transitions,
                state: state.to_owned(),
                occurred_at: event.occurred_at,
                event_id: event.id.clone(),
            });
        }
        self.dirty_handoffs.mark(handoff_id);
    }

    /// The rows to write back.
    pub fn finish(mut self) -> Changes {
        for id in &self.dirty_sessions.order {
            if let Some(before) = self.original_sessions.remove(id) {
                self.changes.sessions_before.insert(id.clone(), before);
            }
            if let Some(s) = self.loaded.sessions.remove(id) {
                self.changes.sessions.push(s);
            }
        }
        for id in &self.dirty_handoffs.order {
            if let Some(before) = self.original_handoffs.remove(id) {
                self.changes.handoffs_before.insert(id.clone(), before);
            }
            if let Some(h) = self.loaded.handoffs.remove(id) {
                self.changes.handoffs.push(h);
            }
        }
        for id in &self.dirty_agents.order {
            if let Some(a) = self.loaded.agents.remove(id) {
                self.changes.agents.push(a);
            }
        }
        self.changes
    }
}

fn replace_if_some(slot: &mut Option<String>, new: &Option<String>) {
    if new.is_some() {
        slot.clone_from(new);
    }
}

/// Shallow merge: every key of `new` replaces the same key of `into`.
pub fn merge(into: &mut Map<String, Value>, new: &Map<String, Value>) {
    for (k, v) in new {
        into.insert(k.clone(), v.clone());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;
    use crate::domain::events::validate;

    /// One event from its wire form.
    fn event(value: serde_json::Value) -> Event {
        let mut problems = Vec::new();
        let e = validate(&value, "e", &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        e.unwrap()
    }

    fn at(minute: u32) -> String {
        format!("2026-11-01T10:{minute:02}:00Z")
    }

    /// The events that bring handoff `h` of session `s` to `state` (none: never initiated).
    fn reach(state: Option<&str>) -> Vec<Event> {
        let mut events = vec![event(json!({"id": "s", "type": "session.started",
            "occurred_at": at(0), "session_id": "s", "channel": "web"}))];
        let Some(state) = state else { return events };
        events.push(event(
            json!({"id": "i", "type": "handoff.initiated", "occurred_at": at(1),
            "handoff_id": "h", "session_id": "s", "reasons": ["insufficient_knowledge"]}),
        ));
        match state {
            states::INITIATED => {}
            states::COMPLETED => events.push(event(json!({"id": "c", "type": "handoff.completed",
                "occurred_at": at(2), "handoff_id": "h"}))),
            states::FAILED => events.push(event(json!({"id": "f", "type": "handoff.failed",
                "occurred_at": at(2), "handoff_id": "h", "error": "no agent"}))),
            states::ABANDONED => events.push(event(json!({"id": "a", "type": "handoff.abandoned",
                "occurred_at": at(2), "handoff_id": "h"}))),
            custom => events.push(event(json!({"id": "t", "type": "handoff.state",
                "occurred_at": at(2), "handoff_id": "h", "state": custom}))),
        }
        events
    }

    /// Each event the state machine can meet, as it would arrive next.
    fn next(kind: &str) -> Event {
        match kind {
            "initiated" => event(json!({"id": "next", "type": "handoff.initiated",
                "occurred_at": at(5), "handoff_id": "h", "session_id": "s",
                "reasons": ["user_requested_human_assistance"]})),
            "completed" => event(json!({"id": "next", "type": "handoff.completed",
                "occurred_at": at(5), "handoff_id": "h", "operator_id": "op"})),
            "failed" => event(json!({"id": "next", "type": "handoff.failed",
                "occurred_at": at(5), "handoff_id": "h"})),
            "state" => event(json!({"id": "next", "type": "handoff.state",
                "occurred_at": at(5), "handoff_id": "h", "state": "in_review"})),
            "abandoned" => event(json!({"id": "next", "type": "handoff.abandoned",
                "occurred_at": at(5), "handoff_id": "h"})),
            other => unreachable!("{other}"),
        }
    }

    /// State × event → the state after it, or `None` for a refused event (a conflict).
    #[test]
    fn handoff_state_machine() {
        const REFUSED: Option<&str> = None;
        let table: &[(Option<&str>, &str, Option<&str>)] = &[
            (None, "initiated", Some(states::INITIATED)),
            (None, "completed", REFUSED),
            (None, "failed", REFUSED),
            (None, "state", REFUSED),
            (Some(states::INITIATED), "initiated", REFUSED),
            (
                Some(states::INITIATED),
                "completed",
                Some(states::COMPLETED),
            ),
            (Some(states::INITIATED), "failed", Some(states::FAILED)),
            (Some(states::INITIATED), "state", Some("in_review")),
            (Some(states::COMPLETED), "initiated", REFUSED),
            (Some(states::COMPLETED), "completed", REFUSED),
            (Some(states::COMPLETED), "failed", REFUSED),
            (Some(states::COMPLETED), "state", REFUSED),
            (Some(states::FAILED), "initiated", Some(states::INITIATED)),
            (Some(states::FAILED), "completed", REFUSED),
            (Some(states::FAILED), "failed", REFUSED),
            (Some(states::FAILED), "state", REFUSED),
            (Some("customer_refund"), "initiated", REFUSED),
            (
                Some("customer_refund"),
                "completed",
                Some(states::COMPLETED),
            ),
            (Some("customer_refund"), "failed", Some(states::FAILED)),
            (Some("customer_refund"), "state", Some("in_review")),
        ];
        for &(before, kind, after) in table {
            let mut projector = Projector::new(Loaded::default());
            for (i, e) in reach(before).iter().enumerate() {
                projector.apply(i, e).unwrap();
            }
            let outcome = projector.apply(99, &next(kind));
            match after {
                Some(state) => {
                    outcome.unwrap_or_else(|c| panic!("{before:?} + {kind}: {c:?}"));
                    let h = &projector.loaded.handoffs["h"];
                    assert_eq!(h.state, state, "{before:?} + {kind}");
                }
                None => {
                    let c = outcome.expect_err(&format!("{before:?} + {kind} must be refused"));
                    assert_eq!((c.index, c.event_id.as_str()), (99, "next"));
                }
            }
        }
    }

    /// What a cell of the state machine's table expects.
    #[derive(Debug)]
    enum Outcome {
        /// Accepted: the handoff's state, attempts and history length after the event.
        Now(&'static str, i32, i32),
        /// Refused with this message.
        Refused(&'static str),
    }

    /// Every state × every handoff event, each answer written out by hand: the state reached,
    /// `attempts` and the number of history entries, or the conflict's message.
    #[test]
    fn every_cell_of_the_handoff_state_machine() {
        use Outcome::{Now, Refused};
        const CUSTOM: &str = "customer_refund";
        let table: &[(Option<&str>, &str, Outcome)] = &[
            (None, "initiated", Now("handoff_initiated", 1, 1)),
            (
                None,
                "completed",
                Refused("handoff `h` was never initiated"),
            ),
            (None, "failed", Refused("handoff `h` was never initiated")),
            (None, "state", Refused("handoff `h` was never initiated")),
            (
                None,
                "abandoned",
                Refused("handoff `h` was never initiated"),
            ),
            (
                Some(states::INITIATED),
                "initiated",
                Refused(
                    "handoff `h` is handoff_initiated; handoff.initiated may only start a new handoff or retry a failed one",
                ),
            ),
            (
                Some(states::INITIATED),
                "completed",
                Now("handoff_completed", 1, 2),
            ),
            (
                Some(states::INITIATED),
                "failed",
                Now("handoff_failed", 1, 2),
            ),
            (Some(states::INITIATED), "state", Now("in_review", 1, 2)),
            (
                Some(states::INITIATED),
                "abandoned",
                Now("handoff_abandoned", 1, 2),
            ),
            (
                Some(states::COMPLETED),
                "initiated",
                Refused(
                    "handoff `h` is handoff_completed; handoff.initiated may only start a new handoff or retry a failed one",
                ),
            ),
            (
                Some(states::COMPLETED),
                "completed",
                Refused(
                    "handoff `h` is handoff_completed; handoff.completed is not allowed from there",
                ),
            ),
            (
                Some(states::COMPLETED),
                "failed",
                Refused(
                    "handoff `h` is handoff_completed; handoff.failed is not allowed from there",
                ),
            ),
            (
                Some(states::COMPLETED),
                "state",
                Refused(
                    "handoff `h` is handoff_completed; handoff.state is not allowed from there",
                ),
            ),
            (
                Some(states::COMPLETED),
                "abandoned",
                Refused(
                    "handoff `h` is handoff_completed; handoff.abandoned is not allowed from there",
                ),
            ),
            (
                Some(states::FAILED),
                "initiated",
                Now("handoff_initiated", 2, 3),
            ),
            (
                Some(states::FAILED),
                "completed",
                Refused(
                    "handoff `h` is handoff_failed; handoff.completed is not allowed from there",
                ),
            ),
            (
                Some(states::FAILED),
                "failed",
                Refused("handoff `h` is handoff_failed; handoff.failed is not allowed from there"),
            ),
            (
                Some(states::FAILED),
                "state",
                Refused("handoff `h` is handoff_failed; handoff.state is not allowed from there"),
            ),
            (
                Some(states::FAILED),
                "abandoned",
                Refused(
                    "handoff `h` is handoff_failed; handoff.abandoned is not allowed from there",
                ),
            ),
            (
                Some(states::ABANDONED),
                "initiated",
                Refused(
                    "handoff `h` is handoff_abandoned; handoff.initiated may only start a new handoff or retry a failed one",
                ),
            ),
            (
                Some(states::ABANDONED),
                "completed",
                Refused(
                    "handoff `h` is handoff_abandoned; handoff.completed is not allowed from there",
                ),
            ),
            (
                Some(states::ABANDONED),
                "failed",
                Refused(
                    "handoff `h` is handoff_abandoned; handoff.failed is not allowed from there",
                ),
            ),
            (
                Some(states::ABANDONED),
                "state",
                Refused(
                    "handoff `h` is handoff_abandoned; handoff.state is not allowed from there",
                ),
            ),
            (
                Some(states::ABANDONED),
                "abandoned",
                Refused(
                    "handoff `h` is handoff_abandoned; handoff.abandoned is not allowed from there",
                ),
            ),
            (
                Some(CUSTOM),
                "initiated",
                Refused(
                    "handoff `h` is customer_refund; handoff.initiated may only start a new handoff or retry a failed one",
                ),
            ),
            (Some(CUSTOM), "completed", Now("handoff_completed", 1, 3)),
            (Some(CUSTOM), "failed", Now("handoff_failed", 1, 3)),
            (Some(CUSTOM), "state", Now("in_review", 1, 3)),
            (Some(CUSTOM), "abandoned", Now("handoff_abandoned", 1, 3)),
        ];
        for (before, kind, expected) in table {
            let mut projector = Projector::new(Loaded::default());
            for (i, e) in reach(*before).iter().enumerate() {
                projector.apply(i, e).unwrap();
            }
            let outcome = projector.apply(99, &next(kind));
            let cell = format!("{before:?} + {kind}");
            match (expected, outcome) {
                (Now(state, attempts, history), Ok(())) => {
                    let h = &projector.loaded.handoffs["h"];
                    assert_eq!(
                        (h.state.as_str(), h.attempts, h.transitions),
                        (*state, *attempts, *history),
                        "{cell}"
                    );
                    let changes = projector.finish();
                    assert_eq!(changes.transitions.len(), *history as usize, "{cell}");
                    assert_eq!(changes.transitions.last().unwrap().state, *state, "{cell}");
                }
                (Refused(message), Err(c)) => {
                    assert_eq!(
                        (c.index, c.event_id.as_str(), c.message.as_str()),
                        (99, "next", *message),
                        "{cell}"
                    );
                }
                (expected, got) => panic!("{cell}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    /// Every session state × every event that names a session: accepted or the conflict.
    #[test]
    fn every_cell_of_the_session_state_machine() {
        let started = || {
            event(
                json!({"id": "next", "type": "session.started", "occurred_at": at(5),
                "session_id": "s", "channel": "web"}),
            )
        };
        let ended = || {
            event(
                json!({"id": "next", "type": "session.ended", "occurred_at": at(5),
                "session_id": "s", "sentiment": "calm"}),
            )
        };
        let handoff = || {
            event(
                json!({"id": "next", "type": "handoff.initiated", "occurred_at": at(5),
                "handoff_id": "h", "session_id": "s", "reasons": ["ai_implied_handoff"]}),
            )
        };
        // (events before, event, None: accepted; Some: the conflict's message)
        let none: Vec<Event> = vec![];
        let open = vec![started().with_id("a")];
        let closed = vec![started().with_id("a"), ended().with_id("b")];
        let table: &[(&Vec<Event>, Event, Option<&str>)] = &[
            (&none, started(), None),
            (&none, ended(), Some("session `s` was never started")),
            (
                &none,
                handoff(),
                Some("session `s` was never started; send session.started first"),
            ),
            (&open, started(), Some("session `s` has already started")),
            (&open, ended(), None),
            (&open, handoff(), None),
            (&closed, started(), Some("session `s` has already started")),
            (&closed, ended(), Some("session `s` has already ended")),
            // A handoff may arrive after its session's end (events are applied as sent).
            (&closed, handoff(), None),
        ];
        for (i, (before, e, expected)) in table.iter().enumerate() {
            let mut projector = Projector::new(Loaded::default());
            for (j, b) in before.iter().enumerate() {
                projector.apply(j, b).unwrap();
            }
            let got = projector.apply(9, e).err().map(|c| c.message);
            assert_eq!(got.as_deref(), *expected, "row {i}");
        }
    }

    #[test]
    fn calls_are_recorded_once_and_agents_keep_their_last_name() {
        let call = event(
            json!({"id": "c", "type": "call.completed", "occurred_at": at(3),
            "call_id": "c1", "agent_id": "a1", "started_at": at(1), "duration_seconds": 120,
            "outcome": "resolved"}),
        );
        let upsert = event(
            json!({"id": "u", "type": "agent.upserted", "occurred_at": at(0),
            "agent_id": "a1", "name": "Ada", "status": "active"}),
        );
        let delete = event(
            json!({"id": "d", "type": "agent.deleted", "occurred_at": at(4),
            "agent_id": "a1"}),
        );
        let ghost = event(
            json!({"id": "g", "type": "agent.deleted", "occurred_at": at(4),
            "agent_id": "a2"}),
        );
        let mut projector = Projector::new(Loaded::default());
        projector.apply(0, &call).unwrap();
        let again = projector
            .apply(1, &call.clone().with_id("c-again"))
            .unwrap_err();
        assert_eq!(again.message, "call `c1` is already recorded");
        projector.apply(2, &upsert).unwrap();
        projector.apply(3, &delete).unwrap();
        projector.apply(4, &ghost).unwrap();
        let changes = projector.finish();
        assert_eq!(changes.calls.len(), 1);
        let agents: Vec<(&str, &str, bool)> = changes
            .agents
            .iter()
            .map(|a| (a.agent_id.as_str(), a.name.as_str(), a.deleted_at.is_some()))
            .collect();
        assert_eq!(agents, [("a1", "Ada", true), ("a2", "a2", true)]);
    }

    #[test]
    fn a_retry_is_the_same_handoff_counted_once_from_its_first_initiation() {
        let mut projector = Projector::new(Loaded::default());
        let mut events = reach(Some(states::FAILED));
        events.push(next("initiated"));
        events.push(next("completed").with_id("done"));
        for (i, e) in events.iter().enumerate() {
            projector.apply(i, e).unwrap();
        }
        let h = projector.loaded.handoffs["h"].clone();
        assert_eq!(h.attempts, 2);
        assert_eq!(h.initiated_at.to_rfc3339(), "2026-11-01T10:01:00+00:00");
        assert_eq!(
            h.last_initiated_at.to_rfc3339(),
            "2026-11-01T10:05:00+00:00"
        );
        assert_eq!(
            h.reasons,
            vec![
                Reason::InsufficientKnowledge,
                Reason::UserRequestedHumanAssistance
            ]
        );
        let changes = projector.finish();
        // One new handoff, four states in its history: initiated, failed, initiated, completed.
        assert_eq!(changes.new_handoffs, vec!["h".to_owned()]);
        let history: Vec<&str> = changes
            .transitions
            .iter()
            .map(|t| t.state.as_str())
            .collect();
        assert_eq!(
            history,
            [
                states::INITIATED,
                states::FAILED,
                states::INITIATED,
                states::COMPLETED
            ]
        );
    }

    #[test]
    fn a_retry_replaces_the_explanation_only_when_it_gives_one() {
        let with = |id: &str, explanation: Option<&str>, minute: u32| {
            let mut e = json!({"id": id, "type": "handoff.initiated", "occurred_at": at(minute),
                "handoff_id": "h", "session_id": "s", "reasons": ["ai_implied_handoff"]});
            if let Some(x) = explanation {
                e["explanation"] = json!(x);
            }
            event(e)
        };
        let fail = |id: &str, minute: u32| {
            event(
                json!({"id": id, "type": "handoff.failed", "occurred_at": at(minute),
                "handoff_id": "h"}),
            )
        };
        let mut projector = Projector::new(Loaded::default());
        let events = [
            reach(None).remove(0),
            with("i1", Some("first reasoning"), 1),
            fail("f1", 2),
            with("i2", None, 3),
        ];
        for (i, e) in events.iter().enumerate() {
            projector.apply(i, e).unwrap();
        }
        assert_eq!(
            projector.loaded.handoffs["h"].explanation.as_deref(),
            Some("first reasoning")
        );
        projector.apply(4, &fail("f2", 4)).unwrap();
        projector
            .apply(5, &with("i3", Some("second reasoning"), 5))
            .unwrap();
        assert_eq!(
            projector.loaded.handoffs["h"].explanation.as_deref(),
            Some("second reasoning")
        );
    }

    #[test]
    fn sessions_start_once_and_end_once() {
        let start = event(
            json!({"id": "a", "type": "session.started", "occurred_at": at(0),
            "session_id": "s", "channel": "web"}),
        );
        let end = event(
            json!({"id": "b", "type": "session.ended", "occurred_at": at(1),
            "session_id": "s"}),
        );
        let mut projector = Projector::new(Loaded::default());
        assert!(projector.apply(0, &end).is_err(), "ended before it started");
        projector.apply(1, &start).unwrap();
        assert!(projector.apply(2, &start).is_err(), "started twice");
        projector.apply(3, &end).unwrap();
        assert!(projector.apply(4, &end).is_err(), "ended twice");
    }

    impl Event {
        fn with_id(mut self, id: &str) -> Event {
            self.id = id.to_owned();
            self
        }
    }
}
