//! `GET /v1/journeys/{id}`: a journey and how people move through it —
//! entered, reached the goal, finished (exited), and per step: waiting
//! there now, messages decided by status, sends blocked by reason.
//!
//! Entries, goals and exits are counters the follower keeps; waiting and
//! messages are read from the runs and messages stored (a scan: an admin
//! read, not a hot path).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use kairos_deliver::journey::{CompiledJourney, Instruction};
use kairos_store::{Message, MessageStatus};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::Admin;
use crate::problem::Problem;

/// Counts for one step (an instruction of the compiled journey).
#[derive(Default)]
struct StepCounts {
    waiting: u64,
    messages: BTreeMap<String, u64>,
    blocked: BTreeMap<String, u64>,
}

/// `GET /v1/journeys/{id}`
pub async fn get_journey(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let outbox = &state.store.outbox;
    let record = outbox.journey(&id).ok_or_else(|| {
        Problem::not_found(format!("no journey {id}; list them with GET /v1/journeys"))
    })?;
    let compiled = kairos_deliver::journey::compile(
        &record.id,
        &record.name,
        record.starts_after_seq,
        &record.definition,
        |name| {
            let destination = outbox.destination(name)?;
            Some((destination.id, destination.kind))
        },
    )
    .ok();
    let mut steps: BTreeMap<usize, StepCounts> = BTreeMap::new();
    let runs = outbox.runs_in(&record.id)?;
    for run in &runs {
        // A stored run waits at the instruction before its place.
        steps.entry(run.pc.saturating_sub(1)).or_default().waiting += 1;
    }
    for message in outbox.messages_of(&record.id)? {
        let step = steps.entry(step_of(&message)).or_default();
        *step.messages.entry(status(message.status)).or_default() += 1;
        if message.status == MessageStatus::Blocked {
            *step.blocked.entry(reason(&message)).or_default() += 1;
        }
    }
    let counters = outbox.counts(&record.id)?;
    let counter = |name: &str| counters.get(name).copied().unwrap_or(0);
    let mut totals = StepCounts {
        waiting: runs.len() as u64,
        ..StepCounts::default()
    };
    for step in steps.values() {
        add(&mut totals.messages, &step.messages);
        add(&mut totals.blocked, &step.blocked);
    }
    let mut answer = record.definition.clone();
    answer["id"] = json!(record.id);
    answer["name"] = json!(record.name);
    answer["created_at"] = json!(record.created_at);
    answer["paused"] = json!(record.paused);
    answer["counts"] = json!({
        "entered": counter("entered"), "goal_reached": counter("goal_reached"),
        "exited": counter("exited"), "waiting": totals.waiting,
        "messages": totals.messages, "blocked": totals.blocked,
    });
    answer["steps"] = compiled.map_or(json!([]), |compiled| describe_steps(&compiled, &steps));
    Ok(axum::Json(answer).into_response())
}

/// Every step the journey has (jumps are not steps), with its counts.
fn describe_steps(journey: &CompiledJourney, steps: &BTreeMap<usize, StepCounts>) -> Value {
    let empty = StepCounts::default();
    let described: Vec<Value> = journey
        .program
        .iter()
        .enumerate()
        .filter_map(|(index, instruction)| {
            let kind = kind(instruction)?;
            let counts = steps.get(&index).unwrap_or(&empty);
            Some(json!({
                "step": index, "path": journey.paths.get(index), "kind": kind,
                "waiting": counts.waiting, "messages": counts.messages, "blocked": counts.blocked,
            }))
        })
        .collect();
    Value::Array(described)
}

fn kind(instruction: &Instruction) -> Option<&'static str> {
    Some(match instruction {
        Instruction::Send(_) => "send",
        Instruction::Wait(_) => "wait",
        Instruction::WaitFor { .. } => "wait_for",
        Instruction::Branch { .. } => "branch",
        Instruction::WaitUntil(_) => "wait_until",
        Instruction::AddToList(_) => "add_to_list",
        Instruction::SetTrait { .. } => "set_trait",
        Instruction::Jump(_) => return None,
    })
}

/// The step a message was sent at: its id ends with it
/// (`msg_{seq}_{journey}_{step}`).
fn step_of(message: &Message) -> usize {
    message
        .id
        .rsplit('_')
        .next()
        .and_then(|step| step.parse().ok())
        .unwrap_or(0)
}

fn status(status: MessageStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|value| value.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A blocked send's reason without the person's details: "no consent",
/// "frequency cap", "suppressed", "no email address"…
fn reason(message: &Message) -> String {
    let text = message.last_error.as_deref().unwrap_or("unknown");
    text.split(':').next().unwrap_or(text).trim().to_string()
}

fn add(total: &mut BTreeMap<String, u64>, more: &BTreeMap<String, u64>) {
    for (name, count) in more {
        *total.entry(name.clone()).or_default() += count;
    }
}
