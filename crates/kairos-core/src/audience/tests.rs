use super::ast::*;
use super::parse;

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
        if !tag.trim().is_empty() || body.trim_start().starts_with("line ") {
            continue; // JSON and the error examples
        }
        parse(body).unwrap_or_else(|error| panic!("{error}\n{body}"));
        checked += 1;
    }
    for row in docs.lines().filter(|line| line.starts_with("| ")) {
        let Some(example) = row.split('|').nth(2) else {
            continue;
        };
        for code in example.split('`').skip(1).step_by(2) {
            if code.ends_with("...") || code == "example" {
                continue;
            }
            parse(code).unwrap_or_else(|error| panic!("{error}\n{code}"));
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} examples found");
}
