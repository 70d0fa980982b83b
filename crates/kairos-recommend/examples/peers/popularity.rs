//! Popularity: the most clicked training items, the same list for everyone.

use super::{Peer, Training};
use kairos_recommend::session::ItemKey;

pub struct Popularity {
    ranked: Vec<ItemKey>,
}

impl Popularity {
    pub fn new(training: &Training) -> Popularity {
        let clicks = training.clicks();
        let mut ranked: Vec<ItemKey> = (0..training.items as ItemKey)
            .filter(|i| clicks[*i as usize] > 0)
            .collect();
        ranked.sort_by(|a, b| clicks[*b as usize].cmp(&clicks[*a as usize]).then(a.cmp(b)));
        ranked.truncate(100);
        Popularity { ranked }
    }
}

impl Peer for Popularity {
    fn name(&self) -> String {
        "popularity".into()
    }
    fn predict(&self, _prefix: &[ItemKey], how_many: usize) -> Vec<ItemKey> {
        self.ranked.iter().take(how_many).copied().collect()
    }
}
