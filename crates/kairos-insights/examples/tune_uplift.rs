use kairos_insights::{datasets, metrics, uplift::{self, Approach, Experiment}};
use std::path::Path;
fn main() {
    let d = "/work/main/.work/insights-data/";
    let args: Vec<String> = std::env::args().collect();
    let suffix = args.get(1).cloned().unwrap_or_default();
    let load = |n: &str| { let c = datasets::load_customers(Path::new(&format!("{d}{n}{suffix}.csv"))).unwrap();
        (c.iter().map(|c| c.features.clone()).collect::<Vec<_>>(), c.iter().map(|c| c.treated).collect::<Vec<_>>(), c.iter().map(|c| c.visit).collect::<Vec<_>>()) };
    let (x, t, y) = load("hill_train");
    let (xt, tt, yt) = load("hill_test");
    let e = Experiment { rows: &x, treated: &t, outcomes: &y };
    let mut all = vec![];
    for a in Approach::ALL {
        let m = uplift::fit(&e, a, vec![]);
        let u: Vec<f64> = xt.iter().map(|r| m.predict(r).uplift).collect();
        println!("{:40} qini {:.4} u30 {:.4}", a.name(), metrics::qini_auc_score(&yt, &u, &tt), metrics::uplift_at_k(&yt, &u, &tt, 0.3));
        all.push(u);
    }
    for combo in [vec![0, 4], vec![0, 2, 4], vec![0, 1, 4]] {
        let u: Vec<f64> = (0..xt.len()).map(|i| combo.iter().map(|&k| all[k][i]).sum::<f64>() / combo.len() as f64).collect();
        println!("{:40} qini {:.4} u30 {:.4}", format!("{combo:?}"), metrics::qini_auc_score(&yt, &u, &tt), metrics::uplift_at_k(&yt, &u, &tt, 0.3));
    }
}
