use super::ast::*;
use super::{parse, parse_value};

#[test]
fn computed_trait_definitions_parse() {
    let orders = parse_value("count \"Order Completed\" within 90d").unwrap();
    assert!(matches!(
        orders,
        ValueExpr::Aggregate { function: Aggregate::Count, window: Window::Within { seconds }, .. } if seconds == 90 * 86_400
    ));
    let spend = parse_value("sum revenue of \"Order Completed\" within 365d").unwrap();
    assert!(
        matches!(spend, ValueExpr::Aggregate { function: Aggregate::Sum(p), .. } if p == "revenue")
    );
    assert!(matches!(
        parse_value("last \"Order Completed\"").unwrap(),
        ValueExpr::Occurrence {
            which: Occurrence::Last,
            ..
        }
    ));
    assert!(matches!(
        parse_value("last plan of \"Plan Viewed\" where source = \"web\"").unwrap(),
        ValueExpr::LatestValue { property, event } if property == "plan" && event.filters.len() == 1
    ));
    assert!(matches!(
        parse_value("most frequent product.category of \"Product Viewed\" within 30d").unwrap(),
        ValueExpr::MostFrequent { property, .. } if property == "product.category"
    ));
    let recency = parse_value(
        "case\n  when last \"Order Completed\" less than 30d ago then 5\n  when last \"Order Completed\" less than 90d ago then 3\n  else 1\nend",
    )
    .unwrap();
    let ValueExpr::Case {
        branches,
        otherwise,
    } = recency
    else {
        panic!()
    };
    assert_eq!(branches.len(), 2);
    assert_eq!(otherwise, Some(Literal::Number(1.0)));
    // Errors name the position and what was expected.
    let error = parse_value("case when trait plan = \"pro\" then 1").unwrap_err();
    assert_eq!((error.line, error.column), (1, 36), "{error}");
    assert!(error.message.contains("`end`"), "{error}");
    let error = parse_value("trait plan").unwrap_err();
    assert!(error.message.contains("does not start a value"), "{error}");
    let error = parse_value("count \"A\" within 30d > 3").unwrap_err();
    assert!(
        error.message.contains("end of the computed trait"),
        "{error}"
    );
}

#[test]
fn trends_parse_and_explain_what_they_need() {
    assert!(matches!(
        parse_value("trend sum revenue of \"Order Completed\" within 30d").unwrap(),
        ValueExpr::Trend { measure: TrendMeasure::Relative, function: Aggregate::Sum(p), seconds, .. }
            if p == "revenue" && seconds == 30 * 86_400
    ));
    assert!(matches!(
        parse_value("change count \"Login\" within 7d").unwrap(),
        ValueExpr::Trend {
            measure: TrendMeasure::Difference,
            function: Aggregate::Count,
            ..
        }
    ));
    let error = parse_value("trend count \"Login\"").unwrap_err();
    assert!(error.message.contains("rolling window"), "{error}");
    let error = parse_value("trend \"Login\" within 7d").unwrap_err();
    assert!(
        error.message.contains("followed by an aggregate"),
        "{error}"
    );
    assert_eq!(TrendMeasure::Relative.of(Some(4.0), Some(1.0)), Some(-0.75));
    assert_eq!(TrendMeasure::Relative.of(Some(0.0), Some(3.0)), None);
    assert_eq!(TrendMeasure::Difference.of(Some(0.0), Some(3.0)), Some(3.0));
}

#[test]
fn the_two_examples_of_the_issue_parse_as_written_in_the_docs() {
    let support = parse(
        "count \"Support Contacted\" more than 3 times within 30d\n\
         and sum revenue of \"Order Completed\" within 365d > 1_000_000",
    )
    .unwrap();
    let Expr::And { all } = &support else {
        panic!("{support:?}")
    };
    assert_eq!(
        all[0],
        Expr::Aggregate {
            function: Aggregate::Count,
            event: EventRef {
                name: "Support Contacted".into(),
                filters: vec![]
            },
            window: Window::Within {
                seconds: 30 * 86_400
            },
            op: CmpOp::Gt,
            value: 3.0,
        }
    );
    assert!(
        matches!(&all[1], Expr::Aggregate { function: Aggregate::Sum(p), value, .. } if p == "revenue" && *value == 1e6)
    );

    let viewed = parse(
        "performed \"Product Viewed\" where product_id = \"X\" within 7d and performed \"Order Completed\" within 30d",
    )
    .unwrap();
    let Expr::And { all } = &viewed else {
        panic!("{viewed:?}")
    };
    assert_eq!(all.len(), 2, "`and performed` ends the filters: {viewed:?}");
    let Expr::Performed {
        event,
        window,
        negated: false,
    } = &all[0]
    else {
        panic!()
    };
    assert_eq!(event.filters.len(), 1);
    assert_eq!(
        *window,
        Window::Within {
            seconds: 7 * 86_400
        }
    );
}

#[test]
fn every_kind_of_condition() {
    let text = r#"
        # traits and computed traits
        (trait plan in ["pro", "team"] or trait vip = true)
        and trait email exists and not trait phone is missing
        and trait signed_up_at before 2024-01-01
        and computed orders_90d at least 3
        and score churn > 0.8
        and in audience "big spenders"
        and distinct product_id of "Product Viewed" where price >= 10 and category = "shoes" within 7d >= 3
        and last "Order Completed" more than 90d ago
        and first "Signed Up" less than 2w ago
        and "Cart Viewed" then "Order Completed" within 1d
        and "Cart Viewed" not followed by "Order Completed" within 1h
        and did not perform "Refund Requested" between 2024-01-01 and 2024-02-01
        and avg revenue of "Order Completed" > 50
    "#;
    let expr = parse(text).unwrap();
    let Expr::And { all } = &expr else { panic!() };
    assert_eq!(all.len(), 14);
    assert!(matches!(&all[0], Expr::Or { any } if any.len() == 2));
    assert!(matches!(&all[2], Expr::Not { .. }));
    assert!(
        matches!(&all[7], Expr::Aggregate { function: Aggregate::Distinct(p), event, .. } if p == "product_id" && event.filters.len() == 2)
    );
    assert!(matches!(
        &all[8],
        Expr::Recency {
            which: Occurrence::Last,
            relation: Relation::MoreThan,
            ago_seconds: 7_776_000,
            ..
        }
    ));
    assert!(matches!(
        &all[10],
        Expr::Sequence {
            negated: false,
            within_seconds: 86_400,
            ..
        }
    ));
    assert!(matches!(
        &all[11],
        Expr::Sequence {
            negated: true,
            within_seconds: 3_600,
            ..
        }
    ));
    assert!(matches!(
        &all[12],
        Expr::Performed {
            negated: true,
            window: Window::Between { .. },
            ..
        }
    ));
    // The JSON form round-trips.
    let json = serde_json::to_string(&expr).unwrap();
    assert_eq!(serde_json::from_str::<Expr>(&json).unwrap(), expr);
}

#[test]
fn errors_name_line_column_and_what_was_expected() {
    let error =
        parse("trait plan = \"pro\"\nand count \"Order Completed\" within 30 > 3").unwrap_err();
    assert_eq!((error.line, error.column), (2, 36), "{error}");
    assert!(error.message.contains("duration"), "{error}");

    let error = parse("count \"Order Completed\" within 30d").unwrap_err();
    assert!(error.message.contains("expected a comparison"), "{error}");
    assert!(error.message.contains("end of the definition"), "{error}");

    let error = parse("trait plan = \"pro").unwrap_err();
    assert_eq!((error.line, error.column), (1, 14));
    assert!(error.message.contains("closing quote"));

    let error = parse("purchased \"X\"").unwrap_err();
    assert!(
        error
            .message
            .contains("`purchased` does not start a condition"),
        "{error}"
    );

    let error = parse("(trait a = 1").unwrap_err();
    assert!(error.message.contains("`)`"), "{error}");

    let error = parse("trait a = 1 trait b = 2").unwrap_err();
    assert_eq!((error.line, error.column), (1, 13));
    assert!(error.message.contains("expected `and`, `or`"), "{error}");

    let error = parse("performed \"X\" between 2024-02-01 and 2024-01-01").unwrap_err();
    assert!(error.message.contains("after the first"), "{error}");
}

/// Every example in docs/audiences.md parses: the code blocks, and each
/// example of the conditions table.
#[test]
fn the_examples_in_the_docs_parse() {
    let docs = include_str!("../../../../docs/audiences.md");
    let mut checked = 0;
    for block in docs.split("```").skip(1).step_by(2) {
        let (tag, body) = block.split_once('\n').unwrap_or((block, ""));
        match tag.trim() {
            "" if !body.trim_start().starts_with("line ") => {
                parse(body).unwrap_or_else(|error| panic!("{error}\n{body}"));
            }
            "value" => {
                parse_value(body).unwrap_or_else(|error| panic!("{error}\n{body}"));
            }
            _ => continue, // JSON, shell and the error examples
        }
        checked += 1;
    }
    // Table rows: conditions, except in the computed traits section.
    let mut in_values = false;
    for line in docs.lines() {
        if line.starts_with("## ") {
            in_values = line == "## Computed traits";
        }
        let Some(example) = line
            .starts_with("| ")
            .then(|| line.split('|').nth(2))
            .flatten()
        else {
            continue;
        };
        for code in example.split('`').skip(1).step_by(2) {
            if code.ends_with("...") || code == "example" {
                continue;
            }
            if in_values {
                parse_value(code).unwrap_or_else(|error| panic!("{error}\n{code}"));
            } else {
                parse(code).unwrap_or_else(|error| panic!("{error}\n{code}"));
            }
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} examples found");
}

mod incremental_matches_from_scratch {
    use std::collections::HashMap;

    use jiff::{SignedDuration, Timestamp};
    use serde_json::json;

    use super::super::ast::*;
    use super::super::eval::{EventFact, PersonFacts, evaluate, value};
    use super::super::incremental::{AudienceEngine, Program};

    struct Random(u64);

    impl Random {
        fn below(&mut self, bound: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % bound.max(1)
        }
        fn pick<T: Clone>(&mut self, items: &[T]) -> T {
            items[self.below(items.len() as u64) as usize].clone()
        }
    }

    const UNIT: u64 = 60;

    fn event_ref(random: &mut Random) -> EventRef {
        let mut event = EventRef {
            name: random.pick(&["A", "B", "C"]).to_string(),
            filters: vec![],
        };
        if random.below(3) == 0 {
            event.filters.push(Filter {
                property: "k".into(),
                test: ValueTest::Compare {
                    op: CmpOp::Eq,
                    value: Literal::Text("x".into()),
                },
            });
        }
        event
    }

    fn window(random: &mut Random, start: Timestamp) -> Window {
        match random.below(3) {
            0 => Window::Ever,
            1 => Window::Within {
                seconds: (1 + random.below(5)) * UNIT,
            },
            _ => Window::Between {
                from: start + SignedDuration::from_secs(120),
                to: start + SignedDuration::from_secs(600),
            },
        }
    }

    /// Names of the definitions made so far, which later ones may use.
    #[derive(Default)]
    struct Earlier {
        audiences: Vec<String>,
        computed: Vec<String>,
    }

    fn leaf(random: &mut Random, start: Timestamp, earlier: &Earlier) -> Expr {
        let op = random.pick(&[
            CmpOp::Gt,
            CmpOp::Ge,
            CmpOp::Lt,
            CmpOp::Le,
            CmpOp::Eq,
            CmpOp::Ne,
        ]);
        match random.below(7) {
            0 | 1 => Expr::Aggregate {
                function: random.pick(&[
                    Aggregate::Count,
                    Aggregate::Sum("v".into()),
                    Aggregate::Avg("v".into()),
                    Aggregate::Min("v".into()),
                    Aggregate::Max("v".into()),
                    Aggregate::Distinct("k".into()),
                ]),
                event: event_ref(random),
                window: window(random, start),
                op,
                value: random.below(6) as f64,
            },
            2 => Expr::Performed {
                event: event_ref(random),
                window: window(random, start),
                negated: random.below(2) == 0,
            },
            3 => Expr::Recency {
                which: random.pick(&[Occurrence::First, Occurrence::Last]),
                event: event_ref(random),
                relation: random.pick(&[Relation::MoreThan, Relation::LessThan]),
                ago_seconds: (1 + random.below(5)) * UNIT,
            },
            4 => Expr::Sequence {
                first: event_ref(random),
                then: event_ref(random),
                within_seconds: (1 + random.below(4)) * UNIT,
                negated: random.below(2) == 0,
            },
            5 if !earlier.audiences.is_empty() && random.below(2) == 0 => Expr::InAudience {
                audience: random.pick(&earlier.audiences),
            },
            5 if !earlier.computed.is_empty() => Expr::Computed {
                name: random.pick(&earlier.computed),
                test: match random.below(3) {
                    0 => ValueTest::Exists,
                    1 => ValueTest::Missing,
                    _ => ValueTest::Compare {
                        op,
                        value: Literal::Number(random.below(6) as f64),
                    },
                },
            },
            _ => Expr::Trait {
                name: "plan".into(),
                test: ValueTest::Compare {
                    op: CmpOp::Eq,
                    value: Literal::Text("pro".into()),
                },
            },
        }
    }

    fn value_definition(random: &mut Random, start: Timestamp, earlier: &Earlier) -> ValueExpr {
        let property = random.pick(&["v", "k"]).to_string();
        match random.below(6) {
            5 => ValueExpr::Trend {
                measure: random.pick(&[TrendMeasure::Relative, TrendMeasure::Difference]),
                function: random.pick(&[
                    Aggregate::Count,
                    Aggregate::Sum("v".into()),
                    Aggregate::Avg("v".into()),
                    Aggregate::Distinct("k".into()),
                ]),
                event: event_ref(random),
                seconds: (1 + random.below(3)) * UNIT,
            },
            0 => ValueExpr::Aggregate {
                function: random.pick(&[
                    Aggregate::Count,
                    Aggregate::Sum("v".into()),
                    Aggregate::Avg("v".into()),
                    Aggregate::Min("v".into()),
                    Aggregate::Max("v".into()),
                    Aggregate::Distinct("k".into()),
                ]),
                event: event_ref(random),
                window: window(random, start),
            },
            1 => ValueExpr::Occurrence {
                which: random.pick(&[Occurrence::First, Occurrence::Last]),
                event: event_ref(random),
            },
            2 => ValueExpr::LatestValue {
                property,
                event: event_ref(random),
            },
            3 => ValueExpr::MostFrequent {
                property,
                event: event_ref(random),
                window: window(random, start),
            },
            _ => ValueExpr::Case {
                branches: (0..1 + random.below(2))
                    .map(|index| CaseBranch {
                        when: definition(random, start, earlier, 1),
                        then: Literal::Number(index as f64 + 1.0),
                    })
                    .collect(),
                otherwise: (random.below(2) == 0).then_some(Literal::Number(0.0)),
            },
        }
    }

    fn definition(random: &mut Random, start: Timestamp, earlier: &Earlier, depth: u32) -> Expr {
        if depth == 0 || random.below(3) == 0 {
            return leaf(random, start, earlier);
        }
        match random.below(3) {
            0 => Expr::And {
                all: (0..2)
                    .map(|_| definition(random, start, earlier, depth - 1))
                    .collect(),
            },
            1 => Expr::Or {
                any: (0..2)
                    .map(|_| definition(random, start, earlier, depth - 1))
                    .collect(),
            },
            _ => Expr::Not {
                expr: Box::new(definition(random, start, earlier, depth - 1)),
            },
        }
    }

    enum Definition {
        Audience(String, Expr),
        Computed(String, ValueExpr),
    }

    /// Memberships and computed values, every definition evaluated from
    /// scratch in the order made (each uses only earlier ones).
    fn naive(
        definitions: &[Definition],
        history: &[EventFact],
        traits: &PersonFacts,
        now: Timestamp,
    ) -> PersonFacts {
        let mut facts = traits.clone();
        for definition in definitions {
            match definition {
                Definition::Audience(name, expr) => {
                    if evaluate(expr, history, &facts, now) {
                        facts.audiences.insert(name.clone());
                    }
                }
                Definition::Computed(name, expr) => {
                    if let Some(found) = value(expr, history, &facts, now) {
                        facts.computed.insert(name.clone(), found);
                    }
                }
            }
        }
        facts
    }

    #[test]
    fn at_every_step_of_random_streams_definitions_and_clock_moves() {
        let start: Timestamp = "2024-05-01T00:00:00Z".parse().unwrap();
        let (mut timers_fired, mut flips, mut merges) = (0usize, 0usize, 0usize);
        let mut values_seen = 0usize;
        for seed in 1..=200u64 {
            let mut random = Random(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut definitions: Vec<Definition> = Vec::new();
            let mut earlier = Earlier::default();
            for index in 0..9 {
                if index % 3 == 1 {
                    let name = format!("computed{index}");
                    let expr = value_definition(&mut random, start, &earlier);
                    definitions.push(Definition::Computed(name.clone(), expr));
                    earlier.computed.push(name);
                } else {
                    let name = format!("aud{index}");
                    let expr = definition(&mut random, start, &earlier, 2);
                    definitions.push(Definition::Audience(name.clone(), expr));
                    earlier.audiences.push(name);
                }
            }
            let audiences: Vec<(String, Expr)> = definitions
                .iter()
                .filter_map(|definition| match definition {
                    Definition::Audience(name, expr) => Some((name.clone(), expr.clone())),
                    Definition::Computed(..) => None,
                })
                .collect();
            let computed: Vec<(String, ValueExpr)> = definitions
                .iter()
                .filter_map(|definition| match definition {
                    Definition::Computed(name, expr) => Some((name.clone(), expr.clone())),
                    Definition::Audience(..) => None,
                })
                .collect();
            let mut engine = AudienceEngine::new(std::sync::Arc::new(
                Program::compile_all(&audiences, &computed).unwrap(),
            ));
            let mut histories: HashMap<u64, Vec<EventFact>> = HashMap::new();
            let mut traits: HashMap<u64, PersonFacts> = HashMap::new();
            let mut now = start;
            for step in 0..80 {
                let person = 1 + random.below(3);
                match random.below(6) {
                    5 if histories.contains_key(&2) || traits.contains_key(&2) => {
                        // Person 2's profile merges into person 1's.
                        engine.advance(now);
                        let absorbed_history = histories.remove(&2).unwrap_or_default();
                        histories.entry(1).or_default().extend(absorbed_history);
                        let absorbed_traits = traits.remove(&2);
                        let merged = traits
                            .get(&1)
                            .cloned()
                            .or(absorbed_traits)
                            .unwrap_or_default();
                        traits.insert(1, merged.clone());
                        let state = engine.take_person(2).unwrap();
                        flips += engine.absorb_person(1, state, now).len();
                        flips += engine.set_facts(1, merged, now).len();
                        merges += 1;
                    }
                    0 | 1 => {
                        now += SignedDuration::from_secs((random.below(3 * UNIT + 1)) as i64);
                        timers_fired += engine.advance(now).len();
                    }
                    2 => {
                        let plan = random.pick(&["pro", "free"]);
                        let facts = PersonFacts {
                            traits: json!({"plan": plan}).as_object().unwrap().clone(),
                            ..PersonFacts::default()
                        };
                        traits.insert(person, facts.clone());
                        engine.advance(now);
                        flips += engine.set_facts(person, facts, now).len();
                    }
                    _ => {
                        // Some events arrive late (their time is in the past),
                        // some early: dated after the clock (a client's clock
                        // ahead), they count in a window only once it is now.
                        let shift = random.below(3 * UNIT) as i64 - 2 * UNIT as i64;
                        let at = now + SignedDuration::from_secs(shift);
                        // Numbers as integers or as floats (12 and 12.0).
                        let v = random.below(10);
                        let v = if random.below(2) == 0 {
                            json!(v)
                        } else {
                            json!(v as f64)
                        };
                        let event = EventFact {
                            name: random.pick(&["A", "B", "C"]).to_string(),
                            at,
                            properties: json!({"v": v, "k": random.pick(&["x", "y"])})
                                .as_object()
                                .unwrap()
                                .clone(),
                        };
                        histories.entry(person).or_default().push(event.clone());
                        engine.advance(now);
                        flips += engine.apply(person, &event, now).len();
                    }
                }
                let mut expected_sizes: HashMap<&str, usize> = HashMap::new();
                for person in 1..=3 {
                    if !histories.contains_key(&person) && !traits.contains_key(&person) {
                        continue; // nobody yet: no profile, no memberships
                    }
                    let history = histories.get(&person).map(Vec::as_slice).unwrap_or(&[]);
                    let facts = traits.get(&person).cloned().unwrap_or_default();
                    let expected = naive(&definitions, history, &facts, now);
                    for (name, expr) in &audiences {
                        *expected_sizes.entry(name).or_default() +=
                            usize::from(expected.audiences.contains(name));
                        assert_eq!(
                            engine.is_member(person, name),
                            expected.audiences.contains(name),
                            "seed {seed} step {step} person {person} {name} at {now}: {expr:?}"
                        );
                    }
                    for (name, expr) in &computed {
                        let found = engine.computed_value(person, name);
                        if found.is_some() {
                            values_seen += 1;
                        }
                        assert_eq!(
                            found.as_ref(),
                            expected.computed.get(name),
                            "seed {seed} step {step} person {person} {name} at {now}: {expr:?}"
                        );
                    }
                }
                for (name, _) in &audiences {
                    let size = expected_sizes.get(name.as_str()).copied().unwrap_or(0);
                    assert_eq!(
                        engine.size(name),
                        size,
                        "seed {seed} step {step}: size of {name}"
                    );
                }
            }
        }
        assert!(
            timers_fired > 500 && flips > 2000 && merges > 100 && values_seen > 10_000,
            "timers {timers_fired}, flips {flips}, merges {merges}, values {values_seen}"
        );
    }
}

#[test]
fn nesting_is_bounded_with_the_position_and_the_limit() {
    use super::parser::NESTING_DEPTH_MAX;
    let leaf = "trait plan = \"pro\"";
    let parens = |levels: usize| format!("{}{leaf}{}", "(".repeat(levels), ")".repeat(levels));
    assert!(parse(&parens(NESTING_DEPTH_MAX)).is_ok());
    let error = parse(&parens(NESTING_DEPTH_MAX + 1)).unwrap_err();
    assert_eq!(
        (error.line, error.column),
        (1, NESTING_DEPTH_MAX + 1),
        "{error}"
    );
    assert!(error.message.contains("more than 32 levels"), "{error}");
    // 3,000 levels used to overflow the stack; `not` counts as a level too.
    assert!(parse(&parens(3_000)).is_err());
    assert!(parse(&format!("{}{leaf}", "not ".repeat(3_000))).is_err());
    let mixed = format!("{}{leaf}{}", "not (".repeat(20), ")".repeat(20));
    assert!(parse(&mixed).unwrap_err().message.contains("32 levels"));
    let case = format!("case when {} then 1 end", parens(3_000));
    assert!(parse_value(&case).is_err());
    // The JSON form of an accepted definition round-trips within serde_json's
    // recursion limit (two JSON levels per `not`).
    let deepest = parse(&format!("{}{leaf}", "not ".repeat(NESTING_DEPTH_MAX))).unwrap();
    let json = serde_json::to_string(&deepest).unwrap();
    assert_eq!(serde_json::from_str::<Expr>(&json).unwrap(), deepest);
}

/// The decisions of issue 12 on the reference evaluator (what the property
/// test then holds the incremental engine to).
mod semantics {
    use jiff::{SignedDuration, Timestamp};
    use serde_json::{Value, json};

    use super::super::eval::{EventFact, PersonFacts, canonical, evaluate, value};
    use super::super::incremental::{AudienceEngine, Program};
    use super::{parse, parse_value};

    fn event(name: &str, at: Timestamp, properties: Value) -> EventFact {
        EventFact {
            name: name.into(),
            at,
            properties: properties.as_object().unwrap().clone(),
        }
    }

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_window_ends_now_and_a_future_event_enters_when_the_clock_reaches_it() {
        let later = now() + SignedDuration::from_hours(2);
        let history = [event("Login", later, json!({}))];
        let facts = PersonFacts::default();
        for text in [
            "performed \"Login\" within 1d",
            "count \"Login\" within 1d >= 1",
        ] {
            let expr = parse(text).unwrap();
            assert!(!evaluate(&expr, &history, &facts, now()), "{text} before");
            assert!(
                evaluate(&expr, &history, &facts, later),
                "{text} at its time"
            );
        }
        // No window: all history, whatever the clock.
        let ever = parse("performed \"Login\"").unwrap();
        assert!(evaluate(&ever, &history, &facts, now()));

        // The engine: not a member on arrival, a timer makes it one at 14:00.
        let program = Program::compile(&[(
            "recent".into(),
            parse("performed \"Login\" within 1d").unwrap(),
        )])
        .unwrap();
        let mut engine = AudienceEngine::new(std::sync::Arc::new(program));
        let earlier = event("Login", now() - SignedDuration::from_hours(30), json!({}));
        engine.apply(1, &earlier, now());
        engine.apply(1, &history[0], now());
        assert!(!engine.is_member(1, "recent"));
        let changes = engine.advance(later);
        assert!(engine.is_member(1, "recent"), "{changes:?}");
        assert_eq!(changes[0].at, later);
    }

    #[test]
    fn distinct_and_most_frequent_read_numbers_by_value() {
        let at = now() - SignedDuration::from_hours(1);
        let history: Vec<EventFact> = [json!(12), json!(12.0), json!(13.5), json!("12")]
            .into_iter()
            .map(|size| event("Viewed", at, json!({ "size": size })))
            .collect();
        let facts = PersonFacts::default();
        let distinct = parse_value("distinct size of \"Viewed\"").unwrap();
        // 12 and 12.0 are one number; the text "12" is another value.
        assert_eq!(value(&distinct, &history, &facts, now()), Some(json!(3)));
        let frequent = parse_value("most frequent size of \"Viewed\"").unwrap();
        assert_eq!(value(&frequent, &history, &facts, now()), Some(json!(12)));
        assert_eq!(canonical(&json!(-0.0)), json!(0));
        assert_eq!(canonical(&json!(2.5)), json!(2.5));
        assert_eq!(canonical(&json!(1e300)), json!(1e300));
        assert_eq!(canonical(&json!(u64::MAX)), json!(u64::MAX));
    }

    #[test]
    fn definitions_reading_the_same_events_the_same_way_share_one_record() {
        let shared = "count \"Viewed\" within 1d >= 2";
        let program = Program::compile(&[
            ("a".into(), parse(shared).unwrap()),
            ("b".into(), parse(shared).unwrap()),
            // The same leaf twice in one definition, and a different one.
            (
                "c".into(),
                parse("count \"Viewed\" within 1d >= 2 and count \"Viewed\" within 1d < 4")
                    .unwrap(),
            ),
            (
                "d".into(),
                parse("count \"Viewed\" within 2d >= 3").unwrap(),
            ),
        ])
        .unwrap();
        assert_eq!(program.leaves.len(), 2, "one leaf per distinct condition");
        assert!(program.fingerprint() != 0);
        let mut engine = AudienceEngine::new(std::sync::Arc::new(program));
        let at = |hours: i64| now() - SignedDuration::from_hours(hours);
        let members = |engine: &AudienceEngine| {
            ["a", "b", "c", "d"]
                .into_iter()
                .filter(|name| engine.is_member(1, name))
                .collect::<Vec<_>>()
        };
        engine.apply(1, &event("Viewed", at(30), json!({})), now());
        engine.apply(1, &event("Viewed", at(2), json!({})), now());
        assert_eq!(members(&engine), Vec::<&str>::new());
        engine.apply(1, &event("Viewed", at(1), json!({})), now());
        assert_eq!(members(&engine), ["a", "b", "c", "d"]);
        // Out of time order: inserted where it belongs, counted once.
        engine.apply(1, &event("Viewed", at(3), json!({})), now());
        engine.apply(1, &event("Viewed", at(4), json!({})), now());
        assert_eq!(members(&engine), ["a", "b", "d"], "c holds below 4 only");
        // A day on, only the 2-day window still holds its 3 (hours 30 and
        // the later four have left the 1-day window at different times).
        engine.advance(now() + SignedDuration::from_hours(22) + SignedDuration::from_mins(30));
        assert_eq!(members(&engine), ["d"]);
    }
}
