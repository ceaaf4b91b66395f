//! The framing of a safetensors file, checked before burn-store reads it, so that a file cut
//! short by an interrupted download is reported as truncated (with both sizes) instead of as
//! "incomplete metadata".
//!
//! Layout (safetensors' spec): an 8-byte little-endian header length `n`, `n` bytes of JSON
//! `{"name": {"dtype", "shape", "data_offsets": [begin, end]}, ..., "__metadata__": {...}}`, then
//! the tensor data, whose offsets are relative to the end of the header.

use std::io::Read;
use std::path::Path;

use serde_json::Value;

use crate::ImportError;

/// safetensors' own limit on the header length (the `safetensors` crate's `MAX_HEADER_SIZE`).
const MAX_HEADER_LEN: u64 = 100_000_000;

/// Checks that `path` is a complete safetensors file: an 8-byte header length, a JSON object
/// header of that length, and as many data bytes as the header's largest `data_offsets` end.
///
/// # Errors
///
/// [`ImportError::Truncated`] when the file is shorter than its header says (naming both
/// sizes), [`ImportError::InvalidSafetensors`] when it is not a safetensors file at all (bad
/// header length, header not a JSON object, bytes after the last tensor),
/// [`ImportError::Io`] when it cannot be read.
pub fn check_safetensors_file(path: impl AsRef<Path>) -> Result<(), ImportError> {
    let path = path.as_ref();
    let io = |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let invalid = |reason: String| ImportError::InvalidSafetensors {
        path: path.to_path_buf(),
        reason,
    };
    let truncated = |expected: u64, actual: u64| ImportError::Truncated {
        path: path.to_path_buf(),
        expected,
        actual,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let actual = file.metadata().map_err(io)?.len();
    if actual < 8 {
        return Err(truncated(8, actual));
    }
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(io)?;
    let n = u64::from_le_bytes(len);
    if n > MAX_HEADER_LEN {
        return Err(invalid(format!(
            "its first 8 bytes give a header length of {n} bytes (safetensors allows at most \
             {MAX_HEADER_LEN})"
        )));
    }
    if 8 + n > actual {
        return Err(truncated(8 + n, actual));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header).map_err(io)?;
    let header: Value = serde_json::from_slice(&header)
        .map_err(|e| invalid(format!("its header is not JSON ({e})")))?;
    let Value::Object(entries) = header else {
        return Err(invalid("its header is not a JSON object".into()));
    };
    let mut data_len = 0u64;
    for (name, entry) in &entries {
        if name == "__metadata__" {
            continue;
        }
        let end = entry
            .get("data_offsets")
            .and_then(Value::as_array)
            .filter(|o| o.len() == 2)
            .and_then(|o| Some((o[0].as_u64()?, o[1].as_u64()?)))
            .filter(|(begin, end)| begin <= end)
            .map(|(_, end)| end)
            .ok_or_else(|| {
                invalid(format!(
                    "tensor `{name}` has no valid `data_offsets` [begin, end] in the header"
                ))
            })?;
        data_len = data_len.max(end);
    }
    let expected = (8 + n).saturating_add(data_len);
    if actual < expected {
        return Err(truncated(expected, actual));
    }
    if actual > expected {
        return Err(invalid(format!(
            "it has {} bytes after the last tensor (the header describes {expected} bytes, the \
             file has {actual})",
            actual - expected
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ddpm-unet-st-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// A safetensors file with one F32 tensor of `values` floats.
    fn safetensors(values: usize) -> Vec<u8> {
        let header = format!(
            r#"{{"w":{{"dtype":"F32","shape":[{values}],"data_offsets":[0,{}]}}}}"#,
            4 * values
        );
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        bytes.extend(vec![0u8; 4 * values]);
        bytes
    }

    #[test]
    fn complete_files_pass_and_cut_files_are_truncated() {
        let whole = safetensors(10);
        check_safetensors_file(file("whole.safetensors", &whole)).unwrap();
        let n = whole.len() as u64;
        let header_end = 8 + u64::from_le_bytes(whole[..8].try_into().unwrap());
        for cut in [n - 1, n / 2, 12, 3, 0] {
            let path = file("cut.safetensors", &whole[..cut as usize]);
            match check_safetensors_file(&path) {
                Err(ImportError::Truncated {
                    expected, actual, ..
                }) => {
                    assert_eq!(actual, cut);
                    assert!(expected > cut, "{expected} > {cut}");
                    if cut >= header_end {
                        assert_eq!(expected, n);
                    }
                }
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
        let e = check_safetensors_file(file("cut.safetensors", &whole[..n as usize - 1]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cut.safetensors is truncated"), "{e}");
        assert!(e.contains(&format!("needs at least {n}")), "{e}");
    }

    #[test]
    fn other_files_are_not_safetensors() {
        let mut long = safetensors(2);
        long.push(0);
        let png = b"\x89PNG\r\n\x1a\n0000000000000000";
        let mut array = 2u64.to_le_bytes().to_vec();
        array.extend(b"[]");
        for (name, bytes, what) in [
            ("long", &long[..], "after the last tensor"),
            ("png", &png[..], "header length"),
            ("array", &array[..], "not a JSON object"),
        ] {
            let e = check_safetensors_file(file(name, bytes)).unwrap_err();
            assert!(
                matches!(e, ImportError::InvalidSafetensors { .. }),
                "{name}: {e}"
            );
            assert!(e.to_string().contains(what), "{name}: {e}");
            assert!(e.to_string().contains(name), "{name}: {e}");
        }
    }
}
