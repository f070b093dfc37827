//! Per-sample gradients in factored form, and the arithmetic the engine needs on them:
//! squared norms, inner products between uses of a shared weight, and clipped sums.
//!
//! This is the registry of per-layer gradient code: [`contributions_of`] turns each recorded
//! [`Use`] and its output gradient into one [`Contribution`] per trainable parameter.

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

/// Sum over every axis except the first (the sample axis).
fn per_sample_sum(t: &Tensor) -> Tensor {
    if t.dim() == 1 {
        return t.shallow_clone();
    }
    let dims: Vec<i64> = (1..t.dim() as i64).collect();
    t.sum_dim_intlist(&dims[..], false, t.kind())
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
            Contribution::PerSample(t) => per_sample_sum(&t.square()),
            Contribution::Outer { out, inp, .. } => {
                // Ghost norm: |sum_t o_t (x) i_t|^2 = sum_{t,s} (o_t . o_s)(i_t . i_s).
                let inp = inp.tensor();
                per_sample_sum(&(gram(out, out) * gram(&inp, &inp)))
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

    /// `sum_b factors[b] * grad_b`, shaped like the parameter.
    pub(crate) fn clipped_sum(&self, factors: &Tensor) -> Tensor {
        match self {
            Contribution::PerSample(t) => {
                let batch = t.size()[0];
                let summed = factors.unsqueeze(0).matmul(&t.reshape([batch, -1]));
                summed.reshape(&t.size()[1..])
            }
            Contribution::Outer { out, inp, shape } => {
                let scaled = out * factors.view([-1, 1, 1, 1]);
                // (G, p, B*T) @ (G, B*T, d): the ordinary weight-gradient GEMM, per group.
                let s = scaled.size();
                let inp = inp.tensor();
                let i = inp.size();
                let lhs = scaled
                    .permute([1, 3, 0, 2])
                    .reshape([s[1], s[3], s[0] * s[2]]);
                let rhs = inp.permute([1, 0, 2, 3]).reshape([i[1], i[0] * i[2], i[3]]);
                lhs.matmul(&rhs).reshape(&shape[..])
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

/// `(B, T1, T2)` mask of equal indices, as 0/1 of `kind`.
fn same_index(a: &Tensor, b: &Tensor, kind: Kind) -> Tensor {
    a.unsqueeze(2).eq_tensor(&b.unsqueeze(1)).to_kind(kind)
}
