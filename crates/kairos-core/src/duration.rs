//! Durations as people write them in definitions and settings: a whole
//! number and a unit — `90s`, `30m`, `2h`, `7d`, `2w`. One parser for
//! journeys (`within`, `wait`), training labels and the configuration.

/// Seconds in `text` (`<count><unit>`, unit s, m, h, d or w, count > 0);
/// `None` for anything else, zero, or an overflow.
pub fn parse_seconds(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (count, unit) = text.split_at(split);
    let unit_seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    let count: u64 = count.parse().ok().filter(|count| *count > 0)?;
    count.checked_mul(unit_seconds)
}

#[cfg(test)]
mod tests {
    use super::parse_seconds;

    #[test]
    fn whole_counts_of_one_unit() {
        assert_eq!(parse_seconds("90s"), Some(90));
        assert_eq!(parse_seconds(" 30m "), Some(1_800));
        assert_eq!(parse_seconds("7d"), Some(604_800));
        assert_eq!(parse_seconds("2w"), Some(1_209_600));
        for bad in [
            "",
            "30",
            "m",
            "0h",
            "1.5h",
            "1 h",
            "1y",
            "-1d",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_seconds(bad), None, "{bad}");
        }
    }
}
