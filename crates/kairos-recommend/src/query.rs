//! Answering a request: candidates from a strategy, business rules, and a
//! reason per item.
//!
//! Hard rules are applied while the candidates are chosen (so `limit`
//! items come back when that many qualify): only items of the catalog that
//! are in stock, not the context item, not bought or in the cart (unless
//! asked), within the categories and the price band asked. Soft rules
//! ("boost or bury") multiply a candidate's score by the weight the caller
//! gives each item (0 drops it). Diversity then keeps at most
//! `max_per_category` items of one category.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, Item};
use crate::live::{Person, PersonKey, Recommender};
use crate::session::{ItemKey, Scored};

/// Items one request may ask for.
pub const LIMIT_MAX: usize = 100;
/// Candidates drawn per item asked: room for rules and diversity to drop
/// some before the list runs short.
const CANDIDATES_PER_ITEM: usize = 5;
/// "Buy again" offers an item once this share of its usual cycle passed.
const CYCLE_DUE_SHARE: f64 = 0.8;

/// Where recommendations come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// `next`, filled by `popular` when it runs short.
    Auto,
    /// The next item of the person's live session (session kNN), with the
    /// context item appended to the session.
    Next,
    /// Items viewed in the same sessions as the context item (or the
    /// person's last view).
    ViewedTogether,
    /// Items bought in the same orders as the context item.
    BoughtTogether,
    /// The person's recent views, newest first.
    RecentlyViewed,
    /// Items the person bought whose usual repurchase cycle is (nearly)
    /// over.
    BuyAgain,
    /// Most clicked over about a week (decayed).
    Popular,
    /// Most clicked over about an hour (decayed).
    Trending,
}

impl Strategy {
    pub const NAMES: [&'static str; 8] = [
        "auto",
        "next",
        "viewed_together",
        "bought_together",
        "recently_viewed",
        "buy_again",
        "popular",
        "trending",
    ];

    pub fn parse(name: &str) -> Option<Strategy> {
        serde_json::from_value(serde_json::Value::from(name)).ok()
    }
}

/// One request.
#[derive(Debug, Clone)]
pub struct Query {
    pub strategy: Strategy,
    pub limit: usize,
    pub context_item: Option<String>,
    pub include_categories: Vec<String>,
    pub exclude_categories: Vec<String>,
    pub min_price: Option<f64>,
    pub max_price: Option<f64>,
    pub max_per_category: Option<usize>,
    pub exclude_purchased: bool,
    pub exclude_in_cart: bool,
    /// Leave out what the session already viewed (`next` otherwise
    /// reminds of it: a quarter of next clicks in shop logs re-view an
    /// item, docs/benchmarks.md).
    pub exclude_viewed: bool,
}

impl Query {
    /// This request for a caller who may not see what the person viewed
    /// or bought (a page that proved no identity, acting as an anonymous
    /// id that may since belong to someone identified): the session's own
    /// items, purchases and the cart are left out; `None` for strategies
    /// that only show history (`recently_viewed`, `buy_again`).
    pub fn without_history(mut self) -> Option<Query> {
        if matches!(self.strategy, Strategy::RecentlyViewed | Strategy::BuyAgain) {
            return None;
        }
        self.exclude_viewed = true;
        self.exclude_purchased = true;
        self.exclude_in_cart = true;
        Some(self)
    }

    pub fn new(strategy: Strategy, limit: usize) -> Query {
        Query {
            strategy,
            limit,
            context_item: None,
            include_categories: Vec::new(),
            exclude_categories: Vec::new(),
            min_price: None,
            max_price: None,
            max_per_category: None,
            exclude_purchased: true,
            exclude_in_cart: true,
            exclude_viewed: false,
        }
    }
}

/// Why an item is recommended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reason {
    /// The strategy that found it.
    pub strategy: Strategy,
    /// The items it follows from: the session's views, the context item,
    /// the earlier purchase.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from_items: Vec<String>,
    /// The neighbour sessions (or orders) that contributed most, by their
    /// internal number.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub neighbours: Vec<u64>,
    /// A sentence for people.
    pub text: String,
}

/// One recommended item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    pub item: Item,
    pub score: f64,
    pub reason: Reason,
}

impl Recommendation {
    /// What may be shown anywhere — a web page, a message, a decision:
    /// the item's public fields, the score and the reason as a sentence;
    /// never its attributes (business data such as margins) or stock.
    pub fn public(&self) -> serde_json::Value {
        let item = &self.item;
        serde_json::json!({"id": item.id, "name": item.name, "category": item.category, "price": item.price,
                           "image_url": item.image_url, "url": item.url, "score": self.score,
                           "reason": self.reason.text})
    }
}

/// Everything a request reads besides the recommender.
pub struct Inputs<'a> {
    pub catalog: &'a Catalog,
    /// The soft rules' weight of an item (1 = as is, 0 = never).
    pub weight: &'a dyn Fn(&Item) -> f64,
    pub now_ms: i64,
}

impl Recommender {
    /// The recommendations for `person` (unknown or anonymous: `None`).
    pub fn recommend(
        &self,
        person: Option<PersonKey>,
        query: &Query,
        inputs: &Inputs,
    ) -> Vec<Recommendation> {
        let state = person.and_then(|person| self.people.get(&person));
        let filter = Filter::new(self, state, query, inputs);
        let wanted = query.limit.clamp(1, LIMIT_MAX) * CANDIDATES_PER_ITEM;
        let mut found = match query.strategy {
            Strategy::Auto => {
                let mut found = self.next(state, query, &filter, wanted);
                if found.len() < wanted {
                    found.extend(self.leaders(Strategy::Popular, &filter, wanted, inputs.now_ms));
                }
                found
            }
            Strategy::Next => self.next(state, query, &filter, wanted),
            Strategy::ViewedTogether | Strategy::BoughtTogether => {
                self.together(state, query, &filter, wanted)
            }
            Strategy::RecentlyViewed => self.recently_viewed(state, &filter, wanted),
            Strategy::BuyAgain => self.buy_again(state, &filter, wanted, inputs.now_ms),
            Strategy::Popular | Strategy::Trending => {
                self.leaders(query.strategy, &filter, wanted, inputs.now_ms)
            }
        };
        dedup(&mut found);
        self.finish(found, query, inputs)
    }

    /// Scored candidates → weighted, ranked, diverse answers.
    fn finish(
        &self,
        found: Vec<(ItemKey, f64, Reason)>,
        query: &Query,
        inputs: &Inputs,
    ) -> Vec<Recommendation> {
        let mut ranked: Vec<(usize, Recommendation)> = found
            .into_iter()
            .enumerate()
            .filter_map(|(tier_order, (item, score, reason))| {
                let item = inputs.catalog.get(self.items.name(item))?;
                let weight = (inputs.weight)(item);
                (weight > 0.0).then(|| {
                    (
                        tier_order,
                        Recommendation {
                            item: item.clone(),
                            score: score * weight,
                            reason,
                        },
                    )
                })
            })
            .collect();
        // Within one strategy, the weighted score orders; a fallback's
        // items stay behind the primary strategy's.
        ranked.sort_by(|(a_order, a), (b_order, b)| {
            let tier = |recommendation: &Recommendation| {
                recommendation.reason.strategy != query.strategy
                    && query.strategy == Strategy::Auto
                    && recommendation.reason.strategy == Strategy::Popular
            };
            tier(a)
                .cmp(&tier(b))
                .then(b.score.total_cmp(&a.score))
                .then(a_order.cmp(b_order))
        });
        let mut per_category: HashMap<String, usize> = HashMap::new();
        let mut answer = Vec::new();
        for (_, recommendation) in ranked {
            if let Some(max) = query.max_per_category {
                let category = recommendation.item.category.clone().unwrap_or_default();
                let count = per_category.entry(category).or_default();
                if *count >= max {
                    continue;
                }
                *count += 1;
            }
            answer.push(recommendation);
            if answer.len() == query.limit.clamp(1, LIMIT_MAX) {
                break;
            }
        }
        answer
    }

    /// The evolving session: the person's current session (their recent
    /// views when it has none), then the context item; and the stored
    /// session it is, which must not be its own neighbour.
    fn evolving(&self, state: Option<&Person>, query: &Query) -> (Vec<ItemKey>, Option<u64>) {
        let live = state.and_then(|person| {
            let session = person.session?;
            Some((session, self.views.session_items(session)?))
        });
        let (mut items, own) = match (live, state) {
            (Some((session, items)), _) => (items.to_vec(), Some(session)),
            (None, Some(person)) => (person.recent.iter().map(|(item, _)| *item).collect(), None),
            (None, None) => (Vec::new(), None),
        };
        if let Some(context) = query
            .context_item
            .as_deref()
            .and_then(|item| self.items.key(item))
            && items.last() != Some(&context)
        {
            items.push(context);
        }
        (items, own)
    }

    fn next(
        &self,
        state: Option<&Person>,
        query: &Query,
        filter: &Filter,
        wanted: usize,
    ) -> Vec<(ItemKey, f64, Reason)> {
        let (session, own) = self.evolving(state, query);
        if session.is_empty() {
            return Vec::new();
        }
        let from: Vec<String> = session
            .iter()
            .rev()
            .take(5)
            .rev()
            .map(|item| self.items.name(*item).to_string())
            .collect();
        let skip = |item: ItemKey| filter.refuses(item);
        let scored = self.views.recommend_excluding(&session, own, wanted, &skip);
        self.with_reasons(scored, Strategy::Next, &from, |count| match count {
            0 => "viewed earlier in this session".to_string(),
            count => format!("viewed next in {count} similar sessions"),
        })
    }

    fn together(
        &self,
        state: Option<&Person>,
        query: &Query,
        filter: &Filter,
        wanted: usize,
    ) -> Vec<(ItemKey, f64, Reason)> {
        let anchor = match query.context_item.as_deref() {
            Some(item) => self.items.key(item),
            None => state.and_then(|person| person.recent.last().map(|(item, _)| *item)),
        };
        let Some(anchor) = anchor else {
            return Vec::new();
        };
        let (index, verb) = match query.strategy {
            Strategy::BoughtTogether => (&self.orders, "bought with it in"),
            _ => (&self.views, "viewed with it in"),
        };
        let skip = |item: ItemKey| item == anchor || filter.refuses(item);
        let scored = index.recommend(&[anchor], wanted, &skip);
        let from = vec![self.items.name(anchor).to_string()];
        let noun = if query.strategy == Strategy::BoughtTogether {
            "orders"
        } else {
            "sessions"
        };
        self.with_reasons(scored, query.strategy, &from, |count| {
            format!("{verb} {count} {noun}")
        })
    }

    fn with_reasons(
        &self,
        scored: Vec<Scored>,
        strategy: Strategy,
        from: &[String],
        text: impl Fn(usize) -> String,
    ) -> Vec<(ItemKey, f64, Reason)> {
        let top = scored
            .first()
            .map_or(1.0, |best| best.score.max(f64::MIN_POSITIVE));
        scored
            .into_iter()
            .map(|scored| {
                let reason = Reason {
                    strategy,
                    from_items: from.to_vec(),
                    text: text(scored.neighbours.len()),
                    neighbours: scored.neighbours,
                };
                (scored.item, scored.score / top, reason)
            })
            .collect()
    }

    fn recently_viewed(
        &self,
        state: Option<&Person>,
        filter: &Filter,
        wanted: usize,
    ) -> Vec<(ItemKey, f64, Reason)> {
        let Some(person) = state else {
            return Vec::new();
        };
        let count = person.recent.len().max(1) as f64;
        person
            .recent
            .iter()
            .rev()
            .filter(|(item, _)| !filter.refuses(*item))
            .take(wanted)
            .enumerate()
            .map(|(rank, (item, _))| {
                let reason = Reason {
                    strategy: Strategy::RecentlyViewed,
                    from_items: Vec::new(),
                    neighbours: Vec::new(),
                    text: "viewed recently".into(),
                };
                (*item, 1.0 - rank as f64 / count, reason)
            })
            .collect()
    }

    fn buy_again(
        &self,
        state: Option<&Person>,
        filter: &Filter,
        wanted: usize,
        now_ms: i64,
    ) -> Vec<(ItemKey, f64, Reason)> {
        let Some(person) = state else {
            return Vec::new();
        };
        let mut last: HashMap<ItemKey, i64> = HashMap::new();
        for (item, at) in &person.bought {
            last.insert(*item, *at);
        }
        let mut due: Vec<(ItemKey, f64, Reason)> = last
            .into_iter()
            .filter(|(item, _)| !filter.refuses_except_bought(*item))
            .filter_map(|(item, at)| {
                let cycle = self.cycles.get(&item)?.mean_ms()?;
                let elapsed = (now_ms - at) as f64 / cycle;
                (elapsed >= CYCLE_DUE_SHARE).then(|| {
                    let days = cycle / 86_400_000.0;
                    let reason = Reason {
                        strategy: Strategy::BuyAgain,
                        from_items: vec![self.items.name(item).to_string()],
                        neighbours: Vec::new(),
                        text: format!("bought before; usually bought again every {days:.1} days"),
                    };
                    // Closest to its due date first.
                    (item, 1.0 / (1.0 + (elapsed - 1.0).abs()), reason)
                })
            })
            .collect();
        due.sort_by(|a, b| b.1.total_cmp(&a.1));
        due.truncate(wanted);
        due
    }

    fn leaders(
        &self,
        strategy: Strategy,
        filter: &Filter,
        wanted: usize,
        now_ms: i64,
    ) -> Vec<(ItemKey, f64, Reason)> {
        let (board, text) = match strategy {
            Strategy::Trending => (&self.trending, "clicked most this hour"),
            _ => (&self.popular, "clicked most this week"),
        };
        let skip = |item: ItemKey| filter.refuses(item);
        let top = board.top(wanted, now_ms, &skip);
        let best = top
            .first()
            .map_or(1.0, |(_, count)| count.max(f64::MIN_POSITIVE));
        top.into_iter()
            .map(|(item, count)| {
                let reason = Reason {
                    strategy: if strategy == Strategy::Trending {
                        Strategy::Trending
                    } else {
                        Strategy::Popular
                    },
                    from_items: Vec::new(),
                    neighbours: Vec::new(),
                    text: text.into(),
                };
                (item, count / best, reason)
            })
            .collect()
    }
}

fn dedup(found: &mut Vec<(ItemKey, f64, Reason)>) {
    let mut seen = HashSet::new();
    found.retain(|(item, _, _)| seen.insert(*item));
}

/// The hard rules of one request.
struct Filter<'a> {
    recommender: &'a Recommender,
    catalog: &'a Catalog,
    query: &'a Query,
    context: Option<ItemKey>,
    bought: HashSet<ItemKey>,
    cart: HashSet<ItemKey>,
    /// The session's own items, with `exclude_viewed` (every strategy).
    viewed: HashSet<ItemKey>,
}

impl<'a> Filter<'a> {
    fn new(
        recommender: &'a Recommender,
        state: Option<&Person>,
        query: &'a Query,
        inputs: &Inputs<'a>,
    ) -> Filter<'a> {
        let bought = match (state, query.exclude_purchased) {
            (Some(person), true) => person.bought.iter().map(|(item, _)| *item).collect(),
            _ => HashSet::new(),
        };
        let cart = match (state, query.exclude_in_cart) {
            (Some(person), true) => person.cart.iter().copied().collect(),
            _ => HashSet::new(),
        };
        Filter {
            recommender,
            catalog: inputs.catalog,
            query,
            context: query
                .context_item
                .as_deref()
                .and_then(|item| recommender.items.key(item)),
            bought,
            cart,
            viewed: if query.exclude_viewed {
                recommender.evolving(state, query).0.into_iter().collect()
            } else {
                HashSet::new()
            },
        }
    }

    fn refuses(&self, item: ItemKey) -> bool {
        self.bought.contains(&item) || self.refuses_except_bought(item)
    }

    fn refuses_except_bought(&self, item: ItemKey) -> bool {
        if Some(item) == self.context || self.cart.contains(&item) || self.viewed.contains(&item) {
            return true;
        }
        let Some(found) = self.catalog.get(self.recommender.items.name(item)) else {
            return true;
        };
        !found.in_stock() || !self.fits(found)
    }

    fn fits(&self, item: &Item) -> bool {
        let query = self.query;
        let category = item.category.as_deref().unwrap_or("");
        if !query.include_categories.is_empty()
            && !query
                .include_categories
                .iter()
                .any(|wanted| wanted == category)
        {
            return false;
        }
        if query
            .exclude_categories
            .iter()
            .any(|refused| refused == category)
        {
            return false;
        }
        match item.price {
            Some(price) => {
                query.min_price.is_none_or(|min| price >= min)
                    && query.max_price.is_none_or(|max| price <= max)
            }
            None => query.min_price.is_none() && query.max_price.is_none(),
        }
    }
}
