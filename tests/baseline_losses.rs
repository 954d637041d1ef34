//! Each method's loss on a tiny MAE, against the formula of docs/methods.md computed here
//! independently (plain f64 arithmetic over the tensors the model returns), including the
//! official code's `(1 ± l)` weighting under `paper_compat`; and the trainer's split route (each
//! term with its own backward pass, on a core each) against one backward pass over the loss.

use candle_core::{Device, Tensor};
use i2i_unlearn::data::embedded::{Embedded, EmbeddedConfig};
use i2i_unlearn::data::{DataSource, ImageSet, Split};
use i2i_unlearn::masks::MaskSpec;
use i2i_unlearn::models::{mae::MaeConfig, Family, FamilyConfig, I2IModel, ModelInput};
use i2i_unlearn::nn::Mode;
use i2i_unlearn::unlearn::{
    self, trainer, Ctx, Loss, Method, MethodName, NoiseKind, Scope, StepBatch, UnlearnSpec,
};
use i2i_unlearn::util::normal_vec;
use rand_chacha::ChaCha8Rng;

const ALPHA: f64 = 0.4;

struct Setup {
    student: Box<dyn I2IModel>,
    teacher: Box<dyn I2IModel>,
    retain: ModelInput,
    forget: ModelInput,
    retain_set: ImageSet,
    forget_set: ImageSet,
}

fn setup() -> Setup {
    let cfg = FamilyConfig::Mae(MaeConfig {
        mask_ratio: 0.5,
        ..<MaeConfig as Family>::tiny()
    });
    let dev = Device::Cpu;
    // Student and teacher differ, so that every term is non-zero.
    let ws = cfg.init_weights(1, &dev).unwrap();
    let wt = cfg.init_weights(2, &dev).unwrap();
    let src = Embedded::new(EmbeddedConfig {
        classes: 4,
        size: 16,
        seed: 0,
    })
    .unwrap();
    let set = |c: usize, n: usize| {
        ImageSet::from_raw(&src.images(c, Split::Train, n, 0).unwrap(), 16, &dev).unwrap()
    };
    // 3 retain and 5 forget images: unequal halves, so the pairing and weights show.
    let (r, f) = (set(1, 3), set(0, 5));
    let student = cfg.build(&ws, true, &dev).unwrap();
    let teacher = cfg.build(&wt, false, &dev).unwrap();
    let mut rng = i2i_unlearn::util::rng("masks", 0);
    let rm = student.training_masks(&r.ids, &mut rng).unwrap();
    let fm = MaskSpec::Center { k: 2 }.batch(4, &f.ids).unwrap();
    Setup {
        retain: ModelInput::plain(&r.pixels, &rm),
        forget: ModelInput::plain(&f.pixels, &fm),
        student,
        teacher,
        retain_set: r,
        forget_set: f,
    }
}

fn flat(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(|v| v as f64)
        .collect()
}

fn rows(t: &Tensor) -> Vec<Vec<f64>> {
    (0..t.dim(0).unwrap())
        .map(|i| flat(&t.get(i).unwrap()))
        .collect()
}

fn mse(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>() / a.len() as f64
}

/// Mean and unbiased std of all values together.
fn stats(parts: &[&[f64]]) -> (f64, f64) {
    let all: Vec<f64> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    let m = all.iter().sum::<f64>() / all.len() as f64;
    let v = all.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (all.len() - 1) as f64;
    (m, v.sqrt())
}

fn scalar(t: &Tensor) -> f64 {
    t.to_scalar::<f32>().unwrap() as f64
}

fn close(what: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= 1e-4 * want.abs().max(1e-3),
        "{what}: got {got}, want {want}"
    );
}

fn run(s: &Setup, name: MethodName, paper_compat: bool, seed: u64) -> (Loss, (f32, f32)) {
    let noise_stats = unlearn::scalar_stats(&[&s.retain.pixels, &s.forget.pixels]).unwrap();
    let ctx = Ctx {
        student: &*s.student,
        teacher: &*s.teacher,
        alpha: ALPHA,
        noise: NoiseKind::Normal,
        paper_compat,
    };
    let b = StepBatch {
        retain: s.retain.clone(),
        forget: s.forget.clone(),
        noise_stats,
    };
    let mut rng = i2i_unlearn::util::rng("method", seed);
    let loss = unlearn::method(name).loss(&ctx, &b, &mut rng).unwrap();
    (loss, noise_stats)
}

fn emb(m: &dyn I2IModel, x: &ModelInput) -> Tensor {
    m.encode(x, Mode::Infer).unwrap().0[0].clone()
}

#[test]
fn noise_statistics_cover_the_whole_mixed_batch() {
    let s = setup();
    let (m, sd) = unlearn::scalar_stats(&[&s.retain.pixels, &s.forget.pixels]).unwrap();
    let (em, esd) = stats(&[&flat(&s.retain.pixels), &flat(&s.forget.pixels)]);
    close("mean", m as f64, em);
    close("std", sd as f64, esd);
}

#[test]
fn ours_pulls_forget_embeddings_to_the_teachers_embedding_of_noise() {
    let s = setup();
    let (loss, (m, sd)) = run(&s, MethodName::Ours, false, 7);
    let retain = mse(
        &flat(&emb(&*s.student, &s.retain)),
        &flat(&emb(&*s.teacher, &s.retain)),
    );
    // The method's stream draws the noise image first.
    let mut rng = i2i_unlearn::util::rng("method", 7);
    let n = s.forget.pixels.elem_count();
    let noise: Vec<f32> = normal_vec(&mut rng, n)
        .into_iter()
        .map(|z| (m + sd * z).clamp(0.0, 1.0))
        .collect();
    let noise = Tensor::from_vec(noise, s.forget.pixels.shape(), &Device::Cpu).unwrap();
    let target = emb(&*s.teacher, &ModelInput::plain(&noise, &s.forget.mask));
    let forget = mse(&flat(&emb(&*s.student, &s.forget)), &flat(&target));
    close("ours retain", scalar(&loss.retain), retain);
    close("ours forget", scalar(&loss.forget), forget);
    close("ours total", scalar(&loss.total), retain + ALPHA * forget);
    // paper_compat: weights 2R/B and 2F/B (R = 3, F = 5, B = 8).
    let (pc, _) = run(&s, MethodName::Ours, true, 7);
    close(
        "ours paper_compat",
        scalar(&pc.total),
        retain * 6.0 / 8.0 + ALPHA * forget * 10.0 / 8.0,
    );
}

#[test]
fn random_encoder_target_has_the_teachers_batch_statistics() {
    let s = setup();
    let (loss, _) = run(&s, MethodName::RandomEncoder, false, 3);
    let t_r = flat(&emb(&*s.teacher, &s.retain));
    let t_f = flat(&emb(&*s.teacher, &s.forget));
    let (m, sd) = stats(&[&t_r, &t_f]);
    let s_r = flat(&emb(&*s.student, &s.retain));
    let s_f = flat(&emb(&*s.student, &s.forget));
    let mut rng = i2i_unlearn::util::rng("method", 3);
    let z: Vec<f64> = normal_vec(&mut rng, s_f.len())
        .into_iter()
        .map(|e| e as f64 * sd + m)
        .collect();
    close("re retain", scalar(&loss.retain), mse(&s_r, &t_r));
    close("re forget", scalar(&loss.forget), mse(&s_f, &z));
    // paper_compat: forget samples weigh 0; retain samples are pulled (weight 2, over B = 8)
    // toward their teacher embedding and toward z drawn in the retain embedding's shape.
    let (pc, _) = run(&s, MethodName::RandomEncoder, true, 3);
    let mut rng = i2i_unlearn::util::rng("method", 3);
    let z: Vec<f64> = normal_vec(&mut rng, s_r.len())
        .into_iter()
        .map(|e| e as f64 * sd + m)
        .collect();
    let per = s_r.len() / 3;
    let (mut a, mut b) = (0.0, 0.0);
    for i in 0..3 {
        let r = i * per..(i + 1) * per;
        a += 2.0 * mse(&s_r[r.clone()], &t_r[r.clone()]) / 8.0;
        b += 2.0 * mse(&s_r[r.clone()], &z[r]) / 8.0;
    }
    close("re paper_compat", scalar(&pc.total), a + ALPHA * b);
}

#[test]
fn retain_label_works_on_outputs_and_pairs_forget_j_with_retain_j_mod_r() {
    let s = setup();
    let (loss, _) = run(&s, MethodName::RetainLabel, false, 5);
    let out_s_r = rows(&s.student.output(&s.retain, Mode::Infer).unwrap());
    let out_t_r = rows(&s.teacher.output(&s.retain, Mode::Infer).unwrap());
    let out_s_f = rows(&s.student.output(&s.forget, Mode::Infer).unwrap());
    let cat = |v: &[Vec<f64>]| v.concat();
    close(
        "rl retain",
        scalar(&loss.retain),
        mse(&cat(&out_s_r), &cat(&out_t_r)),
    );
    let paired: Vec<Vec<f64>> = (0..5).map(|j| out_t_r[j % 3].clone()).collect();
    close(
        "rl forget",
        scalar(&loss.forget),
        mse(&cat(&out_s_f), &cat(&paired)),
    );
    // The student's output is the decoder's prediction for every patch (not the embedding).
    assert_eq!(out_s_r[0].len(), 16 * 4 * 4 * 3);
    // paper_compat: the shuffled mixed batch; retain sample at position i pulled toward the
    // (i mod R)-th retain sample of the batch; forget images play no part at all.
    let (pc, _) = run(&s, MethodName::RetainLabel, true, 5);
    let mut rng = i2i_unlearn::util::rng("method", 5);
    let order = unlearn::mixed_order(3, 5, &mut rng);
    let pos: Vec<usize> = (0..8).filter(|&i| order[i]).collect();
    let (mut a, mut b) = (0.0, 0.0);
    for (k, &i) in pos.iter().enumerate() {
        a += 2.0 * mse(&out_s_r[k], &out_t_r[k]) / 8.0;
        b += 2.0 * mse(&out_s_r[k], &out_t_r[i % 3]) / 8.0;
    }
    close("rl paper_compat", scalar(&pc.total), a + ALPHA * b);
    let mut other = setup();
    other.forget.pixels = (other.forget.pixels.ones_like().unwrap() * 0.3).unwrap();
    let (pc2, _) = run(&other, MethodName::RetainLabel, true, 5);
    close("rl ignores forget", scalar(&pc2.total), scalar(&pc.total));
}

/// MAE's training loss, computed here: normalised target patches, MSE per hidden patch.
fn mae_loss(m: &dyn I2IModel, x: &ModelInput, target: &Tensor) -> f64 {
    let logits = rows(&m.output(x, Mode::Infer).unwrap());
    let t = flat(target);
    let (mean, std) = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
    let (s, p, g) = (16usize, 4usize, 4usize);
    let mut total = 0.0;
    let mut count = 0.0;
    for (b, row) in logits.iter().enumerate() {
        for (patch, hidden) in x.mask.masks[b].hidden.iter().enumerate() {
            if !hidden {
                continue;
            }
            let (py, px) = (patch / g, patch % g);
            let mut se = 0.0;
            for yy in 0..p {
                for xx in 0..p {
                    for c in 0..3 {
                        let v = t[((b * 3 + c) * s + py * p + yy) * s + px * p + xx];
                        let v = (v - mean[c]) / std[c];
                        let pred = row[patch * p * p * 3 + (yy * p + xx) * 3 + c];
                        se += (pred - v) * (pred - v);
                    }
                }
            }
            total += se / (p * p * 3) as f64;
            count += 1.0;
        }
    }
    total / count
}

#[test]
fn max_loss_and_noisy_label_use_the_familys_training_loss() {
    let s = setup();
    let (loss, (m, sd)) = run(&s, MethodName::MaxLoss, false, 9);
    let r = mae_loss(&*s.student, &s.retain, &s.retain.pixels);
    let f = mae_loss(&*s.student, &s.forget, &s.forget.pixels);
    close("max retain", scalar(&loss.retain), r);
    close("max forget", scalar(&loss.forget), f);
    close("max total", scalar(&loss.total), r - ALPHA * f);
    let (nl, _) = run(&s, MethodName::NoisyLabel, false, 9);
    let mut rng = i2i_unlearn::util::rng("method", 9);
    let noise: Vec<f32> = normal_vec(&mut rng, s.forget.pixels.elem_count())
        .into_iter()
        .map(|z| (m + sd * z).clamp(0.0, 1.0))
        .collect();
    let noise = Tensor::from_vec(noise, s.forget.pixels.shape(), &Device::Cpu).unwrap();
    let f = mae_loss(&*s.student, &s.forget, &noise);
    close("noisy forget", scalar(&nl.forget), f);
    close("noisy total", scalar(&nl.total), r + ALPHA * f);
}

/// A method through its whole-loss route only (no split).
struct Whole(Box<dyn Method>);

impl Method for Whole {
    fn name(&self) -> MethodName {
        self.0.name()
    }
    fn scope(&self) -> Scope {
        self.0.scope()
    }
    fn loss(&self, ctx: &Ctx, batch: &StepBatch, rng: &mut ChaCha8Rng) -> anyhow::Result<Loss> {
        self.0.loss(ctx, batch, rng)
    }
}

type Weights = Vec<Vec<f32>>;

/// The trained weights before and after 3 steps of `name` (through its whole loss when
/// `whole`) on a pool of `threads` threads.
fn train(
    name: MethodName,
    whole: bool,
    threads: usize,
    grad_accum: usize,
    paper: bool,
) -> (Weights, Weights) {
    let s = setup();
    // Methods are not `Sync`: each is built on the thread that runs it.
    let method = move || -> Box<dyn Method> {
        match whole {
            true => Box::new(Whole(unlearn::method(name))),
            false => unlearn::method(name),
        }
    };
    let ctx = Ctx {
        student: &*s.student,
        teacher: &*s.teacher,
        alpha: ALPHA,
        noise: NoiseKind::Normal,
        paper_compat: paper,
    };
    let spec = UnlearnSpec {
        steps: 3,
        retain_batch: 3,
        forget_batch: 4,
        grad_accum,
        warmup_steps: 0,
        ..Default::default()
    };
    let job = trainer::UnlearnJob {
        spec: &spec,
        retain: &s.retain_set,
        forget: &s.forget_set,
        eval_mask: None,
        seed: 7,
    };
    let weights = || -> Weights {
        trainer::trainable(&*s.student, method().scope())
            .iter()
            .map(|(_, v, _)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
            .collect()
    };
    let before = weights();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| trainer::run(&*method(), &ctx, &job, |_, _| {}).unwrap());
    (before, weights())
}

/// The trainer runs a split loss (every method's, `paper_compat` aside for Retain Label and
/// Random Encoder) as two parts with a backward pass each, at the same time on two one-thread
/// pools when it has two threads: the trained weights are the same bits as with one backward
/// pass over the whole loss, on any thread count.
#[test]
fn split_parts_train_the_same_bits_as_one_backward_pass_on_any_thread_count() {
    use MethodName::*;
    for name in [Ours, MaxLoss, NoisyLabel, RetainLabel, RandomEncoder] {
        for (grad_accum, paper) in [(1, false), (2, true)] {
            let what = format!(
                "{} (accumulation {grad_accum}, paper_compat {paper})",
                name.as_str()
            );
            let (_, whole) = train(name, true, 2, grad_accum, paper);
            let (before, one) = train(name, false, 1, grad_accum, paper);
            let (_, two) = train(name, false, 2, grad_accum, paper);
            assert!(before != one, "{what}: the weights moved");
            assert!(one == two, "{what}: 1 vs 2 threads");
            assert!(one == whole, "{what}: split vs one backward pass");
        }
    }
}
