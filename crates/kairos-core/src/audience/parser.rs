//! Text form → [`Expr`]: a hand-written lexer and recursive-descent parser,
//! so every error can name its line and column and what was expected.

use super::ast::*;
use super::lexer::{KEYWORDS, Located, Token, lex};

/// A parse or type error at a position of the definition (1-based).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DefinitionError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::error::Error for DefinitionError {}

impl std::fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

/// Deepest nesting of `not` and parentheses in a definition. The parser,
/// the evaluators and the compiler recurse once per level, so without a
/// bound a definition nested 3,000 deep overflowed the stack and killed
/// the process; real definitions nest a few levels.
pub const NESTING_DEPTH_MAX: usize = 32;

/// Parses a definition's text form.
pub fn parse(text: &str) -> Result<Expr, DefinitionError> {
    let mut parser = Parser {
        tokens: lex(text)?,
        position: 0,
        depth: 0,
    };
    let expr = parser.or()?;
    match parser.peek() {
        Token::End => Ok(expr),
        other => Err(parser.error(format!(
            "expected `and`, `or` or the end of the definition, found {}",
            other.describe()
        ))),
    }
}

/// Parses a computed trait's text form (docs/audiences.md, "Computed
/// traits"): an aggregate, `first`/`last` of an event, `last P of` an
/// event, `most frequent P of` an event, or `case when ... end`.
pub fn parse_value(text: &str) -> Result<ValueExpr, DefinitionError> {
    let mut parser = Parser {
        tokens: lex(text)?,
        position: 0,
        depth: 0,
    };
    let expr = parser.value_expr()?;
    match parser.peek() {
        Token::End => Ok(expr),
        other => Err(parser.error(format!(
            "expected the end of the computed trait's definition, found {}",
            other.describe()
        ))),
    }
}

struct Parser {
    tokens: Vec<Located>,
    position: usize,
    /// `not`s and `(`s open around the current position.
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.position].token
    }

    fn peek_at(&self, ahead: usize) -> &Token {
        let index = (self.position + ahead).min(self.tokens.len() - 1);
        &self.tokens[index].token
    }

    fn next(&mut self) -> Token {
        let token = self.tokens[self.position].token.clone();
        if self.position < self.tokens.len() - 1 {
            self.position += 1;
        }
        token
    }

    fn error(&self, message: String) -> DefinitionError {
        let located = &self.tokens[self.position];
        DefinitionError {
            line: located.line,
            column: located.column,
            message,
        }
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Token::Word(found) if found.eq_ignore_ascii_case(word))
    }

    fn eat_word(&mut self, word: &str) -> bool {
        let found = self.is_word(word);
        if found {
            self.next();
        }
        found
    }

    fn expect_word(&mut self, word: &str, context: &str) -> Result<(), DefinitionError> {
        if self.eat_word(word) {
            Ok(())
        } else {
            Err(self.error(format!(
                "expected `{word}` {context}, found {}",
                self.peek().describe()
            )))
        }
    }

    fn eat_symbol(&mut self, symbol: &str) -> bool {
        let found = matches!(self.peek(), Token::Symbol(found) if *found == symbol);
        if found {
            self.next();
        }
        found
    }

    fn or(&mut self) -> Result<Expr, DefinitionError> {
        let mut any = vec![self.and()?];
        while self.eat_word("or") {
            any.push(self.and()?);
        }
        Ok(if any.len() == 1 {
            any.remove(0)
        } else {
            Expr::Or { any }
        })
    }

    fn and(&mut self) -> Result<Expr, DefinitionError> {
        let mut all = vec![self.unary()?];
        while self.eat_word("and") {
            all.push(self.unary()?);
        }
        Ok(if all.len() == 1 {
            all.remove(0)
        } else {
            Expr::And { all }
        })
    }

    fn unary(&mut self) -> Result<Expr, DefinitionError> {
        if self.is_word("not") || matches!(self.peek(), Token::Symbol("(")) {
            self.enter_nesting()?;
            let expr = self.nested();
            self.depth -= 1;
            return expr;
        }
        self.condition()
    }

    /// `not <unary>` or `( <or> )`.
    fn nested(&mut self) -> Result<Expr, DefinitionError> {
        if self.eat_word("not") {
            return Ok(Expr::Not {
                expr: Box::new(self.unary()?),
            });
        }
        self.next(); // the `(`
        let expr = self.or()?;
        if !self.eat_symbol(")") {
            return Err(self.error(format!(
                "expected `)` to close the `(`, found {}",
                self.peek().describe()
            )));
        }
        Ok(expr)
    }

    fn enter_nesting(&mut self) -> Result<(), DefinitionError> {
        if self.depth >= NESTING_DEPTH_MAX {
            return Err(self.error(format!(
                "`not` and parentheses nest more than {NESTING_DEPTH_MAX} levels deep here (the limit); simplify the definition, e.g. split it into audiences referenced with `in audience \"name\"`"
            )));
        }
        self.depth += 1;
        Ok(())
    }

    fn condition(&mut self) -> Result<Expr, DefinitionError> {
        let word = match self.peek() {
            Token::Word(word) => word.to_lowercase(),
            Token::Text(_) => return self.sequence(),
            other => {
                return Err(self.error(format!(
                    "expected a condition (trait, computed, score, in audience, count, sum, avg, min, max, distinct, performed, did not perform, first, last, or an event name for a sequence), found {}",
                    other.describe()
                )));
            }
        };
        match word.as_str() {
            "trait" | "computed" => {
                self.next();
                let name = self.name("a trait name")?;
                let test = self.value_test()?;
                Ok(if word == "trait" {
                    Expr::Trait { name, test }
                } else {
                    Expr::Computed { name, test }
                })
            }
            "score" => {
                self.next();
                // `score churn > 0.8` or `score("churn") > 0.8`.
                let called = self.eat_symbol("(");
                let model = self.name("a model name")?;
                if called && !self.eat_symbol(")") {
                    return Err(self.error("expected `)` after the model's name".to_string()));
                }
                let op = self.comparison()?;
                let value = self.number("a score")?;
                Ok(Expr::Score { model, op, value })
            }
            "in" => {
                self.next();
                self.expect_word("audience", "after `in`")?;
                let audience = self.text("the audience's name in quotes")?;
                Ok(Expr::InAudience { audience })
            }
            "count" => {
                self.next();
                self.aggregate(Aggregate::Count)
            }
            "sum" | "avg" | "min" | "max" | "distinct" => {
                self.next();
                let function = self.aggregate_of(&word)?;
                self.aggregate(function)
            }
            "performed" => {
                self.next();
                let event = self.event_ref()?;
                let window = self.window()?;
                Ok(Expr::Performed {
                    event,
                    window,
                    negated: false,
                })
            }
            "did" => {
                self.next();
                self.expect_word("not", "after `did`")?;
                self.expect_word("perform", "after `did not`")?;
                let event = self.event_ref()?;
                let window = self.window()?;
                Ok(Expr::Performed {
                    event,
                    window,
                    negated: true,
                })
            }
            "first" | "last" => {
                self.next();
                let which = if word == "first" { Occurrence::First } else { Occurrence::Last };
                let event = self.event_ref()?;
                let relation = if self.eat_word("more") {
                    Relation::MoreThan
                } else if self.eat_word("less") {
                    Relation::LessThan
                } else {
                    return Err(self.error(format!(
                        "expected `more than` or `less than` (e.g. `more than 90d ago`), found {}",
                        self.peek().describe()
                    )));
                };
                self.expect_word("than", "after `more`/`less`")?;
                let ago_seconds = self.duration("a duration such as 90d")?;
                self.expect_word("ago", "after the duration")?;
                Ok(Expr::Recency {
                    which,
                    event,
                    relation,
                    ago_seconds,
                })
            }
            other => Err(self.error(format!(
                "`{other}` does not start a condition; conditions start with trait, computed, score, in audience, count, sum, avg, min, max, distinct, performed, did not perform, first, last, or an event name in quotes"
            ))),
        }
    }

    fn value_expr(&mut self) -> Result<ValueExpr, DefinitionError> {
        let word = match self.peek() {
            Token::Word(word) => word.to_lowercase(),
            other => {
                return Err(self.error(format!(
                    "expected a value: count, sum, avg, min, max, distinct, first, last, most frequent, trend, change or case, found {}",
                    other.describe()
                )));
            }
        };
        self.next();
        match word.as_str() {
            "count" => {
                let event = self.event_ref()?;
                let window = self.window()?;
                Ok(ValueExpr::Aggregate {
                    function: Aggregate::Count,
                    event,
                    window,
                })
            }
            "sum" | "avg" | "min" | "max" | "distinct" => {
                let function = self.aggregate_of(&word)?;
                let event = self.event_ref()?;
                let window = self.window()?;
                Ok(ValueExpr::Aggregate {
                    function,
                    event,
                    window,
                })
            }
            "first" | "last" if matches!(self.peek(), Token::Text(_)) => {
                let which = if word == "first" {
                    Occurrence::First
                } else {
                    Occurrence::Last
                };
                let event = self.event_ref()?;
                Ok(ValueExpr::Occurrence { which, event })
            }
            "last" => {
                let property = self.name("a property name or an event name in quotes")?;
                self.expect_word("of", "between the property and the event name")?;
                let event = self.event_ref()?;
                Ok(ValueExpr::LatestValue { property, event })
            }
            "most" => {
                self.expect_word("frequent", "after `most`")?;
                let property = self.name("a property name (e.g. `category`)")?;
                self.expect_word("of", "between the property and the event name")?;
                let event = self.event_ref()?;
                let window = self.window()?;
                Ok(ValueExpr::MostFrequent {
                    property,
                    event,
                    window,
                })
            }
            "case" => self.case(),
            "trend" | "change" => self.trend(&word),
            other => {
                self.position -= 1;
                Err(self.error(format!(
                    "`{other}` does not start a value; a computed trait starts with count, sum, avg, min, max, distinct, first, last, most frequent, trend, change or case"
                )))
            }
        }
    }

    /// `trend <aggregate> within <duration>` / `change <aggregate> within
    /// <duration>`: the aggregate over the last window against the one
    /// before it.
    fn trend(&mut self, word: &str) -> Result<ValueExpr, DefinitionError> {
        let measure = if word == "trend" {
            TrendMeasure::Relative
        } else {
            TrendMeasure::Difference
        };
        let function = match self.peek() {
            Token::Word(next) if next.eq_ignore_ascii_case("count") => {
                self.next();
                Aggregate::Count
            }
            Token::Word(next)
                if ["sum", "avg", "min", "max", "distinct"]
                    .contains(&next.to_lowercase().as_str()) =>
            {
                let next = next.to_lowercase();
                self.next();
                self.aggregate_of(&next)?
            }
            other => {
                return Err(self.error(format!(
                    "`{word}` is followed by an aggregate (count, sum, avg, min, max, distinct), e.g. `{word} sum revenue of \"Order Completed\" within 30d`; found {}",
                    other.describe()
                )));
            }
        };
        let event = self.event_ref()?;
        match self.window()? {
            Window::Within { seconds } => Ok(ValueExpr::Trend {
                measure,
                function,
                event,
                seconds,
            }),
            _ => Err(self.error(format!(
                "`{word}` compares the last window with the one just before it: give a rolling window, e.g. `within 30d`"
            ))),
        }
    }

    /// `case when <condition> then <value> ... [else <value>] end`.
    fn case(&mut self) -> Result<ValueExpr, DefinitionError> {
        let mut branches = Vec::new();
        while self.eat_word("when") {
            let when = self.or()?;
            self.expect_word("then", "after the condition (`when ... then <value>`)")?;
            let then = self.literal()?;
            branches.push(CaseBranch { when, then });
        }
        if branches.is_empty() {
            return Err(self.error(format!(
                "expected `when` (`case when <condition> then <value> ... end`), found {}",
                self.peek().describe()
            )));
        }
        let otherwise = if self.eat_word("else") {
            Some(self.literal()?)
        } else {
            None
        };
        self.expect_word("end", "to close the `case`")?;
        Ok(ValueExpr::Case {
            branches,
            otherwise,
        })
    }

    /// After `sum`, `avg`, `min`, `max` or `distinct`: `<property> of`.
    fn aggregate_of(&mut self, word: &str) -> Result<Aggregate, DefinitionError> {
        let property = self.name("a property name (e.g. `revenue`)")?;
        self.expect_word("of", "between the property and the event name")?;
        Ok(match word {
            "sum" => Aggregate::Sum(property),
            "avg" => Aggregate::Avg(property),
            "min" => Aggregate::Min(property),
            "max" => Aggregate::Max(property),
            _ => Aggregate::Distinct(property),
        })
    }

    /// `count "X" within 30d > 3` or, read aloud, `count "X" more than 3
    /// times within 30d` — the window may come before or after.
    fn aggregate(&mut self, function: Aggregate) -> Result<Expr, DefinitionError> {
        let event = self.event_ref()?;
        let mut window = self.window()?;
        let op = self.comparison()?;
        let value = self.number("a number to compare with")?;
        self.eat_word("times");
        if window == Window::Ever {
            window = self.window()?;
        }
        Ok(Expr::Aggregate {
            function,
            event,
            window,
            op,
            value,
        })
    }

    fn sequence(&mut self) -> Result<Expr, DefinitionError> {
        let first = self.event_ref()?;
        let negated = if self.eat_word("then") {
            false
        } else if self.eat_word("not") {
            self.expect_word("followed", "in `not followed by`")?;
            self.expect_word("by", "in `not followed by`")?;
            true
        } else {
            return Err(self.error(format!(
                "after an event name, expected `then` or `not followed by` (a sequence), found {}",
                self.peek().describe()
            )));
        };
        let then = self.event_ref()?;
        self.expect_word(
            "within",
            "(a sequence needs a time limit, e.g. `within 1d`)",
        )?;
        let within_seconds = self.duration("a duration such as 1d")?;
        Ok(Expr::Sequence {
            first,
            then,
            within_seconds,
            negated,
        })
    }

    fn event_ref(&mut self) -> Result<EventRef, DefinitionError> {
        let name = self.text("an event name in quotes, e.g. \"Order Completed\"")?;
        let mut filters = Vec::new();
        if self.eat_word("where") {
            let parenthesized = self.eat_symbol("(");
            filters.push(self.filter()?);
            // `and` continues the filters when a property test follows;
            // otherwise it belongs to the enclosing expression.
            while self.is_word("and") && (parenthesized || self.filter_follows()) {
                self.next();
                filters.push(self.filter()?);
            }
            if parenthesized && !self.eat_symbol(")") {
                return Err(self.error(format!(
                    "expected `)` to close the filters, found {}",
                    self.peek().describe()
                )));
            }
        }
        Ok(EventRef { name, filters })
    }

    /// After `and`: a property name that is no keyword, then a value test.
    fn filter_follows(&self) -> bool {
        let is_property = matches!(self.peek_at(1), Token::Word(word) if !KEYWORDS.contains(&word.to_lowercase().as_str()));
        let then_test = match self.peek_at(2) {
            Token::Symbol(symbol) => matches!(*symbol, "=" | "!=" | ">" | ">=" | "<" | "<=" | "."),
            Token::Word(word) => matches!(
                word.as_str(),
                "in" | "contains"
                    | "exists"
                    | "is"
                    | "before"
                    | "after"
                    | "more"
                    | "less"
                    | "at"
                    | "exactly"
            ),
            _ => false,
        };
        is_property && then_test
    }

    fn filter(&mut self) -> Result<Filter, DefinitionError> {
        let property = self.name("a property name")?;
        let test = self.value_test()?;
        Ok(Filter { property, test })
    }

    /// A name, dots allowed for nesting: `product.category`.
    fn name(&mut self, what: &str) -> Result<String, DefinitionError> {
        let mut name = match self.next() {
            Token::Word(word) => word,
            Token::Text(text) => text,
            other => {
                self.position -= 1;
                return Err(self.error(format!("expected {what}, found {}", other.describe())));
            }
        };
        while self.eat_symbol(".") {
            match self.next() {
                Token::Word(word) => {
                    name.push('.');
                    name.push_str(&word);
                }
                other => {
                    self.position -= 1;
                    return Err(self.error(format!(
                        "expected a name after `.`, found {}",
                        other.describe()
                    )));
                }
            }
        }
        Ok(name)
    }

    fn text(&mut self, what: &str) -> Result<String, DefinitionError> {
        match self.peek().clone() {
            Token::Text(text) => {
                self.next();
                Ok(text)
            }
            other => Err(self.error(format!("expected {what}, found {}", other.describe()))),
        }
    }

    fn number(&mut self, what: &str) -> Result<f64, DefinitionError> {
        match self.peek().clone() {
            Token::Number(number) => {
                self.next();
                Ok(number)
            }
            other => Err(self.error(format!("expected {what}, found {}", other.describe()))),
        }
    }

    fn duration(&mut self, what: &str) -> Result<u64, DefinitionError> {
        match self.peek().clone() {
            Token::Duration(seconds) if seconds > 0 => {
                self.next();
                Ok(seconds)
            }
            other => Err(self.error(format!(
                "expected {what} (units: w, d, h, m, s), found {}",
                other.describe()
            ))),
        }
    }

    fn window(&mut self) -> Result<Window, DefinitionError> {
        if self.eat_word("within") {
            let seconds = self.duration("a duration such as 30d")?;
            return Ok(Window::Within { seconds });
        }
        if self.eat_word("between") {
            let from = self.date()?;
            self.expect_word("and", "between the two dates")?;
            let to = self.date()?;
            if to <= from {
                return Err(self.error("the second date must be after the first".into()));
            }
            return Ok(Window::Between { from, to });
        }
        Ok(Window::Ever)
    }

    fn date(&mut self) -> Result<jiff::Timestamp, DefinitionError> {
        match self.peek().clone() {
            Token::Date(date) => {
                self.next();
                Ok(date)
            }
            other => Err(self.error(format!(
                "expected a date such as 2024-01-31 or 2024-01-31T12:00:00Z, found {}",
                other.describe()
            ))),
        }
    }

    /// `>`, `>=`, ..., or the words `more than`, `at least`, `less than`,
    /// `at most`, `exactly`.
    fn comparison(&mut self) -> Result<CmpOp, DefinitionError> {
        let op = match self.peek().clone() {
            Token::Symbol(">") => Some(CmpOp::Gt),
            Token::Symbol(">=") => Some(CmpOp::Ge),
            Token::Symbol("<") => Some(CmpOp::Lt),
            Token::Symbol("<=") => Some(CmpOp::Le),
            Token::Symbol("=") => Some(CmpOp::Eq),
            Token::Symbol("!=") => Some(CmpOp::Ne),
            _ => None,
        };
        if let Some(op) = op {
            self.next();
            return Ok(op);
        }
        let words: [(&str, &str, CmpOp); 4] = [
            ("more", "than", CmpOp::Gt),
            ("less", "than", CmpOp::Lt),
            ("at", "least", CmpOp::Ge),
            ("at", "most", CmpOp::Le),
        ];
        for (first, second, op) in words {
            if self.is_word(first) && matches!(self.peek_at(1), Token::Word(word) if word == second)
            {
                self.next();
                self.next();
                return Ok(op);
            }
        }
        if self.eat_word("exactly") {
            return Ok(CmpOp::Eq);
        }
        Err(self.error(format!(
            "expected a comparison (>, >=, <, <=, =, !=, more than, at least, less than, at most, exactly), found {}",
            self.peek().describe()
        )))
    }

    fn value_test(&mut self) -> Result<ValueTest, DefinitionError> {
        if self.eat_word("exists") {
            return Ok(ValueTest::Exists);
        }
        if self.eat_word("is") {
            self.expect_word("missing", "after `is`")?;
            return Ok(ValueTest::Missing);
        }
        if self.eat_word("contains") {
            let text = self.text("a text in quotes")?;
            return Ok(ValueTest::Contains { text });
        }
        if self.eat_word("in") {
            if !self.eat_symbol("[") {
                return Err(self.error(format!(
                    "expected `[` to start a list of values, found {}",
                    self.peek().describe()
                )));
            }
            let mut values = vec![self.literal()?];
            while self.eat_symbol(",") {
                values.push(self.literal()?);
            }
            if !self.eat_symbol("]") {
                return Err(self.error(format!(
                    "expected `,` or `]` in the list of values, found {}",
                    self.peek().describe()
                )));
            }
            return Ok(ValueTest::In { values });
        }
        if self.eat_word("before") {
            let date = self.date()?;
            return Ok(ValueTest::Compare {
                op: CmpOp::Lt,
                value: Literal::Text(date.to_string()),
            });
        }
        if self.eat_word("after") {
            let date = self.date()?;
            return Ok(ValueTest::Compare {
                op: CmpOp::Gt,
                value: Literal::Text(date.to_string()),
            });
        }
        let op = self.comparison()?;
        let value = self.literal()?;
        Ok(ValueTest::Compare { op, value })
    }

    fn literal(&mut self) -> Result<Literal, DefinitionError> {
        let literal = match self.peek().clone() {
            Token::Text(text) => Literal::Text(text),
            Token::Number(number) => Literal::Number(number),
            Token::Date(date) => Literal::Text(date.to_string()),
            Token::Word(word) if word == "true" => Literal::Bool(true),
            Token::Word(word) if word == "false" => Literal::Bool(false),
            other => {
                return Err(self.error(format!(
                    "expected a value (a number, \"text\", true, false or a date), found {}",
                    other.describe()
                )));
            }
        };
        self.next();
        Ok(literal)
    }
}
