//! Dataset loaders against independent references: `.npz` files written by numpy
//! (`tests/fixtures/make_npz.py`, pixel values given by formulas recomputed here), NPY bytes
//! assembled by hand in this file, images with known pixels, a word-level tokenizer whose ids
//! are worked out by hand, and ROC AUC by counting pairs.

use bastion_actors::auc::{binary_auc, classification_auc, macro_ovr_auc};
use bastion_actors::data::npz::write_medmnist_npz;
use bastion_actors::data::{
    cancer_tiles, load_dataset, Batch, ClassSpec, DataError, DataExpectation, DataSource, ImageSet,
    Records, Split, TokenSet,
};
use bastion_models::tokenizer::{train_byte_level_bpe, TextTokenizer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A fresh directory for one test (no tempfile dependency).
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bastion-datasets-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn images(classes: usize, size: i64, channels: i64) -> DataExpectation {
    DataExpectation::Images {
        classes: ClassSpec::Count(classes),
        image_size: size,
        channels,
    }
}

fn named(classes: &[&str], size: i64, channels: i64) -> DataExpectation {
    DataExpectation::Images {
        classes: ClassSpec::Names(classes.iter().map(|c| c.to_string()).collect()),
        image_size: size,
        channels,
    }
}

fn npz(path: &Path, split: Split) -> DataSource {
    DataSource::MedmnistNpz {
        path: path.to_path_buf(),
        split,
    }
}

fn image_set(r: Records) -> ImageSet {
    match r {
        Records::Images(s) => s,
        Records::Tokens(_) => panic!("expected images"),
    }
}

fn token_set(r: Records) -> TokenSet {
    match r {
        Records::Tokens(s) => s,
        Records::Images(_) => panic!("expected tokens"),
    }
}

fn floats(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(&t.to_kind(Kind::Float).reshape([-1])).unwrap()
}

fn longs(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(&t.to_kind(Kind::Int64).reshape([-1])).unwrap()
}

/// The error's message, after checking that it mentions every one of `needles`.
fn refused(result: Result<Records, DataError>, needles: &[&str]) -> String {
    let msg = match result {
        Ok(r) => panic!(
            "accepted ({} records); expected a refusal naming {needles:?}",
            r.len()
        ),
        Err(e) => e.to_string(),
    };
    for n in needles {
        assert!(msg.contains(n), "{msg:?} does not mention {n:?}");
    }
    msg
}

// ---------------------------------------------------------------------------------------
// Hand-assembled NPY and NPZ (independent of the reader).

fn npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let dims = if shape.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}\n");
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn write_zip(path: &Path, entries: &[(&str, Vec<u8>)]) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, bytes) in entries {
        z.start_file(*name, zip::write::FileOptions::default())
            .unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap();
}

fn gray_pixel(n: usize, h: usize, w: usize) -> u8 {
    ((n * 7 + h * 3 + w * 5) % 256) as u8
}

fn rgb_pixel(n: usize, h: usize, w: usize, c: usize) -> u8 {
    ((n * 11 + h * 5 + w * 3 + c * 50) % 256) as u8
}

// ---------------------------------------------------------------------------------------
// MedMNIST .npz

#[test]
fn breastmnist_like_file_written_by_numpy() {
    let path = fixture("breast.npz");
    let set = image_set(load_dataset(&npz(&path, Split::Train), &images(2, 28, 1)).unwrap());
    assert_eq!(set.images.size(), vec![6, 1, 28, 28]);
    assert_eq!(set.images.kind(), Kind::Float);
    let got = floats(&set.images);
    for n in 0..6 {
        for h in 0..28 {
            for w in 0..28 {
                let want = gray_pixel(n, h, w) as f32 / 255.0;
                assert_eq!(got[(n * 28 + h) * 28 + w], want, "n {n} h {h} w {w}");
            }
        }
    }
    assert_eq!(longs(&set.labels), vec![0, 1, 0, 1, 0, 1]);
    let val = image_set(load_dataset(&npz(&path, Split::Val), &images(2, 28, 1)).unwrap());
    assert_eq!(longs(&val.labels), vec![1, 0]);
    let test = image_set(load_dataset(&npz(&path, Split::Test), &images(2, 28, 1)).unwrap());
    assert_eq!(longs(&test.labels), vec![0, 1, 1]);
    // The test split's first image is row 0 of the formula too.
    assert_eq!(
        floats(&test.images)[28 + 1],
        gray_pixel(0, 1, 1) as f32 / 255.0
    );
}

#[test]
fn pathmnist_like_file_written_by_numpy() {
    let path = fixture("path.npz");
    let set = image_set(load_dataset(&npz(&path, Split::Train), &images(9, 28, 3)).unwrap());
    assert_eq!(set.images.size(), vec![9, 3, 28, 28]);
    let got = floats(&set.images);
    for n in 0..9 {
        for c in 0..3 {
            for h in 0..28 {
                for w in 0..28 {
                    let want = rgb_pixel(n, h, w, c) as f32 / 255.0;
                    assert_eq!(got[((n * 3 + c) * 28 + h) * 28 + w], want);
                }
            }
        }
    }
    assert_eq!(longs(&set.labels), vec![8, 7, 6, 5, 4, 3, 2, 1, 0]);
    // Label 8 with 8 classes is out of range: refused naming the row.
    refused(
        load_dataset(&npz(&path, Split::Train), &images(8, 28, 3)),
        &["path.npz", "train_labels row 0", "label 8"],
    );
}

#[test]
fn npy_format_versions_2_and_3_and_big_endian_labels() {
    let set = image_set(
        load_dataset(
            &npz(&fixture("versions.npz"), Split::Train),
            &images(2, 28, 1),
        )
        .unwrap(),
    );
    assert_eq!(longs(&set.labels), vec![1, 0, 1, 1]);
    assert_eq!(
        floats(&set.images)[3 * 784 + 5],
        gray_pixel(3, 0, 5) as f32 / 255.0
    );
}

#[test]
fn numpy_files_that_do_not_fit_are_refused() {
    refused(
        load_dataset(
            &npz(&fixture("fortran.npz"), Split::Train),
            &images(2, 28, 1),
        ),
        &["fortran.npz", "Fortran order"],
    );
    refused(
        load_dataset(
            &npz(&fixture("float_images.npz"), Split::Train),
            &images(2, 28, 1),
        ),
        &["float_images.npz", "train_images", "<f4", "uint8"],
    );
    // Grayscale data for an RGB job is the wrong dataset.
    refused(
        load_dataset(
            &npz(&fixture("breast.npz"), Split::Train),
            &images(2, 28, 3),
        ),
        &["breast.npz", "1 channel", "3"],
    );
    refused(
        load_dataset(&npz(&fixture("path.npz"), Split::Test), &images(9, 28, 3)),
        &["path.npz", "test_images", "train_images"],
    );
}

#[test]
fn hand_built_npz_cases() {
    let dir = scratch("npz-cases");
    let img = |n: usize| npy("|u1", &[n, 4, 4], &vec![200u8; n * 16]);
    let lab = |v: &[u8]| npy("|u1", &[v.len(), 1], v);
    let expect = images(9, 4, 1);
    let load = |name: &str, entries: &[(&str, Vec<u8>)], expect: &DataExpectation| {
        let path = dir.join(name);
        write_zip(&path, entries);
        load_dataset(&npz(&path, Split::Train), expect)
    };

    // Negative control: a valid file loads.
    let ok = image_set(
        load(
            "ok.npz",
            &[
                ("train_images.npy", img(3)),
                ("train_labels.npy", lab(&[0, 8, 3])),
            ],
            &expect,
        )
        .unwrap(),
    );
    assert_eq!(longs(&ok.labels), vec![0, 8, 3]);
    // Labels `(N,)` of `<i4` are accepted too.
    let i4: Vec<u8> = [2i32, 5].iter().flat_map(|v| v.to_le_bytes()).collect();
    let ok = image_set(
        load(
            "i4.npz",
            &[
                ("train_images.npy", img(2)),
                ("train_labels.npy", npy("<i4", &[2], &i4)),
            ],
            &expect,
        )
        .unwrap(),
    );
    assert_eq!(longs(&ok.labels), vec![2, 5]);

    refused(
        load(
            "label9.npz",
            &[
                ("train_images.npy", img(3)),
                ("train_labels.npy", lab(&[0, 9, 3])),
            ],
            &expect,
        ),
        &["label9.npz", "train_labels row 1", "label 9", "9 classes"],
    );
    let neg: Vec<u8> = [1i64, -1].iter().flat_map(|v| v.to_le_bytes()).collect();
    refused(
        load(
            "negative.npz",
            &[
                ("train_images.npy", img(2)),
                ("train_labels.npy", npy("<i8", &[2, 1], &neg)),
            ],
            &expect,
        ),
        &["negative.npz", "row 1", "label -1"],
    );
    refused(
        load(
            "mismatch.npz",
            &[
                ("train_images.npy", img(3)),
                ("train_labels.npy", lab(&[0, 1])),
            ],
            &expect,
        ),
        &["mismatch.npz", "3 images", "2 labels"],
    );
    refused(
        load("missing.npz", &[("train_images.npy", img(3))], &expect),
        &["missing.npz", "train_labels"],
    );
    refused(
        load(
            "empty.npz",
            &[("train_images.npy", img(0)), ("train_labels.npy", lab(&[]))],
            &expect,
        ),
        &["empty.npz", "empty"],
    );
    refused(
        load(
            "floatlabels.npz",
            &[
                ("train_images.npy", img(1)),
                ("train_labels.npy", npy("<f4", &[1, 1], &1f32.to_le_bytes())),
            ],
            &expect,
        ),
        &["floatlabels.npz", "train_labels", "<f4"],
    );
    refused(
        load(
            "multilabel.npz",
            &[
                ("train_images.npy", img(1)),
                ("train_labels.npy", npy("|u1", &[1, 14], &[0; 14])),
            ],
            &expect,
        ),
        &["multilabel.npz", "train_labels", "(N, 1)"],
    );
    // Fewer data bytes than the header's shape needs.
    let mut short = img(3);
    short.truncate(short.len() - 1);
    refused(
        load(
            "short.npz",
            &[
                ("train_images.npy", short),
                ("train_labels.npy", lab(&[0, 1, 2])),
            ],
            &expect,
        ),
        &["short.npz", "train_images.npy", "48 data bytes", "holds 47"],
    );
    refused(
        load(
            "garbage.npz",
            &[
                ("train_images.npy", b"not numpy".to_vec()),
                ("train_labels.npy", lab(&[0])),
            ],
            &expect,
        ),
        &["garbage.npz", "train_images.npy", "NPY"],
    );
    // A truncated zip (the end of a numpy-written file cut off).
    let bytes = std::fs::read(fixture("breast.npz")).unwrap();
    let cut = dir.join("truncated.npz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    refused(
        load_dataset(&npz(&cut, Split::Train), &images(2, 28, 1)),
        &["truncated.npz", "zip"],
    );
    refused(
        load_dataset(
            &npz(&dir.join("absent.npz"), Split::Train),
            &images(2, 28, 1),
        ),
        &["absent.npz"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn npz_images_are_resized_with_the_folder_filter() {
    let dir = scratch("resize");
    // A constant image stays constant whatever the filter.
    let path = dir.join("const.npz");
    write_zip(
        &path,
        &[
            (
                "train_images.npy",
                npy("|u1", &[2, 28, 28], &[200u8; 2 * 784]),
            ),
            ("train_labels.npy", npy("|u1", &[2, 1], &[0, 1])),
        ],
    );
    let set = image_set(load_dataset(&npz(&path, Split::Train), &images(2, 20, 1)).unwrap());
    assert_eq!(set.images.size(), vec![2, 1, 20, 20]);
    assert!(floats(&set.images).iter().all(|&v| v == 200.0 / 255.0));

    // The same pixels through the image folder give the same resized tensor.
    let npz_set = image_set(
        load_dataset(
            &npz(&fixture("breast.npz"), Split::Train),
            &images(2, 14, 1),
        )
        .unwrap(),
    );
    let root = dir.join("folder");
    for n in 0..6usize {
        let class = root.join(if n % 2 == 0 { "a" } else { "b" });
        std::fs::create_dir_all(&class).unwrap();
        let img = image::GrayImage::from_fn(28, 28, |w, h| {
            image::Luma([gray_pixel(n, h as usize, w as usize)])
        });
        img.save(class.join(format!("{n}.png"))).unwrap();
    }
    let folder_set = image_set(
        load_dataset(&DataSource::ImageFolder { path: root }, &images(2, 14, 1)).unwrap(),
    );
    // The folder orders by class then file: a/0, a/2, a/4, b/1, b/3, b/5.
    let order = Tensor::from_slice(&[0i64, 2, 4, 1, 3, 5]);
    assert!(npz_set
        .images
        .index_select(0, &order)
        .equal(&folder_set.images));
    assert_eq!(longs(&folder_set.labels), vec![0, 0, 0, 1, 1, 1]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A Python with numpy, if this machine has one: `BASTION_TEST_PYTHON`, else `python3`.
fn numpy_python() -> Option<String> {
    let python = std::env::var("BASTION_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = std::process::Command::new(&python)
        .args(["-c", "import numpy"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    ok.then_some(python)
}

#[test]
fn our_writer_round_trips_and_numpy_reads_it() {
    let dir = scratch("writer");
    let path = dir.join("hospital.npz");
    let train = cancer_tiles(5, 16, 1);
    let test = cancer_tiles(3, 16, 2);
    write_medmnist_npz(&path, &[(Split::Train, &train), (Split::Test, &test)]).unwrap();
    for (split, set) in [(Split::Train, &train), (Split::Test, &test)] {
        let back = image_set(load_dataset(&npz(&path, split), &images(2, 16, 3)).unwrap());
        assert!(back.labels.equal(&set.labels));
        // uint8 quantization: within half a step.
        let err = (&back.images - &set.images).abs().max().double_value(&[]);
        assert!(err <= 0.5 / 255.0 + 1e-6, "max error {err}");
    }
    // Grayscale sets are written (N, H, W).
    let gray = ImageSet {
        images: Tensor::from_slice(&[0.0f32, 0.5, 1.0, 0.25]).view([1, 1, 2, 2]),
        labels: Tensor::from_slice(&[300i64]),
    };
    let gray_path = dir.join("gray.npz");
    write_medmnist_npz(&gray_path, &[(Split::Val, &gray)]).unwrap();

    let Some(python) = numpy_python() else {
        eprintln!("numpy not found (set BASTION_TEST_PYTHON): skipping the numpy cross-check");
        std::fs::remove_dir_all(&dir).unwrap();
        return;
    };
    let script = r#"
import json, sys
import numpy as np
out = {}
for p in sys.argv[1:]:
    with np.load(p) as z:
        for k in sorted(z.files):
            a = z[k]
            out[p + ":" + k] = {"dtype": a.dtype.str, "shape": list(a.shape),
                                "values": a.reshape(-1).astype("int64").tolist()}
print(json.dumps(out))
"#;
    let output = std::process::Command::new(&python)
        .args(["-c", script])
        .arg(&path)
        .arg(&gray_path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let arrays: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let get = |p: &Path, k: &str| arrays[format!("{}:{k}", p.display())].clone();
    for (split, set, n) in [("train", &train, 5i64), ("test", &test, 3)] {
        let imgs = get(&path, &format!("{split}_images"));
        assert_eq!(imgs["dtype"], "|u1");
        assert_eq!(imgs["shape"], serde_json::json!([n, 16, 16, 3]));
        let want = longs(
            &(set.images.permute([0, 2, 3, 1]) * 255.0)
                .round()
                .to_kind(Kind::Int64),
        );
        let got: Vec<i64> = serde_json::from_value(imgs["values"].clone()).unwrap();
        assert_eq!(got, want);
        let labels = get(&path, &format!("{split}_labels"));
        assert_eq!(labels["dtype"], "|u1");
        assert_eq!(labels["shape"], serde_json::json!([n, 1]));
        let got: Vec<i64> = serde_json::from_value(labels["values"].clone()).unwrap();
        assert_eq!(got, longs(&set.labels));
    }
    let g = get(&gray_path, "val_images");
    assert_eq!(g["shape"], serde_json::json!([1, 2, 2]));
    assert_eq!(g["values"], serde_json::json!([0, 128, 255, 64]));
    let l = get(&gray_path, "val_labels");
    assert_eq!(
        (l["dtype"].clone(), l["values"].clone()),
        ("<i8".into(), serde_json::json!([300]))
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------
// Image folders

fn rgb_png(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) {
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb(f(x, y)))
        .save(path)
        .unwrap();
}

fn make_folder(root: &Path) {
    for class in ["benign", "malignant"] {
        std::fs::create_dir_all(root.join(class)).unwrap();
    }
    // benign/a.png: exact pixels at the job's size.
    rgb_png(&root.join("benign/a.png"), 8, 8, |x, y| {
        [(x * 30) as u8, (y * 30) as u8, 77]
    });
    // benign/b.png: grayscale PNG, converted to RGB by replication.
    image::GrayImage::from_pixel(8, 8, image::Luma([90]))
        .save(root.join("benign/b.png"))
        .unwrap();
    // malignant/c.jpg: a solid colour JPEG at quality 100 (decodes within a few levels).
    let jpeg = image::RgbImage::from_pixel(8, 8, image::Rgb([180, 40, 120]));
    let mut file = std::fs::File::create(root.join("malignant/c.jpg")).unwrap();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut file, 100)
        .encode_image(&jpeg)
        .unwrap();
    // malignant/d.PNG: 20x12, constant, resized to 8x8 (stays constant).
    rgb_png(&root.join("malignant/d.PNG"), 20, 12, |_, _| [10, 20, 30]);
    // A hidden file is skipped.
    std::fs::write(root.join("malignant/.DS_Store"), b"junk").unwrap();
}

#[test]
fn image_folder_with_png_and_jpeg() {
    let dir = scratch("folder");
    let root = dir.join("tiles");
    make_folder(&root);
    let source = DataSource::ImageFolder { path: root.clone() };
    let set = image_set(load_dataset(&source, &named(&["benign", "malignant"], 8, 3)).unwrap());
    assert_eq!(set.images.size(), vec![4, 3, 8, 8]);
    assert_eq!(longs(&set.labels), vec![0, 0, 1, 1]);
    let px = |n: i64, c: i64, y: i64, x: i64| set.images.double_value(&[n, c, y, x]);
    for y in 0..8 {
        for x in 0..8 {
            assert_eq!(px(0, 0, y, x), ((x * 30) as f32 / 255.0) as f64);
            assert_eq!(px(0, 1, y, x), ((y * 30) as f32 / 255.0) as f64);
            assert_eq!(px(0, 2, y, x), (77f32 / 255.0) as f64);
            for c in 0..3 {
                assert_eq!(px(1, c, y, x), (90f32 / 255.0) as f64);
                let jpeg = [180.0, 40.0, 120.0][c as usize] / 255.0;
                assert!((px(2, c, y, x) - jpeg).abs() <= 4.0 / 255.0, "jpeg {c}");
                assert_eq!(
                    px(3, c, y, x),
                    ([10f32, 20., 30.][c as usize] / 255.0) as f64
                );
            }
        }
    }
    // The job's order defines labels, not the folder's.
    let swapped = image_set(load_dataset(&source, &named(&["malignant", "benign"], 8, 3)).unwrap());
    assert_eq!(longs(&swapped.labels), vec![0, 0, 1, 1]);
    assert!(swapped.images.get(0).equal(&set.images.get(2)));
    // A class may have no folder when the job names its classes.
    let three =
        image_set(load_dataset(&source, &named(&["benign", "malignant", "other"], 8, 3)).unwrap());
    assert_eq!(longs(&three.labels), vec![0, 0, 1, 1]);
    // A count: sorted names.
    let counted = image_set(load_dataset(&source, &images(2, 8, 3)).unwrap());
    assert!(counted.labels.equal(&set.labels));
    // One channel: luma (Rec. 709) of a.png's first pixel (0, 0, 77) and the gray image.
    let gray = image_set(load_dataset(&source, &images(2, 8, 1)).unwrap());
    assert_eq!(gray.images.size(), vec![4, 1, 8, 8]);
    assert_eq!(
        gray.images.double_value(&[1, 0, 3, 3]),
        (90f32 / 255.0) as f64
    );
    let luma = (0.0722f64 * 77.0).round() / 255.0;
    assert!((gray.images.double_value(&[0, 0, 0, 0]) - luma).abs() <= 1.5 / 255.0);

    // Class sets that disagree with the job.
    refused(
        load_dataset(&source, &named(&["benign", "tumour"], 8, 3)),
        &["tiles", "\"malignant\"", "not one of the job's classes"],
    );
    refused(
        load_dataset(&source, &images(3, 8, 3)),
        &["tiles", "2 class folders", "3 classes"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_image_folders_are_refused_naming_the_file() {
    let dir = scratch("bad-folder");
    let root = dir.join("tiles");
    let source = DataSource::ImageFolder { path: root.clone() };
    let expect = named(&["benign", "malignant"], 8, 3);

    make_folder(&root);
    std::fs::write(
        root.join("benign/corrupt.png"),
        b"\x89PNG\r\n\x1a\nnot really",
    )
    .unwrap();
    refused(
        load_dataset(&source, &expect),
        &["tiles", "benign/corrupt.png", "decode"],
    );
    std::fs::remove_file(root.join("benign/corrupt.png")).unwrap();
    // Negative control: without the corrupt file it loads.
    assert_eq!(load_dataset(&source, &expect).unwrap().len(), 4);

    // A truncated JPEG.
    let jpg = std::fs::read(root.join("malignant/c.jpg")).unwrap();
    std::fs::write(root.join("malignant/e.jpg"), &jpg[..jpg.len() / 3]).unwrap();
    refused(load_dataset(&source, &expect), &["malignant/e.jpg"]);
    std::fs::remove_file(root.join("malignant/e.jpg")).unwrap();

    std::fs::write(root.join("benign/notes.txt"), b"hello").unwrap();
    refused(
        load_dataset(&source, &expect),
        &["benign/notes.txt", ".png"],
    );
    std::fs::remove_file(root.join("benign/notes.txt")).unwrap();

    std::fs::write(root.join("README"), b"hello").unwrap();
    refused(
        load_dataset(&source, &expect),
        &["file README", "subfolder"],
    );
    std::fs::remove_file(root.join("README")).unwrap();

    std::fs::create_dir_all(dir.join("empty/benign")).unwrap();
    refused(
        load_dataset(
            &DataSource::ImageFolder {
                path: dir.join("empty"),
            },
            &expect,
        ),
        &["empty", "no images"],
    );
    refused(
        load_dataset(
            &DataSource::ImageFolder {
                path: dir.join("nowhere"),
            },
            &expect,
        ),
        &["nowhere", "not a folder"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------
// Text

/// A word-level tokenizer whose ids are fixed by hand: split on whitespace, look up.
fn word_tokenizer() -> TextTokenizer {
    let json = r#"{
      "version": "1.0", "truncation": null, "padding": null,
      "added_tokens": [{"id": 0, "content": "<|endoftext|>", "single_word": false,
                        "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
      "normalizer": null,
      "pre_tokenizer": {"type": "WhitespaceSplit"},
      "post_processor": null, "decoder": null,
      "model": {"type": "WordLevel", "unk_token": "[UNK]",
                "vocab": {"<|endoftext|>": 0, "[UNK]": 1, "the": 2, "cat": 3, "sat": 4,
                          "on": 5, "mat": 6, "a": 7, "dog": 8}}
    }"#;
    TextTokenizer::from_bytes(json.as_bytes()).unwrap()
}

fn text(tokenizer: &TextTokenizer, seq_len: usize, vocab_size: usize) -> DataExpectation {
    DataExpectation::Text {
        tokenizer: tokenizer.clone(),
        seq_len,
        vocab_size,
    }
}

#[test]
fn text_lines_are_one_padded_record_each() {
    let dir = scratch("text-lines");
    let path = dir.join("corpus.txt");
    std::fs::write(
        &path,
        "the cat sat\n\na dog sat on the mat on the mat\r\nzebra cat\n",
    )
    .unwrap();
    let tok = word_tokenizer();
    let source = DataSource::TextLines { path: path.clone() };
    let set = token_set(load_dataset(&source, &text(&tok, 5, 9)).unwrap());
    assert_eq!(set.ids.size(), vec![3, 5]);
    assert_eq!(set.pad_id, 0);
    assert_eq!(
        longs(&set.ids),
        vec![2, 3, 4, 0, 0, /**/ 7, 8, 4, 5, 2, /**/ 1, 3, 0, 0, 0]
    );
    assert_eq!(
        longs(&set.mask),
        vec![1, 1, 1, 0, 0, /**/ 1, 1, 1, 1, 1, /**/ 1, 1, 0, 0, 0]
    );
    // Batches pick rows.
    match Records::Tokens(set).batch(&[2, 0]) {
        Batch::Tokens { ids, mask } => {
            assert_eq!(longs(&ids), vec![1, 3, 0, 0, 0, 2, 3, 4, 0, 0]);
            assert_eq!(longs(&mask), vec![1, 1, 0, 0, 0, 1, 1, 1, 0, 0]);
        }
        Batch::Images { .. } => panic!("expected tokens"),
    }

    // A one-token record has nothing to predict: refused with its line number.
    std::fs::write(&path, "the cat sat\n\ncat\n").unwrap();
    refused(
        load_dataset(&source, &text(&tok, 5, 9)),
        &["corpus.txt", "line 3", "1 token"],
    );
    // An id the model's vocabulary lacks ("dog" is 8).
    std::fs::write(&path, "the cat\na dog\n").unwrap();
    refused(
        load_dataset(&source, &text(&tok, 5, 8)),
        &["corpus.txt", "line 2", "id 8", "vocabulary of 8"],
    );
    std::fs::write(&path, b"the cat\nthe \xff cat\n").unwrap();
    refused(
        load_dataset(&source, &text(&tok, 5, 9)),
        &["line 2", "UTF-8"],
    );
    std::fs::write(&path, "\n\n").unwrap();
    refused(
        load_dataset(&source, &text(&tok, 5, 9)),
        &["corpus.txt", "no records"],
    );
    // Text for an image job, images for a text job.
    refused(
        load_dataset(&source, &images(2, 8, 3)),
        &["corpus.txt", "text"],
    );
    refused(
        load_dataset(
            &DataSource::Generated {
                records: 4,
                seed: 0,
            },
            &text(&tok, 5, 9),
        ),
        &["generated", "language model"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn jsonl_records_and_their_faults() {
    let dir = scratch("jsonl");
    let path = dir.join("texts.jsonl");
    let tok = word_tokenizer();
    let source = |field: &str| DataSource::Jsonl {
        path: path.clone(),
        field: field.into(),
    };
    std::fs::write(
        &path,
        "{\"text\": \"the cat\", \"id\": 1}\n{\"text\": \"a dog sat\", \"body\": \"x\"}\n",
    )
    .unwrap();
    let set = token_set(load_dataset(&source("text"), &text(&tok, 4, 9)).unwrap());
    assert_eq!(longs(&set.ids), vec![2, 3, 0, 0, 7, 8, 4, 0]);
    assert_eq!(longs(&set.mask), vec![1, 1, 0, 0, 1, 1, 1, 0]);

    refused(
        load_dataset(&source("body"), &text(&tok, 4, 9)),
        &["texts.jsonl", "line 1", "no field \"body\""],
    );
    refused(
        load_dataset(&source("id"), &text(&tok, 4, 9)),
        &["line 1", "\"id\"", "a number"],
    );
    std::fs::write(&path, "{\"text\": \"the cat\"}\n{\"text\": \"a dog\"\n").unwrap();
    refused(
        load_dataset(&source("text"), &text(&tok, 4, 9)),
        &["texts.jsonl", "line 2", "not valid JSON"],
    );
    std::fs::write(&path, "[\"the cat\"]\n").unwrap();
    refused(
        load_dataset(&source("text"), &text(&tok, 4, 9)),
        &["line 1", "not a JSON object"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn byte_level_bpe_ids_equal_the_tokenizers_own() {
    let dir = scratch("bpe");
    let corpus: Vec<String> = (0..40)
        .map(|i| {
            format!(
                "Patient {i} reports mild pain; follow-up in {} weeks. Ça va.",
                i % 7
            )
        })
        .collect();
    let tok = train_byte_level_bpe(&corpus, 300, &dir.join("tokenizer.json")).unwrap();
    let path = dir.join("notes.jsonl");
    let lines: Vec<String> = corpus
        .iter()
        .take(5)
        .map(|t| serde_json::json!({ "text": t }).to_string())
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    let seq_len = 12;
    let set = token_set(
        load_dataset(
            &DataSource::Jsonl {
                path: path.clone(),
                field: "text".into(),
            },
            &text(&tok, seq_len, tok.vocab_size()),
        )
        .unwrap(),
    );
    let eos = tok.eos_id().unwrap();
    assert_eq!(set.pad_id, eos);
    for (row, t) in corpus.iter().take(5).enumerate() {
        let mut want = tok.encode(t).unwrap();
        assert!(want.len() > 2);
        let real = want.len().min(seq_len);
        want.truncate(seq_len);
        want.resize(seq_len, eos);
        assert_eq!(longs(&set.ids.get(row as i64)), want, "row {row}");
        let mask = longs(&set.mask.get(row as i64));
        assert_eq!(mask.iter().sum::<i64>() as usize, real);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------
// Records, sources

#[test]
fn records_round_trip_through_bytes() {
    let images = Records::Images(cancer_tiles(3, 8, 5));
    let back = Records::from_bytes(&images.to_bytes().unwrap()).unwrap();
    match (&images, &back) {
        (Records::Images(a), Records::Images(b)) => {
            assert!(a.images.equal(&b.images) && a.labels.equal(&b.labels))
        }
        _ => panic!("kind changed"),
    }
    let gray = ImageSet {
        images: Tensor::rand([2, 1, 4, 4], (Kind::Float, tch::Device::Cpu)),
        labels: Tensor::from_slice(&[1i64, 0]),
    };
    let back = ImageSet::from_bytes(&gray.to_bytes().unwrap()).unwrap();
    assert!(back.images.equal(&gray.images));
    let tokens = TokenSet {
        ids: Tensor::from_slice(&[5i64, 6, 0, 7, 8, 9]).view([2, 3]),
        mask: Tensor::from_slice(&[1i64, 1, 0, 1, 1, 1]).view([2, 3]),
        pad_id: 0,
    };
    let bytes = Records::Tokens(tokens).to_bytes().unwrap();
    let back = token_set(Records::from_bytes(&bytes).unwrap());
    assert_eq!(longs(&back.ids), vec![5, 6, 0, 7, 8, 9]);
    assert_eq!(longs(&back.mask), vec![1, 1, 0, 1, 1, 1]);
    // Truncated bytes are refused, not misread.
    assert!(Records::from_bytes(&bytes[..bytes.len() - 1]).is_err());
}

#[test]
fn data_sources_from_node_toml() {
    #[derive(serde::Deserialize)]
    struct Node {
        datasets: Vec<DataSource>,
    }
    let parse = |s: &str| toml::from_str::<Node>(s).map(|n| n.datasets);
    let got = parse(
        r#"
        [[datasets]]
        records = 64
        seed = 3
        [[datasets]]
        format = "medmnist-npz"
        path = "a.npz"
        [[datasets]]
        format = "medmnist-npz"
        path = "a.npz"
        split = "test"
        [[datasets]]
        format = "image-folder"
        path = "tiles"
        [[datasets]]
        format = "jsonl"
        path = "t.jsonl"
        [[datasets]]
        format = "jsonl"
        path = "t.jsonl"
        field = "body"
        [[datasets]]
        format = "text-lines"
        path = "t.txt"
        "#,
    )
    .unwrap();
    assert_eq!(
        got,
        vec![
            DataSource::Generated {
                records: 64,
                seed: 3
            },
            DataSource::MedmnistNpz {
                path: "a.npz".into(),
                split: Split::Train
            },
            DataSource::MedmnistNpz {
                path: "a.npz".into(),
                split: Split::Test
            },
            DataSource::ImageFolder {
                path: "tiles".into()
            },
            DataSource::Jsonl {
                path: "t.jsonl".into(),
                field: "text".into()
            },
            DataSource::Jsonl {
                path: "t.jsonl".into(),
                field: "body".into()
            },
            DataSource::TextLines {
                path: "t.txt".into()
            },
        ]
    );
    for (bad, needle) in [
        ("format = \"csv\"\npath = \"x\"", "csv"),
        ("format = \"jsonl\"", "needs a `path`"),
        (
            "format = \"text-lines\"\npath = \"x\"\nfield = \"t\"",
            "takes no `field`",
        ),
        (
            "format = \"image-folder\"\npath = \"x\"\nsplit = \"val\"",
            "takes no `split`",
        ),
        (
            "format = \"medmnist-npz\"\npath = \"x\"\nsplit = \"dev\"",
            "dev",
        ),
        (
            "format = \"jsonl\"\npath = \"x\"\nrecords = 3",
            "takes no `records`",
        ),
        ("path = \"x\"", "takes no `path`"),
        ("format = \"jsonl\"\npath = \"x\"\ncolour = 1", "colour"),
    ] {
        let msg = parse(&format!("[[datasets]]\n{bad}"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains(needle), "{bad:?}: {msg}");
    }
    // Serialized and read back, the same source.
    let source = DataSource::Jsonl {
        path: "t.jsonl".into(),
        field: "body".into(),
    };
    let text = toml::to_string(&source).unwrap();
    assert_eq!(toml::from_str::<DataSource>(&text).unwrap(), source);
}

#[test]
fn generated_tiles_through_the_entry_point() {
    let set = image_set(
        load_dataset(
            &DataSource::Generated {
                records: 6,
                seed: 9,
            },
            &images(2, 12, 3),
        )
        .unwrap(),
    );
    let direct = cancer_tiles(6, 12, 9);
    assert!(set.images.equal(&direct.images) && set.labels.equal(&direct.labels));
    refused(
        load_dataset(
            &DataSource::Generated {
                records: 6,
                seed: 9,
            },
            &images(2, 12, 1),
        ),
        &["generated", "RGB"],
    );
    refused(
        load_dataset(
            &DataSource::Generated {
                records: 0,
                seed: 9,
            },
            &images(2, 12, 3),
        ),
        &["generated", "empty"],
    );
}

// ---------------------------------------------------------------------------------------
// AUC

/// AUC by definition: over all (positive, negative) pairs, 1 if the positive scores higher,
/// 1/2 on a tie.
fn pair_count_auc(scores: &[f64], positive: &[bool]) -> f64 {
    let (mut wins, mut pairs) = (0.0, 0.0);
    for (i, &p) in positive.iter().enumerate() {
        for (j, &q) in positive.iter().enumerate() {
            if p && !q {
                pairs += 1.0;
                wins += if scores[i] > scores[j] {
                    1.0
                } else if scores[i] == scores[j] {
                    0.5
                } else {
                    0.0
                };
            }
        }
    }
    wins / pairs
}

#[test]
fn binary_auc_equals_pair_counting_with_ties() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for trial in 0..200 {
        let n = rng.random_range(2..60);
        // Five score levels: many ties.
        let scores: Vec<f64> = (0..n)
            .map(|_| rng.random_range(0..5) as f64 / 4.0)
            .collect();
        let positive: Vec<bool> = (0..n).map(|_| rng.random_bool(0.4)).collect();
        let got = binary_auc(&scores, &positive);
        if positive.iter().all(|&p| p) || positive.iter().all(|&p| !p) {
            assert_eq!(got, None);
            continue;
        }
        let want = pair_count_auc(&scores, &positive);
        assert!(
            (got.unwrap() - want).abs() < 1e-12,
            "trial {trial}: {got:?} vs {want}"
        );
    }
    assert_eq!(binary_auc(&[0.1, 0.9], &[false, true]), Some(1.0));
    assert_eq!(binary_auc(&[0.9, 0.1], &[false, true]), Some(0.0));
    assert_eq!(
        binary_auc(&[0.5, 0.5, 0.5], &[false, true, true]),
        Some(0.5)
    );
    assert_eq!(binary_auc(&[0.5, f64::NAN], &[false, true]), None);
}

#[test]
fn macro_auc_equals_the_mean_of_pair_counts() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for trial in 0..50 {
        let (n, k) = (rng.random_range(10..50), rng.random_range(3..7));
        let probs: Vec<f64> = (0..n * k)
            .map(|_| rng.random_range(0..6) as f64 / 5.0)
            .collect();
        // Class k-1 never occurs: it has no AUC and is left out of the mean.
        let labels: Vec<usize> = (0..n).map(|_| rng.random_range(0..k - 1)).collect();
        let mut aucs = Vec::new();
        for c in 0..k {
            let positive: Vec<bool> = labels.iter().map(|&l| l == c).collect();
            if positive.iter().any(|&p| p) && positive.iter().any(|&p| !p) {
                let scores: Vec<f64> = (0..n).map(|i| probs[i * k + c]).collect();
                aucs.push(pair_count_auc(&scores, &positive));
            }
        }
        let want = aucs.iter().sum::<f64>() / aucs.len() as f64;
        let got = macro_ovr_auc(&probs, k, &labels).unwrap();
        assert!((got - want).abs() < 1e-12, "trial {trial}: {got} vs {want}");
        // The tensor form agrees.
        let t = Tensor::from_slice(&probs).view([n as i64, k as i64]);
        let l = Tensor::from_slice(&labels.iter().map(|&l| l as i64).collect::<Vec<_>>());
        assert!((classification_auc(&t, &l).unwrap() - want).abs() < 1e-12);
    }
    // Two classes: the binary AUC of column 1.
    let probs = [0.8, 0.2, 0.3, 0.7, 0.6, 0.4, 0.5, 0.5];
    let labels = [0, 1, 0, 1];
    let want = pair_count_auc(&[0.2, 0.7, 0.4, 0.5], &[false, true, false, true]);
    assert_eq!(macro_ovr_auc(&probs, 2, &labels), Some(want));
    assert_eq!(macro_ovr_auc(&probs, 2, &[0, 0, 0, 0]), None);
}
