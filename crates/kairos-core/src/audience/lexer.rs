//! The audience language's tokens: words, quoted text, numbers,
//! durations (`30d`), dates, symbols — each with its line and column, so
//! the parser's errors can point at them.

use super::parser::DefinitionError;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Token {
    Word(String),
    Text(String),
    Number(f64),
    /// `30d`, `12h`: seconds.
    Duration(u64),
    Date(jiff::Timestamp),
    Symbol(&'static str),
    End,
}

impl Token {
    pub(super) fn describe(&self) -> String {
        match self {
            Token::Word(word) => format!("`{word}`"),
            Token::Text(text) => format!("\"{text}\""),
            Token::Number(number) => format!("the number {number}"),
            Token::Duration(_) => "a duration".to_string(),
            Token::Date(_) => "a date".to_string(),
            Token::Symbol(symbol) => format!("`{symbol}`"),
            Token::End => "the end of the definition".to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Located {
    pub(super) token: Token,
    pub(super) line: usize,
    pub(super) column: usize,
}

const SYMBOLS: [&str; 12] = [
    ">=", "<=", "!=", "=", ">", "<", "(", ")", "[", "]", ",", ".",
];
pub(super) const KEYWORDS: [&str; 37] = [
    "most",
    "frequent",
    "case",
    "when",
    "else",
    "end",
    "and",
    "or",
    "not",
    "trait",
    "computed",
    "score",
    "in",
    "audience",
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "distinct",
    "of",
    "where",
    "within",
    "between",
    "performed",
    "did",
    "perform",
    "first",
    "last",
    "more",
    "less",
    "than",
    "ago",
    "then",
    "followed",
    "by",
    "exists",
];

pub(super) fn lex(text: &str) -> Result<Vec<Located>, DefinitionError> {
    let chars: Vec<char> = text.chars().collect();
    let (mut index, mut line, mut column) = (0, 1, 1);
    let mut tokens = Vec::new();
    let error = |line, column, message: String| DefinitionError {
        line,
        column,
        message,
    };
    while index < chars.len() {
        let c = chars[index];
        if c == '\n' {
            index += 1;
            line += 1;
            column = 1;
            continue;
        }
        if c.is_whitespace() {
            index += 1;
            column += 1;
            continue;
        }
        if c == '#' {
            // A comment runs to the end of the line.
            while index < chars.len() && chars[index] != '\n' {
                index += 1;
            }
            continue;
        }
        let (start_line, start_column) = (line, column);
        let start = index;
        let token = if c == '"' {
            index += 1;
            let mut value = String::new();
            loop {
                match chars.get(index) {
                    None | Some('\n') => {
                        return Err(error(
                            start_line,
                            start_column,
                            "this text has no closing quote (\")".into(),
                        ));
                    }
                    Some('"') => break,
                    Some('\\') if chars.get(index + 1).is_some() => {
                        value.push(chars[index + 1]);
                        index += 2;
                    }
                    Some(other) => {
                        value.push(*other);
                        index += 1;
                    }
                }
            }
            index += 1;
            Token::Text(value)
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(index + 1).is_some_and(char::is_ascii_digit))
        {
            index += 1;
            while index < chars.len()
                && (chars[index].is_ascii_alphanumeric()
                    || matches!(chars[index], '.' | '_' | '-' | ':' | '+'))
            {
                index += 1;
            }
            let word: String = chars[start..index].iter().collect();
            number_like(&word).ok_or_else(|| {
                error(
                    start_line,
                    start_column,
                    format!("`{word}` is not a number, a duration (30d, 12h, 15m, 90s, 2w) or a date (2024-01-31)"),
                )
            })?
        } else if c.is_alphabetic() || c == '_' {
            while index < chars.len() && (chars[index].is_alphanumeric() || chars[index] == '_') {
                index += 1;
            }
            Token::Word(chars[start..index].iter().collect())
        } else {
            let rest: String = chars[index..chars.len().min(index + 2)].iter().collect();
            let symbol = SYMBOLS
                .iter()
                .find(|symbol| rest.starts_with(**symbol))
                .ok_or_else(|| {
                    error(
                        start_line,
                        start_column,
                        format!("unexpected character `{c}`"),
                    )
                })?;
            index += symbol.len();
            Token::Symbol(symbol)
        };
        column += index - start;
        tokens.push(Located {
            token,
            line: start_line,
            column: start_column,
        });
    }
    tokens.push(Located {
        token: Token::End,
        line,
        column,
    });
    Ok(tokens)
}

fn number_like(word: &str) -> Option<Token> {
    let plain = word.replace('_', "");
    if let Ok(number) = plain.parse::<f64>() {
        return number.is_finite().then_some(Token::Number(number));
    }
    let units = [
        ("w", 604_800),
        ("d", 86_400),
        ("h", 3_600),
        ("m", 60),
        ("s", 1),
    ];
    for (suffix, seconds) in units {
        if let Some(count) = plain
            .strip_suffix(suffix)
            .and_then(|count| count.parse::<u64>().ok())
        {
            return Some(Token::Duration(count * seconds));
        }
    }
    if let Ok(timestamp) = word.parse::<jiff::Timestamp>() {
        return Some(Token::Date(timestamp));
    }
    // A bare date is midnight UTC.
    let date: jiff::civil::Date = word.parse().ok()?;
    format!("{date}T00:00:00Z").parse().ok().map(Token::Date)
}
