//! A folder of PNG/JPEG images, searched recursively (CelebA, LSUN exports, your own photos),
//! decoded in parallel, each center-cropped and resized to the model's size.
//!
//! NOTE: burn-dataset's `ImageFolderDataset` is not used: it wants one sub-folder per class,
//! keeps images at their stored size (no crop/resize), decodes lazily on every access, and its
//! crate pulls in SQLite. Diffusion training wants a flat, label-free, fixed-size tensor
//! source, decoded once.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use image::ImageReader;

use crate::preprocess::{fit_image, parallel_map};
use crate::{DataError, Dataset, LoadOptions, LoadReport, SkippedFile};

/// File extensions read as images (case-insensitive); the content decides the decoder.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Lists image files under `dir`, recursively and following symbolic links (each directory is
/// visited once, so link cycles end); returns them sorted, and the count of other files.
pub(crate) fn list_images(dir: &Path) -> Result<(Vec<PathBuf>, usize), DataError> {
    let mut images = Vec::new();
    let mut ignored = 0;
    let mut visited = HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let canonical = d.canonicalize().map_err(|e| DataError::io(&d, e))?;
        if !visited.insert(canonical) {
            continue;
        }
        for entry in std::fs::read_dir(&d).map_err(|e| DataError::io(&d, e))? {
            let entry = entry.map_err(|e| DataError::io(&d, e))?;
            let path = entry.path();
            let mut ty = entry.file_type().map_err(|e| DataError::io(&path, e))?;
            if ty.is_symlink() {
                ty = std::fs::metadata(&path)
                    .map_err(|e| DataError::io(&path, e))?
                    .file_type();
            }
            if ty.is_dir() {
                stack.push(path);
            } else if is_image(&path) {
                images.push(path);
            } else {
                ignored += 1;
            }
        }
    }
    images.sort();
    Ok((images, ignored))
}

/// Decodes one file and fits it to the options' channels and size.
pub(crate) fn decode(path: &Path, opts: &LoadOptions) -> Result<(Vec<u8>, bool), DataError> {
    let img = ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?
        .decode()
        .map_err(|source| DataError::Decode {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(fit_image(img, opts.channels, opts.size))
}

/// Loads every PNG/JPEG under `dir` (recursively, in sorted path order), decoded on all cores,
/// converted to `opts.channels` and center-cropped + resized to `opts.size`.
///
/// Files without a PNG/JPEG extension are not read and are counted in
/// [`LoadReport::ignored_non_images`]. With [`LoadOptions::skip_bad`], unreadable or corrupt
/// images are listed in [`LoadReport::skipped`] instead of failing the load.
///
/// # Errors
/// [`DataError::EmptyFolder`] if there is no image file; [`DataError::Decode`] or
/// [`DataError::Io`] naming the first bad file found (without `skip_bad`);
/// [`DataError::NoUsableImages`] if every image was bad (with `skip_bad`).
pub fn load_image_folder(dir: impl AsRef<Path>, opts: &LoadOptions) -> Result<Dataset, DataError> {
    opts.validate()?;
    let dir = dir.as_ref();
    let (files, ignored) = list_images(dir)?;
    if files.is_empty() {
        return Err(DataError::EmptyFolder {
            path: dir.to_path_buf(),
        });
    }
    let results = parallel_map(files.len(), !opts.skip_bad, |i| decode(&files[i], opts));
    let image_len = opts.channels * opts.size.height * opts.size.width;
    let mut data = Vec::with_capacity(files.len() * image_len);
    let mut report = LoadReport {
        ignored_non_images: ignored,
        ..LoadReport::default()
    };
    let mut first_error = None;
    for (path, result) in files.iter().zip(results) {
        match result {
            Some(Ok((img, resized))) => {
                report.resized |= resized;
                data.extend_from_slice(&img);
            }
            Some(Err(e)) if opts.skip_bad => report.skipped.push(SkippedFile {
                path: path.clone(),
                reason: e.to_string(),
            }),
            Some(Err(e)) => {
                first_error = Some(e);
                break;
            }
            // Only after an error without skip_bad: workers stopped taking files.
            None => {}
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let n = data.len() / image_len;
    if n == 0 {
        let first = &report.skipped[0];
        return Err(DataError::NoUsableImages {
            path: dir.to_path_buf(),
            skipped: report.skipped.len(),
            first: format!("{}: {}", first.path.display(), first.reason),
        });
    }
    let ds = Dataset::from_raw(data, n, opts.channels, opts.size.height, opts.size.width)?;
    Ok(ds.with_report(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_are_case_insensitive() {
        assert!(is_image(Path::new("a/b.PNG")));
        assert!(is_image(Path::new("b.jpeg")));
        assert!(is_image(Path::new("b.Jpg")));
        assert!(!is_image(Path::new("b.gif")));
        assert!(!is_image(Path::new("README")));
    }
}
