//! Loading every source from small files generated at test time: IDX (raw and `.gz`),
//! CIFAR-10 batches, image folders; and every error names the file at fault.

mod common;

use common::{TempDir, cifar_bytes, gzip, idx_bytes, write_png};
use ddpm_data::{
    CIFAR10_RECORDS_PER_BATCH, DataError, DataSpec, ImageSize, LoadOptions, Split,
    load_cifar10_batch, load_idx_images,
};

fn opts(channels: usize, side: usize) -> LoadOptions {
    LoadOptions::new(channels, ImageSize::square(side))
}

#[test]
fn idx_raw_and_gz_load_the_same_images() {
    let dir = TempDir::new("idx");
    let raw = idx_bytes(3, 4, 4);
    std::fs::write(dir.join("raw.idx"), &raw).unwrap();
    // The gzip magic, not the name, selects decompression.
    std::fs::write(dir.join("packed.bin"), gzip(&raw)).unwrap();
    let a = load_idx_images(dir.join("raw.idx"), &opts(1, 4)).unwrap();
    let b = load_idx_images(dir.join("packed.bin"), &opts(1, 4)).unwrap();
    assert_eq!(a, b);
    assert_eq!((a.len(), a.channels(), a.height(), a.width()), (3, 1, 4, 4));
    assert_eq!(a.image(1)[..3], [1, 2, 3]);
    assert!(!a.report().resized);
}

#[test]
fn mnist_dir_picks_the_split_and_prefers_gz() {
    let dir = TempDir::new("mnist");
    std::fs::write(
        dir.join("train-images-idx3-ubyte.gz"),
        gzip(&idx_bytes(5, 28, 28)),
    )
    .unwrap();
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), idx_bytes(2, 28, 28)).unwrap();
    let spec: DataSpec = format!("mnist:{}", dir.path().display()).parse().unwrap();
    assert_eq!(spec.open(&opts(1, 28)).unwrap().len(), 5);
    let test = spec.open(&opts(1, 28).with_split(Split::Test)).unwrap();
    assert_eq!(test.len(), 2);
    // Gray to RGB repeats the plane; 28 → 32 resizes.
    let rgb = spec.open(&opts(3, 32)).unwrap();
    assert_eq!((rgb.channels(), rgb.height(), rgb.width()), (3, 32, 32));
    let img = rgb.image(0);
    assert_eq!(img[..1024], img[1024..2048]);
    assert!(rgb.report().resized);
}

#[test]
fn mnist_dir_without_files_lists_candidates() {
    let dir = TempDir::new("mnist-missing");
    let err = ddpm_data::load_mnist_dir(dir.path(), &opts(1, 28)).unwrap_err();
    assert!(matches!(err, DataError::MissingFile { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("train-images-idx3-ubyte.gz")
            && msg.contains(&dir.path().display().to_string()),
        "{msg}"
    );
}

#[test]
fn wrong_magic_truncated_and_corrupt_gz_name_the_file() {
    let dir = TempDir::new("idx-bad");
    let mut labels = idx_bytes(2, 2, 2);
    labels[3] = 1;
    std::fs::write(dir.join("labels"), &labels).unwrap();
    let err = load_idx_images(dir.join("labels"), &opts(1, 2)).unwrap_err();
    assert!(
        matches!(err, DataError::BadMagic { found: 0x801, .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&dir.join("labels").display().to_string())
    );

    let good = idx_bytes(4, 8, 8);
    std::fs::write(dir.join("short.gz"), gzip(&good[..good.len() - 9])).unwrap();
    let err = load_idx_images(dir.join("short.gz"), &opts(1, 8)).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Truncated {
                expected: 272,
                actual: 263,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("short.gz"), "{err}");

    let gz = gzip(&good);
    std::fs::write(dir.join("cut.gz"), &gz[..gz.len() / 2]).unwrap();
    let err = load_idx_images(dir.join("cut.gz"), &opts(1, 8)).unwrap_err();
    assert!(matches!(err, DataError::Decompress { .. }), "{err}");
    assert!(err.to_string().contains("cut.gz"), "{err}");

    let err = load_idx_images(dir.join("absent"), &opts(1, 8)).unwrap_err();
    assert!(
        matches!(err, DataError::Io { .. }) && err.to_string().contains("absent"),
        "{err}"
    );
}

#[test]
fn cifar_test_split_in_the_archive_subfolder() {
    let dir = TempDir::new("cifar");
    let sub = dir.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(
        sub.join("test_batch.bin"),
        cifar_bytes(CIFAR10_RECORDS_PER_BATCH),
    )
    .unwrap();
    let spec = DataSpec::Cifar10(dir.path().to_path_buf());
    let ds = spec.open(&opts(3, 32).with_split(Split::Test)).unwrap();
    assert_eq!(
        (ds.len(), ds.channels(), ds.height(), ds.width()),
        (10_000, 3, 32, 32)
    );
    let img = ds.image(7);
    assert_eq!((img[0], img[1024], img[2048]), (7, 100, 200));
    // Gray: Rec. 709 luma of a flat colour is flat.
    let gray = spec.open(&opts(1, 16).with_split(Split::Test)).unwrap();
    assert_eq!((gray.channels(), gray.height()), (1, 16));
    assert!(gray.image(0).iter().all(|&v| v == gray.image(0)[0]));
    // The train split is missing: the error lists the files looked for.
    let err = spec.open(&opts(3, 32)).unwrap_err();
    assert!(err.to_string().contains("data_batch_1.bin"), "{err}");
}

#[test]
fn cifar_truncated_batch_is_an_error_naming_it() {
    let dir = TempDir::new("cifar-bad");
    let mut bytes = cifar_bytes(CIFAR10_RECORDS_PER_BATCH);
    bytes.truncate(bytes.len() - 3073);
    std::fs::write(dir.join("test_batch.bin"), &bytes).unwrap();
    let err = DataSpec::Cifar10(dir.path().to_path_buf())
        .open(&opts(3, 32).with_split(Split::Test))
        .unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Truncated {
                expected: 30_730_000,
                actual: 30_726_927,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("test_batch.bin"), "{err}");
    // A single small batch file of whole records loads; a partial record does not.
    std::fs::write(dir.join("small.bin"), cifar_bytes(3)).unwrap();
    assert_eq!(
        load_cifar10_batch(dir.join("small.bin"), &opts(3, 32))
            .unwrap()
            .len(),
        3
    );
    std::fs::write(dir.join("cut.bin"), &cifar_bytes(3)[..5000]).unwrap();
    let err = load_cifar10_batch(dir.join("cut.bin"), &opts(3, 32)).unwrap_err();
    assert!(
        matches!(err, DataError::Truncated { .. }) && err.to_string().contains("cut.bin"),
        "{err}"
    );
}

#[test]
fn image_folder_recursive_crop_resize_and_channels() {
    let dir = TempDir::new("folder");
    // 40×20 landscape: left quarter red, the rest blue; center crop keeps 20×20 in the middle.
    let mut img = image::RgbImage::from_pixel(40, 20, image::Rgb([0, 0, 255]));
    for y in 0..20 {
        for x in 0..10 {
            img.put_pixel(x, y, image::Rgb([255, 0, 0]));
        }
    }
    img.save(dir.join("a.png")).unwrap();
    write_png(&dir.join("sub/deeper/b.PNG"), 8, 8, [10, 20, 30]);
    image::RgbImage::from_pixel(16, 16, image::Rgb([0, 255, 0]))
        .save(dir.join("sub/c.jpg"))
        .unwrap();
    std::fs::write(dir.join("notes.txt"), "not an image").unwrap();
    let ds = DataSpec::ImageFolder(dir.path().to_path_buf())
        .open(&opts(3, 4))
        .unwrap();
    assert_eq!(
        (ds.len(), ds.channels(), ds.height(), ds.width()),
        (3, 3, 4, 4)
    );
    assert_eq!(ds.report().ignored_non_images, 1);
    assert!(ds.report().skipped.is_empty());
    // Sorted paths: a.png, sub/c.jpg, sub/deeper/b.PNG. The crop removed all red from a.png.
    let a = ds.image(0);
    assert!(
        a[..16].iter().all(|&r| r == 0) && a[32..].iter().all(|&b| b == 255),
        "{a:?}"
    );
    assert!(ds.image(1)[16..32].iter().all(|&g| g > 240)); // JPEG is lossy
    assert_eq!(ds.image(2)[..16], [10; 16]);
    let gray = ddpm_data::load_image_folder(dir.path(), &opts(1, 4)).unwrap();
    assert_eq!(gray.channels(), 1);
}

#[test]
fn corrupt_image_is_named_or_skipped_and_counted() {
    let dir = TempDir::new("folder-bad");
    write_png(&dir.join("good1.png"), 4, 4, [1, 2, 3]);
    write_png(&dir.join("good2.png"), 4, 4, [4, 5, 6]);
    std::fs::write(dir.join("broken.png"), b"\x89PNG\r\n\x1a\n garbage").unwrap();
    let err = ddpm_data::load_image_folder(dir.path(), &opts(3, 4)).unwrap_err();
    assert!(matches!(err, DataError::Decode { .. }), "{err}");
    assert!(err.to_string().contains("broken.png"), "{err}");

    let ds = ddpm_data::load_image_folder(dir.path(), &opts(3, 4).with_skip_bad(true)).unwrap();
    assert_eq!(ds.len(), 2);
    assert_eq!(ds.report().loaded, 2);
    assert_eq!(ds.report().skipped.len(), 1);
    assert!(ds.report().skipped[0].path.ends_with("broken.png"));
    assert!(!ds.report().skipped[0].reason.is_empty());
}

#[test]
fn all_bad_with_skip_is_still_an_error() {
    let dir = TempDir::new("folder-allbad");
    std::fs::write(dir.join("x.jpg"), b"nope").unwrap();
    let err =
        ddpm_data::load_image_folder(dir.path(), &opts(1, 4).with_skip_bad(true)).unwrap_err();
    assert!(
        matches!(err, DataError::NoUsableImages { skipped: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("x.jpg"), "{err}");
}

#[test]
fn empty_or_missing_folder_is_an_error_naming_it() {
    let dir = TempDir::new("folder-empty");
    std::fs::create_dir_all(dir.join("nested/deeper")).unwrap();
    std::fs::write(dir.join("nested/readme.md"), "hi").unwrap();
    let err = ddpm_data::load_image_folder(dir.path(), &opts(3, 8)).unwrap_err();
    assert!(matches!(err, DataError::EmptyFolder { .. }), "{err}");
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
    let err = ddpm_data::load_image_folder(dir.join("missing"), &opts(3, 8)).unwrap_err();
    assert!(
        matches!(err, DataError::Io { .. }) && err.to_string().contains("missing"),
        "{err}"
    );
}

#[test]
fn bad_options_are_rejected_before_reading() {
    let err = ddpm_data::load_image_folder("/nonexistent", &opts(4, 8)).unwrap_err();
    assert!(
        matches!(err, DataError::UnsupportedChannels { channels: 4 }),
        "{err}"
    );
}
