//! Per-sample gradients in factored form, and the arithmetic the engine needs on them:
//! squared norms, inner products between uses of a shared weight, and clipped sums.
//!
//! This is the registry of per-layer gradient code: [`contributions_of`] turns each recorded
//! [`Use`] and its output gradient into one [`Contribution`] per trainable parameter.

use super::plan::MEMORY_COST;
use super::tape::{ConvGeometry, Use};
use tch::{Kind, Tensor};

/// One use's share of the per-sample gradients of one parameter, for a batch of `B` samples.
pub(crate) enum Contribution {
    /// Exact per-sample gradients, `(B, *param_shape)`. Biases, norm affines, and layers
    /// the engine chose to materialise.
    PerSample(Tensor),
    /// Sample `b`'s gradient is, per group `g`, `sum_t out[b,g,t,:] (x) inp[b,g,t,:]`: a
    /// `(G, p, d)` block stack viewed as `shape`. Linear (G = 1, T = sequence length) and
    /// Conv2d (T = output positions, `inp` the unfolded input patches).
    Outer {
        out: Tensor,
        inp: Inputs,
        shape: Vec<i64>,
    },
    /// Sample `b`'s gradient is `sum_t e_{index[b,t]} (x) rows[b,t,:]`: rows of a `(V, d)`
    /// table. Embedding lookups.
    Rows {
        index: Tensor,
        rows: Tensor,
        shape: Vec<i64>,
    },
}

/// The input side of an [`Contribution::Outer`] factor, `(B, G, T, d)`. A convolution's
/// unfolded patches are `kernel area` times larger than its input, so they are formed only
/// while a norm or sum needs them, never kept for the whole pass.
pub(crate) enum Inputs {
    /// Already in `(B, G, T, d)` form (Linear).
    Dense(Tensor),
    /// A convolution's input `(B, C, H, W)`, unfolded on demand.
    Patches {
        input: Tensor,
        geometry: ConvGeometry,
    },
}

impl Inputs {
    fn tensor(&self) -> Tensor {
        match self {
            Inputs::Dense(t) => t.shallow_clone(),
            Inputs::Patches { input, geometry: g } => {
                let batch = input.size()[0];
                let patches = input.im2col(g.kernel, g.dilation, g.padding, g.stride);
                let positions = patches.size()[2];
                // im2col orders a patch as (channel, kh, kw), as the flattened weight is.
                patches
                    .reshape([batch, g.groups, -1, positions])
                    .transpose(2, 3)
            }
        }
    }

    /// Inner products between each sample's own patches (or rows), `(B, G, T, T)`: the input
    /// side of a ghost norm. A convolution's comes from its pixels where that is cheaper.
    fn self_gram(&self) -> Tensor {
        if let Inputs::Patches { input, geometry } = self {
            if pixel_gram_pays(&input.size(), geometry) {
                return patch_gram_from_pixels(input, geometry);
            }
        }
        let t = self.tensor();
        gram(&t, &t)
    }

    /// `d`, the per-group input width.
    fn width(&self) -> i64 {
        match self {
            Inputs::Dense(t) => *t.size().last().expect("inputs have a feature axis"),
            Inputs::Patches { input, geometry: g } => {
                input.size()[1] / g.groups * g.kernel[0] * g.kernel[1]
            }
        }
    }
}

/// Output size of a convolution along one axis.
fn conv_out_len(len: i64, g: &ConvGeometry, axis: usize) -> i64 {
    (len + 2 * g.padding[axis] - g.dilation[axis] * (g.kernel[axis] - 1) - 1) / g.stride[axis] + 1
}

/// Pixels of an `(H, W)` map with the convolution's zero padding around it.
fn padded_area(h: i64, w: i64, g: &ConvGeometry) -> i64 {
    (h + 2 * g.padding[0]) * (w + 2 * g.padding[1])
}

/// Whether [`patch_gram_from_pixels`] beats unfolding, in both work and memory, for an input
/// of `size` `(B, C, H, W)`. Unfolding writes `k^2` copies of every pixel and the Gram then
/// multiplies `k^2 C`-wide patches; the pixel route multiplies `C`-wide pixels but over all
/// `HW` of them, so it wins where the output keeps most positions (stride 1, padded), and
/// loses on strided or large maps.
fn pixel_gram_pays(size: &[i64], g: &ConvGeometry) -> bool {
    let (channels, h, w) = (size[1], size[2], size[3]);
    let padded = padded_area(h, w, g);
    let positions = conv_out_len(h, g, 0) * conv_out_len(w, g, 1);
    let area = g.kernel[0] * g.kernel[1];
    // Multiply-adds, with memory-bound passes weighted by the planner's `MEMORY_COST`.
    let pixel_work = (h * w).pow(2) * channels
        + MEMORY_COST * g.groups * (padded.pow(2) + area * positions.pow(2));
    let patch_work = positions.pow(2) * area * channels + MEMORY_COST * area * channels * positions;
    let pixel_memory = g.groups * padded.pow(2);
    let patch_memory = area * channels * positions + g.groups * positions.pow(2);
    pixel_work < patch_work && pixel_memory <= patch_memory
}

/// The Gram of a convolution's patches, `(B, G, T, T)`, without unfolding them: the patches
/// at output positions `t` and `s` meet in the same `k x k` offsets, so their inner product
/// is the sum over offsets `o` of `<pixel(t + o), pixel(s + o)>`, read from the Gram of the
/// zero-padded input's pixels.
fn patch_gram_from_pixels(input: &Tensor, g: &ConvGeometry) -> Tensor {
    let size = input.size();
    let (batch, channels, h, w) = (size[0], size[1], size[2], size[3]);
    let x = input.reshape([batch, g.groups, channels / g.groups, h * w]);
    let [ph, pw] = g.padding;
    // (B, G, H, W, H, W), then zero rows and columns for the padding; pad lists the last axis
    // first.
    let pixels = x
        .transpose(2, 3)
        .matmul(&x)
        .reshape([batch, g.groups, h, w, h, w])
        .constant_pad_nd([pw, pw, ph, ph, pw, pw, ph, ph]);
    let (ho, wo) = (conv_out_len(h, g, 0), conv_out_len(w, g, 1));
    let (sh, sw) = (g.stride[0], g.stride[1]);
    let mut total: Option<Tensor> = None;
    for u in 0..g.kernel[0] {
        for v in 0..g.kernel[1] {
            let (r, c) = (u * g.dilation[0], v * g.dilation[1]);
            let rows = |t: Tensor, dim: i64| t.slice(dim, r, r + sh * (ho - 1) + 1, sh);
            let cols = |t: Tensor, dim: i64| t.slice(dim, c, c + sw * (wo - 1) + 1, sw);
            let block = cols(rows(cols(rows(pixels.shallow_clone(), 2), 3), 4), 5);
            total = Some(match total {
                None => block.copy(),
                Some(mut sum) => {
                    sum += block;
                    sum
                }
            });
        }
    }
    total
        .expect("a kernel has at least one offset")
        .reshape([batch, g.groups, ho * wo, ho * wo])
}

/// Sum over every axis except the first (the sample axis).
fn per_sample_sum(t: &Tensor) -> Tensor {
    if t.dim() == 1 {
        return t.shallow_clone();
    }
    let dims: Vec<i64> = (1..t.dim() as i64).collect();
    t.sum_dim_intlist(&dims[..], false, t.kind())
}

/// `|t[b]|^2` for each sample `b`, `(B,)`: a batched dot product of each flattened sample with
/// itself, one pass over `t` without a squared copy of it.
fn squared_rows(t: &Tensor) -> Tensor {
    if t.dim() == 1 {
        return t.square();
    }
    let batch = t.size()[0];
    let rows = t.reshape([batch, 1, -1]);
    rows.matmul(&rows.transpose(1, 2)).reshape([batch])
}

/// `a @ b^T` over the last two axes.
fn gram(a: &Tensor, b: &Tensor) -> Tensor {
    a.matmul(&b.transpose(-1, -2))
}

/// Reshapes `t` to `(B, 1, T, last)`, flattening everything between the first and last axes.
fn as_sequence(t: &Tensor) -> Tensor {
    let size = t.size();
    let last = *size.last().expect("tensor has at least one axis");
    t.reshape([size[0], 1, -1, last])
}

/// Translates one recorded use and the gradient of its output into contributions.
pub(crate) fn contributions_of(
    entry: &Use,
    grad_out: &Tensor,
    mut emit: impl FnMut(&Tensor, Contribution),
) {
    match entry {
        Use::Linear {
            weight,
            bias,
            input,
            ..
        } => {
            let out = as_sequence(grad_out);
            if let Some(w) = weight {
                emit(
                    w,
                    Contribution::Outer {
                        out: out.shallow_clone(),
                        inp: Inputs::Dense(as_sequence(input)),
                        shape: w.size(),
                    },
                );
            }
            if let Some(b) = bias {
                emit(
                    b,
                    Contribution::PerSample(out.sum_dim_intlist(&[1i64, 2][..], false, out.kind())),
                );
            }
        }
        Use::Conv2d {
            weight,
            bias,
            input,
            geometry,
            ..
        } => {
            if let Some(w) = weight {
                let out = conv_output_factor(grad_out, geometry);
                let inp = Inputs::Patches {
                    input: input.shallow_clone(),
                    geometry: *geometry,
                };
                emit(
                    w,
                    Contribution::Outer {
                        out,
                        inp,
                        shape: w.size(),
                    },
                );
            }
            if let Some(b) = bias {
                emit(
                    b,
                    Contribution::PerSample(grad_out.sum_dim_intlist(
                        &[2i64, 3][..],
                        false,
                        grad_out.kind(),
                    )),
                );
            }
        }
        Use::Embedding {
            weight, indices, ..
        } => {
            let batch = indices.size()[0];
            let dim = *grad_out
                .size()
                .last()
                .expect("embedding output has a feature axis");
            emit(
                weight,
                Contribution::Rows {
                    index: indices.reshape([batch, -1]),
                    rows: grad_out.reshape([batch, -1, dim]),
                    shape: weight.size(),
                },
            );
        }
        Use::Affine {
            weight,
            bias,
            normalized,
            channel_dim,
            ..
        } => {
            let dims: Vec<i64> = (1..grad_out.dim() as i64)
                .filter(|d| d != channel_dim)
                .collect();
            let reduce = |t: &Tensor| {
                if dims.is_empty() {
                    t.shallow_clone()
                } else {
                    t.sum_dim_intlist(&dims[..], false, t.kind())
                }
            };
            if let Some(w) = weight {
                emit(w, Contribution::PerSample(reduce(&(grad_out * normalized))));
            }
            if let Some(b) = bias {
                emit(b, Contribution::PerSample(reduce(grad_out)));
            }
        }
    }
}

/// The output side of a convolution's factors, `(B, G, L, p/G)` for `L` output positions.
fn conv_output_factor(grad_out: &Tensor, g: &ConvGeometry) -> Tensor {
    let size = grad_out.size();
    grad_out
        .reshape([size[0], g.groups, size[1] / g.groups, -1])
        .transpose(2, 3)
}

impl Contribution {
    /// Sizes that decide between ghost norms and materialisation for an `Outer` factor:
    /// `(B, G, T, p, d)`.
    pub(crate) fn outer_dims(&self) -> Option<[i64; 5]> {
        match self {
            Contribution::Outer { out, inp, .. } => {
                let o = out.size();
                Some([o[0], o[1], o[2], o[3], inp.width()])
            }
            _ => None,
        }
    }

    /// The exact per-sample gradients, `(B, *shape)`.
    pub(crate) fn materialize(&self) -> Tensor {
        match self {
            Contribution::PerSample(t) => t.shallow_clone(),
            Contribution::Outer { out, inp, shape } => {
                let batch = out.size()[0];
                let mut full = vec![batch];
                full.extend_from_slice(shape);
                // (B, G, p, T) @ (B, G, T, d): one batched GEMM.
                out.transpose(2, 3).matmul(&inp.tensor()).reshape(&full[..])
            }
            Contribution::Rows { index, rows, shape } => {
                let size = rows.size();
                let (batch, dim) = (size[0], size[2]);
                let table = Tensor::zeros([batch, shape[0], dim], (rows.kind(), rows.device()));
                let idx = index
                    .unsqueeze(2)
                    .expand([batch, index.size()[1], dim], false);
                table.scatter_add(1, &idx, rows)
            }
        }
    }

    /// Per-sample squared norms, `(B,)`.
    pub(crate) fn squared_norms(&self) -> Tensor {
        match self {
            Contribution::PerSample(t) => squared_rows(t),
            Contribution::Outer { out, inp, .. } => {
                // Ghost norm: |sum_t o_t (x) i_t|^2 = sum_{t,s} (o_t . o_s)(i_t . i_s).
                per_sample_sum(&(gram(out, out) * inp.self_gram()))
            }
            Contribution::Rows { index, rows, .. } => {
                per_sample_sum(&(same_index(index, index, rows.kind()) * gram(rows, rows)))
            }
        }
    }

    /// Per-sample inner products `<self_b, other_b>`, `(B,)`: the cross terms of a weight
    /// used more than once.
    pub(crate) fn inner(&self, other: &Contribution) -> Tensor {
        use Contribution::*;
        match (self, other) {
            (
                Outer {
                    out: o1, inp: i1, ..
                },
                Outer {
                    out: o2, inp: i2, ..
                },
            ) if o1.size()[1] == o2.size()[1] => {
                per_sample_sum(&(gram(o1, o2) * gram(&i1.tensor(), &i2.tensor())))
            }
            (
                Rows {
                    index: x1,
                    rows: r1,
                    ..
                },
                Rows {
                    index: x2,
                    rows: r2,
                    ..
                },
            ) => per_sample_sum(&(same_index(x1, x2, r1.kind()) * gram(r1, r2))),
            (Rows { index, rows, .. }, Outer { out, inp, .. })
            | (Outer { out, inp, .. }, Rows { index, rows, .. })
                if out.size()[1] == 1 =>
            {
                // <sum_t e_{x_t} (x) r_t, sum_s o_s (x) i_s> = sum_{t,s} o_s[x_t] (r_t . i_s).
                let out = out.squeeze_dim(1);
                let inp = inp.tensor().squeeze_dim(1);
                let (batch, s_len) = (out.size()[0], out.size()[1]);
                let t_len = index.size()[1];
                let picked = out.gather(
                    2,
                    &index.unsqueeze(1).expand([batch, s_len, t_len], false),
                    false,
                );
                per_sample_sum(&(picked * gram(&inp, rows)))
            }
            _ => per_sample_sum(&(self.materialize() * other.materialize())),
        }
    }

    /// Elements a ghost norm of an `Outer` factor holds at once: both Gram matrices and the
    /// input side's working set (unfolded patches, or the padded pixel Gram).
    pub(crate) fn ghost_norm_elements(&self) -> Option<i64> {
        let Contribution::Outer { inp, .. } = self else {
            return None;
        };
        let [batch, groups, t, _, _] = self.outer_dims()?;
        let grams = 2 * batch * groups * t * t;
        let working = match inp {
            Inputs::Dense(_) => 0,
            Inputs::Patches { input, geometry: g } => {
                let size = input.size();
                if pixel_gram_pays(&size, g) {
                    let padded = padded_area(size[2], size[3], g);
                    batch * g.groups * padded * padded
                } else {
                    batch * g.kernel[0] * g.kernel[1] * size[1] * t
                }
            }
        };
        Some(grams + working)
    }

    /// The ways [`Contribution::clipped_sum`] can form this contribution's sum.
    pub(crate) fn sum_routes(&self) -> &'static [SumRoute] {
        match self {
            Contribution::Outer {
                inp: Inputs::Patches { geometry, .. },
                ..
            } if geometry.groups == 1 => &[SumRoute::Gemm, SumRoute::SwappedConv],
            _ => &[SumRoute::Gemm],
        }
    }

    /// What decides an `Outer` factor's costs: its per-sample shapes, geometry, element type
    /// and device, and the batch size's power of two. A Poisson batch changes size every
    /// step, but stays near its expected size, so a layer is timed once or twice per run; a
    /// first batch far smaller than the rest (where fixed costs dominate) decides nothing
    /// for them. `None` for other contributions.
    pub(crate) fn shape_key(&self) -> Option<String> {
        match self {
            Contribution::Outer { out, inp, .. } => {
                let (input, geometry) = match inp {
                    Inputs::Dense(t) => (t, None),
                    Inputs::Patches { input, geometry } => (input, Some(geometry)),
                };
                let batch = out.size()[0].max(1) as u64;
                Some(format!(
                    "{} {:?} {:?} {:?} {:?} {:?}",
                    batch.next_power_of_two(),
                    &out.size()[1..],
                    &input.size()[1..],
                    geometry,
                    out.kind(),
                    out.device()
                ))
            }
            _ => None,
        }
    }

    /// `sum_b factors[b] * grad_b`, shaped like the parameter, formed by `route` (one of
    /// [`Contribution::sum_routes`]; others fall back to the GEMM).
    pub(crate) fn clipped_sum(&self, factors: &Tensor, route: SumRoute) -> Tensor {
        match self {
            Contribution::Outer {
                out,
                inp: Inputs::Patches { input, geometry },
                ..
            } if route == SumRoute::SwappedConv && geometry.groups == 1 => {
                swapped_conv_sum(input, out, factors, geometry)
            }
            Contribution::PerSample(t) => {
                let batch = t.size()[0];
                let summed = factors.unsqueeze(0).matmul(&t.reshape([batch, -1]));
                summed.reshape(&t.size()[1..])
            }
            Contribution::Outer { out, inp, shape } => {
                // Scale the narrower factor: the same sum, less to write (an LM head's output
                // gradient is vocabulary-wide, its input only model-wide).
                let inp = inp.tensor();
                let f = factors.view([-1, 1, 1, 1]);
                let (out, inp) = if out.size()[3] <= inp.size()[3] {
                    (out * f, inp)
                } else {
                    (out.shallow_clone(), inp * f)
                };
                // (G, p, B*T) @ (G, B*T, d): the ordinary weight-gradient GEMM, per group. A
                // (B, T, width)-contiguous factor (a Linear layer's) flattens without a copy,
                // and the GEMM reads the left one transposed in place.
                let (o, i) = (out.size(), inp.size());
                let lhs = out.permute([1, 0, 2, 3]).reshape([o[1], o[0] * o[2], o[3]]);
                let rhs = inp.permute([1, 0, 2, 3]).reshape([i[1], i[0] * i[2], i[3]]);
                if o[1] == 1 {
                    lhs.select(0, 0)
                        .tr()
                        .mm(&rhs.select(0, 0))
                        .reshape(&shape[..])
                } else {
                    lhs.transpose(1, 2).matmul(&rhs).reshape(&shape[..])
                }
            }
            Contribution::Rows { index, rows, shape } => {
                let dim = rows.size()[2];
                let scaled = (rows * factors.view([-1, 1, 1])).reshape([-1, dim]);
                Tensor::zeros(&shape[..], (rows.kind(), rows.device())).index_add(
                    0,
                    &index.reshape([-1]),
                    &scaled,
                )
            }
        }
    }
}

/// How a factored clipped sum is formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SumRoute {
    /// One GEMM of the scaled output factor against the (unfolded) inputs.
    Gemm,
    /// A convolution's weight gradient as a convolution ([`swapped_conv_sum`]).
    SwappedConv,
}

/// The clipped sum of a convolution's weight gradients (groups 1) as one convolution with
/// the roles swapped: `sum_b f_b dW_b[o,c,u,v] = sum_{b,i,j} f_b g[b,o,i,j] x[b,c,u*dl+i*s,
/// v*dl+j*s]` convolves the input, channels as its batch and samples as its channels, with
/// the scaled output gradient as the kernel, stride and dilation exchanged. libtorch's
/// convolution kernels do this without unfolding the input `k^2` times, which wins on wide
/// maps and loses on tiny ones; the engine measures which.
fn swapped_conv_sum(input: &Tensor, out: &Tensor, factors: &Tensor, g: &ConvGeometry) -> Tensor {
    let size = input.size();
    let (ho, wo) = (conv_out_len(size[2], g, 0), conv_out_len(size[3], g, 1));
    // out is (B, 1, T, p), a view of the output gradient (B, p, Ho, Wo).
    let o = out.size();
    let kernel = (out.transpose(2, 3).reshape([o[0], o[3], ho, wo]) * factors.view([-1, 1, 1, 1]))
        .transpose(0, 1)
        .contiguous();
    let samples_as_channels = input.transpose(0, 1).contiguous();
    samples_as_channels
        .conv2d::<Tensor>(&kernel, None, g.dilation, g.padding, g.stride, 1)
        // The swapped output can extend past the kernel where the stride skipped input rows.
        .narrow(2, 0, g.kernel[0])
        .narrow(3, 0, g.kernel[1])
        .transpose(0, 1)
        .contiguous()
}

/// `(B, T1, T2)` mask of equal indices, as 0/1 of `kind`.
fn same_index(a: &Tensor, b: &Tensor, kind: Kind) -> Tensor {
    a.unsqueeze(2).eq_tensor(&b.unsqueeze(1)).to_kind(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(
        kernel: [i64; 2],
        stride: [i64; 2],
        padding: [i64; 2],
        dilation: [i64; 2],
        groups: i64,
    ) -> ConvGeometry {
        ConvGeometry {
            kernel,
            stride,
            padding,
            dilation,
            groups,
        }
    }

    /// The pixel route against the unfolded patches it replaces, on geometries that pick
    /// either route in the engine: stride, padding, dilation, groups, non-square maps.
    #[test]
    fn patch_gram_from_pixels_equals_unfolded_gram() {
        // (channels, h, w, kernel, stride, padding, dilation, groups)
        let cases = [
            (3, 6, 6, [3, 3], [1, 1], [1, 1], [1, 1], 1),
            (4, 7, 5, [3, 3], [2, 2], [1, 1], [1, 1], 2),
            (2, 6, 7, [2, 2], [1, 1], [0, 0], [2, 2], 1),
            (4, 9, 8, [3, 3], [2, 2], [2, 2], [2, 2], 4),
            (3, 4, 4, [1, 1], [1, 1], [0, 0], [1, 1], 1),
            (2, 5, 9, [3, 1], [1, 2], [1, 0], [1, 1], 1),
            (6, 8, 8, [3, 3], [1, 1], [1, 1], [1, 1], 3),
        ];
        tch::manual_seed(3);
        for (c, h, w, kernel, stride, padding, dilation, groups) in cases {
            let geometry = geometry(kernel, stride, padding, dilation, groups);
            let input = Tensor::randn([3, c, h, w], (Kind::Double, tch::Device::Cpu));
            let patches = Inputs::Patches {
                input: input.shallow_clone(),
                geometry,
            }
            .tensor();
            let unfolded = gram(&patches, &patches);
            let from_pixels = patch_gram_from_pixels(&input, &geometry);
            assert_eq!(from_pixels.size(), unfolded.size(), "{geometry:?}");
            let err = (&from_pixels - &unfolded).abs().max().double_value(&[]);
            assert!(err < 1e-10, "{geometry:?}: max error {err}");
        }
    }

    /// Both sum routes against each other and against plain autograd's weight gradient of
    /// the factor-weighted loss.
    #[test]
    fn swapped_conv_sum_equals_gemm_and_autograd() {
        // (channels, out, h, w, kernel, stride, padding, dilation)
        let cases = [
            (3, 4, 6, 6, [3, 3], [1, 1], [1, 1], [1, 1]),
            (4, 2, 7, 5, [3, 3], [2, 2], [1, 1], [1, 1]),
            (2, 3, 6, 7, [2, 2], [1, 1], [0, 0], [2, 2]),
            (2, 5, 9, 8, [3, 3], [2, 2], [2, 2], [2, 2]),
            (3, 4, 4, 4, [1, 1], [2, 2], [0, 0], [1, 1]),
            (2, 3, 5, 9, [3, 1], [1, 2], [1, 0], [1, 1]),
        ];
        tch::manual_seed(5);
        let opts = (Kind::Double, tch::Device::Cpu);
        for (c, o, h, w, kernel, stride, padding, dilation) in cases {
            let geometry = geometry(kernel, stride, padding, dilation, 1);
            let input = Tensor::randn([3, c, h, w], opts);
            let weight = Tensor::randn([o, c, kernel[0], kernel[1]], opts).set_requires_grad(true);
            let output = input.conv2d::<Tensor>(&weight, None, stride, padding, dilation, 1);
            let grad_out = Tensor::randn(output.size(), opts);
            let factors = Tensor::from_slice(&[0.5f64, 1.0, 0.25]);
            let loss = (&output * &grad_out * factors.view([-1, 1, 1, 1])).sum(Kind::Double);
            let reference = Tensor::run_backward(&[&loss], &[&weight], false, false).remove(0);
            let contribution = Contribution::Outer {
                out: conv_output_factor(&grad_out, &geometry),
                inp: Inputs::Patches {
                    input: input.shallow_clone(),
                    geometry,
                },
                shape: weight.size(),
            };
            assert_eq!(contribution.sum_routes().len(), 2);
            for route in [SumRoute::Gemm, SumRoute::SwappedConv] {
                let ours = contribution.clipped_sum(&factors, route);
                assert_eq!(ours.size(), reference.size(), "{geometry:?} {route:?}");
                let err = (&ours - &reference).abs().max().double_value(&[]);
                assert!(err < 1e-10, "{geometry:?} {route:?}: max error {err}");
            }
        }
    }

    /// ResNet's stride-1 3x3 layers take the pixel route; its strided and 1x1 layers and a
    /// large stem do not (the stem's pixel Gram would need gigabytes).
    #[test]
    fn pixel_route_chosen_where_cheaper() {
        let conv = |k: i64, s: i64, p: i64| geometry([k, k], [s, s], [p, p], [1, 1], 1);
        assert!(pixel_gram_pays(&[32, 128, 8, 8], &conv(3, 1, 1)));
        assert!(pixel_gram_pays(&[32, 256, 4, 4], &conv(3, 1, 1)));
        assert!(!pixel_gram_pays(&[32, 64, 16, 16], &conv(3, 2, 1)));
        assert!(!pixel_gram_pays(&[32, 64, 16, 16], &conv(1, 2, 0)));
        assert!(!pixel_gram_pays(&[32, 3, 64, 64], &conv(7, 2, 3)));
    }
}
