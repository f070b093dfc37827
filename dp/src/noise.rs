//! Gaussian noise for DP-SGD from a CSPRNG, hardened against floating-point attacks.
//!
//! # The attack
//! Mironov ("On Significance of the Least Significant Bits for Differential Privacy", CCS
//! 2012) showed that textbook samplers built from floating-point arithmetic (a log or sqrt of
//! a coarse uniform) produce noise whose set of possible values has input-dependent *holes*:
//! `x + noise` can land on floats that are impossible for a neighbouring `x'`, which reveals
//! `x` with certainty. Adding float noise to float data has the same problem at the low
//! bits wherever the noise's spacing is coarser than the data's.
//!
//! # The defence: discretized Gaussian on a dyadic grid, plus snapping
//! Following the snapping idea of Mironov's paper and the "granularity" of Google's secure
//! noise generation, every noise value is an exact multiple of a power-of-two grid
//! [`grid`]`(std)` (about `std * 2^-20`), and the data is rounded to the same grid before the
//! noise is added ([`SecureGaussian::add_to`], [`snap_to_grid`]). Then
//!
//! ```text
//! snap(x) + grid * round(N(0, std^2) / grid)  ==  grid * round((snap(x) + N(0, std^2)) / grid)
//! ```
//!
//! exactly (all of it is representable in `f32`: the grid is chosen so `|noise| < 2^24 grid`),
//! so the released value is *post-processing of the ideal continuous Gaussian mechanism*
//! applied to `snap(x)`. No value is impossible for one input and possible for another. The
//! price is that snapping moves each coordinate by at most `grid / 2`, so the L2 sensitivity
//! grows by at most [`sensitivity_overhead`]`(std, d) = grid * sqrt(d)`, about `0.2% * sigma`
//! of the clipping norm for 12M parameters; callers that want to be exact clip to
//! `C - overhead`.
//!
//! # The sampler
//! Each value is a ziggurat draw (Marsaglia and Tsang 2000, 256 layers) from one 64-bit word
//! of an AES-256 keystream in counter mode in about 99% of draws; an exponential only in the
//! wedges and the tail. Values beyond [`MAX_STANDARD_SCORE`] standard deviations (probability
//! below `1e-40`) are redrawn. AES-CTR is the generator of NIST's CTR_DRBG and of the
//! `torchcsprng` generator that Opacus's secure mode uses. With AES-NI it gives a value's 64
//! bits in about 1.7 ns on one core of a Zen 3 EPYC, and with VAES (our own counter-mode
//! loop, checked against the `aes` crate) in about 1.1 ns, which matters because noise for 12M
//! parameters is drawn every step.
//!
//! Large buffers are filled in parallel chunks. Each chunk has two AES-256-CTR streams whose
//! keys are drawn from a parent ChaCha20 generator seeded by the operating system: value `i`
//! of the chunk takes word `i` of the first stream, and the few draws that need more words
//! take them from the second. So the common case is a branch-free loop over a keystream
//! buffer of draws (vectorised, and compiled for AVX2 where the CPU has it), and the snapping
//! and adding is one more pass over the same block: a gradient is read and written once
//! ([`SecureGaussian::add_to`]).
//! `cargo bench -p bastion-dp --bench noise` prints ns per value.

mod keystream;

use keystream::{Keystream, KEYSTREAM_WORDS};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
#[cfg(test)]
use std::f64::consts::{PI, SQRT_2};
use tch::{Kind, Tensor};
use thiserror::Error;

/// Why noise could not be produced.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum NoiseError {
    /// The standard deviation must be positive and finite.
    #[error("noise standard deviation must be positive and finite, got {std}")]
    InvalidStd {
        /// The value given.
        std: f64,
    },
    /// The operating system could not provide a seed.
    #[error("operating system entropy unavailable: {0}")]
    Entropy(String),
    /// Noise is produced exactly only in `f32` and `f64`.
    #[error(
        "noise tensors must be Float or Double, got {kind:?}; add noise in f32 and convert after"
    )]
    UnsupportedKind {
        /// The kind asked for.
        kind: Kind,
    },
    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Tensor(#[from] tch::TchError),
    /// Prepared noise is added to exactly as many values as were drawn.
    #[error("prepared noise has {prepared} values but {given} were given to noise")]
    LengthMismatch {
        /// Values drawn.
        prepared: usize,
        /// Values to noise.
        given: usize,
    },
}

/// Largest |z| the sampler can return: the normal quantile at `2^-129`, rounded up.
pub const MAX_STANDARD_SCORE: f64 = 13.5;

/// The power-of-two grid that noise of this standard deviation lives on: the largest one with
/// `MAX_STANDARD_SCORE * std < 2^24 * grid`, so every noise value is exact in `f32`.
pub fn grid(std: f64) -> f64 {
    let exponent = (MAX_STANDARD_SCORE * std).log2().ceil() as i32 - 24;
    2f64.powi(exponent)
}

/// How much snapping to [`grid`]`(std)` can add to the L2 sensitivity of a `d`-dimensional sum.
pub fn sensitivity_overhead(std: f64, d: usize) -> f64 {
    grid(std) * (d as f64).sqrt()
}

/// Rounds each value to the nearest multiple of `grid` (a power of two, so this is exact).
pub fn snap_to_grid(values: &mut [f32], grid: f64) {
    for v in values {
        *v = snap(*v, grid);
    }
}

/// `v` rounded to the nearest multiple of the power of two `grid`, exactly: `v / grid` is
/// exact in f64; if it is 2^23 or more it is already an integer (an f32 has 24 significant
/// bits), otherwise the rounded integer times `grid` fits an f32.
#[inline]
fn snap(v: f32, grid: f64) -> f32 {
    (round_to_integer(v as f64 / grid) * grid) as f32
}

/// `1 / grid` when `grid` and it are normal powers of two, so `v * (1 / grid)` and `v / grid`
/// are the same real number, rounded the same way.
fn exact_reciprocal(grid: f64) -> Option<f64> {
    let inv = 1.0 / grid;
    let power_of_two = |x: f64| x.is_normal() && x.to_bits() & ((1u64 << 52) - 1) == 0;
    (power_of_two(grid) && power_of_two(inv) && inv * grid == 1.0).then_some(inv)
}

/// [`snap`] with the division by `grid` done as a multiplication by `inv`, its
/// [`exact_reciprocal`]: the same value.
#[inline(always)]
fn snap_by_reciprocal(v: f32, grid: f64, inv: f64) -> f32 {
    (round_to_integer(v as f64 * inv) * grid) as f32
}

/// Round to nearest (ties to even) for `|x| < 2^51`, without a libm call: adding and
/// subtracting 1.5 * 2^52 leaves no fraction bits. (Baseline x86_64 has no rounding
/// instruction, and `f64::round` is a function call costing more than the whole draw.)
/// Larger `|x|` are integers already and pass through.
#[inline]
fn round_to_integer(x: f64) -> f64 {
    const SHIFT: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52
    if x.abs() < 2_251_799_813_685_248.0 {
        (x + SHIFT) - SHIFT
    } else {
        x
    }
}

/// [`round_to_integer`] for `|x| < 2^51`, where it is the shift alone.
#[inline(always)]
fn round_small_to_integer(x: f64) -> f64 {
    const SHIFT: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52
    (x + SHIFT) - SHIFT
}

/// A ChaCha20 generator seeded from the operating system.
pub(crate) fn os_chacha() -> Result<ChaCha20Rng, String> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| e.to_string())?;
    Ok(ChaCha20Rng::from_seed(seed))
}

/// Gaussian noise from a cryptographically secure generator; see the module docs.
pub struct SecureGaussian {
    rng: ChaCha20Rng,
}

impl std::fmt::Debug for SecureGaussian {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecureGaussian { .. }") // never print generator state
    }
}

/// Values per parallel chunk (and per derived AES-256-CTR stream).
const CHUNK: usize = 1 << 18;

impl SecureGaussian {
    /// A sampler seeded from the operating system's entropy source.
    pub fn from_os() -> Result<Self, NoiseError> {
        Ok(SecureGaussian {
            rng: os_chacha().map_err(NoiseError::Entropy)?,
        })
    }

    /// **Tests only**: a reproducible sampler. Noise from a known seed protects nothing.
    pub fn danger_seeded_for_tests(seed: u64) -> Self {
        SecureGaussian {
            rng: ChaCha20Rng::seed_from_u64(seed),
        }
    }

    /// Fills `out` with N(0, std^2) noise on [`grid`]`(std)`.
    ///
    /// Add it only to values snapped to the same grid (or use [`Self::add_to`]).
    pub fn fill(&mut self, out: &mut [f32], std: f64) -> Result<(), NoiseError> {
        self.fill_with(out, std, |_, noise| noise as f32)
    }

    /// As [`Self::fill`], in `f64`.
    pub fn fill_f64(&mut self, out: &mut [f64], std: f64) -> Result<(), NoiseError> {
        self.fill_with(out, std, |_, noise| noise)
    }

    /// Snaps `values` to [`grid`]`(std)` and adds noise, in one pass: the safe way to noise a
    /// gradient sum.
    pub fn add_to(&mut self, values: &mut [f32], std: f64) -> Result<(), NoiseError> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.add_to_on_threads(values, std, threads)
    }

    /// As [`Self::add_to`] on at most `threads` threads (benchmarks; the noise is the same
    /// as with any other thread count, since each chunk has its own keystream).
    #[doc(hidden)]
    pub fn add_to_on_threads(
        &mut self,
        values: &mut [f32],
        std: f64,
        threads: usize,
    ) -> Result<(), NoiseError> {
        self.snap_add_then(values, std, threads, |v| v)
    }

    /// [`Self::add_to`], then each value divided by `divisor`, in the same pass: bit for bit
    /// what the two passes give (the single-node step averages its noisy sum right away).
    pub fn add_to_and_divide(
        &mut self,
        values: &mut [f32],
        std: f64,
        divisor: f32,
    ) -> Result<(), NoiseError> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.snap_add_then(values, std, threads, move |v| v / divisor)
    }

    /// `after(snap(v) + noise)` for every value, on at most `threads` threads.
    fn snap_add_then(
        &mut self,
        values: &mut [f32],
        std: f64,
        threads: usize,
        after: impl Fn(f32) -> f32 + Sync + Copy,
    ) -> Result<(), NoiseError> {
        let g = grid(std);
        // Both terms are exact multiples of the grid below 2^24 grid steps, so the f32 sum is
        // exact. Dividing by the power of two `g` is multiplying by its reciprocal whenever that
        // is a normal power of two too (a division costs more than the rest of a value's work).
        match exact_reciprocal(g) {
            Some(inv) => self.fill_with_threads(values, std, threads, move |v, noise| {
                after(snap_by_reciprocal(v, g, inv) + noise as f32)
            }),
            None => self.fill_with_threads(values, std, threads, move |v, noise| {
                after(snap(v, g) + noise as f32)
            }),
        }
    }

    /// A CPU tensor of `shape` and `kind` (Float or Double) filled with noise on the grid.
    pub fn tensor(&mut self, shape: &[i64], kind: Kind, std: f64) -> Result<Tensor, NoiseError> {
        let numel: i64 = shape.iter().product();
        let numel = usize::try_from(numel).unwrap_or(0);
        let t = match kind {
            Kind::Float => {
                let mut v = vec![0f32; numel];
                self.fill(&mut v, std)?;
                Tensor::from_slice(&v)
            }
            Kind::Double => {
                let mut v = vec![0f64; numel];
                self.fill_f64(&mut v, std)?;
                Tensor::from_slice(&v)
            }
            kind => return Err(NoiseError::UnsupportedKind { kind }),
        };
        Ok(t.f_reshape(shape)?)
    }

    /// Draws `len` values of noise now, to be added once, later, by [`PreparedNoise::add_to`].
    /// Noise does not depend on the data, so it can be drawn before the values it will protect
    /// exist: on a core that the step leaves idle, or while the previous step's all-reduce
    /// waits on the network. The noise lives in this process's memory until it is used, like
    /// the gradients it protects, and is erased when it is used or dropped.
    pub fn prepare(&mut self, len: usize, std: f64) -> Result<PreparedNoise, NoiseError> {
        let mut values = vec![0f32; len];
        self.fill(&mut values, std)?;
        Ok(PreparedNoise { values, std })
    }

    /// `snap(values) + noise` for a Float or Double tensor on any device, as a new tensor.
    pub fn add_to_tensor(&mut self, values: &Tensor, std: f64) -> Result<Tensor, NoiseError> {
        let kind = values.kind();
        let noise = self
            .tensor(&values.size(), kind, std)?
            .f_to_device(values.device())?;
        let g = grid(std);
        let snapped = values.f_div_scalar(g)?.f_round()?.f_mul_scalar(g)?;
        Ok(snapped.f_add(&noise)?)
    }

    /// Writes `combine(old, noise)` into every element of `out`, `noise` being `N(0, std^2)` on
    /// the grid, in parallel chunks with independent keystreams.
    fn fill_with<T: Copy + Send>(
        &mut self,
        out: &mut [T],
        std: f64,
        combine: impl Fn(T, f64) -> T + Sync,
    ) -> Result<(), NoiseError> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.fill_with_threads(out, std, threads, combine)
    }

    /// [`Self::fill_with`] on at most `threads` threads.
    fn fill_with_threads<T: Copy + Send>(
        &mut self,
        out: &mut [T],
        std: f64,
        threads: usize,
        combine: impl Fn(T, f64) -> T + Sync,
    ) -> Result<(), NoiseError> {
        self.fill_with_path(out, std, threads, wide_vectors_available(), combine)
    }

    /// [`Self::fill_with_threads`] on the AVX2 build of the sampler if `wide`, else on the
    /// baseline build.
    fn fill_with_path<T: Copy + Send>(
        &mut self,
        out: &mut [T],
        std: f64,
        threads: usize,
        wide: bool,
        combine: impl Fn(T, f64) -> T + Sync,
    ) -> Result<(), NoiseError> {
        if !(std > 0.0 && std.is_finite()) {
            return Err(NoiseError::InvalidStd { std });
        }
        let g = grid(std);
        let scale = std / g;
        let chunks: Vec<(&mut [T], Streams)> = out
            .chunks_mut(CHUNK)
            .map(|chunk| (chunk, Streams::from_parent(&mut self.rng)))
            .collect();
        let threads = threads.max(1);
        let tables = ziggurat_tables();
        let work = |(chunk, mut streams): (&mut [T], Streams)| {
            fill_chunk_dispatch(wide, chunk, &mut streams, tables, g, scale, &combine);
        };
        if threads <= 1 || chunks.len() <= 1 {
            chunks.into_iter().for_each(work);
        } else {
            let mut lanes: Vec<Vec<(&mut [T], Streams)>> =
                (0..threads).map(|_| Vec::new()).collect();
            for (i, c) in chunks.into_iter().enumerate() {
                lanes[i % threads].push(c);
            }
            std::thread::scope(|s| {
                for lane in lanes {
                    let work = &work;
                    s.spawn(move || lane.into_iter().for_each(work));
                }
            });
        }
        Ok(())
    }
}

/// Noise drawn ahead by [`SecureGaussian::prepare`]: `N(0, std^2)` values on
/// [`grid`]`(std)`, for one release. [`PreparedNoise::add_to`] consumes it, so the same noise
/// cannot protect two releases (their difference would be noise-free).
pub struct PreparedNoise {
    values: Vec<f32>,
    std: f64,
}

impl std::fmt::Debug for PreparedNoise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedNoise")
            .field("len", &self.values.len())
            .field("std", &self.std)
            .finish_non_exhaustive()
    }
}

impl PreparedNoise {
    /// How many values it noises.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when it noises nothing.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The standard deviation it was drawn with.
    pub fn std(&self) -> f64 {
        self.std
    }

    /// Snaps `values` to the noise's grid and adds the noise, exactly as
    /// [`SecureGaussian::add_to`] would have with freshly drawn noise; `values` must have as
    /// many entries as were drawn. A read-modify-write pass, on every core.
    pub fn add_to(self, values: &mut [f32]) -> Result<(), NoiseError> {
        if values.len() != self.values.len() {
            return Err(NoiseError::LengthMismatch {
                prepared: self.values.len(),
                given: values.len(),
            });
        }
        let g = grid(self.std);
        let add = |values: &mut [f32], noise: &[f32]| match exact_reciprocal(g) {
            Some(inv) => {
                for (v, n) in values.iter_mut().zip(noise) {
                    *v = snap_by_reciprocal(*v, g, inv) + n;
                }
            }
            None => {
                for (v, n) in values.iter_mut().zip(noise) {
                    *v = snap(*v, g) + n;
                }
            }
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per = values.len().div_ceil(threads).max(CHUNK);
        std::thread::scope(|s| {
            for (part, noise) in values.chunks_mut(per).zip(self.values.chunks(per)) {
                s.spawn(move || add(part, noise));
            }
        });
        Ok(())
    }
}

impl Drop for PreparedNoise {
    /// Noise that was never added is as secret as noise that was.
    fn drop(&mut self) {
        self.values.fill(0.0);
        std::hint::black_box(&mut self.values);
    }
}

/// The two keystreams of one chunk, each with its own key: `first` gives value `i` of the
/// chunk its first word, word `i` in order; `spare` gives the further words of the draws whose
/// first word misses its layer's rectangle (about 1.2%). Keeping them apart lets the common
/// case run over a whole buffer of words as a branch-free loop, with no word used twice.
struct Streams {
    first: Keystream,
    spare: Keystream,
}

impl Streams {
    fn from_parent(parent: &mut ChaCha20Rng) -> Streams {
        let first = Keystream::from_parent(parent);
        let spare = Keystream::from_parent(parent);
        Streams { first, spare }
    }
}

/// Whether this CPU runs AVX2, for which [`fill_chunk`] is compiled a second time: its
/// common case then runs four values to an instruction. (Every SEV-SNP host, EPYC Milan or
/// later, has it; the baseline build is what other machines run.)
fn wide_vectors_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// [`fill_chunk`] compiled for AVX2 where `wide` (the CPU has it), for the baseline otherwise:
/// the same operations on the same values, so the same noise either way (a test compares).
#[inline(always)]
fn fill_chunk_dispatch<T: Copy>(
    wide: bool,
    chunk: &mut [T],
    streams: &mut Streams,
    t: &Ziggurat,
    g: f64,
    scale: f64,
    combine: &impl Fn(T, f64) -> T,
) {
    #[cfg(target_arch = "x86_64")]
    if wide {
        // SAFETY: `wide` is `wide_vectors_available()`: this CPU executes AVX2 instructions,
        // the only requirement of a `#[target_feature(enable = "avx2")]` function.
        #[allow(unsafe_code)]
        unsafe {
            fill_chunk_avx2(chunk, streams, t, g, scale, combine)
        };
        return;
    }
    let _ = wide;
    fill_chunk(chunk, streams, t, g, scale, combine);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn fill_chunk_avx2<T: Copy>(
    chunk: &mut [T],
    streams: &mut Streams,
    t: &Ziggurat,
    g: f64,
    scale: f64,
    combine: &impl Fn(T, f64) -> T,
) {
    fill_chunk(chunk, streams, t, g, scale, combine);
}

/// `chunk[i] = combine(chunk[i], g * round(z_i * scale))` for standard normal draws `z_i`.
///
/// Each draw is a ziggurat draw (Marsaglia and Tsang 2000): 8 bits of a 64-bit word pick the
/// layer, 1 the sign, the top 52 the position. About 98.8% of first words land inside their
/// layer's rectangle and are the whole draw; the rest continue in the wedge or the tail
/// ([`ziggurat_rejected`]) with words from the spare stream. Draws beyond
/// [`MAX_STANDARD_SCORE`] (probability below 1e-40) are redrawn so every value stays exact on
/// the grid.
///
/// A keystream buffer at a time, in three passes, each a simple loop the compiler vectorises
/// or a rare branch: every draw as if its word landed inside its rectangle (one table entry
/// gives the signed layer width and the integer bound of the rectangle), each miss marked;
/// the marked draws finished, a few per buffer; then rounding to the grid and `combine` over
/// the values.
#[inline(always)]
fn fill_chunk<T: Copy>(
    chunk: &mut [T],
    streams: &mut Streams,
    t: &Ziggurat,
    g: f64,
    scale: f64,
    combine: &impl Fn(T, f64) -> T,
) {
    // |z| < MAX_STANDARD_SCORE and MAX_STANDARD_SCORE * std < 2^24 g, so |z * scale| < 2^24:
    // always inside `round_to_integer`'s shifting range, whose test can be skipped here.
    let noise = |z: f64| g * round_small_to_integer(z * scale);
    let mut missed = [0u8; KEYSTREAM_WORDS];
    let mut drawn = [0f64; KEYSTREAM_WORDS];
    for block in chunk.chunks_mut(KEYSTREAM_WORDS) {
        let first = &mut streams.first;
        first.refill();
        let words = &first.words[..block.len()];
        let drawn = &mut drawn[..block.len()];
        // Marks are scanned eight at a time: the padding after a short last block reads as
        // no miss.
        missed[block.len()..block.len().next_multiple_of(8)].fill(0);
        for ((z, word), miss) in drawn.iter_mut().zip(words).zip(missed.iter_mut()) {
            let bits = u64::from_le_bytes(*word);
            let entry = t.rectangle[(bits & 0x1ff) as usize];
            let position = bits >> 12;
            *z = position_to_f64(position) * entry.signed_x_unit;
            *miss = u8::from(position >= entry.inside_below);
        }
        let marks = &missed[..block.len().next_multiple_of(8)];
        for (group, eight) in marks.chunks_exact(8).enumerate() {
            // Each mark is 0 or 1, so its lowest set bit says which of the eight it is.
            let mut set = u64::from_le_bytes(eight.try_into().expect("8 marks"));
            while set != 0 {
                let i = group * 8 + set.trailing_zeros() as usize / 8;
                set &= set - 1;
                let bits = u64::from_le_bytes(words[i]);
                drawn[i] = ziggurat_rejected(&mut streams.spare, t, bits);
            }
        }
        for (v, &z) in block.iter_mut().zip(drawn.iter()) {
            *v = combine(*v, noise(z));
        }
    }
    // The draws are as secret as the noise: leave none of them on the stack.
    drawn.fill(0.0);
    std::hint::black_box(&mut drawn);
}

/// Layers of the ziggurat.
const LAYERS: usize = 256;
/// Where the base strip's tail starts, for 256 layers (Marsaglia and Tsang 2000).
const TAIL_START: f64 = 3.654_152_885_361_009;
/// Area of each layer, for 256 layers (Marsaglia and Tsang 2000).
const LAYER_AREA: f64 = 4.928_673_233_974_655e-3;

/// Layer edges `x[i]` (decreasing, `x[1] = TAIL_START`, `x[LAYERS] = 0`; `x[0]` is the base
/// strip's equivalent width) and the density `exp(-x^2/2)` at each.
struct Ziggurat {
    x: [f64; LAYERS + 1],
    f: [f64; LAYERS + 1],
    /// The fast path's view of each layer and sign, indexed by the 9 low bits of a word.
    rectangle: [Rectangle; 2 * LAYERS],
}

/// What the fast path needs of one layer and sign.
#[derive(Clone, Copy, Default)]
struct Rectangle {
    /// `x[layer] * 2^-52`, negated for the negative sign, exactly (power-of-two scalings of
    /// normal numbers), so `position * signed_x_unit` (`position` the word's 52 high
    /// bits) is `with_sign(unit(bits) * x[layer], bits)` bit for bit (a product's rounding is
    /// symmetric) in one product.
    signed_x_unit: f64,
    /// The first position whose point is not inside the layer's rectangle, i.e. with
    /// `|position * signed_x_unit| >= x[layer + 1]`: an integer comparison that decides
    /// exactly what the floating-point one would (the product grows with the position).
    inside_below: u64,
}

/// The first 52-bit position `u` with `u * x_unit >= edge` (`2^52` if none), by bisection:
/// the product is monotone in `u`.
fn first_position_outside(x_unit: f64, edge: f64) -> u64 {
    let (mut lo, mut hi) = (0u64, 1u64 << 52);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if position_to_f64(mid) * x_unit >= edge {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

fn ziggurat_tables() -> &'static Ziggurat {
    static TABLES: std::sync::OnceLock<Ziggurat> = std::sync::OnceLock::new();
    TABLES.get_or_init(|| {
        let density = |x: f64| (-0.5 * x * x).exp();
        let mut x = [0.0; LAYERS + 1];
        x[0] = LAYER_AREA / density(TAIL_START);
        x[1] = TAIL_START;
        for i in 1..LAYERS - 1 {
            // Each layer is a rectangle of the same area under the curve.
            x[i + 1] = (-2.0 * (density(x[i]) + LAYER_AREA / x[i]).ln()).sqrt();
        }
        x[LAYERS] = 0.0;
        let f = x.map(density);
        let mut rectangle = [Rectangle::default(); 2 * LAYERS];
        for (i, r) in rectangle.iter_mut().enumerate() {
            let layer = i % LAYERS;
            let x_unit = x[layer] * TWO_TO_MINUS_52;
            *r = Rectangle {
                signed_x_unit: if i < LAYERS { x_unit } else { -x_unit },
                inside_below: first_position_outside(x_unit, x[layer + 1]),
            };
        }
        Ziggurat { x, f, rectangle }
    })
}

/// 52 high bits of `bits` as a uniform in [0, 1).
#[inline(always)]
fn unit(bits: u64) -> f64 {
    position_to_f64(bits >> 12) * TWO_TO_MINUS_52
}

/// 2^-52: one step of [`unit`].
const TWO_TO_MINUS_52: f64 = 1.0 / 4_503_599_627_370_496.0;

/// `position` (below 2^52) as an `f64`, exactly: written into the significand of 2^52, which
/// is then subtracted. Two instructions that vectorise, where AVX2 has no conversion from
/// 64-bit integers (the compiler would convert one value at a time).
#[inline(always)]
fn position_to_f64(position: u64) -> f64 {
    const TWO_TO_52: f64 = 4_503_599_627_370_496.0;
    f64::from_bits(TWO_TO_52.to_bits() | position) - TWO_TO_52
}

/// `x` (not negative) with the sign chosen by bit 8 of `bits`: `+x` if it is clear, `-x` if set.
#[inline(always)]
fn with_sign(x: f64, bits: u64) -> f64 {
    f64::from_bits(x.to_bits() ^ ((bits & 0x100) << 55))
}

/// The rest of a ziggurat draw after `bits` missed its layer's rectangle: the wedge or the tail,
/// then fresh words until a draw is accepted.
#[cold]
#[inline(never)]
fn ziggurat_rejected(rng: &mut Keystream, t: &Ziggurat, mut bits: u64) -> f64 {
    loop {
        let layer = (bits & 0xff) as usize;
        let x = unit(bits) * t.x[layer];
        if x < t.x[layer + 1] {
            return with_sign(x, bits);
        }
        if layer == 0 {
            // The tail beyond TAIL_START (Marsaglia 1964).
            loop {
                let a = -(1.0 - unit(rng.next_u64())).ln() / TAIL_START;
                let b = -(1.0 - unit(rng.next_u64())).ln();
                if 2.0 * b > a * a {
                    let z = TAIL_START + a;
                    if z < MAX_STANDARD_SCORE {
                        return with_sign(z, bits);
                    }
                    break;
                }
            }
        } else {
            // The wedge between this layer's rectangle and the curve.
            let height = t.f[layer] + unit(rng.next_u64()) * (t.f[layer + 1] - t.f[layer]);
            if height < (-0.5 * x * x).exp() {
                return with_sign(x, bits);
            }
        }
        bits = rng.next_u64();
    }
}

#[cfg(test)]
/// Standard normal quantile for `p` in (0, 1/2]: Acklam's approximation (relative error
/// below 1.2e-9) refined by one Halley step on `Phi(x) - p`.
pub(crate) fn lower_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let x = if p < 0.02425 {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    };
    let e = 0.5 * libm::erfc(-x / SQRT_2) - p;
    let u = e * (2.0 * PI).sqrt() * (0.5 * x * x).exp();
    x - u / (1.0 + 0.5 * x * u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_inverts_the_cdf() {
        for p in [1e-38, 1e-20, 1e-10, 1e-3, 0.02, 0.024_25, 0.1, 0.3, 0.5] {
            let x = lower_quantile(p);
            let back = 0.5 * libm::erfc(-x / SQRT_2);
            assert!((back / p - 1.0).abs() < 1e-13, "p {p}: x {x} gives {back}");
        }
        assert_eq!(lower_quantile(0.5), 0.0);
    }

    #[test]
    fn the_far_tail_stays_inside_the_exact_range() {
        let smallest_p = 0.5 * 2f64.powi(-128);
        assert!(-lower_quantile(smallest_p) < MAX_STANDARD_SCORE);
    }

    #[test]
    fn rounding_without_libm_matches_round_half_even() {
        for x in [
            0.0,
            0.4,
            0.5,
            1.5,
            2.5,
            -0.5,
            -1.5,
            -2.6,
            1e6 + 0.49,
            3.7e15,
            -4.1e15,
            1e300,
        ] {
            let expected = if (x - f64::trunc(x)).abs() == 0.5 {
                2.0 * (x / 2.0).round()
            } else {
                x.round()
            };
            assert_eq!(round_to_integer(x), expected, "{x}");
        }
        // Snapping is exact for small and huge values alike.
        let g = 2f64.powi(-20);
        assert_eq!(snap(1.0 + 3.0 * g as f32, g), 1.0 + 3.0 * g as f32);
        assert_eq!(snap(3.0e9, g), 3.0e9);
        assert_eq!(snap(0.7 * g as f32, g), g as f32);
    }

    /// The sampler written plainly, one value at a time: value `i` of a chunk starts from
    /// word `i` of the chunk's first stream and continues, if it must, with words of the
    /// spare stream (one word at a time through `next_u64`, a branch on the sign, division
    /// in the snapping). It shows that the fast path, baseline or AVX2, draws the same values
    /// from the same keystreams.
    mod reference {
        use super::super::*;
        use aes::cipher::{KeyIvInit, StreamCipher};
        use rand_chacha::rand_core::RngCore;

        struct Keystream {
            cipher: ctr::Ctr128BE<aes::Aes256>,
            words: [u64; KEYSTREAM_WORDS],
            next: usize,
        }

        impl Keystream {
            fn from_parent(parent: &mut ChaCha20Rng) -> Keystream {
                let mut key = [0u8; 32];
                parent.fill_bytes(&mut key);
                let cipher = ctr::Ctr128BE::<aes::Aes256>::new(&key.into(), &[0u8; 16].into());
                Keystream {
                    cipher,
                    words: [0; KEYSTREAM_WORDS],
                    next: KEYSTREAM_WORDS,
                }
            }

            fn next_u64(&mut self) -> u64 {
                if self.next == KEYSTREAM_WORDS {
                    let mut bytes = [0u8; KEYSTREAM_WORDS * 8];
                    self.cipher.apply_keystream(&mut bytes);
                    for (w, b) in self.words.iter_mut().zip(bytes.chunks_exact(8)) {
                        *w = u64::from_le_bytes(b.try_into().expect("8 bytes"));
                    }
                    self.next = 0;
                }
                let w = self.words[self.next];
                self.next += 1;
                w
            }
        }

        fn ziggurat(first: &mut Keystream, spare: &mut Keystream) -> f64 {
            let t = ziggurat_tables();
            let unit = |bits: u64| (bits >> 12) as f64 / 4_503_599_627_370_496.0;
            let mut bits = first.next_u64();
            loop {
                let layer = (bits & 0xff) as usize;
                let sign = if bits & 0x100 == 0 { 1.0 } else { -1.0 };
                let x = unit(bits) * t.x[layer];
                if x < t.x[layer + 1] {
                    return sign * x;
                }
                if layer == 0 {
                    loop {
                        let a = -(1.0 - unit(spare.next_u64())).ln() / TAIL_START;
                        let b = -(1.0 - unit(spare.next_u64())).ln();
                        if 2.0 * b > a * a {
                            let z = TAIL_START + a;
                            if z < MAX_STANDARD_SCORE {
                                return sign * z;
                            }
                            break;
                        }
                    }
                } else {
                    let height =
                        t.f[layer] + unit(spare.next_u64()) * (t.f[layer + 1] - t.f[layer]);
                    if height < (-0.5 * x * x).exp() {
                        return sign * x;
                    }
                }
                bits = spare.next_u64();
            }
        }

        /// `combine(old, noise)` over `out`, chunk by chunk, on one thread.
        pub(super) fn fill_with<T: Copy>(
            seed: u64,
            out: &mut [T],
            std: f64,
            combine: impl Fn(T, f64) -> T,
        ) {
            let mut parent = ChaCha20Rng::seed_from_u64(seed);
            let g = grid(std);
            let scale = std / g;
            for chunk in out.chunks_mut(CHUNK) {
                let mut first = Keystream::from_parent(&mut parent);
                let mut spare = Keystream::from_parent(&mut parent);
                for v in chunk.iter_mut() {
                    let z = ziggurat(&mut first, &mut spare);
                    *v = combine(*v, g * round_to_integer(z * scale));
                }
            }
        }
    }

    #[test]
    fn the_fast_sampler_draws_what_the_reference_draws() {
        let n = 2 * CHUNK + 12_345;
        let data: Vec<f32> = (0..n).map(|i| (i as f32 * 1e-3).sin() * 5.0).collect();
        // 1e-310 has a subnormal grid, so snapping takes the division path.
        for (seed, std) in [(1, 1.0), (2, 0.013), (3, 37.0), (4, 1e-310)] {
            let g = grid(std);
            let mut slow = data.clone();
            reference::fill_with(seed, &mut slow, std, |v, noise| snap(v, g) + noise as f32);
            for threads in [1, 3] {
                let mut fast = data.clone();
                SecureGaussian::danger_seeded_for_tests(seed)
                    .add_to_on_threads(&mut fast, std, threads)
                    .unwrap();
                assert!(
                    fast.iter()
                        .zip(&slow)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "add_to, std {std}, {threads} threads"
                );
            }
            // The baseline build, which machines without AVX2 run, draws the same values.
            let mut baseline = data.clone();
            SecureGaussian::danger_seeded_for_tests(seed)
                .fill_with_path(&mut baseline, std, 2, false, |v, noise| {
                    snap(v, g) + noise as f32
                })
                .unwrap();
            assert!(
                baseline
                    .iter()
                    .zip(&slow)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "baseline add_to, std {std}"
            );
            let mut fast = vec![0f64; n];
            SecureGaussian::danger_seeded_for_tests(seed)
                .fill_f64(&mut fast, std)
                .unwrap();
            let mut slow = vec![0f64; n];
            reference::fill_with(seed, &mut slow, std, |_, noise| noise);
            assert!(
                fast.iter()
                    .zip(&slow)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "fill_f64, std {std}"
            );
        }
    }

    #[test]
    fn snapping_by_the_reciprocal_is_snapping_by_division() {
        for std in [1e-3, 1.0, 1234.5, 1e-300, 1e300, 1e-310] {
            let g = grid(std);
            let Some(inv) = exact_reciprocal(g) else {
                assert!(!g.is_normal() || !(1.0 / g).is_normal(), "std {std}");
                continue;
            };
            for v in [
                0.0f32,
                -0.0,
                1.0,
                -2.5e-7,
                3.0e9,
                f32::MAX,
                f32::MIN_POSITIVE,
                1e-45,
            ] {
                let v = v * (1.0 + 1e-3);
                assert_eq!(
                    snap_by_reciprocal(v, g, inv).to_bits(),
                    snap(v, g).to_bits(),
                    "std {std}, v {v}"
                );
            }
        }
    }

    #[test]
    fn grid_keeps_noise_exact_in_f32() {
        for std in [1e-3, 0.37, 1.0, 1.5, 2.0, 1234.5] {
            let g = grid(std);
            assert_eq!(g.log2().fract(), 0.0);
            assert!(MAX_STANDARD_SCORE * std < 2f64.powi(24) * g);
            assert!(
                MAX_STANDARD_SCORE * std >= 2f64.powi(23) * g,
                "grid is not the finest"
            );
        }
    }
}
