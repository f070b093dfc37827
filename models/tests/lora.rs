//! LoRA on GPT-2: exact per-sample norms for the adapters, a frozen base, merged checkpoints
//! and PEFT adapter files.
//!
//! References are independent of the code under test: per-sample gradients by plain autograd
//! one sample at a time, the merged model by loading the saved checkpoint into a plain GPT-2,
//! and the adapter files by reading them with the safetensors crate and serde_json directly.

use bastion_dp::clip::{clip_per_sample, trainable_params, ClipConfig, LayerChoice, Tape};
use bastion_models::gpt2::{
    Gpt2, Gpt2Config, LoraConfig, LoraTarget, ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE,
};
use bastion_models::{per_sample_lm_loss, per_sample_lm_loss_masked, ModelError};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use tch::{nn::VarStore, Device, Kind, Tensor};

const N_LAYER: i64 = 2;
const N_EMBD: i64 = 32;
const VOCAB: i64 = 50;
const T: i64 = 8;
const RANK: i64 = 4;

fn config() -> Gpt2Config {
    Gpt2Config {
        n_layer: N_LAYER,
        n_head: 4,
        n_embd: N_EMBD,
        vocab_size: VOCAB,
        n_positions: 16,
        layer_norm_epsilon: 1e-5,
        n_inner: None,
    }
}

fn lora_config(targets: &[LoraTarget]) -> LoraConfig {
    LoraConfig {
        rank: RANK,
        alpha: 8.0,
        targets: targets.to_vec(),
    }
}

const ALL: [LoraTarget; 3] = [LoraTarget::CAttn, LoraTarget::CProj, LoraTarget::CFc];

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bastion-lora-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A tiny f64 GPT-2 with weights moved away from the initialisation (no LoRA yet).
fn base_model(seed: i64) -> (VarStore, Gpt2) {
    tch::manual_seed(seed);
    let mut vs = VarStore::new(Device::Cpu);
    let model = Gpt2::new(&vs.root(), &config()).unwrap();
    // The var store's default kind stays f32: add_lora must follow the base weights' kind.
    vs.double();
    tch::no_grad(|| {
        for mut p in vs.trainable_variables() {
            let noise = p.randn_like() * 0.2;
            let _ = p.f_add_(&noise).unwrap();
        }
    });
    (vs, model)
}

/// Gives every LoRA tensor random values, so B A is far from zero.
fn perturb_lora(model: &Gpt2) {
    tch::no_grad(|| {
        for (_, mut t) in model.lora_named_parameters() {
            let noise = t.randn_like() * 0.3;
            let _ = t.f_add_(&noise).unwrap();
        }
    });
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

fn logits(model: &Gpt2, ids: &Tensor) -> Tensor {
    tch::no_grad(|| model.forward(&Tape::disabled(), ids))
}

/// The LoRA module names PEFT would adapt for `targets` in a 2-layer GPT-2.
fn expected_modules(targets: &[LoraTarget]) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..N_LAYER {
        for (module, name) in [
            ("attn.c_attn", "c_attn"),
            ("attn.c_proj", "c_proj"),
            ("mlp.c_fc", "c_fc"),
            ("mlp.c_proj", "c_proj"),
        ] {
            if targets.iter().any(|t| t.name() == name) {
                out.push(format!("h.{i}.{module}"));
            }
        }
    }
    out
}

/// (a) With B zero, as PEFT initialises it, the LoRA model computes exactly the base model.
#[test]
fn fresh_lora_model_equals_base_exactly() {
    let (vs, mut model) = base_model(1);
    let ids = Tensor::randint(VOCAB, [3, T], (Kind::Int64, Device::Cpu));
    let before = logits(&model, &ids);
    model.add_lora(&vs.root(), &lora_config(&ALL)).unwrap();
    let after = logits(&model, &ids);
    assert!(before.equal(&after));
    // A is not zero (kaiming-uniform, bound 1/sqrt(in)), B is.
    for (name, t) in model.lora_named_parameters() {
        assert_eq!(t.kind(), Kind::Double, "{name}");
        let max = t.abs().max().double_value(&[]);
        if name.ends_with("lora_A.weight") {
            let bound = 1.0 / (t.size()[1] as f64).sqrt();
            assert!(
                max > 0.5 * bound && max <= bound,
                "{name}: {max} vs {bound}"
            );
        } else {
            assert_eq!(max, 0.0, "{name}");
        }
    }
}

/// (b) Per-sample norms and clipped sums of the LoRA parameters equal per-sample autograd,
/// on a padded batch, with B nonzero and a bound that clips some samples.
#[test]
fn lora_per_sample_norms_match_brute_force() {
    let (vs, mut model) = base_model(2);
    model
        .add_lora(
            &vs.root(),
            &lora_config(&[LoraTarget::CAttn, LoraTarget::CFc]),
        )
        .unwrap();
    perturb_lora(&model);
    let params = trainable_params(&vs);
    let lengths = [8i64, 5, 3, 7, 2];
    let b = lengths.len() as i64;
    let ids = Tensor::randint(VOCAB, [b, T], (Kind::Int64, Device::Cpu));
    let mask = Tensor::arange(T, (Kind::Int64, Device::Cpu))
        .unsqueeze(0)
        .lt_tensor(&Tensor::from_slice(&lengths).unsqueeze(1));

    // Reference: each unpadded sequence alone, plain backward.
    let mut reference = Vec::new();
    for (i, &len) in lengths.iter().enumerate() {
        for p in &params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        let seq = ids.get(i as i64).narrow(0, 0, len).unsqueeze(0);
        let out = model.forward(&Tape::disabled(), &seq);
        per_sample_lm_loss(&out, &seq).sum(Kind::Double).backward();
        reference.push(params.iter().map(|p| p.grad().copy()).collect::<Vec<_>>());
    }
    let ref_norms: Vec<f64> = reference
        .iter()
        .map(|gs| {
            gs.iter()
                .map(|g| g.square().sum(Kind::Double).double_value(&[]))
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    let mut sorted = ref_norms.clone();
    sorted.sort_by(f64::total_cmp);
    let c = sorted[sorted.len() / 2];
    assert!(sorted[0] < 0.99 * c && sorted[sorted.len() - 1] > 1.01 * c);

    // Ghost norms everywhere, materialised wherever the cost model says so, and timed.
    for (budget, layer_choice) in [
        (0usize, LayerChoice::CostModel),
        (64 << 20, LayerChoice::CostModel),
        (64 << 20, LayerChoice::Measured),
    ] {
        let tape = Tape::new();
        let out = model.forward_masked(&tape, &ids, Some(&mask));
        let loss = per_sample_lm_loss_masked(&out, &ids, &mask);
        let clipped = clip_per_sample(
            &tape,
            &loss,
            &params,
            &ClipConfig {
                max_grad_norm: c,
                materialize_budget_bytes: budget,
                layer_choice,
            },
        )
        .unwrap();
        let norms = Vec::<f64>::try_from(&clipped.norms).unwrap();
        for (i, (got, want)) in norms.iter().zip(&ref_norms).enumerate() {
            assert!((got - want).abs() < 1e-8, "sample {i}: {got} vs {want}");
        }
        for (j, got) in clipped.grads.iter().enumerate() {
            let mut want = got.zeros_like();
            for (gs, &n) in reference.iter().zip(&ref_norms) {
                want += &gs[j] * (c / n).min(1.0);
            }
            let diff = max_abs_diff(got, &want);
            assert!(diff < 1e-8, "budget {budget}, parameter {j}: {diff}");
            assert!(
                want.abs().max().double_value(&[]) > 1e-3,
                "parameter {j} trivial"
            );
        }
    }
}

/// (c) The base is frozen: only A and B train, exactly 2 per adapted module (c_proj means
/// both attn.c_proj and mlp.c_proj), and no base parameter gets a gradient, neither from
/// the clipping pass nor from a plain backward.
#[test]
fn base_is_frozen_and_trainables_are_exactly_the_adapters() {
    let (vs, mut model) = base_model(3);
    // Without LoRA everything trains.
    let names: Vec<String> = model
        .named_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let trainable: Vec<String> = model
        .trainable_named()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, trainable);

    let targets = [LoraTarget::CAttn, LoraTarget::CProj];
    model.add_lora(&vs.root(), &lora_config(&targets)).unwrap();
    let modules = expected_modules(&targets);
    assert_eq!(modules.len() as i64, 3 * N_LAYER);
    let expected: BTreeSet<String> = modules
        .iter()
        .flat_map(|m| [format!("{m}.lora_A.weight"), format!("{m}.lora_B.weight")])
        .collect();
    let named = model.trainable_named();
    assert_eq!(named.len(), expected.len());
    assert_eq!(
        named
            .iter()
            .map(|(n, _)| n.clone())
            .collect::<BTreeSet<_>>(),
        expected
    );
    // The var store agrees, variable for variable (same storage, same var-store names).
    let params = trainable_params(&vs);
    assert_eq!(params.len(), expected.len());
    let ptrs = |ts: &mut dyn Iterator<Item = &Tensor>| -> BTreeSet<usize> {
        ts.map(|t| t.data_ptr() as usize).collect()
    };
    assert_eq!(
        ptrs(&mut params.iter()),
        ptrs(&mut named.iter().map(|(_, t)| t))
    );
    let vars = vs.variables();
    for name in &expected {
        assert!(vars[name].requires_grad(), "{name}");
    }
    for (name, t) in model.named_parameters() {
        assert!(!t.requires_grad(), "{name} not frozen");
        assert!(
            !vars[&name].requires_grad(),
            "{name} not frozen in the var store"
        );
    }
    for (name, t) in model.lora_named_parameters() {
        let shape = t.size();
        if name.ends_with("lora_A.weight") {
            assert_eq!(shape[0], RANK, "{name}");
        } else {
            assert_eq!(shape[1], RANK, "{name}");
        }
    }

    perturb_lora(&model);
    let ids = Tensor::randint(VOCAB, [3, T], (Kind::Int64, Device::Cpu));
    let tape = Tape::new();
    let loss = per_sample_lm_loss(&model.forward(&tape, &ids), &ids);
    let clipped = clip_per_sample(&tape, &loss, &params, &ClipConfig::default()).unwrap();
    assert_eq!(clipped.grads.len(), expected.len());
    // A plain backward too: frozen tensors never get a .grad.
    let loss = per_sample_lm_loss(&model.forward(&Tape::disabled(), &ids), &ids);
    loss.sum(Kind::Double).backward();
    for (name, t) in model.named_parameters() {
        assert!(!t.grad().defined(), "{name} received a gradient");
    }
    for (name, t) in model.lora_named_parameters() {
        assert!(t.grad().defined(), "{name} received no gradient");
    }
    // The clipping engine refuses a frozen base parameter passed in as trainable.
    let tape = Tape::new();
    let loss = per_sample_lm_loss(&model.forward(&tape, &ids), &ids);
    let wte = model.named_parameters().remove(0).1;
    assert!(clip_per_sample(&tape, &loss, &[wte], &ClipConfig::default()).is_err());
}

/// (d) `save` of a LoRA model writes the merged weights: a plain GPT-2 loaded from the
/// saved directory computes what the LoRA model computes.
#[test]
fn merged_checkpoint_equals_lora_forward() {
    let dir = scratch("merged");
    let (vs, mut model) = base_model(4);
    model.add_lora(&vs.root(), &lora_config(&ALL)).unwrap();
    perturb_lora(&model);
    let ids = Tensor::randint(VOCAB, [3, T], (Kind::Int64, Device::Cpu));
    let lora_logits = logits(&model, &ids);
    model.save(&dir).unwrap();

    let mut plain_vs = VarStore::new(Device::Cpu);
    plain_vs.set_kind(Kind::Double);
    let plain = Gpt2::load(&plain_vs.root(), &dir).unwrap();
    assert!(plain.lora_config().is_none());
    let merged_logits = logits(&plain, &ids);
    let diff = max_abs_diff(&merged_logits, &lora_logits);
    assert!(diff < 1e-5, "merged vs LoRA: {diff}");

    // Not trivially so: the merged weights differ from the base ones, and so do the logits.
    let mut base_vs = VarStore::new(Device::Cpu);
    base_vs.set_kind(Kind::Double);
    let base = Gpt2::new(&base_vs.root(), &config()).unwrap();
    tch::no_grad(|| {
        for ((_, mut dst), (_, src)) in base
            .named_parameters()
            .into_iter()
            .zip(model.named_parameters())
        {
            dst.copy_(&src);
        }
    });
    assert!(max_abs_diff(&logits(&base, &ids), &lora_logits) > 1e-2);
    // The merged weight is W + (alpha / r) B A, computed here independently.
    let merged: BTreeMap<String, Tensor> = plain.named_parameters().into_iter().collect();
    let lora: BTreeMap<String, Tensor> = model.lora_named_parameters().into_iter().collect();
    for (name, w) in model.named_parameters() {
        let module = name.trim_end_matches(".weight");
        let want = match (
            lora.get(&format!("{module}.lora_A.weight")),
            lora.get(&format!("{module}.lora_B.weight")),
        ) {
            (Some(a), Some(b)) => &w + b.mm(a) * (8.0 / RANK as f64),
            _ => w.copy(),
        };
        assert!(max_abs_diff(&merged[&name], &want) < 1e-12, "{name}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// (e) Adapter files: PEFT's names, shapes and config; a round trip through a fresh model
/// built from the adapter's own config; bad adapters refused naming the tensor or field.
#[test]
fn adapter_round_trip_and_refusals() {
    let dir = scratch("adapter");
    let base_dir = dir.join("base");
    let adapter_dir = dir.join("adapter");
    let (vs, mut model) = base_model(5);
    model.save(&base_dir).unwrap();
    let targets = [LoraTarget::CProj, LoraTarget::CAttn];
    model.add_lora(&vs.root(), &lora_config(&targets)).unwrap();
    perturb_lora(&model);
    model.save_adapter(&adapter_dir, "tiny-gpt2").unwrap();

    // adapter_config.json, read as plain JSON.
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(adapter_dir.join(ADAPTER_CONFIG_FILE)).unwrap(),
    )
    .unwrap();
    assert_eq!(json["peft_type"], "LORA");
    assert_eq!(json["task_type"], "CAUSAL_LM");
    assert_eq!(json["r"], RANK);
    assert_eq!(json["lora_alpha"], 8.0);
    assert_eq!(json["lora_dropout"], 0.0);
    assert_eq!(json["fan_in_fan_out"], true);
    assert_eq!(json["bias"], "none");
    assert_eq!(json["inference_mode"], true);
    assert_eq!(json["base_model_name_or_path"], "tiny-gpt2");
    let mut modules: Vec<&str> = json["target_modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    modules.sort();
    assert_eq!(modules, ["c_attn", "c_proj"]);

    // adapter_model.safetensors, read with the safetensors crate.
    let bytes = std::fs::read(adapter_dir.join(ADAPTER_WEIGHTS_FILE)).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut expected_shapes = BTreeMap::new();
    for module in expected_modules(&targets) {
        let (in_dim, out_dim) = if module.ends_with("c_attn") {
            (N_EMBD, 3 * N_EMBD)
        } else if module.ends_with("mlp.c_proj") {
            (4 * N_EMBD, N_EMBD)
        } else {
            (N_EMBD, N_EMBD)
        };
        let prefix = format!("base_model.model.transformer.{module}");
        expected_shapes.insert(
            format!("{prefix}.lora_A.weight"),
            vec![RANK as usize, in_dim as usize],
        );
        expected_shapes.insert(
            format!("{prefix}.lora_B.weight"),
            vec![out_dim as usize, RANK as usize],
        );
    }
    let found: BTreeMap<String, Vec<usize>> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.shape().to_vec()))
        .collect();
    assert_eq!(found, expected_shapes);
    // The stored values are the model's, untransposed.
    let ours: BTreeMap<String, Tensor> = model.lora_named_parameters().into_iter().collect();
    let a = st
        .tensor("base_model.model.transformer.h.1.attn.c_attn.lora_A.weight")
        .unwrap();
    assert_eq!(a.dtype(), Dtype::F64);
    let stored = Tensor::from_data_size(a.data(), &[RANK, N_EMBD], Kind::Double);
    assert!(stored.equal(&ours["h.1.attn.c_attn.lora_A.weight"]));

    // Round trip: a fresh model from the base checkpoint plus the adapter's own config.
    let mut vs2 = VarStore::new(Device::Cpu);
    vs2.set_kind(Kind::Double);
    let mut model2 = Gpt2::load(&vs2.root(), &base_dir).unwrap();
    let config = LoraConfig::from_adapter_config(&adapter_dir.join(ADAPTER_CONFIG_FILE)).unwrap();
    assert_eq!(config.rank, RANK);
    assert_eq!(config.alpha, 8.0);
    assert_eq!(
        config.targets.iter().collect::<BTreeSet<_>>(),
        targets.iter().collect::<BTreeSet<_>>()
    );
    model2.add_lora(&vs2.root(), &config).unwrap();
    model2.load_adapter(&adapter_dir).unwrap();
    for (name, t) in model2.lora_named_parameters() {
        assert!(t.equal(&ours[&name]), "{name}");
    }
    let ids = Tensor::randint(VOCAB, [2, T], (Kind::Int64, Device::Cpu));
    assert!(max_abs_diff(&logits(&model2, &ids), &logits(&model, &ids)) < 1e-12);

    // A wrong-shape tensor: refused naming it, and nothing loaded.
    let bad_dir = dir.join("bad");
    std::fs::create_dir_all(&bad_dir).unwrap();
    std::fs::copy(
        adapter_dir.join(ADAPTER_CONFIG_FILE),
        bad_dir.join(ADAPTER_CONFIG_FILE),
    )
    .unwrap();
    let bad_name = "base_model.model.transformer.h.1.mlp.c_proj.lora_B.weight";
    {
        let data = vec![0u8; (N_EMBD * (RANK + 1) * 8) as usize];
        let views: Vec<(String, TensorView<'_>)> = st
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                if name == bad_name {
                    let shape = vec![N_EMBD as usize, (RANK + 1) as usize];
                    (name, TensorView::new(Dtype::F64, shape, &data).unwrap())
                } else {
                    (name, view)
                }
            })
            .collect();
        safetensors::serialize_to_file(views, None, &bad_dir.join(ADAPTER_WEIGHTS_FILE)).unwrap();
    }
    let before: Vec<Tensor> = model2
        .lora_named_parameters()
        .into_iter()
        .map(|(_, t)| t.copy())
        .collect();
    match model2.load_adapter(&bad_dir) {
        Err(ModelError::Shape {
            name,
            expected,
            found,
            ..
        }) => {
            assert_eq!(name, bad_name);
            assert_eq!(expected, [N_EMBD, RANK]);
            assert_eq!(found, [N_EMBD as usize, (RANK + 1) as usize]);
        }
        other => panic!("expected a shape error, got {other:?}"),
    }
    let err = model2.load_adapter(&bad_dir).unwrap_err().to_string();
    assert!(err.contains(bad_name), "{err}");
    for (t, b) in model2.lora_named_parameters().into_iter().zip(&before) {
        assert!(t.1.equal(b), "{} changed by a refused load", t.0);
    }

    // A missing tensor and an unexpected one.
    let missing = "base_model.model.transformer.h.0.attn.c_proj.lora_A.weight";
    let only_missing = dir.join("missing");
    std::fs::create_dir_all(&only_missing).unwrap();
    std::fs::copy(
        adapter_dir.join(ADAPTER_CONFIG_FILE),
        only_missing.join(ADAPTER_CONFIG_FILE),
    )
    .unwrap();
    {
        let kept: Vec<(String, TensorView<'_>)> = st
            .tensors()
            .into_iter()
            .filter(|(n, _)| n != missing)
            .collect();
        safetensors::serialize_to_file(kept, None, &only_missing.join(ADAPTER_WEIGHTS_FILE))
            .unwrap();
    }
    match model2.load_adapter(&only_missing) {
        Err(ModelError::MissingTensor { name, .. }) => assert_eq!(name, missing),
        other => panic!("expected a missing tensor, got {other:?}"),
    }
    let extra_dir = dir.join("extra");
    std::fs::create_dir_all(&extra_dir).unwrap();
    std::fs::copy(
        adapter_dir.join(ADAPTER_CONFIG_FILE),
        extra_dir.join(ADAPTER_CONFIG_FILE),
    )
    .unwrap();
    {
        let extra = "base_model.model.transformer.h.0.mlp.c_fc.lora_A.weight";
        let data = vec![0u8; (RANK * N_EMBD * 8) as usize];
        let mut all: Vec<(String, TensorView<'_>)> = st.tensors();
        all.push((
            extra.to_string(),
            TensorView::new(Dtype::F64, vec![RANK as usize, N_EMBD as usize], &data).unwrap(),
        ));
        safetensors::serialize_to_file(all, None, &extra_dir.join(ADAPTER_WEIGHTS_FILE)).unwrap();
        match model2.load_adapter(&extra_dir) {
            Err(ModelError::UnexpectedTensor { name, .. }) => assert_eq!(name, extra),
            other => panic!("expected an unexpected tensor, got {other:?}"),
        }
    }

    // A config that disagrees with the model's LoRA, and one PEFT option we do not compute.
    let mut other = json.clone();
    other["r"] = serde_json::json!(RANK * 2);
    std::fs::write(bad_dir.join(ADAPTER_CONFIG_FILE), other.to_string()).unwrap();
    match model2.load_adapter(&bad_dir) {
        Err(ModelError::InvalidConfig { field, .. }) => assert_eq!(field, "r"),
        other => panic!("expected a config mismatch, got {other:?}"),
    }
    let mut rslora = json.clone();
    rslora["use_rslora"] = serde_json::json!(true);
    std::fs::write(bad_dir.join(ADAPTER_CONFIG_FILE), rslora.to_string()).unwrap();
    match LoraConfig::from_adapter_config(&bad_dir.join(ADAPTER_CONFIG_FILE)) {
        Err(ModelError::InvalidConfig { field, .. }) => assert_eq!(field, "use_rslora"),
        other => panic!("expected rsLoRA refused, got {other:?}"),
    }
    let mut regex = json.clone();
    regex["target_modules"] = serde_json::json!(["q_proj"]);
    std::fs::write(bad_dir.join(ADAPTER_CONFIG_FILE), regex.to_string()).unwrap();
    match LoraConfig::from_adapter_config(&bad_dir.join(ADAPTER_CONFIG_FILE)) {
        Err(ModelError::InvalidConfig { field, reason, .. }) => {
            assert_eq!(field, "target_modules");
            assert!(reason.contains("q_proj"), "{reason}");
        }
        other => panic!("expected an unknown target refused, got {other:?}"),
    }

    // Adding LoRA twice, or saving an adapter without LoRA, is refused.
    assert!(model2.add_lora(&vs2.root(), &config).is_err());
    let (_vs3, plain) = base_model(6);
    assert!(plain.save_adapter(&dir.join("none"), "x").is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
