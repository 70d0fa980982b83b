//! The synthetic click stream of the scale benchmarks (`session_scale`,
//! `live_scale`); the distribution is documented in `session_scale.rs`.

use kairos_recommend::session::ItemKey;

pub struct Generator {
    state: u64,
    cdf: Vec<f64>,
}

impl Generator {
    pub fn new(items: usize) -> Generator {
        let mut cdf = Vec::with_capacity(items);
        let mut total = 0.0;
        for rank in 1..=items {
            total += 1.0 / rank as f64;
            cdf.push(total);
        }
        for value in &mut cdf {
            *value /= total;
        }
        Generator { state: 42, cdf }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn zipf(&mut self) -> ItemKey {
        let draw = self.uniform();
        self.cdf
            .partition_point(|value| *value < draw)
            .min(self.cdf.len() - 1) as ItemKey
    }

    pub fn session_length(&mut self) -> usize {
        let mut length = 1;
        while self.uniform() >= 0.2 {
            length += 1;
        }
        length
    }

    pub fn next_item(&mut self, previous: ItemKey) -> ItemKey {
        if self.uniform() < 0.5 {
            let items = self.cdf.len() as i64;
            let offset = (self.next_u64() % 101) as i64 - 50;
            (previous as i64 + offset).rem_euclid(items) as ItemKey
        } else {
            self.zipf()
        }
    }

    /// Calls `click(session, item, time_ms)` for `clicks` clicks.
    pub fn clicks(&mut self, clicks: usize, mut click: impl FnMut(u64, ItemKey, i64)) {
        let (mut made, mut session) = (0usize, 0u64);
        while made < clicks {
            let length = self.session_length();
            let mut item = self.zipf();
            for position in 0..length.min(clicks - made) {
                if position > 0 {
                    item = self.next_item(item);
                }
                click(session, item, made as i64 * 100);
                made += 1;
            }
            session += 1;
        }
    }
}

pub fn argument(name: &str, default: usize) -> usize {
    let arguments: Vec<String> = std::env::args().collect();
    arguments
        .iter()
        .position(|argument| argument == name)
        .and_then(|at| arguments.get(at + 1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}
