//! Binary adaptive range coder (the LZMA construction: 32-bit range, carry
//! propagated through a cached byte). Chosen over rANS because it adapts
//! bit by bit without buffering symbols in reverse, which keeps the encoder
//! streaming and the decoder trivially bounded.

/// Probabilities are P(bit == 0) scaled to 2^PROB_BITS.
const PROB_BITS: u32 = 15;
const PROB_ONE: u16 = 1 << PROB_BITS;
const TOP: u32 = 1 << 24;

/// Adaptation shifts indexed by how many bits a model has seen: a fresh model
/// learns fast (short chunks must not pay a long warm-up) and then settles to a
/// slow rate that tracks the stationary distribution precisely.
const SHIFT_SCHEDULE: [u8; 24] = [
    1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5,
];
const SHIFT_LIMIT: u8 = 5;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Bit {
    p0: u16,
    seen: u8,
}

impl Default for Bit {
    fn default() -> Self {
        Self {
            p0: PROB_ONE / 2,
            seen: 0,
        }
    }
}

impl Bit {
    #[inline]
    fn update(&mut self, bit: bool) {
        let shift = match SHIFT_SCHEDULE.get(usize::from(self.seen)) {
            Some(&s) => {
                self.seen += 1;
                s
            }
            None => SHIFT_LIMIT,
        };
        // Both branches keep p0 within [1, PROB_ONE - 1]: subtracting p >> s
        // never reaches 0 for p >= 1, and the complement argument is symmetric.
        if bit {
            self.p0 -= self.p0 >> shift;
        } else {
            self.p0 += (PROB_ONE - self.p0) >> shift;
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Encoder {
    low: u64,
    range: u32,
    cache: u8,
    cache_size: u64,
    out: Vec<u8>,
}

impl Encoder {
    pub(crate) fn new(out: Vec<u8>) -> Self {
        Self {
            low: 0,
            range: u32::MAX,
            cache: 0,
            cache_size: 1,
            out,
        }
    }

    #[inline]
    pub(crate) fn encode(&mut self, model: &mut Bit, bit: bool) {
        let bound = (self.range >> PROB_BITS) * u32::from(model.p0);
        if bit {
            self.low += u64::from(bound);
            self.range -= bound;
        } else {
            self.range = bound;
        }
        model.update(bit);
        while self.range < TOP {
            self.range <<= 8;
            self.shift_low();
        }
    }

    /// Equiprobable bits, for the low-order residual bits that carry no
    /// exploitable structure.
    #[inline]
    pub(crate) fn encode_direct(&mut self, value: u64, nbits: u32) {
        for i in (0..nbits).rev() {
            self.range >>= 1;
            if (value >> i) & 1 == 1 {
                self.low += u64::from(self.range);
            }
            while self.range < TOP {
                self.range <<= 8;
                self.shift_low();
            }
        }
    }

    fn shift_low(&mut self) {
        if self.low < 0xFF00_0000 || self.low > 0xFFFF_FFFF {
            let carry = (self.low >> 32) as u8;
            let mut pending = self.cache;
            loop {
                self.out.push(pending.wrapping_add(carry));
                pending = 0xFF;
                self.cache_size -= 1;
                if self.cache_size == 0 {
                    break;
                }
            }
            self.cache = ((self.low >> 24) & 0xFF) as u8;
        }
        self.cache_size += 1;
        self.low = (self.low & 0x00FF_FFFF) << 8;
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        for _ in 0..5 {
            self.shift_low();
        }
        self.out
    }
}

#[derive(Debug)]
pub(crate) struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
    range: u32,
    code: u32,
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Self {
        let mut d = Self {
            input,
            pos: 0,
            range: u32::MAX,
            code: 0,
        };
        // The encoder always emits a leading cache byte of zero; the next four
        // bytes prime the code register.
        for _ in 0..5 {
            d.code = (d.code << 8) | u32::from(d.next_byte());
        }
        d
    }

    /// Reading past the end yields zeros rather than failing here, so the hot
    /// loop stays branch-light; `overrun` lets the caller reject the stream.
    #[inline]
    fn next_byte(&mut self) -> u8 {
        let b = self.input.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// True if decoding consumed more bytes than the stream holds, i.e. the
    /// payload was truncated or forged.
    pub(crate) fn overrun(&self) -> bool {
        self.pos > self.input.len()
    }

    #[inline]
    pub(crate) fn decode(&mut self, model: &mut Bit) -> bool {
        let bound = (self.range >> PROB_BITS) * u32::from(model.p0);
        let bit = if self.code < bound {
            self.range = bound;
            false
        } else {
            self.code -= bound;
            self.range -= bound;
            true
        };
        model.update(bit);
        while self.range < TOP {
            self.range <<= 8;
            self.code = (self.code << 8) | u32::from(self.next_byte());
        }
        bit
    }

    #[inline]
    pub(crate) fn decode_direct(&mut self, nbits: u32) -> u64 {
        let mut value = 0u64;
        for _ in 0..nbits {
            self.range >>= 1;
            // A forged stream can leave code >= range; treating that as a one
            // bit and wrapping keeps decoding total, and the result is caught
            // by range checks on the reconstructed samples or by the CRC.
            let bit = self.code >= self.range;
            if bit {
                self.code = self.code.wrapping_sub(self.range);
            }
            value = (value << 1) | u64::from(bit);
            while self.range < TOP {
                self.range <<= 8;
                self.code = (self.code << 8) | u32::from(self.next_byte());
            }
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_mixed_bits() {
        let mut models = [Bit::default(); 4];
        let mut enc = Encoder::new(Vec::new());
        let pattern: Vec<(usize, bool, u64)> = (0..5000u64)
            .map(|i| {
                (
                    (i % 4) as usize,
                    i % 7 == 0,
                    i.wrapping_mul(2654435761) & 0x3FF,
                )
            })
            .collect();
        for &(m, b, d) in &pattern {
            enc.encode(&mut models[m], b);
            enc.encode_direct(d, 10);
        }
        let bytes = enc.finish();
        let mut models = [Bit::default(); 4];
        let mut dec = Decoder::new(&bytes);
        for &(m, b, d) in &pattern {
            assert_eq!(dec.decode(&mut models[m]), b);
            assert_eq!(dec.decode_direct(10), d);
        }
        assert!(!dec.overrun());
    }
}
