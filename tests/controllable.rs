//! `controllable`'s constrained step on a problem whose Pareto front is known in closed form:
//! two weighted quadratics F(θ) = Σ c_i (θ_i − a_i)², R(θ) = Σ d_i (θ_i − b_i)², started at the
//! retain optimum b (the "original model"), with the same optimiser (AdamW, warm-up + cosine) and
//! the same step (`unlearn::constrained::combine`) the method uses. The front is
//! θ(μ)_i = (c_i a_i + μ d_i b_i) / (c_i + μ d_i), μ ≥ 0: for a budget ε the optimum is the
//! point of the front with R = ε.

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use i2i_unlearn::train::{AdamW, OptimSpec};
use i2i_unlearn::unlearn::constrained::{combine, Constraint};

const A: [f64; 4] = [1.0, -2.0, 0.5, 3.0];
const B: [f64; 4] = [0.0, 0.0, 0.0, 0.0];
/// Unequal curvatures, so that Adam's per-coordinate scaling is not the gradient's direction.
const C: [f64; 4] = [1.0, 4.0, 0.5, 2.0];
const D: [f64; 4] = [2.0, 1.0, 3.0, 0.5];

fn f_of(t: &[f64]) -> f64 {
    (0..4).map(|i| C[i] * (t[i] - A[i]).powi(2)).sum()
}
fn r_of(t: &[f64]) -> f64 {
    (0..4).map(|i| D[i] * (t[i] - B[i]).powi(2)).sum()
}

/// The front's point with R = ε (bisection on μ; R falls as μ grows).
fn front(eps: f64) -> (f64, f64) {
    let at = |mu: f64| -> Vec<f64> {
        (0..4)
            .map(|i| (C[i] * A[i] + mu * D[i] * B[i]) / (C[i] + mu * D[i]))
            .collect()
    };
    // R(θ(μ)) falls as μ grows: bisect on ln μ.
    let (mut lo, mut hi) = ((1e-9f64).ln(), (1e9f64).ln());
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if r_of(&at(mid.exp())) > eps {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let t = at(hi.exp());
    (r_of(&t), f_of(&t))
}

/// `steps` constrained steps from B (none: F alone); the final (R, F) and the largest λ.
fn solve(mut c: Option<Constraint>, steps: usize) -> (f64, f64, f64) {
    let dev = Device::Cpu;
    let theta = Var::from_tensor(&Tensor::new(&B.map(|x| x as f32), &dev).unwrap()).unwrap();
    let vars = vec![("theta".to_string(), theta.clone(), false)];
    let spec = OptimSpec {
        lr: 0.05,
        min_lr: 0.0,
        warmup_steps: 10,
        total_steps: steps,
        weight_decay: 0.0,
        betas: [0.9, 0.999],
        eps: 1e-8,
        grad_clip: 0.0,
    };
    let mut opt = AdamW::new(vars.clone(), spec).unwrap();
    let consts = |v: [f64; 4]| Tensor::new(&v.map(|x| x as f32), &dev).unwrap();
    let (a, b, cw, dw) = (consts(A), consts(B), consts(C), consts(D));
    let mut max_lambda: f64 = 0.0;
    for _ in 0..steps {
        let t = theta.as_tensor();
        let f = (t - &a)
            .unwrap()
            .sqr()
            .unwrap()
            .mul(&cw)
            .unwrap()
            .sum_all()
            .unwrap();
        let r = (t - &b)
            .unwrap()
            .sqr()
            .unwrap()
            .mul(&dw)
            .unwrap()
            .sum_all()
            .unwrap();
        let (gf, gr): (GradStore, GradStore) = (f.backward().unwrap(), r.backward().unwrap());
        let rv = r.to_scalar::<f32>().unwrap() as f64;
        let (lambda, g) = combine(c.as_mut(), rv, &gr, gf, &vars).unwrap();
        max_lambda = max_lambda.max(lambda);
        opt.step(&g).unwrap();
    }
    let t: Vec<f64> = theta
        .as_tensor()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|&x| x as f64)
        .collect();
    (r_of(&t), f_of(&t), max_lambda)
}

#[test]
fn boundary_phase_finds_both_ends_of_the_front() {
    // Retain-optimal: the start itself (R = 0, F = F(b)); forget-optimal: F alone.
    let (r_max, f_min, lambda) = solve(None, 1500);
    let (r_a, f_a) = (r_of(&A), f_of(&A));
    assert!(f_min <= 1e-4, "the forget-optimal solution has F = {f_min}");
    assert!(
        (r_max - r_a).abs() <= 1e-3 * r_a,
        "R at the forget-optimal solution {r_max}, the front's end {r_a}"
    );
    assert_eq!(lambda, 0.0, "without a constraint λ stays 0");
    assert!(f_a == 0.0 && f_of(&B) > 0.0);
}

#[test]
fn constrained_solutions_lie_on_the_front_and_keep_the_budget() {
    // The valid range [0, R_max] from the boundary phase, as `controllable` reads it.
    let r_max = r_of(&A);
    let (f_max, tol_f, tol_r) = (f_of(&B), 0.01, 0.005);
    for rel in [0.1, 0.3, 0.5, 0.7, 0.9] {
        let eps = rel * r_max;
        let spec = i2i_unlearn::unlearn::ControllableSpec::default();
        let c = Constraint::new(eps, r_max, spec.gain, spec.integral_gain);
        let (r, f, max_lambda) = solve(Some(c), 1500);
        let (_, f_star) = front(eps);
        println!(
            "ε = {rel} · R_max = {eps:.4}: R {r:.5}, F {f:.5} (front {f_star:.5}), max λ {max_lambda:.3}"
        );
        // The budget holds at the end (within 0.5 % of the valid range).
        assert!(r <= eps + tol_r * r_max, "ε {eps}: R = {r} over the budget");
        // On the front: F within 1 % of F's range of the constrained optimum.
        assert!(
            (f - f_star).abs() <= tol_f * f_max,
            "ε {eps}: F = {f}, the front has {f_star}"
        );
        assert!(max_lambda > 0.0, "the constraint was active at some step");
    }
}

mod common;

/// The MAE family through the whole pipeline with two budgets: every method's row (`ours` with α,
/// `controllable` with each ε), one boundary computation shared by both budgets, the constraint's
/// log stored with each cell (budget, boundary, final objectives, per-step trace with λ), a
/// retain loss within each budget, and the Pareto chart.
#[test]
fn a_tiny_mae_grid_runs_controllable_at_two_budgets() {
    let d = tempfile::tempdir().unwrap();
    let yaml = common::tiny_yaml("ctl", "epsilons: [0.0, 1.0]\nalphas: [0.25, 1.0]\n")
        .replace(
            "methods: [original, ours, {name: ours, retain: proxy}, max_loss]",
            "methods: [original, max_loss, noisy_label, retain_label, random_encoder, ours, {name: ours, retain: proxy}, controllable]",
        )
        .replace("alphas: [0.25]\n", "")
        .replace("seeds: [0, 1]", "seeds: [0]");
    let out = common::run_every_method_and_resume(d.path(), &yaml);
    let boundaries: Vec<_> = std::fs::read_dir(out.join("unlearned"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("boundary-"))
        .collect();
    assert_eq!(boundaries.len(), 1, "one boundary for both budgets");
    let mut budgets = vec![];
    for e in std::fs::read_dir(out.join("cells")).unwrap().flatten() {
        let rec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
        let Some(c) = rec["unlearn"].get("constraint") else {
            continue;
        };
        let (eps, budget) = (
            c["epsilon"].as_f64().unwrap(),
            c["budget"].as_f64().unwrap(),
        );
        let b = &c["boundary"];
        let (lo, hi) = (
            b["original"]["retain"].as_f64().unwrap(),
            b["forget_optimal"]["retain"].as_f64().unwrap(),
        );
        assert!(
            hi > lo,
            "the forget-optimal solution spends retain loss: {b}"
        );
        assert!((budget - (lo + eps * (hi - lo))).abs() <= 1e-12 * hi.max(1.0));
        assert_eq!(
            c["trace"].as_array().unwrap().len(),
            4,
            "one trace entry per step"
        );
        let end = c["final"]["retain"].as_f64().unwrap();
        eprintln!("ε {eps}: budget {budget:.3e}, range [{lo:.3e}, {hi:.3e}], final retain {end:.3e}, kept {}", c["kept"]);
        assert_eq!(
            c["kept"].as_bool().unwrap(),
            end <= budget + 0.01 * (hi - lo)
        );
        if eps == 0.0 {
            // Four steps cannot close the gap, but the budget pulls the retain loss back from
            // the forget-optimal solution's.
            assert!(
                end < 0.9 * hi,
                "ε 0 ended at retain {end}, forget-optimal {hi}"
            );
        }
        budgets.push(eps);
    }
    budgets.sort_by(f64::total_cmp);
    assert_eq!(budgets, [0.0, 1.0]);
    let text = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    assert!(text.contains(",controllable+eps0,") && text.contains(",controllable+eps1,"));
    let table = std::fs::read_to_string(out.join("table.md")).unwrap();
    assert!(table.contains("Controllable (ε = 0)"), "{table}");
    assert!(out.join("charts/pareto_tex_mae_center_2_fid.png").is_file());
}
