use kairos_insights::{datasets, gbm::{Gbm, GbmParams}, metrics, propensity, rng};
use std::path::Path;
fn main() {
    let d = "/work/main/.work/insights-data/";
    let (x, y): (Vec<Vec<f64>>, Vec<bool>) = datasets::load_sessions(Path::new(&format!("{d}shop_train.csv"))).unwrap().into_iter().map(|s| (s.features, s.revenue)).unzip();
    let (xt, yt): (Vec<Vec<f64>>, Vec<bool>) = datasets::load_sessions(Path::new(&format!("{d}shop_test.csv"))).unwrap().into_iter().map(|s| (s.features, s.revenue)).unzip();
    let folds = rng::stratified_folds(&y, 5, 7);
    let base = propensity::candidate_params()[0].clone();
    for (name, p) in [("base", base.clone()), ("lr0.015", GbmParams { learning_rate: 0.015, trees: 1600, ..base.clone() }), ("lr0.015 d3", GbmParams { learning_rate: 0.015, trees: 1600, max_depth: 3, max_leaves: 8, ..base.clone() })] {
        let mut models = vec![];
        for fold in 0..5 {
            let (a, b, _, _) = propensity::split_fold(&x, &y, &folds, fold);
            models.push(Gbm::fit(&a, &b, &p));
        }
        let full = Gbm::fit(&x, &y, &p);
        for trees in [200, 300, 400, 600, 800, 1000, 1300, 1600] {
            if trees > p.trees { continue; }
            let mut oof = vec![0.0; x.len()];
            for (fold, m) in models.iter().enumerate() {
                let mut m = m.clone(); m.truncate(trees);
                for i in 0..x.len() { if folds[i] == fold { oof[i] = m.predict_proba(&x[i]); } }
            }
            let mut f = full.clone(); f.truncate(trees);
            let t: Vec<f64> = xt.iter().map(|r| f.predict_proba(r)).collect();
            println!("{name:12} {trees:5} cv_auc {:.4} test {:.4}", metrics::roc_auc(&y, &oof).unwrap(), metrics::roc_auc(&yt, &t).unwrap());
        }
    }
}
