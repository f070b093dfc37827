//! Loading and saving Hugging Face GPT-2 checkpoints.
//!
//! Each test writes a small checkpoint exactly as Hugging Face lays it out (safetensors with
//! HF tensor names, `Conv1D` weights stored `(in, out)`, a full HF `config.json`), using the
//! safetensors crate directly. The good-path test compares the model's logits with a
//! reference forward written here from the raw checkpoint arrays, sharing no code with the
//! model. The bad-path tests check the exact error variant and what it names.

use bastion_dp::clip::Tape;
use bastion_models::gpt2::{Gpt2, Gpt2Config};
use bastion_models::ModelError;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{nn::VarStore, Device, Kind, Tensor};

const N_LAYER: usize = 2;
const N_HEAD: usize = 4;
const N_EMBD: usize = 32;
const VOCAB: usize = 50;
const N_POS: usize = 16;
const EPS: f64 = 1e-5;

/// A config.json as `transformers` writes it for GPT-2, extra fields included.
fn hf_config_json() -> serde_json::Value {
    serde_json::json!({
        "_name_or_path": "tiny-gpt2",
        "activation_function": "gelu_new",
        "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.1,
        "bos_token_id": 49,
        "embd_pdrop": 0.1,
        "eos_token_id": 49,
        "initializer_range": 0.02,
        "layer_norm_epsilon": EPS,
        "model_type": "gpt2",
        "n_ctx": N_POS,
        "n_embd": N_EMBD,
        "n_head": N_HEAD,
        "n_inner": null,
        "n_layer": N_LAYER,
        "n_positions": N_POS,
        "reorder_and_upcast_attn": false,
        "resid_pdrop": 0.1,
        "scale_attn_by_inverse_layer_idx": false,
        "scale_attn_weights": true,
        "summary_activation": null,
        "summary_first_dropout": 0.1,
        "summary_proj_to_labels": true,
        "summary_type": "cls_index",
        "summary_use_proj": true,
        "task_specific_params": {"text-generation": {"do_sample": true, "max_length": 50}},
        "torch_dtype": "float32",
        "transformers_version": "4.44.0",
        "use_cache": true,
        "vocab_size": VOCAB
    })
}

/// One array of the checkpoint: shape and values, in the file's layout.
#[derive(Clone)]
struct Array {
    shape: Vec<usize>,
    values: Vec<f32>,
}

fn random(shape: &[usize], mean: f64, std: f64) -> Array {
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    let t = Tensor::randn(&dims[..], (Kind::Float, Device::Cpu)) * std + mean;
    Array {
        shape: shape.to_vec(),
        values: Vec::<f32>::try_from(t.flatten(0, -1)).unwrap(),
    }
}

/// Random GPT-2 weights under Hugging Face's unprefixed names, Conv1D weights `(in, out)`.
fn random_checkpoint(seed: i64) -> BTreeMap<String, Array> {
    tch::manual_seed(seed);
    let (c, v, p) = (N_EMBD, VOCAB, N_POS);
    let mut w = BTreeMap::new();
    w.insert("wte.weight".to_string(), random(&[v, c], 0.0, 0.5));
    w.insert("wpe.weight".to_string(), random(&[p, c], 0.0, 0.3));
    for i in 0..N_LAYER {
        let h = |s: &str| format!("h.{i}.{s}");
        w.insert(h("ln_1.weight"), random(&[c], 1.0, 0.2));
        w.insert(h("ln_1.bias"), random(&[c], 0.0, 0.2));
        w.insert(h("attn.c_attn.weight"), random(&[c, 3 * c], 0.0, 0.3));
        w.insert(h("attn.c_attn.bias"), random(&[3 * c], 0.0, 0.2));
        w.insert(h("attn.c_proj.weight"), random(&[c, c], 0.0, 0.2));
        w.insert(h("attn.c_proj.bias"), random(&[c], 0.0, 0.2));
        w.insert(h("ln_2.weight"), random(&[c], 1.0, 0.2));
        w.insert(h("ln_2.bias"), random(&[c], 0.0, 0.2));
        w.insert(h("mlp.c_fc.weight"), random(&[c, 4 * c], 0.0, 0.2));
        w.insert(h("mlp.c_fc.bias"), random(&[4 * c], 0.0, 0.2));
        w.insert(h("mlp.c_proj.weight"), random(&[4 * c, c], 0.0, 0.1));
        w.insert(h("mlp.c_proj.bias"), random(&[c], 0.0, 0.2));
    }
    w.insert("ln_f.weight".to_string(), random(&[c], 1.0, 0.2));
    w.insert("ln_f.bias".to_string(), random(&[c], 0.0, 0.2));
    w
}

/// The causal-mask buffers old Hugging Face GPT-2 files carry in every layer.
fn add_attention_buffers(w: &mut BTreeMap<String, Array>) {
    for i in 0..N_LAYER {
        let mask: Vec<f32> = (0..N_POS * N_POS)
            .map(|k| if k % N_POS <= k / N_POS { 1.0 } else { 0.0 })
            .collect();
        w.insert(
            format!("h.{i}.attn.bias"),
            Array {
                shape: vec![1, 1, N_POS, N_POS],
                values: mask,
            },
        );
        w.insert(
            format!("h.{i}.attn.masked_bias"),
            Array {
                shape: vec![],
                values: vec![-1e4],
            },
        );
    }
}

/// Encodes `values` little-endian in `dtype` (F32, F16 or BF16 by rounding to nearest even,
/// F64), as a PyTorch writer would.
fn encode(values: &[f32], dtype: Dtype) -> Vec<u8> {
    let t = Tensor::from_slice(values);
    let (t, size) = match dtype {
        Dtype::F32 => (t, 4),
        Dtype::F16 => (t.to_kind(Kind::Half), 2),
        Dtype::BF16 => (t.to_kind(Kind::BFloat16), 2),
        Dtype::F64 => (t.to_kind(Kind::Double), 8),
        Dtype::I32 => (t.to_kind(Kind::Int), 4),
        other => panic!("no encoder for {other:?}"),
    };
    let mut bytes = vec![0u8; values.len() * size];
    t.copy_data_u8(&mut bytes, values.len());
    bytes
}

/// Writes `weights` (names as given) with the safetensors crate.
fn write_weights(file: &Path, weights: &BTreeMap<String, Array>, dtype_of: impl Fn(&str) -> Dtype) {
    let encoded: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = weights
        .iter()
        .map(|(name, a)| {
            let dtype = dtype_of(name);
            (
                name.clone(),
                dtype,
                a.shape.clone(),
                encode(&a.values, dtype),
            )
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = encoded
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            (
                name.clone(),
                TensorView::new(*dtype, shape.clone(), bytes).unwrap(),
            )
        })
        .collect();
    let metadata = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(metadata), file).unwrap();
}

/// A fresh checkpoint directory with `weights` in F32 and the HF config.
fn write_checkpoint(dir: &Path, weights: &BTreeMap<String, Array>, config: &serde_json::Value) {
    std::fs::create_dir_all(dir).unwrap();
    write_weights(&dir.join("model.safetensors"), weights, |_| Dtype::F32);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

/// A unique scratch directory per test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bastion-models-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn input_ids() -> Tensor {
    let ids: Vec<i64> = vec![
        3, 17, 42, 0, 8, 49, 8, 21, 5, 11, 30, 1, 2, 44, 9, 9, 33, 7, 6, 12,
    ];
    Tensor::from_slice(&ids).view([2, 10])
}

/// GPT-2's forward computed directly from the checkpoint arrays in f64, with HF's formulas:
/// Conv1D is `x W + b`, attention masks future positions, GELU is the tanh approximation,
/// the output layer is `h wte^T`.
fn reference_logits(w: &BTreeMap<String, Array>, ids: &Tensor) -> Tensor {
    let get = |name: &str| {
        let a = &w[name];
        let dims: Vec<i64> = a.shape.iter().map(|&d| d as i64).collect();
        Tensor::from_slice(&a.values)
            .to_kind(Kind::Double)
            .view(&dims[..])
    };
    let layer_norm = |x: &Tensor, prefix: &str| {
        let mean = x.mean_dim(-1, true, Kind::Double);
        let centred = x - &mean;
        let var = (&centred * &centred).mean_dim(-1, true, Kind::Double);
        centred / (var + EPS).sqrt() * get(&format!("{prefix}.weight"))
            + get(&format!("{prefix}.bias"))
    };
    let conv1d = |x: &Tensor, prefix: &str| {
        x.matmul(&get(&format!("{prefix}.weight"))) + get(&format!("{prefix}.bias"))
    };
    let (b, t) = ids.size2().unwrap();
    let (c, nh) = (N_EMBD as i64, N_HEAD as i64);
    let hd = c / nh;
    let wte = get("wte.weight");
    let positions = Tensor::arange(t, (Kind::Int64, Device::Cpu));
    let mut x = wte.index_select(0, &ids.flatten(0, -1)).view([b, t, c])
        + get("wpe.weight").index_select(0, &positions).unsqueeze(0);
    // future[i][j] is true where key j comes after query i.
    let future: Vec<bool> = (0..t * t).map(|k| k % t > k / t).collect();
    let future = Tensor::from_slice(&future).view([t, t]);
    for i in 0..N_LAYER {
        let a = layer_norm(&x, &format!("h.{i}.ln_1"));
        let qkv = conv1d(&a, &format!("h.{i}.attn.c_attn"));
        let split_heads = |k: i64| {
            qkv.narrow(2, k * c, c)
                .reshape([b, t, nh, hd])
                .permute([0, 2, 1, 3])
        };
        let (q, k, v) = (split_heads(0), split_heads(1), split_heads(2));
        let scores = q.matmul(&k.transpose(2, 3)) / (hd as f64).sqrt();
        let scores = scores.masked_fill(&future, f64::NEG_INFINITY);
        let probs = scores.exp() / scores.exp().sum_dim_intlist(-1, true, Kind::Double);
        let y = probs.matmul(&v).permute([0, 2, 1, 3]).reshape([b, t, c]);
        x += conv1d(&y, &format!("h.{i}.attn.c_proj"));
        let m = conv1d(
            &layer_norm(&x, &format!("h.{i}.ln_2")),
            &format!("h.{i}.mlp.c_fc"),
        );
        let gelu = &m
            * 0.5
            * ((&m + &m * &m * &m * 0.044715) * (2.0 / std::f64::consts::PI).sqrt())
                .tanh()
                .g_add_scalar(1.0);
        x += conv1d(&gelu, &format!("h.{i}.mlp.c_proj"));
    }
    layer_norm(&x, "ln_f").matmul(&wte.tr())
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

fn load(dir: &Path) -> (VarStore, Result<Gpt2, ModelError>) {
    let vs = VarStore::new(Device::Cpu);
    let model = Gpt2::load(&vs.root(), dir);
    (vs, model)
}

#[test]
fn logits_match_reference_forward_from_checkpoint_arrays() {
    let dir = scratch("reference");
    let weights = random_checkpoint(1);
    let mut file_weights = weights.clone();
    add_attention_buffers(&mut file_weights);
    write_checkpoint(&dir, &file_weights, &hf_config_json());

    let (vs, model) = load(&dir);
    let model = model.unwrap();
    assert_eq!(model.config().n_layer, N_LAYER as i64);
    assert_eq!(model.config().n_inner, None);
    // Only the trainable tensors became variables; buffers were skipped.
    assert_eq!(vs.variables().len(), weights.len());

    let ids = input_ids();
    let logits = model.forward(&Tape::disabled(), &ids);
    assert_eq!(logits.size(), [2, 10, VOCAB as i64]);
    let expected = reference_logits(&weights, &ids);
    let scale = expected.abs().max().double_value(&[]);
    assert!(
        scale > 1.0,
        "logits too small to be a meaningful check: {scale}"
    );
    let diff = max_abs_diff(&logits, &expected);
    assert!(diff < 1e-4, "max |logits - reference| = {diff}");

    // A recording tape computes exactly the same logits.
    let recorded = model.forward(&Tape::new(), &ids);
    assert_eq!(max_abs_diff(&recorded, &logits), 0.0);
}

#[test]
fn transformer_prefix_and_tied_lm_head_are_accepted() {
    let dir = scratch("prefix");
    let weights = random_checkpoint(2);
    let mut prefixed: BTreeMap<String, Array> = weights
        .iter()
        .map(|(k, v)| (format!("transformer.{k}"), v.clone()))
        .collect();
    prefixed.insert("lm_head.weight".into(), weights["wte.weight"].clone());
    write_checkpoint(&dir, &prefixed, &hf_config_json());

    let (_vs, model) = load(&dir);
    let ids = input_ids();
    let logits = model.unwrap().forward(&Tape::disabled(), &ids);
    let diff = max_abs_diff(&logits, &reference_logits(&weights, &ids));
    assert!(diff < 1e-4, "max |logits - reference| = {diff}");
}

#[test]
fn half_precision_weights_are_converted() {
    for dtype in [Dtype::F16, Dtype::BF16] {
        let dir = scratch(&format!("half-{dtype:?}"));
        let weights = random_checkpoint(3);
        write_checkpoint(&dir, &weights, &hf_config_json());
        write_weights(&dir.join("model.safetensors"), &weights, |_| dtype);

        // What the file holds, widened back to f32.
        let kind = if dtype == Dtype::F16 {
            Kind::Half
        } else {
            Kind::BFloat16
        };
        let rounded: BTreeMap<String, Array> = weights
            .iter()
            .map(|(k, a)| {
                let t = Tensor::from_slice(&a.values)
                    .to_kind(kind)
                    .to_kind(Kind::Float);
                let values = Vec::<f32>::try_from(t).unwrap();
                (
                    k.clone(),
                    Array {
                        shape: a.shape.clone(),
                        values,
                    },
                )
            })
            .collect();

        let (vs, model) = load(&dir);
        let model = model.unwrap();
        for var in vs.trainable_variables() {
            assert_eq!(var.kind(), Kind::Float);
        }
        let ids = input_ids();
        let logits = model.forward(&Tape::disabled(), &ids);
        let diff = max_abs_diff(&logits, &reference_logits(&rounded, &ids));
        assert!(diff < 1e-4, "{dtype:?}: max |logits - reference| = {diff}");
    }
}

#[test]
fn save_writes_hugging_face_layout_and_round_trips() {
    let dir = scratch("roundtrip");
    let weights = random_checkpoint(4);
    write_checkpoint(&dir, &weights, &hf_config_json());
    let (_vs, model) = load(&dir);
    let model = model.unwrap();

    let out = dir.join("saved");
    model.save(&out).unwrap();

    // Same names, shapes, dtype and bytes as the Hugging Face file we wrote.
    let original = std::fs::read(dir.join("model.safetensors")).unwrap();
    let original = safetensors::SafeTensors::deserialize(&original).unwrap();
    let saved_bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let saved = safetensors::SafeTensors::deserialize(&saved_bytes).unwrap();
    let mut names = saved.names();
    names.sort();
    let mut expected_names = original.names();
    expected_names.sort();
    assert_eq!(names, expected_names);
    for name in names {
        let (a, b) = (original.tensor(name).unwrap(), saved.tensor(name).unwrap());
        assert_eq!(a.shape(), b.shape(), "{name}");
        assert_eq!(b.dtype(), Dtype::F32, "{name}");
        assert!(a.data() == b.data(), "{name}: bytes differ");
    }
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&saved_bytes).unwrap();
    assert_eq!(metadata.metadata().as_ref().unwrap()["format"], "pt");

    // config.json reads back as the same configuration, and Hugging Face's keys are there.
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "gpt2");
    assert_eq!(config["activation_function"], "gelu_new");
    let (_vs2, reloaded) = load(&out);
    let reloaded = reloaded.unwrap();
    assert_eq!(reloaded.config(), model.config());
    let ids = input_ids();
    let a = model.forward(&Tape::disabled(), &ids);
    let b = reloaded.forward(&Tape::disabled(), &ids);
    assert_eq!(max_abs_diff(&a, &b), 0.0);
    // No temporary files left behind.
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["config.json", "model.safetensors"]);
}

#[test]
fn load_weights_replaces_weights_of_an_existing_model() {
    let dir = scratch("load-weights");
    let weights = random_checkpoint(5);
    write_checkpoint(&dir, &weights, &hf_config_json());
    let config = Gpt2Config::from_file(&dir.join("config.json")).unwrap();
    let vs = VarStore::new(Device::Cpu);
    let model = Gpt2::new(&vs.root(), &config).unwrap();
    model.load_weights(&dir.join("model.safetensors")).unwrap();
    let ids = input_ids();
    let diff = max_abs_diff(
        &model.forward(&Tape::disabled(), &ids),
        &reference_logits(&weights, &ids),
    );
    assert!(diff < 1e-4, "max |logits - reference| = {diff}");
}

// ---- bad checkpoints ----

/// Writes a checkpoint after `edit` changes the weights, and loads it.
fn load_edited(
    test: &str,
    edit: impl FnOnce(&mut BTreeMap<String, Array>),
) -> (PathBuf, VarStore, ModelError) {
    let dir = scratch(test);
    let mut weights = random_checkpoint(6);
    edit(&mut weights);
    write_checkpoint(&dir, &weights, &hf_config_json());
    let (vs, result) = load(&dir);
    let err = result.expect_err("a bad checkpoint must not load");
    // Nothing was created in the var store.
    assert!(
        vs.variables().is_empty(),
        "{test}: variables created despite {err}"
    );
    (dir.join("model.safetensors"), vs, err)
}

#[test]
fn missing_tensor_is_named() {
    let (file, _, err) = load_edited("missing", |w| {
        w.remove("h.1.mlp.c_fc.bias");
    });
    match &err {
        ModelError::MissingTensor { path, name } => {
            assert_eq!(path, &file);
            assert_eq!(name, "h.1.mlp.c_fc.bias");
        }
        other => panic!("expected MissingTensor, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("model.safetensors") && msg.contains("h.1.mlp.c_fc.bias"),
        "{msg}"
    );
}

#[test]
fn missing_tensor_with_prefix_is_named_with_prefix() {
    let (_, _, err) = load_edited("missing-prefixed", |w| {
        let old = std::mem::take(w);
        *w = old
            .into_iter()
            .filter(|(k, _)| k != "ln_f.weight")
            .map(|(k, v)| (format!("transformer.{k}"), v))
            .collect();
    });
    assert!(
        matches!(&err, ModelError::MissingTensor { name, .. } if name == "transformer.ln_f.weight"),
        "{err:?}"
    );
}

#[test]
fn linear_layout_instead_of_conv1d_is_a_shape_error() {
    // A converter that forgot Conv1D's transpose: (out, in) = (96, 32) instead of (32, 96).
    let (file, _, err) = load_edited("shape", |w| {
        let a = w.get_mut("h.0.attn.c_attn.weight").unwrap();
        a.shape = vec![3 * N_EMBD, N_EMBD];
    });
    match &err {
        ModelError::Shape {
            path,
            name,
            expected,
            found,
        } => {
            assert_eq!(path, &file);
            assert_eq!(name, "h.0.attn.c_attn.weight");
            assert_eq!(expected, &[N_EMBD as i64, 3 * N_EMBD as i64]);
            assert_eq!(found, &[3 * N_EMBD, N_EMBD]);
        }
        other => panic!("expected Shape, got {other:?}"),
    }
}

#[test]
fn embedding_shape_mismatch_with_config() {
    let (_, _, err) = load_edited("vocab", |w| {
        w.insert("wte.weight".into(), random(&[VOCAB + 1, N_EMBD], 0.0, 0.1));
    });
    assert!(
        matches!(&err, ModelError::Shape { name, expected, found, .. }
            if name == "wte.weight" && expected == &[VOCAB as i64, N_EMBD as i64] && found == &[VOCAB + 1, N_EMBD]),
        "{err:?}"
    );
}

#[test]
fn integer_dtype_is_refused() {
    let dir = scratch("dtype");
    let weights = random_checkpoint(7);
    write_checkpoint(&dir, &weights, &hf_config_json());
    let file = dir.join("model.safetensors");
    write_weights(&file, &weights, |name| {
        if name == "wpe.weight" {
            Dtype::I32
        } else {
            Dtype::F32
        }
    });
    let (vs, result) = load(&dir);
    match result.expect_err("I32 weights must not load") {
        ModelError::Dtype { path, name, found } => {
            assert_eq!(path, file);
            assert_eq!(name, "wpe.weight");
            assert_eq!(found, "I32");
        }
        other => panic!("expected Dtype, got {other:?}"),
    }
    assert!(vs.variables().is_empty());
}

#[test]
fn extra_layer_is_an_unexpected_tensor() {
    let (_, _, err) = load_edited("unexpected", |w| {
        w.insert(
            format!("h.{N_LAYER}.ln_1.weight"),
            random(&[N_EMBD], 1.0, 0.1),
        );
    });
    assert!(
        matches!(&err, ModelError::UnexpectedTensor { name, .. } if name == "h.2.ln_1.weight"),
        "{err:?}"
    );
}

#[test]
fn untied_lm_head_is_refused() {
    let (_, _, err) = load_edited("untied", |w| {
        w.insert("lm_head.weight".into(), random(&[VOCAB, N_EMBD], 0.0, 0.1));
    });
    assert!(
        matches!(&err, ModelError::UntiedHead { name, .. } if name == "lm_head.weight"),
        "{err:?}"
    );
}

#[test]
fn missing_weights_file_is_an_io_error_naming_it() {
    let dir = scratch("no-weights");
    std::fs::write(dir.join("config.json"), hf_config_json().to_string()).unwrap();
    let (_, result) = load(&dir);
    match result.expect_err("no weights file") {
        ModelError::Io { path, .. } => assert_eq!(path, dir.join("model.safetensors")),
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
fn garbage_weights_file_is_a_safetensors_error() {
    let dir = scratch("garbage");
    std::fs::write(dir.join("config.json"), hf_config_json().to_string()).unwrap();
    std::fs::write(
        dir.join("model.safetensors"),
        b"\x10\0\0\0\0\0\0\0not json at all!",
    )
    .unwrap();
    let (_, result) = load(&dir);
    assert!(
        matches!(result.expect_err("garbage"), ModelError::Safetensors { path, .. } if path == dir.join("model.safetensors"))
    );
}

/// Loads a checkpoint whose config.json is `config` (good weights).
fn load_with_config(test: &str, config: &str) -> (PathBuf, ModelError) {
    let dir = scratch(test);
    write_checkpoint(&dir, &random_checkpoint(8), &hf_config_json());
    std::fs::write(dir.join("config.json"), config).unwrap();
    let (vs, result) = load(&dir);
    assert!(vs.variables().is_empty());
    (
        dir.join("config.json"),
        result.expect_err("bad config must not load"),
    )
}

#[test]
fn config_missing_required_field_is_named() {
    let mut config = hf_config_json();
    config.as_object_mut().unwrap().remove("n_head");
    let (file, err) = load_with_config("config-missing", &config.to_string());
    match &err {
        ModelError::ConfigJson { path, source } => {
            assert_eq!(path, &file);
            assert!(
                source.to_string().contains("missing field `n_head`"),
                "{source}"
            );
        }
        other => panic!("expected ConfigJson, got {other:?}"),
    }
    assert!(err.to_string().contains("config.json"), "{err}");
}

#[test]
fn config_not_json_is_refused() {
    let (file, err) = load_with_config("config-syntax", "{\"n_layer\": 2,");
    assert!(
        matches!(&err, ModelError::ConfigJson { path, .. } if path == &file),
        "{err:?}"
    );
}

#[test]
fn config_with_wrong_type_is_refused() {
    let mut config = hf_config_json();
    config["n_embd"] = serde_json::json!("thirty-two");
    let (_, err) = load_with_config("config-type", &config.to_string());
    assert!(matches!(&err, ModelError::ConfigJson { .. }), "{err:?}");
}

#[test]
fn config_with_indivisible_heads_is_invalid() {
    let mut config = hf_config_json();
    config["n_head"] = serde_json::json!(5);
    let (file, err) = load_with_config("config-heads", &config.to_string());
    match &err {
        ModelError::InvalidConfig { path, field, .. } => {
            assert_eq!(path.as_deref(), Some(file.as_path()));
            assert_eq!(*field, "n_head");
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn config_that_changes_the_arithmetic_is_refused() {
    for (field, value) in [
        ("activation_function", serde_json::json!("relu")),
        ("tie_word_embeddings", serde_json::json!(false)),
        ("scale_attn_by_inverse_layer_idx", serde_json::json!(true)),
        ("model_type", serde_json::json!("gpt_neo")),
    ] {
        let mut config = hf_config_json();
        config[field] = value;
        let (_, err) = load_with_config(&format!("config-{field}"), &config.to_string());
        assert!(
            matches!(&err, ModelError::InvalidConfig { field: f, .. } if *f == field),
            "{field}: {err:?}"
        );
    }
}

#[test]
fn missing_config_is_an_io_error_naming_it() {
    let dir = scratch("no-config");
    let (_, result) = load(&dir);
    match result.expect_err("no config") {
        ModelError::Io { path, .. } => assert_eq!(path, dir.join("config.json")),
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
fn failed_load_weights_leaves_the_model_unchanged() {
    let dir = scratch("atomic");
    let mut weights = random_checkpoint(9);
    weights.remove("ln_f.bias");
    write_checkpoint(&dir, &weights, &hf_config_json());
    let config = Gpt2Config::from_hf_json(&hf_config_json().to_string()).unwrap();
    let vs = VarStore::new(Device::Cpu);
    let model = Gpt2::new(&vs.root(), &config).unwrap();
    let before: Vec<Tensor> = vs.trainable_variables().iter().map(|t| t.copy()).collect();
    let err = model
        .load_weights(&dir.join("model.safetensors"))
        .unwrap_err();
    assert!(matches!(err, ModelError::MissingTensor { .. }), "{err:?}");
    for (a, b) in before.iter().zip(vs.trainable_variables()) {
        assert!(a.equal(&b));
    }
}

/// What transformers tolerates, we do: token ids outside a small vocabulary (GPT-2's 50256
/// kept in a config made for another tokenizer), `eos_token_id` as a list, `n_inner` and
/// `layer_norm_epsilon` absent, keys nobody knows, and a prefixed body without `lm_head`.
/// The model must still compute exactly the reference.
#[test]
fn tolerant_config_and_prefixed_weights_without_lm_head() {
    let dir = scratch("tolerant");
    let weights = random_checkpoint(10);
    let prefixed: BTreeMap<String, Array> = weights
        .iter()
        .map(|(k, v)| (format!("transformer.{k}"), v.clone()))
        .collect();
    let mut config = hf_config_json();
    let fields = config.as_object_mut().unwrap();
    fields.insert("bos_token_id".into(), serde_json::json!(50256));
    fields.insert("eos_token_id".into(), serde_json::json!([50256, 7]));
    fields.insert("pad_token_id".into(), serde_json::json!(null));
    fields.remove("n_inner");
    fields.remove("layer_norm_epsilon");
    fields.insert(
        "some_future_field".into(),
        serde_json::json!({"nested": [1, 2, {"x": null}]}),
    );
    fields.insert("dtype".into(), serde_json::json!("float32"));
    write_checkpoint(&dir, &prefixed, &config);

    let (_vs, model) = load(&dir);
    let model = model.unwrap();
    assert_eq!(model.config().n_inner, None);
    assert_eq!(model.config().layer_norm_epsilon, 1e-5);
    let ids = input_ids();
    let logits = model.forward(&Tape::disabled(), &ids);
    let diff = max_abs_diff(&logits, &reference_logits(&weights, &ids));
    assert!(diff < 1e-4, "max |logits - reference| = {diff}");
}

/// An explicit `n_inner` that disagrees with the weights is a shape error naming the tensor,
/// in the file's prefixed name.
#[test]
fn n_inner_disagreeing_with_weights_names_the_tensor() {
    let dir = scratch("n-inner");
    let prefixed: BTreeMap<String, Array> = random_checkpoint(11)
        .into_iter()
        .map(|(k, v)| (format!("transformer.{k}"), v))
        .collect();
    let mut config = hf_config_json();
    config["n_inner"] = serde_json::json!(3 * N_EMBD);
    write_checkpoint(&dir, &prefixed, &config);
    let (vs, model) = load(&dir);
    match model.unwrap_err() {
        ModelError::Shape { name, found, .. } => {
            assert_eq!(name, "transformer.h.0.mlp.c_fc.weight");
            assert_eq!(found, [N_EMBD, 4 * N_EMBD]);
        }
        other => panic!("expected Shape, got {other:?}"),
    }
    assert!(vs.variables().is_empty());
}
