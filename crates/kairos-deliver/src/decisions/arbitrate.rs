//! Arbitration, explicit and inspectable (Pega's order): every offer goes
//! through eligibility → applicability (placement, channel, validity,
//! budget) → suitability (consent, caps, dismissal blackout) → priority =
//! propensity × value × context weight × lever → constraints on the top k
//! (one offer per exclusive group, at most `max_per_category` per
//! category). Each candidate's fate is recorded for `explain`.
//!
//! Pure: the caller supplies the person, each offer's counts and the
//! person's history with it, and the random source for Thompson sampling.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use kairos_core::audience::eval::{PersonFacts, evaluate};
use kairos_store::{OfferHistory, OfferStats};
use serde::Serialize;
use serde_json::Value;

use super::bandit::{Posterior, Random};
use super::offer::{Eligibility, Offer};

/// What a decision is asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub placement: String,
    /// Only offers with content for this channel (its content is returned).
    pub channel: Option<String>,
    /// Without `channel`: the content returned when the offer has it
    /// (default `web`), else the offer's first.
    pub prefer_channel: Option<String>,
    /// Weights by category or tag (`{"shoes": 2}`): the context weight.
    pub weights: BTreeMap<String, f64>,
    pub limit: usize,
    pub max_per_category: Option<usize>,
    /// Draw adaptive propensities (Thompson sampling: explores offers with
    /// few responses); `false`: rank by the posterior mean (greedy, the
    /// same answer for the same state — e.g. for an email sent once).
    pub explore: bool,
    /// Whether content may read the person's traits: not for a page that
    /// proved no identity (a write key is public; docs/decisions.md).
    pub personal: bool,
    pub now: Timestamp,
    /// What content templates' `recommendations(...)` answer.
    pub recommendations: Option<crate::render::Recommendations>,
    /// The person's group in an experiment (exposing them at the first
    /// call), for offers whose content is tested; `None`: the offers'
    /// own content.
    pub experiments: Option<Assigner>,
}

/// The person's group in the experiment named (`Ok(None)`: stopped before
/// they were exposed).
#[derive(Clone)]
pub struct Assigner(pub std::sync::Arc<AssignFn>);

/// See [`Assigner`].
pub type AssignFn = dyn Fn(&str) -> Result<Option<String>, String> + Send + Sync;

impl std::fmt::Debug for Assigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Assigner")
    }
}

/// One offer as the person and the decision see it.
pub struct Candidate<'a> {
    pub offer: &'a Offer,
    /// Counts in this placement (the adaptive propensity learns from them).
    pub stats: OfferStats,
    /// Impressions in all placements (the budget counts them).
    pub impressions_total: u64,
    pub history: OfferHistory,
    /// The items recommended for an offer that shows items (none: the
    /// offer does not apply).
    pub items: Vec<Value>,
}

/// What arbitration said about one candidate. The offer's name and id are
/// filled in only when the decision is explained (a decision arbitrates
/// every offer; naming each would cost two allocations apiece).
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub offer: String,
    pub offer_id: String,
    /// The candidate's position in the catalog.
    #[serde(skip)]
    pub index: usize,
    /// `eligibility`, `applicability`, `suitability`, `constraints` (dropped
    /// there), or `ranked`.
    pub stage: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub propensity: Option<Propensity>,
    pub value: f64,
    pub weight: f64,
    pub lever: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank: Option<usize>,
}

/// Where a propensity came from and what it was.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Propensity {
    /// The value priority used (a Thompson sample, or the model's score).
    pub value: f64,
    /// The posterior mean (adaptive), or the score again.
    pub mean: f64,
    /// `adaptive` (Beta(1 + clicks, 1 + impressions − clicks)) or `score`.
    pub source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta: Option<f64>,
}

/// The chosen offers (best first) and every candidate's verdict.
pub struct Arbitrated {
    pub chosen: Vec<usize>,
    pub verdicts: Vec<Verdict>,
}

/// Arbitrates `candidates` for the person (`facts`, `consent`) and the
/// request; `random` draws the Thompson samples.
pub fn arbitrate(
    candidates: &[Candidate<'_>],
    facts: &PersonFacts,
    consent: &BTreeMap<String, bool>,
    request: &Request,
    random: &mut Random,
) -> Arbitrated {
    let mut verdicts: Vec<Verdict> = Vec::with_capacity(candidates.len());
    let mut scored: Vec<(usize, f64)> = Vec::new();
    for (index, candidate) in candidates.iter().enumerate() {
        let offer = candidate.offer;
        let weight = context_weight(offer, &request.weights);
        let mut verdict = Verdict {
            offer: String::new(),
            offer_id: String::new(),
            index,
            stage: "ranked",
            reason: None,
            propensity: None,
            value: offer.value,
            weight,
            lever: offer.lever,
            priority: None,
            rank: None,
        };
        let dropped = if let Some(reason) = ineligible(offer, facts, request.now) {
            Some(("eligibility", reason))
        } else if let Some(reason) = inapplicable(candidate, request) {
            Some(("applicability", reason))
        } else {
            unsuitable(candidate, consent, request.now).map(|reason| ("suitability", reason))
        };
        if let Some((stage, reason)) = dropped {
            verdict.stage = stage;
            verdict.reason = Some(reason);
        } else {
            let propensity = propensity(candidate, facts, request.explore, random);
            let priority = propensity.value * offer.value * weight * offer.lever;
            verdict.propensity = Some(propensity);
            verdict.priority = Some(priority);
            scored.push((index, priority));
        }
        verdicts.push(verdict);
    }
    // Best first; ties by catalog order, so equal offers rank stably.
    scored.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let chosen = constrain(candidates, &scored, request, &mut verdicts);
    Arbitrated { chosen, verdicts }
}

/// Takes the best offers that keep the constraints, up to the limit.
fn constrain(
    candidates: &[Candidate<'_>],
    scored: &[(usize, f64)],
    request: &Request,
    verdicts: &mut [Verdict],
) -> Vec<usize> {
    let mut chosen = Vec::new();
    let mut groups: BTreeSet<&str> = BTreeSet::new();
    let mut per_category: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, _) in scored {
        let offer = candidates[*index].offer;
        let verdict = &mut verdicts[*index];
        if chosen.len() >= request.limit {
            verdict.stage = "constraints";
            verdict.reason = Some(Reason::BelowTop(request.limit));
            continue;
        }
        if let Some(group) = offer.exclusive_group.as_deref()
            && groups.contains(group)
        {
            verdict.stage = "constraints";
            verdict.reason = Some(Reason::Exclusive(group.to_string()));
            continue;
        }
        if let (Some(max), Some(category)) = (request.max_per_category, offer.category.as_deref())
            && per_category.get(category).copied().unwrap_or(0) >= max
        {
            verdict.stage = "constraints";
            verdict.reason = Some(Reason::Diversity(max, category.to_string()));
            continue;
        }
        if let Some(group) = offer.exclusive_group.as_deref() {
            groups.insert(group);
        }
        if let Some(category) = offer.category.as_deref() {
            *per_category.entry(category).or_default() += 1;
        }
        verdict.rank = Some(chosen.len() + 1);
        chosen.push(*index);
    }
    chosen
}

/// Why a candidate was dropped; said in words only when explained.
#[derive(Debug, Clone)]
pub enum Reason {
    ConditionFalse,
    NotInAudience(String),
    NotForPlacement(String),
    NoContentFor(String),
    NotValidYet,
    Expired,
    BudgetUsed(u64),
    NoConsent(String),
    Dismissed {
        at: Timestamp,
        until: Timestamp,
    },
    Capped {
        shown: usize,
        per: jiff::SignedDuration,
        max: u32,
    },
    BelowTop(usize),
    Exclusive(String),
    Diversity(usize, String),
    /// An offer that shows recommended items has none for the person.
    NoItems,
    /// Said by the caller (content, incentives).
    Other(String),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::ConditionFalse => write!(f, "the eligibility condition is false"),
            Reason::NotInAudience(audience) => {
                write!(f, "not in its eligibility audience {audience:?}")
            }
            Reason::NotForPlacement(placement) => write!(f, "not for placement {placement:?}"),
            Reason::NoContentFor(channel) => write!(f, "no content for channel {channel:?}"),
            Reason::NotValidYet => write!(f, "not valid yet"),
            Reason::Expired => write!(f, "expired"),
            Reason::BudgetUsed(budget) => write!(f, "budget of {budget} impressions used up"),
            Reason::NoConsent(purpose) => write!(f, "no consent for {purpose:?}"),
            Reason::Dismissed { at, until } => {
                write!(f, "dismissed at {at}: not offered again before {until}")
            }
            Reason::Capped { shown, per, max } => {
                write!(
                    f,
                    "shown {shown} time(s) in the last {per:#}: the cap is {max}"
                )
            }
            Reason::BelowTop(limit) => write!(f, "below the top {limit}"),
            Reason::Exclusive(group) => {
                write!(
                    f,
                    "exclusive group {group:?}: a better offer of it is chosen"
                )
            }
            Reason::Diversity(max, category) => write!(
                f,
                "diversity: {max} offer(s) of category {category:?} already chosen"
            ),
            Reason::NoItems => write!(f, "no items to recommend to the person"),
            Reason::Other(text) => f.write_str(text),
        }
    }
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

fn ineligible(offer: &Offer, facts: &PersonFacts, now: Timestamp) -> Option<Reason> {
    match &offer.eligibility {
        None => None,
        Some(Eligibility::Profile(expr)) => {
            (!evaluate(expr, &[], facts, now)).then_some(Reason::ConditionFalse)
        }
        Some(Eligibility::Audience(audience)) => {
            (!facts.audiences.contains(audience)).then(|| Reason::NotInAudience(audience.clone()))
        }
    }
}

fn inapplicable(candidate: &Candidate<'_>, request: &Request) -> Option<Reason> {
    let offer = candidate.offer;
    if !offer.placements.is_empty() && !offer.placements.contains(&request.placement) {
        return Some(Reason::NotForPlacement(request.placement.clone()));
    }
    if let Some(channel) = &request.channel
        && !offer.content.contains_key(channel)
    {
        return Some(Reason::NoContentFor(channel.clone()));
    }
    if offer.valid_from.is_some_and(|from| request.now < from) {
        return Some(Reason::NotValidYet);
    }
    if offer.valid_until.is_some_and(|until| request.now >= until) {
        return Some(Reason::Expired);
    }
    if let Some(budget) = offer.budget
        && candidate.impressions_total >= budget
    {
        return Some(Reason::BudgetUsed(budget));
    }
    if offer.items.is_some() && candidate.items.is_empty() {
        return Some(Reason::NoItems);
    }
    None
}

fn unsuitable(
    candidate: &Candidate<'_>,
    consent: &BTreeMap<String, bool>,
    now: Timestamp,
) -> Option<Reason> {
    let offer = candidate.offer;
    if let Some(purpose) = &offer.purpose
        && consent.get(purpose) == Some(&false)
    {
        return Some(Reason::NoConsent(purpose.clone()));
    }
    let history = &candidate.history;
    if let (Some(blackout), Some(dismissed)) = (offer.after_dismissal, history.dismissed_at)
        && now < dismissed + blackout
    {
        return Some(Reason::Dismissed {
            at: dismissed,
            until: dismissed + blackout,
        });
    }
    if let Some((max, per)) = offer.impressions_cap {
        let since = now - per;
        let shown = history.impressions.iter().filter(|at| **at > since).count();
        if shown >= max as usize {
            return Some(Reason::Capped { shown, per, max });
        }
    }
    None
}

/// A model's score for the person, else a Thompson sample of the offer's
/// click rate in this placement.
fn propensity(
    candidate: &Candidate<'_>,
    facts: &PersonFacts,
    explore: bool,
    random: &mut Random,
) -> Propensity {
    if let Some(source) = &candidate.offer.propensity
        && let Some(score) = facts.scores.get(&source.score)
    {
        let score = score.clamp(0.0, 1.0);
        return Propensity {
            value: score,
            mean: score,
            source: "score",
            alpha: None,
            beta: None,
        };
    }
    let posterior = Posterior::of(&candidate.stats);
    Propensity {
        value: if explore {
            posterior.sample(random)
        } else {
            posterior.mean()
        },
        mean: posterior.mean(),
        source: "adaptive",
        alpha: Some(posterior.alpha),
        beta: Some(posterior.beta),
    }
}

/// The product of the request's weights for the offer's category and tags
/// (1 when none applies).
fn context_weight(offer: &Offer, weights: &BTreeMap<String, f64>) -> f64 {
    let mut weight = 1.0;
    for key in offer.category.iter().chain(offer.tags.iter()) {
        if let Some(factor) = weights.get(key) {
            weight *= factor;
        }
    }
    weight
}

/// The content of the channel to return: the request's, else `web`, else
/// the first the offer has.
pub fn channel_of<'a>(offer: &'a Offer, request: &Request) -> Option<(&'a str, &'a Value)> {
    content_of(&offer.content, request)
}

/// The content of `content` (per channel) for the request's channel.
pub fn content_of<'a>(
    content: &'a std::collections::BTreeMap<String, Value>,
    request: &Request,
) -> Option<(&'a str, &'a Value)> {
    let wanted = request
        .channel
        .as_deref()
        .or(request.prefer_channel.as_deref())
        .unwrap_or("web");
    content
        .get_key_value(wanted)
        .or_else(|| content.iter().next())
        .map(|(channel, value)| (channel.as_str(), value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decisions::offer::compile;
    use jiff::SignedDuration;
    use serde_json::json;

    /// A random stream of decisions for a few people, each answered with
    /// random impressions and dismissals that feed the next decisions:
    /// every decision keeps the caps, the dismissal blackout, the budgets,
    /// exclusivity and diversity, and ranks by priority.
    #[test]
    fn constraints_hold_over_random_streams_of_decisions_and_responses() {
        for seed in 1..=20u64 {
            let mut random = Random::seeded(seed);
            let offers: Vec<Offer> = (0..12)
                .map(|index| {
                    let mut definition = json!({
                        "name": format!("offer {index}"),
                        "content": {"web": "x"},
                        "category": format!("c{}", index % 3),
                        "value": 1 + index % 4,
                        "limits": {"impressions": {"max": 1 + index % 3, "per": "1d"},
                                   "after_dismissal": "2d"},
                    });
                    if index % 4 == 0 {
                        definition["exclusive_group"] = json!("g");
                    }
                    if index % 5 == 0 {
                        definition["limits"]["budget"] = json!(6);
                    }
                    compile(&format!("off_{index}"), 1, &definition).unwrap()
                })
                .collect();
            let mut now: Timestamp = "2026-05-01T00:00:00Z".parse().unwrap();
            let mut histories: BTreeMap<(usize, usize), OfferHistory> = BTreeMap::new();
            let mut stats = vec![OfferStats::default(); offers.len()];
            for _ in 0..300 {
                now += SignedDuration::from_mins(1 + (random.uniform() * 180.0) as i64);
                let person = (random.uniform() * 5.0) as usize;
                let candidates: Vec<Candidate<'_>> = offers
                    .iter()
                    .enumerate()
                    .map(|(index, offer)| Candidate {
                        offer,
                        stats: stats[index],
                        impressions_total: stats[index].impressions,
                        history: histories.get(&(person, index)).cloned().unwrap_or_default(),
                        items: Vec::new(),
                    })
                    .collect();
                let request = Request {
                    placement: "home".into(),
                    channel: None,
                    prefer_channel: None,
                    weights: BTreeMap::new(),
                    limit: 1 + (random.uniform() * 4.0) as usize,
                    max_per_category: (random.uniform() < 0.5).then_some(1),
                    explore: true,
                    personal: true,
                    now,
                    recommendations: None,
                    experiments: None,
                };
                let result = arbitrate(
                    &candidates,
                    &PersonFacts::default(),
                    &BTreeMap::new(),
                    &request,
                    &mut random,
                );
                check(&candidates, &request, &result);
                for index in result.chosen {
                    stats[index].impressions += 1;
                    let history = histories.entry((person, index)).or_default();
                    history.impressions.push(now);
                    if random.uniform() < 0.2 {
                        history.dismissed_at = Some(now);
                    } else if random.uniform() < 0.3 {
                        stats[index].clicks += 1;
                    }
                }
            }
        }
    }

    fn check(candidates: &[Candidate<'_>], request: &Request, result: &Arbitrated) {
        assert!(result.chosen.len() <= request.limit);
        let mut groups = BTreeSet::new();
        let mut categories: BTreeMap<&str, usize> = BTreeMap::new();
        let mut last_priority = f64::INFINITY;
        for index in &result.chosen {
            let candidate = &candidates[*index];
            let offer = candidate.offer;
            if let Some(group) = &offer.exclusive_group {
                assert!(
                    groups.insert(group.clone()),
                    "two offers of one exclusive group"
                );
            }
            let category = offer.category.as_deref().unwrap();
            *categories.entry(category).or_default() += 1;
            if let Some(max) = request.max_per_category {
                assert!(categories[category] <= max, "diversity broken");
            }
            let (max, per) = offer.impressions_cap.unwrap();
            let recent = candidate
                .history
                .impressions
                .iter()
                .filter(|at| **at > request.now - per)
                .count();
            assert!(recent < max as usize, "impression cap broken");
            if let (Some(dismissed), Some(blackout)) =
                (candidate.history.dismissed_at, offer.after_dismissal)
            {
                assert!(
                    request.now >= dismissed + blackout,
                    "offered during its blackout"
                );
            }
            if let Some(budget) = offer.budget {
                assert!(candidate.impressions_total < budget, "budget overspent");
            }
            let priority = result.verdicts[*index].priority.unwrap();
            assert!(priority <= last_priority, "not ranked by priority");
            last_priority = priority;
        }
        // Every offer that passed every stage and is not chosen lost to
        // the limit or a constraint, never to a lower-priority offer.
        for (index, verdict) in result.verdicts.iter().enumerate() {
            if verdict.stage == "constraints" && matches!(verdict.reason, Some(Reason::BelowTop(_)))
            {
                assert!(
                    verdict.priority.unwrap() <= last_priority,
                    "{index}: a better offer left out"
                );
            }
        }
    }
}
