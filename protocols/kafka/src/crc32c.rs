//! CRC-32C (Castagnoli), the checksum of Kafka record batches: software, slicing-by-8, tables
//! built at compile time (wasm32 has no CRC instruction).

const POLY: u32 = 0x82f6_3b78; // reflected 0x1EDC6F41

// Only evaluated at compile time (into `TABLES`): an index out of range fails the build, it
// cannot panic at run time.
#[allow(clippy::indexing_slicing)]
const fn tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut s = 1;
        while s < 8 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            s += 1;
        }
        i += 1;
    }
    t
}

static TABLES: [[u32; 256]; 8] = tables();

/// The table entry for a byte (the index is a `u8`, always in range).
fn at(table: &[u32; 256], byte: u32) -> u32 {
    table.get((byte & 0xff) as usize).copied().unwrap_or(0)
}

/// CRC-32C of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    let [t0, t1, t2, t3, t4, t5, t6, t7] = &TABLES;
    let mut crc = !0u32;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut lo = [0u8; 4];
        let mut hi = [0u8; 4];
        lo.copy_from_slice(c.get(..4).unwrap_or(&[0; 4]));
        hi.copy_from_slice(c.get(4..).unwrap_or(&[0; 4]));
        let a = u32::from_le_bytes(lo) ^ crc;
        let b = u32::from_le_bytes(hi);
        crc = at(t7, a)
            ^ at(t6, a >> 8)
            ^ at(t5, a >> 16)
            ^ at(t4, a >> 24)
            ^ at(t3, b)
            ^ at(t2, b >> 8)
            ^ at(t1, b >> 16)
            ^ at(t0, b >> 24);
    }
    for &byte in chunks.remainder() {
        crc = (crc >> 8) ^ at(t0, (crc ^ u32::from(byte)) & 0xff);
    }
    !crc
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::crc32c;

    #[test]
    fn check_values() {
        // The standard check value of CRC-32C, and RFC 3720's test vectors.
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62a8_ab43);
        let inc: Vec<u8> = (0u8..32).collect();
        assert_eq!(crc32c(&inc), 0x46dd_794e);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn slicing_matches_bytewise_at_every_length() {
        fn bytewise(data: &[u8]) -> u32 {
            let mut crc = !0u32;
            for &b in data {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 != 0 {
                        (crc >> 1) ^ super::POLY
                    } else {
                        crc >> 1
                    };
                }
            }
            !crc
        }
        let data: Vec<u8> = (0..100u32).map(|i| (i * 37 + 11) as u8).collect();
        for n in 0..data.len() {
            assert_eq!(crc32c(&data[..n]), bytewise(&data[..n]), "length {n}");
        }
    }
}
