//! The noise keystream: AES-256 in counter mode, 64-bit words a buffer at a time.
//!
//! Two implementations of the same stream (same key, same counter blocks, same bytes; a test
//! compares them over several buffers):
//! - where the CPU has VAES and AVX2 (EPYC Milan and later, so every SEV-SNP host), our own
//!   loop over 256-bit AES instructions: two blocks per instruction, sixteen blocks in flight,
//!   about 1.5 times the throughput of AES-NI on one core. The `aes` crate uses VAES only
//!   where the OS enables AVX-512 state, which confidential VMs on Milan do not have;
//! - elsewhere the `aes` and `ctr` crates (AES-NI or their constant-time software AES).
//!
//! Counter blocks are the 128-bit big-endian counter from zero, as `ctr::Ctr128BE`. Each key
//! is fresh from the parent generator and used for one stream only.

use aes::cipher::{KeyIvInit, StreamCipher};
use rand_chacha::rand_core::RngCore;
use rand_chacha::ChaCha20Rng;

/// Words generated per refill: 8 KiB, small enough for L1.
pub(super) const KEYSTREAM_WORDS: usize = 1024;

/// 64-bit words of AES-256-CTR keystream, made [`KEYSTREAM_WORDS`] at a time.
pub(super) struct Keystream {
    source: Source,
    /// Keystream bytes; word `i` is `words[i]`, little-endian.
    pub(super) words: [[u8; 8]; KEYSTREAM_WORDS],
    /// The next unused word of `words`, for [`Keystream::next_u64`].
    next: usize,
}

enum Source {
    Crate(Box<ctr::Ctr128BE<aes::Aes256>>),
    #[cfg(target_arch = "x86_64")]
    Vaes(Box<vaes::Counter>),
}

impl Keystream {
    /// A stream keyed with 256 fresh bits from `parent`, counter from zero (each key is used
    /// for one stream only, so a fixed starting counter is safe).
    pub(super) fn from_parent(parent: &mut ChaCha20Rng) -> Keystream {
        let mut key = [0u8; 32];
        parent.fill_bytes(&mut key);
        let stream = Keystream::with_key(&key, vaes_available());
        key.fill(0);
        std::hint::black_box(&mut key);
        stream
    }

    /// A stream under `key`, on the VAES loop if `wide` (the CPU must have it).
    fn with_key(key: &[u8; 32], wide: bool) -> Keystream {
        let source = Source::new(key, wide);
        Keystream {
            source,
            words: [[0; 8]; KEYSTREAM_WORDS],
            next: KEYSTREAM_WORDS,
        }
    }

    #[inline(always)]
    pub(super) fn next_u64(&mut self) -> u64 {
        if self.next == KEYSTREAM_WORDS {
            self.refill();
        }
        let word = self.words[self.next];
        self.next += 1;
        u64::from_le_bytes(word)
    }

    /// Replaces `words` with the next [`KEYSTREAM_WORDS`] words of the stream; they are all
    /// unused after this.
    #[inline(never)]
    pub(super) fn refill(&mut self) {
        let bytes = self.words.as_flattened_mut();
        match &mut self.source {
            Source::Crate(cipher) => {
                // The keystream XORed over zeros, in one call so the cipher runs its parallel
                // blocks.
                bytes.fill(0);
                cipher.apply_keystream(bytes);
            }
            #[cfg(target_arch = "x86_64")]
            Source::Vaes(counter) => counter.fill(bytes),
        }
        self.next = 0;
    }
}

impl Source {
    fn new(key: &[u8; 32], wide: bool) -> Source {
        #[cfg(target_arch = "x86_64")]
        if wide {
            return Source::Vaes(Box::new(vaes::Counter::new(key)));
        }
        let _ = wide;
        Source::Crate(Box::new(ctr::Ctr128BE::new(key.into(), &[0u8; 16].into())))
    }
}

impl Drop for Keystream {
    /// Unused keystream is as secret as the noise it would have made.
    fn drop(&mut self) {
        self.words.as_flattened_mut().fill(0);
        std::hint::black_box(&mut self.words);
    }
}

/// Whether this CPU runs the VAES keystream loop.
pub(super) fn vaes_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("vaes")
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("aes")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod vaes {
    use std::arch::x86_64::{
        __m128i, __m256i, _mm256_aesenc_epi128, _mm256_aesenclast_epi128,
        _mm256_broadcastsi128_si256, _mm256_set_epi64x, _mm256_xor_si256,
        _mm_aeskeygenassist_si128, _mm_shuffle_epi32, _mm_slli_si128, _mm_xor_si128,
    };

    /// AES-256 round keys and the next counter value. Only made where
    /// [`super::vaes_available`] holds.
    pub(super) struct Counter {
        round_keys: [[u8; 16]; 15],
        next_block: u64,
    }

    impl Counter {
        pub(super) fn new(key: &[u8; 32]) -> Counter {
            // SAFETY: a `Counter` is made only where `vaes_available()` holds, which includes
            // AES-NI, the one feature `expand_key` is compiled for.
            #[allow(unsafe_code)]
            let round_keys = unsafe { expand_key(key) };
            Counter {
                round_keys,
                next_block: 0,
            }
        }

        /// Fills `out` (a whole number of 256-byte groups) with the next keystream bytes.
        pub(super) fn fill(&mut self, out: &mut [u8]) {
            // SAFETY: as in `new`: this CPU has VAES, AVX2 and AES-NI.
            #[allow(unsafe_code)]
            unsafe {
                encrypt_counters(&self.round_keys, &mut self.next_block, out)
            }
        }
    }

    impl Drop for Counter {
        fn drop(&mut self) {
            self.round_keys.as_flattened_mut().fill(0);
            std::hint::black_box(&mut self.round_keys);
        }
    }

    /// The AES-256 key schedule (FIPS 197, section 5.2) with AES-NI's key-generation assist:
    /// each new pair of round keys is the previous pair's words XOR-accumulated, plus
    /// SubWord(RotWord(w)) ^ Rcon for the first and SubWord(w) for the second.
    #[target_feature(enable = "aes")]
    fn expand_key(key: &[u8; 32]) -> [[u8; 16]; 15] {
        // Every word of `a` XORed with all the words below it, then with `t`.
        #[target_feature(enable = "sse2")]
        fn accumulate(a: __m128i, t: __m128i) -> __m128i {
            let a = _mm_xor_si128(a, _mm_slli_si128::<4>(a));
            let a = _mm_xor_si128(a, _mm_slli_si128::<4>(a));
            let a = _mm_xor_si128(a, _mm_slli_si128::<4>(a));
            _mm_xor_si128(a, t)
        }
        let half = |i: usize| -> __m128i {
            let bytes: [u8; 16] = key[16 * i..16 * i + 16].try_into().expect("16 bytes");
            bytemuck::cast(bytes)
        };
        let mut rk = [half(0); 15];
        rk[1] = half(1);
        // Round key `i` (even) from SubWord(RotWord(last word of key i-1)) ^ Rcon; the assist's
        // round constant is an immediate, hence one line per Rcon.
        macro_rules! rotated {
            ($i:literal, $rcon:literal) => {
                let t = _mm_shuffle_epi32::<0xff>(_mm_aeskeygenassist_si128::<$rcon>(rk[$i - 1]));
                rk[$i] = accumulate(rk[$i - 2], t);
            };
        }
        // Round key `i` (odd) from SubWord(last word of key i-1).
        macro_rules! substituted {
            ($i:literal) => {
                let t = _mm_shuffle_epi32::<0xaa>(_mm_aeskeygenassist_si128::<0>(rk[$i - 1]));
                rk[$i] = accumulate(rk[$i - 2], t);
            };
        }
        rotated!(2, 0x01);
        substituted!(3);
        rotated!(4, 0x02);
        substituted!(5);
        rotated!(6, 0x04);
        substituted!(7);
        rotated!(8, 0x08);
        substituted!(9);
        rotated!(10, 0x10);
        substituted!(11);
        rotated!(12, 0x20);
        substituted!(13);
        rotated!(14, 0x40);
        rk.map(bytemuck::cast::<__m128i, [u8; 16]>)
    }

    /// Blocks in flight: eight registers of two blocks, enough to cover the instruction's
    /// latency at two instructions a cycle.
    const LANES: usize = 8;

    /// Encrypts the counter blocks `next_block, next_block + 1, ...` (big-endian, upper 64
    /// bits zero: a stream never reaches 2^64 blocks) into `out`, 256 bytes at a time.
    #[target_feature(enable = "avx2,aes,vaes")]
    fn encrypt_counters(round_keys: &[[u8; 16]; 15], next_block: &mut u64, out: &mut [u8]) {
        let mut keys = [bytemuck::cast::<[u8; 32], __m256i>([0; 32]); 15];
        for (wide, key) in keys.iter_mut().zip(round_keys) {
            *wide = _mm256_broadcastsi128_si256(bytemuck::cast::<[u8; 16], __m128i>(*key));
        }
        for group in out.chunks_exact_mut(32 * LANES) {
            let mut state = [keys[0]; LANES];
            for (j, s) in state.iter_mut().enumerate() {
                let block = *next_block + 2 * j as u64;
                // Low 64 bits of each block's lane are the counter's zero upper half; the high
                // 64 bits, read little-endian, are the counter's big-endian bytes.
                let counters = _mm256_set_epi64x(
                    (block + 1).swap_bytes() as i64,
                    0,
                    block.swap_bytes() as i64,
                    0,
                );
                *s = _mm256_xor_si256(counters, keys[0]);
            }
            for key in &keys[1..14] {
                for s in state.iter_mut() {
                    *s = _mm256_aesenc_epi128(*s, *key);
                }
            }
            for (bytes, s) in group.chunks_exact_mut(32).zip(state) {
                let cipher: [u8; 32] = bytemuck::cast(_mm256_aesenclast_epi128(s, keys[14]));
                bytes.copy_from_slice(&cipher);
            }
            *next_block += 2 * LANES as u64;
        }
        keys.fill(bytemuck::cast::<[u8; 32], __m256i>([0; 32]));
        std::hint::black_box(&mut keys);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    /// FIPS 197 appendix C.3: AES-256 of 00112233...ff under key 00010203...1f. In counter
    /// mode the first block encrypted is counter 0, so the check XORs the plaintext in: the
    /// crate-backed stream over that plaintext must give the published ciphertext.
    #[test]
    fn the_crate_stream_is_aes_256_ctr() {
        use aes::cipher::{BlockEncrypt, KeyInit};
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let plain: [u8; 16] = std::array::from_fn(|i| (i as u8) * 0x11);
        let mut block = plain.into();
        aes::Aes256::new(&key.into()).encrypt_block(&mut block);
        assert_eq!(
            block.as_slice(),
            [
                0x8e, 0xa2, 0xb7, 0xca, 0x51, 0x67, 0x45, 0xbf, 0xea, 0xfc, 0x49, 0x90, 0x4b, 0x49,
                0x60, 0x89
            ]
        );
        // Counter block 0 encrypted, as the stream's first 16 bytes.
        let mut zero = [0u8; 16].into();
        aes::Aes256::new(&key.into()).encrypt_block(&mut zero);
        let mut stream = Keystream::with_key(&key, false);
        stream.refill();
        assert_eq!(&stream.words.as_flattened()[..16], zero.as_slice());
    }

    #[test]
    fn the_vaes_stream_equals_the_crate_stream() {
        if !vaes_available() {
            eprintln!("skipped: this CPU has no VAES");
            return;
        }
        let mut parent = ChaCha20Rng::seed_from_u64(5);
        let mut key = [0u8; 32];
        for _ in 0..4 {
            parent.fill_bytes(&mut key);
            let mut wide = Keystream::with_key(&key, true);
            let mut plain = Keystream::with_key(&key, false);
            // Several buffers, so the counter carries on across refills, and single words.
            for _ in 0..3 {
                wide.refill();
                plain.refill();
                assert!(wide.words == plain.words, "a refill differs");
            }
            for _ in 0..2 * KEYSTREAM_WORDS + 7 {
                assert_eq!(wide.next_u64(), plain.next_u64());
            }
        }
    }
}
