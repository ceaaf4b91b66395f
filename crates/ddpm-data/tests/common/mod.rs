//! Test helpers: a self-removing temporary directory and writers for small IDX, CIFAR-10 and
//! image files, generated at test time instead of committed.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use ddpm_data::CIFAR10_RECORD_LEN;

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ddpm-data-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover temp dir must not fail a test that passed.
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("could not remove {}: {e}", self.0.display());
        }
    }
}

/// IDX image bytes: magic 0x803, n, rows, cols, then pixel `k` of image `i` = `(i + k) % 256`.
pub fn idx_bytes(n: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 3];
    for d in [n, rows, cols] {
        v.extend_from_slice(&d.to_be_bytes());
    }
    let len = (rows * cols) as usize;
    for i in 0..n as usize {
        v.extend((0..len).map(|k| ((i + k) % 256) as u8));
    }
    v
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// CIFAR-10 records: label `i % 10`, red plane all `i % 256`, green 100, blue 200.
pub fn cifar_bytes(n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n * CIFAR10_RECORD_LEN);
    for i in 0..n {
        v.push((i % 10) as u8);
        v.extend(std::iter::repeat_n((i % 256) as u8, 1024));
        v.extend(std::iter::repeat_n(100u8, 1024));
        v.extend(std::iter::repeat_n(200u8, 1024));
    }
    v
}

/// An RGB PNG of `w × h` filled with `rgb`.
pub fn write_png(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    image::RgbImage::from_pixel(w, h, image::Rgb(rgb))
        .save(path)
        .unwrap();
}
