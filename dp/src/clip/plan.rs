//! Which way each layer's per-sample norms and clipped sum are computed.
//!
//! A layer can materialise its per-sample gradients (one batched GEMM, then a cheap norm and
//! weighted sum, at `B` times the weight's memory) or keep them factored (a ghost norm from
//! Gram matrices, then the sum by a GEMM or, for a convolution, by a swapped convolution).
//! Which is fastest depends on the layer's shape and on the machine: unfolding loses where
//! memory bandwidth is scarce, a convolution kernel loses to one GEMM on tiny maps. So by
//! default the engine times the candidates on the first batch each layer shape (and batch
//! size, within a power of two) is seen with, keeps the timings for the process, and spends
//! the memory budget on the layers where materialising saves the most time per byte.

use super::contribution::{Contribution, SumRoute};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Instant;
use tch::{Device, Tensor};

/// How the engine picks each layer's way of computing its norms and clipped sum. Either way
/// the results are the same up to floating-point rounding; only time and memory differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LayerChoice {
    /// Time the candidates on the first batch of each layer shape and batch-size power of
    /// two, once per process.
    #[default]
    Measured,
    /// A fixed cost model and sums by GEMM: no timing, so the same choices (and the same
    /// rounding) on every run.
    CostModel,
}

/// What the engine does for one parameter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Choice {
    pub(crate) materialize: bool,
    pub(crate) route: SumRoute,
}

/// Measured seconds for one layer shape, at the batch size it was first seen with (within
/// a power of two).
#[derive(Debug, Clone, Copy)]
struct Timing {
    /// Ghost norm plus the fastest sum.
    ghost_s: f64,
    /// Materialising, its norm and its weighted sum; `None` if it did not fit the budget.
    materialize_s: Option<f64>,
    /// The fastest sum route.
    route: SumRoute,
}

/// How many times a memory-bound pass over a value costs one multiply-add, roughly, on CPU:
/// the cost models' exchange rate between memory traffic and arithmetic.
pub(crate) const MEMORY_COST: i64 = 4;

static TIMINGS: LazyLock<Mutex<HashMap<String, Timing>>> = LazyLock::new(Default::default);

/// One choice per parameter. Only a parameter with a single factored contribution has a
/// choice to make; shared weights keep their factors (their cross terms use them).
/// `ones` is `(B,)` in the batch's kind and device, the factors used while timing.
pub(crate) fn choose(
    per_param: &[Vec<Contribution>],
    budget: usize,
    how: LayerChoice,
    ones: &Tensor,
) -> Vec<Choice> {
    let elt_size = ones.kind().elt_size_in_bytes();
    let mut choices: Vec<Choice> = per_param
        .iter()
        .map(|_| Choice {
            materialize: false,
            route: SumRoute::Gemm,
        })
        .collect();
    let mut candidates: Vec<(f64, usize, usize)> = Vec::new(); // (saving per byte, bytes, param)
    for (i, contribs) in per_param.iter().enumerate() {
        let (only, [batch, groups, t, p, d]) = match contribs.as_slice() {
            [only] => match only.outer_dims() {
                Some(dims) => (only, dims),
                None => continue,
            },
            _ => continue,
        };
        let bytes = (batch * groups * p * d) as usize * elt_size;
        let saving = match how {
            LayerChoice::CostModel => {
                // Ghost: a norm costing `G T^2 (p + d)` per sample and a GEMM for the sum.
                // Materialised: that same GEMM, then reading `G p d` values back.
                let ghost = groups * t * t * (p + d);
                let materialized = MEMORY_COST * groups * p * d;
                (ghost - materialized) as f64
            }
            LayerChoice::Measured => {
                let timing = timing(only, bytes, budget, ones);
                choices[i].route = timing.route;
                timing.materialize_s.map_or(0.0, |m| timing.ghost_s - m)
            }
        };
        if saving > 0.0 {
            candidates.push((saving / bytes as f64, bytes, i));
        }
    }
    candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut left = budget;
    for (_, bytes, i) in candidates {
        if bytes <= left {
            left -= bytes;
            choices[i].materialize = true;
        }
    }
    choices
}

/// The timing of `c`'s layer shape, measured now if this process has not seen it.
/// Materialising (`bytes`) is timed only if it fits the budget; the ghost norm is not timed
/// where it would hold more memory than materialising that fits, as on a stem convolution
/// whose Gram matrices over a thousand positions outweigh its weight many times: it loses
/// there, and timing it would raise the peak memory.
fn timing(c: &Contribution, bytes: usize, budget: usize, ones: &Tensor) -> Timing {
    let key = c
        .shape_key()
        .expect("only factored contributions are timed");
    if let Some(known) = TIMINGS.lock().expect("timings lock").get(&key) {
        return *known;
    }
    let device = ones.device();
    let may_materialize = bytes <= budget;
    let ghost_elements = c.ghost_norm_elements().unwrap_or(0) as usize;
    let norm_s = if may_materialize && ghost_elements * ones.kind().elt_size_in_bytes() > bytes {
        f64::INFINITY
    } else {
        seconds(device, || drop(c.squared_norms()))
    };
    let (route, sum_s) = c
        .sum_routes()
        .iter()
        .map(|&route| (route, seconds(device, || drop(c.clipped_sum(ones, route)))))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .expect("every contribution has a sum route");
    let materialize_s = may_materialize.then(|| {
        seconds(device, || {
            let exact = Contribution::PerSample(c.materialize());
            drop((
                exact.squared_norms(),
                exact.clipped_sum(ones, SumRoute::Gemm),
            ));
        })
    });
    let timing = Timing {
        ghost_s: norm_s + sum_s,
        materialize_s,
        route,
    };
    TIMINGS.lock().expect("timings lock").insert(key, timing);
    timing
}

/// The faster of two timed runs of `f`, after one that warms caches and lets libtorch pick
/// its kernels.
fn seconds(device: Device, f: impl Fn()) -> f64 {
    f();
    sync(device);
    (0..2)
        .map(|_| {
            let start = Instant::now();
            f();
            sync(device);
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Waits for a GPU's queued work, so a timing is the work's own.
fn sync(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clip::contribution::Inputs;
    use crate::clip::tape::ConvGeometry;
    use tch::Kind;

    /// A convolution's factors for a random batch: `(B, C, hw, hw)` in, `out` channels.
    fn conv(
        batch: i64,
        channels: i64,
        hw: i64,
        out: i64,
        kernel: i64,
        stride: i64,
    ) -> Contribution {
        let geometry = ConvGeometry {
            kernel: [kernel, kernel],
            stride: [stride, stride],
            padding: [kernel / 2, kernel / 2],
            dilation: [1, 1],
            groups: 1,
        };
        let side = (hw + 2 * (kernel / 2) - kernel) / stride + 1;
        let opts = (Kind::Float, Device::Cpu);
        Contribution::Outer {
            out: Tensor::randn([batch, 1, side * side, out], opts),
            inp: Inputs::Patches {
                input: Tensor::randn([batch, channels, hw, hw], opts),
                geometry,
            },
            shape: vec![out, channels, kernel, kernel],
        }
    }

    fn bytes(c: &Contribution) -> usize {
        let [b, g, _, p, d] = c.outer_dims().expect("factored");
        (b * g * p * d) as usize * 4
    }

    #[test]
    fn measured_choices_stay_within_the_budget() {
        let layers = vec![
            vec![conv(4, 8, 16, 8, 3, 1)],
            vec![conv(4, 16, 8, 16, 3, 1)],
            vec![conv(4, 16, 8, 32, 3, 2)],
            vec![conv(4, 32, 4, 32, 3, 1)],
        ];
        let ones = Tensor::ones([4], (Kind::Float, Device::Cpu));
        let sizes: Vec<usize> = layers.iter().map(|l| bytes(&l[0])).collect();
        for budget in [0, sizes[0], sizes[0] + sizes[1], usize::MAX] {
            let choices = choose(&layers, budget, LayerChoice::Measured, &ones);
            let spent: usize = choices
                .iter()
                .zip(&sizes)
                .filter(|(c, _)| c.materialize)
                .map(|(_, s)| s)
                .sum();
            assert!(spent <= budget, "spent {spent} of {budget}");
            if budget == 0 {
                assert!(choices.iter().all(|c| !c.materialize));
            }
        }
    }

    /// A stem convolution (a thousand output positions) whose ghost norm would hold Gram
    /// matrices far larger than its materialised gradients is materialised when that fits,
    /// without timing the ghost norm; with no budget it keeps its factors.
    #[test]
    fn a_stem_is_materialised_where_it_fits() {
        let stem = vec![vec![conv(2, 3, 64, 8, 7, 2)]];
        let ones = Tensor::ones([2], (Kind::Float, Device::Cpu));
        let fits = bytes(&stem[0][0]);
        assert!(choose(&stem, fits, LayerChoice::Measured, &ones)[0].materialize);
        assert!(!choose(&stem, 0, LayerChoice::Measured, &ones)[0].materialize);
    }
}
