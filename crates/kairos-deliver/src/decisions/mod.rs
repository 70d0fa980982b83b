//! Next-best-action decisions (docs/decisions.md): an offer catalog
//! ([`offer`]), arbitration ([`arbitrate`]) with adaptive propensities
//! ([`bandit`]), and responses — `Offer Viewed`, `Offer Clicked`, `Offer
//! Dismissed` and each offer's conversion event, carrying the `decision_id`
//! — applied by the effects stage in its atomic batch, so the next decision
//! already learns from them.
//!
//! A decision reads the profile as it is after every event acknowledged
//! before the call (the caller waits for the engine), the offer counts from
//! memory and the person's history with each offer; it is stored without an
//! fsync (kairos_store's `outbox::offers`).

pub mod arbitrate;
pub mod bandit;
pub mod offer;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use kairos_core::audience::eval::PersonFacts;
use kairos_store::{DecidedAction, DecisionRecord, IncentiveLog, Outbox, ResponseKind, Store};
use serde::Serialize;
use serde_json::{Value, json};

pub use arbitrate::{Request, Verdict};
pub use offer::{Eligibility, Offer, compile, eligibility_audience};

/// The response events every decision's actions are reported with.
pub const VIEWED: &str = "Offer Viewed";
pub const CLICKED: &str = "Offer Clicked";
pub const DISMISSED: &str = "Offer Dismissed";
/// Actions one decision may return.
pub const ACTIONS_MAX: usize = 50;

/// The catalog, compiled once per change (a decision must not parse 200
/// offers' conditions).
#[derive(Default)]
pub struct Catalog {
    compiled: RwLock<(u64, Arc<Vec<Offer>>)>,
}

impl Catalog {
    /// The offers stored now, compiled; one that no longer compiles is
    /// left out and logged.
    pub fn offers(&self, outbox: &Outbox) -> Arc<Vec<Offer>> {
        let version = outbox.offers_version();
        if let Ok(compiled) = self.compiled.read()
            && compiled.0 == version
        {
            return compiled.1.clone();
        }
        let offers: Vec<Offer> = outbox
            .offers()
            .into_iter()
            .filter_map(
                |record| match compile(&record.id, record.version, &record.definition) {
                    Ok(offer) => Some(offer),
                    Err(error) => {
                        tracing::warn!(offer = %record.name, %error, "offer inactive");
                        None
                    }
                },
            )
            .collect();
        let offers = Arc::new(offers);
        if let Ok(mut compiled) = self.compiled.write() {
            *compiled = (version, offers.clone());
        }
        offers
    }
}

/// One action of a decision, as answered.
#[derive(Debug, Clone, Serialize)]
pub struct Action {
    /// The offer's name.
    pub offer: String,
    pub offer_id: String,
    pub version: u32,
    pub rank: usize,
    /// The priority arbitration ranked by.
    pub score: f64,
    pub propensity: f64,
    pub channel: String,
    pub content: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// `{"name", "group"}` when the offer's content is tested in an
    /// experiment (the person was exposed by this decision or before).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experiment: Option<Value>,
    /// The items an offer that shows items recommends (best first).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<Value>,
}

/// The items recommended for an offer that shows items (empty for the
/// others, and where nothing can recommend).
fn recommended_items(offer: &Offer, request: &Request) -> Vec<Value> {
    let (Some(query), Some(recommendations)) = (&offer.items, &request.recommendations) else {
        return Vec::new();
    };
    (recommendations.0)(query).unwrap_or_else(|error| {
        tracing::warn!(offer = %offer.name, %error, "no items for an offer");
        Vec::new()
    })
}

/// An offer's content under test: the variant of the person's arm (if it
/// has one) and the group to report.
struct Tested<'a> {
    variant: Option<&'a BTreeMap<String, Value>>,
    group: Option<Value>,
}

/// Exposes the person to the offer's experiment (if any) and picks the
/// variant of their arm; holdouts and arms without a variant see the
/// offer's own content.
fn tested_content<'a>(offer: &'a Offer, request: &Request) -> Result<Tested<'a>, String> {
    let (Some(link), Some(assigner)) = (&offer.experiment, &request.experiments) else {
        return Ok(Tested {
            variant: None,
            group: None,
        });
    };
    let group =
        (assigner.0)(&link.name).map_err(|error| format!("experiment {}: {error}", link.name))?;
    Ok(Tested {
        variant: group.as_ref().and_then(|group| link.variants.get(group)),
        group: group.map(|group| json!({"name": link.name, "group": group})),
    })
}

/// A decision, as answered.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub decision_id: String,
    pub placement: String,
    pub actions: Vec<Action>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Vec<Verdict>>,
}

/// Decides for the person whose profile is `view` (asked for by
/// `identifier`, `type:value`), in the request's placement and context,
/// and stores the decision.
pub fn decide(
    store: &Store,
    catalog: &Catalog,
    identifier: &str,
    view: &kairos_engine::ProfileView,
    request: &Request,
    context: &Value,
    explain: bool,
) -> Result<Decision, crate::DeliverError> {
    let offers = catalog.offers(&store.outbox);
    let identities: Vec<String> = view
        .identities
        .iter()
        .map(|identity| format!("{}:{}", identity.kind, identity.value))
        .collect();
    let mut histories = store.outbox.offer_histories(&identities)?;
    let counts = store.outbox.offer_counts(
        offers.iter().map(|offer| offer.id.as_str()),
        &request.placement,
    );
    let candidates: Vec<arbitrate::Candidate<'_>> = offers
        .iter()
        .zip(counts)
        .map(|(offer, (stats, impressions_total))| arbitrate::Candidate {
            offer,
            stats,
            impressions_total,
            history: histories.remove(&offer.id).unwrap_or_default(),
            items: recommended_items(offer, request),
        })
        .collect();
    let decision_id = Outbox::new_decision_id();
    let mut random = bandit::Random::from_text(&decision_id);
    let facts = person_facts(view);
    let mut arbitrated =
        arbitrate::arbitrate(&candidates, &facts, &view.consent, request, &mut random);
    let mut actions = Vec::new();
    // One renderer (and one budget) for the whole decision's content.
    let mut renderer = crate::render::MessageRenderer::with_context(render_context(
        view,
        context,
        request.personal,
    ))
    .with_recommendations(request.recommendations.clone());
    for index in arbitrated.chosen {
        let offer = candidates[index].offer;
        let verdict = &mut arbitrated.verdicts[index];
        let tested = match tested_content(offer, request) {
            Ok(tested) => tested,
            Err(error) => {
                verdict.stage = "content";
                verdict.rank = None;
                verdict.reason = Some(arbitrate::Reason::Other(error));
                continue;
            }
        };
        let content = tested.variant.unwrap_or(&offer.content);
        let Some((channel, template)) = arbitrate::content_of(content, request) else {
            continue;
        };
        match renderer.render_value(template) {
            Ok(content) => actions.push(Action {
                offer: offer.name.clone(),
                offer_id: offer.id.clone(),
                version: offer.version,
                rank: actions.len() + 1,
                score: verdict.priority.unwrap_or(0.0),
                propensity: verdict
                    .propensity
                    .map_or(0.0, |propensity| propensity.value),
                channel: channel.to_string(),
                content,
                category: offer.category.clone(),
                experiment: tested.group,
                items: candidates[index].items.clone(),
            }),
            Err(error) => {
                verdict.stage = "content";
                verdict.rank = None;
                verdict.reason = Some(arbitrate::Reason::Other(format!(
                    "content did not render: {error}"
                )));
            }
        }
    }
    let now = request.now;
    let incentives = randomize_incentives(
        &offers,
        view,
        &mut actions,
        &mut arbitrated.verdicts,
        &mut random,
        now,
    );
    for (rank, action) in actions.iter_mut().enumerate() {
        action.rank = rank + 1;
    }
    store.outbox.record_decision(
        identifier,
        DecisionRecord {
            incentives,
            id: decision_id.clone(),
            person: String::new(),
            placement: request.placement.clone(),
            at: request.now,
            actions: actions
                .iter()
                .map(|action| DecidedAction {
                    offer: action.offer_id.clone(),
                    version: action.version,
                    rank: action.rank,
                    propensity: action.propensity,
                    priority: action.score,
                })
                .collect(),
            responses: Default::default(),
        },
    )?;
    Ok(Decision {
        decision_id,
        placement: request.placement.clone(),
        actions,
        explanation: explain.then(|| named(arbitrated.verdicts, &candidates)),
    })
}

/// Each chosen incentive is given or held out at random — with the
/// holdout's probability, or by its uplift policy (given where predicted
/// uplift × value exceeds the cost, still held out at the holdout rate, and
/// given at that rate where the policy says no, to keep learning) — and
/// logged with its probability and the person's features.
fn randomize_incentives(
    offers: &[Offer],
    view: &kairos_engine::ProfileView,
    actions: &mut Vec<Action>,
    verdicts: &mut [Verdict],
    random: &mut bandit::Random,
    now: jiff::Timestamp,
) -> Vec<IncentiveLog> {
    let mut logs = Vec::new();
    actions.retain(|action| {
        let Some((index, offer)) = offers
            .iter()
            .enumerate()
            .find(|(_, offer)| offer.id == action.offer_id)
        else {
            return true;
        };
        let Some(incentive) = &offer.incentive else {
            return true;
        };
        let policy_says_give = match &incentive.uplift_score {
            Some(score) => view
                .scores
                .get(score)
                .and_then(serde_json::Value::as_f64)
                .is_none_or(|uplift| uplift * offer.value > incentive.cost),
            None => true,
        };
        let give_probability = if policy_says_give {
            1.0 - incentive.holdout
        } else {
            incentive.holdout
        };
        let treated = random.uniform() < give_probability;
        logs.push(IncentiveLog {
            offer: offer.id.clone(),
            treated,
            propensity: if treated {
                give_probability
            } else {
                1.0 - give_probability
            },
            features: incentive_features(&incentive.features, view),
            window_ends: now + incentive.window,
            converted: false,
        });
        if !treated && let Some(verdict) = verdicts.get_mut(index) {
            verdict.stage = "incentive";
            verdict.rank = None;
            verdict.reason = Some(arbitrate::Reason::Other(if policy_says_give {
                format!("held out as control (p = {:.2})", 1.0 - give_probability)
            } else {
                "the uplift policy: predicted uplift × value does not exceed the cost".into()
            }));
        }
        treated
    });
    logs
}

/// The person's values of an incentive's features (NaN where missing), as
/// the models read them in the stream.
pub fn incentive_features(features: &[String], view: &kairos_engine::ProfileView) -> Vec<f64> {
    let state = kairos_models::FeatureState::default();
    features
        .iter()
        .map(|name| match kairos_models::Feature::parse(name) {
            Ok(feature) => state.value(&feature, &view.traits, &view.computed),
            Err(_) => f64::NAN,
        })
        .collect()
}

/// Verdicts with their offers' names, for an explanation.
fn named(mut verdicts: Vec<Verdict>, candidates: &[arbitrate::Candidate<'_>]) -> Vec<Verdict> {
    for verdict in &mut verdicts {
        let offer = candidates[verdict.index].offer;
        verdict.offer = offer.name.clone();
        verdict.offer_id = offer.id.clone();
    }
    verdicts
}

fn person_facts(view: &kairos_engine::ProfileView) -> PersonFacts {
    PersonFacts {
        traits: view.traits.clone(),
        computed: view.computed.clone(),
        scores: view
            .scores
            .iter()
            .filter_map(|(name, value)| Some((name.clone(), value.as_f64()?)))
            .collect(),
        audiences: view.audiences.iter().cloned().collect(),
    }
}

/// What content templates read: the person (as messages see them,
/// [`crate::email::person_context`]) and the request's context; without
/// `personal`, not their traits. Built straight from the view, without a
/// JSON copy in between (a decision renders for one person once).
fn render_context(
    view: &kairos_engine::ProfileView,
    context: &Value,
    personal: bool,
) -> minijinja::Value {
    #[derive(Serialize)]
    struct ContentContext<'a> {
        traits: &'a serde_json::Map<String, Value>,
        computed: &'a serde_json::Map<String, Value>,
        audiences: &'a [String],
        scores: &'a serde_json::Map<String, Value>,
        profile: ProfileId<'a>,
        event: (),
        context: &'a Value,
    }
    #[derive(Serialize)]
    struct ProfileId<'a> {
        id: &'a str,
    }
    let hidden = serde_json::Map::new();
    minijinja::value::Serde(ContentContext {
        traits: if personal { &view.traits } else { &hidden },
        computed: &view.computed,
        audiences: &view.audiences,
        scores: &view.scores,
        profile: ProfileId { id: &view.id },
        event: (),
        context,
    })
    .into()
}

/// The event names the effects stage applies as responses: the three
/// response events and every offer's conversion event.
pub fn response_event_names(offers: &[Offer]) -> Vec<String> {
    let mut names = vec![
        VIEWED.to_string(),
        CLICKED.to_string(),
        DISMISSED.to_string(),
    ];
    names.extend(
        offers
            .iter()
            .filter_map(|offer| offer.conversion_event.clone()),
    );
    names
}

/// What a response event (`name`, `properties`) reports, for the effects
/// stage: `(decision id, offer id, kind)` for each offer it concerns.
pub fn responses_of(
    offers: &[Offer],
    name: &str,
    properties: &serde_json::Map<String, Value>,
    decision: impl Fn(&str) -> Option<DecisionRecord>,
) -> Vec<(String, String, ResponseKind)> {
    let Some(decision_id) = properties.get("decision_id").and_then(Value::as_str) else {
        return Vec::new();
    };
    let named = properties
        .get("offer")
        .or_else(|| properties.get("offer_id"))
        .and_then(Value::as_str)
        .and_then(|wanted| {
            offers
                .iter()
                .find(|offer| offer.id == wanted || offer.name == wanted)
                .map(|offer| offer.id.clone())
        });
    let kind = match name {
        VIEWED => Some(ResponseKind::Impression),
        CLICKED => Some(ResponseKind::Click),
        DISMISSED => Some(ResponseKind::Dismissal),
        _ => None,
    };
    if let Some(kind) = kind {
        return named
            .map(|offer| vec![(decision_id.to_string(), offer, kind)])
            .unwrap_or_default();
    }
    // A conversion: each offer of the decision that names this event (or
    // just the one the event names).
    let Some(record) = decision(decision_id) else {
        return Vec::new();
    };
    let converts: BTreeMap<&str, &Offer> = offers
        .iter()
        .filter(|offer| offer.conversion_event.as_deref() == Some(name))
        .map(|offer| (offer.id.as_str(), offer))
        .collect();
    record
        .actions
        .iter()
        .filter(|action| converts.contains_key(action.offer.as_str()))
        .filter(|action| named.as_ref().is_none_or(|named| *named == action.offer))
        .map(|action| {
            (
                decision_id.to_string(),
                action.offer.clone(),
                ResponseKind::Conversion,
            )
        })
        .collect()
}

/// An offer as the API shows it.
pub fn describe(record: &kairos_store::OfferRecord) -> Value {
    let mut answer = record.definition.clone();
    answer["id"] = json!(record.id);
    answer["name"] = json!(record.name);
    answer["version"] = json!(record.version);
    answer["created_at"] = json!(record.created_at);
    answer["updated_at"] = json!(record.updated_at);
    answer
}
