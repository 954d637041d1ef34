//! The trainer runs a split loss (every method's, `paper_compat` aside for Retain Label and
//! Random Encoder) as two parts, each with its own backward pass, at the same time on two
//! one-thread pools when it has two threads. The trained weights must be the same bits as with
//! one backward pass over the whole loss, and must not depend on the thread count.

use candle_core::Device;
use i2i_unlearn::data::embedded::{Embedded, EmbeddedConfig};
use i2i_unlearn::data::{DataSource, ImageSet, Split};
use i2i_unlearn::models::{self, mae::MaeConfig, FamilyConfig};
use i2i_unlearn::unlearn::{
    self, trainer, Ctx, Loss, Method, MethodName, NoiseKind, Scope, StepBatch, UnlearnSpec,
};
use rand_chacha::ChaCha8Rng;

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

/// The encoder's weights before and after 3 steps of `method` on a pool of `threads` threads.
fn train(
    name: MethodName,
    whole: bool,
    threads: usize,
    grad_accum: usize,
    paper: bool,
) -> (Weights, Weights) {
    // Methods are not `Sync`: each is built on the thread that runs it.
    let method = move || -> Box<dyn Method> {
        if whole {
            Box::new(Whole(unlearn::method(name)))
        } else {
            unlearn::method(name)
        }
    };
    let cfg = FamilyConfig::Mae(MaeConfig {
        image_size: 16,
        patch_size: 4,
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 32,
        decoder_hidden_size: 16,
        decoder_num_hidden_layers: 1,
        decoder_num_attention_heads: 2,
        decoder_intermediate_size: 32,
        mask_ratio: 0.5,
        ..Default::default()
    });
    let dev = Device::Cpu;
    let ws = models::init_weights(&cfg, 1, &dev).unwrap();
    let wt = models::init_weights(&cfg, 2, &dev).unwrap();
    let src = Embedded::new(EmbeddedConfig {
        classes: 4,
        size: 16,
        seed: 0,
    })
    .unwrap();
    let set = |c: usize, n: usize| {
        ImageSet::from_raw(&src.images(c, Split::Train, n, 0).unwrap(), 16, &dev).unwrap()
    };
    let (retain, forget) = (set(1, 6), set(0, 5));
    let student = models::build(&cfg, &ws, true, &dev).unwrap();
    let teacher = models::build(&cfg, &wt, false, &dev).unwrap();
    let ctx = Ctx {
        student: &*student,
        teacher: &*teacher,
        alpha: 0.3,
        noise: NoiseKind::Normal,
        paper_compat: paper,
    };
    let spec = UnlearnSpec {
        steps: 3,
        retain_batch: 4,
        forget_batch: 3,
        grad_accum,
        warmup_steps: 0,
        ..Default::default()
    };
    let job = trainer::UnlearnJob {
        spec: &spec,
        retain: &retain,
        forget: &forget,
        eval_mask: None,
        seed: 7,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let weights = || -> Weights {
        trainer::trainable(&*student, method().scope())
            .iter()
            .map(|(_, v, _)| {
                v.as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            })
            .collect()
    };
    let before = weights();
    pool.install(|| trainer::run(&*method(), &ctx, &job, |_, _| {}).unwrap());
    (before, weights())
}

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
            assert!(
                before.iter().zip(&one).any(|(b, a)| b != a),
                "{what}: the weights moved"
            );
            assert!(one == two, "{what}: 1 vs 2 threads");
            assert!(one == whole, "{what}: split vs one backward pass");
        }
    }
}
