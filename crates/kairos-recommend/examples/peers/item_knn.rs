//! Item-kNN as in session-rec's `ItemKNN` (Hidasi et al.'s baseline):
//! sim(i, j) = cooc(i, j) / ((supp_i + λ)^α (supp_j + λ)^(1-α)) with
//! cooc counted per pair of clicks in a session and supp = clicks; the
//! n_sims most similar items per item; the next item is predicted from the
//! last click only. Defaults: n_sims = 100, λ = 20, α = 0.5.

use super::{Peer, Training};
use kairos_recommend::session::{ItemKey, KeyMap};

pub struct ItemKnn {
    neighbours: Vec<Vec<ItemKey>>,
}

const N_SIMS: usize = 100;
const LAMBDA: f64 = 20.0;
const ALPHA: f64 = 0.5;

impl ItemKnn {
    pub fn new(training: &Training) -> ItemKnn {
        let supp = training.clicks();
        let mut cooc: Vec<KeyMap<ItemKey, f64>> = vec![KeyMap::default(); training.items];
        for session in &training.sessions {
            let mut counts: KeyMap<ItemKey, f64> = KeyMap::default();
            for item in session {
                *counts.entry(*item).or_default() += 1.0;
            }
            for (i, ni) in &counts {
                for (j, nj) in &counts {
                    if i != j {
                        *cooc[*i as usize].entry(*j).or_default() += ni * nj;
                    }
                }
            }
        }
        let neighbours = cooc
            .into_iter()
            .enumerate()
            .map(|(i, row)| {
                let norm_i = (supp[i] as f64 + LAMBDA).powf(ALPHA);
                let scored: KeyMap<ItemKey, f64> = row
                    .into_iter()
                    .map(|(j, count)| {
                        (
                            j,
                            count / (norm_i * (supp[j as usize] as f64 + LAMBDA).powf(1.0 - ALPHA)),
                        )
                    })
                    .collect();
                super::top(scored, N_SIMS)
            })
            .collect();
        ItemKnn { neighbours }
    }
}

impl Peer for ItemKnn {
    fn name(&self) -> String {
        "item-kNN (n_sims=100, λ=20, α=0.5)".into()
    }
    fn predict(&self, prefix: &[ItemKey], how_many: usize) -> Vec<ItemKey> {
        let Some(last) = prefix.last() else {
            return Vec::new();
        };
        match self.neighbours.get(*last as usize) {
            Some(list) => list.iter().take(how_many).copied().collect(),
            None => Vec::new(),
        }
    }
}
