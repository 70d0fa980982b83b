//! Probabilistic matching of people whose records carry typos (names, dates
//! of birth, addresses): blocking → field comparison levels →
//! Fellegi–Sunter weights estimated without labels → threshold → one-to-one.
//!
//! - **Blocking** (a pair is compared if any pass puts it together): social
//!   security id within one edit (deletion neighbourhood), exact date of
//!   birth, postcode + Soundex of either name, the unordered pair of name
//!   Soundex codes, street number + Soundex of the street's first word.
//!   Keys shared by more than [`MatchConfig::block_size_max`] records are
//!   skipped, so a common value cannot make blocking quadratic.
//! - **Comparison levels** per field: strings exact / Jaro-Winkler ≥ 0.92 /
//!   ≥ 0.80 / other; codes exact / one edit / other; dates also accept a
//!   day–month swap; a missing side contributes nothing. Swapped name and
//!   address fields are compared crossed when that reads better.
//! - **Weights** log2(m/u): u (chance agreement) from random pairs, m and the
//!   match share p by EM over the candidates with u fixed. The threshold is
//!   where the posterior reaches 0.5 under the prior p·candidates/(|A|·|B|).
//! - **Which m**: an EM estimate of m is used only when it rests on at least
//!   [`SUPPORT_MIN`] estimated matching pairs and on at least as many as the
//!   estimate kept from an earlier run ([`Parameters`]). Otherwise the kept
//!   (or, with none, [`default_m`]) m is used and only p is re-estimated.
//!   Why: after a run has merged the duplicates, the candidates left are
//!   mostly different people; EM fitted there still finds a "match" class
//!   (pairs sharing a birth date and a street number) and would merge them.
//!   How typos look is a property of the population, learned best where the
//!   duplicates still were; how many matches remain (p) is what changes.
//! - **One-to-one**: greedily by score, each record links at most once.
//!
//! Designed and first measured in a Python study on FEBRL (F1 1.0 on FEBRL4
//! and on FEBRL1), then ported; `kairos match-eval` measures this code.

pub mod strings;

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use strings::{jaro_winkler, osa_distance, soundex};

/// The compared fields, in the order of a [`Record`].
pub const FIELDS: [&str; 10] = [
    "given_name",
    "surname",
    "street_number",
    "address_1",
    "address_2",
    "suburb",
    "postcode",
    "state",
    "date_of_birth",
    "soc_sec_id",
];
const LEVELS: [usize; 10] = [4, 4, 3, 4, 4, 4, 3, 2, 3, 3];
const MISSING: i8 = -1;
/// Width of the review band below the threshold, in bits of evidence.
pub const REVIEW_BAND_BITS: f64 = 5.0;

/// One person's trimmed field values, in [`FIELDS`] order ("" = missing).
pub type Record = [String; 10];
type Levels = [i8; 10];

/// Fewest estimated matching pairs an EM estimate of m must rest on to be
/// used. Below it the "match" class EM finds may be an artefact (a few
/// pairs sharing a birth date), and m fitted on a handful of pairs is
/// mostly noise; FEBRL's smallest set has 500 true pairs, a residue after
/// a run typically a dozen.
pub const SUPPORT_MIN: f64 = 50.0;

/// Fellegi–Sunter m (P(level | match)) worth keeping between runs, with the
/// evidence it rests on. Holds no personal data (probabilities only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parameters {
    /// Per field of [`FIELDS`], per comparison level (0 = disagree).
    pub m: Vec<Vec<f64>>,
    /// Estimated matching pairs among the candidates of the run that
    /// estimated `m` (match share × candidate pairs).
    pub support: f64,
}

impl Parameters {
    /// Whether `m` has the shape this version compares (a stored estimate
    /// from a version with other fields or levels is not used).
    pub fn fits(&self) -> bool {
        self.m.len() == LEVELS.len()
            && self.m.iter().zip(LEVELS).all(|(row, levels)| {
                row.len() == levels && row.iter().all(|p| p.is_finite() && *p > 0.0)
            })
    }
}

/// Where a run's m came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParameterSource {
    /// Estimated by this run (well supported): worth keeping.
    Estimated,
    /// Kept from an earlier, better supported run.
    Stored,
    /// [`default_m`]: nothing well supported yet.
    Default,
}

/// m before any well-supported estimate: a matching pair agrees exactly on
/// a field most of the time, nearly or not at all rarely (the usual prior
/// of unsupervised linkage tools; conservative, as the threshold still
/// comes from p estimated on the data).
pub fn default_m() -> Vec<Vec<f64>> {
    LEVELS
        .iter()
        .map(|&levels| match levels {
            2 => vec![0.05, 0.95],
            3 => vec![0.03, 0.05, 0.92],
            _ => vec![0.02, 0.03, 0.05, 0.90],
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct MatchConfig {
    /// Random pairs sampled to estimate chance agreement.
    pub random_pairs: usize,
    pub em_iterations_max: usize,
    /// Blocking keys shared by more records than this are skipped.
    pub block_size_max: usize,
}

impl Default for MatchConfig {
    fn default() -> Self {
        MatchConfig {
            random_pairs: 50_000,
            em_iterations_max: 200,
            block_size_max: 1_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    pub a: usize,
    pub b: usize,
    /// Evidence in bits (log2 likelihood ratio).
    pub score: f64,
}

#[derive(Debug, Clone)]
pub struct Linkage {
    pub candidate_pairs: usize,
    pub links: Vec<Link>,
    /// Pairs just below the threshold whose records are both unlinked: the
    /// suggestions a person should review.
    pub review: Vec<Link>,
    pub threshold: f64,
    /// Estimated share of matches among the candidates.
    pub match_share: f64,
    pub em_iterations: usize,
    /// Weight in bits per field and level.
    pub weights: Vec<Vec<f64>>,
    /// The m this run used; keep it when `source` is `Estimated`.
    pub parameters: Parameters,
    pub source: ParameterSource,
}

/// Links records of `a` to records of `b`, each record at most once.
pub fn link(a: &[Record], b: &[Record], config: &MatchConfig) -> Linkage {
    let pairs = candidate_pairs(a, b, config.block_size_max);
    let all_pairs = a.len() as f64 * b.len() as f64;
    score_and_link(a, b, pairs, all_pairs, config, None)
}

/// Finds duplicates within one set of records (profiles): pairs `a < b`.
/// One-to-one like [`link`]: a record joins at most one other per run, so
/// a record that resembles two people cannot bridge them into one; a person
/// with three profiles is joined over two runs (the merged profile is one
/// record the second time). `kept`: the parameters of an earlier run
/// (see the module's "Which m").
pub fn dedupe(records: &[Record], config: &MatchConfig, kept: Option<&Parameters>) -> Linkage {
    let pairs: Vec<(usize, usize)> = candidate_pairs(records, records, config.block_size_max)
        .into_iter()
        .filter(|(a, b)| a < b)
        .collect();
    let count = records.len() as f64;
    let all_pairs = (count * (count - 1.0) / 2.0).max(1.0);
    score_and_link(records, records, pairs, all_pairs, config, kept)
}

/// m for this run: its own EM estimate when well supported and at least as
/// well as the kept one, else the kept one, else the default; then the
/// match share p (with m and u fixed when m was not estimated here).
fn choose_parameters(
    levels: &[Levels],
    u: &[Vec<f64>],
    kept: Option<&Parameters>,
    config: &MatchConfig,
) -> (Parameters, ParameterSource, f64, usize) {
    let (m, share, iterations) =
        expectation_maximization(levels, u, None, config.em_iterations_max);
    let support = share * levels.len() as f64;
    let kept = kept.filter(|kept| kept.fits());
    if support >= SUPPORT_MIN && kept.is_none_or(|kept| support >= kept.support) {
        let parameters = Parameters { m, support };
        return (parameters, ParameterSource::Estimated, share, iterations);
    }
    let (parameters, source) = match kept {
        Some(kept) => (kept.clone(), ParameterSource::Stored),
        None => {
            let m = default_m();
            (Parameters { m, support: 0.0 }, ParameterSource::Default)
        }
    };
    let (_, share, iterations) =
        expectation_maximization(levels, u, Some(&parameters.m), config.em_iterations_max);
    (parameters, source, share, iterations)
}

fn score_and_link(
    a: &[Record],
    b: &[Record],
    pairs: Vec<(usize, usize)>,
    all_pairs: f64,
    config: &MatchConfig,
    kept: Option<&Parameters>,
) -> Linkage {
    let levels: Vec<Levels> = pairs.iter().map(|&(i, j)| compare(&a[i], &b[j])).collect();
    let u = chance_agreement(a, b, config.random_pairs);
    let (parameters, source, match_share, em_iterations) =
        choose_parameters(&levels, &u, kept, config);
    let m = &parameters.m;
    let weights: Vec<Vec<f64>> = (0..FIELDS.len())
        .map(|field| {
            (0..LEVELS[field])
                .map(|level| (m[field][level] / u[field][level]).log2())
                .collect()
        })
        .collect();
    let prior = (match_share * pairs.len() as f64 / all_pairs).clamp(1e-12, 1.0 - 1e-12);
    let threshold = ((1.0 - prior) / prior).log2();
    let mut scored: Vec<Link> = pairs
        .iter()
        .zip(&levels)
        .map(|(&(a, b), levels)| Link {
            a,
            b,
            score: score(levels, &weights),
        })
        .collect();
    scored.sort_by(|x, y| {
        y.score
            .total_cmp(&x.score)
            .then(x.a.cmp(&y.a))
            .then(x.b.cmp(&y.b))
    });
    let links = one_to_one(&scored, threshold, std::ptr::eq(a, b));
    // (the review band below excludes records already linked on either side)
    let same_set = std::ptr::eq(a, b);
    let mut linked_a: HashSet<usize> = links.iter().map(|link| link.a).collect();
    let mut linked_b: HashSet<usize> = links.iter().map(|link| link.b).collect();
    if same_set {
        linked_a.extend(linked_b.iter().copied());
        linked_b.clone_from(&linked_a);
    }
    let review = scored
        .iter()
        .filter(|link| link.score < threshold && link.score >= threshold - REVIEW_BAND_BITS)
        .filter(|link| !linked_a.contains(&link.a) && !linked_b.contains(&link.b))
        .copied()
        .collect();
    Linkage {
        candidate_pairs: pairs.len(),
        links,
        review,
        threshold,
        match_share,
        em_iterations,
        weights,
        parameters,
        source,
    }
}

fn blocking_keys(record: &Record) -> Vec<(u8, String)> {
    let [
        given,
        surname,
        street_number,
        address_1,
        _,
        _,
        postcode,
        _,
        birth,
        ssn,
    ] = record;
    let mut keys = Vec::new();
    if !ssn.is_empty() {
        keys.push((1, ssn.clone()));
        let characters: Vec<char> = ssn.chars().collect();
        for index in 0..characters.len() {
            let without: String = characters[..index]
                .iter()
                .chain(&characters[index + 1..])
                .collect();
            keys.push((1, without));
        }
    }
    if !birth.is_empty() {
        keys.push((2, birth.clone()));
    }
    for name in [given, surname].into_iter().filter(|name| !name.is_empty()) {
        keys.push((3, format!("{postcode}|{}", soundex(name))));
    }
    if !given.is_empty() && !surname.is_empty() {
        let mut codes = [soundex(given), soundex(surname)];
        codes.sort();
        keys.push((4, codes.join("|")));
    }
    if !street_number.is_empty() && !address_1.is_empty() {
        let first_word = address_1.split_whitespace().next().unwrap_or("");
        keys.push((5, format!("{street_number}|{}", soundex(first_word))));
    }
    keys
}

fn candidate_pairs(a: &[Record], b: &[Record], block_size_max: usize) -> Vec<(usize, usize)> {
    let mut index: HashMap<(u8, String), Vec<usize>> = HashMap::new();
    for (j, record) in b.iter().enumerate() {
        for key in blocking_keys(record) {
            index.entry(key).or_default().push(j);
        }
    }
    let mut pairs = HashSet::new();
    for (i, record) in a.iter().enumerate() {
        for key in blocking_keys(record) {
            if let Some(members) = index
                .get(&key)
                .filter(|members| members.len() <= block_size_max)
            {
                pairs.extend(members.iter().map(|&j| (i, j)));
            }
        }
    }
    let mut pairs: Vec<(usize, usize)> = pairs.into_iter().collect();
    pairs.sort_unstable();
    pairs
}

fn string_level(a: &str, b: &str) -> i8 {
    if a.is_empty() || b.is_empty() {
        return MISSING;
    }
    if a == b {
        return 3;
    }
    match jaro_winkler(a, b) {
        similarity if similarity >= 0.92 => 2,
        similarity if similarity >= 0.80 => 1,
        _ => 0,
    }
}

fn code_level(a: &str, b: &str) -> i8 {
    match (a, b) {
        ("", _) | (_, "") => MISSING,
        _ if a == b => 2,
        _ if osa_distance(a, b) <= 1 => 1,
        _ => 0,
    }
}

/// Dates as YYYYMMDD: exact, one edit or day and month swapped, other.
fn date_level(a: &str, b: &str) -> i8 {
    let swapped = a.len() == 8
        && b.len() == 8
        && a.is_ascii()
        && b.is_ascii()
        && a[..4] == b[..4]
        && a[4..6] == b[6..8]
        && a[6..8] == b[4..6];
    match code_level(a, b) {
        0 if swapped => 1,
        level => level,
    }
}

fn exact_level(a: &str, b: &str) -> i8 {
    match (a, b) {
        ("", _) | (_, "") => MISSING,
        _ => i8::from(a == b),
    }
}

/// Compares two fields both straight and crossed (swapped values); the
/// crossed reading wins only if it is better in total.
fn best_orientation(a: (&str, &str), b: (&str, &str)) -> (i8, i8) {
    let straight = (string_level(a.0, b.0), string_level(a.1, b.1));
    let crossed = (string_level(a.0, b.1), string_level(a.1, b.0));
    let total = |(x, y): (i8, i8)| x.max(0) + y.max(0);
    if total(crossed) > total(straight) {
        crossed
    } else {
        straight
    }
}

fn compare(a: &Record, b: &Record) -> Levels {
    let (given, surname) = best_orientation((&a[0], &a[1]), (&b[0], &b[1]));
    let (address_1, address_2) = best_orientation((&a[3], &a[4]), (&b[3], &b[4]));
    [
        given,
        surname,
        code_level(&a[2], &b[2]),
        address_1,
        address_2,
        string_level(&a[5], &b[5]),
        code_level(&a[6], &b[6]),
        exact_level(&a[7], &b[7]),
        date_level(&a[8], &b[8]),
        code_level(&a[9], &b[9]),
    ]
}

/// xorshift64, seeded, so the sample (and every weight) is reproducible.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as usize
    }
}

fn smoothed() -> Vec<Vec<f64>> {
    LEVELS.iter().map(|&levels| vec![1.0; levels]).collect()
}

fn normalized(counts: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
    counts
        .into_iter()
        .map(|row| {
            let total: f64 = row.iter().sum();
            row.into_iter().map(|count| count / total).collect()
        })
        .collect()
}

/// P(level | non-match), from random pairs (virtually all non-matches).
fn chance_agreement(a: &[Record], b: &[Record], samples: usize) -> Vec<Vec<f64>> {
    let mut counts = smoothed();
    if a.is_empty() || b.is_empty() {
        return normalized(counts);
    }
    let mut random = XorShift(0x9E37_79B9_7F4A_7C15);
    for _ in 0..samples {
        let i = random.below(a.len());
        let j = random.below(b.len());
        if std::ptr::eq(a, b) && i == j {
            continue; // deduplicating: a record is no chance pair with itself
        }
        for (field, &level) in compare(&a[i], &b[j]).iter().enumerate() {
            if level != MISSING {
                counts[field][level as usize] += 1.0;
            }
        }
    }
    normalized(counts)
}

/// m = P(level | match) and the match share p by EM, u held fixed; with
/// `fixed_m`, m is held too and only p is estimated.
fn expectation_maximization(
    levels: &[Levels],
    u: &[Vec<f64>],
    fixed_m: Option<&[Vec<f64>]>,
    iterations_max: usize,
) -> (Vec<Vec<f64>>, f64, usize) {
    let mut patterns: HashMap<Levels, f64> = HashMap::new();
    for vector in levels {
        *patterns.entry(*vector).or_default() += 1.0;
    }
    let mut m = match fixed_m {
        Some(m) => m.to_vec(),
        None => normalized(
            LEVELS
                .iter()
                .map(|&levels| (1..=levels).map(|k| k as f64).collect())
                .collect(),
        ),
    };
    let mut share: f64 = 0.5;
    let mut iterations = 0;
    while iterations < iterations_max {
        iterations += 1;
        let mut counts = smoothed();
        let (mut matched, mut total) = (0.0, 0.0);
        for (vector, &count) in &patterns {
            let (mut log_m, mut log_u) = (share.ln(), (1.0 - share).ln());
            for (field, &level) in vector.iter().enumerate() {
                if level != MISSING {
                    log_m += m[field][level as usize].ln();
                    log_u += u[field][level as usize].ln();
                }
            }
            let difference = log_u - log_m;
            let posterior = if difference < 700.0 {
                1.0 / (1.0 + difference.exp())
            } else {
                0.0
            };
            matched += posterior * count;
            total += count;
            for (field, &level) in vector.iter().enumerate() {
                if level != MISSING {
                    counts[field][level as usize] += posterior * count;
                }
            }
        }
        let new_share = if total > 0.0 { matched / total } else { 0.0 };
        if fixed_m.is_none() {
            m = normalized(counts);
        }
        let converged = (new_share - share).abs() < 1e-9;
        share = new_share;
        if converged {
            break;
        }
    }
    (m, share, iterations)
}

fn score(levels: &Levels, weights: &[Vec<f64>]) -> f64 {
    levels
        .iter()
        .enumerate()
        .filter(|(_, level)| **level != MISSING)
        .map(|(field, &level)| weights[field][level as usize])
        .sum()
}

/// `scored` sorted best first.
/// Greedy by score; each record links once. Deduplicating one set
/// (`same_set`), a record is used once whichever side of the pair it is on.
fn one_to_one(scored: &[Link], threshold: f64, same_set: bool) -> Vec<Link> {
    let (mut used_a, mut used_b) = (HashSet::new(), HashSet::new());
    let mut links = Vec::new();
    for link in scored.iter().take_while(|link| link.score >= threshold) {
        let used = |record: usize| used_a.contains(&record) || used_b.contains(&record);
        let free = if same_set {
            !used(link.a) && !used(link.b)
        } else {
            !used_a.contains(&link.a) && !used_b.contains(&link.b)
        };
        if free {
            used_a.insert(link.a);
            used_b.insert(link.b);
            links.push(*link);
        }
    }
    links
}

/// Trait names read for each field of a [`Record`], FEBRL's name first.
const TRAIT_ALIASES: [&[&str]; 10] = [
    &["given_name", "first_name", "firstName"],
    &["surname", "last_name", "lastName"],
    &["street_number"],
    &["address_1", "address", "street"],
    &["address_2"],
    &["suburb", "city"],
    &["postcode", "zip", "postal_code", "postalCode"],
    &["state", "region"],
    &["date_of_birth", "birthday", "dob"],
    &["soc_sec_id", "ssn"],
];

/// A profile's traits as a matching record (lower-cased, dates as
/// YYYYMMDD); `None` when fewer than two fields are known — too little to
/// tell people apart.
pub fn record_from_traits(traits: &serde_json::Map<String, serde_json::Value>) -> Option<Record> {
    let record: Record = std::array::from_fn(|field| {
        let value = TRAIT_ALIASES[field]
            .iter()
            .find_map(|name| match traits.get(*name)? {
                serde_json::Value::String(text) => Some(text.trim().to_lowercase()),
                serde_json::Value::Number(number) => Some(number.to_string()),
                _ => None,
            })
            .unwrap_or_default();
        if FIELDS[field] == "date_of_birth" {
            value.replace(['-', '/', '.'], "")
        } else {
            value
        }
    });
    (record.iter().filter(|value| !value.is_empty()).count() >= 2).then_some(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(values: [&str; 10]) -> Record {
        values.map(str::to_string)
    }

    #[test]
    fn swapped_names_and_typos_still_compare_well() {
        let a = record([
            "ada",
            "lovelace",
            "12",
            "high street",
            "",
            "sydney",
            "2000",
            "nsw",
            "18151210",
            "1234567",
        ]);
        let b = record([
            "lovelace",
            "ada",
            "12",
            "high stret",
            "",
            "sydney",
            "2000",
            "nsw",
            "18151012",
            "1234576",
        ]);
        let levels = compare(&a, &b);
        assert_eq!(&levels[..2], &[3, 3], "names compared crossed");
        assert_eq!(levels[3], 2, "one typo in the street");
        assert_eq!(levels[4], MISSING);
        assert_eq!(levels[8], 1, "day and month swapped");
        assert_eq!(levels[9], 1, "adjacent digits swapped");
    }

    #[test]
    fn blocking_finds_a_pair_through_a_one_digit_ssn_typo() {
        let a = vec![record(["x", "y", "", "", "", "", "", "", "", "1234567"])];
        let b = vec![record(["p", "q", "", "", "", "", "", "", "", "1234568"])];
        assert_eq!(candidate_pairs(&a, &b, 10), vec![(0, 0)]);
    }

    const SYLLABLES: [&str; 20] = [
        "an", "bel", "cor", "da", "el", "fin", "gar", "hol", "is", "jen", "ka", "lor", "mar",
        "nel", "or", "pet", "ros", "sam", "tor", "wil",
    ];

    /// A made-up word of `syllables` syllables: enough distinct values that
    /// names, streets and suburbs vary as in FEBRL's frequency tables.
    fn word(random: &mut XorShift, syllables: usize) -> String {
        (0..syllables)
            .map(|_| SYLLABLES[random.below(SYLLABLES.len())])
            .collect()
    }

    /// `people` different people, seeded.
    fn people(people: usize, seed: u64) -> Vec<Record> {
        let mut random = XorShift(seed);
        (0..people)
            .map(|_| {
                let suburb = random.below(300);
                [
                    word(&mut random, 2),
                    word(&mut random, 3),
                    (1 + random.below(120)).to_string(),
                    format!("{} street", word(&mut random, 2)),
                    String::new(),
                    word(&mut XorShift(suburb as u64 + 1), 3),
                    (2000 + suburb * 7).to_string(),
                    ["nsw", "vic", "qld", "wa"][suburb % 4].to_string(),
                    format!(
                        "19{:02}{:02}{:02}",
                        40 + random.below(60),
                        1 + random.below(12),
                        1 + random.below(28)
                    ),
                    (1_000_000 + random.below(9_000_000)).to_string(),
                ]
            })
            .collect()
    }

    /// A copy with two changes among: a typo in any field, a missing value.
    fn duplicate(original: &Record, random: &mut XorShift) -> Record {
        let mut copy = original.clone();
        for _ in 0..2 {
            let field = random.below(FIELDS.len());
            let mut characters: Vec<char> = copy[field].chars().collect();
            if characters.is_empty() {
                continue;
            }
            if random.below(4) == 0 {
                characters.clear();
            } else {
                let at = random.below(characters.len());
                characters[at] = match characters[at] {
                    digit if digit.is_ascii_digit() => {
                        char::from(b'0' + (digit as u8 - b'0' + 1) % 10)
                    }
                    'x' => 'z',
                    _ => 'x',
                };
            }
            copy[field] = characters.into_iter().collect();
        }
        copy
    }

    #[test]
    fn a_residue_of_different_people_keeps_the_population_estimate() {
        let originals = people(400, 0x5EED);
        let mut random = XorShift(42);
        let mut population = originals.clone();
        population.extend(originals.iter().map(|o| duplicate(o, &mut random)));
        let first = dedupe(&population, &MatchConfig::default(), None);
        assert_eq!(first.source, ParameterSource::Estimated);
        assert!(first.parameters.support >= SUPPORT_MIN);
        let wrong = first
            .links
            .iter()
            .filter(|link| link.a % 400 != link.b % 400)
            .count();
        assert_eq!(wrong, 0, "first run");
        assert!(first.links.len() >= 395, "{} links", first.links.len());

        // What a run leaves: one profile per person. Fitting EM again there
        // would make a "match" class of people sharing a birth date or a
        // street; the kept estimate does not.
        let second = dedupe(&originals, &MatchConfig::default(), Some(&first.parameters));
        assert_eq!(second.source, ParameterSource::Stored);
        assert_eq!(second.links, vec![], "no one left to merge");
        let fresh = dedupe(&originals, &MatchConfig::default(), None);
        assert_ne!(fresh.source, ParameterSource::Estimated);
        assert_eq!(fresh.links, vec![]);
    }

    #[test]
    fn a_better_supported_estimate_replaces_the_kept_one() {
        let kept = Parameters {
            m: default_m(),
            support: 1.0,
        };
        let originals = people(300, 7);
        let mut random = XorShift(9);
        let mut population = originals.clone();
        population.extend(originals.iter().map(|o| duplicate(o, &mut random)));
        let run = dedupe(&population, &MatchConfig::default(), Some(&kept));
        assert_eq!(run.source, ParameterSource::Estimated);
        let wrong_shape = Parameters {
            m: vec![vec![0.5, 0.5]],
            support: 1e9,
        };
        assert!(!wrong_shape.fits());
        let run = dedupe(&population, &MatchConfig::default(), Some(&wrong_shape));
        assert_eq!(run.source, ParameterSource::Estimated);
    }
}
