//! The live recommender: every interaction updates the indexes in place.
//!
//! The engine's router feeds it each product event after resolving the
//! person (so a merge or an erasure reaches it in the log's order), and a
//! request reads it once the router has applied every acknowledged event.
//!
//! What it holds, and the bound on each:
//! - `views`: the session index of product views (next item, "viewed
//!   together"); a person's views form one session until
//!   [`SESSION_GAP_MS`] passes without one. Bounded by the index
//!   ([`crate::session`]).
//! - `orders`: the same index over orders, each order one session
//!   ("bought together").
//! - `popular` / `trending`: decayed counts per item ([`crate::popular`]).
//! - per person: the last [`RECENT_MAX`] views, the cart (at most
//!   [`CART_MAX`] items), the last [`BOUGHT_MAX`] purchases, and the
//!   person's sessions still held by the indexes (so an erasure removes
//!   them all).
//! - per item: its repurchase cycle (mean days between two purchases of
//!   it by one person), for "buy again".

use serde::{Deserialize, Serialize};

use crate::interner::Interner;
use crate::popular::{Leaderboard, POPULAR_HALF_LIFE_MS, TRENDING_HALF_LIFE_MS};
use crate::session::{ItemKey, KeyMap, SessionConfig, SessionIndex, SessionKey};

/// A person, as the engine numbers them (its profile id).
pub type PersonKey = u64;

/// A pause without a product view this long starts a new session (the
/// web analytics convention).
pub const SESSION_GAP_MS: i64 = 30 * 60 * 1000;
/// Recent views kept per person ("recently viewed", and the context of a
/// new session).
pub const RECENT_MAX: usize = 50;
/// Items a cart may hold here; a bigger cart is a bot or a bulk order.
pub const CART_MAX: usize = 100;
/// Purchases remembered per person (excluded from recommendations, and
/// the basis of "buy again").
pub const BOUGHT_MAX: usize = 200;
/// How a purchase counts against a view in "popular" and "trending".
const PURCHASE_WEIGHT: f64 = 3.0;

/// What a person did with items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    /// `Product Viewed`, `Product Clicked`.
    View,
    /// `Product Added` (to the cart).
    AddToCart,
    /// `Product Removed` (from the cart).
    RemoveFromCart,
    /// `Order Completed`: every product of the order.
    Purchase,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Person {
    pub(crate) session: Option<SessionKey>,
    pub(crate) last_view_ms: i64,
    /// Newest last.
    pub(crate) recent: Vec<(ItemKey, i64)>,
    pub(crate) cart: Vec<ItemKey>,
    /// Newest last.
    pub(crate) bought: Vec<(ItemKey, i64)>,
    /// Sessions (views and orders) the indexes may still hold.
    pub(crate) sessions: Vec<SessionKey>,
}

/// Mean time between two purchases of an item by the same person.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct Cycle {
    pub(crate) total_ms: f64,
    pub(crate) count: u32,
}

impl Cycle {
    pub(crate) fn mean_ms(&self) -> Option<f64> {
        (self.count > 0).then(|| self.total_ms / f64::from(self.count))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recommender {
    pub(crate) items: Interner,
    pub(crate) views: SessionIndex,
    pub(crate) orders: SessionIndex,
    pub(crate) popular: Leaderboard,
    pub(crate) trending: Leaderboard,
    pub(crate) people: KeyMap<PersonKey, Person>,
    pub(crate) cycles: KeyMap<ItemKey, Cycle>,
    next_session: SessionKey,
    /// New item ids not learned because [`crate::interner::ITEMS_MAX`]
    /// was reached.
    pub items_refused: u64,
}

impl Default for Recommender {
    fn default() -> Self {
        Recommender::new()
    }
}

/// Sizes, for metrics and the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub items: usize,
    pub people: usize,
    pub view_sessions: usize,
    pub order_sessions: usize,
    pub memory_bytes: usize,
    pub items_refused: u64,
}

impl Recommender {
    pub fn new() -> Recommender {
        Recommender {
            items: Interner::default(),
            views: SessionIndex::new(SessionConfig::default()),
            orders: SessionIndex::new(SessionConfig::default()),
            popular: Leaderboard::new(POPULAR_HALF_LIFE_MS),
            trending: Leaderboard::new(TRENDING_HALF_LIFE_MS),
            people: KeyMap::default(),
            cycles: KeyMap::default(),
            next_session: 1,
            items_refused: 0,
        }
    }

    /// Restores what decoding does not carry (ordered sets).
    pub fn after_decode(&mut self) {
        self.popular.reindex();
        self.trending.reindex();
    }

    /// One interaction of `person` with `items` at `at_ms` (the event's
    /// time).
    pub fn observe(
        &mut self,
        person: PersonKey,
        interaction: Interaction,
        items: &[String],
        at_ms: i64,
    ) {
        let keys: Vec<ItemKey> = items.iter().filter_map(|item| self.learn(item)).collect();
        if keys.is_empty() {
            return;
        }
        match interaction {
            Interaction::View => keys.iter().for_each(|item| self.view(person, *item, at_ms)),
            Interaction::AddToCart => {
                let cart = &mut self.people.entry(person).or_default().cart;
                for item in keys {
                    if !cart.contains(&item) && cart.len() < CART_MAX {
                        cart.push(item);
                    }
                }
            }
            Interaction::RemoveFromCart => {
                let cart = &mut self.people.entry(person).or_default().cart;
                cart.retain(|item| !keys.contains(item));
            }
            Interaction::Purchase => self.purchase(person, &keys, at_ms),
        }
    }

    fn learn(&mut self, item: &str) -> Option<ItemKey> {
        let key = self.items.intern(item);
        if key.is_none() {
            self.items_refused += 1;
        }
        key
    }

    fn view(&mut self, person: PersonKey, item: ItemKey, at_ms: i64) {
        let state = self.people.entry(person).or_default();
        let session = match state.session {
            Some(session) if at_ms - state.last_view_ms <= SESSION_GAP_MS => session,
            _ => {
                let session = self.next_session;
                self.next_session += 1;
                state.session = Some(session);
                state.sessions.push(session);
                session
            }
        };
        state.last_view_ms = state.last_view_ms.max(at_ms);
        state.recent.retain(|(seen, _)| *seen != item);
        state.recent.push((item, at_ms));
        if state.recent.len() > RECENT_MAX {
            state.recent.remove(0);
        }
        self.views.record(session, item, at_ms);
        self.popular.add(item, 1.0, at_ms);
        self.trending.add(item, 1.0, at_ms);
        self.prune_sessions(person);
    }

    fn purchase(&mut self, person: PersonKey, items: &[ItemKey], at_ms: i64) {
        let order = self.next_session;
        self.next_session += 1;
        let state = self.people.entry(person).or_default();
        state.sessions.push(order);
        for item in items {
            if let Some((_, before)) = state.bought.iter().rev().find(|(bought, _)| bought == item)
                && at_ms > *before
            {
                let cycle = self.cycles.entry(*item).or_default();
                cycle.total_ms += (at_ms - before) as f64;
                cycle.count += 1;
            }
            state.bought.push((*item, at_ms));
            state.cart.retain(|carted| carted != item);
            self.orders.record(order, *item, at_ms);
            self.popular.add(*item, PURCHASE_WEIGHT, at_ms);
            self.trending.add(*item, PURCHASE_WEIGHT, at_ms);
        }
        if state.bought.len() > BOUGHT_MAX {
            let excess = state.bought.len() - BOUGHT_MAX;
            state.bought.drain(..excess);
        }
        self.prune_sessions(person);
    }

    /// Forgets sessions the indexes no longer hold (evicted as older), so
    /// a person's list stays as bounded as the indexes.
    fn prune_sessions(&mut self, person: PersonKey) {
        let Some(state) = self.people.get_mut(&person) else {
            return;
        };
        if state.sessions.len() < 16 {
            return;
        }
        let (views, orders) = (&self.views, &self.orders);
        state.sessions.retain(|session| {
            views.session_items(*session).is_some() || orders.session_items(*session).is_some()
        });
    }

    /// `absorbed` and `survivor` are one person now: the survivor takes
    /// the absorbed's history (its current session stays the survivor's).
    pub fn merge(&mut self, absorbed: PersonKey, survivor: PersonKey) {
        let Some(from) = self.people.remove(&absorbed) else {
            return;
        };
        let into = self.people.entry(survivor).or_default();
        if into.session.is_none() {
            into.session = from.session;
            into.last_view_ms = from.last_view_ms;
        }
        for (item, at) in from.recent {
            if !into.recent.iter().any(|(seen, _)| *seen == item) {
                into.recent.push((item, at));
            }
        }
        into.recent.sort_by_key(|(_, at)| *at);
        let excess = into.recent.len().saturating_sub(RECENT_MAX);
        into.recent.drain(..excess);
        for item in from.cart {
            if !into.cart.contains(&item) && into.cart.len() < CART_MAX {
                into.cart.push(item);
            }
        }
        into.bought.extend(from.bought);
        into.bought.sort_by_key(|(_, at)| *at);
        let excess = into.bought.len().saturating_sub(BOUGHT_MAX);
        into.bought.drain(..excess);
        into.sessions.extend(from.sessions);
    }

    /// Erasure: the person's history and every session of theirs leave
    /// the indexes. Aggregates (popularity, repurchase cycles) keep their
    /// counts, which name nobody.
    pub fn forget(&mut self, person: PersonKey) {
        let Some(state) = self.people.remove(&person) else {
            return;
        };
        for session in state.sessions {
            self.views.forget_session(session);
            self.orders.forget_session(session);
        }
    }

    pub fn stats(&self) -> Stats {
        let people: usize = self
            .people
            .values()
            .map(|person| {
                64 + 12 * (person.recent.len() + person.bought.len())
                    + 4 * person.cart.len()
                    + 8 * person.sessions.len()
            })
            .sum();
        Stats {
            items: self.items.len(),
            people: self.people.len(),
            view_sessions: self.views.sessions(),
            order_sessions: self.orders.sessions(),
            memory_bytes: self.items.memory_bytes()
                + self.views.memory_bytes()
                + self.orders.memory_bytes()
                + self.popular.memory_bytes()
                + self.trending.memory_bytes()
                + people
                + self.cycles.len() * 24,
            items_refused: self.items_refused,
        }
    }

    /// Whether anything is known of the person.
    pub fn knows(&self, person: PersonKey) -> bool {
        self.people.contains_key(&person)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Catalog, Item};
    use crate::query::{Inputs, Query, Strategy};

    const MINUTE: i64 = 60_000;

    fn names(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| item.to_string()).collect()
    }

    fn catalog(items: &[&str]) -> Catalog {
        Catalog::from_items(items.iter().map(|id| Item {
            id: id.to_string(),
            name: None,
            category: None,
            price: None,
            available: true,
            stock: None,
            attributes: Default::default(),
            image_url: None,
            url: None,
        }))
    }

    fn ask(recommender: &Recommender, person: PersonKey, strategy: Strategy) -> Vec<String> {
        let catalog = catalog(&["a", "b", "c", "d", "e"]);
        let inputs = Inputs {
            catalog: &catalog,
            weight: &|_| 1.0,
            now_ms: 100 * MINUTE,
        };
        recommender
            .recommend(Some(person), &Query::new(strategy, 10), &inputs)
            .into_iter()
            .map(|found| found.item.id)
            .collect()
    }

    #[test]
    fn a_pause_longer_than_the_gap_starts_a_new_session() {
        let mut recommender = Recommender::new();
        recommender.observe(1, Interaction::View, &names(&["a"]), 0);
        recommender.observe(1, Interaction::View, &names(&["b"]), 10 * MINUTE);
        let first = recommender.people[&1].session;
        recommender.observe(
            1,
            Interaction::View,
            &names(&["c"]),
            10 * MINUTE + SESSION_GAP_MS + 1,
        );
        let second = recommender.people[&1].session;
        assert_ne!(first, second);
        assert_eq!(
            recommender
                .views
                .session_items(first.unwrap())
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            ask(&recommender, 1, Strategy::RecentlyViewed),
            ["c", "b", "a"]
        );
    }

    #[test]
    fn carts_and_purchases_are_bounded_and_a_purchase_empties_the_cart() {
        let mut recommender = Recommender::new();
        let many: Vec<String> = (0..CART_MAX + 20).map(|n| format!("i{n}")).collect();
        recommender.observe(1, Interaction::AddToCart, &many, 0);
        assert_eq!(recommender.people[&1].cart.len(), CART_MAX);
        recommender.observe(1, Interaction::Purchase, &many[..3], MINUTE);
        assert_eq!(recommender.people[&1].cart.len(), CART_MAX - 3);
        recommender.observe(1, Interaction::RemoveFromCart, &many[3..5], MINUTE);
        assert_eq!(recommender.people[&1].cart.len(), CART_MAX - 5);
        for n in 0..BOUGHT_MAX + 10 {
            recommender.observe(2, Interaction::Purchase, &names(&["a"]), n as i64 * MINUTE);
        }
        assert_eq!(recommender.people[&2].bought.len(), BOUGHT_MAX);
        let cycle = recommender.cycles[&recommender.items.key("a").unwrap()];
        assert_eq!(cycle.mean_ms(), Some(MINUTE as f64));
    }

    #[test]
    fn a_merge_moves_history_and_an_erasure_removes_every_session() {
        let mut recommender = Recommender::new();
        // Others: a then b.
        for person in 10..13 {
            recommender.observe(person, Interaction::View, &names(&["a", "b"]), 0);
        }
        recommender.observe(1, Interaction::View, &names(&["a"]), MINUTE);
        recommender.observe(1, Interaction::Purchase, &names(&["c"]), MINUTE);
        recommender.merge(1, 2);
        assert!(!recommender.knows(1));
        assert_eq!(ask(&recommender, 2, Strategy::RecentlyViewed), ["a"]);
        assert!(ask(&recommender, 2, Strategy::Next).contains(&"b".to_string()));
        assert!(
            !ask(&recommender, 2, Strategy::Popular).contains(&"c".to_string()),
            "bought"
        );
        let sessions = recommender.views.sessions() + recommender.orders.sessions();
        recommender.forget(10);
        recommender.forget(2);
        assert_eq!(
            recommender.views.sessions() + recommender.orders.sessions(),
            sessions - 3
        );
        assert!(!recommender.knows(2));
    }

    #[test]
    fn a_decoded_recommender_answers_the_same() {
        let mut recommender = Recommender::new();
        for person in 0..20u64 {
            let items = [["a", "b"], ["b", "c"], ["c", "d"], ["a", "e"]][person as usize % 4];
            recommender.observe(
                person,
                Interaction::View,
                &names(&items),
                person as i64 * MINUTE,
            );
        }
        recommender.observe(3, Interaction::Purchase, &names(&["e"]), MINUTE);
        let json = serde_json::to_string(&recommender).unwrap();
        let mut decoded: Recommender = serde_json::from_str(&json).unwrap();
        decoded.after_decode();
        for strategy in [
            Strategy::Auto,
            Strategy::Popular,
            Strategy::Trending,
            Strategy::RecentlyViewed,
        ] {
            assert_eq!(
                ask(&decoded, 3, strategy),
                ask(&recommender, 3, strategy),
                "{strategy:?}"
            );
        }
    }
}
