//! Content fingerprints: of the training data (saved in every checkpoint, so `--resume` with
//! other data is refused) and of the checkpoint files (so a truncated or damaged file is named
//! before its bytes are decoded).
//!
//! The hash is a fast non-cryptographic 64-bit hash over 8-byte words (an xxHash-style round);
//! it detects accidental change — other files, truncation, bit rot — not deliberate collisions.

use std::io::Read;
use std::path::Path;

use ddpm_data::Dataset;
use serde::{Deserialize, Serialize};

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;

/// Hashes one block into `h` (words, then the tail bytes, then the length).
fn hash_block(mut h: u64, bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        h = (h ^ w.wrapping_mul(P2)).rotate_left(31).wrapping_mul(P1);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b).wrapping_mul(P3))
            .rotate_left(11)
            .wrapping_mul(P1);
    }
    h ^= bytes.len() as u64;
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^ (h >> 29)
}

/// The hash of a byte slice.
pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    hash_block(P3, bytes)
}

/// The hash of a sequence of byte slices, one slice at a time: `hash_more(hash_more(h, a), b)`.
pub(crate) fn hash_more(h: u64, bytes: &[u8]) -> u64 {
    hash_block(h ^ P3, bytes)
}

/// The length and hash of a file, read in 1 MiB blocks (the same blocks every time, so the
/// hash only depends on the contents).
pub(crate) fn hash_file(path: &Path) -> std::io::Result<(u64, u64)> {
    const BLOCK: usize = 1 << 20;
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; BLOCK];
    let (mut h, mut len) = (P3, 0u64);
    loop {
        // Fill the whole block (a short read is not the end of the file).
        let mut filled = 0;
        while filled < BLOCK {
            match file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            return Ok((len, h));
        }
        h = hash_block(h, &buf[..filled]);
        len += filled as u64;
        if filled < BLOCK {
            return Ok((len, h));
        }
    }
}

/// What identifies a training set: its size, image shape and a hash of every pixel, in order.
/// Saved in each checkpoint's `state.json`; a resumed run must be given data with the same
/// fingerprint (other images, another order or a different crop would silently change what
/// the data position in the checkpoint points at).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DataFingerprint {
    /// Number of images.
    pub len: usize,
    /// Channels per image.
    pub channels: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// 64-bit hash of all images' bytes (N × C × H × W, `u8`), as 16 hex digits.
    #[serde(with = "hex_u64")]
    pub hash: u64,
}

impl DataFingerprint {
    /// The fingerprint of `dataset` (one pass over its bytes in memory: milliseconds for
    /// MNIST or CIFAR-10).
    pub fn of(dataset: &Dataset) -> Self {
        Self {
            len: dataset.len(),
            channels: dataset.channels(),
            height: dataset.height(),
            width: dataset.width(),
            hash: hash_bytes(dataset.as_bytes()),
        }
    }
}

impl std::fmt::Display for DataFingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} images of {}×{}×{} (content hash {:016x})",
            self.len, self.channels, self.height, self.width, self.hash
        )
    }
}

/// A u64 as 16 hex digits in JSON (JSON readers that use doubles would round a number).
pub(crate) mod hex_u64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:016x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = String::deserialize(d)?;
        u64::from_str_radix(&s, 16).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_sees_every_byte_and_the_order() {
        let a: Vec<u8> = (0..1000).map(|i| (i * 7) as u8).collect();
        let mut b = a.clone();
        b[999] ^= 1;
        let mut c = a.clone();
        c.swap(0, 8);
        assert_ne!(hash_bytes(&a), hash_bytes(&b));
        assert_ne!(hash_bytes(&a), hash_bytes(&c));
        assert_ne!(hash_bytes(&a), hash_bytes(&a[..999]));
        assert_eq!(hash_bytes(&a), hash_bytes(&a.clone()));
    }

    #[test]
    fn file_hash_equals_the_block_hash_and_sees_truncation() {
        let dir = std::env::temp_dir().join(format!("ddpm-train-hash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f.bin");
        let bytes: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(hash_file(&p).unwrap(), (5000, hash_bytes(&bytes)));
        std::fs::write(&p, &bytes[..2500]).unwrap();
        assert_ne!(hash_file(&p).unwrap().1, hash_bytes(&bytes));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn fingerprint_round_trips_as_json() {
        let ds = Dataset::from_raw((0..32).collect(), 2, 1, 4, 4).unwrap();
        let fp = DataFingerprint::of(&ds);
        let json = serde_json::to_string(&fp).unwrap();
        assert!(json.contains(&format!("\"{:016x}\"", fp.hash)), "{json}");
        assert_eq!(serde_json::from_str::<DataFingerprint>(&json).unwrap(), fp);
        assert!(fp.to_string().starts_with("2 images of 1×4×4"), "{fp}");
    }
}
